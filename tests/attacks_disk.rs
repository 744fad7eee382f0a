//! Issue 16, finding 2: an attacker with the admin's disk but not its passphrase edits
//! the unsealed `envelopes` tree with plain sled. Removing the record of a revocation, a
//! demotion or a restriction must not give back a smaller roster: the store is damage.
//! Planting a validly signed envelope past a chain's head must not reach a document.
//! Everything runs through the `huddle` binary (devices sync over loopback libp2p, mDNS
//! off); the stores are inspected with the crate's public API and with sled.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Device, PASS, Sandbox, Serving, describe, stderr, stdout};
use huddle::core::envelope::{Body, Envelope};
use huddle::core::ids::{DeviceId, LogId};
use huddle::core::policy::Category;
use huddle::core::replica::RESTRICTED_EPOCH;
use huddle::store::Store;

/// A port free now on loopback (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn serve_on(device: &Device, port: u16, peers: &[u16]) -> Serving {
    let mut args = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--no-mdns".to_string(),
    ];
    for p in peers {
        args.push("--peer".into());
        args.push(format!("127.0.0.1:{p}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let serving = device.serve(&args);
    serving.wait_until_serving(Duration::from_secs(30));
    serving
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Enrolls `joiner` as `name` through the admin's serve on `port`.
fn enroll(admin: &Device, joiner: &Device, name: &str, role: &str, extra: &[&str], port: u16) {
    let mut args = vec!["invite", "--name", name, "--role", role];
    args.extend_from_slice(extra);
    let invite = admin.ok(&args);
    let peer = format!("127.0.0.1:{port}");
    let out = joiner.ok(&["join", invite.trim(), "--no-mdns", "--peer", &peer]);
    assert!(out.contains(name), "{out}");
}

fn thread_on(device: &Device, category: &str, title: &str) -> String {
    device.id(
        &[
            "thread",
            "new",
            "--patient",
            "Sara M.",
            "--category",
            category,
            "--title",
            title,
        ],
        32,
    )
}

/// sled's database in a data directory, opened directly (as a tool would); waits for a
/// `huddle` process that just ended to have let its lock go.
fn raw_db(dir: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
}

/// Every record of the unsealed trees, to tell whether anything was written.
fn unsealed(dir: &Path) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    let db = raw_db(dir);
    let mut out = BTreeMap::new();
    for tree in ["envelopes", "heads", "pending", "granted"] {
        for item in db.open_tree(tree).expect("tree").iter() {
            let (k, v) = item.expect("record");
            out.insert((tree.to_string(), k.to_vec()), v.to_vec());
        }
    }
    out
}

/// The keys of the roster operations (sealed roster envelopes, not key grants) in a
/// device's `envelopes` tree.
fn roster_ops(dir: &Path) -> Vec<Vec<u8>> {
    let db = raw_db(dir);
    let tree = db.open_tree("envelopes").expect("envelopes");
    tree.scan_prefix(LogId::Roster.key_bytes())
        .map(|item| item.expect("record"))
        .filter(|(_, v)| {
            let env = Envelope::decode(&v[32..]).expect("an envelope");
            matches!(env.body, Body::Sealed(_))
        })
        .map(|(k, _)| k.to_vec())
        .collect()
}

/// Runs `command` and returns the key of the one roster operation it wrote.
fn the_roster_op_of(device: &Device, command: &[&str]) -> Vec<u8> {
    let before = roster_ops(&device.dir);
    device.ok(command);
    let new: Vec<Vec<u8>> = roster_ops(&device.dir)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "`{}` wrote one roster operation",
        command.join(" ")
    );
    new.into_iter().next().unwrap()
}

/// Removes one record from the `envelopes` tree with sled, as a tool would.
fn remove_envelope_record(dir: &Path, key: &[u8]) {
    let db = raw_db(dir);
    let removed = db.open_tree("envelopes").unwrap().remove(key).unwrap();
    assert!(removed.is_some(), "the record was there");
    db.flush().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "control.sock" {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn status_of<'a>(devices: &'a serde_json::Value, id: &str) -> &'a str {
    devices
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["device"] == id)
        .and_then(|d| d["status"].as_str())
        .unwrap_or("not listed")
}

