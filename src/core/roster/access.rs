//! Restricted threads and emergency access (45 CFR 164.312(a)(2)(ii)), and used
//! invitations — the member-signed and enrollment rules of the roster.
//!
//! - `RestrictThread`: an admin, or a member whose role reads the thread's category,
//!   names the thread's participants. Its readers become the named members (and the
//!   restricting member) whose role reads the category. Once a thread is restricted, only
//!   an admin or a current participant may change the list, so an excluded clinician
//!   cannot re-restrict their way back in without the audited emergency path.
//! - `EmergencyAccess`: a member whose role reads the category and who is not a
//!   participant opens a restricted thread for themselves, with a written reason, for at
//!   most the policy's `safeguards.emergency_minutes`. The grant is a reader only while
//!   `from_ms <= now < until_ms`; `now` is always an argument (sans-IO, tests inject it),
//!   never the roster's own: the fold itself is time-independent, so every device agrees
//!   on which grants exist and each decides with its own clock whether one is active.
//! - Keys: the readers these rules name at a time are exactly the devices a restricted
//!   thread's own keys are granted to (`core::replica::restricted`), so a
//!   non-participant's modified client cannot read what is written after the
//!   restriction; what was written before stays under the category key.
//! - `AddInvitedMember`: an `AddMember` that names the invitation it used (its public id,
//!   never the secret); a second operation naming the same invitation is refused on every
//!   device, whichever arrived first (the fold's deterministic order decides).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Member, Op, Roster, RosterError};
use crate::core::identity::DevicePublic;
use crate::core::ids::{DeviceId, LogId, MemberId, ThreadId};
use crate::core::policy::Category;

/// Longest emergency reason, in bytes (after trimming).
pub const MAX_EMERGENCY_REASON_BYTES: usize = 1024;
/// Grants of one member whose windows overlap at most (an emergency, not a habit).
pub const MAX_OVERLAPPING_EMERGENCIES: usize = 2;
/// Grants kept per member (the earliest-ending ones, long expired, are forgotten first).
pub const MAX_KEPT_EMERGENCIES_PER_MEMBER: usize = 64;
/// Emergency grants one member may open per day of their stated start (UTC days).
pub const MAX_EMERGENCIES_PER_DAY: usize = 4;
const DAY_MS: u64 = 86_400_000;
/// Participants one restriction may name.
pub const MAX_RESTRICTED_PARTICIPANTS: usize = 256;
/// Restricted threads a clinic may hold (the roster cannot see whether a thread id
/// exists, so this bounds what restrictions of made-up ids can cost).
pub const MAX_RESTRICTED_THREADS: usize = 65_536;

/// A restricted thread's participants.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Restriction {
    pub category: Category,
    pub members: BTreeSet<MemberId>,
    /// The members who set the list: one, or several whose concurrent changes were
    /// merged (only the members every one of them named stay).
    pub by: Vec<MemberId>,
}

/// One emergency opening of a restricted thread.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct EmergencyGrant {
    pub thread: ThreadId,
    pub category: Category,
    pub member: MemberId,
    pub reason: String,
    pub from_ms: u64,
    pub until_ms: u64,
}

impl EmergencyGrant {
    /// Whether the grant counts at `now_ms`.
    pub fn active_at(&self, now_ms: u64) -> bool {
        self.from_ms <= now_ms && now_ms < self.until_ms
    }
}

/// Whether `thread`'s id names `category` (its first byte is the category's code).
pub fn thread_in(thread: ThreadId, category: Category) -> bool {
    thread.0[0] == category.code()
}

impl Op {
    /// Operations any active member may author (the rules above decide), not only admins.
    pub fn member_signed(&self) -> bool {
        matches!(
            self,
            Op::RestrictThread { .. } | Op::EmergencyAccess { .. } | Op::StartDirect { .. }
        )
    }
}

