//! The replica state machine: what one device knows of its clinic's logs.
//!
//! One entry point, [`Replica::handle`], takes an [`Input`] — envelopes received (or
//! authored here), a request to seal a change, a roster operation, a resume after
//! restart — and returns one [`Results`]: the effects the caller must carry out in
//! order (persist, apply to a document), the status of each envelope, notices, and the
//! envelopes this device authored on the way. It performs no I/O: storage lookups come
//! in through [`Lookup`]; time, randomness and the device's secret as arguments.
//!
//! Every envelope, local or received, goes the same way:
//! 1. [`chain`]: its signature verifies (every one, before anything is stored), and it
//!    sits at the next position of its author's hash chain (else it is held, or refused
//!    as a fork);
//! 2. [`authority`]: its log is well formed, its body is what that log carries, and its
//!    author may write the log at that position under the roster (a category's readers
//!    are its only writers; a revoked or narrowed device only up to its cutoff);
//!    envelopes of authors not yet known are held, within a bound ([`pending`]);
//! 3. on acceptance, key grants are counted or opened ([`keyring`]; a restricted
//!    thread's own keys by [`restricted`]), roster operations decrypted and folded
//!    ([`roster_log`]), thread changes decrypted for the documents.
//!
//! After each input, an enrolled device rotates the keys the roster says are due and
//! grants the keys it holds to readers that lack them ([`author`]), restricted threads'
//! keys only to who may read the thread now ([`restricted`]).

mod author;
mod authority;
mod chain;
mod keyring;
mod pending;
mod restricted;
mod roster_log;

use rand::CryptoRng;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::cipher::SecretKey;
use super::envelope::{Body, Envelope, Header};
use super::identity::{DevicePublic, DeviceSecret};
use super::ids::{ClinicId, DeviceId, EnvelopeId, LogId, ThreadId};
use super::policy::Category;
use super::roster::{Op, Roster, RosterError, SignedGenesis, WriteVerdict};
use super::seal::SealError;

pub use keyring::{KeySlot, RESTRICTED_EPOCH, grant_context, key_id};
pub use pending::{
    MAX_PENDING, MAX_PENDING_BYTES, MAX_PENDING_BYTES_PER_AUTHOR, MAX_PENDING_PER_AUTHOR,
};
pub use restricted::{
    MAX_HELD_RESTRICTED_GRANTS, MAX_KEYS_HANDED_ON, MAX_RESTRICTED_GRANTS_PER_INPUT,
    restricted_grant_counts,
};

use keyring::Keyring;
use pending::Pending;
use roster_log::RosterLog;

/// The newest envelope of one author in one log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Head {
    pub seq: u64,
    pub id: EnvelopeId,
}

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
    Key { slot: KeySlot, key: SecretKey },
    /// Remember that `device` has been given the key in `slot`.
    Granted { slot: KeySlot, device: DeviceId },
    /// Apply a decrypted Automerge change to a thread document. Author, category and
    /// time come from the signed envelope and its log.
    ThreadChange {
        thread: ThreadId,
        category: Category,
        author: DeviceId,
        at_ms: u64,
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

/// An envelope that is refused: it is neither stored nor forwarded.
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
    #[error("too many envelopes are held waiting ({0})")]
    PendingFull(&'static str),
    #[error("envelope's log is malformed (a thread id that does not carry its category)")]
    MalformedLog,
    #[error("envelope carries {0} in a log that does not hold them")]
    WrongBody(&'static str),
    #[error("device {author:?} may not write {log:?} (not a reader of it, or past its cutoff)")]
    NotAllowed { author: DeviceId, log: LogId },
    #[error(
        "device {0:?} has written the most roster operations a device that is not an admin's may (thread restrictions and emergency accesses); ask an admin"
    )]
    RosterQuota(DeviceId),
}

