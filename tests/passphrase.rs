//! The passphrase through the `huddle` binary: weak and common ones are refused at
//! `init`; `passphrase change` makes the old one useless and the new one open everything
//! (refused with a wrong current passphrase or while `serve` runs, nothing changed);
//! repeated wrong passphrases meet a growing delay, recorded owner-only, reset by the
//! right one.

mod common;

use std::path::Path;

use common::{Device, PASS, Sandbox, fail_output};

const NEW: &str = "violet harbour 2209 lantern";

fn digest(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).expect("file")).to_vec()
}

fn founded(sandbox: &Sandbox) -> Device {
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    ana
}

#[test]
fn weak_and_common_passphrases_are_refused_at_init() {
    let sandbox = Sandbox::new();
    let kim = sandbox.device("kim");
    let args = ["init", "--clinic", "Sunrise", "--name", "Kim"];
    for (pass, why) in [
        ("eleven char", "at least 12 characters"),
        ("123456789012", "only digits and punctuation"),
        ("zzzzzzzzzzzzzz", "one character repeated"),
        ("PASSWORD1234", "common password"),
        (
            "Password2024!",
            "common password with digits or punctuation",
        ),
        ("!!Sunshine123456", "common password"),
    ] {
        let out = kim.run_with_pass(pass, &args);
        let err = fail_output(&out, &args);
        assert!(
            err.contains("too weak") && err.contains(why),
            "{pass}: {err}"
        );
        assert!(!kim.dir.exists(), "{pass}: nothing is left behind");
    }
    kim.ok(&args);
}

#[test]
fn passphrase_change_retires_the_old_one() {
    let sandbox = Sandbox::new();
    let ana = founded(&sandbox);
    let before = ana.status();
    let identity = ana.dir.join("identity.huddle");
    let change = ["passphrase", "change"];

    // Refused, nothing changed: a wrong current one, a weak new one, the same one.
    let unchanged = digest(&identity);
    for (current, new, why) in [
        ("not the passphrase", NEW, "wrong passphrase"),
        (PASS, "password1234", "too weak"),
        (PASS, PASS, "is the current one"),
    ] {
        let out = ana.run_env(
            &[
                ("HUDDLE_PASSPHRASE", current),
                ("HUDDLE_NEW_PASSPHRASE", new),
            ],
            &change,
        );
        let err = fail_output(&out, &change);
        assert!(err.contains(why), "{err}");
        assert_eq!(digest(&identity), unchanged);
    }
    assert_eq!(ana.status(), before);

    // Refused while `serve` holds the directory.
    let serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let out = ana.run_env(&[("HUDDLE_NEW_PASSPHRASE", NEW)], &change);
    assert!(fail_output(&out, &change).contains("stop the `huddle serve`"));
    serving.stop();
    // (`serve` rewrites the identity file when it starts: same passphrase, new nonce.)
    let unchanged = digest(&identity);

    let out = ana.run_env(&[("HUDDLE_NEW_PASSPHRASE", NEW)], &change);
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_ne!(
        digest(&identity),
        unchanged,
        "the identity file is re-wrapped"
    );
    let out = ana.run(&["status"]);
    assert!(fail_output(&out, &["status"]).contains("wrong passphrase"));
    let out = ana.run_with_pass(NEW, &["--json", "status"]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let mut after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // (The audit trail grew meanwhile: the failed unlock, the change.)
    let mut before = before;
    for s in [&mut before, &mut after] {
        s.as_object_mut().unwrap().remove("envelopes");
    }
    assert_eq!(after, before);
}

#[test]
fn repeated_wrong_passphrases_meet_a_growing_delay_reset_by_the_right_one() {
    let sandbox = Sandbox::new();
    let ana = founded(&sandbox);
    let record = ana.dir.join("unlock-failures");
    // Five free failures, then a sixth: each a plain "wrong passphrase".
    for n in 1..=6 {
        let out = ana.run_with_pass("not the passphrase", &["status"]);
        let err = fail_output(&out, &["status"]);
        assert!(err.contains("wrong passphrase"), "attempt {n}: {err}");
    }
    let text = std::fs::read_to_string(&record).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("F ")).count(), 6);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&record).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Now even the right passphrase waits (1 s after the sixth failure).
    let out = ana.run(&["status"]);
    let err = fail_output(&out, &["status"]);
    assert!(err.contains("try again in 1 s"), "{err}");
    // Two more failures recorded just now: the wait has doubled twice.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::fs::write(&record, format!("{text}F {now}\nF {now}\n")).unwrap();
    let out = ana.run(&["status"]);
    let err = fail_output(&out, &["status"]);
    assert!(
        err.contains("try again in 4 s") || err.contains("try again in 3 s"),
        "{err}"
    );
    // Once the wait has passed the right passphrase opens, and the count starts again.
    std::thread::sleep(std::time::Duration::from_millis(4100));
    ana.ok(&["status"]);
    assert!(!record.exists(), "the failures were taken by the unlock");
    let out = ana.run_with_pass("not the passphrase", &["status"]);
    assert!(fail_output(&out, &["status"]).contains("wrong passphrase"));
    ana.ok(&["status"]);
}

/// Wrong passphrases are audited (45 CFR 164.312(b)): recorded at the next unlock, with
/// how many and when, in the admin-readable trail.
#[test]
fn failed_unlocks_are_audited_at_the_next_unlock() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    for _ in 0..2 {
        let out = ana.run_with_pass("not the passphrase, sorry", &["status"]);
        assert!(!out.status.success());
    }
    let trail = ana.json(&["audit"]);
    let failed: Vec<&serde_json::Value> = trail["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["event"] == "failed-unlocks")
        .collect();
    assert_eq!(failed.len(), 1, "{trail}");
    assert_eq!(failed[0]["details"], "2 attempts", "{trail}");
    // Recorded once: the next unlock has nothing new to add.
    let trail = ana.json(&["audit"]);
    let count = trail["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["event"] == "failed-unlocks")
        .count();
    assert_eq!(count, 1, "{trail}");
}
