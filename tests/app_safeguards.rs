//! The app's safeguard screens, driven as a user drives them (egui_kittest, real nodes
//! on loopback libp2p, no mDNS): the admin's audit trail (filters, verify, CSV export
//! matching `huddle audit --csv`), restricting a thread and breaking glass, and
//! changing the passphrase (checked afterwards with the `huddle` CLI).

mod app_kit;
mod common;

use std::time::{Duration, Instant};

use app_kit::{App, PASS, WIDE, clinic_with_lee, net, open_app};
use egui_kittest::kittest::{NodeT, Queryable};
use huddle::node::{AuditFilter, Node};

/// Asks for the audit page again until `done` holds (other devices' entries arrive by
/// sync); both apps keep running meanwhile.
fn audit_until(admin: &mut App, other: &mut App, what: &str, done: impl Fn(&App) -> bool) {
    let start = Instant::now();
    loop {
        admin.click("Show entries");
        for _ in 0..10 {
            admin.harness.step();
            other.harness.step();
            std::thread::sleep(Duration::from_millis(30));
        }
        if done(admin) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "timed out waiting for {what}; {}",
            admin.describe()
        );
    }
}

/// The members named on the audit page shown.
fn page_members(app: &App) -> Vec<String> {
    let state = &app.harness.state().state;
    let page = state.audit.as_ref().expect("an audit page");
    page.rows
        .iter()
        .map(|r| r.member_name.clone().unwrap_or_default())
        .collect()
}

fn page_kinds(app: &App) -> Vec<&'static str> {
    let state = &app.harness.state().state;
    state
        .audit
        .as_ref()
        .map(|p| p.rows.iter().map(|r| r.event.kind()).collect())
        .unwrap_or_default()
}

#[test]
fn the_admin_filters_verifies_and_exports_the_audit_trail_as_the_cli_does() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut lee) = clinic_with_lee(dir.path(), "clinician");
    // A member's device has no audit screen.
    assert!(!lee.has("Audit trail"), "{}", lee.describe());
    lee.wait_with(&mut sam, "the thread on Lee's device", |a| {
        a.has("Intake follow-up")
    });
    lee.click("Intake follow-up");
    sam.click("Audit trail");
    sam.wait_label("entries");
    // Lee's view of the thread reaches Sam's trail; the member filter keeps only it.
    sam.fill("Member", "Lee P.");
    audit_until(&mut sam, &mut lee, "Lee's view in the trail", |a| {
        page_kinds(a).contains(&"thread-viewed")
    });
    let members = page_members(&sam);
    assert!(
        !members.is_empty() && members.iter().all(|m| m == "Lee P."),
        "{members:?}"
    );
    assert!(sam.has("thread-viewed"));
    assert!(sam.has("Lee P. · "));
    // In names and titles: the thread Sam may read by its title (its id on hover).
    let short = sam.harness.state().state.snapshot.threads[0].thread.short();
    assert!(
        sam.harness.query_by_label("Intake follow-up").is_some()
            && sam.harness.query_by_label(&short).is_none(),
        "the viewed thread by its title, not {short}: {}",
        sam.describe()
    );
    // Verify: every chain held is intact.
    sam.click("Verify");
    sam.wait_label("Verified: every audit chain held is intact");
    // An unknown member is named, not silently empty.
    sam.click("Clear filters");
    sam.fill("Member", "Nobody Here");
    sam.click("Show entries");
    sam.wait_for("the refusal naming the member", |h| {
        h.state()
            .state
            .toasts
            .iter()
            .any(|t| t.error && t.text.contains("Nobody Here"))
    });
    // Export Sam's entries to a file.
    sam.click("Clear filters");
    sam.fill("Member", "Sam K.");
    sam.click("Show entries");
    let csv_path = dir.path().join("audit.csv");
    sam.fill("Export to file", csv_path.to_str().unwrap());
    sam.click("Export CSV…");
    sam.wait_label("Exported");
    // The export is itself in the trail (the page is read again after it).
    sam.wait_for("the export entry", |h| {
        h.state()
            .state
            .audit
            .as_ref()
            .is_some_and(|p| p.rows.iter().any(|r| r.event.kind() == "export"))
    });
    assert!(sam.has("export"));
    // The same export again would replace the file: refused.
    sam.click("Export CSV…");
    sam.wait_label("never replaces a file");
    let exported = std::fs::read_to_string(&csv_path).expect("the export");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&csv_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    sam.stop();
    lee.stop();
    // `huddle audit --csv` on Sam's data gives the same rows, and after them the entry
    // of the export itself.
    let cli = common::Device {
        dir: dir.path().join("sam"),
    };
    let out = cli.run_with_pass(PASS, &["audit", "--csv", "--member", "Sam K."]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let from_cli = common::stdout(&out);
    assert!(exported.lines().count() >= 3, "{exported}");
    assert!(
        from_cli.starts_with(&exported),
        "app:\n{exported}\ncli:\n{from_cli}"
    );
    let after: Vec<&str> = from_cli[exported.len()..].lines().collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].contains(",Sam K.,export,"), "{after:?}");
}