/// Something noticed while processing an accepted envelope; the envelope itself is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Notice {
    #[error("roster operation {0:?} has no effect: {1}")]
    RosterRejected(EnvelopeId, RosterError),
    #[error("envelope {0:?} could not be decrypted with the key held for its epoch")]
    Undecryptable(EnvelopeId),
    #[error("a key grant in envelope {0:?} does not open, or not from its author's key")]
    BadGrant(EnvelopeId),
    #[error(
        "key grants in envelope {0:?} are for a future epoch; held until the roster reaches it"
    )]
    GrantDeferred(EnvelopeId),
    #[error("key grants in envelope {0:?} no longer count: their author may not read the log")]
    GrantRefused(EnvelopeId),
    #[error(
        "a restricted thread's key granted in envelope {0:?} does not count (yet): its author or a recipient may not read the thread at the time it states"
    )]
    RestrictedGrantHeld(EnvelopeId),
    #[error("envelope {0:?} refused while draining: {1}")]
    Refused(EnvelopeId, IngestError),
    #[error("a key rotation or grant could not be authored: {0}")]
    NotAuthored(AuthorError),
}

/// Why a local change could not be authored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorError {
    #[error(transparent)]
    Roster(#[from] RosterError),
    #[error("this device may not write that log")]
    NotAllowed,
    #[error("this device is not an active member of the clinic")]
    NotEnrolled,
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("this device's own envelope was refused: {0}")]
    Refused(IngestError),
    #[error(
        "this device's store was rebuilt: it writes again once it has synced with another device of the clinic (so it does not reuse a position of its own history)"
    )]
    Resyncing,
    #[error(
        "the envelope would be {0} bytes; at most {max} are allowed",
        max = crate::core::limits::MAX_ENVELOPE_BYTES
    )]
    TooLarge(usize),
}

/// What the replica is asked to do.
#[derive(Debug)]
pub enum Input {
    /// Envelopes received from a peer or a bundle, validated as one batch.
    Envelopes(Vec<Envelope>),
    /// Encrypt `plain` (an Automerge change) into `log` with its current key, minting
    /// that key first if this device holds none for the current epoch. `at_ms` is the
    /// time the change states (the envelope carries it, signed).
    Seal {
        log: LogId,
        plain: Vec<u8>,
        at_ms: u64,
    },
    /// A roster operation by this device (checked against the roster first).
    Roster(Op),
    /// After [`Replica::restore`]: reopen roster keys in held grants and let held
    /// envelopes proceed.
    Resume,
}

/// Everything one input produced.
#[derive(Debug, Default)]
pub struct Results {
    /// Work for the caller, in order.
    pub effects: Vec<Effect>,
    /// For [`Input::Envelopes`], what became of each envelope, in input order.
    pub statuses: Vec<Result<Status, IngestError>>,
    /// Things noticed along the way (to log and report).
    pub notices: Vec<Notice>,
    /// Envelopes this device authored (already ingested: their effects are above).
    pub authored: Vec<Envelope>,
}

/// What each call needs from outside: the device's secret, randomness, the clock and
/// the store.
pub struct Ctx<'a, R: CryptoRng, L: Lookup> {
    pub secret: &'a DeviceSecret,
    pub rng: &'a mut R,
    pub now_ms: u64,
    pub lookup: &'a L,
}

/// One device's view of one clinic.
pub struct Replica {
    me: DevicePublic,
    genesis: SignedGenesis,
    clinic: ClinicId,
    heads: HashMap<(LogId, DeviceId), Head>,
    pending: Pending,
    roster: RosterLog,
    keys: Keyring,
    /// Envelopes of the current batch whose signatures verified.
    verified: HashSet<EnvelopeId>,
    /// Local positions accepted during this call and not yet visible through `Lookup`.
    overlay: HashMap<(LogId, DeviceId, u64), EnvelopeId>,
    /// Threads with accepted envelopes this device could not open, by the key they
    /// need: when that key arrives, the thread is materialized again.
    locked: HashMap<KeySlot, HashSet<ThreadId>>,
    /// Whether inputs end with key rotations and grants (off for dry runs).
    follow_up: bool,
    /// After a rebuild from the identity file: this device may not know the end of its
    /// own chains, so it authors nothing until a peer has sent what it holds.
    resyncing: bool,
}

