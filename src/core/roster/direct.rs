//! Direct conversations: a thread among named members that no role reads by policy and
//! that nobody else can be let into — no admin override, no emergency access.
//!
//! - `StartDirect`: any active member names the other participants (present members, 1
//!   to [`MAX_DIRECT_PARTICIPANTS`] - 1 of them) of a thread in [`Category::Direct`];
//!   the author's member is always a participant. The thread id must derive from the
//!   author's device and the stated nonce (`core::thread::derive_thread_id`), so one
//!   thread can be started by one device only, and a device's roster operations form
//!   one chain: two starts of one thread are never concurrent, the later one is refused
//!   on every device. The list never changes afterwards: `RestrictThread`,
//!   `UnrestrictThread` and `EmergencyAccess` are refused for direct threads, whoever
//!   signs them, admins included.
//! - Readers and writers: the active devices of the participants ([`Roster::may_read`]);
//!   a removed participant or a revoked device loses access like anywhere else (its
//!   envelopes up to the removal's cutoff still count). Until a device has folded the
//!   start, envelopes of the thread wait (the author is not allowed *yet*).
//! - Keys: a direct thread is sealed only with keys of its own, granted to exactly its
//!   readers (`core::replica::restricted`, as restricted threads): there is no category
//!   key for [`Category::Direct`] (`LogId::well_formed` refuses one).
//! - Every device relays a direct thread blind and sees, in the roster, who takes part:
//!   metadata, as the participants of a restricted thread are.

use super::{Restriction, Roster, RosterError};
use crate::core::ids::{DeviceId, LogId, MemberId, ThreadId};
use crate::core::policy::Category;
use crate::core::thread::derive_thread_id;

/// Participants of one direct conversation, its starter included: a small group.
pub const MAX_DIRECT_PARTICIPANTS: usize = 32;
/// Direct conversations a clinic may hold (bounds what starts of made-up ids cost).
pub const MAX_DIRECT_THREADS: usize = 65_536;

impl Roster {
    /// Applies a `StartDirect` by `author` (rules in the module comment).
    pub(super) fn start_direct(
        &mut self,
        author: &DeviceId,
        thread: ThreadId,
        nonce: &[u8; 16],
        members: &[MemberId],
    ) -> Result<(), RosterError> {
        let me = self
            .active_member(author)
            .cloned()
            .ok_or(RosterError::UnknownDevice(*author))?;
        if derive_thread_id(Category::Direct, author, nonce) != thread {
            return Err(RosterError::NotDirectStarter);
        }
        if self.direct.contains_key(&thread) {
            return Err(RosterError::DirectStarted);
        }
        if self.direct.len() >= MAX_DIRECT_THREADS {
            return Err(RosterError::BadDirectParticipants);
        }
        let mut list = self.present_members(members)?;
        list.insert(me.id);
        if list.len() < 2 || list.len() > MAX_DIRECT_PARTICIPANTS {
            return Err(RosterError::BadDirectParticipants);
        }
        self.direct.insert(
            thread,
            Restriction {
                category: Category::Direct,
                members: list,
                by: vec![me.id],
            },
        );
        Ok(())
    }

    /// A direct conversation's participants, if `thread` is one that was started.
    pub fn direct(&self, thread: &ThreadId) -> Option<&Restriction> {
        self.direct.get(thread)
    }

    /// Every direct conversation `member` takes part in.
    pub fn directs_of(&self, member: &MemberId) -> impl Iterator<Item = (&ThreadId, &Restriction)> {
        self.direct
            .iter()
            .filter(move |(_, r)| r.members.contains(member))
    }

    /// The participants of a thread sealed with keys of its own: a restricted thread or a
    /// direct conversation.
    pub fn own_keys_of(&self, thread: &ThreadId) -> Option<&Restriction> {
        self.restricted
            .get(thread)
            .or_else(|| self.direct.get(thread))
    }

    /// For a direct conversation's log, whether `member` takes part in it (`false` until
    /// it is started); `None` for any other log, which the category's policy decides.
    pub(super) fn direct_reader(&self, member: &MemberId, log: &LogId) -> Option<bool> {
        let thread = log.thread().filter(|_| log.is_direct())?;
        Some(
            self.direct
                .get(&thread)
                .is_some_and(|r| r.members.contains(member)),
        )
    }
}

/// A refusal for restriction and emergency operations that name a direct thread.
pub(super) fn refuse_direct(category: Category) -> Result<(), RosterError> {
    if category.is_direct() {
        Err(RosterError::DirectFixed)
    } else {
        Ok(())
    }
}
