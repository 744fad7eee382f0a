//! Folding roster operations into a roster, the same way on every device.
//!
//! The rule, in full:
//! 1. An operation is considered once every operation it depends on (transitively) is
//!    present; the others wait.
//! 2. Operations are applied in a causal order (dependencies first). Among operations
//!    ready at the same time, those that can take access away come first ("removal
//!    wins"), then by the seniority of their author's member (the founder first, then
//!    admins in the order they became admin), and only then by envelope id — so ids
//!    order only one author's own concurrent operations, and no author gains anything
//!    over another by grinding them.
//! 3. An operation takes effect only if its author's device and its author's admin
//!    grant are in its causal past (an admin promoted concurrently is not yet one), the
//!    author is an active admin where it falls in that order, and the operation is
//!    allowed there ([`Roster::apply`]: e.g. the clinic keeps at least one admin).
//! 4. An operation whose author lost its authority (revoked, removed, or demoted) in an
//!    operation concurrent with it has no effect: removal wins over anything its target
//!    did in the meantime. Such operations are set aside and the fold is run again
//!    until nothing more is set aside. Two admins demoting each other concurrently:
//!    the senior one's demotion is applied first, so the junior one is no longer an
//!    admin when its own demotion falls, and the clinic keeps an admin.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Genesis, Op, OpRecord, Roster, RosterError};
use crate::core::ids::{DeviceId, EnvelopeId, MemberId};

/// The result of folding a set of operations.
#[derive(Clone, Debug)]
pub struct Folded {
    pub roster: Roster,
    /// Operations that had no effect, with why.
    pub rejected: Vec<(EnvelopeId, RosterError)>,
    /// Operations waiting for a dependency that has not arrived.
    pub waiting: Vec<EnvelopeId>,
    /// Operations no other operation depends on: the deps of the next local operation.
    pub heads: Vec<EnvelopeId>,
    /// Devices whose member has been an admin at some point of the fold: only their
    /// operations can ever take effect.
    pub ever_admin: HashSet<DeviceId>,
}

/// Ancestor sets as bitsets over operation indices.
struct Ancestry {
    bits: Vec<Vec<u64>>,
}

impl Ancestry {
    fn contains(&self, op: usize, ancestor: usize) -> bool {
        self.bits[op]
            .get(ancestor / 64)
            .is_some_and(|w| w & (1 << (ancestor % 64)) != 0)
    }
    fn concurrent(&self, a: usize, b: usize) -> bool {
        a != b && !self.contains(a, b) && !self.contains(b, a)
    }
}

/// Folds `ops`; the result depends neither on their order nor on duplicates.
pub fn fold(genesis: &Genesis, ops: &[OpRecord]) -> Folded {
    let mut seen = HashSet::new();
    let mut ops: Vec<&OpRecord> = ops.iter().filter(|o| seen.insert(o.id)).collect();
    ops.sort_by_key(|o| o.id);
    let index: HashMap<EnvelopeId, usize> =
        ops.iter().enumerate().map(|(i, o)| (o.id, i)).collect();

    // Ready: every dependency present and ready. Computed in a topological order,
    // which also gives each ready operation its ancestor set.
    let n = ops.len();
    let words = n.div_ceil(64);
    let mut ancestry = Ancestry {
        bits: vec![Vec::new(); n],
    };
    let mut ready = vec![false; n];
    let mut pending_deps: Vec<usize> = vec![0; n];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut queue = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let deps: BTreeSet<&EnvelopeId> = op.op.deps.iter().collect();
        let mut missing = false;
        for d in &deps {
            match index.get(*d) {
                Some(&j) if j != i => children[j].push(i),
                _ => missing = true,
            }
        }
        if missing {
            pending_deps[i] = usize::MAX;
        } else {
            pending_deps[i] = deps.len();
            if deps.is_empty() {
                queue.push(i);
            }
        }
    }
    let mut topo = Vec::with_capacity(n);
    while let Some(i) = queue.pop() {
        ready[i] = true;
        let mut bits = vec![0u64; words];
        for d in &ops[i].op.deps {
            if let Some(&j) = index.get(d) {
                for (w, a) in bits.iter_mut().zip(&ancestry.bits[j]) {
                    *w |= a;
                }
                bits[j / 64] |= 1 << (j % 64);
            }
        }
        ancestry.bits[i] = bits;
        topo.push(i);
        for &c in &children[i] {
            if pending_deps[c] != usize::MAX {
                pending_deps[c] -= 1;
                if pending_deps[c] == 0 {
                    queue.push(c);
                }
            }
        }
    }

    let mut set_aside: HashSet<usize> = HashSet::new();
    let (roster, mut rejected, _, ever_admin) = loop {
        let pass = linear_pass(genesis, &ops, &ready, &children, &ancestry, &set_aside);
        let (roster, _, applied, _) = &pass;
        let mut more = Vec::new();
        for &o in applied {
            let author = ops[o].author;
            let Some(member) = roster
                .member_of(&author)
                .or_else(|| founding_member(&ops, o))
            else {
                continue;
            };
            let removed = applied.iter().any(|&r| {
                ancestry.concurrent(o, r) && ops[r].op.op.removes_authority_of(&author, &member)
            });
            if removed {
                more.push(o);
            }
        }
        if more.is_empty() {
            break pass;
        }
        set_aside.extend(more);
    };
    for &i in &set_aside {
        rejected.push((ops[i].id, RosterError::RemovedConcurrently));
    }
    rejected.sort_by_key(|(id, _)| *id);

    let depended: HashSet<usize> = topo
        .iter()
        .flat_map(|&i| ops[i].op.deps.iter().filter_map(|d| index.get(d).copied()))
        .collect();
    let mut heads: Vec<EnvelopeId> = topo
        .iter()
        .filter(|i| !depended.contains(i))
        .map(|&i| ops[i].id)
        .collect();
    heads.sort();
    let mut waiting: Vec<EnvelopeId> = (0..n).filter(|&i| !ready[i]).map(|i| ops[i].id).collect();
    waiting.sort();
    Folded {
        roster,
        rejected,
        waiting,
        heads,
        ever_admin,
    }
}