impl Replica {
    /// A replica of the clinic founded by `genesis`, as seen by device `me`.
    pub fn new(me: DevicePublic, genesis: SignedGenesis) -> Result<Self, IngestError> {
        genesis.verify().map_err(|_| IngestError::BadSignature)?;
        Ok(Replica {
            me,
            clinic: genesis.clinic_id(),
            roster: RosterLog::new(&genesis.genesis),
            genesis,
            heads: HashMap::new(),
            pending: Pending::default(),
            keys: Keyring::default(),
            verified: HashSet::new(),
            overlay: HashMap::new(),
            locked: HashMap::new(),
            follow_up: true,
            resyncing: false,
        })
    }

    /// Rebuilds the in-memory state from what was persisted (no effects are produced).
    pub fn restore(
        &mut self,
        heads: impl IntoIterator<Item = ((LogId, DeviceId), Head)>,
        keys: impl IntoIterator<Item = (KeySlot, SecretKey)>,
        granted: impl IntoIterator<Item = (KeySlot, DeviceId)>,
        roster_envelopes: impl IntoIterator<Item = Envelope>,
        pending: impl IntoIterator<Item = Envelope>,
        now_ms: u64,
    ) {
        self.roster.tick(now_ms);
        self.heads.extend(heads);
        self.keys.restore(keys, granted);
        for env in roster_envelopes {
            if matches!(env.body, Body::Sealed(_)) {
                self.roster.hold_sealed(env.id(), env);
            }
        }
        for env in pending {
            self.pending.restore(env.id(), env);
        }
        let mut scratch = Results::default();
        self.roster.decrypt(&self.keys, &mut scratch);
        self.roster.refold(&mut scratch, true);
    }

