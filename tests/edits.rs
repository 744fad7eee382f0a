//! `huddle edit` and `huddle retract` (issue #17) through the real binary, across two
//! devices carried by bundles: the author edits (marked "edited" everywhere) and retracts
//! (shown as "message retracted", its task closed and gone from `huddle tasks`); another
//! member can do neither; both are in the admin's audit trail by kind and message id.
//! `huddle post --reply-to`: the reply quotes its original on both devices, the quote
//! follows the original's edit and retraction, and the original counts its replies.

mod common;

use common::{Device, Sandbox};
use serde_json::Value;

/// The message `id` of `thread` as `show --json` gives it.
fn message(device: &Device, thread: &str, id: &str) -> Value {
    device.show(thread)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("message {id} not shown"))
        .clone()
}

/// Dana founds the clinic and enrolls a device for Lee P., a clinician.
fn dana_and_lee(sandbox: &Sandbox) -> (Device, Device) {
    let (admin, lee) = (sandbox.device("admin"), sandbox.device("lee"));
    admin.ok(&["init", "--clinic", "Maple Therapy", "--name", "Dana R."]);
    admin.ok(&["member", "add", "--name", "Lee P.", "--role", "clinician"]);
    let keys = lee.keys();
    admin.ok(&["device", "add", "--member", "Lee P.", "--key", &keys]);
    (admin, lee)
}

#[test]
fn the_author_edits_and_retracts_and_nobody_else_can() {
    let sandbox = Sandbox::new();
    let (admin, lee) = dana_and_lee(&sandbox);
    let thread = admin.id(
        &[
            "thread",
            "new",
            "--topic",
            "Friday coverage",
            "--category",
            "scheduling",
            "--title",
            "Therapist out sick",
        ],
        32,
    );
    let note = admin.id(&["post", &thread, "Who can cover the 3pm?"], 16);
    let task = admin.id(
        &[
            "post",
            &thread,
            "Call the Smiths to reschedule",
            "--urgent",
            "--task",
            "--assignee",
            "Lee P.",
            "--due",
            "2099-01-01",
        ],
        16,
    );
    let carry = |from: &Device, to: &Device, name: &str| {
        let bundle = sandbox.file(name);
        from.export(&bundle);
        to.import(&bundle);
    };
    carry(&admin, &lee, "to-lee.bundle");

    // Lee may read the thread but not change Dana's messages.
    let err = lee.fail(&["edit", &thread, &note, "Nobody can"]);
    assert!(
        err.contains(&format!("`{note}` is another member's")),
        "{err}"
    );
    let err = lee.fail(&["retract", &thread, &task[..6]]);
    assert!(err.contains("another member's"), "{err}");

    // Dana edits (by a prefix of the id) and retracts her own.
    assert_eq!(
        admin
            .ok(&["edit", &thread, &note[..6], "Who can cover the 4pm?"])
            .trim(),
        note
    );
    let shown = message(&admin, &thread, &note);
    assert_eq!(shown["body"], "Who can cover the 4pm?");
    assert_eq!(shown["edited"], true);
    assert!(admin.ok(&["show", &thread]).contains("(edited)"));
    admin.ok(&["retract", &thread, &task]);
    let gone = message(&admin, &thread, &task);
    assert_eq!(
        (&gone["retracted"], &gone["body"]),
        (&Value::Bool(true), &"".into())
    );
    assert_eq!(gone["priority"], "normal");
    assert_eq!(gone["task"]["status"], "done");
    let text = admin.ok(&["show", &thread]);
    assert!(text.contains("(message retracted)"), "{text}");
    assert!(!text.contains("Call the Smiths"), "{text}");
    assert!(
        !admin.ok(&["tasks"]).contains(&task),
        "a retracted task is nobody's"
    );

    // What cannot be done says so.
    let err = admin.fail(&["edit", &thread, &task, "Back again"]);
    assert!(
        err.contains(&format!("message `{task}` was retracted")),
        "{err}"
    );
    let err = admin.fail(&["edit", &thread, &note, "   "]);
    assert!(err.contains("empty"), "{err}");

    // Lee's device, once it has the changes, shows the same.
    carry(&admin, &lee, "to-lee-2.bundle");
    assert_eq!(message(&lee, &thread, &note)["edited"], true);
    assert_eq!(message(&lee, &thread, &task)["retracted"], true);
    assert!(!lee.ok(&["tasks", "--mine"]).contains(&task));

    // The admin's trail names both, by message id (never the text).
    let trail = admin.ok(&["audit", "--csv"]);
    assert!(
        trail.contains("message-edited") && trail.contains(&note),
        "{trail}"
    );
    assert!(
        trail.contains("message-retracted") && trail.contains(&task),
        "{trail}"
    );
    assert!(!trail.contains("4pm"), "the trail carries no message text");
}

