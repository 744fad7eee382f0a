//! Replies (issue #17): a reply names the message it answers in `reply_to`, written
//! only in the change that creates the reply and only as a well-formed message key.
//! Nobody, the reply's own author included, can later point a message at another one,
//! and a forged value of the wrong form is refused whole.

use super::*;

/// Dan's device posts a message; `extra` adds to the new message's fields.
fn forged_post(
    target: &mut ThreadDoc,
    extra: impl FnOnce(&mut AutoCommit, &automerge::ObjId),
) -> Vec<u8> {
    let key = message_key(&[0x77; MESSAGE_RANDOM_BYTES], &M_DAN);
    forge(target, 3_000, |d| {
        let (_, messages) = d.get(ROOT, "messages").unwrap().unwrap();
        let m = d.put_object(&messages, key.as_str(), ObjType::Map).unwrap();
        d.put(&m, "author", M_DAN.to_hex()).unwrap();
        d.put(&m, "device", DAN.to_hex()).unwrap();
        d.put(&m, "at_ms", 3_000_i64).unwrap();
        d.put(&m, "body", "Done, see above").unwrap();
        d.put(&m, "priority", "normal").unwrap();
        extra(d, &m);
    })
}

fn reply(doc: &mut ThreadDoc, device: DeviceId, n: u8, to: &str) -> Result<Posted, ThreadError> {
    doc.post(&NewMessage {
        random: [n; MESSAGE_RANDOM_BYTES],
        author: member_of(&device).expect("member"),
        device,
        at_ms: 3_000,
        body: format!("reply {n}"),
        priority: Priority::Normal,
        task: None,
        reply_to: Some(to.to_string()),
    })
}

#[test]
fn a_reply_names_its_original_on_every_device() {
    let (thread, mut observer, plain, _) = scene();
    let mut dan = ThreadDoc::load(&observer.save(), &DAN).unwrap();
    let posted = reply(&mut dan, DAN, 9, &plain).expect("a reply to a message there");
    observer
        .check(
            CATEGORY,
            thread.id,
            &author(DAN, 3_000),
            &member_of,
            &posted.change,
        )
        .expect("the rules admit an honest reply");
    thread
        .apply(&mut observer, DAN, 3_000, &posted.change)
        .expect("applies");
    let shown = observer.messages().unwrap();
    let r = shown.iter().find(|m| m.id == posted.id).expect("listed");
    assert_eq!(r.reply_to.as_deref(), Some(plain.as_str()));
    assert!(
        shown
            .iter()
            .filter(|m| m.id != posted.id)
            .all(|m| m.reply_to.is_none()),
        "only the reply answers something"
    );
}

#[test]
fn a_reply_needs_an_original_that_is_there_and_not_retracted() {
    let (_, mut observer, plain, _) = scene();
    let mut bea = ThreadDoc::load(&observer.save(), &BEA).unwrap();
    let nowhere = message_key(&[0x99; MESSAGE_RANDOM_BYTES], &M_BEA);
    assert!(matches!(
        reply(&mut bea, BEA, 9, &nowhere),
        Err(ThreadError::UnknownMessage(_))
    ));
    bea.retract(&plain, &M_BEA, 2_500).unwrap();
    assert!(matches!(
        reply(&mut bea, BEA, 9, &plain),
        Err(ThreadError::Retracted(_))
    ));
}

#[test]
fn attacker_cannot_point_a_message_at_another_afterwards() {
    let (thread, mut observer, plain, task) = scene();
    // Bea's own message, and Dan's: neither gains a `reply_to` after it was created,
    // nor loses one.
    let change = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &plain);
        d.put(&m, "reply_to", task.as_str()).unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &change),
        Rule::MessageStamp
    );
    let mut dan = ThreadDoc::load(&observer.save(), &DAN).unwrap();
    let own = reply(&mut dan, DAN, 9, &plain).unwrap();
    thread
        .apply(&mut observer, DAN, 3_000, &own.change)
        .unwrap();
    for rewrite in [Some(task.as_str()), None] {
        let change = forge(&mut observer, 3_100, |d| {
            let m = message_obj(d, &own.id);
            match rewrite {
                Some(other) => d.put(&m, "reply_to", other).unwrap(),
                None => d.delete(&m, "reply_to").unwrap(),
            }
        });
        assert_eq!(
            refused(&thread, &mut observer, 3_100, &change),
            Rule::MessageStamp,
            "{rewrite:?}"
        );
    }
}

#[test]
fn attacker_cannot_reply_with_a_value_of_the_wrong_form() {
    let (thread, mut observer, plain, _) = scene();
    let wrong: [automerge::ScalarValue; 4] = [
        "see above".into(),
        plain.to_uppercase().into(),
        7_i64.into(),
        format!("{plain}.extra").into(),
    ];
    for value in wrong {
        let shown = format!("{value:?}");
        let change = forged_post(&mut observer, |d, m| {
            d.put(m, "reply_to", value).unwrap();
        });
        assert_eq!(
            refused(&thread, &mut observer, 3_000, &change),
            Rule::Schema,
            "{shown}"
        );
    }
    // The same post with a well-formed `reply_to` is admitted (the refusals above are
    // the value's, not the post's).
    let change = forged_post(&mut observer, |d, m| {
        d.put(m, "reply_to", plain.as_str()).unwrap();
    });
    thread
        .apply(&mut observer, DAN, 3_000, &change)
        .expect("a well-formed reply applies");
}