#[test]
fn a_restricted_thread_is_opened_in_an_emergency_with_a_reason_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut lee) = clinic_with_lee(dir.path(), "clinician");
    lee.wait_with(&mut sam, "the thread on Lee's device", |a| {
        a.has("Intake follow-up")
    });
    // Sam restricts the thread to himself.
    sam.click("Intake follow-up");
    sam.click("Restrict…");
    sam.click("Sam K.");
    sam.click("Restrict thread");
    sam.wait_label("Thread restricted to Sam K.");
    lee.wait_with(&mut sam, "the restricted thread on Lee's device", |a| {
        a.has("Restricted thread")
    });
    assert!(!lee.has("Intake follow-up"));
    assert!(!lee.has("Jane Doe"));
    lee.click("Restricted thread");
    lee.wait_label("Reason for emergency access");
    // No reason, no access.
    assert!(
        lee.harness
            .get_by_label("Break glass")
            .accesskit_node()
            .is_disabled()
    );
    lee.fill(
        "Reason for emergency access",
        "Covering for Sam: the patient called in crisis",
    );
    lee.click("Break glass");
    lee.wait_with(&mut sam, "the thread opened in an emergency", |a| {
        a.has("Emergency access by Lee P.") && a.has("Intake follow-up")
    });
    assert!(lee.has("the patient called in crisis"));
    // Announced in the thread on Sam's device, and in the admin's audit trail.
    sam.wait_with(&mut lee, "the announcement on Sam's device", |a| {
        a.has("Emergency access by Lee P.")
    });
    sam.click("Audit trail");
    audit_until(&mut sam, &mut lee, "the emergency in the trail", |a| {
        let kinds = page_kinds(a);
        kinds.contains(&"emergency-access") && kinds.contains(&"thread-restricted")
    });
    assert!(sam.has("emergency-access"));
    // And on the admin screen, while it lasts.
    sam.click("Admin");
    sam.wait_label("Lee P.: emergency access to thread");
    assert!(sam.has("(active)"));
    sam.stop();
    lee.stop();
}

#[test]
fn changing_the_passphrase_refuses_weak_ones_and_the_old_one_stops_working() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huddle");
    let mut app = open_app(&data, net(&[]), Duration::from_secs(900), WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    let new = "quiet violet harbor 2031";
    app.click("Settings");
    // A wrong current passphrase changes nothing and locks, like a failed unlock.
    app.fill("Current passphrase", "not the passphrase at all");
    app.fill("New passphrase", new);
    app.fill("Repeat new passphrase", new);
    app.click("Change passphrase");
    app.wait_label("That current passphrase is wrong: nothing was changed");
    app.wait_label("Unlock");
    app.fill("Passphrase", PASS);
    app.click("Unlock");
    app.wait_label("Change passphrase");
    // Weak new passphrases are refused with the reason, and Huddle stays open.
    app.fill("Current passphrase", PASS);
    app.fill("New passphrase", "too short");
    app.fill("Repeat new passphrase", "too short");
    app.click("Change passphrase");
    app.wait_label("at least 12 characters");
    app.fill("New passphrase", "password1234");
    app.fill("Repeat new passphrase", "password1234");
    app.click("Change passphrase");
    app.wait_label("common password");
    assert!(app.has("Lock"));
    // A good one works: Huddle opens again with it.
    app.fill("New passphrase", new);
    app.fill("Repeat new passphrase", new);
    app.click("Change passphrase");
    app.wait_label("Passphrase changed");
    app.wait_label("Lock");
    app.stop();
    let cli = common::Device { dir: data.clone() };
    let old = cli.run_with_pass(PASS, &["status"]);
    assert!(!old.status.success(), "{}", common::describe(&old));
    assert!(
        common::stderr(&old).contains("wrong passphrase"),
        "{}",
        common::describe(&old)
    );
    let out = cli.run_with_pass(new, &["status"]);
    assert!(out.status.success(), "{}", common::describe(&out));
    // The wrong current passphrase counted as a failed unlock, audited.
    let node = Node::open(&data, new.as_bytes()).expect("opens with the new passphrase");
    let trail = node.audit_trail(&AuditFilter::default()).expect("admin");
    let kinds: Vec<&str> = trail.records.iter().map(|r| r.event.kind()).collect();
    assert!(kinds.contains(&"failed-unlocks"), "{kinds:?}");
}

