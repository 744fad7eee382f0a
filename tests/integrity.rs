//! Integrity at rest of the unsealed trees, through the `huddle` binary: an attacker with
//! the device's files but not its passphrase rolls its chain heads back (so it would
//! fork its own chain) or removes a record of who was given which key. The next command
//! says which records were modified outside Huddle, rebuilds the store from the identity
//! file, and the device gets back from its peer everything the peer holds.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Device, Sandbox, describe, stderr};
use serde_json::Value;

fn thread_on(device: &Device) -> String {
    device.id(
        &[
            "thread",
            "new",
            "--topic",
            "Rota",
            "--category",
            "operations",
            "--title",
            "Week",
        ],
        32,
    )
}

/// The message bodies, or `None` if `show` fails (the thread has not arrived yet).
fn try_bodies(device: &Device, thread: &str) -> Option<Vec<String>> {
    let out = device.run(&["--json", "show", thread]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["messages"]
            .as_array()?
            .iter()
            .filter_map(|m| m["body"].as_str().map(str::to_string))
            .collect(),
    )
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: never happened");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn shows(device: &Device, thread: &str, want: &str) -> bool {
    try_bodies(device, thread).is_some_and(|b| b.iter().any(|x| x == want))
}

/// sled's database in a data directory, opened directly (as a tool would); waits for a
/// `huddle` process that just ended to have let its lock go.
fn raw_db(dir: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
}

/// Every (key, value) of one tree.
fn records(dir: &Path, tree: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = raw_db(dir);
    let t = db.open_tree(tree).expect("tree");
    t.iter()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("record"))
        .collect()
}

/// Runs `command` once the store was modified: it succeeds (the store is rebuilt) and
/// says which records were changed and what happened.
fn reports_modified(device: &Device, command: &[&str], tree: &str) {
    let out = device.run(command);
    let err = stderr(&out);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        err.contains(&format!("the `{tree}` records in"))
            && err.contains("were modified outside Huddle"),
        "{err}"
    );
    assert!(err.contains("rebuilt from identity.huddle"), "{err}");
    assert!(err.contains("the damaged store is kept at"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn rolled_back_chain_heads_are_reported_and_the_device_resyncs_without_forking() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = thread_on(&ana);
    ana.ok(&["post", &thread, "from ana"]);
    let ana_serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let invite = ana.ok(&["invite", "--name", "Bea", "--role", "clinician"]);
    let bea = sandbox.device("bea");
    bea.ok(&["join", invite.trim(), "--no-mdns"]);

    bea.ok(&["post", &thread, "from bea 1"]);
    let old_heads = records(&bea.dir, "heads");
    bea.ok(&["post", &thread, "from bea 2"]);
    let serving = bea.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    eventually("bea's posts reach ana", || {
        shows(&ana, &thread, "from bea 2")
    });
    serving.stop();

    // The attacker puts the older chain heads back: bea would write its next post at a
    // position it already used (a fork every peer refuses).
    let db = raw_db(&bea.dir);
    let heads = db.open_tree("heads").expect("heads");
    let mut rolled_back = 0;
    for (k, v) in &old_heads {
        if heads.get(k).expect("read").as_deref() != Some(v.as_slice()) {
            heads.insert(k.as_slice(), v.as_slice()).expect("write");
            rolled_back += 1;
        }
    }
    assert!(rolled_back > 0, "bea's second post moved a head");
    db.flush().expect("flush");
    drop((heads, db));

    reports_modified(&bea, &["--json", "status"], "heads");
    assert_eq!(bea.status()["resyncing"], true);
    let err = bea.fail(&["post", &thread, "too early"]);
    assert!(err.contains("synced with another device"), "{err}");

    // Everything ana holds comes back, bea's own posts included, and bea writes again.
    let serving = bea.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    eventually("bea's history comes back", || {
        shows(&bea, &thread, "from bea 2") && shows(&bea, &thread, "from ana")
    });
    eventually("bea resyncs", || bea.status()["resyncing"] == false);
    bea.ok(&["post", &thread, "from bea 3"]);
    eventually("bea's new post reaches ana", || {
        shows(&ana, &thread, "from bea 3")
    });
    serving.stop();
    ana_serving.stop();
    assert_eq!(
        try_bodies(&bea, &thread).expect("thread"),
        ["from ana", "from bea 1", "from bea 2", "from bea 3"]
    );
    let out = bea.ok(&["repair"]);
    assert!(out.contains("nothing to repair"), "{out}");
}

#[test]
fn a_removed_grant_is_reported_and_nothing_readable_is_lost() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = thread_on(&ana);
    ana.ok(&["post", &thread, "one"]);
    let ana_serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let invite = ana.ok(&["invite", "--name", "Bea", "--role", "clinician"]);
    let bea = sandbox.device("bea");
    bea.ok(&["join", invite.trim(), "--no-mdns"]);
    ana_serving.stop();
    ana.ok(&["post", &thread, "two"]);

    // The attacker removes a record of a key ana gave bea: ana would give it again, or
    // (with an edit) believe it gave one it never did.
    let granted = records(&ana.dir, "granted");
    assert!(!granted.is_empty(), "ana granted bea its keys");
    let db = raw_db(&ana.dir);
    db.open_tree("granted")
        .expect("granted")
        .remove(granted[0].0.as_slice())
        .expect("remove");
    db.flush().expect("flush");
    drop(db);

    reports_modified(&ana, &["--json", "show", &thread], "granted");
    // What the store held is still there (salvaged and verified again), and the store
    // opens without complaint from now on.
    assert_eq!(try_bodies(&ana, &thread).expect("thread"), ["one", "two"]);
    let out = ana.ok(&["repair"]);
    assert!(out.contains("nothing to repair"), "{out}");
}

