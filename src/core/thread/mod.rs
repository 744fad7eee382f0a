//! A thread as an Automerge document: its header, messages (with optional task and
//! priority) and per-member read receipts. Keys are flat (`reads` is keyed by
//! `member:message`, task fields live in the message) so that concurrent edits from
//! different devices never create competing objects.
//!
//! Every writer of a thread can put anything into an Automerge document, so a received
//! change is judged by [`rules`] before it is applied: who may write which part of the
//! document is fixed by the thread id (its creator), by message keys (their member) and
//! by the device that created each message. A change that touches anything its author
//! does not own is refused whole. See `rules.rs` for the rules themselves.

mod bounds;
mod rules;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue,
    ScalarValueRef, ValueRef,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

use super::ids::{DeviceId, MemberId, ThreadId};
use super::limits::{
    MAX_CHANGE_BYTES, MAX_LABEL_BYTES, MAX_MESSAGE_TEXT_BYTES, MAX_RECEIPTS_PER_CHANGE,
};
use super::policy::Category;

pub use bounds::{ChangeBoundError, check_change_bytes};
pub use rules::Rule;

/// Bytes of randomness in a message key, before the author's member id.
pub const MESSAGE_RANDOM_BYTES: usize = 8;

/// Most received changes a document holds while they wait for changes they depend on.
/// Sync delivers each author's chain in turn, so a long catch-up can exceed this; the
/// changes refused then are in the envelope store and come back, in causal order, the
/// next time the document is loaded (see [`ThreadDoc::apply_batch`]).
pub const MAX_QUEUED_CHANGES: usize = 1024;
/// Most bytes of changes held waiting (32 changes of the largest size fit).
pub const MAX_QUEUED_BYTES: usize = 32 * MAX_CHANGE_BYTES;

const THREAD_ID_DOMAIN: &[u8] = b"huddle/thread-id/v1";

/// A thread's id, derived from its category, its creator device and a random nonce: the
/// id alone says which device may write the thread's header. Byte 0 is the category's
/// code; bytes 1..16 are the first 15 bytes of
/// SHA-256(`huddle/thread-id/v1` || code || creator || nonce).
pub fn derive_thread_id(category: Category, creator: &DeviceId, nonce: &[u8; 16]) -> ThreadId {
    let code = category.code();
    let mut h = Sha256::new();
    h.update(THREAD_ID_DOMAIN);
    h.update([code]);
    h.update(creator.0);
    h.update(nonce);
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id[0] = code;
    id[1..].copy_from_slice(&digest[..15]);
    ThreadId(id)
}

/// The key of a message: `{random hex}.{member hex}`.
pub fn message_key(random: &[u8; MESSAGE_RANDOM_BYTES], author: &MemberId) -> String {
    format!("{}.{}", hex::encode(random), author.to_hex())
}

/// The member a message key belongs to, if the key is well formed (lowercase hex only,
/// so that one message has exactly one spelling).
pub fn message_key_member(key: &str) -> Option<MemberId> {
    let (random, member) = key.split_once('.')?;
    if random.len() != 2 * MESSAGE_RANDOM_BYTES || !is_lower_hex(random) {
        return None;
    }
    canonical_member(member)
}

