//! Which roster operations the fold considers, so that what a non-admin floods the
//! roster with costs nothing after it is stored.
//!
//! An admin operation (adding members and devices, roles, policy, revocation, lifting a
//! restriction) can only take effect if its author's device and its author's admin
//! grant are in its causal past (rule 3 of `fold`). So an admin operation by a device
//! that no admin could ever have made an admin's — not the founder's, and not added to a
//! member that some admin operation made an admin — is *inert*: it is kept and relayed,
//! but left out of the fold. Which devices could be admins' is decided from the
//! operations alone, by a least fixpoint that starts from the founder, so every device
//! computes the same set whatever order the operations arrived in.
//!
//! An inert operation stays transparent: an operation that depends on it depends on
//! what it depends on (so a device of an earlier release, whose heads include inert
//! operations, still orders the same way).

use std::collections::{HashMap, HashSet};

use super::{Genesis, Op, OpRecord};
use crate::core::ids::{DeviceId, EnvelopeId, MemberId};

/// The devices whose admin operations can take effect: the founder, and devices added
/// (by such a device) to a member that such a device made an admin.
pub fn potential_admins(genesis: &Genesis, ops: &[&OpRecord]) -> HashSet<DeviceId> {
    let mut admins: HashSet<DeviceId> = HashSet::from([genesis.founder.id]);
    // Only the operations that can widen the set are looked at again.
    let relevant: Vec<&OpRecord> = ops
        .iter()
        .copied()
        .filter(|o| grants_admin(&o.op.op).is_some() || added_device(&o.op.op).is_some())
        .collect();
    loop {
        let members: HashSet<MemberId> = relevant
            .iter()
            .filter(|o| admins.contains(&o.author))
            .filter_map(|o| grants_admin(&o.op.op))
            .collect();
        let before = admins.len();
        for o in &relevant {
            if let Some((member, device)) = added_device(&o.op.op)
                && admins.contains(&o.author)
                && members.contains(member)
            {
                admins.insert(device.id);
            }
        }
        if admins.len() == before {
            return admins;
        }
    }
}

/// The member and device an operation enrolls, if it does.
fn added_device(op: &Op) -> Option<(&MemberId, &crate::core::identity::DevicePublic)> {
    match op {
        Op::AddDevice { member, device } | Op::AddInvitedDevice { member, device, .. } => {
            Some((member, device))
        }
        _ => None,
    }
}

/// The member an operation makes an admin, if it does.
fn grants_admin(op: &Op) -> Option<MemberId> {
    match op {
        Op::Init { member, .. }
        | Op::AddMember {
            member,
            admin: true,
            ..
        }
        | Op::AddInvitedMember {
            member,
            admin: true,
            ..
        }
        | Op::ChangeRole {
            member,
            admin: true,
            ..
        } => Some(*member),
        _ => None,
    }
}

/// Whether the fold leaves `op` out (see the module comment).
pub fn inert(op: &OpRecord, potential_admins: &HashSet<DeviceId>) -> bool {
    !matches!(op.op.op, Op::Init { .. })
        && !op.op.op.member_signed()
        && !potential_admins.contains(&op.author)
}

/// The operations a fold considers, sorted by id, with their dependencies resolved to
/// indices among them (through inert operations).
pub struct Selected<'a> {
    pub ops: Vec<&'a OpRecord>,
    pub deps: Vec<Vec<usize>>,
    /// Per operation, whether some dependency (perhaps through inert ones) is absent.
    pub missing: Vec<bool>,
    /// The absent ids those operations wait for.
    pub missing_ids: HashSet<EnvelopeId>,
}

/// Selects and resolves (each inert operation is resolved once, without recursion).
pub fn select<'a>(all: &[&'a OpRecord], potential_admins: &HashSet<DeviceId>) -> Selected<'a> {
    let by_id: HashMap<EnvelopeId, &OpRecord> = all.iter().map(|o| (o.id, *o)).collect();
    let mut ops: Vec<&OpRecord> = all
        .iter()
        .copied()
        .filter(|o| !inert(o, potential_admins))
        .collect();
    ops.sort_by_key(|o| o.id);
    let index: HashMap<EnvelopeId, usize> =
        ops.iter().enumerate().map(|(i, o)| (o.id, i)).collect();
    let mut resolver = Resolver {
        by_id: &by_id,
        index: &index,
        memo: HashMap::new(),
        missing_ids: HashSet::new(),
    };
    let mut deps = Vec::with_capacity(ops.len());
    let mut missing = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let (mut d, absent) = resolver.resolve_all(&op.op.deps);
        d.retain(|&j| j != i);
        deps.push(d);
        missing.push(absent);
    }
    Selected {
        ops,
        deps,
        missing,
        missing_ids: resolver.missing_ids,
    }
}

struct Resolver<'r, 'a> {
    by_id: &'r HashMap<EnvelopeId, &'a OpRecord>,
    index: &'r HashMap<EnvelopeId, usize>,
    /// Per inert operation: the considered operations it stands for, and whether some
    /// of its past is absent.
    memo: HashMap<EnvelopeId, (Vec<usize>, bool)>,
    missing_ids: HashSet<EnvelopeId>,
}

impl Resolver<'_, '_> {
    /// The considered operations `deps` stand for, sorted and without repeats.
    fn resolve_all(&mut self, deps: &[EnvelopeId]) -> (Vec<usize>, bool) {
        let mut out = Vec::new();
        let mut absent = false;
        for d in deps {
            if let Some(&j) = self.index.get(d) {
                out.push(j);
            } else if self.by_id.contains_key(d) {
                self.resolve_inert(*d);
                if let Some((via, a)) = self.memo.get(d) {
                    out.extend_from_slice(via);
                    absent |= *a;
                }
            } else {
                absent = true;
                self.missing_ids.insert(*d);
            }
        }
        out.sort_unstable();
        out.dedup();
        (out, absent)
    }

    /// Fills the memo for inert operation `id` and every inert operation below it,
    /// depth-first with an explicit stack.
    fn resolve_inert(&mut self, id: EnvelopeId) {
        let mut stack = vec![(id, false)];
        let mut on_stack: HashSet<EnvelopeId> = HashSet::new();
        while let Some((cur, expanded)) = stack.pop() {
            if self.memo.contains_key(&cur) {
                continue;
            }
            let Some(rec) = self.by_id.get(&cur).copied() else {
                continue;
            };
            if !expanded {
                if !on_stack.insert(cur) {
                    continue;
                }
                stack.push((cur, true));
                for d in &rec.op.deps {
                    if !self.index.contains_key(d)
                        && self.by_id.contains_key(d)
                        && !self.memo.contains_key(d)
                    {
                        stack.push((*d, false));
                    }
                }
                continue;
            }
            let resolved = self.resolve_all(&rec.op.deps);
            self.memo.insert(cur, resolved);
        }
    }
}
