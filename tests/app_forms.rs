//! The app's forms as a person meets them (issue #17): refusals shown beside the form in
//! plain words with everything typed kept, Enter sending (a setting that outlives a
//! restart), and the Admin screen's invitation with its expiry.

mod app_kit;

use std::time::Duration;

use app_kit::{WIDE, net, open_app};
use egui_kittest::kittest::{NodeT, Queryable};
use huddle::app::prefs::Prefs;

const IDLE: Duration = Duration::from_secs(900);

#[test]
fn a_refused_form_says_why_beside_it_and_keeps_what_was_typed() {
    let dir = tempfile::tempdir().unwrap();
    // A join with something that is not an invitation: refused in words, the fields
    // (passphrases too) kept for the next try.
    let mut lee = open_app(&dir.path().join("lee"), net(&[]), IDLE, WIDE);
    lee.click("Join with an invitation");
    lee.fill("Invitation", "huddle-invite:not-one");
    lee.fill("Passphrase", app_kit::PASS);
    lee.fill("Repeat passphrase", app_kit::PASS);
    lee.click("Join clinic");
    lee.wait_label("That is not a Huddle invitation. Copy it again");
    assert_eq!(
        lee.harness.get_by_label("Invitation").value().as_deref(),
        Some("huddle-invite:not-one")
    );
    assert!(
        !lee.harness.state().view.setup.passphrase.is_empty()
            && !lee.harness.state().view.setup.repeat.is_empty(),
        "a failed join keeps both passphrase fields"
    );
    assert!(lee.harness.state().state.toasts.is_empty(), "not a toast");
    lee.stop();

    // A member name already taken: said beside the Add member form, the name kept.
    let mut sam = open_app(&dir.path().join("sam"), net(&[]), IDLE, WIDE);
    sam.found("Maple Therapy", "Sam K.", "clinician");
    assert!(
        sam.harness.state().view.setup.passphrase.is_empty(),
        "the passphrase leaves the form once the clinic is open"
    );
    sam.click("Admin");
    sam.fill("Member name", "Sam K.");
    sam.click("Add member and invite");
    sam.wait_label("A member named Sam K. already exists.");
    assert_eq!(
        sam.harness.get_by_label("Member name").value().as_deref(),
        Some("Sam K.")
    );
    // Sent again and carried out: the refusal goes, and so does the name.
    sam.harness.get_by_label("Member name").focus();
    sam.harness.step();
    sam.harness.key_press(egui::Key::End);
    sam.harness.get_by_label("Member name").type_text("2");
    sam.harness.step();
    sam.click("Add member and invite");
    sam.wait_label("Invitation for Sam K.2");
    assert!(!sam.has("already exists"));
    // The invitation arrives just before the request reports done: wait a frame or two.
    sam.wait_for("the member name to empty", |h| {
        h.get_by_label("Member name").value().as_deref() == Some("")
    });
    sam.stop();
}

#[test]
fn enter_sends_shift_enter_starts_a_line_and_the_setting_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huddle");
    let mut app = open_app(&data, net(&[]), IDLE, WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    app.new_thread("Jane Doe", "Intake follow-up", "clinical");
    app.fill("Message", "First line");
    app.harness
        .key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::Enter);
    app.harness.get_by_label("Message").type_text("second line");
    app.harness.step();
    assert_eq!(
        app.harness.get_by_label("Message").value().as_deref(),
        Some("First line\nsecond line"),
        "Shift+Enter starts a new line"
    );
    app.harness.key_press(egui::Key::Enter);
    app.wait_label("second line");
    app.wait_for("the composer to empty", |h| {
        h.get_by_label("Message").value().as_deref() == Some("")
    });

    // Off: Enter is a new line again, Ctrl+Enter sends.
    app.click("Settings");
    app.click("Enter sends (Shift+Enter starts a new line)");
    assert!(!Prefs::load(&data).enter_sends, "the setting is saved");
    app.click("Threads");
    app.click("Intake follow-up");
    app.fill("Message", "Not yet");
    app.harness.key_press(egui::Key::Enter);
    app.harness.step();
    assert_eq!(
        app.harness.get_by_label("Message").value().as_deref(),
        Some("Not yet\n")
    );
    app.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    app.wait_label("Not yet");
    app.stop();

    // The next start keeps the setting.
    let again = open_app(&data, net(&[]), IDLE, WIDE);
    assert!(!again.harness.state().view.prefs.enter_sends);
    again.stop();
}

