//! How the fold settles a thread's restriction when its participants are changed
//! concurrently, by a rule no author can steer.
//!
//! Each applied `RestrictThread` or `UnrestrictThread` is one change in the thread's
//! history. A change is judged against the restriction its author saw: the merge of the
//! latest changes in its causal past (so a change written without seeing a restriction
//! cannot replace it, and a non-participant who cites roster heads from before a
//! restriction is judged as restricting an unrestricted thread). The thread's state is
//! the merge of the latest changes of all (those no other change follows):
//! - if an admin made one of them, only admins' latest changes count (an admin's lift
//!   or list is not undone by a member who had not seen it);
//! - of those, the restricted ones are intersected: only members every one of them names
//!   stay participants (two concurrent lists never let in someone either left out);
//! - if all of those lift the restriction, the thread is unrestricted.
//!
//! Intersection and the admin rule do not depend on the order the fold meets changes in,
//! nor on envelope ids: concurrent changes give the same state on every device. A
//! non-participant racing a restriction can at most empty the list (the thread is then
//! closed to everyone until an admin lifts or re-restricts it, and the roster shows who
//! did it); it can never add itself.

use std::collections::{BTreeSet, HashMap};

use super::Restriction;
use super::ancestry::Ancestry;
use crate::core::ids::{MemberId, ThreadId};

/// Most changes of one thread's participants the fold keeps (beyond it, changes are
/// refused): bounds what judging a change against its causal past costs.
pub const MAX_RESTRICTION_CHANGES: usize = 512;

/// One applied change: the operation, whether its author was an admin, and the list it
/// set (`None`: lifted).
struct Change {
    op: usize,
    admin: bool,
    value: Option<Restriction>,
}

/// Every thread's applied changes, in fold order (a change's causal past comes first).
#[derive(Default)]
pub(super) struct History {
    threads: HashMap<ThreadId, Vec<Change>>,
}

impl History {
    /// The restriction of `thread` as operation `op` saw it.
    pub fn view(&self, thread: &ThreadId, op: usize, ancestry: &Ancestry) -> Option<Restriction> {
        let changes = self.threads.get(thread)?;
        let latest = latest(changes, |c| ancestry.contains(op, c.op), ancestry);
        merge(&latest)
    }

    /// Whether `thread` has room for another change.
    pub fn has_room(&self, thread: &ThreadId) -> bool {
        self.threads
            .get(thread)
            .is_none_or(|c| c.len() < MAX_RESTRICTION_CHANGES)
    }

    /// Records an applied change and returns the thread's state after it.
    pub fn record(
        &mut self,
        thread: ThreadId,
        op: usize,
        admin: bool,
        value: Option<Restriction>,
        ancestry: &Ancestry,
    ) -> Option<Restriction> {
        let changes = self.threads.entry(thread).or_default();
        changes.push(Change { op, admin, value });
        let latest = latest(changes, |_| true, ancestry);
        merge(&latest)
    }
}

/// The changes among those `keep` selects that no other selected change follows:
/// scanned from the newest, since whatever follows a change comes after it.
fn latest<'c>(
    changes: &'c [Change],
    keep: impl Fn(&Change) -> bool,
    ancestry: &Ancestry,
) -> Vec<&'c Change> {
    let mut out: Vec<&Change> = Vec::new();
    for c in changes.iter().rev().filter(|c| keep(c)) {
        if !out.iter().any(|l| ancestry.contains(l.op, c.op)) {
            out.push(c);
        }
    }
    out
}

/// The state the latest changes give (module comment).
fn merge(latest: &[&Change]) -> Option<Restriction> {
    let any_admin = latest.iter().any(|c| c.admin);
    let counted: Vec<&Restriction> = latest
        .iter()
        .filter(|c| c.admin || !any_admin)
        .filter_map(|c| c.value.as_ref())
        .collect();
    let (first, rest) = counted.split_first()?;
    let mut members: BTreeSet<MemberId> = first.members.clone();
    let mut by: Vec<MemberId> = first.by.clone();
    for r in rest {
        members.retain(|m| r.members.contains(m));
        by.extend(r.by.iter().copied());
    }
    by.sort();
    by.dedup();
    Some(Restriction {
        category: first.category,
        members,
        by,
    })
}
