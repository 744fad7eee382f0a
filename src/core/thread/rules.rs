//! Who may write what in a thread document. Every received change is judged here before
//! it is applied; a change that breaks any rule is refused whole.
//!
//! - **Header.** Only the thread's creator writes the document root and the `meta` map,
//!   once, in the thread's first change (no dependencies, the device's first change):
//!   the root gets exactly the `meta`, `messages` and `reads` maps, and `meta` gets its
//!   fields. The creator is fixed by the thread id ([`derive_thread_id`] of category,
//!   creator device and nonce, all stored in `meta`); `meta`'s category must be the log's
//!   category, `created_by` the creator's member and `created_ms` the change's time.
//! - **Message keys.** A message map at key `{random hex}.{member hex}` in `messages` is
//!   created, or deleted (retracted), only by a device of that member.
//! - **Message stamps.** `author`, `device` and `at_ms` are written only in the change
//!   that creates the message, and equal the change's member, device and time;
//!   `reply_to`, when there, is written then too, and is a well-formed message key.
//! - **Message owner.** Afterwards `body`, `priority`, `task_assignee` and `task_due` are
//!   written (put, or deleted) only by a device of the member who created the message
//!   (the member of the creating device, which is also the key's member).
//! - **Task status.** `task_status` ("open"/"done"), `task_done_by` and `task_done_ms`
//!   are changed by any reader of the thread (everyone whose change reaches `apply`),
//!   only on a message that has a task, and every such change leaves `task_done_by` =
//!   exactly the changer's member and `task_done_ms` = exactly the change's time, and
//!   `task_status` open or done. What a change leaves is judged, not what it writes:
//!   Automerge drops a put of the value already there and turns a put of a conflict's
//!   winning value into a delete of the others, so an honest change may carry either.
//! - **Read markers.** `reads` keys are `{member hex}:{message id}`; only that member puts
//!   (with the change's time as the value) or deletes them.
//! - **Schema.** Nothing else: no other keys or objects, no lists, text, counters or
//!   marks, no key written twice in one change, no empty change, no deleted stamps.
//! - **History.** A change is judged against the document *as of its dependencies*, never
//!   against changes concurrent with it, so every device reaches the same verdict whatever
//!   order changes arrive in: it may only touch objects visible there, its operations may
//!   only overwrite (`pred`) values that are at the same key there — Automerge applies a
//!   `pred` by operation id, so an unchecked one would delete a value at another key —,
//!   its operation counters must follow those of its dependencies and of the device's
//!   previous change, and its sequence number must be the device's next.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{
    ActorId, AutoCommit, Change, ExpandedChange, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue,
};

use super::{
    ChangeAuthor, Scope, ThreadError, am, canonical_member, creating_device, derive_thread_id, int,
    is_lower_hex, message_key_member,
};
use crate::core::ids::{DeviceId, MemberId};

/// The rule a refused change broke.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Rule {
    /// Only the creator writes the root and header, once, in the creating change.
    Header,
    /// Messages are created and retracted only under the author's own member's keys.
    MessageKey,
    /// `author`, `device`, `at_ms` are written at creation only, and equal the change's.
    MessageStamp,
    /// Only the owning member edits a message's fields.
    MessageOwner,
    /// Task status: any reader, on a task, recording who and when.
    TaskStatus,
    /// Read markers: only the member named in the key.
    ReadMarker,
    /// Only the thread schema's objects, keys, values and operations.
    Schema,
    /// Judged against the change's own history: objects and overwritten values must be
    /// there, counters and sequence numbers must follow it.
    History,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Header => "header",
            Rule::MessageKey => "message key",
            Rule::MessageStamp => "message stamp",
            Rule::MessageOwner => "message owner",
            Rule::TaskStatus => "task status",
            Rule::ReadMarker => "read marker",
            Rule::Schema => "schema",
            Rule::History => "history",
        })
    }
}

fn refuse<T>(rule: Rule, detail: impl Into<String>) -> Result<T, ThreadError> {
    Err(ThreadError::NotAllowed {
        rule,
        detail: detail.into(),
    })
}

