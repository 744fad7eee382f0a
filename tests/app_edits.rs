//! Editing and retracting one's own message in the app (issue #17), on two devices: the
//! author's *Edit* and *Retract* (with a confirmation), what the other device shows
//! ("edited", "message retracted", the old text gone), and no such buttons on another
//! member's message. Lee answers with *Reply*: the reply quotes Sam's message on both
//! screens, and the quote follows Sam's edit and retraction. *Devices* says the other
//! device is online.

mod app_kit;

use app_kit::clinic_with_lee;
use egui_kittest::kittest::{NodeT, Queryable};

#[test]
fn the_author_edits_and_retracts_and_the_other_device_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut lee) = clinic_with_lee(dir.path(), "clinician");
    lee.wait_with(&mut sam, "the thread on Lee's device", |a| {
        a.has("Intake follow-up")
    });
    sam.click("Intake follow-up");
    sam.post("Please call the family at 3pm");
    sam.wait_label("Please call the family at 3pm");
    lee.click("Intake follow-up");
    lee.wait_with(&mut sam, "Sam's message on Lee's device", |a| {
        a.has("Please call the family at 3pm")
    });
    assert!(
        !lee.has("Retract") && lee.harness.query_by_label("Edit").is_none(),
        "no Edit or Retract on another member's message"
    );

    // Lee replies: the composer names the message answered until it is sent.
    lee.click("Reply");
    lee.wait_label("Replying to Sam K.: Please call the family at 3pm");
    lee.post("I will call them");
    lee.wait_label("I will call them");
    lee.wait_label("In reply to Sam K.: Please call the family at 3pm");
    assert!(
        !lee.has("Replying to"),
        "sent: the composer is a plain one again"
    );
    sam.wait_with(&mut lee, "the reply on Sam's device", |a| {
        a.has("In reply to Sam K.: Please call the family at 3pm") && a.has("1 reply")
    });

    // Sam edits: the box starts with the text; it is replaced whole.
    sam.click("Edit");
    assert_eq!(
        sam.harness.get_by_label("Edit message").value().as_deref(),
        Some("Please call the family at 3pm")
    );
    sam.harness.get_by_label("Edit message").focus();
    sam.harness.step();
    sam.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    sam.harness
        .get_by_label("Edit message")
        .type_text("Please call the family at 4pm");
    sam.harness.step();
    sam.click("Save edit");
    sam.wait_for("the edit box to close", |h| {
        h.query_by_label("Edit message").is_none()
    });
    sam.wait_label("Please call the family at 4pm");
    assert!(sam.has("edited"));
    lee.wait_with(&mut sam, "the edit on Lee's device", |a| {
        a.has("Please call the family at 4pm") && a.has("edited")
    });
    assert!(!lee.has("3pm"), "the quote follows the edit too");
    lee.wait_label("In reply to Sam K.: Please call the family at 4pm");

    // Sam retracts, after saying yes.
    sam.click("Retract");
    sam.wait_label("Retract this message?");
    sam.click("Keep it");
    assert!(sam.has("4pm"), "Keep it keeps the message");
    sam.click("Retract");
    sam.click("Retract message");
    // (The question itself quotes "message retracted": wait for the placeholder.)
    sam.wait_for("the placeholder", |h| {
        h.query_by_label("message retracted").is_some()
    });
    let left: Vec<String> = sam
        .harness
        .query_all_by_label_contains("4pm")
        .map(|n| format!("{:?}", n.accesskit_node().label()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        sam.harness.query_by_label("Edit").is_none(),
        "a retracted message has nothing left to edit"
    );
    lee.wait_with(&mut sam, "the retraction on Lee's device", |a| {
        a.harness.query_by_label("message retracted").is_some()
    });
    assert!(!lee.has("4pm"));
    lee.wait_label("In reply to Sam K.: message retracted");
    // Presence: Sam's *Devices* says Lee's device is online (from the connection).
    sam.click("Devices");
    sam.wait_label("online");
    sam.stop();
    lee.stop();
}
