//! The offline lease (45 CFR 164.312(a)(2)(iii) for a device off the network): a
//! device that has not synced with its clinic for longer than the policy's lease (7
//! days by default) locks its clinical threads on its own, turning its clock back does
//! not unlock them, and one sync with a peer does. Days pass through
//! `HUDDLE_CLOCK_SKIP_MS` (forward only), never by waiting. Every step drives the real
//! `huddle` binary over loopback libp2p.

mod common;

use std::time::{Duration, Instant};

use common::{Device, Sandbox, stderr};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn new_thread(device: &Device, args: &[&str]) -> String {
    let mut all = vec!["thread", "new"];
    all.extend_from_slice(args);
    device.id(&all, 32)
}

/// A clinical thread about a patient, on `device`.
fn clinical_thread(device: &Device) -> String {
    new_thread(
        device,
        &[
            "--patient",
            "Jane Doe",
            "--category",
            "clinical",
            "--title",
            "Intake",
        ],
    )
}

/// `huddle ARGS` on `device` with its clock moved `days` ahead.
fn days_later(device: &Device, days: u64, args: &[&str]) -> std::process::Output {
    let skip = (days * DAY_MS).to_string();
    device.run_env(&[("HUDDLE_CLOCK_SKIP_MS", skip.as_str())], args)
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_device_offline_past_its_lease_locks_clinical_threads_until_it_syncs() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let clinical = clinical_thread(&ana);
    let rota = new_thread(
        &ana,
        &[
            "--topic",
            "Rota",
            "--category",
            "operations",
            "--title",
            "Week",
        ],
    );
    ana.ok(&["post", &clinical, "session notes"]);
    ana.ok(&["post", &rota, "rota posted"]);
    let ana_serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let invite = ana.ok(&["invite", "--name", "Bea", "--role", "clinician"]);
    let bea = sandbox.device("bea");
    bea.ok(&["join", invite.trim(), "--no-mdns"]);
    bea.ok(&["show", &clinical]);

    // Six days off the network: within the lease.
    let out = days_later(&bea, 6, &["show", &clinical]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Eight days: clinical threads are locked, others stay readable.
    let out = days_later(&bea, 8, &["show", &clinical]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("clinical threads are locked"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("session notes"));
    let out = days_later(&bea, 8, &["--json", "threads"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("threads json");
    let entry = listed
        .as_array()
        .and_then(|a| a.iter().find(|t| t["id"] == clinical.as_str()))
        .expect("the clinical thread is listed");
    assert_eq!(entry["readable"], false, "{entry}");
    assert!(
        entry["title"].is_null() && entry["subject"].is_null(),
        "{entry}"
    );
    let out = days_later(&bea, 8, &["show", &rota]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = days_later(&bea, 8, &["--json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(status["lease_expired"], true);

    // Turning the clock back (no skip) does not extend the lease: the latest time seen
    // is kept.
    let err = bea.fail(&["show", &clinical]);
    assert!(err.contains("clinical threads are locked"), "{err}");

    // One sync with the clinic (Ana is remembered from the join) unlocks them again.
    let serving = bea.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    eventually("a sync with Ana", || bea.status()["lease_expired"] == false);
    serving.stop();
    let shown = bea.show(&clinical);
    assert!(shown.to_string().contains("session notes"), "{shown}");
    ana_serving.stop();
}

#[test]
fn a_device_alone_in_its_clinic_has_no_lease() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Solo", "--name", "Ana"]);
    let clinical = clinical_thread(&ana);
    let out = days_later(&ana, 30, &["show", &clinical]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_admin_sets_the_lease_and_the_idle_lock_in_policy_within_their_ranges() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let shown = ana.ok(&["policy"]);
    assert!(shown.contains("idle lock: 15 minutes"), "{shown}");
    assert!(shown.contains("offline lease: 7 days"), "{shown}");
    assert!(shown.contains("clinician reads: clinical"), "{shown}");
    for bad in [
        ["--idle-lock", "0"],
        ["--lease-days", "365"],
        ["--emergency-minutes", "0"],
    ] {
        let mut args = vec!["policy", "set"];
        args.extend_from_slice(&bad);
        let err = ana.fail(&args);
        assert!(err.contains("must be between"), "{err}");
    }
    ana.ok(&["policy", "set", "--lease-days", "2", "--idle-lock", "5"]);
    let policy = ana.json(&["policy"]);
    assert_eq!(policy["safeguards"]["offline_lease_days"], 2);
    assert_eq!(policy["safeguards"]["idle_lock_minutes"], 5);

    // The new lease applies: three days off the network lock clinical threads.
    let clinical = clinical_thread(&ana);
    let ana_serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let invite = ana.ok(&["invite", "--name", "Bea", "--role", "clinician"]);
    let bea = sandbox.device("bea");
    bea.ok(&["join", invite.trim(), "--no-mdns"]);
    assert_eq!(bea.json(&["policy"])["safeguards"]["offline_lease_days"], 2);
    let err = bea.fail(&["policy", "set", "--lease-days", "30"]);
    assert!(err.contains("admin"), "{err}");
    let out = days_later(&bea, 3, &["show", &clinical]);
    assert!(stderr(&out).contains("clinical threads are locked"));
    ana_serving.stop();
}
