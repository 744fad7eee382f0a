//! The attacker's tests: a member of the thread, with a modified client, writes one
//! Automerge change with its own actor on a fork of the document and sends it in a
//! correctly signed envelope. Each attack is shown to change the document when applied
//! without the rules, then refused whole by `ThreadDoc::apply`, leaving the document as
//! it was. Honest changes apply.

use std::collections::{BTreeSet, HashMap};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, hydrate};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::super::*;
use super::Rule;

const CATEGORY: Category = Category::Scheduling;

const CREATOR: DeviceId = DeviceId([0x01; 32]);
const BEA: DeviceId = DeviceId([0x22; 32]);
/// Bea's second device.
const BEA_PHONE: DeviceId = DeviceId([0x23; 32]);
/// The attacker: a member of the thread with a modified client. Its actor sorts after
/// the others', so its concurrent values win Automerge conflicts when the rules are off.
const DAN: DeviceId = DeviceId([0xdd; 32]);
const EVE: DeviceId = DeviceId([0x44; 32]);
/// A device that only receives.
const OBSERVER: DeviceId = DeviceId([0x55; 32]);

const M_CREATOR: MemberId = MemberId([0xc1; 16]);
const M_BEA: MemberId = MemberId([0xb1; 16]);
const M_DAN: MemberId = MemberId([0xd1; 16]);
const M_EVE: MemberId = MemberId([0xe1; 16]);

fn member_of(device: &DeviceId) -> Option<MemberId> {
    match *device {
        CREATOR => Some(M_CREATOR),
        BEA | BEA_PHONE => Some(M_BEA),
        DAN => Some(M_DAN),
        EVE => Some(M_EVE),
        _ => None,
    }
}

fn author(device: DeviceId, at_ms: u64) -> ChangeAuthor {
    ChangeAuthor {
        device,
        member: member_of(&device).expect("a member's device"),
        at_ms,
    }
}

fn actor(device: &DeviceId) -> automerge::ActorId {
    automerge::ActorId::from(&device.0[..])
}

/// A thread created by `CREATOR`, with the creating change.
struct Thread {
    id: ThreadId,
    creation: Vec<u8>,
}

fn meta(nonce: [u8; 16]) -> ThreadMeta {
    ThreadMeta {
        subject: Subject::Topic("Front desk cover".into()),
        title: "Who covers Friday?".into(),
        category: CATEGORY,
        created_by: M_CREATOR,
        created_ms: 1_000,
        creator: CREATOR,
        nonce,
    }
}

fn new_thread() -> (Thread, ThreadDoc) {
    let meta = meta([7; 16]);
    let mut doc = ThreadDoc::new(&CREATOR);
    let creation = doc.create(&meta).expect("create");
    (
        Thread {
            id: meta.thread_id(),
            creation,
        },
        doc,
    )
}

impl Thread {
    /// A replica on `device` that has received the thread's first change.
    fn replica(&self, device: DeviceId) -> ThreadDoc {
        let mut doc = ThreadDoc::new(&device);
        self.apply(&mut doc, CREATOR, 1_000, &self.creation)
            .expect("creation applies");
        doc
    }

    fn apply(
        &self,
        doc: &mut ThreadDoc,
        device: DeviceId,
        at_ms: u64,
        change: &[u8],
    ) -> Result<Applied, ThreadError> {
        doc.apply(
            CATEGORY,
            self.id,
            &author(device, at_ms),
            &member_of,
            change,
        )
    }
}

fn post(
    doc: &mut ThreadDoc,
    device: DeviceId,
    n: u8,
    at_ms: u64,
    task: Option<MemberId>,
) -> Posted {
    doc.post(&NewMessage {
        reply_to: None,
        random: [n; MESSAGE_RANDOM_BYTES],
        author: member_of(&device).expect("member"),
        device,
        at_ms,
        body: format!("message {n}"),
        priority: Priority::Normal,
        task: task.map(|assignee| NewTask {
            assignee,
            due: "2026-05-01".into(),
        }),
    })
    .expect("post")
}

/// Everything a document shows, and its whole content.
fn state(doc: &mut ThreadDoc) -> (Vec<automerge::ChangeHash>, hydrate::Value) {
    let content = doc.doc.hydrate(ROOT, None).expect("hydrate");
    (doc.doc.get_heads(), content)
}

/// Bea has posted a plain message and a task (assigned to Dan) and marked nothing read;
/// the observer has all of it. Returns the thread, the observer, and the two ids.
fn scene() -> (Thread, ThreadDoc, String, String) {
    let (thread, _) = new_thread();
    let mut bea = thread.replica(BEA);
    let plain = post(&mut bea, BEA, 1, 2_000, None);
    let task = post(&mut bea, BEA, 2, 2_100, Some(M_DAN));
    let mut observer = thread.replica(OBSERVER);
    for (p, at) in [(&plain, 2_000), (&task, 2_100)] {
        thread
            .apply(&mut observer, BEA, at, &p.change)
            .expect("Bea's posts apply");
    }
    (thread, observer, plain.id, task.id)
}

