//! The stolen-laptop drill (issue #10's "done when"): Lee's laptop is taken while
//! unlocked and serving. The idle lock closes it; the admin revokes it and writes a new
//! clinical note; the thief takes it off the network, waits out the lease, and tries
//! again on the clinic network — even knowing the passphrase, the thief learns nothing
//! written after the theft, and once the lease has passed, not even what was there.
//! Every step drives the real `huddle` binary over loopback libp2p; days pass through
//! `HUDDLE_CLOCK_SKIP_MS`, never by waiting.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{Device, PASS, Sandbox, describe, stdout};

const BEFORE: &str = "Sara M.: intake notes, before the theft";
const AFTER: &str = "Sara M.: crisis plan, written after the laptop was stolen";
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// `huddle ARGS` as the thief at the keyboard: no passphrase, only what the laptop has
/// (its data directory, and a session file if one is open).
fn thief(device: &Device, args: &[&str]) -> Output {
    device.run_bare(args)
}

/// What `out` printed, both streams.
fn said(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn free_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    format!("127.0.0.1:{port}")
}

#[test]
fn a_laptop_stolen_while_unlocked_shows_the_thief_nothing_new() {
    let sandbox = Sandbox::new();
    let dana = sandbox.device("dana");
    dana.ok(&["init", "--clinic", "Maple Street", "--name", "Dana"]);
    let thread = dana.id(
        &[
            "thread",
            "new",
            "--patient",
            "Sara M.",
            "--category",
            "clinical",
            "--title",
            "Care plan",
        ],
        32,
    );
    dana.ok(&["post", &thread, BEFORE]);
    let dana_addr = free_port();
    let dana_serving = dana.serve(&["--listen", &dana_addr, "--no-mdns"]);
    dana_serving.wait_until_serving(Duration::from_secs(30));
    let invite = dana.ok(&["invite", "--name", "Lee", "--role", "clinician"]);
    let laptop = sandbox.device("lee-laptop");
    laptop.ok(&["join", invite.trim(), "--no-mdns"]);
    let laptop_id = laptop.status()["device"]
        .as_str()
        .expect("a device id")
        .to_string();

    // Lee's laptop serves, unlocked (a session open), and has the note.
    let laptop_serving = laptop.serve(&[
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--peer",
        &dana_addr,
        "--idle-lock-seconds",
        "6",
    ]);
    laptop_serving.wait_until_serving(Duration::from_secs(30));
    laptop.ok(&["unlock"]);
    let show = ["show", thread.as_str()];

    // Taken while unlocked: the thief reads what was there, through the open session.
    let seen = thief(&laptop, &show);
    assert!(stdout(&seen).contains(BEFORE), "{}", describe(&seen));

    // The thief stops using it (any command would keep it open, as for its owner).
    // The idle lock: the session is over, the keys are gone; status is all there is.
    wait_for("the idle lock", || {
        laptop_serving.logs().contains("locking")
    });
    let status = thief(&laptop, &["--json", "status"]);
    assert!(
        stdout(&status).contains("\"locked\":true"),
        "{}",
        describe(&status)
    );
    let locked = thief(&laptop, &show);
    assert!(!locked.status.success() && said(&locked).contains("locked"));
    assert!(!said(&locked).contains(BEFORE));

    // The clinic acts: the laptop is revoked, then a new note is written.
    dana.ok(&["device", "revoke", &laptop_id]);
    dana.ok(&["post", &thread, AFTER]);

    // The thief takes the laptop away and waits out the lease (8 days, skipped).
    laptop_serving.stop();
    let later = (8 * DAY_MS).to_string();
    let skip = [("HUDDLE_CLOCK_SKIP_MS", later.as_str())];
    // Even knowing the passphrase: nothing clinical at all any more.
    let out = laptop.run_env(&skip, &show);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        !said(&out).contains(BEFORE) && !said(&out).contains(AFTER),
        "{}",
        describe(&out)
    );
    // Nothing written after the theft reached the laptop, readable or not.
    let now = laptop.run_env(&[], &show);
    assert!(!said(&now).contains(AFTER), "{}", describe(&now));

    // Back on the clinic network: the clinic refuses the laptop, so the lease stays
    // expired and the new note never arrives.
    let again = laptop.serve(&["--listen", "127.0.0.1:0", "--no-mdns", "--peer", &dana_addr]);
    again.wait_until_serving(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    again.stop();
    let out = laptop.run_env(&skip, &show);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(!said(&out).contains(AFTER), "{}", describe(&out));
    let now = laptop.run_env(&[], &show);
    assert!(!said(&now).contains(AFTER), "{}", describe(&now));
    assert!(
        dana_serving.logs().contains("not enrolled") || dana_serving.logs().contains("revoked"),
        "{}",
        dana_serving.logs()
    );
    dana_serving.stop();
    // The passphrase never leaked into a log.
    assert!(!laptop_serving_log_leaks(&laptop));
}

fn laptop_serving_log_leaks(device: &Device) -> bool {
    std::fs::read_to_string(device.dir.with_extension("serve.log"))
        .is_ok_and(|log| log.contains(PASS) || log.contains(BEFORE) || log.contains(AFTER))
}
