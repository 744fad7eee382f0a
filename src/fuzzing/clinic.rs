//! The `thread_change` target: a clinic of two enrolled devices, built once with fixed
//! keys and randomness through the replica's one entry point. The fuzz input is an
//! Automerge change that the founder's device seals and signs into the shared thread;
//! the other device receives it like any envelope ([`Replica::handle`]) and applies what
//! the replica accepts to its thread document, incrementally and by a rebuild.

use std::collections::HashMap;
use std::sync::OnceLock;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::core::envelope::{Body, Envelope};
use crate::core::identity::DeviceSecret;
use crate::core::ids::{DeviceId, EnvelopeId, LogId, MemberId};
use crate::core::policy::{Category, Role};
use crate::core::replica::{Ctx, Effect, Input, Lookup, Replica, Results};
use crate::core::roster::{Op, SignedGenesis};
use crate::core::thread::{
    ChangeAuthor, NewMessage, NewTask, Priority, Subject, ThreadDoc, ThreadMeta, derive_thread_id,
    stated_time_ms,
};

const T0: u64 = 1_700_000_000_000;

/// Accepted envelopes of one device, by chain position and in acceptance order.
#[derive(Default)]
struct Accepted {
    positions: HashMap<(LogId, DeviceId, u64), EnvelopeId>,
    order: Vec<Envelope>,
}

impl Lookup for Accepted {
    fn id_at(&self, log: &LogId, author: &DeviceId, seq: u64) -> Option<EnvelopeId> {
        self.positions.get(&(*log, *author, seq)).copied()
    }
}

/// One device: its replica and what it persisted.
struct Device {
    secret: DeviceSecret,
    replica: Replica,
    store: Accepted,
    rng: StdRng,
}

