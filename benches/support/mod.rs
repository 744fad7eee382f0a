//! A deterministic clinic generator for the benchmarks, built on the core API only.
//!
//! It founds a clinic the way `Node::init_clinic` does (genesis, roster key granted to
//! the founder, `Op::Init`), enrolls a second clinician device and any number of
//! receiving devices, grants the roster key to them, then creates threads (a grant of a
//! fresh thread key to every reader of its category, then `ThreadDoc::create`) and posts
//! messages round-robin across the threads from the two authoring devices. Every
//! envelope is ingested by both authoring replicas as it is published, so the chains,
//! keys and Automerge dependencies are exactly what real devices would produce, and the
//! result ingests in order with nothing held back.

use std::collections::HashMap;

use huddle::core::cipher::SecretKey;
use huddle::core::envelope::Envelope;
use huddle::core::identity::{DevicePublic, DeviceSecret};
use huddle::core::ids::{DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use huddle::core::policy::{Category, Role};
use huddle::core::replica::{Effect, Lookup, Replica, Status};
use huddle::core::roster::{Op, SignedGenesis};
use huddle::core::thread::{
    ChangeAuthor, NewMessage, NewTask, Priority, Subject, ThreadDoc, ThreadMeta, derive_thread_id,
    stated_time_ms,
};
use huddle::node::bundle::Writer;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A fixed clock so that runs are reproducible (2024-01-01T00:00:00Z).
const T0_MS: u64 = 1_704_067_200_000;

/// Categories a clinician may read under the default policy, used in turn by threads.
const CATEGORIES: [Category; 3] = [
    Category::Clinical,
    Category::Scheduling,
    Category::Operations,
];

/// Message bodies in the style of the clinic's quick templates.
const BODIES: [&str; 6] = [
    "New referral needs follow-up by end of today; intake packet is in the shared folder.",
    "Client canceled — please confirm reschedule for next week, mornings preferred.",
    "Insurance authorization still pending — hold scheduling until the payer calls back.",
    "Please upload evaluation for billing, including the session notes from Tuesday.",
    "Covered the 3 pm session; progress notes added, parent asked for a call tomorrow.",
    "Reminder: team huddle moved to 8:15, bring the updated caseload list.",
];

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub messages: usize,
    pub threads: usize,
    pub seed: u64,
}

/// A generated clinic: its genesis and every envelope, in a valid causal order.
pub struct Clinic {
    pub genesis: SignedGenesis,
    pub envelopes: Vec<Envelope>,
}

/// An in-memory [`Lookup`]: which envelope holds each accepted chain position.
#[derive(Default)]
pub struct MemLookup(HashMap<(LogId, DeviceId, u64), EnvelopeId>);

impl MemLookup {
    /// Records an envelope reported by [`Effect::Accepted`].
    pub fn record(&mut self, env: &Envelope, id: EnvelopeId) {
        let h = &env.header;
        self.0.insert((h.log, h.author, h.seq), id);
    }
}

impl Lookup for MemLookup {
    fn id_at(&self, log: &LogId, author: &DeviceId, seq: u64) -> Option<EnvelopeId> {
        self.0.get(&(*log, *author, seq)).copied()
    }
}

/// The member of a device in `replica`'s roster, as a node passes it to `ThreadDoc::apply`.
pub fn member_of(replica: &Replica) -> impl Fn(&DeviceId) -> Option<MemberId> + '_ {
    |d| replica.roster().devices.get(d).map(|e| e.member)
}

/// The log category and author of a received thread change, as a node passes them (the
/// change's stamped time stands in for the envelope's, as in the node).
pub fn judged_as(
    replica: &Replica,
    thread: &ThreadId,
    author: &DeviceId,
    change: &[u8],
) -> (Category, ChangeAuthor) {
    let Some(LogId::Thread { category, .. }) = replica.thread_log(thread) else {
        panic!("a thread the replica holds");
    };
    let who = ChangeAuthor {
        device: *author,
        member: member_of(replica)(author).expect("an enrolled author"),
        at_ms: stated_time_ms(change).expect("a stamped change"),
    };
    (category, who)
}

/// One authoring device: its keys, replica and thread documents.
struct Author {
    secret: DeviceSecret,
    member: MemberId,
    replica: Replica,
    lookup: MemLookup,
    docs: HashMap<ThreadId, ThreadDoc>,
}

