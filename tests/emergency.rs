//! Emergency access to restricted threads, and invitations that cannot be used twice,
//! through the CLI with devices syncing over loopback libp2p (mDNS off). A restricted
//! thread's posts are sealed with keys of its own: the test opens a non-participant's
//! store to show it holds none, and that what is written after an emergency window is
//! not readable by the emergency reader even on a clock that says the window is open.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Device, PASS, Sandbox, Serving, describe, stdout};
use huddle::core::envelope::Body;
use huddle::core::ids::{LogId, ThreadId};
use huddle::core::policy::Category;
use huddle::core::replica::{KeySlot, RESTRICTED_EPOCH};
use huddle::store::Store;

const HOUR_MS: &str = "7200000";
const TITLE: &str = "Behavioral health follow-up";

/// A port free now on loopback (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn serve_on(device: &Device, port: u16, peers: &[u16]) -> Serving {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--listen".to_string(), listen, "--no-mdns".to_string()];
    for p in peers {
        args.push("--peer".into());
        args.push(format!("127.0.0.1:{p}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let serving = device.serve(&args);
    serving.wait_until_serving(Duration::from_secs(30));
    serving
}

/// Waits (generously, to detect a hang) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An invitation for `name` as `role`, issued through the admin's serve, joined with
/// `--peer` (the address in it is the serve's).
fn enroll(admin: &Device, joiner: &Device, name: &str, role: &str, port: u16) -> String {
    let invite = admin.ok(&["invite", "--name", name, "--role", role]);
    let out = joiner.ok(&[
        "join",
        invite.trim(),
        "--no-mdns",
        "--peer",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(out.contains(name), "{out}");
    invite
}

fn members(device: &Device) -> Vec<String> {
    device
        .json(&["members"])
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `show THREAD --json` if it succeeds now (the thread may not have arrived yet).
fn shown(device: &Device, thread: &str) -> serde_json::Value {
    let out = device.run(&["--json", "show", thread]);
    serde_json::from_str(&stdout(&out)).unwrap_or_default()
}

/// The thread's entry in `threads --json`, if listed.
fn listed(device: &Device, thread: &str) -> serde_json::Value {
    let out = device.run(&["--json", "threads"]);
    let all: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
    all.as_array()
        .and_then(|a| a.iter().find(|t| t["id"] == thread).cloned())
        .unwrap_or_default()
}

/// What a device's store (its serve stopped) holds of a thread: the slots of its
/// sealed changes sealed with the thread's own keys, and the keys it holds of it.
struct HeldOfThread {
    restricted_posts: Vec<KeySlot>,
    thread_keys: Vec<KeySlot>,
    category_keys: usize,
}

fn held_of_thread(device: &Device, thread: &str) -> HeldOfThread {
    let id: ThreadId = thread.parse().expect("a thread id");
    let log = LogId::Thread {
        id,
        category: Category::Clinical,
    };
    let store = Store::open(&device.dir, PASS.as_bytes()).expect("open the store");
    let restricted_posts = store
        .envelopes(Some(&log))
        .map(|e| e.expect("a stored envelope"))
        .filter(|e| matches!(e.body, Body::Sealed(_)))
        .filter(|e| e.header.epoch & RESTRICTED_EPOCH != 0)
        .map(|e| KeySlot::of(&e.header))
        .collect();
    let keys = store.keys().expect("keys");
    HeldOfThread {
        restricted_posts,
        thread_keys: keys
            .iter()
            .filter(|(s, _)| s.log == log)
            .map(|(s, _)| *s)
            .collect(),
        category_keys: keys
            .iter()
            .filter(|(s, _)| s.log == LogId::Keys(Category::Clinical))
            .count(),
    }
}

/// Carries everything `from` holds to `to` by bundle (`to`'s serve stopped).
fn carry(sandbox: &Sandbox, from: &Device, to: &Device, env: &[(&str, &str)], name: &str) {
    let file = sandbox.file(name);
    let path = file.to_str().expect("UTF-8 path");
    let out = from.run_env(env, &["bundle", "export", path]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = to.run_env(env, &["bundle", "import", path]);
    assert!(out.status.success(), "{}", describe(&out));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "control.sock" {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[test]
fn restricted_thread_emergency_access_is_announced_and_expires() {
    let sandbox = Sandbox::new();
    let (ana, bea, cam, sue) = (
        sandbox.device("ana"),
        sandbox.device("bea"),
        sandbox.device("cam"),
        sandbox.device("sue"),
    );
    ana.ok(&["init", "--clinic", "Maple", "--name", "Ana"]);
    let thread = ana.id(
        &[
            "thread",
            "new",
            "--patient",
            "Sara M.",
            "--category",
            "clinical",
            "--title",
            TITLE,
        ],
        32,
    );
    let ana_port = free_port();
    let ana_serving = serve_on(&ana, ana_port, &[]);
    enroll(&ana, &bea, "Bea", "clinician", ana_port);
    enroll(&ana, &cam, "Cam", "clinician", ana_port);
    enroll(&ana, &sue, "Sue", "scheduler", ana_port);

    // Bea (a clinician, not an admin) restricts the thread to Ana and herself.
    let bea_port = free_port();
    let bea_serving = serve_on(&bea, bea_port, &[ana_port]);
    eventually("Bea sees the thread", || {
        shown(&bea, &thread)["title"] == TITLE
    });
    let out = bea.ok(&["thread", "restrict", &thread, "--to", "Ana"]);
    assert!(out.contains("restricted"), "{out}");
    // Bea posts (her node knows the restriction): sealed with the thread's own key,
    // which reaches Ana through sync.
    bea.ok(&["post", &thread, "Plan discussed with the patient"]);
    eventually("Ana reads Bea's restricted post", || {
        stdout(&ana.run(&["show", &thread])).contains("Plan discussed")
    });

    // Cam, a clinician but no participant, sees it locked, without its title.
    let cam_port = free_port();
    let cam_serving = serve_on(&cam, cam_port, &[ana_port]);
    eventually("Cam sees the restriction", || {
        listed(&cam, &thread)["title"] == "Restricted thread"
    });
    let entry = cam.thread_entry(&thread);
    assert_eq!(entry["readable"], false, "{entry}");
    assert_eq!(entry["subject"], serde_json::Value::Null, "{entry}");
    assert!(!cam.ok(&["threads"]).contains(TITLE));
    let err = cam.fail(&["show", &thread]);
    assert!(err.contains("restricted thread"), "{err}");

    // Cam's store holds the post (carried by bundle, so it surely arrived) and the
    // clinical category key, but no key of the thread: a modified client has nothing
    // that opens it.
    cam_serving.stop();
    carry(&sandbox, &bea, &cam, &[], "restricted.bundle");
    let held = held_of_thread(&cam, &thread);
    assert!(!held.restricted_posts.is_empty(), "Cam holds the post");
    assert!(held.category_keys > 0, "Cam holds the category key");
    assert_eq!(held.thread_keys, vec![], "Cam holds no key of the thread");
    let cam_port = free_port();
    let cam_serving = serve_on(&cam, cam_port, &[ana_port]);

    // Refused: no reason, a blank one, a reason over the bound, a scheduler's request.
    for reason in ["", "   ", &"x".repeat(1025)] {
        let err = cam.fail(&["emergency", "open", &thread, "--reason", reason]);
        assert!(err.contains("reason"), "{err}");
    }
    let err = cam.fail(&["emergency", "open", &thread]);
    assert!(err.contains("--reason"), "{err}");
    let err = sue.fail(&[
        "emergency",
        "open",
        &thread,
        "--reason",
        "Patient at the desk",
    ]);
    assert!(err.contains("role may not read"), "{err}");
    assert_eq!(ana.json(&["emergency", "list"]), serde_json::json!([]));

    // Cam opens it in an emergency: reads it, and the thread announces it.
    let reason = "Patient unresponsive, on call tonight";
    let opened = cam.json(&["emergency", "open", &thread, "--reason", reason]);
    assert_eq!(opened[0]["member"], "Cam", "{opened}");
    assert_eq!(opened[0]["active"], true, "{opened}");
    let until = opened[0]["until_ms"].as_u64().unwrap();
    let from = opened[0]["from_ms"].as_u64().unwrap();
    assert_eq!(until - from, 60 * 60_000, "the policy's 60 minutes");
    let detail = cam.show(&thread);
    assert_eq!(detail["title"], TITLE);
    assert_eq!(detail["emergencies"][0]["reason"], reason);
    let text = cam.ok(&["show", &thread]);
    assert!(text.contains("Emergency access by Cam until"), "{text}");
    assert!(text.contains(reason), "{text}");
    // Announced to the thread's readers and to the admin.
    eventually("Bea sees the announcement", || {
        shown(&bea, &thread)["emergencies"][0]["member"] == "Cam"
    });
    eventually("the admin sees the grant", || {
        shown(&ana, &thread)["emergencies"][0]["reason"] == reason
            && ana.json(&["emergency", "list"])[0]["reason"] == reason
    });
    // No one posts: a participant's device hands the thread's key to Cam's.
    eventually(
        "Cam receives the thread's key and reads its messages",
        || stdout(&cam.run(&["show", &thread])).contains("Plan discussed"),
    );

    // After the window (the clock injected two hours on), Cam's node no longer shows it.
    cam_serving.stop();
    let out = cam.run_env(&[("HUDDLE_CLOCK_SKIP_MS", HOUR_MS)], &["show", &thread]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        common::stderr(&out).contains("restricted thread"),
        "{}",
        describe(&out)
    );
    let out = cam.run_env(&[("HUDDLE_CLOCK_SKIP_MS", HOUR_MS)], &["--json", "threads"]);
    assert!(!stdout(&out).contains(TITLE), "{}", describe(&out));
    // An expired grant is no longer announced, but stays listed for admins (the clock
    // is the process's: the serve is stopped so the command opens the store itself).
    ana_serving.stop();
    bea_serving.stop();
    let later = |device: &Device, args: &[&str]| {
        let out = device.run_env(&[("HUDDLE_CLOCK_SKIP_MS", HOUR_MS)], args);
        assert!(out.status.success(), "{}", describe(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).expect("JSON")
    };
    let detail = later(&bea, &["--json", "show", &thread]);
    assert_eq!(detail["emergencies"], serde_json::Value::Null, "{detail}");
    let grants = later(&ana, &["--json", "emergency", "list"]);
    assert_eq!(grants[0]["member"], "Cam", "{grants}");
    assert_eq!(grants[0]["active"], false, "{grants}");

    // Bea posts after the window: a new key, minted for Ana and Bea only. Cam gets the
    // post, not the key — not even on a clock that still says the window is open.
    let skip = [("HUDDLE_CLOCK_SKIP_MS", HOUR_MS)];
    let out = bea.run_env(&skip, &["post", &thread, "Written after the window"]);
    assert!(out.status.success(), "{}", describe(&out));
    let before = held_of_thread(&cam, &thread);
    assert!(!before.thread_keys.is_empty(), "Cam kept the window's key");
    carry(&sandbox, &bea, &cam, &skip, "after-window.bundle");
    let after = held_of_thread(&cam, &thread);
    let newest = after
        .restricted_posts
        .iter()
        .max_by_key(|s| s.epoch)
        .copied()
        .expect("restricted posts");
    assert!(!before.restricted_posts.contains(&newest), "the new post");
    assert!(!after.thread_keys.contains(&newest), "Cam lacks its key");
    assert_eq!(after.thread_keys, before.thread_keys);
    let text = cam.ok(&["show", &thread]);
    assert!(text.contains("Plan discussed"), "{text}");
    assert!(!text.contains("Written after the window"), "{text}");
    let text = ana.ok(&["show", &thread]);
    assert!(
        !text.contains("Written after the window"),
        "not synced yet: {text}"
    );
    carry(&sandbox, &bea, &ana, &skip, "to-ana.bundle");
    let text = ana.ok(&["show", &thread]);
    assert!(text.contains("Written after the window"), "{text}");
}

#[test]
fn a_restored_admin_directory_cannot_reuse_an_invitation() {
    let sandbox = Sandbox::new();
    let (ana, bea, dee, eve) = (
        sandbox.device("ana"),
        sandbox.device("bea"),
        sandbox.device("dee"),
        sandbox.device("eve"),
    );
    ana.ok(&["init", "--clinic", "Maple", "--name", "Ana"]);
    let ana_port = free_port();
    let serving = serve_on(&ana, ana_port, &[]);
    enroll(&ana, &bea, "Bea", "clinician", ana_port);
    let invite = ana.ok(&["invite", "--name", "Dee", "--role", "clinician"]);
    serving.stop();
    // The copy an attacker (or a careless restore) puts back later.
    let backup = sandbox.file("ana-backup");
    copy_dir(&ana.dir, &backup);

    let serving = serve_on(&ana, ana_port, &[]);
    let bea_port = free_port();
    let bea_serving = serve_on(&bea, bea_port, &[ana_port]);
    dee.ok(&[
        "join",
        invite.trim(),
        "--no-mdns",
        "--peer",
        &format!("127.0.0.1:{ana_port}"),
    ]);
    eventually("Bea learns Dee's enrollment", || {
        members(&bea).contains(&"Dee".to_string())
    });
    serving.stop();

    // Restore the old directory: it still lists the invitation as open...
    std::fs::remove_dir_all(&ana.dir).expect("remove");
    copy_dir(&backup, &ana.dir);
    assert!(ana.ok(&["invites"]).contains("Dee"));
    // ...until it syncs with Bea and learns the use from the roster.
    let ana_port = free_port();
    let serving = serve_on(&ana, ana_port, &[bea_port]);
    eventually("the restored admin learns Dee's enrollment", || {
        members(&ana).contains(&"Dee".to_string())
    });
    assert!(!ana.ok(&["invites"]).contains("Dee"));
    let out = eve.run(&[
        "join",
        invite.trim(),
        "--no-mdns",
        "--peer",
        &format!("127.0.0.1:{ana_port}"),
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        common::stderr(&out).contains("already been used"),
        "{}",
        describe(&out)
    );
    assert_eq!(members(&bea).iter().filter(|n| *n == "Dee").count(), 1);
    bea_serving.stop();
    serving.stop();
}

#[test]
fn an_admin_lifts_a_restriction_with_thread_unrestrict() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Maple", "--name", "Ana"]);
    let thread = ana.id(
        &[
            "thread",
            "new",
            "--patient",
            "Sara M.",
            "--category",
            "clinical",
            "--title",
            TITLE,
        ],
        32,
    );
    let err = ana.fail(&["thread", "unrestrict", &thread]);
    assert!(err.contains("not restricted"), "{err}");
    ana.ok(&["thread", "restrict", &thread, "--to", "Ana"]);
    assert_eq!(
        ana.show(&thread)["restricted_to"],
        serde_json::json!(["Ana"])
    );
    let out = ana.ok(&["thread", "unrestrict", &thread]);
    assert!(out.contains("no longer restricted"), "{out}");
    assert_eq!(ana.show(&thread)["restricted_to"], serde_json::Value::Null);
    let audit = ana.ok(&["audit"]);
    assert!(audit.contains("thread-unrestricted"), "{audit}");
}
