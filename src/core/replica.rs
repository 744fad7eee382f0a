//! The replica state machine: what one device knows of its clinic's logs. It validates
//! every envelope — local or received — the same way (signature, clinic, author chain,
//! enrolled author), decrypts what this device may read, folds the roster, and returns
//! what the caller must persist or apply as [`Effect`]s. It performs no I/O: storage
//! lookups come in through [`Lookup`], time and randomness as arguments.

use rand::CryptoRng;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::cipher::SecretKey;
use super::envelope::{Body, Envelope, Grant, Header};
use super::identity::{DevicePublic, DeviceSecret};
use super::ids::{ClinicId, DeviceId, EnvelopeId, LogId, ThreadId};
use super::policy::Category;
use super::roster::{self, Folded, Op, OpRecord, Roster, RosterError, RosterOp, SignedGenesis};
use super::seal::{self, SealError};

/// Envelopes held back waiting for a predecessor or for their author's enrollment.
pub const MAX_PENDING: usize = 200_000;

/// The newest envelope of one author in one log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Head {
    pub seq: u64,
    pub id: EnvelopeId,
}

/// One chain's envelopes in a batch, by position (more than one at a position: a fork).
type ChainPositions<'a> = BTreeMap<u64, Vec<(EnvelopeId, &'a Envelope)>>;

/// Read access to envelopes already persisted: which envelope holds a chain position.
pub trait Lookup {
    fn id_at(&self, log: &LogId, author: &DeviceId, seq: u64) -> Option<EnvelopeId>;
}

/// Work the caller must carry out, in order.
#[derive(Debug)]
pub enum Effect {
    /// Persist an accepted envelope; it is now the head of its author's chain.
    Accepted(Envelope, EnvelopeId),
    /// Persist an envelope that waits for its predecessor or its author's enrollment.
    Pending(Envelope, EnvelopeId),
    /// A pending envelope was accepted or dropped: forget it.
    Unpended(EnvelopeId),
    /// Persist a key this device now holds.
    Key {
        log: LogId,
        epoch: u32,
        key: SecretKey,
    },
    /// Remember that `device` has been given the key of `log` at `epoch`.
    Granted {
        log: LogId,
        epoch: u32,
        device: DeviceId,
    },
    /// Apply a decrypted Automerge change to a thread document.
    ThreadChange {
        thread: ThreadId,
        author: DeviceId,
        change: Vec<u8>,
    },
    /// A key arrived: envelopes of this thread held earlier may now be readable.
    ThreadUnlocked { thread: ThreadId },
    /// The roster changed.
    RosterChanged,
}

/// What became of one ingested envelope.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Accepted,
    /// Already held: ingesting it again changes nothing.
    Duplicate,
    /// Held back until its predecessor arrives.
    WaitingForPredecessor,
    /// Held back until its author's enrollment is known.
    WaitingForAuthor,
}

/// An envelope that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("envelope belongs to another clinic")]
    WrongClinic,
    #[error("envelope signature does not verify: forged or altered")]
    BadSignature,
    #[error(
        "envelope #{seq} of device {author:?} conflicts with the one already held (forked chain)"
    )]
    Equivocation { author: DeviceId, seq: u64 },
    #[error("envelope does not follow its author's previous envelope: altered or out of chain")]
    BrokenChain,
    #[error("too many envelopes are waiting for their predecessors ({MAX_PENDING})")]
    PendingFull,
}

/// Something noticed while processing an accepted envelope; the envelope itself is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Notice {
    #[error("roster operation {0:?} has no effect: {1}")]
    RosterRejected(EnvelopeId, RosterError),
    #[error("envelope {0:?} could not be decrypted with the key held for its epoch")]
    Undecryptable(EnvelopeId),
    #[error("a key grant in envelope {0:?} does not come from its author's key")]
    BadGrant(EnvelopeId),
    #[error("envelope {0:?} refused while draining: {1}")]
    Refused(EnvelopeId, IngestError),
}

