//! A direct message in the app (issue #17), on two devices: Sam (a clinician) writes to
//! Lee at the front desk with *Message…*; the conversation opens, headed by both names,
//! without *Restrict…*; Lee finds it under *Direct* (not among patients or topics),
//! reads it though a scheduler reads no clinical thread, and answers with a task.

mod app_kit;

use app_kit::clinic_with_lee;

#[test]
fn a_direct_message_opens_is_listed_apart_and_reaches_the_other_person() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut lee) = clinic_with_lee(dir.path(), "scheduler");
    sam.click("Message…");
    sam.wait_label("New direct message");
    assert!(
        !sam.has("Sam K. (clinician)"),
        "one does not write to oneself"
    );
    assert!(sam.has("Tick at least one person to write to."));
    sam.click("Lee P. (scheduler)");
    sam.click("Start conversation");
    sam.wait_label("only its participants read it, no one can be added");
    assert!(!sam.has("New direct message"), "the dialog closed");
    assert!(!sam.has("Restrict…"), "its participants are fixed");
    sam.post("Can you move my 3 pm to Thursday?");
    sam.wait_label("Can you move my 3 pm to Thursday?");

    // Lee's list: under Direct, not under Patients or Topics.
    lee.wait_with(&mut sam, "the conversation on Lee's device", |a| {
        a.has("Lee P., Sam K.")
    });
    lee.click("Topics");
    assert!(!lee.has("Lee P., Sam K."), "not a topic");
    lee.click("Direct");
    lee.wait_label("Lee P., Sam K.");
    lee.click("Lee P., Sam K. (1 unread)");
    lee.wait_label("Can you move my 3 pm to Thursday?");
    lee.post("Done: Thursday 3 pm");
    sam.wait_with(&mut lee, "Lee's answer on Sam's device", |a| {
        a.has("Done: Thursday 3 pm")
    });
    lee.stop();
    sam.stop();
}