/// The key of entry `seq` of `device`'s audit chain in the store's `envelopes` tree.
fn audit_key(device: &str, seq: u64) -> Vec<u8> {
    let mut key = vec![3u8];
    key.extend([0u8; 17]);
    key.extend(common::unhex(device));
    key.extend(seq.to_be_bytes());
    key
}

/// One byte of an audit entry edited on disk with the app closed. The store is
/// quarantined: the app's unlock refuses it, saying on the unlock screen that the store
/// was changed outside Huddle and to run `huddle repair`; `audit verify` on the
/// quarantined node (what `huddle audit verify` runs) names the edited entry; once the
/// record is put back as it was, the app unlocks and its Verify finds every chain intact.
#[test]
fn verify_in_the_app_names_an_entry_edited_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huddle");
    let mut app = open_app(&data, net(&[]), Duration::from_secs(900), WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    app.new_thread("Jane Doe", "Intake follow-up", "clinical");
    app.post("First note");
    app.wait_label("First note");
    app.post("Second note");
    app.wait_label("Second note");
    let device = app
        .harness
        .state()
        .state
        .snapshot
        .status
        .as_ref()
        .expect("open")
        .device
        .clone();
    app.stop();
    // One byte of entry #1 of this device's chain changed, with the app closed.
    let key = audit_key(&device, 1);
    let original = {
        let db = sled::open(&data).expect("open the store with sled");
        let tree = db.open_tree("envelopes").unwrap();
        let original = tree.get(&key).unwrap().expect("entry #1").to_vec();
        let mut entry = original.clone();
        let at = entry.len() - 80;
        entry[at] ^= 0x01;
        tree.insert(&key, entry).unwrap();
        db.flush().unwrap();
        original
    };
    let mut app = open_app(&data, net(&[]), Duration::from_secs(900), WIDE);
    app.fill("Passphrase", PASS);
    app.click("Unlock");
    app.wait_label("store was changed outside Huddle");
    assert!(app.has("run huddle repair"), "{}", app.describe());
    assert!(app.has("Huddle is locked"), "{}", app.describe());
    assert!(!app.has("Audit trail"), "{}", app.describe());
    app.stop();

    let node = Node::open_or_quarantine(&data, PASS.as_bytes()).expect("opens quarantined");
    let findings: Vec<String> = node
        .audit_verify()
        .expect("chain checks")
        .iter()
        .map(|f| f.to_string())
        .collect();
    let short = &device[..8];
    assert_eq!(findings, [format!("device {short}…: entry #1 was edited")]);
    drop(node);

    // Put back as it was: the store is Huddle's again.
    {
        let db = sled::open(&data).expect("open the store with sled");
        db.open_tree("envelopes")
            .unwrap()
            .insert(&key, original)
            .unwrap();
        db.flush().unwrap();
    }
    let mut app = open_app(&data, net(&[]), Duration::from_secs(900), WIDE);
    app.fill("Passphrase", PASS);
    app.click("Unlock");
    app.wait_label("Lock");
    app.click("Audit trail");
    app.click("Verify");
    app.wait_label("every audit chain held is intact");
    app.stop();
}