/// Dan writes one change with his own actor on a fork of `target`'s document.
fn forge(target: &mut ThreadDoc, at_ms: u64, f: impl FnOnce(&mut AutoCommit)) -> Vec<u8> {
    let mut evil = target.doc.fork().with_actor(actor(&DAN));
    f(&mut evil);
    evil.commit_with(CommitOptions::default().with_time(at_ms as i64))
        .expect("the forged change has operations");
    evil.get_last_local_change()
        .expect("just committed")
        .raw_bytes()
        .to_vec()
}

/// Shows that `change` alters `target` when applied by Automerge alone, then that the
/// rules refuse it and leave `target` unchanged; returns the rule named.
fn refused(thread: &Thread, target: &mut ThreadDoc, at_ms: u64, change: &[u8]) -> Rule {
    let before = state(target);
    let mut unguarded = target.doc.fork();
    unguarded
        .apply_changes([automerge::Change::from_bytes(change.to_vec()).expect("a change")])
        .expect("Automerge alone applies the attack");
    assert_ne!(
        unguarded.hydrate(ROOT, None).expect("hydrate"),
        before.1,
        "without the rules, the attack changes the document"
    );
    let err = thread
        .apply(target, DAN, at_ms, change)
        .expect_err("the rules refuse the attack");
    assert_eq!(state(target), before, "a refused change leaves no trace");
    assert!(!target.has_missing_deps());
    match err {
        ThreadError::NotAllowed { rule, .. } => rule,
        other => panic!("expected a rule, got {other}"),
    }
}

fn message_obj(doc: &AutoCommit, id: &str) -> automerge::ObjId {
    let (_, messages) = doc.get(ROOT, "messages").unwrap().expect("messages");
    doc.get(&messages, id).unwrap().expect("message").1
}

#[test]
fn thread_id_is_category_code_then_hash_of_category_creator_and_nonce() {
    let id = derive_thread_id(Category::Billing, &CREATOR, &[9; 16]);
    assert_eq!(id.0[0], Category::Billing.code());
    let mut h = Sha256::new();
    h.update(b"huddle/thread-id/v1");
    h.update([Category::Billing.code()]);
    h.update(CREATOR.0);
    h.update([9; 16]);
    assert_eq!(id.0[1..], h.finalize()[..15]);
    assert_ne!(id, derive_thread_id(Category::Billing, &BEA, &[9; 16]));
    assert_ne!(id, derive_thread_id(Category::Clinical, &CREATOR, &[9; 16]));
}

#[test]
fn attacker_cannot_overwrite_anothers_body() {
    let (thread, mut observer, plain, _) = scene();
    let change = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &plain);
        d.put(&m, "body", "Cancel all Friday appointments").unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &change),
        Rule::MessageOwner
    );
}

#[test]
fn attacker_cannot_restamp_anothers_message() {
    let (thread, mut observer, plain, _) = scene();
    let forged: [(&str, automerge::ScalarValue); 3] = [
        ("author", M_DAN.to_hex().into()),
        ("device", DAN.to_hex().into()),
        // 2023-01-01
        ("at_ms", 1_672_531_200_000_i64.into()),
    ];
    for (field, value) in forged {
        let change = forge(&mut observer, 3_000, |d| {
            let m = message_obj(d, &plain);
            d.put(&m, field, value).unwrap();
        });
        assert_eq!(
            refused(&thread, &mut observer, 3_000, &change),
            Rule::MessageStamp,
            "{field}"
        );
    }
}

#[test]
fn attacker_cannot_post_under_anothers_key() {
    let (thread, mut observer, _, _) = scene();
    let key = message_key(&[0x66; MESSAGE_RANDOM_BYTES], &M_BEA);
    let change = forge(&mut observer, 3_000, |d| {
        let (_, messages) = d.get(ROOT, "messages").unwrap().unwrap();
        let m = d.put_object(&messages, key.as_str(), ObjType::Map).unwrap();
        d.put(&m, "author", M_BEA.to_hex()).unwrap();
        d.put(&m, "device", BEA.to_hex()).unwrap();
        d.put(&m, "at_ms", 3_000_i64).unwrap();
        d.put(&m, "body", "I quit").unwrap();
        d.put(&m, "priority", "urgent").unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &change),
        Rule::MessageKey
    );
}

#[test]
fn attacker_cannot_mark_read_for_another() {
    let (thread, mut observer, plain, _) = scene();
    let change = forge(&mut observer, 3_000, |d| {
        let (_, reads) = d.get(ROOT, "reads").unwrap().unwrap();
        d.put(&reads, format!("{}:{plain}", M_EVE.to_hex()), 3_000_i64)
            .unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &change),
        Rule::ReadMarker
    );
}

