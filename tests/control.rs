//! "Unlock required everywhere" (45 CFR 164.312(a)(2)(i) and (d)) at the control socket
//! of a running node: any process of the same OS user can reach the socket, so a command
//! is served only with the passphrase or a session that `huddle unlock` opened with it;
//! `huddle lock` ends it. Played with the real binary and with a hand-written client of
//! the socket's wire format (a program of the same user that never asks for a
//! passphrase).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use common::{Device, PASS, Sandbox, stderr, stdout};

/// A clinic with a clinical thread holding one note; Ana's node serving.
fn clinic(sandbox: &Sandbox) -> (Device, String, common::Serving) {
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = ana.id(
        &[
            "thread",
            "new",
            "--patient",
            "Jane Doe",
            "--category",
            "clinical",
            "--title",
            "Intake",
        ],
        32,
    );
    ana.ok(&["post", &thread, "reports panic attacks"]);
    let serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    (ana, thread, serving)
}

/// Sends one raw request to the control socket and returns the reply as JSON.
fn raw_request(device: &Device, request: serde_json::Value) -> serde_json::Value {
    let mut stream = UnixStream::connect(device.dir.join("control.sock")).expect("connect");
    stream
        .write_all(request.to_string().as_bytes())
        .expect("send");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    serde_json::from_str(&raw).expect("a JSON reply")
}

#[test]
fn a_running_node_serves_nothing_without_proof_of_the_passphrase() {
    let sandbox = Sandbox::new();
    let (ana, thread, serving) = clinic(&sandbox);

    // A program of the same user, straight to the socket, without a proof.
    for args in [
        vec!["show", thread.as_str()],
        vec!["--json", "show", thread.as_str()],
        vec![
            "invite",
            "--name",
            "Mallory",
            "--role",
            "clinician",
            "--admin",
        ],
        vec!["threads"],
    ] {
        let reply = raw_request(&ana, serde_json::json!({ "args": args }));
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains("needs proof of the passphrase"), "{reply}");
        assert!(!reply.to_string().contains("panic attacks"), "{reply}");
        assert!(!reply.to_string().contains("huddle-invite:"), "{reply}");
    }
    // With a session token it never got.
    let reply = raw_request(
        &ana,
        serde_json::json!({ "args": ["show", thread], "proof": { "Session": "00".repeat(32) } }),
    );
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("session has ended"),
        "{reply}"
    );
    let invites = ana.json(&["invites"]);
    assert_eq!(
        invites.as_array().map(Vec::len),
        Some(0),
        "no invitation: {invites}"
    );

    // The CLI without a passphrase and without a terminal: refused, nothing printed.
    let out = ana.run_without_pass(&["show", &thread]);
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("panic attacks"));
    assert!(
        stderr(&out).contains("HUDDLE_PASSPHRASE"),
        "{}",
        stderr(&out)
    );

    // A wrong passphrase is refused, as without a running node.
    let out = ana.run_with_pass("not the passphrase at all", &["show", &thread]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("panic attacks"));

    // The right one is served.
    assert!(ana.ok(&["show", &thread]).contains("panic attacks"));
    serving.stop();
}

#[test]
fn unlock_opens_a_session_that_lock_ends() {
    let sandbox = Sandbox::new();
    let (ana, thread, serving) = clinic(&sandbox);
    let session = ana.dir.join("session");

    let out = ana.ok(&["unlock"]);
    assert!(out.contains("unlocked"), "{out}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session)
            .expect("session file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }
    // No passphrase needed while the session lasts.
    let out = ana.run_without_pass(&["show", &thread]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("panic attacks"));
    // `unlock` itself needs the passphrase, not the session.
    let out = ana.run_without_pass(&["unlock"]);
    assert!(!out.status.success());

    let out = ana.run_without_pass(&["lock"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("locked"));
    assert!(!session.exists(), "the session file is removed");
    let out = ana.run_without_pass(&["show", &thread]);
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("panic attacks"));

    // A session saved before a lock (a copied file) is refused and then forgotten.
    ana.ok(&["unlock"]);
    let copy = std::fs::read(&session).expect("session");
    ana.ok(&["lock"]);
    std::fs::write(&session, &copy).expect("restore the copy");
    let out = ana.run_without_pass(&["show", &thread]);
    assert!(
        stderr(&out).contains("session has ended"),
        "{}",
        stderr(&out)
    );
    assert!(!session.exists(), "an ended session is forgotten");

    // A restarted node knows no session.
    ana.ok(&["unlock"]);
    serving.stop();
    let serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let out = ana.run_without_pass(&["show", &thread]);
    assert!(
        stderr(&out).contains("session has ended"),
        "{}",
        stderr(&out)
    );
    serving.stop();
}

#[test]
fn wrong_passphrases_at_a_running_node_slow_down() {
    let sandbox = Sandbox::new();
    let (ana, thread, serving) = clinic(&sandbox);
    for _ in 0..3 {
        let out = ana.run_with_pass("guess guess guess", &["show", &thread]);
        assert!(
            stderr(&out).contains("wrong passphrase"),
            "{}",
            stderr(&out)
        );
    }
    // The third failure makes the next attempt wait, even with the right passphrase.
    let out = ana.run_with_pass(PASS, &["show", &thread]);
    assert!(
        stderr(&out).contains("too many wrong passphrases: try again in"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert!(ana.ok(&["show", &thread]).contains("panic attacks"));
    serving.stop();
}
