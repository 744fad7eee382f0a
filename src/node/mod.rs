//! The node: owns the store and the replica, and is the one handle that the CLI, the
//! network and the app use; what people and scripts ask of it are typed operations
//! ([`Op`], carried out by [`Node::execute`]). Every command follows the same path: author an
//! envelope in the core, ingest it like any received envelope, carry out the resulting
//! effects (persist, apply to documents, regrant keys), save snapshots and summaries,
//! flush, and only then report success.

pub mod actor;
mod audit;
pub mod audit_csv;
mod backlog;
pub mod blind;
pub mod bundle;
pub mod direct;
mod docs;
mod edits;
mod emergency;
mod error;
mod execute;
mod identity;
pub mod invites;
mod lease;
mod lifecycle;
pub mod op;
mod reads;
mod repair;
pub mod replace;
mod safeguards;
mod sync;
mod tasks;
mod views;
mod watch;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;

use crate::core::audit::AuditEvent;
use crate::core::envelope::Envelope;
use crate::core::identity::{DevicePublic, DeviceSecret};
use crate::core::ids::{DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use crate::core::policy::{Category, Role};
use crate::core::replica::{
    AuthorError, Ctx, Effect, Input, Lookup, Replica, Status as IngestStatus,
};
use crate::core::roster::{self, Member, SignedGenesis};
use crate::core::sync::batch_has_room;
use crate::core::thread::{
    MESSAGE_RANDOM_BYTES, NewMessage, NewTask, Priority, Subject, ThreadMeta, derive_thread_id,
    stated_time_ms,
};
use crate::store::{Sealed, Store, StoreError};

pub use audit::{AuditFilter, AuditRecord, AuditTrail};
pub use backlog::SyncBacklog;
pub use emergency::{EmergencyView, RESTRICTED_LABEL};
pub use error::NodeError;
pub use op::{Op, OpResult, SafeguardChange, TaskRequest};
pub use repair::RecoveryReport;
pub use sync::{Outgoing, SyncSide};
pub use tasks::TaskView;
pub use views::*;
use watch::Change;
pub use watch::{ChangeSet, Watch};

use docs::Docs;

const DEVICE_KEY: &[u8] = b"device";
const GENESIS_KEY: &[u8] = b"genesis";
const INVITER_KEY: &[u8] = b"inviter";
/// Present while a rebuilt store waits for a peer to send this device's own history.
const RESYNC_KEY: &[u8] = b"resyncing";

/// A thread as callers name it: by id (the app), or by its hex id or a unique prefix of
/// it (what people type into the CLI).
#[derive(Clone, Copy, Debug)]
pub enum ThreadRef<'a> {
    Id(ThreadId),
    Prefix(&'a str),
}

impl From<ThreadId> for ThreadRef<'_> {
    fn from(id: ThreadId) -> Self {
        ThreadRef::Id(id)
    }
}

impl<'a> From<&'a str> for ThreadRef<'a> {
    fn from(reference: &'a str) -> Self {
        ThreadRef::Prefix(reference)
    }
}

impl<'a> From<&'a String> for ThreadRef<'a> {
    fn from(reference: &'a String) -> Self {
        ThreadRef::Prefix(reference)
    }
}

impl std::fmt::Display for ThreadRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThreadRef::Id(id) => f.write_str(&id.to_hex()),
            ThreadRef::Prefix(r) => f.write_str(r),
        }
    }
}

pub struct Node {
    store: Store,
    secret: DeviceSecret,
    replica: Option<Replica>,
    /// Open documents and rebuilt summaries: a cache that reads fill too.
    docs: RefCell<Docs>,
    watchers: watch::Watchers,
    /// Collect envelopes to push in `outbox` (while serving).
    relay: bool,
    outbox: Vec<Outgoing>,
    /// The peer whose push is being ingested: what it sent is pushed on to the others.
    pushed_by: Option<DeviceId>,
    /// The device that enrolled this one, trusted until the roster arrives.
    inviter: Option<DeviceId>,
    /// Devices that were active members' devices at the last roster change.
    active: BTreeSet<DeviceId>,
    /// Devices that lost their place since [`Node::take_cut_off`] was last called.
    cut_off: Vec<DeviceId>,
    /// Digest of what the identity file holds (see `repair.rs`).
    identity_digest: Option<[u8; 32]>,
    /// The roster the identity file recorded, while this node's roster does not hold it
    /// all ([`identity`]): nothing is written or granted, and only the devices active
    /// then may sync, until it is back.
    awaited: Option<identity::Recorded>,
    /// The offline lease ([`lease`]): last finished sync with a peer, latest time seen.
    last_contact_ms: u64,
    latest_time_ms: u64,
}

impl Drop for Node {
    /// Writes the snapshots not yet due, so that the next start replays nothing. Losing
    /// them (a crash) costs only replay time.
    /// The flush is bounded ([`crate::store::FLUSH_WAIT`]): closing never hangs.
    fn drop(&mut self) {
        if self.store.needs_recovery() {
            tracing::warn!("closing after a failed write: only what was flushed is kept");
            return;
        }
        if let Some(replica) = &self.replica
            && let Err(e) = self.docs.get_mut().save_dirty(&self.store, replica, true)
        {
            tracing::warn!("snapshots not saved on close: {e}");
        }
        if let Err(e) = self.store.flush() {
            tracing::warn!("store not flushed on close: {e}");
        }
    }
}