fn admin_flag(members: &serde_json::Value, name: &str) -> Option<bool> {
    members
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["admin"].as_bool())
}

/// Refused with the plain words that name `huddle repair`.
fn refused_as_changed(device: &Device, args: &[&str]) -> String {
    let out = device.run(args);
    let err = common::fail_output(&out, args);
    assert!(
        err.contains("store was changed outside Huddle") && err.contains("Run `huddle repair`"),
        "`{}`: {}",
        args.join(" "),
        describe(&out)
    );
    stdout(&out)
}

/// What a device's store (its serve stopped) holds that matters here.
struct Held {
    /// The key epochs of this device's sealed posts in `thread`, in chain order.
    post_epochs: Vec<u32>,
    /// The epochs of clinical-key grants this device sealed to `to`.
    clinical_grants_to: Vec<u32>,
}

fn held(device: &Device, author: &str, thread: &str, to: &str) -> Held {
    let author = DeviceId(common::unhex(author).try_into().unwrap());
    let to = DeviceId(common::unhex(to).try_into().unwrap());
    let log = LogId::Thread {
        id: thread.parse().expect("a thread id"),
        category: Category::Clinical,
    };
    let store = Store::open(&device.dir, PASS.as_bytes()).expect("open the store");
    let post_epochs = store
        .envelopes(Some(&log))
        .map(|e| e.expect("a stored envelope"))
        .filter(|e| e.header.author == author && matches!(e.body, Body::Sealed(_)))
        .map(|e| e.header.epoch)
        .collect();
    let clinical_grants_to = store
        .envelopes(Some(&LogId::Keys(Category::Clinical)))
        .map(|e| e.expect("a stored envelope"))
        .filter(|e| e.header.author == author)
        .filter(|e| matches!(&e.body, Body::Grants(g) if g.iter().any(|g| g.recipient == to)))
        .map(|e| e.header.epoch)
        .collect();
    Held {
        post_epochs,
        clinical_grants_to,
    }
}

fn device_id(device: &Device) -> String {
    device.status()["device"].as_str().unwrap().to_string()
}

