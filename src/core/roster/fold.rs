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
//! 5. A removed member is restored only by an operation that follows every removal of
//!    them: a removal concurrent with the restoration wins, whichever is folded first.
//! 6. A thread's restriction is changed only by what followed it: each change is judged
//!    against the restriction in its causal past, and concurrent changes merge by a
//!    rule no author can steer (`restrict`). An emergency window starts at its
//!    operation's stated time.
//!
//! Admin operations no admin's device could have written are left out (`candidates`),
//! and the causal past is a vector clock per operation (`ancestry`), so what a
//! non-admin floods the roster with costs neither memory nor time here.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::ancestry::Ancestry;
use super::candidates::{self, Selected};
use super::restrict::History;
use super::{Genesis, Op, OpRecord, Roster, RosterError};
use crate::core::ids::{DeviceId, EnvelopeId, MemberId};

/// The result of folding a set of operations.
#[derive(Clone, Debug)]
pub struct Folded {
    pub roster: Roster,
    /// Operations folded that had no effect, with why (inert ones are not listed).
    pub rejected: Vec<(EnvelopeId, RosterError)>,
    /// Operations waiting for a dependency that has not arrived.
    pub waiting: Vec<EnvelopeId>,
    /// The absent operations those wait for.
    pub missing: HashSet<EnvelopeId>,
    /// What the next local operation depends on: per author, its furthest operation,
    /// unless another of these follows it.
    pub heads: Vec<EnvelopeId>,
    /// Devices whose admin operations can take effect (`candidates`); anyone else's
    /// admin operation is inert.
    pub potential_admins: HashSet<DeviceId>,
}

