//! The control socket of a running `huddle serve` plays the attacker's other process of
//! the same OS user: without proof (the passphrase, or an unlock session) it serves
//! nothing; a wrong passphrase is refused as a local open refuses it; `huddle lock` and
//! the idle lock close the node until `huddle unlock`, after which it syncs again.
//! Real binary, loopback only, mDNS off.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Device, PASS, Sandbox, describe, fail_output, stderr, stdout};

const SECRET: &str = "Sara M. disclosed a medication change";
const LATER: &str = "follow-up after the unlock";
const BLIND: &str = "Sam: seen at the front desk while the laptop was locked";

/// `huddle ARGS` on `device` with no `HUDDLE_PASSPHRASE` (and no terminal to ask on).
fn bare(device: &Device, args: &[&str]) -> Output {
    device.run_bare(args)
}

fn bare_ok(device: &Device, args: &[&str]) -> String {
    let out = bare(device, args);
    assert!(
        out.status.success(),
        "`huddle {}` failed: {}",
        args.join(" "),
        describe(&out)
    );
    stdout(&out)
}

/// Requires a refusal that printed nothing on stdout; returns stderr.
fn refused(out: &Output, args: &[&str]) -> String {
    let err = fail_output(out, args);
    assert_eq!(
        stdout(out),
        "",
        "`huddle {}` printed something",
        args.join(" ")
    );
    assert!(!err.contains(SECRET), "{err}");
    err
}

/// A clinic founded on `admin` with one clinical thread holding [`SECRET`].
fn clinic_with_a_secret(admin: &Device) -> String {
    admin.ok(&["init", "--clinic", "Maple Street", "--name", "Dana"]);
    let thread = admin.id(
        &[
            "thread",
            "new",
            "--patient",
            "Sara M.",
            "--category",
            "clinical",
            "--title",
            "Meds",
        ],
        32,
    );
    admin.ok(&["post", &thread, SECRET]);
    thread
}

