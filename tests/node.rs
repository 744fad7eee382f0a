//! Node-level tests: the same path the CLI takes, without processes. Bundles delivered
//! shuffled and duplicated converge to the same threads; a scheduler's device carries
//! clinical envelopes it cannot read; events fire; a reopened node shows the same data.

use huddle::core::policy::{Category, Role};
use huddle::core::thread::Subject;
use huddle::node::{Node, TaskRequest, ThreadDetail, bundle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::path::Path;
use tempfile::TempDir;

const PASS: &[u8] = b"test passphrase";

type SharedMessage = (String, String, String, Option<String>, Vec<String>);

/// The parts of a thread that every reader must agree on.
fn shared_view(t: &ThreadDetail) -> Vec<SharedMessage> {
    t.messages
        .iter()
        .map(|m| {
            let task = m
                .task
                .as_ref()
                .map(|t| format!("{}|{}|{:?}|{:?}", t.assignee, t.due, t.status, t.done_by));
            (
                m.id.clone(),
                m.author.clone(),
                m.body.clone(),
                task,
                m.read_by.clone(),
            )
        })
        .collect()
}

struct Clinic {
    admin: Node,
    threads: Vec<String>,
}

fn clinic_with_history(dir: &TempDir) -> Clinic {
    let mut admin = Node::create(&dir.path().join("admin"), PASS).unwrap();
    admin
        .init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
        .unwrap();
    admin.add_member("Lee", Role::Clinician, false).unwrap();
    admin.add_member("Sam", Role::Scheduler, false).unwrap();
    let clinical = admin
        .new_thread(
            Subject::Patient("Sara M.".into()),
            Category::Clinical,
            "Authorization renewal",
        )
        .unwrap()
        .to_hex();
    let sched = admin
        .new_thread(
            Subject::Topic("Friday coverage".into()),
            Category::Scheduling,
            "Out sick",
        )
        .unwrap()
        .to_hex();
    for i in 0..5 {
        admin
            .post(&clinical, &format!("clinical note {i}"), i == 2, None)
            .unwrap();
    }
    let task = TaskRequest {
        assignee: "Sam".into(),
        due: "2026-12-01".into(),
    };
    let msg = admin
        .post(&sched, "cover the 3pm?", false, Some(task))
        .unwrap();
    admin.complete_task(&sched, &msg).unwrap();
    Clinic {
        admin,
        threads: vec![clinical, sched],
    }
}

fn enroll(admin: &mut Node, member: &str, dir: &Path) -> Node {
    let node = Node::create(dir, PASS).unwrap();
    admin.add_device(member, node.device()).unwrap();
    node
}

/// Rewrites a bundle with its envelopes shuffled and a third of them duplicated.
fn shuffled(src: &Path, dst: &Path, seed: u64) {
    let (genesis, mut records) = bundle::read(std::fs::File::open(src).unwrap()).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let dups: Vec<Vec<u8>> = records.iter().step_by(3).cloned().collect();
    records.extend(dups);
    records.shuffle(&mut rng);
    let mut w = bundle::Writer::new(std::fs::File::create(dst).unwrap(), &genesis).unwrap();
    for r in &records {
        w.record(r).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn shuffled_duplicated_bundles_converge_to_the_same_threads() {
    let dir = TempDir::new().unwrap();
    let mut c = clinic_with_history(&dir);
    let mut lees: Vec<Node> = (0..3)
        .map(|i| enroll(&mut c.admin, "Lee", &dir.path().join(format!("lee{i}"))))
        .collect();
    let plain = dir.path().join("all.bundle");
    c.admin.export_bundle(&plain).unwrap();
    for (i, lee) in lees.iter_mut().enumerate() {
        let file = dir.path().join(format!("shuffled{i}.bundle"));
        shuffled(&plain, &file, i as u64);
        let report = lee.import_bundle(&file).unwrap();
        assert!(report.refused.is_empty(), "{:?}", report.refused);
        assert!(report.joined_clinic.is_some());
        assert_eq!(lee.status().pending, 0);
    }
    for t in &c.threads {
        let want = shared_view(&c.admin.thread(t).unwrap());
        assert!(!want.is_empty());
        for lee in &mut lees {
            assert_eq!(shared_view(&lee.thread(t).unwrap()), want);
        }
    }
}

#[test]
fn scheduler_holds_clinical_envelopes_it_cannot_read_and_forwards_them() {
    let dir = TempDir::new().unwrap();
    let mut c = clinic_with_history(&dir);
    let mut sam = enroll(&mut c.admin, "Sam", &dir.path().join("sam"));
    let to_sam = dir.path().join("to-sam.bundle");
    c.admin.export_bundle(&to_sam).unwrap();
    sam.import_bundle(&to_sam).unwrap();
    let (list, _) = sam.threads().unwrap();
    let clinical = list.iter().find(|t| t.id == c.threads[0]).unwrap();
    assert!(!clinical.readable && clinical.title.is_none() && clinical.envelopes > 5);
    assert!(sam.thread(&c.threads[0]).is_err());
    assert_eq!(sam.thread(&c.threads[1]).unwrap().messages.len(), 1);

    // Lee's laptop is enrolled later and only ever meets Sam's device.
    let mut lee = enroll(&mut c.admin, "Lee", &dir.path().join("lee"));
    let roster = dir.path().join("roster.bundle");
    c.admin.export_bundle(&roster).unwrap();
    sam.import_bundle(&roster).unwrap();
    let from_sam = dir.path().join("from-sam.bundle");
    sam.export_bundle(&from_sam).unwrap();
    lee.import_bundle(&from_sam).unwrap();
    let want = shared_view(&c.admin.thread(&c.threads[0]).unwrap());
    assert_eq!(shared_view(&lee.thread(&c.threads[0]).unwrap()), want);
}

#[test]
fn events_report_changes_and_reopening_shows_the_same_data() {
    let dir = TempDir::new().unwrap();
    let mut c = clinic_with_history(&dir);
    let lee_dir = dir.path().join("lee");
    let mut lee = enroll(&mut c.admin, "Lee", &lee_dir);
    let wakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = wakes.clone();
    let watch = lee.watch(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let file = dir.path().join("b.bundle");
    c.admin.export_bundle(&file).unwrap();
    let imported = lee.import_bundle(&file).unwrap();
    // Every change of the import is in one coalesced set, announced once.
    assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
    let seen = watch.take();
    assert!(seen.roster);
    assert!(seen.threads.iter().any(|t| t.to_hex() == c.threads[0]));
    assert_eq!(seen.accepted as usize, imported.accepted);
    assert!(seen.threads.len() <= c.threads.len());
    assert!(watch.take().is_empty());

    lee.mark_read(&c.threads[0]).unwrap();
    let before: Vec<_> = c.threads.iter().map(|t| lee.thread(t).unwrap()).collect();
    let (list_before, _) = lee.threads().unwrap();
    drop(lee);
    assert!(Node::open(&lee_dir, b"not the passphrase").is_err());
    let lee = Node::open(&lee_dir, PASS).unwrap();
    let after: Vec<_> = c.threads.iter().map(|t| lee.thread(t).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(lee.threads().unwrap().0, list_before);
}

/// Snapshots are written every few dozen changes and summaries rebuilt when listed: a
/// long thread, received in several bundles between listings and reopenings, always
/// lists and shows every message, with the right unread count.
#[test]
fn long_threads_list_and_reopen_correctly_between_snapshots() {
    let tmp = TempDir::new().unwrap();
    let mut admin = Node::create(&tmp.path().join("admin"), PASS).unwrap();
    admin
        .init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
        .unwrap();
    let thread = admin
        .new_thread(
            Subject::Topic("Coverage".into()),
            Category::Scheduling,
            "Friday",
        )
        .unwrap()
        .to_hex();
    admin.add_member("Lee", Role::Clinician, false).unwrap();
    let lee_dir = tmp.path().join("lee");
    let mut lee = enroll(&mut admin, "Lee", &lee_dir);
    let bundle = tmp.path().join("b.huddle");
    let (mut posted, mut unread) = (0, 0);
    // Deliveries of 1, 40, 70 and 150 messages cross the snapshot interval unevenly.
    for batch in [1, 40, 70, 150] {
        for _ in 0..batch {
            admin
                .post(&thread, &format!("note {posted}"), false, None)
                .unwrap();
            posted += 1;
            unread += 1;
        }
        admin.export_bundle(&bundle).unwrap();
        lee.import_bundle(&bundle).unwrap();
        let (list, problems) = lee.threads().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let s = list.iter().find(|s| s.id == thread).unwrap();
        assert_eq!((s.messages, s.unread), (posted, unread));
        if batch == 70 {
            lee.mark_read(&thread).unwrap();
            unread = 0;
            let (list, _) = lee.threads().unwrap();
            assert_eq!(list.iter().find(|s| s.id == thread).unwrap().unread, 0);
        }
        drop(lee);
        lee = Node::open(&lee_dir, PASS).unwrap();
    }
    let detail = lee.thread(&thread).unwrap();
    // Posts in the same millisecond sort by id, so compare as sets.
    let bodies: std::collections::BTreeSet<String> =
        detail.messages.into_iter().map(|m| m.body).collect();
    let expected = (0..261).map(|i| format!("note {i}")).collect();
    assert_eq!(bodies, expected);
    let (list, _) = lee.threads().unwrap();
    let s = list.iter().find(|s| s.id == thread).unwrap();
    assert_eq!((s.messages, s.unread), (261, 150));
}

/// The node's own check on the write path: a genesis that is not the clinic the
/// invitation's tag names is refused and nothing is written (the store reopens with no
/// clinic); the clinic it names is adopted.
#[test]
fn joining_writes_nothing_for_a_genesis_of_another_clinic() {
    use huddle::core::identity::DeviceSecret;
    use huddle::core::invite::clinic_tag;
    use huddle::core::roster::SignedGenesis;

    let dir = TempDir::new().unwrap();
    let mut ours = Node::create(&dir.path().join("dana"), PASS).unwrap();
    ours.init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
        .unwrap();
    let our_tag = clinic_tag(&ours.summary().unwrap().0);
    let founder = DeviceSecret::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1));
    let theirs = SignedGenesis::new(&founder, 1, [7; 16]);

    let path = dir.path().join("lee");
    let mut lee = Node::create(&path, PASS).unwrap();
    let err = lee
        .join_clinic(&theirs, &our_tag, founder.id())
        .unwrap_err();
    assert!(err.to_string().contains("another clinic"), "{err}");
    assert!(lee.summary().is_none());
    drop(lee);
    let mut lee = Node::open(&path, PASS).unwrap();
    assert!(lee.summary().is_none());
    assert_eq!(lee.status().clinic_id, None);

    lee.join_clinic(&theirs, &clinic_tag(&theirs.clinic_id()), founder.id())
        .unwrap();
    assert_eq!(lee.summary().unwrap().0, theirs.clinic_id());
}