#[test]
fn attacker_cannot_rewrite_the_header() {
    let (thread, mut observer, _, _) = scene();
    for (field, value) in [
        ("title", "Payroll"),
        ("category", "clinical"),
        ("subject", "Jane Doe"),
        ("subject_kind", "patient"),
    ] {
        let change = forge(&mut observer, 3_000, |d| {
            let (_, meta) = d.get(ROOT, "meta").unwrap().unwrap();
            d.put(&meta, field, value).unwrap();
        });
        assert_eq!(
            refused(&thread, &mut observer, 3_000, &change),
            Rule::Header,
            "{field}"
        );
    }
}

#[test]
fn attacker_cannot_create_a_second_root() {
    let (thread, mut observer, _, _) = scene();
    // A change with no dependencies, concurrent with the thread's creation, that makes a
    // header of its own: once naming Dan as creator, once forging the creator's name.
    for creator in [DAN, CREATOR] {
        let mut evil = AutoCommit::new().with_actor(actor(&DAN));
        let m = evil.put_object(ROOT, "meta", ObjType::Map).unwrap();
        for (k, v) in [
            ("subject_kind", "patient"),
            ("subject", "Jane Doe"),
            ("title", "Billing dispute"),
            ("category", "clinical"),
        ] {
            evil.put(&m, k, v).unwrap();
        }
        evil.put(&m, "created_by", M_DAN.to_hex()).unwrap();
        evil.put(&m, "created_ms", 3_000_i64).unwrap();
        evil.put(&m, "creator", creator.to_hex()).unwrap();
        evil.put(&m, "nonce", hex::encode([7u8; 16])).unwrap();
        evil.put_object(ROOT, "messages", ObjType::Map).unwrap();
        evil.put_object(ROOT, "reads", ObjType::Map).unwrap();
        evil.commit_with(CommitOptions::default().with_time(3_000));
        let change = evil.get_last_local_change().unwrap().raw_bytes().to_vec();
        assert_eq!(
            refused(&thread, &mut observer, 3_000, &change),
            Rule::Header
        );
    }
}

#[test]
fn attacker_cannot_retract_anothers_message() {
    let (thread, mut observer, plain, _) = scene();
    let change = forge(&mut observer, 3_000, |d| {
        let (_, messages) = d.get(ROOT, "messages").unwrap().unwrap();
        d.delete(&messages, plain.as_str()).unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &change),
        Rule::MessageKey
    );
}

#[test]
fn attacker_cannot_complete_a_task_as_someone_else() {
    let (thread, mut observer, _, task) = scene();
    let change = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &task);
        d.put(&m, "task_status", "done").unwrap();
        d.put(&m, "task_done_by", M_BEA.to_hex()).unwrap();
        d.put(&m, "task_done_ms", 3_000_i64).unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &change),
        Rule::TaskStatus
    );
    // Nor backdate it, nor leave the record out.
    let backdated = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &task);
        d.put(&m, "task_status", "done").unwrap();
        d.put(&m, "task_done_by", M_DAN.to_hex()).unwrap();
        d.put(&m, "task_done_ms", 1_i64).unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &backdated),
        Rule::TaskStatus
    );
    let silent = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &task);
        d.put(&m, "task_status", "done").unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &silent),
        Rule::TaskStatus
    );
    let reopened = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &task);
        d.put(&m, "task_status", "later").unwrap();
        d.put(&m, "task_done_by", M_DAN.to_hex()).unwrap();
        d.put(&m, "task_done_ms", 3_000_i64).unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &reopened),
        Rule::TaskStatus
    );
    // Nor strip the task by deleting its status.
    let stripped = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &task);
        d.delete(&m, "task_status").unwrap();
        d.put(&m, "task_done_by", M_DAN.to_hex()).unwrap();
        d.put(&m, "task_done_ms", 3_000_i64).unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &stripped),
        Rule::TaskStatus
    );
}

#[test]
fn completing_a_completed_task_records_who_and_when() {
    // Automerge writes no `task_status` op when it is already "done".
    let (thread, mut observer, _, task) = scene();
    for (device, at) in [(DAN, 3_000), (EVE, 3_100)] {
        let mut local = ThreadDoc::load(&observer.save(), &device).unwrap();
        let member = member_of(&device).unwrap();
        let change = local.complete_task(&task, &member, at).unwrap();
        thread.apply(&mut observer, device, at, &change).unwrap();
    }
    let shown = observer.messages().unwrap();
    let t = shown
        .iter()
        .find(|m| m.id == task)
        .unwrap()
        .task
        .clone()
        .unwrap();
    assert_eq!(
        (t.status, t.done_by, t.done_ms),
        (TaskStatus::Done, Some(M_EVE), Some(3_100))
    );
}