const META_FIELDS: [&str; 8] = [
    "subject_kind",
    "subject",
    "title",
    "category",
    "created_by",
    "created_ms",
    "creator",
    "nonce",
];
const STAMP_FIELDS: [&str; 4] = ["author", "device", "at_ms", "reply_to"];
const OWNER_FIELDS: [&str; 4] = ["body", "priority", "task_assignee", "task_due"];
const STATUS_FIELDS: [&str; 3] = ["task_status", "task_done_by", "task_done_ms"];

/// What an object of the document is; fixed by the operation that created it.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Kind {
    Meta,
    Messages,
    Reads,
    /// A message map: the member of its key and the device that created it.
    Message {
        member: MemberId,
        device: DeviceId,
    },
    /// Outside the schema (never admitted; only in documents made elsewhere).
    Other,
}

/// An object already in the document: its id, where it was created, and its kind.
#[derive(Clone, Debug)]
struct Known {
    id: ObjId,
    parent: ObjId,
    prop: String,
    kind: Kind,
}

/// Judges changes; keeps what it has learned about a document between changes.
#[derive(Default)]
pub(super) struct Judge {
    /// Objects by creating operation (counter, actor). Kinds never change, so entries
    /// never go stale; filled on first use, so a loaded document starts empty.
    objects: HashMap<(u64, ActorId), Known>,
    /// Per actor, the highest sequence number and operation counter in the document;
    /// built from the document on first use, then kept up to date by [`Judge::admitted`].
    actors: Option<HashMap<ActorId, (u64, u64)>>,
}

impl Judge {
    /// Judges `change`, whose dependencies are all in `doc`, by `author` in `scope`.
    pub(super) fn check(
        &mut self,
        doc: &mut AutoCommit,
        change: &Change,
        scope: Scope,
        author: &ChangeAuthor,
        member_of: &dyn Fn(&DeviceId) -> Option<MemberId>,
    ) -> Result<(), ThreadError> {
        if change.actor_id().to_bytes() != author.device.0 {
            return Err(ThreadError::WrongActor);
        }
        if member_of(&author.device) != Some(author.member) {
            return Err(ThreadError::UnknownAuthor(author.device));
        }
        if change.is_empty() {
            return refuse(Rule::Schema, "an empty change");
        }
        self.check_counters(doc, change)?;
        let expanded = decode(change)?;
        let start = change.start_op().get();
        let mut walk = Walk {
            objects: &mut self.objects,
            doc: &*doc,
            change,
            scope,
            author,
            member_of,
            made: HashMap::new(),
            writes: HashMap::new(),
            visible: HashSet::new(),
            creates_thread: false,
        };
        for (i, op) in expanded.operations.iter().enumerate() {
            walk.op(start + i as u64, op)?;
        }
        walk.finish()?;
        canonical(change, expanded)
    }

    /// Records a change now in the document.
    pub(super) fn admitted(&mut self, actor: ActorId, seq: u64, max_op: u64) {
        if let Some(actors) = &mut self.actors {
            let e = actors.entry(actor).or_insert((0, 0));
            *e = (e.0.max(seq), e.1.max(max_op));
        }
    }

    fn check_counters(&mut self, doc: &mut AutoCommit, change: &Change) -> Result<(), ThreadError> {
        let start = change.start_op().get();
        for dep in change.deps() {
            let Some(meta) = doc.get_change_meta_by_hash(dep) else {
                return refuse(Rule::History, "depends on a change not in the document");
            };
            if start <= meta.max_op {
                return refuse(
                    Rule::History,
                    "its operation counters do not follow its dependencies'",
                );
            }
        }
        let actors = self.actors.get_or_insert_with(|| {
            let mut actors: HashMap<ActorId, (u64, u64)> = HashMap::new();
            for c in doc.get_changes_meta(&[]) {
                let e = actors.entry(c.actor.into_owned()).or_insert((0, 0));
                *e = (e.0.max(c.seq), e.1.max(c.max_op));
            }
            actors
        });
        let (seq, max_op) = actors.get(change.actor_id()).copied().unwrap_or((0, 0));
        if change.seq() != seq + 1 || start <= max_op {
            return refuse(
                Rule::History,
                format!(
                    "change {} of its device does not follow change {seq} (operations to {max_op})",
                    change.seq()
                ),
            );
        }
        Ok(())
    }

