//! The shared test kit: an in-process clinic simulator driving the sans-IO core through
//! its one entry point, [`Replica::handle`]. Named devices with keys derived from a
//! seed, each with its own replica, envelope store and thread documents. The harness
//! carries out every [`Effect`] exactly as a node would (persist accepted envelopes,
//! apply thread changes, rebuild a thread when its key arrives, keep keys, grants and
//! held envelopes), and records every envelope authored anywhere — including the key
//! rotations and grants a replica authors on its own — so tests can deliver them in any
//! order they like. A device can be restarted: its replica is rebuilt with
//! `Replica::restore` from what it persisted. The benchmarks build their clinics with
//! the same kit.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use huddle::core::cipher::SecretKey;
use huddle::core::envelope::{DecodeError, Envelope};
use huddle::core::identity::{DevicePublic, DeviceSecret};
use huddle::core::ids::{DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use huddle::core::policy::{Category, Role};
use huddle::core::replica::{
    AuthorError, Ctx, Effect, Head, IngestError, Input, KeySlot, Lookup, Notice, Replica, Results,
    Status,
};
use huddle::core::roster::{Member, Op, SignedGenesis};
use huddle::core::thread::{
    Applied, ChangeAuthor, MessageView, NewMessage, NewTask, Priority, Subject, ThreadDoc,
    ThreadMeta, derive_thread_id, stated_time_ms,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One device's persisted envelopes: what a node's store would hold.
#[derive(Default)]
pub struct Store {
    envelopes: BTreeMap<EnvelopeId, Envelope>,
    positions: HashMap<(LogId, DeviceId, u64), EnvelopeId>,
    /// Ids in the order they were accepted.
    order: Vec<EnvelopeId>,
}

impl Lookup for Store {
    fn id_at(&self, log: &LogId, author: &DeviceId, seq: u64) -> Option<EnvelopeId> {
        self.positions.get(&(*log, *author, seq)).copied()
    }
}

impl Store {
    fn put(&mut self, env: &Envelope, id: EnvelopeId) {
        let h = &env.header;
        self.positions.insert((h.log, h.author, h.seq), id);
        if self.envelopes.insert(id, env.clone()).is_none() {
            self.order.push(id);
        }
    }

    pub fn contains(&self, id: &EnvelopeId) -> bool {
        self.envelopes.contains_key(id)
    }

    pub fn ids(&self) -> BTreeSet<EnvelopeId> {
        self.envelopes.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.envelopes.len()
    }

    /// Every stored envelope, in the order this device accepted them.
    pub fn in_accept_order(&self) -> impl Iterator<Item = &Envelope> {
        self.order.iter().map(|id| &self.envelopes[id])
    }

    /// The newest stored envelope of each author in each log.
    pub fn heads(&self) -> BTreeMap<(LogId, DeviceId), Head> {
        let mut heads: BTreeMap<(LogId, DeviceId), Head> = BTreeMap::new();
        for ((log, author, seq), id) in &self.positions {
            let head = heads
                .entry((*log, *author))
                .or_insert(Head { seq: *seq, id: *id });
            if *seq > head.seq {
                *head = Head { seq: *seq, id: *id };
            }
        }
        heads
    }

    /// The stored envelope of `log` that states the latest time (the newest post).
    pub fn newest(&self, log: &LogId) -> Option<Envelope> {
        self.envelopes
            .values()
            .filter(|e| e.header.log == *log)
            .max_by_key(|e| e.header.at_ms)
            .cloned()
    }

    /// The stored envelopes of one log, each author's chain in order.
    pub fn log(&self, log: &LogId) -> Vec<&Envelope> {
        let mut out: Vec<&Envelope> = self
            .envelopes
            .values()
            .filter(|e| e.header.log == *log)
            .collect();
        out.sort_by_key(|e| (e.header.author, e.header.seq));
        out
    }
}

/// One simulated device.
pub struct Device {
    pub name: String,
    pub secret: DeviceSecret,
    pub replica: Replica,
    pub store: Store,
    /// Materialized thread documents (only for threads this device could decrypt).
    pub docs: BTreeMap<ThreadId, ThreadDoc>,
    /// How many `ThreadChange` effects each thread produced on this device.
    pub changes_seen: BTreeMap<ThreadId, usize>,
    /// Changes a document refused; a correct core never produces any.
    pub doc_errors: Vec<String>,
    /// Threads with a change whose author's member this device's roster does not know
    /// yet (the founder, before `Init` is folded): rebuilt when the roster changes.
    pub unjudged: BTreeSet<ThreadId>,
    /// Persisted keys, grants and held envelopes, for [`Network::restart`].
    keys: BTreeMap<KeySlot, SecretKey>,
    granted: BTreeSet<(KeySlot, DeviceId)>,
    held: BTreeMap<EnvelopeId, Envelope>,
    /// Notices gathered and not yet taken.
    notices: Vec<Notice>,
    /// Authors nothing on its own, across restarts too (see [`Network::blank_twin`]).
    pub quiet: bool,
}

impl Device {
    pub fn new(name: &str, secret: DeviceSecret, genesis: &SignedGenesis) -> Device {
        let replica = Replica::new(secret.public(), genesis.clone()).expect("valid genesis");
        Device {
            name: name.to_string(),
            secret,
            replica,
            store: Store::default(),
            docs: BTreeMap::new(),
            changes_seen: BTreeMap::new(),
            doc_errors: Vec::new(),
            unjudged: BTreeSet::new(),
            keys: BTreeMap::new(),
            granted: BTreeSet::new(),
            held: BTreeMap::new(),
            notices: Vec::new(),
            quiet: false,
        }
    }

    /// Hands one input to the replica and carries out every effect, as a node does.
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
            lookup: &self.store,
        };
        let results = self.replica.handle(&mut ctx, input)?;
        for effect in &results.effects {
            self.carry_out(effect);
        }
        self.notices.extend(results.notices.iter().cloned());
        Ok(results)
    }

    pub fn id(&self) -> DeviceId {
        self.secret.id()
    }

    pub fn public(&self) -> DevicePublic {
        self.secret.public()
    }

    /// The member behind this device, if it is active in its own view of the roster.
    pub fn member(&self) -> Option<Member> {
        self.replica.roster().active_member(&self.id()).cloned()
    }

    /// Whether the clinic's policy (as this device sees it) lets this device read `category`.
    pub fn may_read(&self, category: Category) -> bool {
        let roster = self.replica.roster();
        self.member()
            .is_some_and(|m| roster.policy.may_read(m.role, category))
    }

    pub fn doc(&self, thread: &ThreadId) -> Option<&ThreadDoc> {
        self.docs.get(thread)
    }

    /// The messages of a thread as this device shows them (`None` until the thread's
    /// first change has been applied).
    pub fn messages(&self, thread: &ThreadId) -> Option<Vec<MessageView>> {
        self.docs.get(thread)?.messages().ok()
    }

    /// Notices gathered since the last call (across restarts).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Simulates an app restart: a new replica restored from what was persisted, then
    /// resumed. Returns what the resume authored.
    fn restart(
        &mut self,
        genesis: &SignedGenesis,
        rng: &mut ChaCha20Rng,
        now_ms: u64,
    ) -> Vec<Envelope> {
        let mut replica = Replica::new(self.public(), genesis.clone()).expect("valid genesis");
        let roster_envelopes = self.store.log(&LogId::Roster).into_iter().cloned();
        replica.restore(
            self.store.heads(),
            self.keys.iter().map(|(s, k)| (*s, k.clone())),
            self.granted.iter().copied(),
            roster_envelopes,
            self.held.values().cloned(),
            now_ms,
        );
        replica.set_follow_up(!self.quiet);
        // As a node does when it loads a document: stored envelopes that do not open yet
        // are noted, so the thread is rebuilt when their key arrives.
        let locked: Vec<(ThreadId, huddle::core::envelope::Header)> = self
            .store
            .in_accept_order()
            .filter(|e| e.header.log.thread().is_some())
            // A restricted thread's key grants travel in its log: not changes.
            .filter(|e| matches!(e.body, huddle::core::envelope::Body::Sealed(_)))
            .filter(|e| replica.open_thread_change(e).is_none())
            .map(|e| (e.header.log.thread().expect("filtered"), e.header.clone()))
            .collect();
        for (thread, header) in locked {
            replica.note_locked(thread, &header);
        }
        self.replica = replica;
        self.handle(rng, now_ms, Input::Resume)
            .map(|r| r.authored)
            .unwrap_or_default()
    }

    pub fn meta(&self, thread: &ThreadId) -> Option<ThreadMeta> {
        self.docs.get(thread)?.meta()
    }

    /// What a node does with one effect.
    fn carry_out(&mut self, effect: &Effect) {
        let me = self.id();
        match effect {
            Effect::Accepted(env, id) => self.store.put(env, *id),
            Effect::ThreadChange {
                thread,
                author,
                at_ms,
                change,
                ..
            } => {
                *self.changes_seen.entry(*thread).or_default() += 1;
                let Some((category, who)) = self.judged_as(thread, author, *at_ms) else {
                    self.unjudged.insert(*thread);
                    return;
                };
                let roster = self.replica.roster();
                let member_of = |d: &DeviceId| roster.devices.get(d).map(|e| e.member);
                let doc = self
                    .docs
                    .entry(*thread)
                    .or_insert_with(|| ThreadDoc::new(&me));
                match doc.apply(category, *thread, &who, &member_of, change) {
                    Ok(Applied::Now { refused, .. }) => self
                        .doc_errors
                        .extend(refused.iter().map(|e| format!("{thread:?}: {e}"))),
                    Ok(_) => {}
                    Err(e) => self.doc_errors.push(format!("{thread:?}: {e}")),
                }
            }
            Effect::ThreadUnlocked { thread } => self.rematerialize(*thread),
            Effect::Pending(env, id) => {
                self.held.insert(*id, env.clone());
            }
            Effect::Unpended(id) => {
                self.held.remove(id);
            }
            Effect::Key { slot, key } => {
                self.keys.insert(*slot, key.clone());
            }
            Effect::Granted { slot, device } => {
                self.granted.insert((*slot, *device));
            }
            Effect::RosterChanged => {
                for thread in std::mem::take(&mut self.unjudged) {
                    self.rematerialize(thread);
                }
            }
        }
    }

    /// Rebuilds a thread document from every stored envelope of the thread.
    fn rematerialize(&mut self, thread: ThreadId) {
        let Some(log) = self.replica.thread_log(&thread) else {
            return;
        };
        let mut doc = ThreadDoc::new(&self.id());
        let mut changes = Vec::new();
        let mut category = None;
        for env in self.store.log(&log) {
            if let Some(change) = self.replica.open_thread_change(env) {
                match self.judged_as(&thread, &env.header.author, env.header.at_ms) {
                    Some((c, who)) => {
                        category = Some(c);
                        changes.push((who, change));
                    }
                    None => {
                        self.unjudged.insert(thread);
                    }
                }
            }
        }
        if let Some(category) = category {
            let roster = self.replica.roster();
            let member_of = |d: &DeviceId| roster.devices.get(d).map(|e| e.member);
            for e in doc.apply_batch(category, thread, &member_of, changes) {
                self.doc_errors.push(format!("{thread:?}: {e}"));
            }
        }
        self.docs.insert(thread, doc);
    }

    /// The log category and author of a received change, as a node passes them: the
    /// signed envelope's device and time, and the device's member.
    fn judged_as(
        &self,
        thread: &ThreadId,
        author: &DeviceId,
        at_ms: u64,
    ) -> Option<(Category, ChangeAuthor)> {
        let Some(LogId::Thread { category, .. }) = self.replica.thread_log(thread) else {
            return None;
        };
        let who = ChangeAuthor {
            device: *author,
            member: self.replica.roster().devices.get(author)?.member,
            at_ms,
        };
        Some((category, who))
    }
}