#[test]
fn completing_after_concurrent_completions_resolves_the_conflict() {
    // Dan and Eve complete the task concurrently; Dan, having both, completes again:
    // Automerge writes deletes of the losing values where the winner is already his.
    let (thread, mut observer, _, task) = scene();
    let mut dan = ThreadDoc::load(&observer.save(), &DAN).unwrap();
    let mut eve = ThreadDoc::load(&observer.save(), &EVE).unwrap();
    let by_dan = dan.complete_task(&task, &M_DAN, 3_000).unwrap();
    let by_eve = eve.complete_task(&task, &M_EVE, 3_000).unwrap();
    for (device, change) in [(DAN, &by_dan), (EVE, &by_eve)] {
        thread.apply(&mut observer, device, 3_000, change).unwrap();
    }
    thread.apply(&mut dan, EVE, 3_000, &by_eve).unwrap();
    let again = dan.complete_task(&task, &M_DAN, 3_000).unwrap();
    let ops = automerge::Change::from_bytes(again.clone())
        .unwrap()
        .decode();
    assert!(
        ops.operations
            .iter()
            .any(|o| o.action == automerge::legacy::OpType::Delete),
        "the change resolves the conflict with a delete"
    );
    assert!(matches!(
        thread.apply(&mut observer, DAN, 3_000, &again),
        Ok(Applied::Now { .. })
    ));
    let shown = observer.messages().unwrap();
    let t = shown
        .iter()
        .find(|m| m.id == task)
        .unwrap()
        .task
        .clone()
        .unwrap();
    assert_eq!((t.done_by, t.done_ms), (Some(M_DAN), Some(3_000)));
}

#[test]
fn attacker_cannot_mark_done_a_message_without_task() {
    let (thread, mut observer, plain, _) = scene();
    let change = forge(&mut observer, 3_000, |d| {
        let m = message_obj(d, &plain);
        d.put(&m, "task_status", "done").unwrap();
        d.put(&m, "task_done_by", M_DAN.to_hex()).unwrap();
        d.put(&m, "task_done_ms", 3_000_i64).unwrap();
    });
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &change),
        Rule::TaskStatus
    );
}

#[test]
fn attacker_cannot_delete_through_an_overwrite_of_another_key() {
    // Automerge applies `pred` by operation id: an operation at Dan's own read marker that
    // names Bea's read marker as overwritten would delete Bea's.
    let (thread, mut observer, plain, task) = scene();
    let mut bea = ThreadDoc::load(&observer.save(), &BEA).unwrap();
    let read = bea.mark_read(&M_BEA, 2_500).unwrap();
    assert!(read.is_none(), "Bea wrote both messages");
    let mut eve = ThreadDoc::load(&observer.save(), &EVE).unwrap();
    let read = eve.mark_read(&M_EVE, 2_500).unwrap().expect("unread");
    thread.apply(&mut observer, EVE, 2_500, &read).unwrap();
    let eves_marker = format!("{}:{plain}", M_EVE.to_hex());
    let (_, reads) = observer.doc.get(ROOT, "reads").unwrap().unwrap();
    let (_, eves_op) = observer
        .doc
        .get(&reads, eves_marker.as_str())
        .unwrap()
        .unwrap();
    let automerge::ObjId::Id(counter, eve_actor, _) = eves_op else {
        panic!("a value's id")
    };
    // Dan's own, honest-looking read marker for the task...
    let honest = forge(&mut observer, 3_000, |d| {
        let (_, reads) = d.get(ROOT, "reads").unwrap().unwrap();
        d.put(&reads, format!("{}:{task}", M_DAN.to_hex()), 3_000_i64)
            .unwrap();
    });
    // ...claiming to overwrite Eve's.
    let mut expanded = automerge::Change::from_bytes(honest).unwrap().decode();
    expanded.operations[0].pred = vec![automerge::legacy::OpId(counter, eve_actor)].into();
    let change = automerge::Change::from(expanded).raw_bytes().to_vec();
    assert_eq!(
        refused(&thread, &mut observer, 3_000, &change),
        Rule::History
    );
    assert!(observer.messages().unwrap()[0].read_by.contains(&M_EVE));
}

#[test]
fn honest_changes_apply() {
    let (thread, mut observer, plain, task) = scene();
    let mut apply_from = |device: DeviceId, at: u64, f: &dyn Fn(&mut ThreadDoc) -> Vec<u8>| {
        let mut local = ThreadDoc::load(&observer.save(), &device).unwrap();
        let change = f(&mut local);
        let applied = thread
            .apply(&mut observer, device, at, &change)
            .expect("an honest change applies");
        assert!(matches!(applied, Applied::Now { .. }));
    };
    // Dan posts his own message; Bea edits hers from her phone; Eve marks read; Dan,
    // the assignee, completes the task as himself.
    apply_from(DAN, 3_000, &|d| post(d, DAN, 3, 3_000, None).change);
    apply_from(BEA_PHONE, 3_100, &|d| {
        let m = message_obj(&d.doc, &plain);
        d.doc.put(&m, "body", "Friday is covered").unwrap();
        d.doc.put(&m, "priority", "urgent").unwrap();
        d.commit(3_100).unwrap()
    });
    apply_from(EVE, 3_200, &|d| {
        d.mark_read(&M_EVE, 3_200).unwrap().unwrap()
    });
    apply_from(DAN, 3_300, &|d| {
        d.complete_task(&task, &M_DAN, 3_300).unwrap()
    });
    let messages = observer.messages().unwrap();
    let by_id: HashMap<&str, &MessageView> = messages.iter().map(|m| (m.id.as_str(), m)).collect();
    assert_eq!(by_id[plain.as_str()].body, "Friday is covered");
    assert_eq!(by_id[plain.as_str()].priority, Priority::Urgent);
    assert_eq!(by_id[plain.as_str()].author, M_BEA);
    assert_eq!(by_id[plain.as_str()].device, BEA);
    assert!(by_id[plain.as_str()].read_by.contains(&M_EVE));
    let done = by_id[task.as_str()].task.as_ref().unwrap();
    assert_eq!(
        (done.status, done.done_by, done.done_ms),
        (TaskStatus::Done, Some(M_DAN), Some(3_300))
    );
    let dans = messages.iter().find(|m| m.author == M_DAN).unwrap();
    assert_eq!((dans.device, dans.at_ms), (DAN, 3_000));
    // Bea retracts her own message.
    let mut bea = ThreadDoc::load(&observer.save(), &BEA).unwrap();
    let (_, messages) = bea.doc.get(ROOT, "messages").unwrap().unwrap();
    bea.doc.delete(&messages, plain.as_str()).unwrap();
    let retraction = bea.commit(3_400).unwrap();
    thread
        .apply(&mut observer, BEA, 3_400, &retraction)
        .unwrap();
    assert!(!observer.message_ids().contains(&plain));
}