/// Why a local change could not be authored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorError {
    #[error(transparent)]
    Roster(#[from] RosterError),
    #[error("this device holds no key for that log")]
    NoKey,
    #[error("this device is not an active member of the clinic")]
    NotEnrolled,
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// One device's view of one clinic.
pub struct Replica {
    me: DevicePublic,
    genesis: SignedGenesis,
    clinic: ClinicId,
    heads: HashMap<(LogId, DeviceId), Head>,
    pending: HashMap<EnvelopeId, Envelope>,
    pending_index: HashMap<(LogId, DeviceId), BTreeMap<u64, BTreeSet<EnvelopeId>>>,
    roster_ops: HashMap<EnvelopeId, OpRecord>,
    roster_sealed: HashMap<EnvelopeId, Envelope>,
    roster_key_candidates: Vec<(u32, SecretKey)>,
    folded: Folded,
    keys: HashMap<(LogId, u32), SecretKey>,
    granted: HashSet<(LogId, u32, DeviceId)>,
    notices: Vec<Notice>,
    /// The roster changed outside an acceptance: held envelopes may now proceed.
    unblocked: bool,
    /// Envelopes authenticated through a verified later envelope of the same chain.
    chain_verified: HashSet<EnvelopeId>,
}

fn grant_context(clinic: &ClinicId, log: &LogId, epoch: u32, recipient: &DeviceId) -> Vec<u8> {
    let mut c = b"huddle/grant/v1".to_vec();
    c.extend_from_slice(&clinic.0);
    c.extend_from_slice(&log.key_bytes());
    c.extend_from_slice(&epoch.to_be_bytes());
    c.extend_from_slice(&recipient.0);
    c
}

impl Replica {
    /// A replica of the clinic founded by `genesis`, as seen by device `me`.
    pub fn new(me: DevicePublic, genesis: SignedGenesis) -> Result<Self, IngestError> {
        genesis.verify().map_err(|_| IngestError::BadSignature)?;
        let folded = roster::fold(&genesis.genesis, &[]);
        Ok(Replica {
            me,
            clinic: genesis.clinic_id(),
            genesis,
            heads: HashMap::new(),
            pending: HashMap::new(),
            pending_index: HashMap::new(),
            roster_ops: HashMap::new(),
            roster_sealed: HashMap::new(),
            roster_key_candidates: Vec::new(),
            folded,
            keys: HashMap::new(),
            granted: HashSet::new(),
            notices: Vec::new(),
            unblocked: false,
            chain_verified: HashSet::new(),
        })
    }

    /// Rebuilds the in-memory state from what was persisted (no effects are produced).
    pub fn restore(
        &mut self,
        heads: impl IntoIterator<Item = ((LogId, DeviceId), Head)>,
        keys: impl IntoIterator<Item = ((LogId, u32), SecretKey)>,
        granted: impl IntoIterator<Item = (LogId, u32, DeviceId)>,
        roster_envelopes: impl IntoIterator<Item = Envelope>,
        pending: impl IntoIterator<Item = Envelope>,
    ) {
        self.heads.extend(heads);
        self.keys.extend(keys);
        self.granted.extend(granted);
        for env in roster_envelopes {
            if matches!(env.body, Body::Sealed(_)) {
                self.roster_sealed.insert(env.id(), env);
            }
        }
        for env in pending {
            self.hold(env.id(), env);
        }
        let mut sink = Vec::new();
        self.decrypt_roster(&mut sink);
        self.notices.clear();
    }

    pub fn clinic(&self) -> ClinicId {
        self.clinic
    }
    pub fn genesis(&self) -> &SignedGenesis {
        &self.genesis
    }
    pub fn me(&self) -> &DevicePublic {
        &self.me
    }
    pub fn roster(&self) -> &Roster {
        &self.folded.roster
    }
    pub fn heads(&self) -> &HashMap<(LogId, DeviceId), Head> {
        &self.heads
    }
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }
    /// Whether this device has been admitted to the clinic's roster.
    pub fn enrolled(&self) -> bool {
        self.folded.roster.active_member(&self.me.id).is_some()
    }
    pub fn has_key(&self, log: &LogId) -> bool {
        self.current_epoch(log).is_some()
    }
    /// Notices gathered since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Every thread this device holds envelopes of, with its category.
    pub fn threads(&self) -> BTreeMap<ThreadId, Category> {
        self.heads
            .keys()
            .filter_map(|(log, _)| match log {
                LogId::Thread { id, category } => Some((*id, *category)),
                LogId::Roster => None,
            })
            .collect()
    }

    /// The log of a thread this device holds envelopes of.
    pub fn thread_log(&self, thread: &ThreadId) -> Option<LogId> {
        self.threads().get(thread).map(|category| LogId::Thread {
            id: *thread,
            category: *category,
        })
    }

    fn current_epoch(&self, log: &LogId) -> Option<u32> {
        self.keys
            .keys()
            .filter(|(l, _)| l == log)
            .map(|(_, e)| *e)
            .max()
    }

    /// Validates one envelope and everything it unblocks. Effects are appended to `out`.
    pub fn ingest(
        &mut self,
        secret: &DeviceSecret,
        env: Envelope,
        lookup: &impl Lookup,
        out: &mut Vec<Effect>,
    ) -> Result<Status, IngestError> {
        let status = self.ingest_one(secret, env, lookup, out)?;
        // Held envelopes may proceed after an acceptance, or after a held grant opened
        // the roster and made their authors known.
        if status == Status::Accepted || std::mem::take(&mut self.unblocked) {
            self.drain(secret, lookup, out);
        }
        Ok(status)
    }

    /// Prepares a batch for ingestion: each author's envelopes in a log are hash-chained
    /// (`prev` is the id of the previous envelope, and an id covers the whole encoding
    /// with its signature), so one valid signature on the newest envelope of a
    /// contiguous run authenticates every envelope before it. Only run tips are
    /// verified here; if a tip fails, its run is left to per-envelope verification.
    /// Returns how many signatures were checked.
    pub fn verify_chains(&mut self, batch: &[Envelope]) -> usize {
        let mut chains: HashMap<(LogId, DeviceId), ChainPositions> = HashMap::new();
        for env in batch {
            let h = &env.header;
            chains
                .entry((h.log, h.author))
                .or_default()
                .entry(h.seq)
                .or_default()
                .push((env.id(), env));
        }
        let mut checked = 0;
        for by_seq in chains.values() {
            let mut run: Vec<EnvelopeId> = Vec::new();
            let mut last: Option<(u64, EnvelopeId, &Envelope)> = None;
            let mut close = |run: &mut Vec<EnvelopeId>,
                             tip: Option<&Envelope>,
                             verified: &mut HashSet<EnvelopeId>| {
                if run.len() > 1
                    && let Some(tip) = tip
                {
                    checked += 1;
                    if tip.verify().is_ok() {
                        verified.extend(run.iter().copied());
                    }
                }
                run.clear();
            };
            for (seq, at) in by_seq {
                // Forks (two envelopes at one position) are never vouched for.
                let [(id, env)] = at.as_slice() else {
                    close(&mut run, last.map(|l| l.2), &mut self.chain_verified);
                    last = None;
                    continue;
                };
                let links =
                    last.is_some_and(|(s, prev, _)| *seq == s + 1 && env.header.prev == Some(prev));
                if !links {
                    close(&mut run, last.map(|l| l.2), &mut self.chain_verified);
                }
                run.push(*id);
                last = Some((*seq, *id, env));
            }
            close(&mut run, last.map(|l| l.2), &mut self.chain_verified);
        }
        checked
    }

    /// Forgets what [`Replica::verify_chains`] vouched for and was not ingested.
    pub fn end_batch(&mut self) {
        self.chain_verified.clear();
    }

    /// After [`Replica::restore`]: reopens roster keys sealed to this device in held
    /// grants (they are not persisted until confirmed) and lets held envelopes proceed.
    pub fn resume(&mut self, secret: &DeviceSecret, lookup: &impl Lookup, out: &mut Vec<Effect>) {
        let held: Vec<Envelope> = self
            .pending
            .values()
            .filter(|e| e.header.log == LogId::Roster)
            .cloned()
            .collect();
        for env in &held {
            self.consider_roster_grant(secret, env, out);
        }
        self.drain(secret, lookup, out);
        self.unblocked = false;
    }

    fn ingest_one(
        &mut self,
        secret: &DeviceSecret,
        env: Envelope,
        lookup: &impl Lookup,
        out: &mut Vec<Effect>,
    ) -> Result<Status, IngestError> {
        let h = &env.header;
        if h.clinic != self.clinic {
            return Err(IngestError::WrongClinic);
        }
        let id = env.id();
        if self.pending.contains_key(&id) {
            return Ok(if self.folded.roster.knows_device(&h.author) {
                Status::WaitingForPredecessor
            } else {
                Status::WaitingForAuthor
            });
        }
        if !self.chain_verified.remove(&id) {
            env.verify().map_err(|_| IngestError::BadSignature)?;
        }
        if (h.seq == 0) != h.prev.is_none() {
            return Err(IngestError::BrokenChain);
        }
        let head = self.heads.get(&(h.log, h.author)).copied();
        let next = head.map_or(0, |h| h.seq + 1);
        if h.seq < next {
            return match lookup.id_at(&h.log, &h.author, h.seq) {
                Some(held) if held == id => Ok(Status::Duplicate),
                _ => Err(IngestError::Equivocation {
                    author: h.author,
                    seq: h.seq,
                }),
            };
        }
        if h.seq > next {
            return self.park(secret, id, env, Status::WaitingForPredecessor, out);
        }
        if h.prev != head.map(|h| h.id) {
            return Err(IngestError::BrokenChain);
        }
        if !self.folded.roster.knows_device(&h.author) {
            return self.park(secret, id, env, Status::WaitingForAuthor, out);
        }
        self.accept(secret, id, env, out);
        Ok(Status::Accepted)
    }

    fn park(
        &mut self,
        secret: &DeviceSecret,
        id: EnvelopeId,
        env: Envelope,
        status: Status,
        out: &mut Vec<Effect>,
    ) -> Result<Status, IngestError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(IngestError::PendingFull);
        }
        self.consider_roster_grant(secret, &env, out);
        out.push(Effect::Pending(env.clone(), id));
        self.hold(id, env);
        Ok(status)
    }

    /// A device joining by bundle cannot read the roster until it holds the roster key,
    /// which an admin it does not know yet sealed to it: that key is kept as a candidate,
    /// confirmed once it opens a roster envelope from a known author.
    fn consider_roster_grant(
        &mut self,
        secret: &DeviceSecret,
        env: &Envelope,
        out: &mut Vec<Effect>,
    ) {
        if let (LogId::Roster, Body::Grants(grants)) = (&env.header.log, &env.body)
            && self.current_epoch(&LogId::Roster).is_none()
            && let Some(g) = grants.iter().find(|g| g.recipient == self.me.id)
        {
            let ctx = grant_context(&self.clinic, &LogId::Roster, env.header.epoch, &self.me.id);
            if let Ok((key, _)) = seal::open(secret, &ctx, &g.sealed) {
                self.roster_key_candidates.push((env.header.epoch, key));
                self.decrypt_roster(out);
            }
        }
    }

    fn hold(&mut self, id: EnvelopeId, env: Envelope) {
        let h = &env.header;
        self.pending_index
            .entry((h.log, h.author))
            .or_default()
            .entry(h.seq)
            .or_default()
            .insert(id);
        self.pending.insert(id, env);
    }

    fn accept(
        &mut self,
        secret: &DeviceSecret,
        id: EnvelopeId,
        env: Envelope,
        out: &mut Vec<Effect>,
    ) {
        let h = env.header.clone();
        self.heads
            .insert((h.log, h.author), Head { seq: h.seq, id });
        out.push(Effect::Accepted(env.clone(), id));
        match env.body {
            Body::Grants(grants) => self.accept_grants(secret, id, &h, &grants, out),
            Body::Sealed(_) if h.log == LogId::Roster => {
                self.roster_sealed.insert(id, env);
                self.decrypt_roster(out);
            }
            Body::Sealed(ct) => {
                let Some(thread) = h.log.thread() else { return };
                if let Some(key) = self.keys.get(&(h.log, h.epoch)) {
                    match key.decrypt(&h.aad(), &ct) {
                        Ok(change) => out.push(Effect::ThreadChange {
                            thread,
                            author: h.author,
                            change,
                        }),
                        Err(_) => self.notices.push(Notice::Undecryptable(id)),
                    }
                }
            }
        }
    }

    fn accept_grants(
        &mut self,
        secret: &DeviceSecret,
        id: EnvelopeId,
        h: &Header,
        grants: &[Grant],
        out: &mut Vec<Effect>,
    ) {
        for g in grants {
            if self.granted.insert((h.log, h.epoch, g.recipient)) {
                out.push(Effect::Granted {
                    log: h.log,
                    epoch: h.epoch,
                    device: g.recipient,
                });
            }
        }
        let Some(mine) = grants.iter().find(|g| g.recipient == self.me.id) else {
            return;
        };
        if self.keys.contains_key(&(h.log, h.epoch)) {
            return;
        }
        let ctx = grant_context(&self.clinic, &h.log, h.epoch, &self.me.id);
        let author_exchange = match self.folded.roster.devices.get(&h.author) {
            Some(d) => Some(d.public.exchange),
            None if h.author == self.genesis.genesis.founder.id => {
                Some(self.genesis.genesis.founder.exchange)
            }
            None => None,
        };
        match seal::open(secret, &ctx, &mine.sealed) {
            Ok((key, sender)) if Some(sender) == author_exchange => {
                self.add_key(h.log, h.epoch, key, out)
            }
            _ => self.notices.push(Notice::BadGrant(id)),
        }
    }

    fn add_key(&mut self, log: LogId, epoch: u32, key: SecretKey, out: &mut Vec<Effect>) {
        if self.keys.contains_key(&(log, epoch)) {
            return;
        }
        out.push(Effect::Key {
            log,
            epoch,
            key: key.clone(),
        });
        self.keys.insert((log, epoch), key);
        match log {
            LogId::Roster => self.decrypt_roster(out),
            LogId::Thread { id, .. } => out.push(Effect::ThreadUnlocked { thread: id }),
        }
    }

    /// Decrypts the roster envelopes it can, refolds, and reports a change.
    fn decrypt_roster(&mut self, out: &mut Vec<Effect>) {
        self.confirm_roster_candidates(out);
        let ready: Vec<EnvelopeId> = self
            .roster_sealed
            .iter()
            .filter(|(_, e)| self.keys.contains_key(&(LogId::Roster, e.header.epoch)))
            .map(|(id, _)| *id)
            .collect();
        if ready.is_empty() {
            return;
        }
        for id in ready {
            let Some(env) = self.roster_sealed.remove(&id) else {
                continue;
            };
            let Body::Sealed(ct) = &env.body else {
                continue;
            };
            let key = &self.keys[&(LogId::Roster, env.header.epoch)];
            let op = key
                .decrypt(&env.header.aad(), ct)
                .ok()
                .and_then(|plain| postcard::from_bytes::<RosterOp>(&plain).ok());
            match op {
                Some(op) => {
                    self.roster_ops.insert(
                        id,
                        OpRecord {
                            id,
                            author: env.header.author,
                            op,
                        },
                    );
                }
                None => self.notices.push(Notice::Undecryptable(id)),
            }
        }
        let before_rejected: HashSet<EnvelopeId> =
            self.folded.rejected.iter().map(|(id, _)| *id).collect();
        let ops: Vec<OpRecord> = self.roster_ops.values().cloned().collect();
        let folded = roster::fold(&self.genesis.genesis, &ops);
        for (id, e) in &folded.rejected {
            if !before_rejected.contains(id) {
                self.notices.push(Notice::RosterRejected(*id, e.clone()));
            }
        }
        if folded.roster != self.folded.roster {
            out.push(Effect::RosterChanged);
            self.unblocked = true;
        }
        self.folded = folded;
    }

    fn confirm_roster_candidates(&mut self, out: &mut Vec<Effect>) {
        let mut i = 0;
        while i < self.roster_key_candidates.len() {
            let (epoch, key) = &self.roster_key_candidates[i];
            let opens = self.roster_sealed.values().any(|e| match &e.body {
                Body::Sealed(ct) => {
                    e.header.epoch == *epoch && key.decrypt(&e.header.aad(), ct).is_ok()
                }
                Body::Grants(_) => false,
            });
            if opens {
                let (epoch, key) = self.roster_key_candidates.remove(i);
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    self.keys.entry((LogId::Roster, epoch))
                {
                    out.push(Effect::Key {
                        log: LogId::Roster,
                        epoch,
                        key: key.clone(),
                    });
                    slot.insert(key);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Re-ingests pending envelopes whose predecessor and author are now known.
    fn drain(&mut self, secret: &DeviceSecret, lookup: &impl Lookup, out: &mut Vec<Effect>) {
        loop {
            let ready: Vec<EnvelopeId> = self
                .pending_index
                .iter()
                .filter(|((_, author), _)| self.folded.roster.knows_device(author))
                .filter_map(|((log, author), by_seq)| {
                    let next = self.heads.get(&(*log, *author)).map_or(0, |h| h.seq + 1);
                    let (seq, ids) = by_seq.first_key_value()?;
                    (*seq <= next).then(|| ids.iter().copied().collect::<Vec<_>>())
                })
                .flatten()
                .collect();
            if ready.is_empty() {
                return;
            }
            for id in ready {
                let Some(env) = self.pending.remove(&id) else {
                    continue;
                };
                let key = (env.header.log, env.header.author);
                if let Some(by_seq) = self.pending_index.get_mut(&key) {
                    if let Some(ids) = by_seq.get_mut(&env.header.seq) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            by_seq.remove(&env.header.seq);
                        }
                    }
                    if by_seq.is_empty() {
                        self.pending_index.remove(&key);
                    }
                }
                out.push(Effect::Unpended(id));
                if let Err(e) = self.ingest_one(secret, env, lookup, out) {
                    self.notices.push(Notice::Refused(id, e));
                }
            }
        }
    }

    // ---- authoring local envelopes ----

    fn header(&self, log: LogId, epoch: u32) -> Header {
        let head = self.heads.get(&(log, self.me.id));
        Header {
            clinic: self.clinic,
            log,
            author: self.me.id,
            seq: head.map_or(0, |h| h.seq + 1),
            prev: head.map(|h| h.id),
            epoch,
        }
    }

    /// Seals `key` (of `log` at `epoch`) to each of `recipients` in one envelope.
    pub fn author_grants(
        &self,
        secret: &DeviceSecret,
        log: LogId,
        epoch: u32,
        key: &SecretKey,
        recipients: &[DevicePublic],
    ) -> Result<Envelope, AuthorError> {
        let grants = recipients
            .iter()
            .map(|r| {
                let ctx = grant_context(&self.clinic, &log, epoch, &r.id);
                Ok(Grant {
                    recipient: r.id,
                    sealed: seal::seal(secret, &r.exchange, &ctx, key)?,
                })
            })
            .collect::<Result<Vec<_>, SealError>>()?;
        Ok(Envelope::sign(
            secret,
            self.header(log, epoch),
            Body::Grants(grants),
        ))
    }

    /// Encrypts `plain` with the newest key of `log`.
    pub fn author_sealed(
        &self,
        secret: &DeviceSecret,
        rng: &mut impl CryptoRng,
        log: LogId,
        plain: &[u8],
    ) -> Result<Envelope, AuthorError> {
        let epoch = self.current_epoch(&log).ok_or(AuthorError::NoKey)?;
        let header = self.header(log, epoch);
        let ct = self.keys[&(log, epoch)].encrypt(rng, &header.aad(), plain);
        Ok(Envelope::sign(secret, header, Body::Sealed(ct)))
    }

    /// A roster operation by this device, checked against the current roster first.
    pub fn author_roster_op(
        &self,
        secret: &DeviceSecret,
        rng: &mut impl CryptoRng,
        op: Op,
        at_ms: u64,
    ) -> Result<Envelope, AuthorError> {
        self.folded.roster.check(&self.me.id, &op)?;
        let plain = postcard::to_stdvec(&RosterOp {
            deps: self.folded.heads.clone(),
            at_ms,
            op,
        })
        .unwrap_or_default();
        self.author_sealed(secret, rng, LogId::Roster, &plain)
    }

    /// Keys this device holds that some authorized device has not been given yet.
    pub fn missing_grants(&self) -> Vec<(LogId, u32, Vec<DevicePublic>)> {
        let roster = &self.folded.roster;
        if roster.active_member(&self.me.id).is_none() {
            return Vec::new();
        }
        let mut out: Vec<_> = self
            .keys
            .keys()
            .filter_map(|(log, epoch)| {
                let readers = match log {
                    LogId::Roster => roster.all_devices(),
                    LogId::Thread { category, .. } => roster.readers(*category),
                };
                let missing: Vec<DevicePublic> = readers
                    .into_iter()
                    .filter(|d| !self.granted.contains(&(*log, *epoch, d.id)))
                    .collect();
                (!missing.is_empty()).then_some((*log, *epoch, missing))
            })
            .collect();
        out.sort_by_key(|(log, epoch, _)| (*log, *epoch));
        out
    }

    /// The key this device holds for `log` at `epoch`.
    pub fn key(&self, log: &LogId, epoch: u32) -> Option<&SecretKey> {
        self.keys.get(&(*log, epoch))
    }

    /// Decrypts a stored thread envelope, if this device holds its key.
    pub fn open_thread_change(&self, env: &Envelope) -> Option<Vec<u8>> {
        let Body::Sealed(ct) = &env.body else {
            return None;
        };
        env.header.log.thread()?;
        self.keys
            .get(&(env.header.log, env.header.epoch))?
            .decrypt(&env.header.aad(), ct)
            .ok()
    }

    /// The deps a new roster operation would carry (exposed for tests).
    pub fn roster_heads(&self) -> &[EnvelopeId] {
        &self.folded.heads
    }

    /// Roster operations waiting for a dependency.
    pub fn roster_waiting(&self) -> usize {
        self.folded.waiting.len() + self.roster_sealed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::ThreadId;
    use rand::SeedableRng;

    /// A replica and `n` chained envelopes by one author in one thread.
    fn chain(n: u64) -> (Replica, Vec<Envelope>) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let author = DeviceSecret::generate(&mut rng);
        let genesis = SignedGenesis::new(&author, 0, [0; 16]);
        let replica = Replica::new(author.public(), genesis.clone()).unwrap();
        let log = LogId::Thread {
            id: ThreadId([1; 16]),
            category: Category::Operations,
        };
        let mut prev = None;
        let envs = (0..n)
            .map(|seq| {
                let header = Header {
                    clinic: genesis.clinic_id(),
                    log,
                    author: author.id(),
                    seq,
                    prev,
                    epoch: 0,
                };
                let env = Envelope::sign(&author, header, Body::Sealed(vec![seq as u8; 8]));
                prev = Some(env.id());
                env
            })
            .collect();
        (replica, envs)
    }

    #[test]
    fn one_tip_signature_vouches_for_its_whole_run() {
        let (mut r, envs) = chain(5);
        assert_eq!(r.verify_chains(&envs), 1);
        assert_eq!(r.chain_verified.len(), 5);
    }

    #[test]
    fn a_forged_tip_vouches_for_nothing() {
        let (mut r, mut envs) = chain(5);
        envs[4].signature.0[0] ^= 1;
        r.verify_chains(&envs);
        assert!(r.chain_verified.is_empty());
    }

    #[test]
    fn an_altered_envelope_breaks_the_run_and_is_not_vouched_for() {
        let (mut r, mut envs) = chain(6);
        envs[2].body = Body::Sealed(vec![9; 8]);
        let altered = envs[2].id();
        r.verify_chains(&envs);
        // [0, 1, 2*] ends in the altered envelope, whose signature fails; [3, 4, 5] is
        // a run of its own whose tip verifies.
        assert!(!r.chain_verified.contains(&altered));
        assert!(!r.chain_verified.contains(&envs[0].id()));
        assert!(
            r.chain_verified.contains(&envs[3].id()) && r.chain_verified.contains(&envs[5].id())
        );
    }

    #[test]
    fn forks_are_never_vouched_for() {
        let (mut r, mut envs) = chain(4);
        let mut fork = envs[1].clone();
        fork.body = Body::Sealed(vec![7; 8]);
        envs.push(fork.clone());
        r.verify_chains(&envs);
        assert!(!r.chain_verified.contains(&fork.id()));
        assert!(!r.chain_verified.contains(&envs[1].id()));
    }
}
