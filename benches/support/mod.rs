//! A deterministic clinic generator for the benchmarks, driving `Replica::handle` only.
//!
//! Two authoring devices (a founder and a colleague) each run a replica. The founder
//! founds the clinic (`Input::Roster(Op::Init)`: its replica mints and grants itself
//! the roster key), enrolls the colleague and any number of receiving devices (admin
//! clinicians) through `Input::Roster`; then threads are created and messages posted
//! round-robin through `Input::Seal` (the first seal into a category mints that
//! category's key and grants it to its readers). Every envelope a replica authors —
//! including the grants and rotations it authors on its own after each input — is
//! delivered to the other authoring device as one `Input::Envelopes` batch and joins the
//! output in authoring order, so chains, keys and Automerge dependencies are exactly
//! what real devices produce and the result ingests in order with nothing held back.
//! Each envelope is delivered once to each authoring device: generation is linear in
//! the number of messages.

use std::collections::{HashMap, VecDeque};

use huddle::core::envelope::Envelope;
use huddle::core::identity::{DevicePublic, DeviceSecret};
use huddle::core::ids::{DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use huddle::core::policy::{Category, Role};
use huddle::core::replica::{AuthorError, Ctx, Effect, Input, Lookup, Replica, Results, Status};
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

/// Who made a received thread change, as a node passes it to `ThreadDoc::apply`: the
/// signed envelope's device and time, and the device's member.
pub fn change_author(replica: &Replica, device: &DeviceId, at_ms: u64) -> ChangeAuthor {
    ChangeAuthor {
        device: *device,
        member: member_of(replica)(device).expect("an enrolled author"),
        at_ms,
    }
}

/// One authoring device: its keys, replica, persisted positions and thread documents.
pub struct Author {
    pub secret: DeviceSecret,
    pub member: MemberId,
    pub replica: Replica,
    pub lookup: MemLookup,
    docs: HashMap<ThreadId, ThreadDoc>,
}

impl Author {
    pub fn new(secret: DeviceSecret, member: MemberId, genesis: &SignedGenesis) -> Self {
        let replica = Replica::new(secret.public(), genesis.clone()).expect("valid genesis");
        Author {
            secret,
            member,
            replica,
            lookup: MemLookup::default(),
            docs: HashMap::new(),
        }
    }

    /// Hands one input to the replica and carries out its effects as a node does
    /// (persist accepted positions, apply other devices' thread changes).
    pub fn handle(
        &mut self,
        rng: &mut ChaCha20Rng,
        now_ms: u64,
        input: Input,
    ) -> Result<Results, AuthorError> {
        let mut ctx = Ctx {
            secret: &self.secret,
            rng,
            now_ms,
            lookup: &self.lookup,
        };
        let results = self.replica.handle(&mut ctx, input)?;
        let me = self.secret.id();
        for effect in &results.effects {
            match effect {
                Effect::Accepted(env, id) => self.lookup.record(env, *id),
                Effect::ThreadChange {
                    thread,
                    category,
                    author,
                    at_ms,
                    change,
                } if *author != me => {
                    let who = change_author(&self.replica, author, *at_ms);
                    self.docs
                        .entry(*thread)
                        .or_insert_with(|| ThreadDoc::new(&me))
                        .apply(*category, *thread, &who, &member_of(&self.replica), change)
                        .expect("generated changes apply");
                }
                _ => {}
            }
        }
        Ok(results)
    }
}

/// A generated clinic with its founder's device still live (to author more on it).
#[allow(dead_code)] // only the keys bench authors more
pub struct Generated {
    pub clinic: Clinic,
    pub founder: Author,
    pub rng: ChaCha20Rng,
    pub clock_ms: u64,
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

    /// An input on author `a`; everything authored on the way, here and by the other
    /// authoring device in response, is published.
    fn handle(&mut self, a: usize, input: Input) {
        let now = self.clock_ms;
        let results = self.authors[a]
            .handle(&mut self.rng, now, input)
            .expect("generated inputs are valid");
        let mut queue = VecDeque::from([(a, results.authored)]);
        while let Some((from, authored)) = queue.pop_front() {
            if authored.is_empty() {
                continue;
            }
            self.envelopes.extend(authored.iter().cloned());
            for to in (0..self.authors.len()).filter(|&i| i != from) {
                let results = self.authors[to]
                    .handle(&mut self.rng, now, Input::Envelopes(authored.clone()))
                    .expect("envelopes input");
                assert!(
                    results
                        .statuses
                        .iter()
                        .all(|s| matches!(s, Ok(Status::Accepted))),
                    "generated envelopes arrive in order: {:?}",
                    results.statuses
                );
                queue.push_back((to, results.authored));
            }
        }
    }

    /// A roster operation by the founder.
    fn roster_op(&mut self, op: Op) {
        self.tick();
        self.handle(0, Input::Roster(op));
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

    /// Seals a local change (which states its time) into `log` on author `a`.
    fn seal(&mut self, a: usize, log: LogId, change: Vec<u8>) {
        let at_ms = stated_time_ms(&change).expect("local changes state their time");
        self.handle(
            a,
            Input::Seal {
                log,
                plain: change,
                at_ms,
            },
        );
    }

    /// Creates thread `n`, authored by one of the authoring devices in turn.
    fn create_thread(&mut self, n: usize) -> (ThreadId, LogId) {
        let nonce = self.random_id();
        let category = CATEGORIES[n % CATEGORIES.len()];
        let a = n % self.authors.len();
        let creator = self.authors[a].secret.id();
        let thread = derive_thread_id(category, &creator, &nonce);
        let log = LogId::Thread {
            id: thread,
            category,
        };
        let created_ms = self.tick();
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
        self.seal(a, log, change);
        (thread, log)
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
            reply_to: None,
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
        self.seal(a, log, change);
    }
}

/// Generates a clinic whose roster also enrolls `readers` as admin clinicians (they
/// receive every key and may invite, but author nothing).
#[allow(dead_code)] // the keys bench keeps the founder
pub fn generate(spec: Spec, readers: &[DevicePublic]) -> Clinic {
    generate_live(spec, readers).clinic
}

/// As [`generate`], keeping the founder's device.
pub fn generate_live(spec: Spec, readers: &[DevicePublic]) -> Generated {
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

    // Found the clinic: the founder's replica mints and grants itself the roster key.
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

    let logs: Vec<(ThreadId, LogId)> = (0..spec.threads).map(|n| g.create_thread(n)).collect();
    for n in 0..spec.messages {
        let (thread, log) = logs[n % logs.len()];
        g.post(n, thread, log);
    }
    let founder = g.authors.swap_remove(0);
    Generated {
        clinic: Clinic {
            genesis,
            envelopes: g.envelopes,
        },
        founder,
        rng: g.rng,
        clock_ms: g.clock_ms,
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