    /// The one entry point: carries out `input` and everything that follows from it.
    pub fn handle<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        input: Input,
    ) -> Result<Results, AuthorError> {
        let mut out = Results::default();
        self.overlay.clear();
        // Roster operations stamped ahead of the clock that it has now reached.
        self.roster.tick(ctx.now_ms);
        self.refold_now(&mut out, true);
        if self.resyncing && matches!(input, Input::Seal { .. } | Input::Roster(_)) {
            return Err(AuthorError::Resyncing);
        }
        match input {
            Input::Envelopes(batch) => self.ingest_batch(ctx, batch, &mut out),
            Input::Seal { log, plain, at_ms } => {
                let env = self.author_sealed(ctx, log, &plain, at_ms, &mut out)?;
                self.commit_own(ctx, env, &mut out)?;
            }
            Input::Roster(op) => {
                let env = self.author_roster_op(ctx, op, &mut out)?;
                self.commit_own(ctx, env, &mut out)?;
            }
            Input::Resume => {
                self.reopen_held_roster_grants(ctx.secret, &mut out);
                self.drain(ctx, &mut out, None);
            }
        }
        // Members' own roster operations of this input, folded once; envelopes held
        // for what they decide (a direct conversation's, waiting for its start) are
        // taken in now, not at some later roster change.
        let version = self.roster.version();
        self.refold_now(&mut out, true);
        if self.roster.version() != version {
            self.drain(ctx, &mut out, None);
            self.refold_now(&mut out, true);
        }
        if self.follow_up && !self.resyncing {
            self.follow_up(ctx, &mut out);
        }
        Ok(out)
    }

    fn ingest_batch<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        batch: Vec<Envelope>,
        out: &mut Results,
    ) {
        self.verified = chain::verify_batch(&batch);
        for env in batch {
            let status = self.ingest(ctx, env, out);
            out.statuses.push(status);
        }
        self.verified.clear();
    }

    /// Ingests an envelope this device just authored; it must be accepted.
    fn commit_own<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        env: Envelope,
        out: &mut Results,
    ) -> Result<(), AuthorError> {
        // Nothing this device authors may be larger than its peers accept.
        let size = env.encode().len();
        if size > crate::core::limits::MAX_ENVELOPE_BYTES {
            return Err(AuthorError::TooLarge(size));
        }
        out.authored.push(env.clone());
        self.verified.insert(env.id());
        let status = self.ingest(ctx, env, out);
        self.verified.clear();
        match status {
            Ok(Status::Accepted) => Ok(()),
            Ok(_) => Err(AuthorError::NotEnrolled),
            Err(e) => Err(AuthorError::Refused(e)),
        }
    }

    /// Validates one envelope and everything it unblocks.
    fn ingest<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        env: Envelope,
        out: &mut Results,
    ) -> Result<Status, IngestError> {
        let roster_before = self.roster.version();
        let chain = (env.header.log, env.header.author);
        let status = self.ingest_one(ctx, env, out)?;
        // A changed roster may unblock any held envelope; an acceptance only the next
        // one of its own chain (checking just that chain keeps a long sync linear).
        if self.roster.version() != roster_before {
            self.drain(ctx, out, None);
        } else if status == Status::Accepted && !self.pending.is_empty() {
            self.drain(ctx, out, Some(chain));
        }
        Ok(status)
    }

    fn ingest_one<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        env: Envelope,
        out: &mut Results,
    ) -> Result<Status, IngestError> {
        let h = &env.header;
        if h.clinic != self.clinic {
            return Err(IngestError::WrongClinic);
        }
        authority::check_shape(&env)?;
        let id = env.id();
        if self.pending.contains(&id) {
            return Ok(self.waiting_status(h));
        }
        if !self.verified.remove(&id) && env.verify().is_err() {
            return Err(IngestError::BadSignature);
        }
        let head = self.heads.get(&(h.log, h.author)).copied();
        let position = chain::position(h, &id, head, |seq| {
            self.id_at(ctx.lookup, &h.log, &h.author, seq)
        })?;
        if position == chain::Position::Duplicate {
            return Ok(Status::Duplicate);
        }
        // A non-admin's roster operations past its quota are refused here, at O(1),
        // whether they follow its chain's head or wait for a predecessor.
        if h.log == LogId::Roster
            && matches!(env.body, Body::Sealed(_))
            && !self.roster.within_quota(&h.author, env.encode().len())
        {
            return Err(IngestError::RosterQuota(h.author));
        }
        if position == chain::Position::Ahead {
            return self.park(ctx.secret, id, env, Status::WaitingForPredecessor, out);
        }
        if !authority::may_write(self.roster.roster(), h)? {
            return self.park(ctx.secret, id, env, Status::WaitingForAuthor, out);
        }
        self.accept(ctx.secret, id, env, out);
        Ok(Status::Accepted)
    }

    fn id_at<L: Lookup>(
        &self,
        lookup: &L,
        log: &LogId,
        author: &DeviceId,
        seq: u64,
    ) -> Option<EnvelopeId> {
        self.overlay
            .get(&(*log, *author, seq))
            .copied()
            .or_else(|| lookup.id_at(log, author, seq))
    }

    fn waiting_status(&self, h: &Header) -> Status {
        match self.roster.roster().write_verdict(&h.author, &h.log, h.seq) {
            WriteVerdict::NotYet => Status::WaitingForAuthor,
            _ => Status::WaitingForPredecessor,
        }
    }

    fn park(
        &mut self,
        secret: &DeviceSecret,
        id: EnvelopeId,
        env: Envelope,
        status: Status,
        out: &mut Results,
    ) -> Result<Status, IngestError> {
        self.pending.admit(&env)?;
        if env.header.log == LogId::Roster && !self.keys.holds_any(&LogId::Roster) {
            self.keys
                .consider_roster_candidate(secret, &self.clinic, &self.me.id, &env);
            self.roster.decrypt(&self.keys, out);
            self.confirm_candidates(out);
        }
        out.effects.push(Effect::Pending(env.clone(), id));
        self.pending.hold(id, env);
        Ok(status)
    }

    fn accept(&mut self, secret: &DeviceSecret, id: EnvelopeId, env: Envelope, out: &mut Results) {
        let h = env.header.clone();
        self.heads
            .insert((h.log, h.author), Head { seq: h.seq, id });
        self.overlay.insert((h.log, h.author, h.seq), id);
        out.effects.push(Effect::Accepted(env.clone(), id));
        if let Body::Grants(grants) = &env.body {
            let roster = self.roster.roster();
            let me = self.me.id;
            let slot = KeySlot::of(&h);
            let gained = if slot.is_restricted() {
                self.keys.accept_restricted_grants(
                    secret,
                    &self.clinic,
                    &me,
                    roster,
                    id,
                    &h,
                    grants,
                    out,
                )
            } else {
                self.keys
                    .accept_grants(secret, &self.clinic, &me, roster, id, &h, grants, out)
            };
            if gained {
                self.after_new_key(&slot, out);
            }
            return;
        }
        match h.log {
            LogId::Roster => {
                self.roster.hold_sealed(id, env);
                // A joining device's candidate roster key may open this one.
                self.confirm_candidates(out);
                self.roster.decrypt(&self.keys, out);
                self.refold(out);
            }
            LogId::Thread {
                id: thread,
                category,
            } => {
                let Body::Sealed(ct) = &env.body else {
                    return;
                };
                let Some(key) = self.keys.thread_key(&h) else {
                    self.locked
                        .entry(KeySlot::of(&h))
                        .or_default()
                        .insert(thread);
                    return;
                };
                match key.decrypt(&h.aad(), ct) {
                    Ok(change) => out.effects.push(Effect::ThreadChange {
                        thread,
                        category,
                        author: h.author,
                        at_ms: h.at_ms,
                        change,
                    }),
                    Err(_) => out.notices.push(Notice::Undecryptable(id)),
                }
            }
            // Audit entries are opened by admin devices when the trail is read.
            LogId::Keys(_) | LogId::Audit => {}
        }
    }

    /// The key in `slot` arrived: reopen what it unlocks.
    fn after_new_key(&mut self, slot: &KeySlot, out: &mut Results) {
        match slot.log {
            LogId::Roster => {
                self.roster.decrypt(&self.keys, out);
                self.refold(out);
            }
            _ => {
                let mut threads: Vec<ThreadId> =
                    self.locked.remove(slot).into_iter().flatten().collect();
                threads.sort();
                for thread in threads {
                    out.effects.push(Effect::ThreadUnlocked { thread });
                }
            }
        }
    }

    /// A stored envelope of `thread` did not open when its document was loaded: the
    /// thread is materialized again when the key it needs arrives.
    pub fn note_locked(&mut self, thread: ThreadId, header: &Header) {
        self.locked
            .entry(KeySlot::of(header))
            .or_default()
            .insert(thread);
    }

    /// Whether some accepted envelope of `thread` waits for a key.
    pub fn is_locked(&self, thread: &ThreadId) -> bool {
        self.locked.values().any(|t| t.contains(thread))
    }

    /// Refolds the roster if it has news; a changed roster re-decides deferred grants.
    fn refold(&mut self, out: &mut Results) {
        self.refold_now(out, false);
    }

    /// Refolds (with `at_end`, members' own operations held for the end of the input
    /// too); a changed roster re-decides deferred grants.
    fn refold_now(&mut self, out: &mut Results, at_end: bool) {
        if self.roster.refold(out, at_end) {
            let roster = self.roster.roster();
            let mut gained = self.keys.reconsider_deferred(roster, out);
            gained.extend(self.keys.reconsider_held_restricted(roster, out));
            for slot in gained {
                self.after_new_key(&slot, out);
            }
        }
    }

    fn confirm_candidates(&mut self, out: &mut Results) {
        if self
            .keys
            .confirm_roster_candidates(self.roster.sealed(), out)
        {
            self.roster.decrypt(&self.keys, out);
            self.refold(out);
        }
    }

    fn reopen_held_roster_grants(&mut self, secret: &DeviceSecret, out: &mut Results) {
        if self.keys.holds_any(&LogId::Roster) {
            return;
        }
        let held: Vec<Envelope> = self.pending.roster_envelopes().cloned().collect();
        for env in &held {
            self.keys
                .consider_roster_candidate(secret, &self.clinic, &self.me.id, env);
        }
        self.roster.decrypt(&self.keys, out);
        self.confirm_candidates(out);
    }

    /// Re-ingests held envelopes whose predecessor and author are now known: of one
    /// chain (`only`), or of all while the roster keeps changing.
    fn drain<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        out: &mut Results,
        mut only: Option<(LogId, DeviceId)>,
    ) {
        // Each held envelope is retried at most once per drain, so no rule that holds an
        // envelope again can make this loop forever.
        let mut tried: HashSet<EnvelopeId> = HashSet::new();
        loop {
            let version = self.roster.version();
            let heads = &self.heads;
            let next = |log: &LogId, author: &DeviceId| {
                heads.get(&(*log, *author)).map_or(0, |h| h.seq + 1)
            };
            let ready = match only {
                Some(chain) => self.pending.ready_in(self.roster.roster(), chain, next),
                None => self.pending.ready(self.roster.roster(), next),
            };
            let ready: Vec<EnvelopeId> = ready.into_iter().filter(|id| tried.insert(*id)).collect();
            if ready.is_empty() {
                return;
            }
            for id in ready {
                let Some(env) = self.pending.take(&id) else {
                    continue;
                };
                out.effects.push(Effect::Unpended(id));
                // Held envelopes were verified when they arrived only if they were in
                // a verified batch; verify again (held envelopes are rare).
                if let Err(e) = self.ingest_one(ctx, env, out) {
                    out.notices.push(Notice::Refused(id, e));
                }
            }
            if self.roster.version() != version {
                only = None;
            }
        }
    }

    /// Turns off the rotations and grants that end every input (for a dry run on a
    /// scratch replica, whose envelopes are thrown away).
    pub fn set_follow_up(&mut self, on: bool) {
        self.follow_up = on;
    }

    // ---- views ----

    pub fn clinic(&self) -> ClinicId {
        self.clinic
    }
    pub fn genesis(&self) -> &SignedGenesis {
        &self.genesis
    }
    pub fn me(&self) -> &DevicePublic {
        &self.me
    }
    /// Holds (or resumes) everything this device would author: after a rebuild, until a
    /// peer has sent this device's own envelopes back (see [`AuthorError::Resyncing`]).
    pub fn set_resyncing(&mut self, on: bool) {
        self.resyncing = on;
    }
    pub fn resyncing(&self) -> bool {
        self.resyncing
    }
    pub fn roster(&self) -> &Roster {
        self.roster.roster()
    }
    pub fn heads(&self) -> &HashMap<(LogId, DeviceId), Head> {
        &self.heads
    }
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }
    /// Whether this device has been admitted to the clinic's roster.
    pub fn enrolled(&self) -> bool {
        self.roster().active_member(&self.me.id).is_some()
    }
    /// Whether this device holds a key that opens `log` (any epoch).
    pub fn has_key(&self, log: &LogId) -> bool {
        self.keys.holds_any(&log.key_log())
    }

    /// Every thread this device holds envelopes of, with its category.
    pub fn threads(&self) -> BTreeMap<ThreadId, Category> {
        self.heads
            .keys()
            .filter_map(|(log, _)| match log {
                LogId::Thread { id, category } => Some((*id, *category)),
                _ => None,
            })
            .collect()
    }

    /// The log of a thread this device holds envelopes of.
    pub fn thread_log(&self, thread: &ThreadId) -> Option<LogId> {
        let category = Category::from_code(thread.0[0])?;
        let log = LogId::Thread {
            id: *thread,
            category,
        };
        self.heads.keys().any(|(l, _)| *l == log).then_some(log)
    }

    /// Decrypts a stored thread envelope, if this device holds its key.
    pub fn open_thread_change(&self, env: &Envelope) -> Option<Vec<u8>> {
        let Body::Sealed(ct) = &env.body else {
            return None;
        };
        env.header.log.thread()?;
        self.keys
            .thread_key(&env.header)?
            .decrypt(&env.header.aad(), ct)
            .ok()
    }

    /// The deps a new roster operation would carry (exposed for tests).
    pub fn roster_heads(&self) -> &[EnvelopeId] {
        self.roster.heads()
    }

    /// Roster operations waiting for a dependency or a key.
    pub fn roster_waiting(&self) -> usize {
        self.roster.waiting()
    }

    /// How many of the roster operations `heads` (envelope ids: a roster's heads as this
    /// device once folded it) this replica does not hold yet with their whole causal
    /// past: 0 when its roster includes everything that roster did.
    pub fn roster_missing(&self, heads: &[EnvelopeId]) -> usize {
        self.roster.missing(heads)
    }

    /// Key slots this device holds (for views and tests).
    pub fn key_slots(&self) -> Vec<KeySlot> {
        self.keys.slots()
    }

    /// A key this device holds.
    pub fn key(&self, slot: &KeySlot) -> Option<&SecretKey> {
        self.keys.get(slot)
    }

    /// The key slot this device would write `log` with now, if it holds one (for a
    /// restricted thread, the category's: what a client that ignores restrictions
    /// would use; see [`Replica::restricted_slot`]).
    pub fn writing_slot(&self, log: &LogId) -> Option<KeySlot> {
        self.keys
            .writing_slot(&log.key_log(), self.roster().epoch(log))
    }

    /// The restricted key this device would seal into `log` with at `now_ms` if it
    /// holds one whose holders are exactly the devices allowed then (else a post mints
    /// one); `None` for other logs.
    pub fn restricted_slot(&self, log: &LogId, now_ms: u64) -> Option<KeySlot> {
        let roster = self.roster();
        let allowed = roster
            .readers_at(log, now_ms)
            .into_iter()
            .map(|d| d.id)
            .collect();
        let not_before = restricted::emergencies_ended_by(roster, log, now_ms);
        self.keys.current_restricted(log, &allowed, not_before)
    }

    /// The key that opens (or seals) an envelope with this header, if held.
    pub fn key_for(&self, header: &Header) -> Option<SecretKey> {
        self.keys.thread_key(header)
    }

    /// Keys this device holds that a device allowed to read them has not been given
    /// (the next input's follow-up grants them).
    pub fn missing_grants(&self) -> Vec<(KeySlot, Vec<DevicePublic>)> {
        self.keys.missing_grants(self.roster(), &self.me.id)
    }

    /// The header of this device's next envelope in `log` (for tools and tests that
    /// build envelopes by hand).
    pub fn next_header(&self, log: LogId, slot: &KeySlot, at_ms: u64) -> Header {
        next_header(self, log, slot, at_ms)
    }
}

/// The header of this device's next envelope in `log`.
fn next_header(replica: &Replica, log: LogId, slot: &KeySlot, at_ms: u64) -> Header {
    let head = replica.heads.get(&(log, replica.me.id));
    Header {
        clinic: replica.clinic,
        log,
        author: replica.me.id,
        seq: head.map_or(0, |h| h.seq + 1),
        prev: head.map(|h| h.id),
        epoch: slot.epoch,
        key: slot.key,
        at_ms,
    }
}
