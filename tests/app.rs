//! The desktop app, driven through its accessible labels with a real node behind it
//! (egui_kittest; in-process bridge; loopback libp2p, no mDNS).

mod app_kit;

use std::time::Duration;

use app_kit::{clinic_with_lee, net, open_app};
use egui_kittest::kittest::{NodeT, Queryable};

const WIDE: [f32; 2] = app_kit::WIDE;

#[test]
fn first_run_founds_a_clinic_creates_a_thread_and_posts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huddle");
    let mut app = open_app(&data, net(&[]), Duration::from_secs(900), WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    app.new_thread("Jane Doe", "Intake follow-up", "clinical");
    app.post("Please call the family back today");
    app.wait_label("Please call the family back today");
    assert!(app.has("Sam K."));
    // Opening the thread from the list is audited.
    app.click("Intake follow-up");
    app.stop();
    // The store was created and closed cleanly: the CLI reads the message back.
    assert!(data.join("identity.huddle").exists());
    // Opening the thread and posting are in the audit trail, with ids only.
    let node = huddle::node::Node::open(&data, app_kit::PASS.as_bytes()).expect("reopens");
    let trail = node
        .audit_trail(&huddle::node::AuditFilter::default())
        .expect("the founder is an admin");
    let kinds: Vec<&str> = trail.records.iter().map(|r| r.event.kind()).collect();
    assert!(kinds.contains(&"thread-viewed"), "{kinds:?}");
    assert!(kinds.contains(&"post"), "{kinds:?}");
    assert!(!format!("{trail:?}").contains("Jane"), "no patient text");
}

#[test]
fn a_message_from_another_device_arrives_with_unread_count_and_a_notification_without_patient_text()
{
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut lee) = clinic_with_lee(dir.path(), "clinician");
    lee.wait_with(&mut sam, "the thread on Lee's device", |a| {
        a.has("Intake follow-up")
    });
    sam.click("Intake follow-up");
    sam.fill("Message", "@Lee P. please call the family of Jane Doe");
    sam.click("Urgent");
    sam.click("Send");
    lee.wait_with(&mut sam, "the unread badge", |a| a.has("1 unread"));
    assert!(lee.has("URGENT"));
    lee.wait_with(&mut sam, "the notifications", |a| {
        a.notifier.shown().len() >= 2
    });
    let shown = lee.notifier.shown();
    assert!(
        shown
            .iter()
            .any(|a| matches!(a, huddle::app::notify::Alert::Urgent { .. })),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|a| matches!(a, huddle::app::notify::Alert::Mention { .. })),
        "{shown:?}"
    );
    for alert in &shown {
        let (summary, body) = alert.text();
        for secret in ["Jane", "Doe", "Intake", "call"] {
            assert!(
                !summary.contains(secret) && !body.contains(secret),
                "{summary} {body}"
            );
        }
    }
    // Opening the thread reads it: the badge goes, Sam sees the receipt.
    lee.click("Intake follow-up (1 urgent, 1 unread)");
    lee.wait_label("please call the family");
    // The mention is marked on Lee's screen, not on Sam's.
    assert!(lee.has("mentions you"), "{}", lee.describe());
    assert!(!sam.has("mentions you"));
    sam.wait_with(&mut lee, "the read receipt", |a| a.has("read by Lee P."));
    sam.stop();
    lee.stop();
}

#[test]
fn a_schedulers_app_lists_the_clinical_thread_only_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut kim) = clinic_with_lee(dir.path(), "scheduler");
    kim.wait_with(&mut sam, "the locked thread", |a| {
        a.has("Locked clinical thread")
    });
    assert!(!kim.has("Intake follow-up"));
    assert!(!kim.has("Jane Doe"));
    sam.stop();
    kim.stop();
}