/// The member an `Init` names (its author has no roster entry before it applies).
fn founding_member(ops: &[&OpRecord], i: usize) -> Option<MemberId> {
    match &ops[i].op.op {
        Op::Init { member, .. } => Some(*member),
        _ => None,
    }
}

type Pass = (
    Roster,
    Vec<(EnvelopeId, RosterError)>,
    Vec<usize>,
    HashSet<DeviceId>,
);

/// One application of every ready operation not set aside, in the order of rule 2.
fn linear_pass(
    genesis: &Genesis,
    ops: &[&OpRecord],
    ready: &[bool],
    children: &[Vec<usize>],
    ancestry: &Ancestry,
    set_aside: &HashSet<usize>,
) -> Pass {
    let mut roster = Roster::new(genesis);
    let mut rejected = Vec::new();
    let mut applied = Vec::new();
    let mut ever_admin = HashSet::new();
    // Seniority: members in the order they became admin.
    let mut seniority: HashMap<MemberId, usize> = HashMap::new();
    // Which operation made each member an admin, and added each device.
    let mut admin_grant: HashMap<MemberId, usize> = HashMap::new();
    let mut device_added: HashMap<DeviceId, usize> = HashMap::new();

    let mut indegree: Vec<usize> = ops
        .iter()
        .map(|o| o.op.deps.iter().collect::<BTreeSet<_>>().len())
        .collect();
    let rank = |roster: &Roster, seniority: &HashMap<MemberId, usize>, i: usize| {
        let class = usize::from(!ops[i].op.op.narrows());
        let senior = roster
            .member_of(&ops[i].author)
            .and_then(|m| seniority.get(&m).copied())
            .unwrap_or(usize::MAX);
        (class, senior, ops[i].id, i)
    };
    let mut frontier: BTreeSet<(usize, usize, EnvelopeId, usize)> = (0..ops.len())
        .filter(|&i| ready[i] && indegree[i] == 0)
        .map(|i| rank(&roster, &seniority, i))
        .collect();
    while let Some((_, _, id, i)) = frontier.pop_first() {
        let rec = ops[i];
        let outcome = if set_aside.contains(&i) {
            None
        } else {
            Some(check_and_apply(
                &mut roster,
                rec,
                i,
                ancestry,
                &admin_grant,
                &device_added,
            ))
        };
        match outcome {
            Some(Ok(())) => {
                applied.push(i);
                record_grants(
                    &rec.op.op,
                    i,
                    &roster,
                    &mut admin_grant,
                    &mut device_added,
                    &mut seniority,
                );
                for d in roster.devices.values() {
                    if roster.members.get(&d.member).is_some_and(|m| m.admin) {
                        ever_admin.insert(d.public.id);
                    }
                }
            }
            Some(Err(e)) => rejected.push((id, e)),
            None => {}
        }
        for &c in &children[i] {
            if !ready[c] {
                continue;
            }
            indegree[c] -= 1;
            if indegree[c] == 0 {
                frontier.insert(rank(&roster, &seniority, c));
            }
        }
    }
    (roster, rejected, applied, ever_admin)
}

fn check_and_apply(
    roster: &mut Roster,
    rec: &OpRecord,
    i: usize,
    ancestry: &Ancestry,
    admin_grant: &HashMap<MemberId, usize>,
    device_added: &HashMap<DeviceId, usize>,
) -> Result<(), RosterError> {
    if !matches!(rec.op.op, Op::Init { .. }) {
        // Rule 3: the author's device and admin grant are in the causal past.
        let in_past = |j: Option<&usize>| j.is_some_and(|&j| ancestry.contains(i, j));
        let member = roster.member_of(&rec.author);
        if roster.devices.contains_key(&rec.author)
            && member.is_some_and(|m| roster.members.get(&m).is_some_and(|m| m.admin))
            && !(in_past(device_added.get(&rec.author))
                && member.is_some_and(|m| in_past(admin_grant.get(&m))))
        {
            return Err(RosterError::NotAdminInCausalPast);
        }
    }
    roster.apply(&rec.author, &rec.op.op)
}

/// Notes which operation made a member an admin or added a device.
fn record_grants(
    op: &Op,
    i: usize,
    roster: &Roster,
    admin_grant: &mut HashMap<MemberId, usize>,
    device_added: &mut HashMap<DeviceId, usize>,
    seniority: &mut HashMap<MemberId, usize>,
) {
    let mut promote = |admin_grant: &mut HashMap<MemberId, usize>, m: MemberId| {
        admin_grant.insert(m, i);
        let next = seniority.len();
        seniority.entry(m).or_insert(next);
    };
    match op {
        Op::Init { member, .. } => {
            promote(admin_grant, *member);
            device_added.insert(roster.founder.id, i);
        }
        Op::AddMember {
            member,
            admin: true,
            ..
        }
        | Op::AddInvitedMember {
            member,
            admin: true,
            ..
        } => promote(admin_grant, *member),
        // Re-stating an admin's role does not move its grant later.
        Op::ChangeRole {
            member,
            admin: true,
            ..
        } if !admin_grant.contains_key(member) => promote(admin_grant, *member),
        Op::ChangeRole {
            member,
            admin: false,
            ..
        } => {
            admin_grant.remove(member);
        }
        Op::AddDevice { device, .. } => {
            device_added.insert(device.id, i);
        }
        _ => {}
    }
}