impl Device {
    fn new(secret: DeviceSecret, genesis: &SignedGenesis, seed: u64) -> Device {
        let replica = Replica::new(secret.public(), genesis.clone()).expect("a valid genesis");
        Device {
            secret,
            replica,
            store: Accepted::default(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn handle(&mut self, input: Input) -> Results {
        let mut ctx = Ctx {
            secret: &self.secret,
            rng: &mut self.rng,
            now_ms: T0 + 60_000,
            lookup: &self.store,
        };
        let results = self
            .replica
            .handle(&mut ctx, input)
            .expect("the input is handled");
        for effect in &results.effects {
            if let Effect::Accepted(env, id) = effect {
                let h = &env.header;
                self.store.positions.insert((h.log, h.author, h.seq), *id);
                self.store.order.push(env.clone());
            }
        }
        results
    }

    /// The thread document as a node rebuilds it from every stored envelope of `log`.
    fn rebuild(&self, log: &LogId) -> ThreadDoc {
        let mut doc = ThreadDoc::new(&self.secret.id());
        let (Some(thread), Some(category)) = (log.thread(), log.category()) else {
            return doc;
        };
        let roster = self.replica.roster();
        let member_of = |d: &DeviceId| roster.devices.get(d).map(|e| e.member);
        let changes = self
            .store
            .order
            .iter()
            .filter(|e| e.header.log == *log)
            .filter_map(|e| {
                let change = self.replica.open_thread_change(e)?;
                let who = author(&self.replica, &e.header.author, e.header.at_ms)?;
                Some((who, change))
            });
        let _ = doc.apply_batch(category, thread, &member_of, changes.collect::<Vec<_>>());
        doc
    }
}

fn author(replica: &Replica, device: &DeviceId, at_ms: u64) -> Option<ChangeAuthor> {
    Some(ChangeAuthor {
        device: *device,
        member: replica.roster().devices.get(device)?.member,
        at_ms,
    })
}

/// The clinic after set-up: everything the founder (`a`) and the reader (`b`) authored,
/// and the founder's view of the thread, from which fuzzed changes are sealed.
pub(super) struct Clinic {
    genesis: SignedGenesis,
    a: Device,
    b_secret: DeviceSecret,
    history: Vec<Envelope>,
    log: LogId,
    /// The founder's thread document, saved (a fork is loaded for each seed change).
    a_doc: Vec<u8>,
    a_member: MemberId,
    b_member: MemberId,
    task: String,
}

fn clinic() -> &'static Clinic {
    static CLINIC: OnceLock<Clinic> = OnceLock::new();
    CLINIC.get_or_init(build)
}

fn build() -> Clinic {
    let founder = DeviceSecret::from_bytes(&[11; 64]);
    let genesis = SignedGenesis::new(&founder, T0, [12; 16]);
    let mut a = Device::new(founder, &genesis, 1);
    let b_secret = DeviceSecret::from_bytes(&[13; 64]);
    let (a_member, b_member) = (MemberId([21; 16]), MemberId([22; 16]));
    let mut history = Vec::new();
    for op in [
        Op::Init {
            clinic_name: "Fuzz Clinic".into(),
            member: a_member,
            name: "Ada".into(),
            role: Role::Clinician,
        },
        Op::AddMember {
            member: b_member,
            name: "Bo".into(),
            role: Role::Clinician,
            admin: false,
        },
        Op::AddDevice {
            member: b_member,
            device: b_secret.public(),
        },
    ] {
        history.extend(a.handle(Input::Roster(op)).authored);
    }
    let nonce = [14; 16];
    let id = derive_thread_id(Category::Clinical, &a.secret.id(), &nonce);
    let log = LogId::Thread {
        id,
        category: Category::Clinical,
    };
    let mut a_doc = ThreadDoc::new(&a.secret.id());
    let meta = ThreadMeta {
        subject: Subject::Patient("Room 4".into()),
        title: "Follow-up".into(),
        category: Category::Clinical,
        created_by: a_member,
        created_ms: T0 + 1_000,
        creator: a.secret.id(),
        nonce,
    };
    let created = a_doc.create(&meta).expect("create the thread");
    history.extend(seal(&mut a, log, created));
    let posted = a_doc
        .post(&message(
            a_member,
            a.secret.id(),
            1,
            T0 + 2_000,
            Some(b_member),
        ))
        .expect("post a task");
    history.extend(seal(&mut a, log, posted.change));
    history.extend(a.handle(Input::Envelopes(Vec::new())).authored);

    // The reader receives all of it, then posts a message the founder receives.
    let mut b = Device::new(b_secret, &genesis, 2);
    history.extend(b.handle(Input::Envelopes(history.clone())).authored);
    let mut b_doc = b.rebuild(&log);
    assert!(b_doc.meta().is_some(), "the reader materialized the thread");
    let reply = b_doc
        .post(&message(b_member, b.secret.id(), 2, T0 + 3_000, None))
        .expect("the reader posts");
    let from_b = seal(&mut b, log, reply.change);
    history.extend(from_b.clone());
    a.handle(Input::Envelopes(from_b));
    let mut a_doc = a.rebuild(&log);
    assert_eq!(a_doc.messages().map(|m| m.len()), Ok(2), "both messages");
    Clinic {
        genesis,
        a,
        b_secret: b.secret,
        history,
        log,
        a_doc: a_doc.save(),
        a_member,
        b_member,
        task: posted.id,
    }
}

fn message(
    author: MemberId,
    device: DeviceId,
    n: u64,
    at_ms: u64,
    task: Option<MemberId>,
) -> NewMessage {
    NewMessage {
        reply_to: None,
        random: n.to_be_bytes(),
        author,
        device,
        at_ms,
        body: format!("message {n}"),
        priority: if task.is_some() {
            Priority::Urgent
        } else {
            Priority::Normal
        },
        task: task.map(|assignee| NewTask {
            assignee,
            due: "2026-12-01".into(),
        }),
    }
}

/// Seals a local change on `device`; returns what it authored.
fn seal(device: &mut Device, log: LogId, change: Vec<u8>) -> Vec<Envelope> {
    let at_ms = stated_time_ms(&change).expect("a local change states its time");
    device
        .handle(Input::Seal {
            log,
            plain: change,
            at_ms,
        })
        .authored
}

impl Clinic {
    /// Signs `change` into the thread as the founder's device would (no check on it).
    fn forge(&self, change: &[u8]) -> Envelope {
        let r = &self.a.replica;
        let slot = r
            .writing_slot(&self.log)
            .expect("the founder writes the thread");
        let at = stated_time_ms(change).unwrap_or(T0 + 10_000);
        let header = r.next_header(self.log, &slot, at);
        let key = r.key_for(&header).expect("the founder holds the key");
        let ct = key.encrypt(&mut StdRng::seed_from_u64(3), &header.aad(), change);
        Envelope::sign(&self.a.secret, header, Body::Sealed(ct))
    }

    /// Real changes of the founder on top of the set-up thread: a post, a task, a read
    /// marker and a completed task, each on its own fork of the document.
    pub(super) fn seed_changes(&self) -> Vec<(&'static str, Vec<u8>)> {
        let me = self.a.secret.id();
        let fork = || ThreadDoc::load(&self.a_doc, &me).expect("the saved thread loads");
        let at = T0 + 20_000;
        let post = fork().post(&message(self.a_member, me, 3, at, None));
        let task = fork().post(&message(self.a_member, me, 4, at, Some(self.b_member)));
        let read = fork().mark_read(&self.a_member, at);
        let done = fork().complete_task(&self.task, &self.a_member, at);
        let mut out = Vec::new();
        out.extend(post.ok().map(|p| ("post", p.change)));
        out.extend(task.ok().map(|p| ("task", p.change)));
        out.extend(read.ok().flatten().map(|c| ("read", c)));
        out.extend(done.ok().map(|c| ("done", c)));
        out
    }
}

/// Seeds of the `thread_change` target.
pub(super) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    clinic().seed_changes()
}

/// The founder's saved thread document, for the snapshot seed.
pub(super) fn saved_doc() -> &'static [u8] {
    &clinic().a_doc
}