#[test]
fn a_task_assigned_in_the_composer_shows_in_the_assignees_my_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut lee) = clinic_with_lee(dir.path(), "clinician");
    sam.wait_with(&mut lee, "Lee's member on Sam's device", |a| {
        a.harness
            .state()
            .state
            .snapshot
            .members
            .iter()
            .any(|m| m.name == "Lee P.")
    });
    sam.click("Intake follow-up");
    sam.fill("Message", "Please upload evaluation for billing");
    sam.click("Task");
    sam.choose("Assignee", "Lee P.");
    // A month typed, the day chosen on the calendar beside the field.
    let year = huddle::localtime::today().year() + 1;
    sam.fill("Due (YYYY-MM-DD)", &format!("{year}-03-01"));
    sam.click(&format!("Calendar: Mar 1, {year}"));
    sam.click("15");
    // (The calendar is moved into the window once its size is known; kittest's pointer
    // misses its Save button there, a real mouse does not — checked under Xvfb.)
    sam.harness.get_by_label("Save").click_accesskit();
    sam.harness.step();
    let due = format!("{year}-03-15");
    sam.wait_for("the day chosen in the field", |h| {
        h.query_by_label("Due (YYYY-MM-DD)")
            .and_then(|n| n.value())
            .is_some_and(|v| v == due)
    });
    sam.click("Send");
    sam.wait_label("Task for Lee P.");
    lee.click("My tasks");
    lee.wait_with(&mut sam, "the task in Lee's list", |a| {
        a.has("Please upload evaluation for billing")
    });
    assert!(lee.has(&due));
    assert!(lee.has("Patient: Jane Doe"), "whom the task is about");
    lee.wait_with(&mut sam, "the task notification", |a| {
        a.notifier
            .shown()
            .iter()
            .any(|n| matches!(n, huddle::app::notify::Alert::TaskAssigned { .. }))
    });
    lee.click("Mark done");
    sam.wait_with(&mut lee, "the task done on Sam's device", |a| {
        a.has("done by Lee P.")
    });
    sam.stop();
    lee.stop();
}

#[test]
fn idle_lock_clears_keys_and_needs_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huddle");
    let mut app = open_app(&data, net(&[]), Duration::from_millis(1500), WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    app.new_thread("Jane Doe", "Intake follow-up", "clinical");
    assert!(
        data.join("control.sock").exists(),
        "the running app serves the control socket"
    );
    // Nobody touches the app.
    app.wait_for("the idle lock", |h| h.query_by_label("Unlock").is_some());
    assert!(!app.has("Intake follow-up"));
    assert!(app.harness.state().state.snapshot.threads.is_empty());
    assert!(app.harness.state().state.thread.is_none());
    // The node is closed (its keys dropped with it) and its network goes on blind: the
    // control socket answers only that it is locked, without any proof.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
        .env_remove("HUDDLE_PASSPHRASE")
        .args(["--data-dir", data.to_str().unwrap(), "--json", "status"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        said.contains("\"locked\":true") && said.contains("\"network\":\"blind\""),
        "{said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    app.fill("Passphrase", "not the passphrase at all");
    app.click("Unlock");
    // Beside the field, in words, with what the next tries cost (not in a toast).
    app.wait_label("That passphrase is wrong. 5 tries left before a 1-second wait.");
    assert!(
        app.harness.state().state.toasts.iter().all(|t| !t.error),
        "the refusal is not a toast"
    );
    app.fill("Passphrase", app_kit::PASS);
    app.click("Unlock");
    app.wait_label("Intake follow-up");
    app.stop();
}

/// Another program of the same OS user plays `huddle unlock` against the desktop app.
/// Before the fix, the app's socket answered "unlocked" to any passphrase (the app's
/// node had no lock of its own there, so nothing was checked) and wrote a session that
/// served every command once the user unlocked, and the app's own lock never ended a
/// session. Now a locked app opens no session at all, an open app checks the passphrase
/// (a wrong one is recorded like any failed unlock), and every lock of the app ends the
/// session; the lock is audited.
#[test]
fn attack_locked_app_session() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huddle");
    let mut app = open_app(&data, net(&[]), Duration::from_secs(900), WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    app.new_thread("Jane Doe", "Intake follow-up", "clinical");
    let cli = |pass: Option<&str>, args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"));
        command
            .env_remove("HUDDLE_PASSPHRASE")
            .env_remove("HUDDLE_DATA_DIR")
            .args(["--data-dir", data.to_str().unwrap()])
            .args(args)
            .stdin(std::process::Stdio::null());
        if let Some(pass) = pass {
            command.env("HUDDLE_PASSPHRASE", pass);
        }
        command.output().unwrap()
    };
    let said = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let session = data.join("session");

    // Locked: no session opens through the socket, whatever the passphrase.
    app.click("Lock");
    app.wait_label("Unlock");
    for pass in ["not the passphrase at all", app_kit::PASS] {
        let out = cli(Some(pass), &["unlock"]);
        assert!(!out.status.success(), "{}", said(&out));
        assert!(
            said(&out).contains("unlock it in its window"),
            "{}",
            said(&out)
        );
        assert!(!session.exists(), "no session file");
    }
    // The user unlocks: nothing the other program tried opened anything.
    app.fill("Passphrase", app_kit::PASS);
    app.click("Unlock");
    app.wait_label("Intake follow-up");
    let out = cli(None, &["threads"]);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(!said(&out).contains("Intake"), "{}", said(&out));
    // Unlocked: a wrong passphrase is refused (and recorded), the right one opens a
    // session that serves commands…
    let out = cli(Some("not the passphrase at all"), &["unlock"]);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(!session.exists());
    let out = cli(Some(app_kit::PASS), &["unlock"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(session.exists());
    let out = cli(None, &["threads"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("Intake follow-up"), "{}", said(&out));
    // …until the app locks: its own lock ends the session, and an unlock in the window
    // does not bring it back.
    app.click("Lock");
    app.wait_label("Unlock");
    app.fill("Passphrase", app_kit::PASS);
    app.click("Unlock");
    app.wait_label("Intake follow-up");
    let out = cli(None, &["threads"]);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("session has ended"), "{}", said(&out));
    app.stop();

    let node = huddle::node::Node::open(&data, app_kit::PASS.as_bytes()).expect("reopens");
    let trail = node
        .audit_trail(&huddle::node::AuditFilter::default())
        .expect("the founder is an admin");
    let kinds: Vec<&str> = trail.records.iter().map(|r| r.event.kind()).collect();
    assert!(
        kinds.iter().filter(|k| **k == "lock").count() >= 2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"failed-unlocks"), "{kinds:?}");
}

#[test]
fn a_revoked_devices_app_shows_it_was_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut lee) = clinic_with_lee(dir.path(), "clinician");
    lee.wait_with(&mut sam, "the thread on Lee's device", |a| {
        a.has("Intake follow-up")
    });
    sam.click("Admin");
    sam.wait_with(&mut lee, "Lee's device in the admin list", |a| {
        a.harness
            .query_all_by_label_contains("Revoke device")
            .next()
            .is_some()
    });
    let revoke = sam
        .harness
        .query_all_by_label_contains("Revoke device")
        .next()
        .unwrap()
        .accesskit_node()
        .label()
        .unwrap();
    sam.click(&revoke);
    sam.click(&revoke.replace("Revoke device", "Confirm revoking"));
    lee.wait_with(&mut sam, "Lee's app to show the removal", |a| {
        a.has("This device was removed from the clinic")
    });
    assert!(!lee.has("Intake follow-up"));
    sam.stop();
    lee.stop();
}

