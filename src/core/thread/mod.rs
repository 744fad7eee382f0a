//! A thread as an Automerge document: its header, messages (with optional task and
//! priority) and per-member read receipts. Keys are flat (`reads` is keyed by
//! `member:message`, task fields live in the message) so that concurrent edits from
//! different devices never create competing objects.

use automerge::transaction::Transactable;
use automerge::{
    ActorId, AutoCommit, Change, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, ScalarValueRef,
    ValueRef,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

use super::ids::{DeviceId, MemberId};
use super::policy::Category;

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
    pub id: String,
    pub author: MemberId,
    pub device: DeviceId,
    pub at_ms: u64,
    pub body: String,
    pub priority: Priority,
    pub task: Option<NewTask>,
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
    #[error("change is not authored by the envelope's device")]
    WrongActor,
    #[error("document error: {0}")]
    Automerge(String),
}

fn am(e: impl std::fmt::Display) -> ThreadError {
    ThreadError::Automerge(e.to_string())
}

/// One thread document; its Automerge actor is the local device.
pub struct ThreadDoc {
    doc: AutoCommit,
}

impl ThreadDoc {
    pub fn new(actor: &DeviceId) -> Self {
        ThreadDoc {
            doc: AutoCommit::new().with_actor(ActorId::from(&actor.0[..])),
        }
    }

    pub fn load(bytes: &[u8], actor: &DeviceId) -> Result<Self, ThreadError> {
        let doc = AutoCommit::load(bytes).map_err(am)?;
        Ok(ThreadDoc {
            doc: doc.with_actor(ActorId::from(&actor.0[..])),
        })
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Whether some applied change still waits for a change it depends on.
    pub fn has_missing_deps(&mut self) -> bool {
        !self.doc.get_missing_deps(&[]).is_empty()
    }

    /// Writes the header and the empty message and receipt maps: the thread's first change.
    pub fn create(&mut self, meta: &ThreadMeta) -> Result<Vec<u8>, ThreadError> {
        if self.meta().is_some() {
            return Err(ThreadError::AlreadyCreated);
        }
        let d = &mut self.doc;
        let m = d.put_object(ROOT, "meta", ObjType::Map).map_err(am)?;
        let (kind, label) = match &meta.subject {
            Subject::Patient(l) => ("patient", l),
            Subject::Topic(l) => ("topic", l),
        };
        d.put(&m, "subject_kind", kind).map_err(am)?;
        d.put(&m, "subject", label.as_str()).map_err(am)?;
        d.put(&m, "title", meta.title.as_str()).map_err(am)?;
        d.put(&m, "category", meta.category.as_str()).map_err(am)?;
        d.put(&m, "created_by", meta.created_by.to_hex())
            .map_err(am)?;
        d.put(&m, "created_ms", meta.created_ms as i64)
            .map_err(am)?;
        d.put_object(ROOT, "messages", ObjType::Map).map_err(am)?;
        d.put_object(ROOT, "reads", ObjType::Map).map_err(am)?;
        self.commit()
    }

    pub fn post(&mut self, msg: &NewMessage) -> Result<Vec<u8>, ThreadError> {
        let messages = self.map("messages")?;
        let d = &mut self.doc;
        let m = d
            .put_object(&messages, msg.id.as_str(), ObjType::Map)
            .map_err(am)?;
        d.put(&m, "author", msg.author.to_hex()).map_err(am)?;
        d.put(&m, "device", msg.device.to_hex()).map_err(am)?;
        d.put(&m, "at_ms", msg.at_ms as i64).map_err(am)?;
        d.put(&m, "body", msg.body.as_str()).map_err(am)?;
        let urgent = msg.priority == Priority::Urgent;
        d.put(&m, "priority", if urgent { "urgent" } else { "normal" })
            .map_err(am)?;
        if let Some(task) = &msg.task {
            d.put(&m, "task_assignee", task.assignee.to_hex())
                .map_err(am)?;
            d.put(&m, "task_due", task.due.as_str()).map_err(am)?;
            d.put(&m, "task_status", "open").map_err(am)?;
        }
        self.commit()
    }

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
        d.put(&m, "task_done_ms", at_ms as i64).map_err(am)?;
        self.commit()
    }

    /// Records that `member` has read every message; `None` if nothing was unread.
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
        for id in unread {
            let key = format!("{}:{}", member.to_hex(), id);
            self.doc.put(&reads, key, at_ms as i64).map_err(am)?;
        }
        self.commit().map(Some)
    }

    /// Applies a change received in an envelope by `author`.
    pub fn apply(&mut self, author: &DeviceId, change: &[u8]) -> Result<(), ThreadError> {
        let change = Change::from_bytes(change.to_vec()).map_err(am)?;
        if change.actor_id().to_bytes() != author.0 {
            return Err(ThreadError::WrongActor);
        }
        self.doc.apply_changes([change]).map_err(am)
    }

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
            category: self.str_at(&m, "category")?.parse().ok()?,
            created_by: self.str_at(&m, "created_by")?.parse().ok()?,
            created_ms: self.int_at(&m, "created_ms")?,
        })
    }

    /// Messages in time order (ties by id), with receipts; malformed entries are skipped.
    /// One pass over the messages and one over the receipts: this runs after every
    /// change (for the thread list), so it must stay linear in the thread's length.
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
                let f = Fields::read(&self.doc, &item.id());
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
                Some(MessageView {
                    read_by: read_by.remove(&id).unwrap_or_default(),
                    author: f.str("author")?.parse().ok()?,
                    device: f.str("device")?.parse().ok()?,
                    at_ms: f.int("at_ms")?,
                    body: f.str("body")?.to_string(),
                    priority: match f.str("priority") {
                        Some("urgent") => Priority::Urgent,
                        _ => Priority::Normal,
                    },
                    task,
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
        let me = member.to_hex();
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
            .filter(|item| self.str_at(&item.id(), "author").as_deref() != Some(me.as_str()))
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

    fn commit(&mut self) -> Result<Vec<u8>, ThreadError> {
        let hash = self.doc.commit().ok_or_else(|| am("empty change"))?;
        let change = self
            .doc
            .get_change_by_hash(&hash)
            .ok_or_else(|| am("committed change missing"))?;
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

/// The scalar fields of one map object, read in a single pass over it.
struct Fields<'a>(Vec<(std::borrow::Cow<'a, str>, ScalarValueRef<'a>)>);

impl<'a> Fields<'a> {
    fn read(doc: &'a AutoCommit, obj: &ObjId) -> Self {
        Fields(
            doc.map_range(obj, ..)
                .filter_map(|item| match item.value {
                    ValueRef::Scalar(v) => Some((item.key, v)),
                    ValueRef::Object(_) => None,
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&ScalarValueRef<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
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