/// Folds `ops`; the result depends neither on their order nor on duplicates.
pub fn fold<'a>(genesis: &Genesis, ops: impl IntoIterator<Item = &'a OpRecord>) -> Folded {
    let mut seen = HashSet::new();
    let all: Vec<&OpRecord> = ops.into_iter().filter(|o| seen.insert(o.id)).collect();
    let potential_admins = candidates::potential_admins(genesis, &all);
    let sel = candidates::select(&all, &potential_admins);
    let ops = &sel.ops;
    let n = ops.len();

    // Ready: every dependency present and ready. Computed in a topological order,
    // which also sets each ready operation's clock.
    let authors: Vec<DeviceId> = ops.iter().map(|o| o.author).collect();
    let seqs: Vec<u64> = ops.iter().map(|o| o.seq).collect();
    let mut ancestry = Ancestry::new(&authors, &seqs);
    let mut ready = vec![false; n];
    let mut pending_deps: Vec<usize> = vec![0; n];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut queue = Vec::new();
    for (i, deps) in sel.deps.iter().enumerate() {
        for &j in deps {
            children[j].push(i);
        }
        if sel.missing[i] {
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
        ancestry.set(i, &sel.deps[i]);
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
    let (roster, mut rejected, _) = loop {
        let pass = linear_pass(genesis, &sel, &ready, &children, &ancestry, &set_aside);
        let (roster, _, applied) = &pass;
        // Rule 4, against the few applied operations that take authority away.
        let removals: Vec<usize> = applied
            .iter()
            .copied()
            .filter(|&r| ops[r].op.op.narrows())
            .collect();
        let mut more = Vec::new();
        for &o in applied {
            let author = ops[o].author;
            let Some(member) = roster
                .member_of(&author)
                .or_else(|| founding_member(ops, o))
            else {
                continue;
            };
            let removed = removals.iter().any(|&r| {
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

    // Heads: per author, its furthest ready operation (it stands for all the author's
    // earlier ones, see `ancestry`), unless another head follows it. At most one per
    // author, so the next operation's dependencies stay small however many concurrent
    // operations members wrote.
    let mut furthest: HashMap<DeviceId, usize> = HashMap::new();
    for &i in &topo {
        let e = furthest.entry(ops[i].author).or_insert(i);
        if ops[i].seq > ops[*e].seq {
            *e = i;
        }
    }
    let candidates: Vec<usize> = furthest.into_values().collect();
    let mut heads: Vec<EnvelopeId> = candidates
        .iter()
        .filter(|&&i| !candidates.iter().any(|&j| ancestry.contains(j, i)))
        .map(|&i| ops[i].id)
        .collect();
    heads.sort();
    let mut waiting: Vec<EnvelopeId> = (0..n).filter(|&i| !ready[i]).map(|i| ops[i].id).collect();
    waiting.sort();
    Folded {
        roster,
        rejected,
        waiting,
        missing: sel.missing_ids.clone(),
        heads,
        potential_admins,
    }
}

/// The member an `Init` names (its author has no roster entry before it applies).
fn founding_member(ops: &[&OpRecord], i: usize) -> Option<MemberId> {
    match &ops[i].op.op {
        Op::Init { member, .. } => Some(*member),
        _ => None,
    }
}

type Pass = (Roster, Vec<(EnvelopeId, RosterError)>, Vec<usize>);

/// What a pass tracks besides the roster.
#[derive(Default)]
struct Grants {
    /// Which operation made each member an admin, and added each device.
    admin: HashMap<MemberId, usize>,
    device: HashMap<DeviceId, usize>,
    /// Members in the order they became admin.
    seniority: HashMap<MemberId, usize>,
    restrictions: History,
    /// Per member, the removals of it that count (for [`Op::RestoreMember`]).
    removals: HashMap<MemberId, Vec<usize>>,
}

/// One application of every ready operation not set aside, in the order of rule 2.
fn linear_pass(
    genesis: &Genesis,
    sel: &Selected<'_>,
    ready: &[bool],
    children: &[Vec<usize>],
    ancestry: &Ancestry,
    set_aside: &HashSet<usize>,
) -> Pass {
    let ops = &sel.ops;
    let mut roster = Roster::new(genesis);
    let mut rejected = Vec::new();
    let mut applied = Vec::new();
    let mut grants = Grants::default();
    for (i, o) in ops.iter().enumerate() {
        if let Op::RemoveMember { member, .. } = o.op.op
            && ready[i]
            && !set_aside.contains(&i)
        {
            grants.removals.entry(member).or_default().push(i);
        }
    }

    let mut indegree: Vec<usize> = sel.deps.iter().map(Vec::len).collect();
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
        .map(|i| rank(&roster, &grants.seniority, i))
        .collect();
    while let Some((_, _, id, i)) = frontier.pop_first() {
        let rec = ops[i];
        if !set_aside.contains(&i) {
            match check_and_apply(&mut roster, rec, i, ancestry, &mut grants) {
                Ok(()) => {
                    applied.push(i);
                    record_grants(&rec.op.op, i, &roster, &mut grants);
                }
                Err(e) => rejected.push((id, e)),
            }
        }
        for &c in &children[i] {
            if !ready[c] {
                continue;
            }
            indegree[c] -= 1;
            if indegree[c] == 0 {
                frontier.insert(rank(&roster, &grants.seniority, c));
            }
        }
    }
    (roster, rejected, applied)
}

fn check_and_apply(
    roster: &mut Roster,
    rec: &OpRecord,
    i: usize,
    ancestry: &Ancestry,
    grants: &mut Grants,
) -> Result<(), RosterError> {
    if matches!(rec.op.op, Op::Init { .. }) {
        return roster.apply(&rec.author, &rec.op.op);
    }
    // Rule 3: the author's device, and an admin's grant, are in the causal past.
    let in_past = |j: Option<&usize>| j.is_some_and(|&j| ancestry.contains(i, j));
    let member = roster.member_of(&rec.author);
    let admin = member.is_some_and(|m| roster.members.get(&m).is_some_and(|m| m.admin));
    if roster.devices.contains_key(&rec.author) {
        if !in_past(grants.device.get(&rec.author)) {
            return Err(if admin {
                RosterError::NotAdminInCausalPast
            } else {
                RosterError::UnknownDevice(rec.author)
            });
        }
        if admin && !member.is_some_and(|m| in_past(grants.admin.get(&m))) {
            return Err(RosterError::NotAdminInCausalPast);
        }
    }
    match &rec.op.op {
        Op::RestrictThread {
            thread,
            category,
            members,
        } => {
            if !grants.restrictions.has_room(thread) {
                return Err(RosterError::TooManyChanges);
            }
            let view = grants.restrictions.view(thread, i, ancestry);
            let value =
                roster.restriction_by(&rec.author, *thread, *category, members, view.as_ref())?;
            let state = grants
                .restrictions
                .record(*thread, i, admin, Some(value), ancestry);
            roster.set_restriction(*thread, state);
            Ok(())
        }
        Op::UnrestrictThread { thread, category } => {
            roster.acting_admin(&rec.author)?;
            if !grants.restrictions.has_room(thread) {
                return Err(RosterError::TooManyChanges);
            }
            let view = grants.restrictions.view(thread, i, ancestry);
            roster.check_lift(*thread, *category, view.as_ref())?;
            let state = grants.restrictions.record(*thread, i, true, None, ancestry);
            roster.set_restriction(*thread, state);
            Ok(())
        }
        Op::RestoreMember { member }
            if grants
                .removals
                .get(member)
                .is_some_and(|rs| rs.iter().any(|&r| ancestry.concurrent(i, r))) =>
        {
            Err(RosterError::RemovalConcurrent)
        }
        Op::EmergencyAccess { from_ms, .. } if *from_ms != rec.op.at_ms => {
            Err(RosterError::WindowNotNow)
        }
        op => roster.apply(&rec.author, op),
    }
}

/// Notes which operation made a member an admin or added a device.
fn record_grants(op: &Op, i: usize, roster: &Roster, grants: &mut Grants) {
    let promote = |grants: &mut Grants, m: MemberId| {
        grants.admin.insert(m, i);
        let next = grants.seniority.len();
        grants.seniority.entry(m).or_insert(next);
    };
    match op {
        Op::Init { member, .. } => {
            promote(grants, *member);
            grants.device.insert(roster.founder.id, i);
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
        } => promote(grants, *member),
        // Re-stating an admin's role does not move its grant later.
        Op::ChangeRole {
            member,
            admin: true,
            ..
        } if !grants.admin.contains_key(member) => promote(grants, *member),
        Op::ChangeRole {
            member,
            admin: false,
            ..
        } => {
            grants.admin.remove(member);
        }
        Op::AddDevice { device, .. } | Op::AddInvitedDevice { device, .. } => {
            grants.device.insert(device.id, i);
        }
        _ => {}
    }
}