    /// What the object created by operation (`counter`, `actor`) is, if it is an object
    /// of the document.
    fn known(
        objects: &mut HashMap<(u64, ActorId), Known>,
        doc: &AutoCommit,
        counter: u64,
        actor: &ActorId,
    ) -> Option<Known> {
        if let Some(known) = objects.get(&(counter, actor.clone())) {
            return Some(known.clone());
        }
        // `import` only finds objects (not scalar values) of actors in the document.
        let (id, typ) = doc.import(&format!("{counter}@{actor}")).ok()?;
        let parent = doc.parents(&id).ok()?.next()?;
        let prop = match parent.prop {
            Prop::Map(p) => p,
            Prop::Seq(_) => String::new(),
        };
        let kind = match (&parent.obj, typ) {
            (_, t) if t != ObjType::Map => Kind::Other,
            (ObjId::Root, _) => match prop.as_str() {
                "meta" => Kind::Meta,
                "messages" => Kind::Messages,
                "reads" => Kind::Reads,
                _ => Kind::Other,
            },
            (ObjId::Id(pc, pa, _), _) => {
                let parent_kind = Self::known(objects, doc, *pc, pa).map(|k| k.kind);
                match (parent_kind, message_key_member(&prop), creating_device(&id)) {
                    (Some(Kind::Messages), Some(member), Some(device)) => {
                        Kind::Message { member, device }
                    }
                    _ => Kind::Other,
                }
            }
        };
        let known = Known {
            id,
            parent: parent.obj,
            prop,
            kind,
        };
        objects.insert((counter, actor.clone()), known.clone());
        Some(known)
    }
}

/// The operations of a change. `Change::decode` unwraps actor indexes that parsing does
/// not check, so a crafted change could panic there: that is caught and refused (the
/// panic hook still prints it) rather than taking the device down.
fn decode(change: &Change) -> Result<ExpandedChange, ThreadError> {
    catch_unwind(AssertUnwindSafe(|| change.decode())).map_err(|_| {
        ThreadError::Malformed("operations name actors the change does not list".into())
    })
}

/// A change must encode back to itself: Automerge accepts some encodings that it would
/// never write (found by fuzzing, `tests/fuzz_cases/thread_change/`), and once applied
/// such a change makes every saved document fail to load ("mismatching heads"), so one
/// hostile member could spoil a thread's snapshots on every device. Checked last, so
/// only a change that passed every other rule pays for the re-encoding.
fn canonical(change: &Change, expanded: ExpandedChange) -> Result<(), ThreadError> {
    match catch_unwind(AssertUnwindSafe(|| Change::from(expanded).hash())) {
        Ok(hash) if hash == change.hash() => Ok(()),
        _ => refuse(
            Rule::Schema,
            "the change is not in Automerge's own encoding",
        ),
    }
}

/// Which object an operation writes to.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Target {
    Root,
    /// Created earlier in the same change, by the operation with this counter.
    Made(u64),
    Existing(ObjId),
}

/// The judgement of one change, operation by operation, then as a whole.
struct Walk<'a> {
    objects: &'a mut HashMap<(u64, ActorId), Known>,
    doc: &'a AutoCommit,
    change: &'a Change,
    scope: Scope,
    author: &'a ChangeAuthor,
    member_of: &'a dyn Fn(&DeviceId) -> Option<MemberId>,
    /// Objects this change creates, by operation counter.
    made: HashMap<u64, Kind>,
    /// Per object, the keys this change writes.
    writes: HashMap<Target, HashMap<String, Write>>,
    /// Existing objects found visible as of the change's dependencies.
    visible: HashSet<ObjId>,
    creates_thread: bool,
}

/// One write of a change to a key.
struct Write {
    /// The scalar put (`None`: an object made, or a delete).
    put: Option<ScalarValue>,
    /// The values it overwrites, by operation (counter, actor).
    pred: Vec<(u64, ActorId)>,
}

/// The scalar a change puts at `key`, if any.
fn put<'f>(fields: &'f HashMap<String, Write>, key: &str) -> Option<&'f ScalarValue> {
    fields.get(key)?.put.as_ref()
}

enum Act<'o> {
    Make,
    Put(&'o ScalarValue),
    Delete,
}