/// What became of one delivery.
pub struct Delivery {
    pub result: Result<Status, IngestError>,
    pub effects: Vec<Effect>,
    /// What the receiving device authored in response (key rotations, grants).
    pub authored: Vec<Envelope>,
}

/// A clinic of simulated devices plus the record of every envelope authored anywhere.
pub struct Network {
    pub genesis: SignedGenesis,
    devices: Vec<Device>,
    /// Every envelope authored by any device, in creation order (a causal order).
    authored: Vec<Envelope>,
    rng: ChaCha20Rng,
    now_ms: u64,
    next_message: u64,
}

/// Seed of the device keys of a network: distinct per device name, fixed per seed.
fn device_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Network {
    /// A clinic founded by device `founder`: genesis only, roster not yet initialized.
    pub fn new(seed: u64, founder: &str) -> Network {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let secret =
            DeviceSecret::generate(&mut ChaCha20Rng::seed_from_u64(device_seed(seed, founder)));
        let genesis = SignedGenesis::new(&secret, 1_700_000_000_000, rng.random());
        let device = Device::new(founder, secret, &genesis);
        Network {
            genesis,
            devices: vec![device],
            authored: Vec::new(),
            rng,
            now_ms: 1_700_000_000_000,
            next_message: 0,
        }
    }

    /// The same clinic and device keys, but every device starts from nothing: no
    /// envelopes, keys or documents. Its devices author nothing on their own (no
    /// rotations or grants): they replay a history in which their twins already did.
    pub fn blank_twin(&self) -> Network {
        let devices = self
            .devices
            .iter()
            .map(|d| {
                let secret = DeviceSecret::from_bytes(&d.secret.to_bytes());
                let mut twin = Device::new(&d.name, secret, &self.genesis);
                twin.replica.set_follow_up(false);
                twin.quiet = true;
                twin
            })
            .collect();
        Network {
            genesis: self.genesis.clone(),
            devices,
            authored: Vec::new(),
            rng: self.rng.clone(),
            now_ms: self.now_ms,
            next_message: self.next_message,
        }
    }

    /// A device with fresh keys that knows the clinic's genesis but is not enrolled.
    pub fn spawn(&mut self, name: &str) -> DevicePublic {
        assert!(
            self.devices.iter().all(|d| d.name != name),
            "device `{name}` exists"
        );
        let seed = device_seed(self.rng.random(), name);
        let secret = DeviceSecret::generate(&mut ChaCha20Rng::seed_from_u64(seed));
        let public = secret.public();
        self.devices.push(Device::new(name, secret, &self.genesis));
        public
    }

    pub fn device(&self, name: &str) -> &Device {
        self.devices
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no device `{name}`"))
    }

    pub fn device_mut(&mut self, name: &str) -> &mut Device {
        self.devices
            .iter_mut()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no device `{name}`"))
    }

    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.name.clone()).collect()
    }

    /// Every envelope authored so far, in creation order.
    pub fn authored(&self) -> &[Envelope] {
        &self.authored
    }

    /// A fresh timestamp, later than every earlier one.
    pub fn tick(&mut self) -> u64 {
        self.now_ms += 1_000;
        self.now_ms
    }

    /// Moves the clock forward by `ms` (an emergency window passes, say).
    pub fn advance_clock(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    /// The clock's time now (the last tick).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn random_bytes<const N: usize>(&mut self) -> [u8; N] {
        self.rng.random()
    }

    // ---- delivery ----

    /// Runs one input on a device; what it authors is recorded as sent.
    pub fn handle(&mut self, name: &str, input: Input) -> Result<Results, AuthorError> {
        let now = self.tick();
        let i = self.index(name);
        let results = self.devices[i].handle(&mut self.rng, now, input)?;
        self.authored.extend(results.authored.iter().cloned());
        Ok(results)
    }

    fn index(&self, name: &str) -> usize {
        self.devices
            .iter()
            .position(|d| d.name == name)
            .unwrap_or_else(|| panic!("no device `{name}`"))
    }

    /// Delivers one envelope to a device and carries out the resulting effects.
    pub fn deliver(&mut self, to: &str, env: Envelope) -> Delivery {
        let results = self
            .handle(to, Input::Envelopes(vec![env]))
            .expect("receiving never fails to author");
        Delivery {
            result: results.statuses.into_iter().next().expect("one status"),
            effects: results.effects,
            authored: results.authored,
        }
    }

    /// Delivers envelopes as one batch (as a sync round does); a status per envelope.
    pub fn deliver_batch(
        &mut self,
        to: &str,
        envs: Vec<Envelope>,
    ) -> Vec<Result<Status, IngestError>> {
        self.handle(to, Input::Envelopes(envs))
            .expect("receiving never fails to author")
            .statuses
    }

    /// Restarts a device: its replica is rebuilt from its persisted envelopes, keys,
    /// grants and held envelopes (its thread documents stand for saved snapshots).
    pub fn restart(&mut self, name: &str) {
        let genesis = self.genesis.clone();
        let now = self.tick();
        let i = self.index(name);
        let authored = self.devices[i].restart(&genesis, &mut self.rng, now);
        self.authored.extend(authored);
    }

    /// Decodes wire bytes and delivers the envelope they hold.
    pub fn deliver_bytes(&mut self, to: &str, bytes: &[u8]) -> Result<Delivery, DecodeError> {
        Ok(self.deliver(to, Envelope::decode(bytes)?))
    }

    /// Delivers every authored envelope the device does not hold yet, in creation order.
    /// None may be refused; some may be held back (a device that cannot read the roster
    /// yet does not know the authors that roster enrolled).
    pub fn sync(&mut self, to: &str) {
        let missing: Vec<Envelope> = {
            let store = &self.device(to).store;
            self.authored
                .iter()
                .filter(|e| !store.contains(&e.id()))
                .cloned()
                .collect()
        };
        for env in missing {
            let id = env.id();
            let result = self.deliver(to, env).result;
            assert!(
                result.is_ok(),
                "in-order delivery of {id:?} to `{to}` gave {result:?}"
            );
        }
    }

    /// Brings every device up to date with everything authored so far, including what
    /// devices author in response (grants, rotations), until nothing new is authored.
    pub fn sync_all(&mut self) {
        for _ in 0..8 {
            let before = self.authored.len();
            for name in self.names() {
                self.sync(&name);
            }
            if self.authored.len() == before {
                return;
            }
        }
        panic!("devices kept authoring in response to each other");
    }

    // ---- authoring ----

    /// Runs `f` with a device's replica, keys and the network's randomness, without
    /// committing anything: for building envelopes by hand.
    pub fn craft<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&Replica, &DeviceSecret, &mut ChaCha20Rng) -> T,
    ) -> T {
        let i = self.index(name);
        let device = &self.devices[i];
        f(&device.replica, &device.secret, &mut self.rng)
    }

    /// Ingests a hand-built envelope on its author (it must be accepted) and records it
    /// as sent.
    pub fn commit(&mut self, name: &str, env: Envelope) -> Envelope {
        let result = self.deliver(name, env.clone()).result;
        assert_eq!(
            result,
            Ok(Status::Accepted),
            "local envelope refused on `{name}`"
        );
        self.authored.push(env.clone());
        env
    }

    /// A modified client: seals `plain` into `log` as device `name` with the key in
    /// `slot` (default: the one it would write with), bypassing every check the
    /// replica makes on its own changes. Nothing is committed.
    pub fn forge_sealed(
        &mut self,
        name: &str,
        log: LogId,
        slot: Option<KeySlot>,
        plain: &[u8],
    ) -> Envelope {
        let at = self.tick();
        self.forge_sealed_at(name, log, slot, plain, at)
    }

    /// Like [`Network::forge_sealed`], with the time the envelope states chosen by the
    /// caller (to match the time a hand-built change states).
    pub fn forge_sealed_at(
        &mut self,
        name: &str,
        log: LogId,
        slot: Option<KeySlot>,
        plain: &[u8],
        at: u64,
    ) -> Envelope {
        self.craft(name, |r, s, rng| {
            let slot = slot
                .or_else(|| r.writing_slot(&log))
                .expect("the forger holds a key for the log");
            let header = r.next_header(log, &slot, at);
            let key = r.key_for(&header).expect("the forger holds that key");
            let ct = key.encrypt(rng, &header.aad(), plain);
            Envelope::sign(s, header, huddle::core::envelope::Body::Sealed(ct))
        })
    }

    /// A modified client: an envelope of `name` granting `key` as `slot` to
    /// `recipients`, whoever they are. Nothing is committed.
    pub fn forge_grants(
        &mut self,
        name: &str,
        slot: KeySlot,
        key: &SecretKey,
        recipients: &[DevicePublic],
    ) -> Envelope {
        let at = self.tick();
        self.craft(name, |r, s, _| {
            let grants = recipients
                .iter()
                .map(|d| huddle::core::envelope::Grant {
                    recipient: d.id,
                    sealed: huddle::core::seal::seal(
                        s,
                        &d.exchange,
                        &huddle::core::replica::grant_context(&r.clinic(), &slot, &d.id),
                        key,
                    )
                    .expect("seal"),
                })
                .collect();
            let header = r.next_header(slot.log, &slot, at);
            Envelope::sign(s, header, huddle::core::envelope::Body::Grants(grants))
        })
    }

    /// Founds the clinic on the founder device (the `Init` operation; the replica mints
    /// and grants itself the roster key first).
    pub fn init_clinic(&mut self, clinic_name: &str, member_name: &str, role: Role) -> MemberId {
        let founder = self.devices[0].name.clone();
        let member = MemberId(self.rng.random());
        self.roster_op(
            &founder,
            Op::Init {
                clinic_name: clinic_name.to_string(),
                member,
                name: member_name.to_string(),
                role,
            },
        );
        member
    }

    /// Authors an admin operation on `admin`; returns the operation's envelope.
    pub fn roster_op(&mut self, admin: &str, op: Op) -> Envelope {
        self.try_roster_op(admin, op)
            .unwrap_or_else(|e| panic!("roster op refused: {e}"))
    }

    pub fn try_roster_op(&mut self, admin: &str, op: Op) -> Result<Envelope, AuthorError> {
        let results = self.handle(admin, Input::Roster(op))?;
        Ok(results
            .authored
            .into_iter()
            .find(|e| {
                e.header.log == LogId::Roster
                    && matches!(e.body, huddle::core::envelope::Body::Sealed(_))
            })
            .expect("the operation's envelope"))
    }

    pub fn add_member(&mut self, admin: &str, name: &str, role: Role, is_admin: bool) -> MemberId {
        let member = MemberId(self.rng.random());
        self.roster_op(
            admin,
            Op::AddMember {
                member,
                name: name.to_string(),
                role,
                admin: is_admin,
            },
        );
        member
    }

    /// Creates device `device_name` and enrolls it for `member`.
    pub fn add_device(&mut self, admin: &str, member: MemberId, device_name: &str) {
        let device = self.spawn(device_name);
        self.roster_op(admin, Op::AddDevice { member, device });
    }

    /// Lets a device grant the keys it holds to readers that lack them and rotate due
    /// keys (every input ends this way); returns how many envelopes it authored.
    pub fn regrant(&mut self, name: &str) -> usize {
        self.handle(name, Input::Envelopes(Vec::new()))
            .expect("follow-up")
            .authored
            .len()
    }

    /// Encrypts a thread change with the thread's key on `name` and commits it.
    fn commit_change(&mut self, name: &str, log: LogId, change: &[u8]) -> Envelope {
        let results = self
            .handle(
                name,
                Input::Seal {
                    log,
                    plain: change.to_vec(),
                    at_ms: stated_time_ms(change).expect("local changes state their time"),
                },
            )
            .unwrap_or_else(|e| panic!("`{name}` cannot write to {log:?}: {e}"));
        results
            .authored
            .into_iter()
            .find(|e| e.header.log == log)
            .expect("the sealed change")
    }

    /// Creates a thread on `name` (the category's key is minted if none is held).
    pub fn create_thread(&mut self, name: &str, category: Category, title: &str) -> LogId {
        let nonce: [u8; 16] = self.rng.random();
        self.create_thread_with(name, category, title, nonce)
    }

    /// Starts a direct conversation on `name` with `others` (the roster operation,
    /// then the thread's first change, as the node does).
    #[allow(dead_code)]
    pub fn start_direct(&mut self, name: &str, others: &[MemberId]) -> LogId {
        let nonce: [u8; 16] = self.rng.random();
        let thread = derive_thread_id(Category::Direct, &self.device(name).id(), &nonce);
        self.roster_op(
            name,
            Op::StartDirect {
                thread,
                nonce,
                members: others.to_vec(),
            },
        );
        self.create_thread_with(name, Category::Direct, "Direct message", nonce)
    }

    fn create_thread_with(
        &mut self,
        name: &str,
        category: Category,
        title: &str,
        nonce: [u8; 16],
    ) -> LogId {
        let creator = self.device(name).id();
        let id = derive_thread_id(category, &creator, &nonce);
        let log = LogId::Thread { id, category };
        let created_by = self.member_of(name);
        let meta = ThreadMeta {
            subject: Subject::Topic(title.to_string()),
            title: title.to_string(),
            category,
            created_by,
            created_ms: self.tick(),
            creator,
            nonce,
        };
        let device = self.device_mut(name);
        let mut doc = ThreadDoc::new(&device.id());
        let change = doc.create(&meta).expect("create thread");
        device.docs.insert(id, doc);
        self.commit_change(name, log, &change);
        log
    }

    fn member_of(&self, name: &str) -> MemberId {
        self.device(name)
            .member()
            .unwrap_or_else(|| panic!("`{name}` is not an active member"))
            .id
    }

    fn doc_mut(&mut self, name: &str, log: LogId) -> &mut ThreadDoc {
        let thread = log.thread().expect("a thread log");
        self.device_mut(name)
            .docs
            .get_mut(&thread)
            .unwrap_or_else(|| panic!("`{name}` has not materialized {thread:?}"))
    }

    /// Posts a message (a task for `task_for` if given); returns the message id.
    pub fn post(
        &mut self,
        name: &str,
        log: LogId,
        body: &str,
        urgent: bool,
        task_for: Option<MemberId>,
    ) -> String {
        self.next_message += 1;
        let msg = NewMessage {
            reply_to: None,
            random: self.next_message.to_be_bytes(),
            author: self.member_of(name),
            device: self.device(name).id(),
            at_ms: self.tick(),
            body: body.to_string(),
            priority: if urgent {
                Priority::Urgent
            } else {
                Priority::Normal
            },
            task: task_for.map(|assignee| NewTask {
                assignee,
                due: "2026-12-01".into(),
            }),
        };
        let posted = self.doc_mut(name, log).post(&msg).expect("post");
        self.commit_change(name, log, &posted.change);
        posted.id
    }

    /// Marks a task done; `false` if the device does not see that message as a task.
    pub fn complete_task(&mut self, name: &str, log: LogId, message: &str) -> bool {
        let by = self.member_of(name);
        let at = self.tick();
        match self.doc_mut(name, log).complete_task(message, &by, at) {
            Ok(change) => {
                self.commit_change(name, log, &change);
                true
            }
            Err(_) => false,
        }
    }

    /// Marks everything read; `false` if nothing was unread.
    pub fn mark_read(&mut self, name: &str, log: LogId) -> bool {
        let by = self.member_of(name);
        let at = self.tick();
        match self
            .doc_mut(name, log)
            .mark_read(&by, at)
            .expect("mark read")
        {
            Some(change) => {
                self.commit_change(name, log, &change);
                true
            }
            None => false,
        }
    }
}