#[test]
fn every_local_operation_passes_check() {
    let (thread, _) = new_thread();
    let mut observer = ThreadDoc::new(&OBSERVER);
    let mut bea = thread.replica(BEA);
    let mut dan = thread.replica(DAN);
    let mut check_then_apply = |device: DeviceId, at: u64, change: &[u8]| {
        observer
            .check(CATEGORY, thread.id, &author(device, at), &member_of, change)
            .expect("a local operation passes the rules");
        thread.apply(&mut observer, device, at, change).unwrap();
    };
    check_then_apply(CREATOR, 1_000, &thread.creation);
    let task = post(&mut bea, BEA, 1, 2_000, Some(M_DAN));
    check_then_apply(BEA, 2_000, &task.change);
    dan.apply(
        CATEGORY,
        thread.id,
        &author(BEA, 2_000),
        &member_of,
        &task.change,
    )
    .unwrap();
    let urgent = dan
        .post(&NewMessage {
            reply_to: None,
            random: [2; MESSAGE_RANDOM_BYTES],
            author: M_DAN,
            device: DAN,
            at_ms: 2_100,
            body: "on it".into(),
            priority: Priority::Urgent,
            task: None,
        })
        .unwrap();
    check_then_apply(DAN, 2_100, &urgent.change);
    let read = dan.mark_read(&M_DAN, 2_200).unwrap().unwrap();
    check_then_apply(DAN, 2_200, &read);
    let done = dan.complete_task(&task.id, &M_DAN, 2_300).unwrap();
    check_then_apply(DAN, 2_300, &done);
    // The stamped time is what callers pass until envelopes carry their own.
    assert_eq!(stated_time_ms(&done), Some(2_300));
    assert_eq!(observer.messages().unwrap(), dan.messages().unwrap());
    assert_eq!(observer.meta(), Some(meta([7; 16])));
}

#[test]
fn creation_is_bound_to_the_log_and_the_creator() {
    let (thread, _) = new_thread();
    let mut observer = ThreadDoc::new(&OBSERVER);
    // Another log category, or another thread id, than the header's.
    let other = observer.apply(
        Category::Clinical,
        thread.id,
        &author(CREATOR, 1_000),
        &member_of,
        &thread.creation,
    );
    assert!(matches!(
        other,
        Err(ThreadError::NotAllowed {
            rule: Rule::Header,
            ..
        })
    ));
    let other = observer.apply(
        CATEGORY,
        ThreadId([2; 16]),
        &author(CREATOR, 1_000),
        &member_of,
        &thread.creation,
    );
    assert!(matches!(
        other,
        Err(ThreadError::NotAllowed {
            rule: Rule::Header,
            ..
        })
    ));
    // Another time than the envelope's; another device than the change's.
    let other = thread.apply(&mut observer, CREATOR, 999, &thread.creation);
    assert!(matches!(
        other,
        Err(ThreadError::NotAllowed {
            rule: Rule::Header,
            ..
        })
    ));
    assert_eq!(
        thread.apply(&mut observer, BEA, 1_000, &thread.creation),
        Err(ThreadError::WrongActor)
    );
    // A creator who is not the one the id names.
    let mut bea = ThreadDoc::new(&BEA);
    let mut forged = meta([7; 16]);
    forged.creator = BEA;
    forged.created_by = M_BEA;
    let change = bea.create(&forged).unwrap();
    let other = thread.apply(&mut observer, BEA, 1_000, &change);
    assert!(matches!(
        other,
        Err(ThreadError::NotAllowed {
            rule: Rule::Header,
            ..
        })
    ));
    assert!(observer.meta().is_none());
    assert!(matches!(
        thread.apply(&mut observer, CREATOR, 1_000, &thread.creation),
        Ok(Applied::Now { .. })
    ));
    assert_eq!(
        thread.apply(&mut observer, CREATOR, 1_000, &thread.creation),
        Ok(Applied::AlreadyHad)
    );
}

