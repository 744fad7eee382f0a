//! Editing and retracting one's own message (issue #17): the changes [`ThreadDoc::edit`]
//! and [`ThreadDoc::retract`] make pass the rules unchanged since the previous release
//! (so a device of that release accepts them), show as "edited" and "retracted" on
//! every device, keep the earlier text in the document's history, and stay out of reach
//! of any other member, locally and by forgery.

use super::*;

/// `change`, checked as the rules check a received one, then applied to `to`.
fn deliver(thread: &Thread, to: &mut ThreadDoc, device: DeviceId, at: u64, change: &[u8]) {
    to.check(CATEGORY, thread.id, &author(device, at), &member_of, change)
        .expect("the rules admit the author's own change");
    thread.apply(to, device, at, change).expect("applies");
}

fn view(doc: &ThreadDoc, id: &str) -> MessageView {
    let messages = doc.messages().unwrap();
    messages.into_iter().find(|m| m.id == id).expect("listed")
}

/// The text of message `id` as of `heads`.
fn body_at(doc: &ThreadDoc, id: &str, heads: &[automerge::ChangeHash]) -> String {
    let m = message_obj(&doc.doc, id);
    match doc.doc.get_at(&m, "body", heads).unwrap() {
        Some((automerge::Value::Scalar(s), _)) => s.as_str().unwrap_or_default().to_string(),
        other => panic!("no body: {other:?}"),
    }
}

#[test]
fn an_edit_shows_as_edited_everywhere_and_keeps_the_old_text_in_history() {
    let (thread, mut observer, plain, task) = scene();
    let messages = observer.messages().unwrap();
    assert!(
        messages.iter().all(|m| !m.edited && !m.retracted),
        "posts are not edits"
    );
    let heads = observer.doc.get_heads();
    // Bea edits from her phone: another device of the same member.
    let mut phone = ThreadDoc::load(&observer.save(), &BEA_PHONE).unwrap();
    let change = phone
        .edit(&plain, &M_BEA, "message 1, corrected", 3_000)
        .unwrap();
    deliver(&thread, &mut observer, BEA_PHONE, 3_000, &change);
    let edited = view(&observer, &plain);
    assert_eq!(edited.body, "message 1, corrected");
    assert!(edited.edited && !edited.retracted);
    assert_eq!(
        (edited.author, edited.device, edited.at_ms),
        (M_BEA, BEA, 2_000)
    );
    assert!(
        !view(&observer, &task).edited,
        "only the edited message is marked"
    );
    assert_eq!(body_at(&observer, &plain, &heads), "message 1");
    // Edited twice, from the first device: still one message, the newest text.
    let mut bea = ThreadDoc::load(&observer.save(), &BEA).unwrap();
    let again = bea.edit(&plain, &M_BEA, "message 1, final", 3_100).unwrap();
    deliver(&thread, &mut observer, BEA, 3_100, &again);
    assert_eq!(view(&observer, &plain).body, "message 1, final");
    assert_eq!(observer.messages().unwrap().len(), 2);
}

#[test]
fn a_retraction_empties_the_text_lowers_urgency_and_closes_the_task() {
    let (thread, mut observer, _, task) = scene();
    let heads = observer.doc.get_heads();
    let mut bea = ThreadDoc::load(&observer.save(), &BEA).unwrap();
    // Bea's task message is made urgent first, as a post with --urgent would be.
    let m = message_obj(&bea.doc, &task);
    bea.doc.put(&m, "priority", "urgent").unwrap();
    let urgent = bea.commit(2_900).unwrap();
    deliver(&thread, &mut observer, BEA, 2_900, &urgent);
    let change = bea.retract(&task, &M_BEA, 3_000).unwrap();
    deliver(&thread, &mut observer, BEA, 3_000, &change);
    let gone = view(&observer, &task);
    assert!(gone.retracted && !gone.edited);
    assert_eq!(gone.body, "");
    assert_eq!(gone.priority, Priority::Normal);
    let t = gone.task.expect("the task is still there, closed");
    assert_eq!(
        (t.status, t.done_by, t.done_ms),
        (TaskStatus::Done, Some(M_BEA), Some(3_000))
    );
    assert_eq!(
        body_at(&observer, &task, &heads),
        "message 2",
        "kept in history"
    );
    // Nothing more to do to it.
    assert!(matches!(
        bea.edit(&task, &M_BEA, "back", 3_100),
        Err(ThreadError::Retracted(_))
    ));
    assert!(matches!(
        bea.retract(&task, &M_BEA, 3_100),
        Err(ThreadError::Retracted(_))
    ));
}

#[test]
fn another_member_can_neither_edit_nor_retract_locally_nor_by_forgery() {
    let (thread, mut observer, plain, task) = scene();
    let mut dan = ThreadDoc::load(&observer.save(), &DAN).unwrap();
    assert!(matches!(
        dan.edit(&plain, &M_DAN, "rewritten", 3_000),
        Err(ThreadError::NotYours(_))
    ));
    assert!(matches!(
        dan.retract(&task, &M_DAN, 3_000),
        Err(ThreadError::NotYours(_))
    ));
    // A modified client writes what `retract` would, on Bea's message.
    let forged = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &plain);
        d.put(&m, "body", "").unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &forged),
        Rule::MessageOwner
    );
    let forged = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &plain);
        d.put(&m, "body", "rewritten by Dan").unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &forged),
        Rule::MessageOwner
    );
    assert!(!view(&observer, &plain).edited);
}