fn session_file(device: &Device) -> std::path::PathBuf {
    device.dir.join("session")
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_control_socket_serves_only_with_the_passphrase_or_an_unlock_session() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    let thread = clinic_with_a_secret(&admin);
    let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    serving.wait_until_serving(Duration::from_secs(30));

    // No proof: nothing clinical, no invitation, and the two ways are named.
    let show = ["show", thread.as_str()];
    let err = refused(&bare(&admin, &show), &show);
    assert!(
        err.contains("HUDDLE_PASSPHRASE") && err.contains("huddle unlock"),
        "{err}"
    );
    let invite = [
        "invite",
        "--name",
        "Mallory",
        "--role",
        "clinician",
        "--admin",
    ];
    refused(&bare(&admin, &invite), &invite);
    let status = ["status"];
    refused(&bare(&admin, &status), &status);

    // A wrong passphrase: refused as a local open refuses it.
    let err = refused(
        &admin.run_with_pass("not-the-passphrase-at-all", &show),
        &show,
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    let err = refused(
        &admin.run_with_pass("not-the-passphrase-at-all", &["unlock"]),
        &["unlock"],
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!session_file(&admin).exists());

    // A forged session token is no proof either.
    std::fs::write(session_file(&admin), "ab".repeat(32)).expect("forged session");
    let err = refused(&bare(&admin, &show), &show);
    assert!(err.contains("huddle unlock"), "{err}");
    std::fs::remove_file(session_file(&admin)).expect("remove forged session");

    // The right passphrase is served.
    assert!(admin.ok(&show).contains(SECRET));
    assert_eq!(admin.json(&["invites"]), serde_json::json!([]));

    // `unlock` needs the passphrase itself, then opens an owner-only session.
    refused(&bare(&admin, &["unlock"]), &["unlock"]);
    admin.ok(&["unlock"]);
    assert_eq!(mode(&session_file(&admin)), 0o600);
    assert!(bare_ok(&admin, &show).contains(SECRET));
    bare_ok(&admin, &invite);

    // `lock` ends it: the file is gone, the node is closed, the same commands are refused.
    let out = bare_ok(&admin, &["lock"]);
    assert!(out.contains("locked"), "{out}");
    assert!(!session_file(&admin).exists());
    let err = refused(&bare(&admin, &show), &show);
    assert!(
        err.contains("locked") && err.contains("huddle unlock"),
        "{err}"
    );
    // Locked, even the passphrase opens nothing but through `unlock`.
    refused(&admin.run(&show), &show);
    assert!(bare_ok(&admin, &["status"]).contains("locked"));

    admin.ok(&["unlock"]);
    assert!(bare_ok(&admin, &show).contains(SECRET));
    serving.stop();
    assert!(!serving_logs_leak(&admin));
}

/// Whether the serve log holds the clinical text (it never should).
fn serving_logs_leak(device: &Device) -> bool {
    std::fs::read_to_string(device.dir.with_extension("serve.log"))
        .is_ok_and(|log| log.contains(SECRET) || log.contains(PASS))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The idle lock closes the node (its keys leave memory: every command but status and
/// unlock is refused, even with the passphrase) while its network goes on blind: what a
/// peer posts meanwhile is kept unread, and the unlock takes it in with the peer gone.
#[test]
fn serve_locks_when_idle_keeps_syncing_blind_and_an_unlock_takes_in_what_arrived() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    let thread = clinic_with_a_secret(&admin);

    // Sam joins through a first serve of the admin's.
    let first = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let sam_invite = admin.ok(&["invite", "--name", "Sam", "--role", "clinician"]);
    let sam = sandbox.device("sam");
    sam.ok(&["join", sam_invite.trim(), "--no-mdns"]);
    first.stop();
    let sam_listen = format!("127.0.0.1:{}", free_port());
    let admin_listen = format!("127.0.0.1:{}", free_port());
    let sam_serving = sam.serve(&["--listen", &sam_listen, "--no-mdns"]);
    sam_serving.wait_until_serving(Duration::from_secs(30));

    // The idle time is injected (seconds, a hidden test-only flag).
    let serving = admin.serve(&[
        "--listen",
        &admin_listen,
        "--no-mdns",
        "--peer",
        &sam_listen,
        "--idle-lock-seconds",
        // Long enough for the commands after the unlock (each checks the passphrase).
        "6",
    ]);
    serving.wait_until_serving(Duration::from_secs(30));
    wait_for("the idle lock", Duration::from_secs(30), || {
        let out = bare(&admin, &["--json", "status"]);
        stdout(&out).contains("\"locked\":true")
    });
    assert!(serving.logs().contains("locking"), "{}", serving.logs());

    // Locked: refused even with the passphrase; status says it syncs blind.
    let show = ["show", thread.as_str()];
    let err = refused(&admin.run(&show), &show);
    assert!(err.contains("locked"), "{err}");
    let status = bare_ok(&admin, &["status"]);
    assert!(
        status.contains("locked") && status.contains("syncs blind"),
        "{status}\n{}",
        serving.logs()
    );
    let wrong = admin.run_with_pass("not-the-passphrase-at-all", &["unlock"]);
    assert!(
        stderr(&wrong).contains("wrong passphrase"),
        "{}",
        describe(&wrong)
    );

    // Sam posts while the admin is locked: the locked node keeps it, unread.
    sam.ok(&["post", &thread, BLIND]);
    wait_for(
        "the post in the locked node's inbox",
        Duration::from_secs(60),
        || {
            let out = bare(&admin, &["--json", "status"]);
            let status: serde_json::Value =
                serde_json::from_str(stdout(&out).trim()).unwrap_or_default();
            status["network"] == "blind" && status["inbox"].as_u64().unwrap_or(0) >= 1
        },
    );
    assert!(!serving_logs_leak(&admin));
    sam_serving.stop();

    // Unlocked with Sam gone: the post is there, taken in from the inbox.
    admin.ok(&["unlock"]);
    assert!(admin.ok(&show).contains(BLIND));
    let status: serde_json::Value =
        serde_json::from_str(admin.ok(&["--json", "status"]).trim()).expect("status JSON");
    assert_ne!(status["locked"], true, "{status}");

    // And the unlocked node syncs as before: a post reaches Sam when Sam is back.
    admin.ok(&["post", &thread, LATER]);
    let sam_serving = sam.serve(&[
        "--listen",
        &sam_listen,
        "--no-mdns",
        "--peer",
        &admin_listen,
    ]);
    wait_for("the post at Sam", Duration::from_secs(60), || {
        // Commands keep the admin's node from idling while it syncs.
        admin.ok(&["status"]);
        sam.ok(&show).contains(LATER)
    });
    serving.stop();
    sam_serving.stop();
}

/// Sends one raw request to the control socket, as a program of the same OS user could
/// without the `huddle` client, and returns the reply as JSON.
fn raw_request(device: &Device, request: serde_json::Value) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut stream =
        std::os::unix::net::UnixStream::connect(device.dir.join("control.sock")).expect("connect");
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

/// The wire protocol played directly: no proof, a forged token, a token saved before a
/// lock, and a session from before a restart are all refused, and nothing clinical or
/// an invitation leaks into a reply.
#[test]
fn a_hand_written_client_of_the_socket_gets_nothing_without_proof() {
    let sandbox = Sandbox::new();
    let dana = sandbox.device("dana");
    let thread = clinic_with_a_secret(&dana);
    let serving = dana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let show = serde_json::json!({ "Run": { "Show": { "thread": thread } } });
    let invite = serde_json::json!({ "Run": { "Invite": {
        "name": "Mallory", "role": "Clinician", "admin": true, "valid_for_ms": 86_400_000u64
    } } });
    let attempts = [
        serde_json::json!({ "version": 1, "command": show }),
        serde_json::json!({ "version": 1, "command": { "Run": "Threads" } }),
        serde_json::json!({ "version": 1, "command": invite }),
        serde_json::json!({ "version": 1, "command": show, "proof": { "Token": "00".repeat(32) } }),
        serde_json::json!({ "version": 1, "command": show, "proof": { "Passphrase": "" } }),
        serde_json::json!({ "version": 1, "command": "Unlock", "proof": { "Token": "ab".repeat(32) } }),
        // The protocol before the typed one, and another version: refused as such.
        serde_json::json!({ "args": ["show", thread] }),
        serde_json::json!({ "version": 2, "command": show, "proof": { "Passphrase": common::PASS } }),
    ];
    for request in attempts {
        let reply = raw_request(&dana, request.clone());
        assert!(reply["answer"]["Failed"].is_string(), "{request} → {reply}");
        let text = reply.to_string();
        assert!(
            !text.contains(SECRET) && !text.contains("huddle-invite:"),
            "{text}"
        );
    }
    assert_eq!(dana.json(&["invites"]).as_array().map(Vec::len), Some(0));

    // A session token copied before `lock` does not outlive it.
    dana.ok(&["unlock"]);
    let token = std::fs::read_to_string(session_file(&dana)).expect("session");
    dana.ok(&["lock"]);
    dana.ok(&["unlock"]);
    let with_token = |token: &str| {
        serde_json::json!({
            "version": 1,
            "command": { "Run": { "Show": { "thread": thread } } },
            "proof": { "Token": token.trim() },
        })
    };
    let reply = raw_request(&dana, with_token(&token));
    assert!(reply["answer"]["Failed"].is_string(), "{reply}");
    assert!(!reply.to_string().contains(SECRET));

    // Nor does a session outlive its node.
    let token = std::fs::read_to_string(session_file(&dana)).expect("session");
    serving.stop();
    let serving = dana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let reply = raw_request(&dana, with_token(&token));
    assert!(reply["answer"]["Failed"].is_string(), "{reply}");
    assert!(!reply.to_string().contains(SECRET));
    serving.stop();
}