/// A message removed from the envelope records: the store still opens (every envelope
/// proves itself, and what shows the change is kept), each command warns, `audit
/// verify` fails naming the change, and `huddle repair` rebuilds from the peers.
#[test]
fn a_removed_message_is_reported_at_every_open_until_a_repair_brings_it_back() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = thread_on(&ana);
    let ana_serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let invite = ana.ok(&["invite", "--name", "Bea", "--role", "clinician"]);
    let bea = sandbox.device("bea");
    bea.ok(&["join", invite.trim(), "--no-mdns"]);
    bea.ok(&["post", &thread, "kept"]);
    bea.ok(&["post", &thread, "removed by the attacker"]);
    let bea_serving = bea.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    eventually("bea's posts reach ana", || {
        shows(&ana, &thread, "removed by the attacker")
    });
    bea_serving.stop();

    // The attacker deletes bea's last envelope of the thread log (tag 1: a thread).
    let bea_id = bea.status()["device"].as_str().unwrap().to_string();
    let author = common::unhex(&bea_id);
    let db = raw_db(&bea.dir);
    let envelopes = db.open_tree("envelopes").expect("envelopes");
    let last = envelopes
        .iter()
        .keys()
        .map(|k| k.expect("key"))
        .rfind(|k| k[0] == 1 && k[18..50] == author[..])
        .expect("bea's thread envelopes");
    envelopes.remove(&last).expect("remove");
    db.flush().expect("flush");
    drop((envelopes, db));

    for _ in 0..2 {
        let out = bea.run(&["status"]);
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            stderr(&out).contains("changed outside Huddle"),
            "{}",
            describe(&out)
        );
    }
    let out = bea.run(&["audit", "verify"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("changed outside Huddle"),
        "{}",
        describe(&out)
    );

    let out = bea.ok(&["repair"]);
    assert!(
        out.contains("rebuilt") || out.contains("recovered"),
        "{out}"
    );
    let out = bea.run(&["status"]);
    assert!(
        !stderr(&out).contains("changed outside Huddle"),
        "{}",
        describe(&out)
    );
    let bea_serving = bea.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    eventually("the removed post comes back from ana", || {
        shows(&bea, &thread, "removed by the attacker")
    });
    bea_serving.stop();
    ana_serving.stop();
}