#[test]
fn at_800_px_the_list_and_the_thread_are_two_views_with_keyboard_navigation() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = open_app(
        &dir.path().join("huddle"),
        net(&[]),
        Duration::from_secs(900),
        [800.0, 600.0],
    );
    app.found("Maple Therapy", "Sam K.", "clinician");
    app.new_thread("Jane Doe", "Intake follow-up", "clinical");
    // The new thread opened in place of the list.
    app.wait_label("Back to threads");
    assert!(!app.has("Search threads"));
    app.click("Back to threads");
    app.new_thread("R. Diaz", "Referral", "clinical");
    // Ctrl+Enter sends.
    app.fill("Message", "sent from the keyboard");
    app.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    app.wait_label("sent from the keyboard");
    // Esc goes back to the list; Ctrl+K focuses the search box.
    app.harness.key_press(egui::Key::Escape);
    app.wait_label("Search threads");
    assert!(!app.has("Back to threads"));
    app.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::K);
    app.wait_for("the search box to take focus", |h| {
        h.get_by_label("Search threads").is_focused()
    });
    app.harness.get_by_label("Search threads").type_text("diaz");
    app.wait_for("the filtered list", |h| {
        h.query_all_by_label_contains("Intake follow-up")
            .next()
            .is_none()
    });
    assert!(app.has("Referral"));
    app.stop();
}

#[test]
fn five_threads_in_a_row_and_the_dialog_keeps_what_was_typed_until_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huddle");
    let mut app = open_app(&data, net(&[]), Duration::from_secs(900), WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    for n in 1..=5 {
        app.new_thread(
            &format!("Client {n}"),
            &format!("Follow-up {n}"),
            "clinical",
        );
    }
    for n in 1..=5 {
        assert!(app.has(&format!("Follow-up {n}")), "thread {n} listed");
    }
    // Create waits, and says why; a click beside the dialog (on the list behind it)
    // and Escape keep the dialog and what was typed.
    app.click("New thread");
    app.fill("Patient", "Jane Doe");
    app.wait_label("Write a title.");
    let behind = app.harness.query_all_by_label("Follow-up 1").next();
    behind.expect("the list behind the dialog").click();
    app.harness.step();
    app.harness.step();
    app.harness.key_press(egui::Key::Escape);
    app.harness.step();
    app.harness.step();
    assert!(app.has("Write a title."), "the dialog is still open");
    assert_eq!(
        app.harness.get_by_label("Patient").value().as_deref(),
        Some("Jane Doe")
    );
    app.click("Cancel");
    assert!(!app.has("Write a title."), "Cancel closes it");
    // An empty dialog closes with Escape.
    app.click("New thread");
    app.wait_label("Write the patient's label (as the clinic's records name them).");
    app.harness.key_press(egui::Key::Escape);
    app.harness.step();
    app.harness.step();
    assert!(!app.has("Create thread"), "Escape closes an empty dialog");
    app.stop();
}
