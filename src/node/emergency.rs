//! Restricted threads and emergency access on this device (45 CFR 164.312(a)(2)(ii)).
//!
//! The roster decides who reads a restricted thread ([`Roster::may_read_at`]); this
//! module authors the operations (`huddle thread restrict`, `huddle emergency open`),
//! hides restricted threads this device's member may not read now (listed as
//! "Restricted thread", no subject or title; `show` and `post` refused), and lists
//! emergency grants for the thread view and for admins ([`Node::emergency_grants`]).
//!
//! What enforces it: keys, for what is written after the restriction. A restricted
//! thread is sealed with keys of its own, granted only to the devices that may read it
//! at the time, handed to an emergency grantee's devices by any device that holds them
//! as soon as it learns of the grant, and rotated at the first post after someone's
//! access ends (`core::replica::restricted`). What was written before the restriction
//! stays under the category key, which every device whose role reads the category
//! holds; and a client that once read a thread keeps what it saw. The hiding here is
//! for honest clients on top of that.
//!
//! Time: the node's clock ([`now_ms`]; tests move it forward with
//! `HUDDLE_CLOCK_SKIP_MS`, which can only end an emergency window sooner).

use serde::{Deserialize, Serialize};

use super::{Node, NodeError, now_ms};
use crate::core::ids::{LogId, MemberId, ThreadId};
use crate::core::roster::{EmergencyGrant, Op, Roster};

/// What a non-participant sees instead of a restricted thread's title.
pub const RESTRICTED_LABEL: &str = "Restricted thread";

/// One emergency grant, for the thread view and admins.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EmergencyView {
    /// The thread's id (hex).
    pub thread: String,
    pub member: String,
    pub reason: String,
    pub from_ms: u64,
    pub until_ms: u64,
    /// Whether it counts now on this device's clock.
    pub active: bool,
}

impl Node {
    /// Restricts a thread to the named members (the author is added if their role reads
    /// the category). Allowed to an admin, or a member whose role reads the thread's
    /// category (and, once restricted, only to a participant or an admin).
    pub fn restrict_thread(&mut self, reference: &str, names: &[String]) -> Result<(), NodeError> {
        self.writer()?;
        let (thread, category) = thread_parts(self.resolve_thread(reference)?, reference)?;
        let members = names
            .iter()
            .map(|n| self.member_named(n).map(|m| m.id))
            .collect::<Result<Vec<MemberId>, _>>()?;
        self.roster_op(Op::RestrictThread {
            thread,
            category,
            members,
        })
    }

    /// Lifts a thread's restriction (admins): its category's readers read it again.
    pub fn unrestrict_thread(&mut self, reference: &str) -> Result<(), NodeError> {
        self.writer()?;
        let (thread, category) = thread_parts(self.resolve_thread(reference)?, reference)?;
        self.roster_op(Op::UnrestrictThread { thread, category })
    }

    /// The names of a restricted thread's or direct conversation's participants, in
    /// order (empty for any other thread).
    pub(super) fn restricted_to(&self, thread: &ThreadId) -> Vec<String> {
        let Ok(replica) = self.replica() else {
            return Vec::new();
        };
        replica
            .roster()
            .own_keys_of(thread)
            .map(|r| {
                let mut names: Vec<String> = r.members.iter().map(|m| self.name_of(m)).collect();
                names.sort();
                names
            })
            .unwrap_or_default()
    }

    /// Opens a restricted thread for this device's member, for the policy's emergency
    /// minutes, with a written reason; announced in the thread and to admins.
    pub fn open_emergency(
        &mut self,
        reference: &str,
        reason: &str,
    ) -> Result<EmergencyView, NodeError> {
        let me = self.writer()?;
        let (thread, category) = thread_parts(self.resolve_thread(reference)?, reference)?;
        let minutes = self.replica()?.roster().policy.safeguards.emergency_minutes;
        let from_ms = now_ms();
        self.roster_op(Op::EmergencyAccess {
            thread,
            category,
            member: me.id,
            reason: reason.trim().to_string(),
            from_ms,
            until_ms: from_ms.saturating_add(u64::from(minutes) * 60_000),
        })?;
        let roster = self.replica()?.roster();
        roster
            .emergency_grants()
            .iter()
            .rev()
            .find(|g| g.thread == thread && g.member == me.id)
            .map(|g| view(roster, g, now_ms()))
            .ok_or_else(|| NodeError::UnknownThread(reference.to_string()))
    }

    /// Every emergency grant of the clinic, oldest first (for admins and the audit log).
    pub fn emergency_grants(&self) -> Result<Vec<EmergencyView>, NodeError> {
        let roster = self.replica()?.roster();
        let now = now_ms();
        Ok(roster
            .emergency_grants()
            .iter()
            .map(|g| view(roster, g, now))
            .collect())
    }

    /// Emergency grants of one thread active now (the thread view's announcement).
    pub(super) fn thread_emergencies(&self, thread: &ThreadId) -> Vec<EmergencyView> {
        let Ok(replica) = self.replica() else {
            return Vec::new();
        };
        let now = now_ms();
        replica
            .roster()
            .active_emergencies(thread, now)
            .into_iter()
            .map(|g| view(replica.roster(), g, now))
            .collect()
    }

    /// Whether this device's member may read `log` now by restriction and emergency
    /// grants (the role check is the key's: see `readable_thread`).
    pub(super) fn restriction_allows(&self, log: &LogId) -> bool {
        let Ok(replica) = self.replica() else {
            return false;
        };
        let roster = replica.roster();
        match log.thread() {
            Some(t) if roster.own_keys_of(&t).is_some() => {
                roster.may_read_at(&self.secret.id(), log, now_ms())
            }
            _ => true,
        }
    }

    /// Hides, in a thread listing, what this device may not read now.
    pub(super) fn hide_restricted(&self, summaries: &mut [super::ThreadSummary]) {
        for s in summaries.iter_mut() {
            let log = self.replica().ok().and_then(|r| r.thread_log(&s.thread));
            if log.is_some_and(|log| !self.restriction_allows(&log)) {
                s.readable = false;
                s.subject = None;
                s.title = Some(RESTRICTED_LABEL.to_string());
                s.unread = 0;
                s.urgent_unread = 0;
                s.mentions_unread = 0;
                s.open_tasks = 0;
            }
        }
    }
}

fn thread_parts(
    log: LogId,
    reference: &str,
) -> Result<(ThreadId, crate::core::policy::Category), NodeError> {
    match log {
        LogId::Thread { id, category } => Ok((id, category)),
        _ => Err(NodeError::UnknownThread(reference.to_string())),
    }
}

fn view(roster: &Roster, g: &EmergencyGrant, now: u64) -> EmergencyView {
    EmergencyView {
        thread: g.thread.to_hex(),
        member: roster
            .members
            .get(&g.member)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| format!("member {}", g.member.short())),
        reason: g.reason.clone(),
        from_ms: g.from_ms,
        until_ms: g.until_ms,
        active: g.active_at(now),
    }
}