/// The clinic's genesis, for seeds.
pub(super) fn genesis() -> &'static SignedGenesis {
    &clinic().genesis
}

/// The envelopes of the set-up clinic, for other targets' seeds.
pub(super) fn history() -> &'static [Envelope] {
    &clinic().history
}

/// Delivers `change`, sealed and signed by the founder, to the reader as a fresh device
/// that first receives the clinic's history; applies what it accepts to its document.
pub fn thread_change(change: &[u8]) {
    deliver_change(change);
}

/// [`thread_change`], returning how many messages the reader's document shows after it.
pub fn deliver_change(change: &[u8]) -> usize {
    let c = clinic();
    let env = c.forge(change);
    let secret = DeviceSecret::from_bytes(&c.b_secret.to_bytes());
    let mut b = Device::new(secret, &c.genesis, 4);
    b.handle(Input::Envelopes(c.history.clone()));
    let mut doc = b.rebuild(&c.log);
    let before = doc.messages().map(|m| m.len()).unwrap_or(0);
    let results = b.handle(Input::Envelopes(vec![env]));
    for effect in &results.effects {
        if let Effect::ThreadChange {
            thread,
            category,
            author: device,
            at_ms,
            change,
        } = effect
        {
            let Some(who) = author(&b.replica, device, *at_ms) else {
                continue;
            };
            let roster = b.replica.roster();
            let member_of = |d: &DeviceId| roster.devices.get(d).map(|e| e.member);
            let _ = doc.apply(*category, *thread, &who, &member_of, change);
        }
    }
    read_all(&mut doc, c.b_member);
    let after = doc.messages().map(|m| m.len()).unwrap_or(0);
    assert!(after >= before, "a received change removed messages");
    // The node's other path: the document rebuilt from the stored envelopes.
    let mut rebuilt = b.rebuild(&c.log);
    read_all(&mut rebuilt, c.b_member);
    // A saved snapshot loads to the same messages.
    let saved = doc.save();
    let mut loaded = ThreadDoc::load(&saved, &b.secret.id()).expect("a saved document loads");
    assert_eq!(loaded.messages(), doc.messages(), "snapshot round trip");
    let _ = loaded.has_missing_deps();
    after
}

/// Every view a node shows of a document.
fn read_all(doc: &mut ThreadDoc, member: MemberId) {
    let _ = doc.meta();
    let _ = doc.messages();
    let _ = doc.unread(&member);
    let _ = doc.message_ids();
}