/// The random part of a new message's key, from the thread-local CSPRNG.
pub fn random_message_id() -> [u8; MESSAGE_RANDOM_BYTES] {
    let mut random = [0u8; MESSAGE_RANDOM_BYTES];
    rand::rng().fill_bytes(&mut random);
    random
}

/// The id people see for a message: the random part of its key (the key's member part is
/// for the thread's write rules). References are prefixes of it, matched against keys.
fn shown_id(key: &str) -> &str {
    key.split_once('.').map_or(key, |(random, _)| random)
}

/// The device's clock in milliseconds since the Unix epoch, moved forward by
/// `HUDDLE_CLOCK_SKIP_MS` if set (tests use it to let days pass). It can only move the
/// clock forward, which makes leases, invitations and emergency access end sooner,
/// never later.
pub fn now_ms() -> u64 {
    static SKIP_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let skip = *SKIP_MS.get_or_init(|| {
        std::env::var("HUDDLE_CLOCK_SKIP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
        .saturating_add(skip)
}

/// Why a store serves no command but `status` and `audit verify`: it is quarantined.
fn quarantined(store: &Store) -> Option<NodeError> {
    store.changed_outside().map(|why| {
        StoreError::Changed {
            path: store.path().to_path_buf(),
            why: why.clone(),
        }
        .into()
    })
}

/// Why a node has no replica: its store is quarantined, or it has no clinic yet.
fn no_replica(store: &Store) -> NodeError {
    quarantined(store).unwrap_or(NodeError::NoClinic)
}

/// Store lookups for the core.
struct StoreLookup<'a>(&'a Store);

impl Lookup for StoreLookup<'_> {
    fn id_at(&self, log: &LogId, author: &DeviceId, seq: u64) -> Option<EnvelopeId> {
        self.0.envelope_id_at(log, author, seq).ok().flatten()
    }
}

/// A lookup over an empty store (dry runs on a scratch replica).
struct NoLookup;

impl Lookup for NoLookup {
    fn id_at(&self, _: &LogId, _: &DeviceId, _: u64) -> Option<EnvelopeId> {
        None
    }
}

impl Node {
    /// Creates a new data directory holding only this device's identity.
    pub fn create(dir: &Path, passphrase: &[u8]) -> Result<Node, NodeError> {
        let store = Store::create(dir, passphrase)?;
        let secret = DeviceSecret::generate(&mut rand::rng());
        store.put_sealed(Sealed::Secrets, DEVICE_KEY, secret.to_bytes().as_ref())?;
        store.flush()?;
        let mut node = Self::assemble(store, secret);
        node.load_lease()?;
        node.keep_identity();
        Ok(node)
    }

    fn assemble(store: Store, secret: DeviceSecret) -> Node {
        Node {
            store,
            secret,
            replica: None,
            docs: RefCell::new(Docs::default()),
            watchers: watch::Watchers::default(),
            relay: false,
            outbox: Vec::new(),
            pushed_by: None,
            inviter: None,
            active: BTreeSet::new(),
            cut_off: Vec::new(),
            identity_digest: None,
            awaited: None,
            last_contact_ms: 0,
            latest_time_ms: 0,
        }
    }

    /// Opens an existing data directory for use; a damaged store is rebuilt from the
    /// identity file beside it, and what was recovered is reported as a warning. A store
    /// changed outside Huddle (its envelope records, or the whole store put back to an
    /// older copy than its identity file: [`crate::store::ChangedOutside`]) is refused
    /// ([`StoreError::Changed`], which says to run `huddle repair`): `serve` and the app
    /// never run on it.
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<Node, NodeError> {
        let node = Node::open_unchecked(dir, passphrase)?;
        match node.unusable() {
            Some(e) => Err(e),
            None => Ok(node),
        }
    }

    /// Opens as [`Node::open`] does, except that a store changed outside Huddle opens
    /// *quarantined* (with a warning): no roster, key or
    /// audit log is folded from it, nothing is written to it, and only
    /// [`Node::status`] (which says so) and [`Node::audit_verify`] (chain checks over the
    /// stored envelopes) answer; everything else fails with [`StoreError::Changed`].
    /// The CLI opens this way, so that `huddle status` and `huddle audit verify` still
    /// name what changed before `huddle repair`.
    pub fn open_or_quarantine(dir: &Path, passphrase: &[u8]) -> Result<Node, NodeError> {
        let node = Node::open_unchecked(dir, passphrase)?;
        if let Some(e) = node.unusable() {
            tracing::warn!("{e}");
        }
        Ok(node)
    }

    fn open_unchecked(dir: &Path, passphrase: &[u8]) -> Result<Node, NodeError> {
        let (mut node, report) = Node::open_or_rebuild(dir, passphrase)?;
        if let Some(report) = report {
            tracing::warn!("{report}");
        }
        // What a locked node received meanwhile ([`blind`]); kept for the next open if
        // it cannot be taken in now.
        if node.unusable().is_none()
            && let Err(e) = node.take_inbox()
        {
            tracing::warn!("envelopes received while locked are not taken in yet: {e}");
        }
        Ok(node)
    }

    /// Why this node serves no command but `status` and `audit verify`: its store is
    /// quarantined.
    fn unusable(&self) -> Option<NodeError> {
        quarantined(&self.store)
    }

    /// Opens the store as it is.
    /// `known`: the data key and its parameters, from the identity file (which checked
    /// the passphrase), if it could be opened; `recorded`: the roster anchor in it.
    fn open_store(
        dir: &Path,
        passphrase: &[u8],
        known: Option<(crate::core::cipher::SecretKey, crate::store::KdfParams)>,
        recorded: Option<identity::Recorded>,
    ) -> Result<Node, NodeError> {
        let store = Store::open_known(dir, passphrase, known)?;
        let raw = store
            .get_sealed(Sealed::Secrets, DEVICE_KEY)?
            .ok_or_else(|| StoreError::Corrupt {
                tree: "secrets",
                key: "device".into(),
                why: "missing",
            })?;
        let bytes: &[u8; 64] = raw.as_slice().try_into().map_err(|_| StoreError::Corrupt {
            tree: "secrets",
            key: "device".into(),
            why: "wrong length",
        })?;
        let secret = DeviceSecret::from_bytes(bytes);
        let mut node = Node::assemble(store, secret);
        if node.store.envelopes_modified() {
            // Quarantined: nothing is folded from it, taken in, audited or written.
            return Ok(node);
        }
        if let Some(g) = node.store.get_sealed(Sealed::Secrets, GENESIS_KEY)? {
            let genesis = SignedGenesis::decode(&g).map_err(|_| StoreError::Corrupt {
                tree: "secrets",
                key: "genesis".into(),
                why: "does not decode",
            })?;
            let mut replica = node.restore_replica(genesis)?;
            let rebuilt = node
                .store
                .get_sealed(Sealed::Secrets, RESYNC_KEY)?
                .is_some();
            replica.set_resyncing(rebuilt);
            node.replica = Some(replica);
            let missing = node.await_recorded(recorded);
            if missing > 0 && !rebuilt {
                // A store older than its identity file (put back to an older copy): its
                // roster lacks what this device had folded. Damage, like changed records.
                node.replica = None;
                node.awaited = None;
                node.store
                    .quarantine(crate::store::ChangedOutside::OlderThanIdentity { missing });
                return Ok(node);
            }
        }
        if let Some(i) = node.store.get_sealed(Sealed::Secrets, INVITER_KEY)? {
            node.inviter = i.as_slice().try_into().ok().map(DeviceId);
        }
        if node.replica.is_some() {
            node.baseline_active();
            let mut report = ImportReport::default();
            match node.run(Input::Resume, &mut report) {
                // Reading stays possible on a nearly full disk; resuming waits.
                Err(NodeError::Store(e @ StoreError::DiskFull { .. })) => {
                    tracing::warn!("{e}")
                }
                other => other?,
            }
        }
        node.load_lease()?;
        // Wrong passphrases tried since the last unlock go into the audit trail now.
        let failed = node.store.take_failed_unlocks();
        node.audit_failed_unlocks(&failed);
        node.note_identity_on_disk();
        node.keep_identity();
        Ok(node)
    }

    fn restore_replica(&self, genesis: SignedGenesis) -> Result<Replica, NodeError> {
        let mut replica = Replica::new(self.secret.public(), genesis)?;
        // The roster accepted: each chain up to its head. A record that does not read is
        // damage (the store is rebuilt), never a smaller roster to fold.
        let heads = self.store.heads()?;
        let mut roster: Vec<Envelope> = Vec::new();
        for ((log, author), head) in heads.iter().filter(|((l, _), _)| *l == LogId::Roster) {
            for env in self.store.chain(log, author, 0..head.seq + 1) {
                roster.push(env?);
            }
        }
        replica.restore(
            heads,
            self.store.keys()?,
            self.store.granted()?,
            roster,
            self.store.pending()?,
            now_ms(),
        );
        Ok(replica)
    }

    /// Watches this node's changes: `waker` runs when changes arrive after the last
    /// [`Watch::take`] (see [`watch`]).
    pub fn watch(&mut self, waker: impl Fn() + Send + Sync + 'static) -> Watch {
        self.watchers.add(waker)
    }

    fn emit(&mut self, change: Change) {
        self.watchers.emit(change);
    }

    pub fn device(&self) -> DevicePublic {
        self.secret.public()
    }

    fn replica(&self) -> Result<&Replica, NodeError> {
        self.replica.as_ref().ok_or_else(|| no_replica(&self.store))
    }

    /// This device's member, if enrolled.
    fn me(&self) -> Result<Member, NodeError> {
        self.replica()?
            .roster()
            .active_member(&self.secret.id())
            .cloned()
            .ok_or(NodeError::NotEnrolled)
    }

    /// This device's member, if it may write now (enrolled, its roster holding every
    /// operation its identity file recorded, and not waiting for a peer after a rebuild).
    fn writer(&self) -> Result<Member, NodeError> {
        let missing = self.roster_missing();
        if missing > 0 {
            return Err(NodeError::RosterNotBack(missing));
        }
        if self.replica()?.resyncing() {
            return Err(AuthorError::Resyncing.into());
        }
        self.me()
    }

    // ---- the one write path ----

    /// Hands one input to the replica and carries out everything that follows:
    /// effects persisted and applied, documents saved, the store flushed.
    /// Nothing is handed to the replica unless the disk has room for what follows (and
    /// a store that met a write error is reopened first).
    fn run(&mut self, input: Input, report: &mut ImportReport) -> Result<(), NodeError> {
        let offers = audit::offers(&input);
        for event in self.run_once(input, report, &offers)? {
            self.audit_quietly(event);
        }
        Ok(())
    }

    /// [`Node::run`] without recording what the input calls for in the audit trail:
    /// returns those events (`offers`: the input's audit envelopes, see `audit.rs`).
    fn run_once(
        &mut self,
        input: Input,
        report: &mut ImportReport,
        offers: &[audit::Offer],
    ) -> Result<Vec<crate::core::audit::AuditEvent>, NodeError> {
        self.store.recover()?;
        self.store.ensure_space()?;
        let replica = self
            .replica
            .as_mut()
            .ok_or_else(|| no_replica(&self.store))?;
        let mut ctx = Ctx {
            secret: &self.secret,
            rng: &mut rand::rng(),
            now_ms: now_ms(),
            lookup: &StoreLookup(&self.store),
        };
        let results = replica.handle(&mut ctx, input)?;
        let follow_ups = self.audit_follow_ups(offers, &results);
        for status in &results.statuses {
            match status {
                Ok(IngestStatus::Accepted) => report.accepted += 1,
                Ok(IngestStatus::Duplicate) => report.duplicate += 1,
                Ok(_) => report.waiting += 1,
                Err(e) => report.refused.push(e.to_string()),
            }
        }
        for n in &results.notices {
            tracing::warn!("{n}");
            report.notices.push(n.to_string());
        }
        self.carry_out(results.effects)?;
        self.save_documents()?;
        self.store.flush()?;
        self.keep_identity();
        Ok(follow_ups)
    }

    /// Ingests envelopes received from a peer or a bundle.
    fn ingest_all(
        &mut self,
        envelopes: Vec<Envelope>,
        report: &mut ImportReport,
    ) -> Result<(), NodeError> {
        self.run(Input::Envelopes(envelopes), report)
    }

    /// Seals a change into `log` as this device.
    fn commit_change(&mut self, log: LogId, plain: Vec<u8>) -> Result<(), NodeError> {
        // The envelope states the time the change states (local changes stamp it).
        let at_ms = stated_time_ms(&plain).unwrap_or_else(now_ms);
        self.run(
            Input::Seal { log, plain, at_ms },
            &mut ImportReport::default(),
        )
    }

    fn carry_out(&mut self, effects: Vec<Effect>) -> Result<(), NodeError> {
        for effect in effects {
            match effect {
                Effect::Accepted(env, id) => {
                    self.store.put_envelope(&env, &id)?;
                    self.queue_push(&env);
                    self.emit(Change::Accepted);
                }
                Effect::Pending(env, id) => self.store.put_pending(&env, &id)?,
                Effect::Unpended(id) => self.store.remove_pending(&id)?,
                Effect::Key { slot, key } => self.store.put_key(&slot, &key)?,
                Effect::Granted { slot, device } => self.store.put_granted(&slot, &device)?,
                Effect::ThreadChange {
                    thread,
                    category,
                    author,
                    at_ms,
                    change,
                } => {
                    let replica = self
                        .replica
                        .as_ref()
                        .ok_or_else(|| no_replica(&self.store))?;
                    self.docs.get_mut().apply(
                        replica,
                        docs::Received {
                            thread,
                            category,
                            author,
                            at_ms,
                            change: &change,
                        },
                    )?;
                    self.emit(Change::Thread(thread));
                }
                Effect::ThreadUnlocked { thread } => {
                    let replica = self
                        .replica
                        .as_ref()
                        .ok_or_else(|| no_replica(&self.store))?;
                    self.docs
                        .get_mut()
                        .rematerialize(&self.store, replica, thread)?;
                    self.emit(Change::Thread(thread));
                }
                Effect::RosterChanged => {
                    self.note_roster_back();
                    self.note_cut_off();
                    for thread in self.docs.get_mut().roster_changed() {
                        self.emit(Change::Thread(thread));
                    }
                    self.emit(Change::Roster)
                }
            }
        }
        Ok(())
    }

    fn save_documents(&mut self) -> Result<(), NodeError> {
        let replica = self
            .replica
            .as_mut()
            .ok_or_else(|| no_replica(&self.store))?;
        for (thread, header) in self.docs.get_mut().take_locked() {
            replica.note_locked(thread, &header);
        }
        self.docs.get_mut().save_dirty(&self.store, replica, false)
    }

    // ---- commands ----

    /// Founds a clinic with this device as its first admin.
    pub fn init_clinic(
        &mut self,
        clinic_name: &str,
        member_name: &str,
        role: Role,
    ) -> Result<(), NodeError> {
        if self.replica.is_some() {
            return Err(NodeError::AlreadyInClinic);
        }
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        let mut rng = rand::rng();
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let genesis = SignedGenesis::new(&self.secret, now_ms(), nonce);
        let replica = Replica::new(self.secret.public(), genesis.clone())?;
        self.store
            .put_sealed(Sealed::Secrets, GENESIS_KEY, &genesis.encode())?;
        self.replica = Some(replica);
        let mut member = [0u8; 16];
        rng.fill_bytes(&mut member);
        self.roster_op(roster::Op::Init {
            clinic_name: clinic_name.to_string(),
            member: MemberId(member),
            name: member_name.to_string(),
            role,
        })
    }

    fn roster_op(&mut self, op: roster::Op) -> Result<(), NodeError> {
        let missing = self.roster_missing();
        if missing > 0 {
            return Err(NodeError::RosterNotBack(missing));
        }
        let event = crate::core::audit::roster_event(&op);
        self.run(Input::Roster(op), &mut ImportReport::default())?;
        event.into_iter().for_each(|e| self.audit_quietly(e));
        Ok(())
    }

    pub fn add_member(
        &mut self,
        name: &str,
        role: Role,
        admin: bool,
    ) -> Result<MemberId, NodeError> {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let member = MemberId(id);
        self.roster_op(roster::Op::AddMember {
            member,
            name: name.to_string(),
            role,
            admin,
        })?;
        Ok(member)
    }

    pub fn add_device(&mut self, member_name: &str, device: DevicePublic) -> Result<(), NodeError> {
        let member = self.member_named(member_name)?.id;
        self.roster_op(roster::Op::AddDevice { member, device })
    }

    fn member_named(&self, name: &str) -> Result<Member, NodeError> {
        self.replica()?
            .roster()
            .member_by_name(name)
            .cloned()
            .ok_or_else(|| NodeError::UnknownMember(name.to_string()))
    }

    pub fn new_thread(
        &mut self,
        subject: Subject,
        category: Category,
        title: &str,
    ) -> Result<ThreadId, NodeError> {
        let me = self.writer()?;
        self.store.recover()?;
        self.store.ensure_space()?;
        let label = match &subject {
            Subject::Patient(l) | Subject::Topic(l) => l,
        };
        if label.trim().is_empty() || title.trim().is_empty() {
            return Err(NodeError::Invalid(
                "subject and title must not be empty".into(),
            ));
        }
        let mut rng = rand::rng();
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let creator = self.secret.id();
        let thread = derive_thread_id(category, &creator, &nonce);
        let log = LogId::Thread {
            id: thread,
            category,
        };
        if !self.replica()?.roster().may_read(&self.secret.id(), &log) {
            return Err(NodeError::CategoryNotAllowed(category));
        }
        self.create_thread_doc(ThreadMeta {
            subject,
            title: title.trim().to_string(),
            category,
            created_by: me.id,
            created_ms: now_ms(),
            creator,
            nonce,
        })
    }

    /// Writes a new thread's header, its first change, as this device.
    fn create_thread_doc(&mut self, meta: ThreadMeta) -> Result<ThreadId, NodeError> {
        let thread = meta.thread_id();
        let log = LogId::Thread {
            id: thread,
            category: meta.category,
        };
        let change = self
            .docs
            .get_mut()
            .edit_new(&self.secret.id(), thread, |doc| doc.create(&meta))?;
        self.commit_change(log, change)?;
        Ok(thread)
    }

    /// Resolves a full thread id or a unique prefix of one.
    pub fn resolve_thread(&self, reference: &str) -> Result<LogId, NodeError> {
        let r = reference.trim().to_ascii_lowercase();
        if r.len() < 4 {
            return Err(NodeError::UnknownThread(reference.to_string()));
        }
        let threads = self.replica()?.threads();
        let found: Vec<_> = threads
            .iter()
            .filter(|(id, _)| id.to_hex().starts_with(&r))
            .collect();
        match found.as_slice() {
            [(id, category)] => Ok(LogId::Thread {
                id: **id,
                category: **category,
            }),
            [] => Err(NodeError::UnknownThread(reference.to_string())),
            _ => Err(NodeError::Ambiguous(reference.to_string(), "thread")),
        }
    }

    /// The log of a thread, by id or by reference.
    fn thread_log(&self, thread: ThreadRef<'_>) -> Result<LogId, NodeError> {
        match thread {
            ThreadRef::Id(id) => self
                .replica()?
                .thread_log(&id)
                .ok_or_else(|| NodeError::UnknownThread(id.to_hex())),
            ThreadRef::Prefix(reference) => self.resolve_thread(reference),
        }
    }

    /// A thread this device holds and may read, by id or reference.
    fn readable_thread(&self, thread: ThreadRef<'_>) -> Result<(ThreadId, LogId), NodeError> {
        let reference = thread.to_string();
        match self.thread_log(thread)? {
            log @ LogId::Thread { id, category } => {
                // A restricted thread: participants and active emergency grants only.
                if !self.restriction_allows(&log) {
                    Err(match log.is_direct() {
                        true => NodeError::OthersDirect,
                        false => NodeError::Restricted,
                    })
                } else if self.replica()?.has_key(&log) {
                    self.check_lease(&log)?;
                    Ok((id, log))
                } else {
                    Err(NodeError::Locked(category))
                }
            }
            _ => Err(NodeError::UnknownThread(reference.to_string())),
        }
    }

    /// Applies a local edit to a readable thread and commits it as an envelope.
    fn edit_thread<T>(
        &mut self,
        reference: ThreadRef<'_>,
        edit: impl FnOnce(
            &mut crate::core::thread::ThreadDoc,
            &Member,
        ) -> Result<Option<(Vec<u8>, T)>, NodeError>,
    ) -> Result<Option<T>, NodeError> {
        let me = self.writer()?;
        let (thread, log) = self.readable_thread(reference)?;
        // Checked before the document is edited in memory: a refused change must not
        // reach a snapshot saved later.
        self.store.recover()?;
        self.store.ensure_space()?;
        let replica = self
            .replica
            .as_ref()
            .ok_or_else(|| no_replica(&self.store))?;
        let docs = self.docs.get_mut();
        let doc = docs.get(&self.store, replica, thread)?;
        let Some((change, out)) = edit(doc, &me)? else {
            return Ok(None);
        };
        docs.mark_changed(thread);
        self.commit_change(log, change)?;
        Ok(Some(out))
    }

    /// Posts a message; returns its id.
    pub fn post<'a>(
        &mut self,
        reference: impl Into<ThreadRef<'a>>,
        body: &str,
        urgent: bool,
        task: Option<TaskRequest>,
    ) -> Result<String, NodeError> {
        self.post_with_id(reference.into(), body, urgent, task, random_message_id())
    }

    /// Posts a message under an id the caller chose (random, from its own generator), so
    /// that it knows the id before any answer. An id already in the thread is refused,
    /// never overwritten. Returns the id as shown.
    pub fn post_with_id<'a>(
        &mut self,
        reference: impl Into<ThreadRef<'a>>,
        body: &str,
        urgent: bool,
        task: Option<TaskRequest>,
        random: [u8; MESSAGE_RANDOM_BYTES],
    ) -> Result<String, NodeError> {
        self.post_message(reference.into(), body, urgent, task, random, None)
    }

    /// Posts a reply to `original` (its shown id or 4+ characters of it), which must be
    /// in the thread and not retracted; as [`Node::post_with_id`] otherwise.
    pub fn post_reply_with_id<'a>(
        &mut self,
        reference: impl Into<ThreadRef<'a>>,
        original: &str,
        body: &str,
        urgent: bool,
        task: Option<TaskRequest>,
        random: [u8; MESSAGE_RANDOM_BYTES],
    ) -> Result<String, NodeError> {
        self.post_message(reference.into(), body, urgent, task, random, Some(original))
    }

    fn post_message(
        &mut self,
        reference: ThreadRef<'_>,
        body: &str,
        urgent: bool,
        task: Option<TaskRequest>,
        random: [u8; MESSAGE_RANDOM_BYTES],
        original: Option<&str>,
    ) -> Result<String, NodeError> {
        self.writer()?;
        if body.trim().is_empty() {
            return Err(NodeError::Invalid("the message is empty".into()));
        }
        let task = match task {
            None => None,
            Some(t) => {
                let assignee = self.member_named(&t.assignee)?;
                let (_, log) = self.readable_thread(reference)?;
                let roster = self.replica()?.roster();
                if log.is_direct() && !roster.member_may_read_at(&assignee, &log, now_ms()) {
                    return Err(NodeError::Invalid(format!(
                        "{} does not take part in this conversation, so the task cannot be \
                         theirs",
                        assignee.name
                    )));
                }
                if let Some(category) = log.category().filter(|c| !c.is_direct())
                    && !roster.policy.may_read(assignee.role, category)
                {
                    return Err(NodeError::AssigneeCannotRead {
                        name: assignee.name.clone(),
                        category,
                    });
                }
                Some(NewTask {
                    assignee: assignee.id,
                    due: t.due,
                })
            }
        };
        let device = self.secret.id();
        let out = self.edit_thread(reference, |doc, me| {
            let shown = hex::encode(random);
            if doc.message_ids().iter().any(|key| shown_id(key) == shown) {
                return Err(NodeError::MessageExists(shown));
            }
            let reply_to = match original {
                Some(typed) => Some(edits::find_message(doc, typed)?),
                None => None,
            };
            let msg = NewMessage {
                reply_to,
                random,
                author: me.id,
                device,
                at_ms: now_ms(),
                body: body.to_string(),
                priority: if urgent {
                    Priority::Urgent
                } else {
                    Priority::Normal
                },
                task,
            };
            let posted = doc.post(&msg).map_err(edits::shown)?;
            Ok(Some((posted.change, shown_id(&posted.id).to_string())))
        })?;
        let id = out.ok_or_else(|| NodeError::Invalid("nothing posted".into()))?;
        self.audit_change(reference, &id, |thread, message| AuditEvent::Posted {
            thread,
            message,
        });
        Ok(id)
    }

    /// Marks every message of the thread read by this member; returns how many. A
    /// change records a bounded number of receipts, so a long backlog takes several.
    pub fn mark_read<'a>(
        &mut self,
        reference: impl Into<ThreadRef<'a>>,
    ) -> Result<usize, NodeError> {
        let reference = reference.into();
        let mut marked = 0;
        while let Some(n) = self.edit_thread(reference, |doc, me| {
            let before = doc.unread(&me.id);
            Ok(doc
                .mark_read(&me.id, now_ms())?
                .map(|c| (c, before - doc.unread(&me.id))))
        })? {
            if n == 0 {
                break;
            }
            marked += n;
        }
        Ok(marked)
    }

    /// Marks a task done; returns the message id.
    pub fn complete_task<'a>(
        &mut self,
        reference: impl Into<ThreadRef<'a>>,
        message: &str,
    ) -> Result<String, NodeError> {
        self.change_message(
            reference.into(),
            message,
            |doc, id, me| doc.complete_task(id, me, now_ms()),
            |thread, message| AuditEvent::TaskDone { thread, message },
        )
    }

    // ---- views ----

    fn name_of(&self, member: &MemberId) -> String {
        self.replica
            .as_ref()
            .and_then(|r| r.roster().members.get(member))
            .map(|m| m.name.clone())
            .unwrap_or_else(|| format!("member {}", member.short()))
    }

    /// Every thread held, readable or not, most recent first. A read: nothing is written
    /// (summaries rebuilt meanwhile are stored at the end of the next command).
    pub fn threads(&self) -> Result<(Vec<ThreadSummary>, Vec<String>), NodeError> {
        let replica = self
            .replica
            .as_ref()
            .ok_or_else(|| no_replica(&self.store))?;
        let me = replica.roster().active_member(&self.secret.id());
        let (mut summaries, problems) = self.docs.borrow_mut().summaries(
            &self.store,
            replica,
            me.map(|m| (m.id, m.name.as_str())),
        )?;
        self.drop_others_directs(&mut summaries);
        self.hide_restricted(&mut summaries);
        self.lease_filter(&mut summaries);
        Ok((summaries, problems))
    }

    /// A readable thread's messages, by id or reference. A read: nothing is written.
    pub fn thread<'a>(
        &self,
        reference: impl Into<ThreadRef<'a>>,
    ) -> Result<ThreadDetail, NodeError> {
        let me = self.me()?;
        let (thread, _) = self.readable_thread(reference.into())?;
        let replica = self
            .replica
            .as_ref()
            .ok_or_else(|| no_replica(&self.store))?;
        let (meta, messages) = {
            let mut docs = self.docs.borrow_mut();
            let doc = docs.get(&self.store, replica, thread)?;
            let meta = doc
                .meta()
                .ok_or(crate::core::thread::ThreadError::NotMaterialized)?;
            (meta, doc.messages()?)
        };
        let name = |m: &MemberId| self.name_of(m);
        let role = |m: &MemberId| {
            replica
                .roster()
                .members
                .get(m)
                .filter(|m| !m.removed)
                .map(|m| m.role.to_string())
                .unwrap_or_default()
        };
        let by_id: std::collections::HashMap<&str, _> =
            messages.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut replies: std::collections::HashMap<&str, usize> = Default::default();
        for original in messages.iter().filter_map(|m| m.reply_to.as_deref()) {
            *replies.entry(original).or_default() += 1;
        }
        Ok(ThreadDetail {
            thread,
            id: thread.to_hex(),
            category: meta.category.to_string(),
            subject: meta.subject,
            title: meta.title,
            created_by: name(&meta.created_by),
            created_ms: meta.created_ms,
            emergencies: self.thread_emergencies(&thread),
            restricted_to: self.restricted_to(&thread),
            messages: messages
                .iter()
                .map(|m| MessageDetail {
                    reply_to: m.reply_to.as_ref().map(|key| {
                        let original = by_id.get(key.as_str());
                        QuoteDetail {
                            id: shown_id(key).to_string(),
                            author: original.map(|o| name(&o.author)).unwrap_or_default(),
                            quote: original
                                .map(|o| views::quote_of(&o.body))
                                .unwrap_or_default(),
                            retracted: original.is_some_and(|o| o.retracted),
                        }
                    }),
                    replies: *replies.get(m.id.as_str()).unwrap_or(&0),
                    unread: m.author != me.id && !m.read_by.contains(&me.id),
                    author: name(&m.author),
                    author_role: role(&m.author),
                    author_device: m.device.short(),
                    read_by: m
                        .read_by
                        .iter()
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .map(name)
                        .collect(),
                    task: m.task.as_ref().map(|t| TaskDetail {
                        assignee: name(&t.assignee),
                        due: t.due.clone(),
                        status: t.status,
                        done_by: t.done_by.as_ref().map(name),
                        done_ms: t.done_ms,
                    }),
                    id: shown_id(&m.id).to_string(),
                    at_ms: m.at_ms,
                    body: m.body.clone(),
                    priority: m.priority,
                    edited: m.edited,
                    retracted: m.retracted,
                })
                .collect(),
        })
    }

    /// The clinic's read policy: which categories each role reads.
    pub fn policy(&self) -> Result<crate::core::policy::Policy, NodeError> {
        Ok(self.replica()?.roster().policy.clone())
    }

    pub fn members(&self) -> Result<Vec<MemberView>, NodeError> {
        let roster = self.replica()?.roster();
        Ok(roster
            .members
            .values()
            .filter(|m| !m.removed)
            .map(|m| MemberView {
                id: m.id.to_hex(),
                name: m.name.clone(),
                role: m.role.to_string(),
                admin: m.admin,
                devices: roster
                    .devices
                    .values()
                    .filter(|d| d.member == m.id && !d.revoked)
                    .map(|d| d.public.id.short())
                    .collect(),
            })
            .collect())
    }

    pub fn status(&self) -> Status {
        let replica = self.replica.as_ref();
        let member = replica.and_then(|r| r.roster().active_member(&self.secret.id()));
        Status {
            clinic_id: replica.map(|r| r.clinic().to_hex()).or_else(|| {
                // Quarantined: the clinic is known from the genesis, nothing is folded.
                let g = self.store.get_sealed(Sealed::Secrets, GENESIS_KEY).ok()??;
                Some(SignedGenesis::decode(&g).ok()?.clinic_id().to_hex())
            }),
            clinic_name: replica.and_then(|r| r.roster().clinic_name.clone()),
            device: self.secret.id().to_hex(),
            member: member.map(|m| m.name.clone()),
            role: member.map(|m| m.role.to_string()),
            admin: member.is_some_and(|m| m.admin),
            envelopes: self.store.envelope_count(),
            pending: replica.map_or(0, |r| r.pending_count()),
            resyncing: replica.is_some_and(|r| r.resyncing()),
            lease_expired: self.lease_expired(),
            changed: self.unusable().map(|e| e.to_string()),
            roster_missing: self.roster_missing(),
        }
    }

    // ---- bundles ----

    /// Writes the genesis and every envelope held (accepted and pending) to `path`.
    pub fn export_bundle(&self, path: &Path) -> Result<u64, NodeError> {
        let replica = self.replica()?;
        let tmp = path.with_extension("partial");
        let file = std::fs::File::create(&tmp).map_err(bundle::BundleError::Io)?;
        let mut w =
            bundle::Writer::new(std::io::BufWriter::new(file), &replica.genesis().encode())?;
        for env in self.store.envelopes(None) {
            match env {
                Ok(env) => w.record(&env.encode())?,
                // Exported bundles carry only what verifies; the damage is reported.
                Err(e) => tracing::warn!("not exported: {e}"),
            }
        }
        for env in self.store.pending()? {
            w.record(&env.encode())?;
        }
        let (out, count) = w.finish()?;
        out.into_inner()
            .map_err(|e| bundle::BundleError::Io(e.into_error()))?
            .sync_all()
            .map_err(bundle::BundleError::Io)?;
        std::fs::rename(&tmp, path).map_err(bundle::BundleError::Io)?;
        Ok(count)
    }

    /// Imports a bundle: every envelope is validated like any received one. A device
    /// without a clinic joins the bundle's clinic only if the bundle enrolls it.
    ///
    /// The file is streamed, in memory bounded by one batch whatever its size: a first
    /// pass reads it through to check its trailer, so a damaged file imports nothing;
    /// then it is read again and imported batch by batch (as a sync session delivers
    /// them). Should the file change between the passes, the import stops at the first
    /// record that no longer reads, keeping the batches already imported (each of their
    /// envelopes was validated on its own).
    pub fn import_bundle(&mut self, path: &Path) -> Result<ImportReport, NodeError> {
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        let (genesis_bytes, _) = bundle::verify(open_bundle(path)?)?;
        let genesis =
            SignedGenesis::decode(&genesis_bytes).map_err(|_| bundle::BundleError::BadGenesis)?;
        genesis
            .verify()
            .map_err(|_| bundle::BundleError::BadGenesis)?;
        let mut report = ImportReport::default();
        match &self.replica {
            Some(r) if r.clinic() != genesis.clinic_id() => {
                return Err(bundle::BundleError::OtherClinic.into());
            }
            Some(_) => {}
            None => {
                self.check_enrollment(&genesis, path)?;
                self.store
                    .put_sealed(Sealed::Secrets, GENESIS_KEY, &genesis.encode())?;
                self.replica = Some(Replica::new(self.secret.public(), genesis.clone())?);
                report.joined_clinic = Some(genesis.clinic_id().to_hex());
            }
        }
        let mut reader = bundle::Reader::new(open_bundle(path)?)?;
        let changed = |_| bundle::BundleError::ChangedWhileImporting;
        if reader.next_record().map_err(changed)? != Some(genesis_bytes) {
            return Err(bundle::BundleError::ChangedWhileImporting.into());
        }
        let mut index = 0;
        let mut batch: Vec<Envelope> = Vec::new();
        let mut bytes = 0;
        while let Some(rec) = reader.next_record().map_err(changed)? {
            index += 1;
            let env = match Envelope::decode(&rec) {
                Ok(env) => env,
                Err(e) => {
                    report.refused.push(format!("record {index}: {e}"));
                    continue;
                }
            };
            if !batch_has_room(batch.len(), bytes, rec.len()) {
                self.ingest_all(std::mem::take(&mut batch), &mut report)?;
                bytes = 0;
            }
            bytes += rec.len();
            batch.push(env);
        }
        self.ingest_all(batch, &mut report)?;
        Ok(report)
    }

    /// Dry run on a scratch replica: does this bundle admit this device? Reads the file
    /// batch by batch, only as far as it takes to know.
    fn check_enrollment(&self, genesis: &SignedGenesis, path: &Path) -> Result<(), NodeError> {
        let mut scratch = Replica::new(self.secret.public(), genesis.clone())?;
        scratch.set_follow_up(false);
        let mut ctx = Ctx {
            secret: &self.secret,
            rng: &mut rand::rng(),
            now_ms: now_ms(),
            lookup: &NoLookup,
        };
        let mut reader = bundle::Reader::new(open_bundle(path)?)?;
        reader.next_record()?; // the genesis
        // Batch by batch: the dry run stops as soon as it knows; the real import
        // validates everything again.
        let mut batch: Vec<Envelope> = Vec::new();
        let mut bytes = 0;
        loop {
            let rec = reader.next_record()?;
            let full = rec
                .as_ref()
                .is_none_or(|r| !batch_has_room(batch.len(), bytes, r.len()));
            if full && !batch.is_empty() {
                scratch.handle(&mut ctx, Input::Envelopes(std::mem::take(&mut batch)))?;
                bytes = 0;
                if scratch.enrolled() {
                    break;
                }
            }
            let Some(rec) = rec else { break };
            if let Ok(env) = Envelope::decode(&rec) {
                bytes += rec.len();
                batch.push(env);
            }
        }
        if scratch.enrolled() {
            Ok(())
        } else {
            Err(bundle::BundleError::NotEnrolled.into())
        }
    }
}

/// A bundle file opened for streaming.
fn open_bundle(path: &Path) -> Result<std::io::BufReader<std::fs::File>, NodeError> {
    let file = std::fs::File::open(path).map_err(bundle::BundleError::Io)?;
    Ok(std::io::BufReader::new(file))
}