/// A member id written as exactly its own lowercase hex.
fn canonical_member(text: &str) -> Option<MemberId> {
    let member: MemberId = text.parse().ok()?;
    (member.to_hex() == text).then_some(member)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The time (ms since the epoch) that the authoring device stamped on a change; local
/// operations stamp their own `at_ms`. Until the envelope carries its own `at_ms`, callers
/// pass this as [`ChangeAuthor::at_ms`]: the rules then hold a change's recorded times to
/// the time its author stated for the whole change.
pub fn stated_time_ms(change: &[u8]) -> Option<u64> {
    let change = parse_change(change).ok()?;
    u64::try_from(change.timestamp()).ok()
}

/// What a thread is about.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "label", rename_all = "lowercase")]
pub enum Subject {
    Patient(String),
    Topic(String),
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct ThreadMeta {
    pub subject: Subject,
    pub title: String,
    pub category: Category,
    pub created_by: MemberId,
    pub created_ms: u64,
    /// The device that created the thread: the only writer of this header.
    pub creator: DeviceId,
    /// The random part of the thread id (see [`derive_thread_id`]).
    pub nonce: [u8; 16],
}

impl ThreadMeta {
    /// The id this header belongs to.
    pub fn thread_id(&self) -> ThreadId {
        derive_thread_id(self.category, &self.creator, &self.nonce)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Normal,
    Urgent,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Open,
    Done,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewTask {
    pub assignee: MemberId,
    /// A calendar date, `YYYY-MM-DD`.
    pub due: String,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewMessage {
    /// The random part of the message's key; the key is [`message_key`]`(random, author)`.
    pub random: [u8; MESSAGE_RANDOM_BYTES],
    pub author: MemberId,
    /// The posting device: the document's own actor.
    pub device: DeviceId,
    pub at_ms: u64,
    pub body: String,
    pub priority: Priority,
    pub task: Option<NewTask>,
    /// The message this one answers (its key), quoted where it is shown. Written only
    /// when the message is created. A device of the previous release refuses the change
    /// (`reply_to` is outside its schema) and so holds the thread's later changes until
    /// it upgrades; the envelope is stored and relayed meanwhile.
    pub reply_to: Option<String>,
}

impl NewMessage {
    /// The key the message is stored under, which is also its id.
    pub fn key(&self) -> String {
        message_key(&self.random, &self.author)
    }
}

/// A posted message: its id and the change to send.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Posted {
    pub id: String,
    pub change: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct TaskView {
    pub assignee: MemberId,
    pub due: String,
    pub status: TaskStatus,
    pub done_by: Option<MemberId>,
    pub done_ms: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct MessageView {
    pub id: String,
    pub author: MemberId,
    pub device: DeviceId,
    pub at_ms: u64,
    pub body: String,
    pub priority: Priority,
    pub task: Option<TaskView>,
    pub read_by: Vec<MemberId>,
    /// Its author changed the text after posting it (the earlier text stays in the
    /// document's history).
    pub edited: bool,
    /// Its author retracted it: the text is gone from the current document.
    pub retracted: bool,
    /// The message it answers, if it is a reply (a well-formed message key, which may
    /// not be in this document: shown then as an original that is not here).
    pub reply_to: Option<String>,
}

/// Who made a received change, as its envelope says (the envelope layer has checked the
/// signature, that the device may read the thread, and `member` = the device's member).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChangeAuthor {
    pub device: DeviceId,
    pub member: MemberId,
    pub at_ms: u64,
}

/// What became of a received change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Applied {
    /// Applied, and with it `released` held changes that were waiting for it; `refused`
    /// are held changes that could be judged now and broke a rule (for the log).
    Now {
        released: usize,
        refused: Vec<ThreadError>,
    },
    /// Held until the changes it depends on arrive; [`ThreadDoc::has_missing_deps`] is
    /// true meanwhile.
    Queued,
    /// Already in the document (or already held): nothing to do.
    AlreadyHad,
}

/// Why a thread document operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThreadError {
    #[error("the thread's first change has not arrived yet")]
    NotMaterialized,
    #[error("the thread already has a header")]
    AlreadyCreated,
    #[error("no message `{0}` in this thread")]
    UnknownMessage(String),
    #[error("message `{0}` has no task")]
    NotATask(String),
    #[error("message `{0}` is another member's: only its author edits or retracts it")]
    NotYours(String),
    #[error("message `{0}` was retracted")]
    Retracted(String),
    #[error("change is not authored by the envelope's device")]
    WrongActor,
    #[error("device {0:?} is not the member the envelope names, or no member's at all")]
    UnknownAuthor(DeviceId),
    #[error("change refused ({rule}): {detail}")]
    NotAllowed { rule: Rule, detail: String },
    #[error(
        "change not held: {held} changes ({bytes} bytes) already wait for earlier ones \
         (at most {MAX_QUEUED_CHANGES} changes, {MAX_QUEUED_BYTES} bytes)"
    )]
    QueueFull { held: usize, bytes: usize },
    #[error("malformed change: {0}")]
    Malformed(String),
    #[error("change refused unread: {0}")]
    Unbounded(#[from] ChangeBoundError),
    #[error("{what} is {len} bytes; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("document error: {0}")]
    Automerge(String),
}

fn am(e: impl std::fmt::Display) -> ThreadError {
    ThreadError::Automerge(e.to_string())
}

/// The thread and log a received change is judged in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Scope {
    category: Category,
    thread: ThreadId,
}

/// A received change held until the changes it depends on arrive.
struct Held {
    change: Change,
    author: ChangeAuthor,
    scope: Scope,
}

/// One thread document; its Automerge actor is the local device.
pub struct ThreadDoc {
    doc: AutoCommit,
    judge: rules::Judge,
    /// Received changes waiting for changes they depend on, by hash.
    held: HashMap<ChangeHash, Held>,
    /// For each change not yet in the document, the held changes that depend on it.
    waiting_on: HashMap<ChangeHash, Vec<ChangeHash>>,
    held_bytes: usize,
}

impl ThreadDoc {
    pub fn new(actor: &DeviceId) -> Self {
        ThreadDoc {
            doc: AutoCommit::new().with_actor(ActorId::from(&actor.0[..])),
            judge: rules::Judge::default(),
            held: HashMap::new(),
            waiting_on: HashMap::new(),
            held_bytes: 0,
        }
    }

    /// Loads a document saved by [`ThreadDoc::save`] (every change in it was admitted
    /// when it was applied; held changes are not saved).
    /// Automerge 0.12 panics on some malformed documents (an `unwrap` in its column
    /// decoder; found by fuzzing, `tests/fuzz_cases/store_records/`): that is caught and
    /// reported like any damaged snapshot, which is then rebuilt from the envelopes.
    pub fn load(bytes: &[u8], actor: &DeviceId) -> Result<Self, ThreadError> {
        let loaded = std::panic::catch_unwind(|| AutoCommit::load(bytes))
            .map_err(|_| ThreadError::Automerge("the saved document is damaged".into()))?;
        let doc = loaded.map_err(am)?;
        Ok(ThreadDoc {
            doc: doc.with_actor(ActorId::from(&actor.0[..])),
            judge: rules::Judge::default(),
            held: HashMap::new(),
            waiting_on: HashMap::new(),
            held_bytes: 0,
        })
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Whether some received change still waits for a change it depends on (held
    /// changes are not in [`ThreadDoc::save`]'s output).
    pub fn has_missing_deps(&mut self) -> bool {
        !self.held.is_empty() || !self.doc.get_missing_deps(&[]).is_empty()
    }

    /// Writes the header and the empty message and receipt maps: the thread's first change.
    pub fn create(&mut self, meta: &ThreadMeta) -> Result<Vec<u8>, ThreadError> {
        if self.meta().is_some() {
            return Err(ThreadError::AlreadyCreated);
        }
        self.check_actor(&meta.creator)?;
        let (kind, label) = match &meta.subject {
            Subject::Patient(l) => ("patient", l),
            Subject::Topic(l) => ("topic", l),
        };
        within("the thread's subject", label, MAX_LABEL_BYTES)?;
        within("the thread's title", &meta.title, MAX_LABEL_BYTES)?;
        let d = &mut self.doc;
        let m = d.put_object(ROOT, "meta", ObjType::Map).map_err(am)?;
        d.put(&m, "subject_kind", kind).map_err(am)?;
        d.put(&m, "subject", label.as_str()).map_err(am)?;
        d.put(&m, "title", meta.title.as_str()).map_err(am)?;
        d.put(&m, "category", meta.category.as_str()).map_err(am)?;
        d.put(&m, "created_by", meta.created_by.to_hex())
            .map_err(am)?;
        d.put(&m, "created_ms", int(meta.created_ms)).map_err(am)?;
        d.put(&m, "creator", meta.creator.to_hex()).map_err(am)?;
        d.put(&m, "nonce", hex::encode(meta.nonce)).map_err(am)?;
        d.put_object(ROOT, "messages", ObjType::Map).map_err(am)?;
        d.put_object(ROOT, "reads", ObjType::Map).map_err(am)?;
        self.commit(meta.created_ms)
    }

    /// Posts a message under its key ([`NewMessage::key`]); returns the key and the change.
    pub fn post(&mut self, msg: &NewMessage) -> Result<Posted, ThreadError> {
        self.check_actor(&msg.device)?;
        within("the message", &msg.body, MAX_MESSAGE_TEXT_BYTES)?;
        if let Some(task) = &msg.task {
            within("the task's due date", &task.due, MAX_LABEL_BYTES)?;
        }
        let messages = self.map("messages")?;
        let id = msg.key();
        if let Some(original) = &msg.reply_to {
            self.live_message(original)?;
        }
        let d = &mut self.doc;
        let m = d
            .put_object(&messages, id.as_str(), ObjType::Map)
            .map_err(am)?;
        d.put(&m, "author", msg.author.to_hex()).map_err(am)?;
        d.put(&m, "device", msg.device.to_hex()).map_err(am)?;
        d.put(&m, "at_ms", int(msg.at_ms)).map_err(am)?;
        d.put(&m, "body", msg.body.as_str()).map_err(am)?;
        if let Some(original) = &msg.reply_to {
            d.put(&m, "reply_to", original.as_str()).map_err(am)?;
        }
        let urgent = msg.priority == Priority::Urgent;
        d.put(&m, "priority", if urgent { "urgent" } else { "normal" })
            .map_err(am)?;
        if let Some(task) = &msg.task {
            d.put(&m, "task_assignee", task.assignee.to_hex())
                .map_err(am)?;
            d.put(&m, "task_due", task.due.as_str()).map_err(am)?;
            d.put(&m, "task_status", "open").map_err(am)?;
        }
        let change = self.commit(msg.at_ms)?;
        Ok(Posted { id, change })
    }

    /// Marks a task done by `by` (this device's member) at `at_ms`.
    pub fn complete_task(
        &mut self,
        message: &str,
        by: &MemberId,
        at_ms: u64,
    ) -> Result<Vec<u8>, ThreadError> {
        let m = self.message(message)?;
        if self.str_at(&m, "task_status").is_none() {
            return Err(ThreadError::NotATask(message.to_string()));
        }
        let d = &mut self.doc;
        d.put(&m, "task_status", "done").map_err(am)?;
        d.put(&m, "task_done_by", by.to_hex()).map_err(am)?;
        d.put(&m, "task_done_ms", int(at_ms)).map_err(am)?;
        self.commit(at_ms)
    }

    /// Replaces the text of `message`, which must be `by`'s own (the rules refuse
    /// another member's edit on every device). Automerge keeps the earlier text in the
    /// document's history, so the audit trail can still show what was said.
    pub fn edit(
        &mut self,
        message: &str,
        by: &MemberId,
        body: &str,
        at_ms: u64,
    ) -> Result<Vec<u8>, ThreadError> {
        within("the message", body, MAX_MESSAGE_TEXT_BYTES)?;
        let m = self.own_live_message(message, by)?;
        self.doc.put(&m, "body", body).map_err(am)?;
        self.commit(at_ms)
    }

    /// Retracts `by`'s own `message`: its text becomes empty (shown as "message
    /// retracted"), an urgent flag is lowered and an open task is closed, by `by` at
    /// `at_ms`. Only fields its author owns change (and the task status any reader may
    /// set), so a device of the previous release accepts the change and shows an empty
    /// message with its task done. The text stays in the document's history.
    pub fn retract(
        &mut self,
        message: &str,
        by: &MemberId,
        at_ms: u64,
    ) -> Result<Vec<u8>, ThreadError> {
        let m = self.own_live_message(message, by)?;
        let task_open = self.str_at(&m, "task_status").as_deref() == Some("open");
        let urgent = self.str_at(&m, "priority").as_deref() == Some("urgent");
        let d = &mut self.doc;
        d.put(&m, "body", "").map_err(am)?;
        if urgent {
            d.put(&m, "priority", "normal").map_err(am)?;
        }
        if task_open {
            d.put(&m, "task_status", "done").map_err(am)?;
            d.put(&m, "task_done_by", by.to_hex()).map_err(am)?;
            d.put(&m, "task_done_ms", int(at_ms)).map_err(am)?;
        }
        self.commit(at_ms)
    }

    /// `message`, if it is `by`'s and not retracted.
    fn own_live_message(&self, message: &str, by: &MemberId) -> Result<ObjId, ThreadError> {
        if message_key_member(message) != Some(*by) {
            return Err(ThreadError::NotYours(message.to_string()));
        }
        self.live_message(message)
    }

    /// `message`, if it is in the document and not retracted.
    fn live_message(&self, message: &str) -> Result<ObjId, ThreadError> {
        let m = self.message(message)?;
        if self.str_at(&m, "body").is_none_or(|b| b.is_empty()) {
            return Err(ThreadError::Retracted(message.to_string()));
        }
        Ok(m)
    }

    /// Records that `member` has read up to [`MAX_RECEIPTS_PER_CHANGE`] unread messages
    /// (so that the change fits an envelope); `None` if nothing was unread. Call again
    /// until it returns `None` to mark everything read.
    pub fn mark_read(
        &mut self,
        member: &MemberId,
        at_ms: u64,
    ) -> Result<Option<Vec<u8>>, ThreadError> {
        let reads = self.map("reads")?;
        let unread = self.unread_ids(member)?;
        if unread.is_empty() {
            return Ok(None);
        }
        for id in unread.into_iter().take(MAX_RECEIPTS_PER_CHANGE) {
            let key = format!("{}:{}", member.to_hex(), id);
            self.doc.put(&reads, key, int(at_ms)).map_err(am)?;
        }
        self.commit(at_ms).map(Some)
    }

    /// Applies a change received in an envelope of `thread`'s log (whose category is
    /// `log_category`) from `author`, if [`rules`] admit it; `member_of` names the member
    /// of any device of the clinic, revoked ones included.
    ///
    /// A change whose dependencies have not all arrived cannot be judged yet: it is held
    /// (up to [`MAX_QUEUED_CHANGES`] / [`MAX_QUEUED_BYTES`]) and judged once they have.
    /// A refused change is not applied at all and leaves the document as it was.
    pub fn apply(
        &mut self,
        log_category: Category,
        thread: ThreadId,
        author: &ChangeAuthor,
        member_of: &dyn Fn(&DeviceId) -> Option<MemberId>,
        change: &[u8],
    ) -> Result<Applied, ThreadError> {
        let change = parse_change(change)?;
        let scope = Scope {
            category: log_category,
            thread,
        };
        self.apply_parsed(scope, author, member_of, change)
    }

    /// Applies many received changes (of one thread), in an order that puts every
    /// change after the ones it depends on (Lamport order: an honest change's operation
    /// counters exceed those of everything it depends on), so that none waits. Returns
    /// the changes refused. This is how a document is rebuilt from stored envelopes,
    /// which come one author's chain at a time.
    pub fn apply_batch(
        &mut self,
        log_category: Category,
        thread: ThreadId,
        member_of: &dyn Fn(&DeviceId) -> Option<MemberId>,
        changes: impl IntoIterator<Item = (ChangeAuthor, Vec<u8>)>,
    ) -> Vec<ThreadError> {
        let scope = Scope {
            category: log_category,
            thread,
        };
        let mut refused = Vec::new();
        let mut parsed = Vec::new();
        for (author, bytes) in changes {
            match parse_change(&bytes) {
                Ok(change) => parsed.push((author, change)),
                Err(e) => refused.push(e),
            }
        }
        parsed.sort_by_key(|(_, c)| c.start_op());
        for (author, change) in parsed {
            match self.apply_parsed(scope, &author, member_of, change) {
                Ok(Applied::Now { refused: r, .. }) => refused.extend(r),
                Ok(_) => {}
                Err(e) => refused.push(e),
            }
        }
        refused
    }

    /// Judges a received change against the document as it is, without applying it
    /// (its dependencies must all be present).
    pub fn check(
        &mut self,
        log_category: Category,
        thread: ThreadId,
        author: &ChangeAuthor,
        member_of: &dyn Fn(&DeviceId) -> Option<MemberId>,
        change: &[u8],
    ) -> Result<(), ThreadError> {
        let change = parse_change(change)?;
        let scope = Scope {
            category: log_category,
            thread,
        };
        if !self.deps_present(&change) {
            return Err(ThreadError::NotAllowed {
                rule: Rule::History,
                detail: "the change's dependencies are not all in the document".into(),
            });
        }
        self.judge
            .check(&mut self.doc, &change, scope, author, member_of)
    }

    fn apply_parsed(
        &mut self,
        scope: Scope,
        author: &ChangeAuthor,
        member_of: &dyn Fn(&DeviceId) -> Option<MemberId>,
        change: Change,
    ) -> Result<Applied, ThreadError> {
        // What can be checked without the change's history, before holding it.
        if change.actor_id().to_bytes() != author.device.0 {
            return Err(ThreadError::WrongActor);
        }
        if member_of(&author.device) != Some(author.member) {
            return Err(ThreadError::UnknownAuthor(author.device));
        }
        let hash = change.hash();
        if self.has_change(&hash) || self.held.contains_key(&hash) {
            return Ok(Applied::AlreadyHad);
        }
        let missing: Vec<ChangeHash> = change
            .deps()
            .iter()
            .filter(|d| !self.has_change(d))
            .copied()
            .collect();
        if !missing.is_empty() {
            let bytes = change.raw_bytes().len();
            if self.held.len() >= MAX_QUEUED_CHANGES || self.held_bytes + bytes > MAX_QUEUED_BYTES {
                return Err(ThreadError::QueueFull {
                    held: self.held.len(),
                    bytes: self.held_bytes,
                });
            }
            for dep in missing {
                self.waiting_on.entry(dep).or_default().push(hash);
            }
            self.held_bytes += bytes;
            self.held.insert(
                hash,
                Held {
                    change,
                    author: *author,
                    scope,
                },
            );
            return Ok(Applied::Queued);
        }
        if let Err(e) = self.judge_and_apply(scope, author, member_of, change) {
            self.drop_dependents(hash, &mut Vec::new());
            return Err(e);
        }
        let (released, refused) = self.release(hash, member_of);
        Ok(Applied::Now { released, refused })
    }

    fn judge_and_apply(
        &mut self,
        scope: Scope,
        author: &ChangeAuthor,
        member_of: &dyn Fn(&DeviceId) -> Option<MemberId>,
        change: Change,
    ) -> Result<(), ThreadError> {
        self.judge
            .check(&mut self.doc, &change, scope, author, member_of)?;
        let (actor, seq, max_op) = (change.actor_id().clone(), change.seq(), change.max_op());
        self.doc.apply_changes([change]).map_err(am)?;
        self.judge.admitted(actor, seq, max_op);
        Ok(())
    }

    /// Judges and applies the held changes that waited for `applied` and now have all
    /// their dependencies, then those that waited for them, and so on.
    fn release(
        &mut self,
        applied: ChangeHash,
        member_of: &dyn Fn(&DeviceId) -> Option<MemberId>,
    ) -> (usize, Vec<ThreadError>) {
        let mut released = 0;
        let mut refused = Vec::new();
        let mut work = vec![applied];
        while let Some(hash) = work.pop() {
            for candidate in self.waiting_on.remove(&hash).unwrap_or_default() {
                let Some(deps) = self.held.get(&candidate).map(|h| h.change.deps().to_vec()) else {
                    continue;
                };
                // Still waiting for another dependency (it is listed under that one too).
                if !deps.iter().all(|d| self.has_change(d)) {
                    continue;
                }
                let Some(h) = self.held.remove(&candidate) else {
                    continue;
                };
                self.held_bytes -= h.change.raw_bytes().len();
                match self.judge_and_apply(h.scope, &h.author, member_of, h.change) {
                    Ok(()) => {
                        released += 1;
                        work.push(candidate);
                    }
                    Err(e) => {
                        refused.push(e);
                        self.drop_dependents(candidate, &mut refused);
                    }
                }
            }
        }
        (released, refused)
    }

    /// Drops the held changes that depend, directly or not, on a refused change: they
    /// can never apply.
    fn drop_dependents(&mut self, refused_change: ChangeHash, refused: &mut Vec<ThreadError>) {
        let mut work = vec![refused_change];
        while let Some(hash) = work.pop() {
            for candidate in self.waiting_on.remove(&hash).unwrap_or_default() {
                if let Some(h) = self.held.remove(&candidate) {
                    self.held_bytes -= h.change.raw_bytes().len();
                    refused.push(ThreadError::NotAllowed {
                        rule: Rule::History,
                        detail: "depends on a refused change".into(),
                    });
                    work.push(candidate);
                }
            }
        }
    }

    fn has_change(&mut self, hash: &ChangeHash) -> bool {
        self.doc.get_change_meta_by_hash(hash).is_some()
    }

    fn deps_present(&mut self, change: &Change) -> bool {
        change.deps().iter().all(|d| self.has_change(d))
    }

    fn check_actor(&self, device: &DeviceId) -> Result<(), ThreadError> {
        if self.doc.get_actor().to_bytes() == device.0 {
            Ok(())
        } else {
            Err(ThreadError::WrongActor)
        }
    }

    /// The thread's header. Its category is the one the rules checked against the log's
    /// category when the creating change was admitted, and nothing may write it after.
    pub fn meta(&self) -> Option<ThreadMeta> {
        let (_, m) = self.doc.get(ROOT, "meta").ok()??;
        let label = self.str_at(&m, "subject")?;
        let subject = match self.str_at(&m, "subject_kind")?.as_str() {
            "patient" => Subject::Patient(label),
            _ => Subject::Topic(label),
        };
        Some(ThreadMeta {
            subject,
            title: self.str_at(&m, "title")?,
            category: Category::from_name(&self.str_at(&m, "category")?)?,
            created_by: self.str_at(&m, "created_by")?.parse().ok()?,
            created_ms: self.int_at(&m, "created_ms")?,
            creator: self.str_at(&m, "creator")?.parse().ok()?,
            nonce: hex::decode(self.str_at(&m, "nonce")?)
                .ok()?
                .try_into()
                .ok()?,
        })
    }

    /// Messages in time order (ties by id), with receipts; malformed entries are skipped.
    /// One pass over the messages and one over the receipts: this runs after every
    /// change (for the thread list), so it must stay linear in the thread's length.
    ///
    /// Who wrote a message is not read from its writable fields: the device is the actor
    /// of the operation that created the message object, and the author is the member
    /// in its key, which the rules admit only from a device of that member. (The rules
    /// also force the `author`/`device`/`at_ms` fields to equal these and the envelope's
    /// time, in the creating change only; `at_ms` is read from its field on that basis.)
    pub fn messages(&self) -> Result<Vec<MessageView>, ThreadError> {
        let messages = self.map("messages")?;
        let mut read_by: HashMap<String, Vec<MemberId>> = HashMap::new();
        for (who, msg) in self.read_receipts()? {
            read_by.entry(msg).or_default().push(who);
        }
        let mut out: Vec<MessageView> = self
            .doc
            .map_range(&messages, ..)
            .filter(|item| matches!(item.value, ValueRef::Object(ObjType::Map)))
            .filter_map(|item| {
                let id = item.key.to_string();
                let author = message_key_member(&id)?;
                let obj = item.id();
                let device = creating_device(&obj)?;
                let f = Fields::read(&self.doc, &obj);
                let task = match f.str("task_status") {
                    None => None,
                    Some(status) => Some(TaskView {
                        assignee: f.str("task_assignee")?.parse().ok()?,
                        due: f.str("task_due")?.to_string(),
                        status: if status == "done" {
                            TaskStatus::Done
                        } else {
                            TaskStatus::Open
                        },
                        done_by: f.str("task_done_by").and_then(|s| s.parse().ok()),
                        done_ms: f.int("task_done_ms"),
                    }),
                };
                let body = f.str("body")?.to_string();
                let retracted = body.is_empty();
                Some(MessageView {
                    read_by: read_by.remove(&id).unwrap_or_default(),
                    edited: !retracted && f.op("body").is_some_and(|op| !posted_body(&obj, op)),
                    retracted,
                    author,
                    device,
                    at_ms: f.int("at_ms")?,
                    body,
                    priority: match f.str("priority") {
                        Some("urgent") => Priority::Urgent,
                        _ => Priority::Normal,
                    },
                    task,
                    reply_to: f
                        .str("reply_to")
                        .filter(|r| message_key_member(r).is_some())
                        .map(str::to_string),
                    id,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
        Ok(out)
    }

    /// How many messages by others `member` has not read.
    pub fn unread(&self, member: &MemberId) -> usize {
        self.unread_ids(member).map(|v| v.len()).unwrap_or(0)
    }

    fn unread_ids(&self, member: &MemberId) -> Result<Vec<String>, ThreadError> {
        let messages = self.map("messages")?;
        let read: HashSet<String> = self
            .read_receipts()?
            .into_iter()
            .filter(|(who, _)| who == member)
            .map(|(_, msg)| msg)
            .collect();
        Ok(self
            .doc
            .map_range(&messages, ..)
            .filter(|item| !read.contains(item.key.as_ref()))
            .filter(|item| message_key_member(&item.key).is_some_and(|m| m != *member))
            .map(|item| item.key.to_string())
            .collect())
    }

    fn read_receipts(&self) -> Result<Vec<(MemberId, String)>, ThreadError> {
        let reads = self.map("reads")?;
        Ok(self
            .doc
            .map_range(&reads, ..)
            .filter_map(|item| {
                let (who, msg) = item.key.split_once(':')?;
                Some((who.parse().ok()?, msg.to_string()))
            })
            .collect())
    }

    /// Commits the pending operations as one change stamped `at_ms` (see
    /// [`stated_time_ms`]).
    fn commit(&mut self, at_ms: u64) -> Result<Vec<u8>, ThreadError> {
        let hash = self
            .doc
            .commit_with(CommitOptions::default().with_time(int(at_ms)))
            .ok_or_else(|| am("empty change"))?;
        let change = self
            .doc
            .get_change_by_hash(&hash)
            .ok_or_else(|| am("committed change missing"))?;
        self.judge
            .admitted(change.actor_id().clone(), change.seq(), change.max_op());
        Ok(change.raw_bytes().to_vec())
    }

    fn map(&self, key: &str) -> Result<ObjId, ThreadError> {
        match self.doc.get(ROOT, key).map_err(am)? {
            Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(ThreadError::NotMaterialized),
        }
    }

    fn message(&self, id: &str) -> Result<ObjId, ThreadError> {
        let messages = self.map("messages")?;
        match self.doc.get(&messages, id).map_err(am)? {
            Some((automerge::Value::Object(ObjType::Map), obj)) => Ok(obj),
            _ => Err(ThreadError::UnknownMessage(id.to_string())),
        }
    }

    /// Message ids in this thread.
    pub fn message_ids(&self) -> Vec<String> {
        match self.map("messages") {
            Ok(m) => self
                .doc
                .map_range(&m, ..)
                .map(|i| i.key.to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn str_at(&self, obj: &ObjId, key: &str) -> Option<String> {
        match self.doc.get(obj, key).ok()?? {
            (automerge::Value::Scalar(s), _) => match s.as_ref() {
                ScalarValue::Str(v) => Some(v.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    fn int_at(&self, obj: &ObjId, key: &str) -> Option<u64> {
        match self.doc.get(obj, key).ok()?? {
            (automerge::Value::Scalar(s), _) => match s.as_ref() {
                ScalarValue::Int(v) => u64::try_from(*v).ok(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Milliseconds as the signed integer Automerge stores (saturating; no real time is near
/// the limit).
fn int(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Parses a change from another device, once its bytes show it costs a bounded amount
/// to read (see [`bounds`]).
fn parse_change(bytes: &[u8]) -> Result<Change, ThreadError> {
    check_change_bytes(bytes)?;
    Change::from_bytes(bytes.to_vec()).map_err(|e| ThreadError::Malformed(e.to_string()))
}

/// Refuses a text longer than `max` bytes before anything is written.
fn within(what: &'static str, text: &str, max: usize) -> Result<(), ThreadError> {
    if text.len() > max {
        return Err(ThreadError::TooLong {
            what,
            len: text.len(),
            max,
        });
    }
    Ok(())
}

/// The device whose operation created an object: the object id's actor.
/// Whether `body_op` is the text written when message `obj` was posted: [`ThreadDoc::post`]
/// makes the message map and then writes `author`, `device`, `at_ms` and `body`, so the
/// posted text is the fourth operation after the map's own, by the same device. Any
/// later text (an edit) was written by a later operation. A modified client that posts
/// in another order only gets its own message marked edited.
fn posted_body(obj: &ObjId, body_op: &ObjId) -> bool {
    match (obj, body_op) {
        (ObjId::Id(made, actor, _), ObjId::Id(wrote, by, _)) => {
            by == actor && *wrote == made + BODY_AFTER_MAP
        }
        _ => false,
    }
}

/// How many operations after the message map [`ThreadDoc::post`] writes `body`.
const BODY_AFTER_MAP: u64 = 4;

fn creating_device(obj: &ObjId) -> Option<DeviceId> {
    match obj {
        ObjId::Id(_, actor, _) => Some(DeviceId(actor.to_bytes().try_into().ok()?)),
        ObjId::Root => None,
    }
}

/// The scalar fields of one map object, read in a single pass over it.
struct Fields<'a>(Vec<(std::borrow::Cow<'a, str>, ScalarValueRef<'a>, ObjId)>);

impl<'a> Fields<'a> {
    fn read(doc: &'a AutoCommit, obj: &ObjId) -> Self {
        Fields(
            doc.map_range(obj, ..)
                .filter_map(|item| {
                    let id = item.id();
                    match item.value {
                        ValueRef::Scalar(v) => Some((item.key, v, id)),
                        ValueRef::Object(_) => None,
                    }
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&ScalarValueRef<'a>> {
        self.0.iter().find(|(k, ..)| k == key).map(|(_, v, _)| v)
    }

    /// The operation that wrote `key`'s value.
    fn op(&self, key: &str) -> Option<&ObjId> {
        self.0.iter().find(|(k, ..)| k == key).map(|(.., id)| id)
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            ScalarValueRef::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            ScalarValueRef::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
}