impl Walk<'_> {
    fn op(&mut self, counter: u64, op: &Op) -> Result<(), ThreadError> {
        let key = match &op.key {
            Key::Map(k) if !op.insert => k.to_string(),
            _ => return refuse(Rule::Schema, "list or text operations"),
        };
        let act = match &op.action {
            OpType::Make(ObjType::Map) => Act::Make,
            OpType::Put(v) => Act::Put(v),
            OpType::Delete => Act::Delete,
            OpType::Make(t) => return refuse(Rule::Schema, format!("a {t:?} object at `{key}`")),
            OpType::Increment(_) => {
                return refuse(Rule::Schema, format!("an increment of `{key}`"));
            }
            OpType::MarkBegin(_) | OpType::MarkEnd(_) => {
                return refuse(Rule::Schema, "a text mark");
            }
        };
        let target = self.target(&op.obj)?;
        // `None` for the root; objects were resolved by `target`.
        let kind = match &target {
            Target::Root => None,
            Target::Made(c) => self.made.get(c).cloned(),
            Target::Existing(ObjId::Id(c, a, _)) => {
                Judge::known(self.objects, self.doc, *c, a).map(|k| k.kind)
            }
            Target::Existing(ObjId::Root) => None,
        };
        let fields = self.writes.entry(target.clone()).or_default();
        if fields.contains_key(&key) {
            return refuse(Rule::Schema, format!("writes `{key}` twice in one change"));
        }
        fields.insert(
            key.clone(),
            Write {
                put: match act {
                    Act::Put(v) => Some(v.clone()),
                    Act::Make | Act::Delete => None,
                },
                pred: op
                    .pred
                    .iter()
                    .map(|p| (p.counter(), p.actor().clone()))
                    .collect(),
            },
        );
        self.check_preds(&target, &key, &op.pred)?;
        let made = matches!(target, Target::Made(_));
        match (kind, act) {
            (None, act) => self.root(counter, &key, act),
            (Some(Kind::Meta), Act::Put(_)) if made && META_FIELDS.contains(&key.as_str()) => {
                Ok(())
            }
            (Some(Kind::Meta), _) if made => {
                refuse(Rule::Schema, format!("`{key}` is not a header field"))
            }
            (Some(Kind::Meta), _) => refuse(
                Rule::Header,
                format!("the header is written once, when the thread is created (`{key}`)"),
            ),
            (Some(Kind::Messages), act) => self.messages(counter, &key, act),
            (Some(Kind::Reads), act) => self.reads(&key, act),
            (Some(Kind::Message { .. }), Act::Put(_)) if made => {
                if STAMP_FIELDS.contains(&key.as_str())
                    || OWNER_FIELDS.contains(&key.as_str())
                    || key == "task_status"
                {
                    Ok(())
                } else {
                    refuse(
                        Rule::Schema,
                        format!("`{key}` is not a field of a new message"),
                    )
                }
            }
            (Some(Kind::Message { .. }), _) if made => refuse(
                Rule::Schema,
                format!("`{key}` of a message is a plain value"),
            ),
            (Some(Kind::Message { member, device }), act) => {
                self.edit(&target, member, device, &key, act)
            }
            (Some(Kind::Other), _) => refuse(Rule::Schema, "an object outside the schema"),
        }
    }

    /// The object an operation writes to, which must be visible as of the change's
    /// dependencies (or made earlier in the change).
    fn target(&mut self, obj: &ObjectId) -> Result<Target, ThreadError> {
        let id = match obj {
            ObjectId::Root => return Ok(Target::Root),
            ObjectId::Id(id) => id,
        };
        if id.actor() == self.change.actor_id() && self.made.contains_key(&id.counter()) {
            return Ok(Target::Made(id.counter()));
        }
        let Some(known) = Judge::known(self.objects, self.doc, id.counter(), id.actor()) else {
            return refuse(Rule::History, "writes to an object not in the document");
        };
        if !self.visible.contains(&known.id) {
            let there = self
                .doc
                .get_all_at(&known.parent, known.prop.as_str(), self.change.deps())
                .map_err(am)?;
            if !there.iter().any(|(_, i)| *i == known.id) {
                return refuse(
                    Rule::History,
                    "writes to an object that is not in the change's history",
                );
            }
            self.visible.insert(known.id.clone());
        }
        Ok(Target::Existing(known.id))
    }

    /// Every value an operation overwrites must be at the same key as of its history.
    fn check_preds(
        &self,
        target: &Target,
        key: &str,
        pred: &SortedVec<OpId>,
    ) -> Result<(), ThreadError> {
        if pred.is_empty() {
            return Ok(());
        }
        let obj = match target {
            Target::Root => ROOT,
            Target::Existing(id) => id.clone(),
            Target::Made(_) => {
                return refuse(Rule::History, "overwrites a value in a new object");
            }
        };
        let there = self
            .doc
            .get_all_at(&obj, key, self.change.deps())
            .map_err(am)?;
        for p in pred.iter() {
            let found = there.iter().any(
                |(_, id)| matches!(id, ObjId::Id(c, a, _) if *c == p.counter() && a == p.actor()),
            );
            if !found {
                return refuse(
                    Rule::History,
                    format!("overwrites a value that is not at `{key}` in the change's history"),
                );
            }
        }
        Ok(())
    }

    fn root(&mut self, counter: u64, key: &str, act: Act<'_>) -> Result<(), ThreadError> {
        if !self.change.deps().is_empty() || self.change.seq() != 1 {
            return refuse(
                Rule::Header,
                format!("only the thread's first change writes the root (`{key}`)"),
            );
        }
        if matches!(self.doc.get(ROOT, "meta"), Ok(Some(_))) {
            return refuse(Rule::Header, "the thread already has a header");
        }
        let kind = match (key, act) {
            ("meta", Act::Make) => Kind::Meta,
            ("messages", Act::Make) => Kind::Messages,
            ("reads", Act::Make) => Kind::Reads,
            _ => return refuse(Rule::Header, format!("the root holds no `{key}` value")),
        };
        self.made.insert(counter, kind);
        self.creates_thread = true;
        Ok(())
    }

    fn messages(&mut self, counter: u64, key: &str, act: Act<'_>) -> Result<(), ThreadError> {
        let Some(member) = message_key_member(key) else {
            return refuse(Rule::MessageKey, format!("`{key}` is not a message key"));
        };
        if member != self.author.member {
            return refuse(
                Rule::MessageKey,
                format!("message `{key}` belongs to member {}", member.short()),
            );
        }
        match act {
            Act::Make => {
                self.made.insert(
                    counter,
                    Kind::Message {
                        member,
                        device: self.author.device,
                    },
                );
                Ok(())
            }
            Act::Delete => Ok(()),
            Act::Put(_) => refuse(Rule::Schema, "`messages` holds only message maps"),
        }
    }

    fn reads(&mut self, key: &str, act: Act<'_>) -> Result<(), ThreadError> {
        let who = key
            .split_once(':')
            .filter(|(_, msg)| message_key_member(msg).is_some())
            .and_then(|(who, _)| canonical_member(who));
        let Some(who) = who else {
            return refuse(
                Rule::ReadMarker,
                format!("`{key}` is not a read marker key"),
            );
        };
        if who != self.author.member {
            return refuse(
                Rule::ReadMarker,
                format!("read marker `{key}` belongs to member {}", who.short()),
            );
        }
        match act {
            Act::Put(v) if is_ms(Some(v), self.author.at_ms) => Ok(()),
            Act::Put(_) => refuse(Rule::ReadMarker, "a read marker records the change's time"),
            Act::Delete => Ok(()),
            Act::Make => refuse(Rule::Schema, "`reads` holds only times"),
        }
    }

    /// A write to a message created by an earlier change.
    fn edit(
        &mut self,
        target: &Target,
        member: MemberId,
        device: DeviceId,
        key: &str,
        act: Act<'_>,
    ) -> Result<(), ThreadError> {
        if (self.member_of)(&device) != Some(member) {
            return refuse(
                Rule::MessageOwner,
                "the message was not created by a device of its key's member",
            );
        }
        if matches!(act, Act::Make) {
            return refuse(
                Rule::Schema,
                format!("`{key}` of a message is a plain value"),
            );
        }
        let message = self.describe(target);
        if STAMP_FIELDS.contains(&key) {
            return refuse(
                Rule::MessageStamp,
                format!("`{key}` of {message} is written only when it is created"),
            );
        }
        let owner_field = OWNER_FIELDS.contains(&key);
        if !owner_field && !STATUS_FIELDS.contains(&key) {
            return refuse(Rule::Schema, format!("`{key}` is not a message field"));
        }
        if owner_field && member != self.author.member {
            return refuse(
                Rule::MessageOwner,
                format!("only member {} edits {message}", member.short()),
            );
        }
        if key.starts_with("task_") && !self.has_task(target)? {
            return refuse(Rule::TaskStatus, format!("{message} has no task"));
        }
        Ok(())
    }

    /// Whether a message had a task as of the change's dependencies.
    fn has_task(&self, target: &Target) -> Result<bool, ThreadError> {
        let Target::Existing(obj) = target else {
            return Ok(false);
        };
        let status = self
            .doc
            .get_at(obj, "task_status", self.change.deps())
            .map_err(am)?;
        Ok(matches!(
            status,
            Some((automerge::Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Str(_))
        ))
    }

    fn describe(&self, target: &Target) -> String {
        match target {
            Target::Existing(ObjId::Id(c, a, _)) => self
                .objects
                .get(&(*c, a.clone()))
                .map(|k| format!("message `{}`", k.prop))
                .unwrap_or_else(|| "the message".into()),
            _ => "the message".into(),
        }
    }

    /// The checks that need the whole change: a complete, correct header in a creating
    /// change, complete and correctly stamped new messages, and task status changes that
    /// record who and when.
    fn finish(self) -> Result<(), ThreadError> {
        let a = self.author;
        let member = a.member.to_hex();
        let device = a.device.to_hex();
        if self.creates_thread {
            let maps: Vec<&Kind> = self.made.values().collect();
            for kind in [Kind::Meta, Kind::Messages, Kind::Reads] {
                if !maps.contains(&&kind) {
                    return refuse(
                        Rule::Header,
                        format!("the creating change makes no {kind:?} map"),
                    );
                }
            }
        }
        let empty = HashMap::new();
        for (c, kind) in &self.made {
            let fields = self.writes.get(&Target::Made(*c)).unwrap_or(&empty);
            match kind {
                Kind::Meta => self.check_header(fields, &member, &device)?,
                Kind::Message { .. } => check_new_message(fields, &member, &device, a.at_ms)?,
                _ => {}
            }
        }
        for (target, fields) in &self.writes {
            let Target::Existing(obj) = target else {
                continue;
            };
            check_owner_values(fields)?;
            if STATUS_FIELDS.iter().any(|k| fields.contains_key(*k)) {
                self.check_status(obj, fields, &member)?;
            }
        }
        Ok(())
    }

    fn check_header(
        &self,
        fields: &HashMap<String, Write>,
        member: &str,
        device: &str,
    ) -> Result<(), ThreadError> {
        let s = |k: &str| str_of(put(fields, k));
        let bad = |why: String| refuse(Rule::Header, why);
        if s("creator") != Some(device) {
            return bad("the header names another device as creator".into());
        }
        let Some(nonce) = s("nonce")
            .filter(|n| n.len() == 32 && is_lower_hex(n))
            .and_then(|n| <[u8; 16]>::try_from(hex::decode(n).ok()?).ok())
        else {
            return bad("the header's nonce is not 16 bytes of hex".into());
        };
        if s("category") != Some(self.scope.category.as_str()) {
            return bad(format!(
                "the header's category is not the log's ({})",
                self.scope.category
            ));
        }
        if derive_thread_id(self.scope.category, &self.author.device, &nonce) != self.scope.thread {
            return bad("the thread id does not derive from category, creator and nonce".into());
        }
        if s("created_by") != Some(member) {
            return bad("`created_by` is not the creator's member".into());
        }
        if !is_ms(put(fields, "created_ms"), self.author.at_ms) {
            return bad("`created_ms` is not the change's time".into());
        }
        if !matches!(s("subject_kind"), Some("patient" | "topic"))
            || s("subject").is_none()
            || s("title").is_none()
        {
            return bad("the header lacks its subject or title".into());
        }
        Ok(())
    }

    /// A change to a task's status leaves it open or done, done by exactly the changer,
    /// at exactly the change's time.
    fn check_status(
        &self,
        obj: &ObjId,
        fields: &HashMap<String, Write>,
        member: &str,
    ) -> Result<(), ThreadError> {
        let status = self.after(obj, "task_status", fields.get("task_status"))?;
        if status.is_empty()
            || !status
                .iter()
                .all(|v| matches!(str_of(Some(v)), Some("open" | "done")))
        {
            return refuse(Rule::TaskStatus, "a task's status is open or done");
        }
        let by = self.after(obj, "task_done_by", fields.get("task_done_by"))?;
        if by.len() != 1 || str_of(by.first()) != Some(member) {
            return refuse(
                Rule::TaskStatus,
                "`task_done_by` must be the member changing the status",
            );
        }
        let at = self.after(obj, "task_done_ms", fields.get("task_done_ms"))?;
        if at.len() != 1 || !is_ms(at.first(), self.author.at_ms) {
            return refuse(Rule::TaskStatus, "`task_done_ms` must be the change's time");
        }
        Ok(())
    }

    /// The values at `key` of an existing object once this change is applied on top of
    /// its dependencies: those there, less the ones it overwrites, plus the one it puts.
    fn after(
        &self,
        obj: &ObjId,
        key: &str,
        write: Option<&Write>,
    ) -> Result<Vec<ScalarValue>, ThreadError> {
        let there = self
            .doc
            .get_all_at(obj, key, self.change.deps())
            .map_err(am)?;
        let mut out: Vec<ScalarValue> = there
            .into_iter()
            .filter(|(_, id)| {
                !write.is_some_and(|w| {
                    w.pred
                        .iter()
                        .any(|(c, a)| matches!(id, ObjId::Id(ic, ia, _) if ic == c && ia == a))
                })
            })
            .filter_map(|(v, _)| match v {
                automerge::Value::Scalar(s) => Some(s.into_owned()),
                automerge::Value::Object(_) => None,
            })
            .collect();
        out.extend(write.and_then(|w| w.put.clone()));
        Ok(out)
    }
}

