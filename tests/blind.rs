//! A locked node syncing blind, played by the attacker: it keeps only envelopes of its
//! own clinic, by a device that was active when it locked, with a valid signature, that
//! continue their author's chain; it forwards what it kept; it never needs a key; and
//! the next unlock takes in what it kept (`tests/control.rs` does it over the network).

use huddle::core::envelope::Envelope;
use huddle::core::ids::DeviceId;
use huddle::core::policy::{Category, Role};
use huddle::core::sync::Range;
use huddle::core::thread::Subject;
use huddle::node::blind::BlindNode;
use huddle::node::{Node, SyncSide};
use std::path::Path;
use tempfile::TempDir;

const PASS: &[u8] = b"test passphrase";

/// Every envelope `node` holds of `author`, in chain order, encoded.
fn chains_of(node: &Node, author: DeviceId) -> Vec<Vec<u8>> {
    let (_, summary) = Node::summary(node).expect("a clinic");
    let mut out = Vec::new();
    for ((log, a), n) in summary.chains {
        if a != author {
            continue;
        }
        let mut from = 0;
        while from < n {
            let range = Range {
                log,
                author,
                from,
                to: n,
            };
            let batch = Node::load_batch(node, &range).expect("a batch");
            from += batch.len() as u64;
            out.extend(batch);
        }
    }
    out
}

struct Clinic {
    admin_dir: std::path::PathBuf,
    thread: String,
    /// What Lee wrote after the admin locked.
    lee_new: Vec<Vec<u8>>,
    lee: DeviceId,
}

/// An admin and Lee share a clinical thread; the admin locks; Lee then posts.
fn clinic(dir: &Path) -> (Clinic, Node) {
    let admin_dir = dir.join("admin");
    let mut admin = Node::create(&admin_dir, PASS).unwrap();
    admin
        .init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
        .unwrap();
    admin.add_member("Lee", Role::Clinician, false).unwrap();
    let mut lee = Node::create(&dir.join("lee"), PASS).unwrap();
    admin.add_device("Lee", lee.device()).unwrap();
    let thread = admin
        .new_thread(
            Subject::Patient("Sara M.".into()),
            Category::Clinical,
            "Intake",
        )
        .unwrap()
        .to_hex();
    let bundle = dir.join("to-lee.bundle");
    admin.export_bundle(&bundle).unwrap();
    lee.import_bundle(&bundle).unwrap();
    lee.post(&thread, "first note from Lee", false, None)
        .unwrap();
    let before = chains_of(&lee, lee.device().id);
    admin.receive(&before).unwrap();

    let sight = admin.sight().expect("a clinic");
    drop(admin);
    lee.post(&thread, "Lee: seen while the admin was locked", false, None)
        .unwrap();
    lee.post(&thread, "Lee: and a second note", false, None)
        .unwrap();
    let all = chains_of(&lee, lee.device().id);
    // Two posts, and Lee's audit entries beside them.
    let lee_new: Vec<Vec<u8>> = all.into_iter().filter(|e| !before.contains(e)).collect();
    assert!(lee_new.len() >= 2);
    let blind = BlindNode::open(&admin_dir, sight).unwrap();
    drop(blind);
    let lee_id = lee.device().id;
    (
        Clinic {
            admin_dir,
            thread,
            lee_new,
            lee: lee_id,
        },
        lee,
    )
}

fn reopen_blind(c: &Clinic) -> BlindNode {
    let admin = Node::open(&c.admin_dir, PASS).unwrap();
    let sight = admin.sight().unwrap();
    drop(admin);
    BlindNode::open(&c.admin_dir, sight).unwrap()
}

#[test]
fn a_locked_node_keeps_a_members_new_envelopes_forwards_them_and_takes_them_in_at_unlock() {
    let dir = TempDir::new().unwrap();
    let (c, _lee) = clinic(dir.path());
    let mut blind = reopen_blind(&c);
    let (_, before) = SyncSide::summary(&blind).unwrap();

    let n = c.lee_new.len();
    let report = blind.receive(&c.lee_new).unwrap();
    assert_eq!((report.waiting, report.refused.len()), (n, 0), "{report:?}");
    assert_eq!(blind.inbox_len(), n as u64);
    // Sent again (another peer's session): nothing new.
    let again = blind.receive(&c.lee_new).unwrap();
    assert_eq!((again.duplicate, blind.inbox_len()), (n, n as u64));

    // The summary says it holds them, and a peer that lacks them gets them.
    let (_, after) = SyncSide::summary(&blind).unwrap();
    assert_eq!(after.total(), before.total() + n as u64);
    let mut forwarded = Vec::new();
    for (chain, to) in after.chains.iter().filter(|((_, a), _)| *a == c.lee) {
        let range = Range {
            log: chain.0,
            author: c.lee,
            from: before.chains.get(chain).copied().unwrap_or(0),
            to: *to,
        };
        forwarded.extend(SyncSide::load_batch(&blind, &range).unwrap());
    }
    assert_eq!(forwarded, c.lee_new);

    // The unlock takes them in, and the inbox is empty after it.
    drop(blind);
    let admin = Node::open(&c.admin_dir, PASS).unwrap();
    let shown = admin.thread(&c.thread).unwrap();
    let bodies: Vec<&str> = shown.messages.iter().map(|m| m.body.as_str()).collect();
    assert!(
        bodies.contains(&"Lee: seen while the admin was locked")
            && bodies.contains(&"Lee: and a second note"),
        "{bodies:?}"
    );
    drop(admin);
    assert_eq!(reopen_blind(&c).inbox_len(), 0);
}

#[test]
fn a_locked_node_refuses_strangers_forgeries_and_broken_chains() {
    let dir = TempDir::new().unwrap();
    let (c, _lee) = clinic(dir.path());
    let mut blind = reopen_blind(&c);

    // A stranger's clinic, with a member of its own posting.
    let mut stranger = Node::create(&dir.path().join("stranger"), PASS).unwrap();
    stranger
        .init_clinic("Elsewhere", "Mallory", Role::Clinician)
        .unwrap();
    let t = stranger
        .new_thread(Subject::Topic("x".into()), Category::Clinical, "x")
        .unwrap()
        .to_hex();
    stranger.post(&t, "junk", false, None).unwrap();
    let junk = chains_of(&stranger, stranger.device().id);
    assert!(!junk.is_empty());

    // Lee's envelope with its signature spoiled.
    let mut forged = Envelope::decode(&c.lee_new[0]).unwrap();
    forged.signature.0[0] ^= 1;
    // Lee's second post without the first: a gap in the chain.
    let posts: Vec<&Vec<u8>> = c
        .lee_new
        .iter()
        .filter(|e| {
            matches!(
                Envelope::decode(e).unwrap().header.log,
                huddle::core::ids::LogId::Thread { .. }
            )
        })
        .collect();
    let gap = posts[1].clone();
    // Not an envelope at all.
    let garbage = vec![0xff; 300];

    for (what, input) in [
        ("another clinic's envelopes", junk),
        ("a bad signature", vec![forged.encode()]),
        ("a gap in a chain", vec![gap]),
        ("bytes that do not decode", vec![garbage]),
    ] {
        let report = blind.receive(&input).unwrap();
        assert_eq!(report.waiting, 0, "{what}: {report:?}");
        assert_eq!(report.refused.len(), input.len(), "{what}: {report:?}");
    }
    assert_eq!(blind.inbox_len(), 0);
    assert!(!blind.peer_allowed(&stranger.device().id));
    assert!(blind.peer_allowed(&c.lee));
}
