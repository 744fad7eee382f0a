//! Tasks across every thread this device's member may read (`huddle tasks`, the app's
//! "My tasks"): open ones first, soonest due first, overdue ones marked.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::ids::ThreadId;
use crate::core::thread::TaskStatus;
use crate::node::{Node, NodeError};

/// One task, with its thread.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TaskView {
    #[serde(serialize_with = "as_hex", deserialize_with = "from_hex")]
    pub thread: ThreadId,
    pub thread_title: String,
    pub message_id: String,
    pub text: String,
    pub assignee: String,
    /// As the poster gave it (YYYY-MM-DD).
    pub due: String,
    pub status: TaskStatus,
    pub done_by: Option<String>,
    /// Open, and due before today (local date).
    pub overdue: bool,
}

fn as_hex<S: Serializer>(id: &ThreadId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}

fn from_hex<'de, D: Deserializer<'de>>(d: D) -> Result<ThreadId, D::Error> {
    let hex = String::deserialize(d)?;
    hex.parse().map_err(serde::de::Error::custom)
}

impl Node {
    /// Tasks in the threads this member may read (with `mine`, only those assigned to
    /// this member), open first, then by due date; a due date that is not a date sorts
    /// last. Threads that cannot be opened are skipped (the thread list reports them).
    pub fn tasks(&self, mine: bool) -> Result<Vec<TaskView>, NodeError> {
        self.tasks_where(mine, false)
    }

    /// As [`Node::tasks`], open tasks only: only threads whose summary counts open
    /// tasks are opened, so the app can list them after every change.
    pub fn open_tasks(&self, mine: bool) -> Result<Vec<TaskView>, NodeError> {
        self.tasks_where(mine, true)
    }

    fn tasks_where(&self, mine: bool, open_only: bool) -> Result<Vec<TaskView>, NodeError> {
        let me = self.status().member.ok_or(NodeError::NotEnrolled)?;
        let today = crate::localtime::today();
        let (threads, _problems) = self.threads()?;
        let mut out = Vec::new();
        let wanted = threads
            .iter()
            .filter(|t| t.readable && t.messages > 0 && (!open_only || t.open_tasks > 0));
        for summary in wanted {
            let thread = summary.thread;
            let Ok(detail) = self.thread(thread) else {
                continue;
            };
            for m in detail.messages {
                // A retracted message's task was closed with it: it is nobody's to do.
                let Some(task) = m.task.filter(|_| !m.retracted) else {
                    continue;
                };
                if (mine && task.assignee != me) || (open_only && task.status != TaskStatus::Open) {
                    continue;
                }
                let due = task.due.parse::<jiff::civil::Date>().ok();
                out.push(TaskView {
                    thread,
                    thread_title: detail.title.clone(),
                    message_id: m.id,
                    text: m.body,
                    overdue: task.status == TaskStatus::Open && due.is_some_and(|d| d < today),
                    assignee: task.assignee,
                    due: task.due,
                    status: task.status,
                    done_by: task.done_by,
                });
            }
        }
        out.sort_by_cached_key(|t| {
            (
                t.status != TaskStatus::Open,
                t.due.parse::<jiff::civil::Date>().ok().is_none(),
                t.due.clone(),
                t.thread_title.clone(),
                t.message_id.clone(),
            )
        });
        Ok(out)
    }
}