impl Roster {
    /// Applies a member-signed operation; `None` for every other operation.
    pub(super) fn apply_member_op(
        &mut self,
        author: &DeviceId,
        op: &Op,
    ) -> Option<Result<(), RosterError>> {
        match op {
            Op::RestrictThread {
                thread,
                category,
                members,
            } => Some(self.restrict(author, *thread, *category, members)),
            Op::EmergencyAccess {
                thread,
                category,
                member,
                reason,
                from_ms,
                until_ms,
            } => Some(self.open_emergency(
                EmergencyGrant {
                    thread: *thread,
                    category: *category,
                    member: *member,
                    reason: reason.trim().to_string(),
                    from_ms: *from_ms,
                    until_ms: *until_ms,
                },
                author,
            )),
            Op::StartDirect {
                thread,
                nonce,
                members,
            } => Some(self.start_direct(author, *thread, nonce, members)),
            _ => None,
        }
    }

    fn restrict(
        &mut self,
        author: &DeviceId,
        thread: ThreadId,
        category: Category,
        members: &[MemberId],
    ) -> Result<(), RosterError> {
        let view = self.restricted.get(&thread).cloned();
        let value = self.restriction_by(author, thread, category, members, view.as_ref())?;
        self.restricted.insert(thread, value);
        Ok(())
    }

    /// The participant list `author` sets with a `RestrictThread`, judged against the
    /// restriction it saw (`view`: the fold passes the one of the operation's causal
    /// past, so a change written without seeing a restriction cannot replace it).
    pub(super) fn restriction_by(
        &self,
        author: &DeviceId,
        thread: ThreadId,
        category: Category,
        members: &[MemberId],
        view: Option<&Restriction>,
    ) -> Result<Restriction, RosterError> {
        let me = self
            .active_member(author)
            .cloned()
            .ok_or(RosterError::UnknownDevice(*author))?;
        // One thread id, one category: the id's first byte names it.
        if !thread_in(thread, category) {
            return Err(RosterError::WrongCategory);
        }
        super::direct::refuse_direct(category)?;
        let reads = self.policy.may_read(me.role, category);
        if !me.admin && !reads {
            return Err(RosterError::MayNotReadCategory);
        }
        if !self.restricted.contains_key(&thread) && self.restricted.len() >= MAX_RESTRICTED_THREADS
        {
            return Err(RosterError::BadParticipants);
        }
        if let Some(r) = view
            && !me.admin
            && !r.members.contains(&me.id)
        {
            return Err(RosterError::NotParticipant);
        }
        if members.is_empty() || members.len() > MAX_RESTRICTED_PARTICIPANTS {
            return Err(RosterError::BadParticipants);
        }
        let mut list = self.present_members(members)?;
        if reads {
            list.insert(me.id);
        }
        Ok(Restriction {
            category,
            members: list,
            by: vec![me.id],
        })
    }

    /// Checks an admin's `UnrestrictThread` against the restriction it saw.
    pub(super) fn check_lift(
        &self,
        thread: ThreadId,
        category: Category,
        view: Option<&Restriction>,
    ) -> Result<(), RosterError> {
        if !thread_in(thread, category) {
            return Err(RosterError::WrongCategory);
        }
        super::direct::refuse_direct(category)?;
        match view {
            None => Err(RosterError::NotRestricted),
            Some(_) => Ok(()),
        }
    }

    fn open_emergency(&mut self, g: EmergencyGrant, author: &DeviceId) -> Result<(), RosterError> {
        let me = self
            .active_member(author)
            .cloned()
            .ok_or(RosterError::UnknownDevice(*author))?;
        if me.id != g.member {
            return Err(RosterError::NotYourself);
        }
        super::direct::refuse_direct(g.category)?;
        if !self.policy.may_read(me.role, g.category) {
            return Err(RosterError::MayNotReadCategory);
        }
        if !thread_in(g.thread, g.category) {
            return Err(RosterError::WrongCategory);
        }
        let r = self
            .restricted
            .get(&g.thread)
            .ok_or(RosterError::NotRestricted)?;
        if r.category != g.category {
            return Err(RosterError::WrongCategory);
        }
        if r.members.contains(&me.id) {
            return Err(RosterError::AlreadyParticipant);
        }
        if g.reason.is_empty() || g.reason.len() > MAX_EMERGENCY_REASON_BYTES {
            return Err(RosterError::BadReason);
        }
        let longest = u64::from(self.policy.safeguards.emergency_minutes) * 60_000;
        if g.until_ms <= g.from_ms || g.until_ms - g.from_ms > longest {
            return Err(RosterError::BadWindow);
        }
        let overlapping = self
            .emergencies
            .iter()
            .filter(|e| e.member == me.id && e.until_ms > g.from_ms && e.from_ms < g.until_ms)
            .count();
        if overlapping >= MAX_OVERLAPPING_EMERGENCIES {
            return Err(RosterError::TooManyEmergencies);
        }
        let day = g.from_ms / DAY_MS;
        let same_day = self
            .emergencies
            .iter()
            .filter(|e| e.member == me.id && e.from_ms / DAY_MS == day)
            .count();
        if same_day >= MAX_EMERGENCIES_PER_DAY {
            return Err(RosterError::TooManyEmergenciesToday);
        }
        let kept = self
            .emergencies
            .iter()
            .filter(|e| e.member == me.id)
            .count();
        // The grant forgotten is the one whose window ended first; its end is kept, so
        // keys first granted before it ended are still never written with again.
        if kept >= MAX_KEPT_EMERGENCIES_PER_MEMBER
            && let Some((oldest, _)) = self
                .emergencies
                .iter()
                .enumerate()
                .filter(|(_, e)| e.member == me.id)
                .min_by_key(|(i, e)| (e.until_ms, *i))
        {
            let gone = self.emergencies.remove(oldest);
            let end = self.forgotten_windows.entry(gone.thread).or_default();
            *end = (*end).max(gone.until_ms);
        }
        self.emergencies.push(g);
        Ok(())
    }