/// The clinic: Ana (the admin, founder), Bea (the stolen laptop's member), Cy (a
/// clinician whose device will hold every roster operation), Dee (a second admin).
struct Clinic {
    sandbox: Sandbox,
    ana: Device,
    bea: String,
    cy: Device,
    /// A clinical thread, and one that Ana restricts to herself and Cy.
    thread: String,
    restricted: String,
    /// The roster operations the attacker removes, by what they did.
    ops: Vec<(&'static str, Vec<u8>)>,
    /// The epoch of Ana's clinical posts before and after the revocation.
    epochs: (u32, u32),
}

fn clinic() -> Clinic {
    let sandbox = Sandbox::new();
    let (ana, bea, cy, dee) = (
        sandbox.device("ana"),
        sandbox.device("bea"),
        sandbox.device("cy"),
        sandbox.device("dee"),
    );
    ana.ok(&["init", "--clinic", "Maple", "--name", "Ana"]);
    let port = free_port();
    let serving = serve_on(&ana, port, &[]);
    enroll(&ana, &bea, "Bea", "clinician", &[], port);
    enroll(&ana, &cy, "Cy", "clinician", &[], port);
    enroll(&ana, &dee, "Dee", "clinician", &["--admin"], port);
    serving.stop();
    let thread = thread_on(&ana, "clinical", "Intake follow-up");
    let restricted = thread_on(&ana, "clinical", "Behavioral health");
    ana.ok(&["post", &thread, "before the revocation"]);
    let bea_id = device_id(&bea);
    let ana_id = device_id(&ana);

    let revoke = the_roster_op_of(&ana, &["device", "revoke", "--member", "Bea"]);
    let demote = the_roster_op_of(&ana, &["member", "role", "Dee", "clinician", "--no-admin"]);
    let restrict = the_roster_op_of(
        &ana,
        &["thread", "restrict", &restricted, "--to", "Ana", "Cy"],
    );
    ana.ok(&["post", &thread, "after the revocation"]);
    ana.ok(&["post", &restricted, "restricted note"]);
    let epochs = held(&ana, &ana_id, &thread, &bea_id).post_epochs;
    let epochs = (epochs[0], *epochs.last().unwrap());
    assert!(epochs.1 > epochs.0, "the revocation started a new epoch");
    // Cy's device gets everything Ana's holds.
    let bundle = sandbox.file("ana.bundle");
    ana.export(&bundle);
    cy.import(&bundle);
    assert_eq!(status_of(&cy.json(&["devices"]), &bea_id), "revoked");
    Clinic {
        sandbox,
        ana,
        bea: bea_id,
        cy,
        thread,
        restricted,
        ops: vec![
            ("revocation", revoke),
            ("demotion", demote),
            ("restriction", restrict),
        ],
        epochs,
    }
}

/// The attacker removes one roster operation from a copy of Ana's data directory
/// (Ana's device as it would be after the edit): the admin's next commands list no one
/// as active, seal nothing, write nothing; `huddle repair` does not fold the roster that
/// is left, and a sync with Cy brings the whole roster back before Ana writes again.
#[test]
fn attack_disk_unrevoke() {
    let c = clinic();
    let ana_id = device_id(&c.ana);
    let cy_port = free_port();
    let cy_serving = serve_on(&c.cy, cy_port, &[]);
    for (round, (what, op)) in c.ops.iter().enumerate() {
        let ana = c.sandbox.device(&format!("ana-without-the-{what}"));
        copy_dir(&c.ana.dir, &ana.dir);
        remove_envelope_record(&ana.dir, op);

        // The store is damage: the next commands list nothing, write nothing, and
        // refuse with the next step.
        let before = unsealed(&ana.dir);
        let out = ana.run(&["--json", "devices"]);
        if out.status.success() {
            let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_ne!(status_of(&listed, &c.bea), "active", "{what}: {listed}");
        }
        let out = ana.run(&["--json", "members"]);
        if out.status.success() {
            let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_ne!(admin_flag(&listed, "Dee"), Some(true), "{what}: {listed}");
        }
        for thread in [&c.thread, &c.restricted] {
            ana.run(&["post", thread, "while the store is changed"]);
        }
        assert!(
            unsealed(&ana.dir) == before,
            "{what}: the changed store was written"
        );
        let out = ana.run(&["--json", "status"]);
        assert!(out.status.success(), "{}", describe(&out));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let changed = status["changed"].as_str().unwrap_or_default();
        assert!(
            changed.contains("changed outside Huddle"),
            "{what}: {status}"
        );
        assert!(stderr(&out).contains("changed outside Huddle"), "{what}");
        refused_as_changed(&ana, &["--json", "devices"]);
        refused_as_changed(&ana, &["--json", "members"]);
        refused_as_changed(&ana, &["show", &c.restricted]);
        refused_as_changed(&ana, &["post", &c.thread, "while the store is changed"]);
        refused_as_changed(&ana, &["post", &c.restricted, "while the store is changed"]);
        refused_as_changed(&ana, &["device", "revoke", "--member", "Cy"]);
        let out = ana.run(&["audit", "verify"]);
        assert!(!out.status.success(), "{what}: {}", describe(&out));
        if round == 0 {
            let out = ana.run(&["serve", "--listen", "127.0.0.1:0", "--no-mdns"]);
            assert!(!out.status.success(), "serve refuses: {}", describe(&out));
            assert!(
                stderr(&out).contains("Run `huddle repair`"),
                "{}",
                describe(&out)
            );
        }
        // Nothing was written: no envelope with the old epoch, no key to the laptop.
        assert!(
            unsealed(&ana.dir) == before,
            "{what}: the changed store was written"
        );

        // The repair keeps the changed copy and leaves the shrunken roster out.
        let out = ana.ok(&["repair"]);
        assert!(
            out.contains("rebuilt from identity.huddle"),
            "{what}: {out}"
        );
        assert!(out.contains("roster: not salvaged"), "{what}: {out}");
        assert!(
            out.contains("the damaged store is kept at"),
            "{what}: {out}"
        );
        let status = ana.status();
        assert_eq!(status["resyncing"], true, "{what}: {status}");
        assert!(
            status["roster_missing"].as_u64() >= Some(1),
            "{what}: {status}"
        );
        let err = ana.fail(&["post", &c.thread, "too early"]);
        assert!(err.contains("not back yet"), "{what}: {err}");
        let text = ana.ok(&["status"]);
        assert!(text.contains("this device had"), "{what}: {text}");
        let devices = ana.run(&["--json", "devices"]);
        if devices.status.success() {
            let listed: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
            assert_ne!(status_of(&listed, &c.bea), "active", "{what}: {listed}");
        }

        // Cy, an active device when Ana's identity file was written, sends it all back.
        let serving = serve_on(&ana, free_port(), &[cy_port]);
        eventually(&format!("{what}: Ana's roster is back"), || {
            let s = ana.status();
            s["roster_missing"] == 0 && s["resyncing"] == false
        });
        assert_eq!(
            status_of(&ana.json(&["devices"]), &c.bea),
            "revoked",
            "{what}"
        );
        assert_eq!(
            admin_flag(&ana.json(&["members"]), "Dee"),
            Some(false),
            "{what}"
        );
        ana.ok(&[
            "post",
            &c.thread,
            &format!("after the repair without the {what}"),
        ]);
        ana.ok(&[
            "post",
            &c.restricted,
            &format!("restricted, after the {what}"),
        ]);
        serving.stop();

        let held = held(&ana, &ana_id, &c.thread, &c.bea);
        assert_eq!(
            held.post_epochs.last(),
            Some(&c.epochs.1),
            "{what}: the new epoch"
        );
        assert!(
            held.clinical_grants_to.iter().all(|e| *e < c.epochs.1),
            "{what}: a post-revocation key was sealed to the laptop: {:?}",
            held.clinical_grants_to
        );
        let restricted = held_restricted_epoch(&ana, &ana_id, &c.restricted);
        assert!(
            restricted & RESTRICTED_EPOCH != 0,
            "{what}: the restricted thread's post is sealed with its own key"
        );
    }
    cy_serving.stop();
}

/// The epoch of the last post `author` sealed into a clinical `thread`.
fn held_restricted_epoch(device: &Device, author: &str, thread: &str) -> u32 {
    let held = held(device, author, thread, author);
    *held.post_epochs.last().expect("a post")
}

/// The attacker plants in the admin's `envelopes` tree, past the head of Bea's chain
/// in a thread, a validly signed envelope of Bea's that Ana's replica never accepted:
/// Bea's device wrote it after Ana revoked it (built with the crate's `Node`, as Bea's
/// unaware device would). The store is treated as changed, `show` never shows it, and
/// after `huddle repair` the salvage validates it again and refuses it.
#[test]
fn attack_disk_planted_envelope() {
    let sandbox = Sandbox::new();
    let (ana, bea) = (sandbox.device("ana"), sandbox.device("bea"));
    ana.ok(&["init", "--clinic", "Maple", "--name", "Ana"]);
    let port = free_port();
    let serving = serve_on(&ana, port, &[]);
    enroll(&ana, &bea, "Bea", "clinician", &[], port);
    serving.stop();
    let thread = thread_on(&ana, "clinical", "Intake follow-up");
    ana.ok(&["post", &thread, "from ana"]);
    let bundle = sandbox.file("carry.bundle");
    ana.export(&bundle);
    bea.import(&bundle);
    bea.ok(&["post", &thread, "from bea"]);
    std::fs::remove_file(&bundle).unwrap();
    bea.export(&bundle);
    ana.import(&bundle);
    ana.ok(&["device", "revoke", "--member", "Bea"]);

    // Bea's device, unaware of the revocation, writes the next envelope of its chain.
    let bea_id = device_id(&bea);
    let mut node = huddle::node::Node::open(&bea.dir, PASS.as_bytes()).expect("Bea's node");
    node.post(thread.as_str(), "planted by the attacker", false, None)
        .expect("Bea's post");
    drop(node);
    let author = common::unhex(&bea_id);
    let (key, value) = {
        let db = raw_db(&bea.dir);
        let tree = db.open_tree("envelopes").unwrap();
        let (k, v) = tree
            .iter()
            .map(|r| r.unwrap())
            .filter(|(k, _)| k[0] == 1 && k[18..50] == author[..])
            .last()
            .expect("Bea's thread envelopes");
        (k.to_vec(), v.to_vec())
    };
    {
        let db = raw_db(&ana.dir);
        let tree = db.open_tree("envelopes").unwrap();
        assert!(tree.get(&key).unwrap().is_none(), "past the head Ana holds");
        tree.insert(key, value).unwrap();
        db.flush().unwrap();
    }

    let out = ana.run(&["show", &thread]);
    assert!(!stdout(&out).contains("planted"), "{}", describe(&out));
    refused_as_changed(&ana, &["show", &thread]);
    let status = ana.status();
    assert!(
        status["changed"]
            .as_str()
            .is_some_and(|c| c.contains("were edited, added or removed")),
        "{status}"
    );

    // The repair salvages everything (the roster is whole) and validates each envelope
    // again: the planted one is past Bea's revocation and is refused.
    let out = ana.ok(&["repair"]);
    assert!(out.contains("rebuilt from identity.huddle"), "{out}");
    assert!(!out.contains("roster: not salvaged"), "{out}");
    let detail = ana.show(&thread);
    let bodies: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["from ana", "from bea"]);
    assert_eq!(ana.status()["changed"], serde_json::Value::Null);
}

