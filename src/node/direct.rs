//! Direct conversations on this device: starting one among named members (`huddle
//! direct new`, the app's *New direct message*), and keeping other members'
//! conversations out of this device's listings.
//!
//! The roster decides who takes part (`core::roster::direct`): the participants only,
//! with no admin override and no emergency access. What enforces it is keys: a direct
//! conversation is sealed from its first change on with keys of its own, granted only to
//! the participants' active devices (`core::replica::restricted`). Every other device
//! relays it blind; this module only spares its member a list of locked conversations
//! that are none of their business.

use rand::RngCore;

use super::{Node, NodeError, ThreadSummary, now_ms};
use crate::core::ids::{MemberId, ThreadId};
use crate::core::policy::Category;
use crate::core::roster::{MAX_DIRECT_PARTICIPANTS, Op};
use crate::core::thread::{Subject, ThreadMeta, derive_thread_id};

/// The subject every direct conversation's header carries (its title names the people).
pub const DIRECT_SUBJECT: &str = "Direct message";

impl Node {
    /// Starts a direct conversation with the members named (this device's member takes
    /// part too) and returns its id; if one with exactly these participants is already
    /// here, returns that one instead, so that two people keep one conversation.
    pub fn new_direct(&mut self, names: &[String]) -> Result<ThreadId, NodeError> {
        let me = self.writer()?;
        self.store.recover()?;
        self.store.ensure_space()?;
        let mut members: Vec<MemberId> = Vec::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let m = self.member_named(name)?;
            if m.id != me.id && !members.contains(&m.id) {
                members.push(m.id);
            }
        }
        if members.is_empty() {
            return Err(NodeError::Invalid(
                "name at least one other member to write to".into(),
            ));
        }
        if members.len() >= MAX_DIRECT_PARTICIPANTS {
            return Err(NodeError::Invalid(format!(
                "a direct conversation has at most {MAX_DIRECT_PARTICIPANTS} participants: \
                 start a topic thread for a larger group"
            )));
        }
        if let Some(existing) = self.direct_with(&me.id, &members) {
            return Ok(existing);
        }
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let creator = self.secret.id();
        let thread = derive_thread_id(Category::Direct, &creator, &nonce);
        // The conversation exists for the roster first, so that its first change is
        // already sealed with a key only its participants' devices are given.
        self.roster_op(Op::StartDirect {
            thread,
            nonce,
            members: members.clone(),
        })?;
        let mut names: Vec<String> = std::iter::once(me.id)
            .chain(members)
            .map(|m| self.name_of(&m))
            .collect();
        names.sort();
        self.create_thread_doc(ThreadMeta {
            subject: Subject::Topic(DIRECT_SUBJECT.to_string()),
            title: names.join(", "),
            category: Category::Direct,
            created_by: me.id,
            created_ms: now_ms(),
            creator,
            nonce,
        })
    }

    /// A direct conversation held here whose participants are exactly `me` and `others`.
    fn direct_with(&self, me: &MemberId, others: &[MemberId]) -> Option<ThreadId> {
        let replica = self.replica().ok()?;
        let wanted: std::collections::BTreeSet<MemberId> =
            others.iter().copied().chain([*me]).collect();
        replica
            .roster()
            .directs_of(me)
            .filter(|(_, r)| r.members == wanted)
            .map(|(t, _)| *t)
            .find(|t| replica.thread_log(t).is_some())
    }

    /// Leaves out of a listing the direct conversations this device's member does not
    /// take part in.
    pub(super) fn drop_others_directs(&self, summaries: &mut Vec<ThreadSummary>) {
        let Ok(replica) = self.replica() else {
            return;
        };
        let roster = replica.roster();
        let me = roster.active_member(&self.secret.id()).map(|m| m.id);
        summaries.retain(|s| {
            s.category != Category::Direct.as_str()
                || me.is_some_and(|me| {
                    roster
                        .direct(&s.thread)
                        .is_some_and(|r| r.members.contains(&me))
                })
        });
    }
}