#[test]
fn messages_show_the_creating_device_not_the_fields() {
    // A document made without the rules (as by a modified client, before any check):
    // the fields claim Dan, the object was created by Bea's device under her key.
    let (thread, _) = new_thread();
    let mut doc = thread.replica(BEA);
    let (_, messages) = doc.doc.get(ROOT, "messages").unwrap().unwrap();
    let key = message_key(&[4; MESSAGE_RANDOM_BYTES], &M_BEA);
    let m = doc
        .doc
        .put_object(&messages, key.as_str(), ObjType::Map)
        .unwrap();
    doc.doc.put(&m, "author", M_DAN.to_hex()).unwrap();
    doc.doc.put(&m, "device", DAN.to_hex()).unwrap();
    doc.doc.put(&m, "at_ms", 5_i64).unwrap();
    doc.doc.put(&m, "body", "hello").unwrap();
    doc.commit(5).unwrap();
    let shown = &doc.messages().unwrap()[0];
    assert_eq!((shown.author, shown.device), (M_BEA, BEA));
}

#[test]
fn out_of_order_changes_wait_for_their_dependencies() {
    let (thread, _) = new_thread();
    let mut bea = thread.replica(BEA);
    let first = post(&mut bea, BEA, 1, 2_000, None);
    let second = post(&mut bea, BEA, 2, 2_100, None);
    let mut observer = thread.replica(OBSERVER);
    assert_eq!(
        thread.apply(&mut observer, BEA, 2_100, &second.change),
        Ok(Applied::Queued)
    );
    assert!(observer.has_missing_deps());
    assert!(observer.messages().unwrap().is_empty());
    assert_eq!(
        thread.apply(&mut observer, BEA, 2_100, &second.change),
        Ok(Applied::AlreadyHad),
        "a held change is held once"
    );
    assert_eq!(
        thread.apply(&mut observer, BEA, 2_000, &first.change),
        Ok(Applied::Now {
            released: 1,
            refused: vec![]
        })
    );
    assert!(!observer.has_missing_deps());
    assert_eq!(observer.messages().unwrap(), bea.messages().unwrap());
    // The creation itself can come last.
    let mut late = ThreadDoc::new(&OBSERVER);
    for (at, c) in [(2_100, &second.change), (2_000, &first.change)] {
        assert_eq!(thread.apply(&mut late, BEA, at, c), Ok(Applied::Queued));
    }
    assert!(late.meta().is_none());
    let applied = thread.apply(&mut late, CREATOR, 1_000, &thread.creation);
    assert!(matches!(applied, Ok(Applied::Now { released: 2, .. })));
    assert_eq!(late.messages().unwrap(), bea.messages().unwrap());
}

#[test]
fn a_held_change_is_judged_when_released() {
    let (thread, _) = new_thread();
    let mut dan = thread.replica(DAN);
    let mut bea = thread.replica(BEA);
    let first = post(&mut bea, BEA, 1, 2_000, None);
    dan.apply(
        CATEGORY,
        thread.id,
        &author(BEA, 2_000),
        &member_of,
        &first.change,
    )
    .unwrap();
    let evil = forge(&mut dan, 3_000, |d| {
        let m = message_obj(d, &first.id);
        d.put(&m, "body", "forged").unwrap();
    });
    let mut observer = thread.replica(OBSERVER);
    assert_eq!(
        thread.apply(&mut observer, DAN, 3_000, &evil),
        Ok(Applied::Queued)
    );
    let released = thread
        .apply(&mut observer, BEA, 2_000, &first.change)
        .unwrap();
    let Applied::Now { released, refused } = released else {
        panic!("applied")
    };
    assert_eq!(released, 0);
    assert!(matches!(
        refused.as_slice(),
        [ThreadError::NotAllowed {
            rule: Rule::MessageOwner,
            ..
        }]
    ));
    assert!(!observer.has_missing_deps());
    assert_eq!(observer.messages().unwrap()[0].body, "message 1");
}