/// `huddle ARGS` on `data`, through the running app's control socket.
fn cli(data: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("HUDDLE_PASSPHRASE", app_kit::PASS)
        .env_remove("HUDDLE_DATA_DIR")
        .output()
        .expect("run huddle");
    assert!(
        out.status.success(),
        "huddle {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_admin_screen_follows_invitations_changed_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huddle");
    let mut app = open_app(&data, net(&[]), IDLE, WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    app.click("Admin");
    assert!(app.has("Invitation valid (days)"));
    // Issued beside the app, by the CLI: listed without leaving the screen.
    let kim = std::thread::scope(|s| {
        let issued = s.spawn(|| cli(&data, &["invite", "--name", "Kim L.", "--role", "billing"]));
        while !issued.is_finished() {
            app.harness.step();
            std::thread::sleep(Duration::from_millis(20));
        }
        issued.join().expect("the CLI")
    });
    assert!(kim.starts_with("huddle-invite:"), "{kim}");
    app.wait_label("Cancel invitation for Kim L.");
    // Cancelled from the CLI: gone from the list.
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&data, &["--json", "invites"])).expect("JSON");
    let id = listed[0]["id"].as_str().expect("an id").to_string();
    std::thread::scope(|s| {
        let cancelled = s.spawn(|| cli(&data, &["invite", "cancel", &id]));
        while !cancelled.is_finished() {
            app.harness.step();
            std::thread::sleep(Duration::from_millis(20));
        }
        cancelled.join().expect("the CLI");
    });
    app.wait_for("the cancelled invitation to leave the list", |h| {
        h.query_all_by_label_contains("Cancel invitation for Kim L.")
            .next()
            .is_none()
    });
    app.stop();
}

#[test]
fn the_sync_line_says_true_words_and_keeps_off_the_tabs_at_800_px() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = open_app(&dir.path().join("huddle"), net(&[]), IDLE, [800.0, 600.0]);
    app.found("Maple Street Therapy", "Sam K.", "clinician");
    // A one-device clinic is not "offline", and opening a thread (an audit entry) is
    // not a change waiting to sync.
    app.new_thread("Jane Doe", "Intake follow-up", "clinical");
    app.wait_label("only this device so far");
    assert!(!app.has("waiting"), "{}", app.describe());
    let rect = |label: &str| {
        app.harness
            .query_all_by_label_contains(label)
            .find_map(|n| n.accesskit_node().bounding_box())
            .unwrap_or_else(|| panic!("{label} shown"))
    };
    let line = rect("only this device so far");
    for tab in ["Admin", "Audit trail", "Settings"] {
        let tab = rect(tab);
        let apart =
            line.x1 <= tab.x0 || tab.x1 <= line.x0 || line.y1 <= tab.y0 || tab.y1 <= line.y0;
        assert!(apart, "the sync line {line:?} is drawn over {tab:?}");
    }
    app.stop();
}

/// A draft stays with its thread: text typed in one patient's thread is not in the
/// composer of another's, and comes back when its thread is opened again; sending
/// empties only the draft that was sent.
#[test]
fn each_thread_keeps_its_own_draft() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = open_app(&dir.path().join("huddle"), net(&[]), IDLE, WIDE);
    app.found("Maple Therapy", "Sam K.", "clinician");
    app.new_thread("Jane Doe", "Intake follow-up", "clinical");
    app.new_thread("John Roe", "Discharge plan", "clinical");
    let draft = |app: &app_kit::App| app.harness.get_by_label("Message").value();
    let open = |app: &mut app_kit::App, title: &str| {
        app.click(title);
        app.wait_for("the thread to open", |h| {
            h.state()
                .state
                .thread
                .as_ref()
                .is_some_and(|t| t.title == title)
                && h.query_by_label("Message").is_some()
        });
    };
    app.fill("Message", "John's ride is at 4");
    open(&mut app, "Intake follow-up");
    assert_eq!(
        draft(&app).as_deref(),
        Some(""),
        "Jane's thread starts empty"
    );
    app.fill("Message", "Jane's mother called");
    open(&mut app, "Discharge plan");
    assert_eq!(draft(&app).as_deref(), Some("John's ride is at 4"));
    app.click("Send");
    app.wait_label("John's ride is at 4");
    app.wait_for("the sent draft to empty", |h| {
        h.get_by_label("Message").value().as_deref() == Some("")
    });
    open(&mut app, "Intake follow-up");
    assert_eq!(
        draft(&app).as_deref(),
        Some("Jane's mother called"),
        "the other draft is kept"
    );
    app.stop();
}