/// A message's fields in the change that creates it.
fn check_new_message(
    fields: &HashMap<String, Write>,
    member: &str,
    device: &str,
    at_ms: u64,
) -> Result<(), ThreadError> {
    let s = |k: &str| str_of(put(fields, k));
    if s("author") != Some(member)
        || s("device") != Some(device)
        || !is_ms(put(fields, "at_ms"), at_ms)
    {
        return refuse(
            Rule::MessageStamp,
            "a new message's author, device and time must be the change's",
        );
    }
    let task_fields = ["task_assignee", "task_due", "task_status"];
    let task = task_fields
        .iter()
        .filter(|k| fields.contains_key(**k))
        .count();
    if task != 0 && (task != task_fields.len() || s("task_status") != Some("open")) {
        return refuse(
            Rule::Schema,
            "a new task has an assignee, a due date and status open",
        );
    }
    if s("body").is_none() {
        return refuse(Rule::Schema, "a new message has a body");
    }
    if let Some(reply) = fields.get("reply_to") {
        let original = str_of(reply.put.as_ref());
        if original.and_then(message_key_member).is_none() {
            return refuse(Rule::Schema, "`reply_to` names another message by its key");
        }
    }
    check_owner_values(fields)
}

/// Values put in the fields the owner writes.
fn check_owner_values(fields: &HashMap<String, Write>) -> Result<(), ThreadError> {
    for (k, w) in fields {
        let Some(v) = &w.put else {
            continue;
        };
        let s = str_of(Some(v));
        let ok = match k.as_str() {
            "body" | "task_due" => s.is_some(),
            "priority" => matches!(s, Some("normal" | "urgent")),
            "task_assignee" => s.and_then(canonical_member).is_some(),
            _ => true,
        };
        if !ok {
            return refuse(Rule::Schema, format!("`{k}` has a value of the wrong form"));
        }
    }
    Ok(())
}

fn str_of(v: Option<&ScalarValue>) -> Option<&str> {
    match v? {
        ScalarValue::Str(s) => Some(s.as_str()),
        _ => None,
    }
}

fn is_ms(v: Option<&ScalarValue>, ms: u64) -> bool {
    match v {
        Some(ScalarValue::Int(i)) => *i == int(ms),
        Some(ScalarValue::Uint(u)) => *u == ms,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