#[test]
fn the_queue_is_bounded() {
    let (thread, _) = new_thread();
    let mut bea = thread.replica(BEA);
    let withheld = post(&mut bea, BEA, 0, 2_000, None);
    // Edits of the withheld message, each depending on the one before.
    let later: Vec<Vec<u8>> = (0..=MAX_QUEUED_CHANGES)
        .map(|i| {
            let m = message_obj(&bea.doc, &withheld.id);
            bea.doc.put(&m, "body", format!("edit {i}")).unwrap();
            bea.commit(3_000).unwrap()
        })
        .collect();
    let mut observer = thread.replica(OBSERVER);
    for change in &later[..MAX_QUEUED_CHANGES] {
        assert_eq!(
            thread.apply(&mut observer, BEA, 3_000, change),
            Ok(Applied::Queued)
        );
    }
    let extra = &later[MAX_QUEUED_CHANGES];
    assert!(matches!(
        thread.apply(&mut observer, BEA, 3_000, extra),
        Err(ThreadError::QueueFull {
            held: MAX_QUEUED_CHANGES,
            ..
        })
    ));
    let applied = thread.apply(&mut observer, BEA, 2_000, &withheld.change);
    assert!(matches!(
        applied,
        Ok(Applied::Now {
            released: MAX_QUEUED_CHANGES,
            ..
        })
    ));
    assert!(!observer.has_missing_deps());
    // The refused one comes again (as from the envelope store) and applies.
    assert!(matches!(
        thread.apply(&mut observer, BEA, 3_000, extra),
        Ok(Applied::Now { .. })
    ));
    assert_eq!(observer.messages().unwrap(), bea.messages().unwrap());

    // The byte bound: large changes (each near the largest a change may be) wait only
    // until their bytes would pass it.
    let mut big = thread.replica(BEA);
    let first = post(&mut big, BEA, 1, 2_000, None);
    let m = message_obj(&big.doc, &first.id);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut raw = vec![0u8; MAX_CHANGE_BYTES / 2 - 1024];
    let edits: Vec<Vec<u8>> = (0..=MAX_QUEUED_BYTES / MAX_CHANGE_BYTES)
        .map(|_| {
            rand::RngCore::fill_bytes(&mut rng, &mut raw);
            big.doc.put(&m, "body", hex::encode(&raw)).unwrap();
            big.commit(2_100).unwrap()
        })
        .collect();
    let mut observer = thread.replica(OBSERVER);
    let held = edits
        .iter()
        .take_while(|c| thread.apply(&mut observer, BEA, 2_100, c) == Ok(Applied::Queued))
        .count();
    assert!(held < edits.len(), "every large change was held");
    assert!(
        matches!(
            thread.apply(&mut observer, BEA, 2_100, &edits[held]),
            Err(ThreadError::QueueFull { .. })
        ),
        "the change past the bound is refused"
    );
    thread
        .apply(&mut observer, BEA, 2_000, &first.change)
        .unwrap();
    assert!(!observer.has_missing_deps());
}

#[test]
fn a_batch_applies_in_causal_order_whatever_order_it_comes_in() {
    let (thread, _) = new_thread();
    let mut bea = thread.replica(BEA);
    let mut changes: Vec<(ChangeAuthor, Vec<u8>)> =
        vec![(author(CREATOR, 1_000), thread.creation.clone())];
    for n in 0..20 {
        let at = 2_000 + u64::from(n);
        changes.push((author(BEA, at), post(&mut bea, BEA, n, at, None).change));
    }
    changes.reverse();
    let mut observer = ThreadDoc::new(&OBSERVER);
    let refused = observer.apply_batch(CATEGORY, thread.id, &member_of, changes);
    assert!(refused.is_empty(), "{refused:?}");
    assert!(observer.held.is_empty(), "nothing had to wait");
    assert_eq!(observer.messages().unwrap(), bea.messages().unwrap());
}

/// What one of three devices does next in the convergence property.
#[derive(Clone, Debug)]
enum Step {
    Post {
        task: bool,
    },
    Complete,
    MarkRead,
    /// Receives everything device `from` has.
    Sync {
        from: usize,
    },
}

fn step() -> impl Strategy<Value = (usize, Step)> {
    let step = prop_oneof![
        3 => any::<bool>().prop_map(|task| Step::Post { task }),
        1 => Just(Step::Complete),
        1 => Just(Step::MarkRead),
        2 => (0..3usize).prop_map(|from| Step::Sync { from }),
    ];
    (0..3usize, step)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Three devices of three members post, complete each other's tasks and mark read,
    /// syncing now and then; every change is delivered to three observers, each in its
    /// own random order. Every observer admits every change and shows the same thread.
    #[test]
    fn honest_changes_in_any_order_converge(
        steps in proptest::collection::vec(step(), 1..40),
        seeds in any::<[u64; 3]>(),
    ) {
        let devices = [BEA, DAN, EVE];
        let (thread, _) = new_thread();
        let mut docs: Vec<ThreadDoc> = devices.iter().map(|d| thread.replica(*d)).collect();
        // Every change, by whom and when, in the order made (a causal order); and which
        // of them each device has.
        let mut log: Vec<(ChangeAuthor, Vec<u8>)> =
            vec![(author(CREATOR, 1_000), thread.creation.clone())];
        let mut has: Vec<BTreeSet<usize>> = vec![BTreeSet::from([0]); 3];
        let mut clock = 2_000u64;
        for (n, (i, step)) in steps.into_iter().enumerate() {
            clock += 1;
            let device = devices[i];
            let member = member_of(&device).unwrap();
            let change = match step {
                Step::Post { task } => {
                    let assignee = task.then_some(M_BEA);
                    Some(post(&mut docs[i], device, n as u8, clock, assignee).change)
                }
                Step::Complete => {
                    let open = docs[i].messages().unwrap().into_iter().find(|m| {
                        m.task.as_ref().is_some_and(|t| t.status == TaskStatus::Open)
                    });
                    open.map(|m| docs[i].complete_task(&m.id, &member, clock).unwrap())
                }
                Step::MarkRead => docs[i].mark_read(&member, clock).unwrap(),
                Step::Sync { from } => {
                    let new: Vec<usize> = has[from].difference(&has[i]).copied().collect();
                    for k in new {
                        let (a, c) = &log[k];
                        docs[i].apply(CATEGORY, thread.id, a, &member_of, c).unwrap();
                        has[i].insert(k);
                    }
                    None
                }
            };
            if let Some(change) = change {
                has[i].insert(log.len());
                log.push((author(device, clock), change));
            }
        }
        let mut reference: Option<Vec<MessageView>> = None;
        for seed in seeds {
            let mut order = log.clone();
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let mut observer = ThreadDoc::new(&OBSERVER);
            for (a, c) in &order {
                let applied = observer.apply(CATEGORY, thread.id, a, &member_of, c);
                prop_assert!(applied.is_ok(), "{:?}", applied);
                if let Ok(Applied::Now { refused, .. }) = applied {
                    prop_assert!(refused.is_empty(), "{:?}", refused);
                }
            }
            prop_assert!(!observer.has_missing_deps());
            let shown = observer.messages().unwrap();
            match &reference {
                None => reference = Some(shown),
                Some(r) => prop_assert_eq!(r, &shown),
            }
        }
    }
}