impl Author {
    fn new(secret: DeviceSecret, member: MemberId, genesis: &SignedGenesis) -> Self {
        let replica = Replica::new(secret.public(), genesis.clone()).expect("valid genesis");
        Author {
            secret,
            member,
            replica,
            lookup: MemLookup::default(),
            docs: HashMap::new(),
        }
    }

    /// Ingests a published envelope and applies the thread changes of other devices.
    fn receive(&mut self, env: &Envelope) {
        let mut effects = Vec::new();
        let status = self
            .replica
            .ingest(&self.secret, env.clone(), &self.lookup, &mut effects)
            .expect("generated envelopes are valid");
        assert_eq!(
            status,
            Status::Accepted,
            "generated envelopes arrive in order"
        );
        let me = self.secret.id();
        for effect in effects {
            match effect {
                Effect::Accepted(env, id) => self.lookup.record(&env, id),
                Effect::ThreadChange {
                    thread,
                    author,
                    change,
                } if author != me => {
                    let (category, who) = judged_as(&self.replica, &thread, &author, &change);
                    self.docs
                        .entry(thread)
                        .or_insert_with(|| ThreadDoc::new(&me))
                        .apply(category, thread, &who, &member_of(&self.replica), &change)
                        .expect("generated changes apply");
                }
                _ => {}
            }
        }
    }
}

/// The state of a generation run.
struct Generator {
    rng: ChaCha20Rng,
    authors: Vec<Author>,
    envelopes: Vec<Envelope>,
    clock_ms: u64,
}

impl Generator {
    fn tick(&mut self) -> u64 {
        self.clock_ms += 1_000;
        self.clock_ms
    }

    fn random_id<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.rng.fill_bytes(&mut out);
        out
    }

    /// Every authoring device ingests the envelope; it joins the output.
    fn publish(&mut self, env: Envelope) {
        for author in &mut self.authors {
            author.receive(&env);
        }
        self.envelopes.push(env);
    }

    /// A roster operation by the founder.
    fn roster_op(&mut self, op: Op) {
        let at = self.tick();
        let founder = &self.authors[0];
        let env = founder
            .replica
            .author_roster_op(&founder.secret, &mut self.rng, op, at)
            .expect("founder may change the roster");
        self.publish(env);
    }

    /// Adds a clinician member with one device.
    fn enroll(&mut self, member: MemberId, name: &str, device: DevicePublic, admin: bool) {
        self.roster_op(Op::AddMember {
            member,
            name: name.to_string(),
            role: Role::Clinician,
            admin,
        });
        self.roster_op(Op::AddDevice { member, device });
    }

    /// Grants every key the founder holds to authorized devices that lack it.
    fn regrant(&mut self) {
        loop {
            let missing = self.authors[0].replica.missing_grants();
            if missing.is_empty() {
                return;
            }
            for (log, epoch, recipients) in missing {
                let founder = &self.authors[0];
                let key = founder.replica.key(&log, epoch).expect("held key");
                let env = founder
                    .replica
                    .author_grants(&founder.secret, log, epoch, key, &recipients)
                    .expect("grants seal");
                self.publish(env);
            }
        }
    }

    /// Creates thread `n`, authored by one of the authoring devices in turn.
    fn create_thread(&mut self, n: usize) -> ThreadId {
        let nonce = self.random_id();
        let category = CATEGORIES[n % CATEGORIES.len()];
        let a = n % self.authors.len();
        let creator = self.authors[a].secret.id();
        let thread = derive_thread_id(category, &creator, &nonce);
        let log = LogId::Thread {
            id: thread,
            category,
        };
        let key = SecretKey::generate(&mut self.rng);
        let created_ms = self.tick();
        let author = &self.authors[a];
        let readers = author.replica.roster().readers(category);
        let grants = author
            .replica
            .author_grants(&author.secret, log, 0, &key, &readers)
            .expect("grants seal");
        self.publish(grants);
        let subject = if n.is_multiple_of(2) {
            Subject::Patient(format!("Client {n:04}"))
        } else {
            Subject::Topic(format!("Coverage week {n}"))
        };
        let meta = ThreadMeta {
            subject,
            title: format!("Authorization renewal pending ({n})"),
            category,
            created_by: self.authors[a].member,
            created_ms,
            creator,
            nonce,
        };
        let author = &mut self.authors[a];
        let me = author.secret.id();
        let doc = author
            .docs
            .entry(thread)
            .or_insert_with(|| ThreadDoc::new(&me));
        let change = doc.create(&meta).expect("new thread");
        let env = author
            .replica
            .author_sealed(&author.secret, &mut self.rng, log, &change)
            .expect("thread key held");
        self.publish(env);
        thread
    }

    /// Posts message `n` to `thread` from a random authoring device.
    fn post(&mut self, n: usize, thread: ThreadId, log: LogId) {
        let a = self.rng.random_range(0..self.authors.len());
        let random = self.random_id();
        let at_ms = self.tick();
        let task = (n % 10 == 3).then(|| NewTask {
            assignee: self.authors[(a + 1) % self.authors.len()].member,
            due: "2024-03-15".to_string(),
        });
        let author = &mut self.authors[a];
        let msg = NewMessage {
            random,
            author: author.member,
            device: author.secret.id(),
            at_ms,
            body: format!("{} (#{n})", BODIES[n % BODIES.len()]),
            priority: if n % 20 == 7 {
                Priority::Urgent
            } else {
                Priority::Normal
            },
            task,
        };
        let doc = author.docs.get_mut(&thread).expect("thread materialized");
        let change = doc.post(&msg).expect("post").change;
        let env = author
            .replica
            .author_sealed(&author.secret, &mut self.rng, log, &change)
            .expect("thread key held");
        self.publish(env);
    }
}