/// The attacker puts back an older copy of the admin's store (every sled file: its
/// records agree with each other and with their digests) from before a revocation,
/// keeping the identity file written after it. The roster the store holds lacks what
/// the identity file recorded: the store is damage, and a repair does not fold it.
#[test]
fn attack_disk_rolled_back_store() {
    let sandbox = Sandbox::new();
    let (ana, bea) = (sandbox.device("ana"), sandbox.device("bea"));
    ana.ok(&["init", "--clinic", "Maple", "--name", "Ana"]);
    let keys = bea.keys();
    ana.ok(&["member", "add", "--name", "Bea", "--role", "clinician"]);
    ana.ok(&["device", "add", "--member", "Bea", "--key", &keys]);
    let thread = thread_on(&ana, "clinical", "Intake follow-up");
    let bea_id = device_id(&bea);
    let older = sandbox.file("ana-older");
    copy_dir(&ana.dir, &older);
    ana.ok(&["device", "revoke", "--member", "Bea"]);
    for entry in std::fs::read_dir(&ana.dir).unwrap().flatten() {
        if entry.file_name() != "identity.huddle" {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    std::fs::remove_file(older.join("identity.huddle")).unwrap();
    copy_dir(&older, &ana.dir);

    let before = unsealed(&ana.dir);
    let out = ana.run(&["--json", "devices"]);
    if out.status.success() {
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_ne!(status_of(&listed, &bea_id), "active", "{listed}");
    }
    ana.run(&["post", &thread, "on the older store"]);
    assert!(unsealed(&ana.dir) == before, "the older store was written");
    let status = ana.status();
    assert!(
        status["changed"]
            .as_str()
            .is_some_and(|c| c.contains("put back to an older copy")),
        "{status}"
    );
    refused_as_changed(&ana, &["--json", "devices"]);

    let out = ana.ok(&["repair"]);
    assert!(
        out.contains("roster: not salvaged (1 roster operation"),
        "{out}"
    );
    let status = ana.status();
    assert_eq!(status["roster_missing"], 1, "{status}");
    let err = ana.fail(&["post", &thread, "too early"]);
    assert!(
        err.contains("1 roster operation this device had is not back yet"),
        "{err}"
    );
}