/// What judging costs per received change: a thread of `HUDDLE_CHECK_MESSAGES` (2,000)
/// messages by three members (every fifth a task, completed by another member; read
/// markers now and then), applied with `ThreadDoc::apply` and with bare Automerge.
/// `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo test --lib check_cost -- --ignored --nocapture`
#[test]
#[ignore = "a timing, not a check"]
fn check_cost() {
    use std::time::Instant;
    let n: usize = std::env::var("HUDDLE_CHECK_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let devices = [BEA, DAN, EVE];
    let (thread, _) = new_thread();
    let mut docs: Vec<ThreadDoc> = devices.iter().map(|d| thread.replica(*d)).collect();
    let mut log: Vec<(ChangeAuthor, Vec<u8>)> =
        vec![(author(CREATOR, 1_000), thread.creation.clone())];
    let mut clock = 2_000;
    for i in 0..n {
        let w = i % 3;
        let device = devices[w];
        let member = member_of(&device).unwrap();
        let mut made = Vec::new();
        clock += 1;
        let mut random = [0u8; MESSAGE_RANDOM_BYTES];
        random[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let posted = docs[w]
            .post(&NewMessage {
                reply_to: None,
                random,
                author: member,
                device,
                at_ms: clock,
                body: format!("Covered the 3 pm session; notes added ({i})"),
                priority: Priority::Normal,
                task: (i % 5 == 0).then_some(NewTask {
                    assignee: M_BEA,
                    due: "2026-05-01".into(),
                }),
            })
            .unwrap();
        made.push((author(device, clock), posted.change));
        if i % 5 == 3 {
            let open = docs[w].messages().unwrap().into_iter().find(|m| {
                m.author != member
                    && m.task
                        .as_ref()
                        .is_some_and(|t| t.status == TaskStatus::Open)
            });
            if let Some(m) = open {
                clock += 1;
                let c = docs[w].complete_task(&m.id, &member, clock).unwrap();
                made.push((author(device, clock), c));
            }
        }
        if i % 10 == 9 {
            clock += 1;
            if let Some(c) = docs[w].mark_read(&member, clock).unwrap() {
                made.push((author(device, clock), c));
            }
        }
        for (a, c) in made {
            for (j, doc) in docs.iter_mut().enumerate() {
                if j != w {
                    doc.apply(CATEGORY, thread.id, &a, &member_of, &c).unwrap();
                }
            }
            log.push((a, c));
        }
    }
    let mut raw = f64::MAX;
    let mut judged = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut doc = AutoCommit::new();
        for (_, c) in &log {
            let change = automerge::Change::from_bytes(c.clone()).unwrap();
            doc.apply_changes([change]).unwrap();
        }
        raw = raw.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let mut doc = ThreadDoc::new(&OBSERVER);
        for (a, c) in &log {
            doc.apply(CATEGORY, thread.id, a, &member_of, c).unwrap();
        }
        judged = judged.min(start.elapsed().as_secs_f64());
        assert_eq!(doc.messages().unwrap().len(), n);
    }
    let per = |t: f64| t * 1e6 / log.len() as f64;
    println!(
        "check_cost: {} changes ({n} messages): bare Automerge {:.1} µs/change, \
         ThreadDoc::apply {:.1} µs/change, judging {:.1} µs/change ({:.2}×); best of 5",
        log.len(),
        per(raw),
        per(judged),
        per(judged - raw),
        judged / raw
    );
}

mod edits;
mod replies;