#[test]
fn a_reply_quotes_its_original_on_both_devices_and_follows_it() {
    let sandbox = Sandbox::new();
    let (admin, lee) = dana_and_lee(&sandbox);
    let new_thread = |title: &str| {
        admin.id(
            &[
                "thread",
                "new",
                "--topic",
                "Friday",
                "--category",
                "scheduling",
                "--title",
                title,
            ],
            32,
        )
    };
    let (thread, other) = (new_thread("Therapist out sick"), new_thread("Parking"));
    let note = admin.id(&["post", &thread, "Who can cover the 3pm?"], 16);
    let elsewhere = admin.id(&["post", &other, "Lot B is closed"], 16);
    let carry = |from: &Device, to: &Device, name: &str| {
        let bundle = sandbox.file(name);
        from.export(&bundle);
        to.import(&bundle);
    };
    carry(&admin, &lee, "to-lee.bundle");

    let answer = lee.id(
        &["post", &thread, "I can take it", "--reply-to", &note[..6]],
        16,
    );
    let shown = message(&lee, &thread, &answer);
    assert_eq!(shown["body"], "I can take it");
    assert_eq!(shown["reply_to"]["id"], note.as_str());
    assert_eq!(shown["reply_to"]["author"], "Dana R.");
    assert_eq!(shown["reply_to"]["quote"], "Who can cover the 3pm?");
    assert_eq!(message(&lee, &thread, &note)["replies"], 1);
    // Only a message of the same thread, there and not retracted, can be answered.
    let err = lee.fail(&["post", &thread, "Me too", "--reply-to", &elsewhere]);
    assert!(err.contains("no message"), "{err}");

    carry(&lee, &admin, "to-admin.bundle");
    let text = admin.ok(&["show", &thread]);
    assert!(
        text.contains(&format!(
            "> in reply to Dana R. [{note}]: Who can cover the 3pm?"
        )),
        "{text}"
    );
    assert!(text.contains("1 reply"), "{text}");

    // The quote is read from the original: an edit shows in it, a retraction empties it.
    admin.ok(&["edit", &thread, &note, "Who can cover the 4pm?"]);
    let quoted = message(&admin, &thread, &answer);
    assert_eq!(quoted["reply_to"]["quote"], "Who can cover the 4pm?");
    admin.ok(&["retract", &thread, &note]);
    let quoted = message(&admin, &thread, &answer);
    assert_eq!(
        (
            &quoted["reply_to"]["retracted"],
            &quoted["reply_to"]["quote"]
        ),
        (&Value::Bool(true), &"".into())
    );
    let text = admin.ok(&["show", &thread]);
    assert!(text.contains("message retracted"), "{text}");
    assert!(
        !text.contains("4pm"),
        "a retraction takes the quote away: {text}"
    );
    let err = admin.fail(&["post", &thread, "Anyone?", "--reply-to", &note]);
    assert!(err.contains("was retracted"), "{err}");
    carry(&admin, &lee, "to-lee-2.bundle");
    assert_eq!(
        message(&lee, &thread, &answer)["reply_to"]["retracted"],
        true
    );
}
