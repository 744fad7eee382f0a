//! Presence (issue #17): `huddle devices` through a running serve says which devices are
//! online now, from the serve's authenticated connections, and otherwise the day each
//! was last seen — never a time of day.

mod common;

use std::time::{Duration, Instant};

use common::{Device, Sandbox};
use serde_json::Value;

/// `seen` of the device of `member` in `from`'s `devices --json`.
fn seen(from: &Device, member: &str) -> Value {
    from.json(&["devices"])
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["member"] == member)
        .map(|d| d["seen"].clone())
        .unwrap_or_else(|| panic!("no device of {member}"))
}

fn eventually(from: &Device, member: &str, want: Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = seen(from, member);
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{member} is {now}, not {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn devices_say_online_from_connections_and_otherwise_the_day_last_seen() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    admin.ok(&["init", "--clinic", "Maple Therapy", "--name", "Dana R."]);
    let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    serving.wait_until_serving(Duration::from_secs(20));
    let invite = admin.ok(&["invite", "--name", "Lee P.", "--role", "clinician"]);
    let port = common::invitation_port(&invite);
    let lee = sandbox.device("lee");
    lee.ok(&["join", invite.trim(), "--no-mdns"]);
    // Joined, not connected: not online.
    assert_ne!(seen(&admin, "Lee P."), "online");
    let lee_serving = lee.serve_dialing(&port);
    eventually(&admin, "Lee P.", "online".into());
    eventually(&lee, "Dana R.", "online".into());
    let text = admin.ok(&["devices"]);
    let lee_line = text
        .lines()
        .find(|l| l.contains("Lee P."))
        .unwrap_or_default();
    assert!(lee_line.ends_with("· online"), "{text}");
    assert!(text.contains("(this device)"), "{text}");

    lee_serving.stop();
    eventually(&admin, "Lee P.", "today".into());
    let text = admin.ok(&["devices"]);
    assert!(text.contains("last seen today"), "{text}");
    assert!(
        !text.chars().any(|c| c == ':'),
        "no time of day is shown: {text}"
    );
    serving.stop();
}