/// Generates a clinic whose roster also enrolls `readers` as admin clinicians (they
/// receive every thread key and may invite, but author nothing).
pub fn generate(spec: Spec, readers: &[DevicePublic]) -> Clinic {
    assert!(spec.threads > 0, "at least one thread");
    let mut rng = ChaCha20Rng::seed_from_u64(spec.seed);
    let founder = DeviceSecret::generate(&mut rng);
    let colleague = DeviceSecret::generate(&mut rng);
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let genesis = SignedGenesis::new(&founder, T0_MS, nonce);
    let mut g = Generator {
        authors: Vec::new(),
        envelopes: Vec::new(),
        clock_ms: T0_MS,
        rng,
    };
    let founder_member = MemberId(g.random_id());
    let colleague_member = MemberId(g.random_id());
    g.authors = vec![
        Author::new(founder, founder_member, &genesis),
        Author::new(colleague, colleague_member, &genesis),
    ];

    // Found the clinic as `Node::init_clinic` does.
    let roster_key = SecretKey::generate(&mut g.rng);
    let founder = &g.authors[0];
    let grant = founder
        .replica
        .author_grants(
            &founder.secret,
            LogId::Roster,
            0,
            &roster_key,
            &[founder.secret.public()],
        )
        .expect("grant seals");
    g.publish(grant);
    g.roster_op(Op::Init {
        clinic_name: "Riverside Pediatric Therapy".to_string(),
        member: founder_member,
        name: "Dana Admin".to_string(),
        role: Role::Clinician,
    });
    let colleague_device = g.authors[1].secret.public();
    g.enroll(colleague_member, "Sam Therapist", colleague_device, false);
    for (i, device) in readers.iter().enumerate() {
        let member = MemberId(g.random_id());
        g.enroll(member, &format!("Reader {i}"), *device, true);
    }
    g.regrant();

    let logs: Vec<(ThreadId, LogId)> = (0..spec.threads)
        .map(|n| {
            let thread = g.create_thread(n);
            let category = CATEGORIES[n % CATEGORIES.len()];
            (
                thread,
                LogId::Thread {
                    id: thread,
                    category,
                },
            )
        })
        .collect();
    for n in 0..spec.messages {
        let (thread, log) = logs[n % logs.len()];
        g.post(n, thread, log);
    }
    Clinic {
        genesis,
        envelopes: g.envelopes,
    }
}

/// Writes the clinic as a bundle file at `path`, as `huddle bundle export` would.
#[allow(dead_code)] // not every bench writes bundles
pub fn write_bundle(clinic: &Clinic, path: &std::path::Path) {
    let file = std::fs::File::create(path).expect("bundle file");
    let mut w = Writer::new(std::io::BufWriter::new(file), &clinic.genesis.encode())
        .expect("bundle header");
    for env in &clinic.envelopes {
        w.record(&env.encode()).expect("bundle record");
    }
    w.finish().expect("bundle trailer");
}

/// A size from the environment (`HUDDLE_BENCH_*`), to make runs smaller while developing.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