    /// Records an invitation's use; refused if some operation already used it.
    pub(super) fn use_invitation(&mut self, invitation: &[u8; 8]) -> Result<(), RosterError> {
        if self.used_invitations.contains(invitation) {
            return Err(RosterError::InvitationUsed);
        }
        self.used_invitations.insert(*invitation);
        Ok(())
    }

    /// Whether some roster operation has enrolled a member with this invitation.
    pub fn invitation_used(&self, invitation: &[u8; 8]) -> bool {
        self.used_invitations.contains(invitation)
    }

    /// The thread's participants if it is restricted.
    pub fn restriction(&self, thread: &ThreadId) -> Option<&Restriction> {
        self.restricted.get(thread)
    }

    /// Emergency grants of `thread` active at `now_ms`.
    pub fn active_emergencies(&self, thread: &ThreadId, now_ms: u64) -> Vec<&EmergencyGrant> {
        self.emergencies
            .iter()
            .filter(|e| e.thread == *thread && e.active_at(now_ms))
            .collect()
    }

    /// The latest end of an emergency window of `thread` whose grant was forgotten (kept
    /// grants are bounded per member); 0 if none was.
    pub fn forgotten_window_end(&self, thread: &ThreadId) -> u64 {
        self.forgotten_windows.get(thread).copied().unwrap_or(0)
    }

    /// Every emergency grant the roster holds (active or not), oldest first.
    pub fn emergency_grants(&self) -> &[EmergencyGrant] {
        &self.emergencies
    }

    /// Whether `member` may read `log` at `now_ms` by role, restriction and emergency.
    pub fn member_may_read_at(&self, member: &Member, log: &LogId, now_ms: u64) -> bool {
        if member.removed {
            return false;
        }
        let Some(category) = log.category() else {
            return true;
        };
        if let Some(participant) = self.direct_reader(&member.id, log) {
            return participant;
        }
        if !self.policy.may_read(member.role, category) {
            return false;
        }
        let Some(thread) = log.thread() else {
            return true;
        };
        match self.restricted.get(&thread) {
            None => true,
            Some(r) => {
                r.members.contains(&member.id)
                    || self
                        .active_emergencies(&thread, now_ms)
                        .iter()
                        .any(|e| e.member == member.id)
            }
        }
    }

    /// Whether `device` may read the thread (or other log) at `now_ms`: [`Roster::may_read`]
    /// narrowed by the thread's restriction and widened by an active emergency grant.
    pub fn may_read_at(&self, device: &DeviceId, log: &LogId, now_ms: u64) -> bool {
        self.active_member(device)
            .is_some_and(|m| self.member_may_read_at(m, log, now_ms))
    }

    /// Active devices that may read `log` at `now_ms` (see [`Roster::may_read_at`]).
    pub fn readers_at(&self, log: &LogId, now_ms: u64) -> Vec<DevicePublic> {
        self.readers_of(log)
            .into_iter()
            .filter(|d| self.may_read_at(&d.id, log, now_ms))
            .collect()
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