/// `items` in the order `picks` choose (each pick indexes what is left); the same picks
/// give the same order, so proptest can shrink a delivery schedule.
pub fn shuffled<T: Clone>(items: &[T], picks: &[proptest::sample::Index]) -> Vec<T> {
    let mut rest = items.to_vec();
    let mut out = Vec::with_capacity(rest.len());
    let mut i = 0;
    while !rest.is_empty() {
        let k = match picks {
            [] => 0,
            _ => picks[i % picks.len()].index(rest.len()),
        };
        out.push(rest.swap_remove(k));
        i += 1;
    }
    out
}

/// Whether device `name` shows a message `text` in thread `log`.
#[allow(dead_code)]
pub fn reads(net: &Network, name: &str, log: &LogId, text: &str) -> bool {
    let thread = log.thread().expect("a thread log");
    net.device(name)
        .messages(&thread)
        .is_some_and(|m| m.iter().any(|m| m.body == text))
}

/// The newest sealed change of `log` written by any device.
#[allow(dead_code)]
pub fn newest_post(net: &Network, log: &LogId) -> Envelope {
    net.authored()
        .iter()
        .rev()
        .find(|e| e.header.log == *log && matches!(e.body, huddle::core::envelope::Body::Sealed(_)))
        .cloned()
        .expect("a sealed change")
}
