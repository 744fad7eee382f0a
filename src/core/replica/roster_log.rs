//! The roster log on this device: sealed roster envelopes until their key arrives,
//! decrypted operations, and the roster folded from them.
//!
//! What it costs:
//! - a non-admin device's roster operations are bounded at ingest
//!   ([`RosterLog::within_quota`]: count and bytes, `core::limits`), at O(1) each;
//! - an admin operation no admin's device could have written is inert (see
//!   `core::roster::candidates`): decrypted, kept and relayed, reported once, and never
//!   refolded for — unless a waiting operation was waiting for it;
//! - an operation stamped more than [`MAX_ROSTER_CLOCK_AHEAD_MS`] ahead of this
//!   device's clock is held until then (the fold uses no clock, so this is what keeps
//!   an emergency window from being booked ahead);
//! - anything else refolds the operations the fold considers.

use std::collections::{HashMap, HashSet};

use crate::core::envelope::{Body, Envelope};
use crate::core::ids::{DeviceId, EnvelopeId};
use crate::core::limits::{
    MAX_MEMBER_ROSTER_BYTES, MAX_MEMBER_ROSTER_OPS, MAX_ROSTER_CLOCK_AHEAD_MS,
};
use crate::core::roster::{
    self, Folded, Genesis, OpRecord, Roster, RosterError, RosterOp, candidates_inert,
};

use super::keyring::{KeySlot, Keyring};
use super::{Effect, Notice, Results};

pub(super) struct RosterLog {
    genesis: Genesis,
    ops: HashMap<EnvelopeId, OpRecord>,
    sealed: HashMap<EnvelopeId, Envelope>,
    /// Decrypted operations stamped ahead of this device's clock, until it gets there.
    ahead: HashMap<EnvelopeId, OpRecord>,
    /// Per author: sealed roster operations held (count, bytes), for the quota.
    spent: HashMap<DeviceId, (usize, usize)>,
    folded: Folded,
    /// Operations arrived that may change the fold.
    dirty: bool,
    /// Members' own operations (restrictions, emergencies) by devices that are not an
    /// admin's arrived: they decide no envelope's acceptance, so they are folded once
    /// at the end of the input rather than once each.
    deferred: bool,
    /// Bumped at every change of the folded roster.
    version: u64,
    /// Operations already reported as having no effect.
    reported: HashSet<EnvelopeId>,
    /// Inert operations admitted and not reported yet (judged once every operation
    /// they cite is held and no refold is due).
    fresh_inert: Vec<EnvelopeId>,
    /// Inert operations not judged yet, by an operation they cite that is not held.
    unjudged: HashMap<EnvelopeId, Vec<EnvelopeId>>,
    /// This device's clock at the last input.
    now_ms: u64,
}

impl RosterLog {
    pub fn new(genesis: &Genesis) -> Self {
        RosterLog {
            genesis: genesis.clone(),
            ops: HashMap::new(),
            sealed: HashMap::new(),
            ahead: HashMap::new(),
            spent: HashMap::new(),
            folded: roster::fold(genesis, &[]),
            dirty: false,
            deferred: false,
            version: 0,
            reported: HashSet::new(),
            fresh_inert: Vec::new(),
            unjudged: HashMap::new(),
            now_ms: 0,
        }
    }

    pub fn roster(&self) -> &Roster {
        &self.folded.roster
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn heads(&self) -> &[EnvelopeId] {
        &self.folded.heads
    }
    pub fn waiting(&self) -> usize {
        self.folded.waiting.len() + self.sealed.len() + self.ahead.len()
    }

    /// Whether a sealed roster operation of `env.encode().len()` bytes by `author` fits
    /// its quota: admins' devices have none; anyone else's hold at most
    /// [`MAX_MEMBER_ROSTER_OPS`] operations of [`MAX_MEMBER_ROSTER_BYTES`] in all.
    pub fn within_quota(&self, author: &DeviceId, bytes: usize) -> bool {
        if self.roster().active_member(author).is_some_and(|m| m.admin) {
            return true;
        }
        let (count, spent) = self.spent.get(author).copied().unwrap_or_default();
        count < MAX_MEMBER_ROSTER_OPS && spent.saturating_add(bytes) <= MAX_MEMBER_ROSTER_BYTES
    }

    /// Moves the clock; operations it has reached join the fold at the next refold.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let limit = self.now_ms.saturating_add(MAX_ROSTER_CLOCK_AHEAD_MS);
        let due: Vec<EnvelopeId> = self
            .ahead
            .iter()
            .filter(|(_, r)| r.op.at_ms <= limit)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(record) = self.ahead.remove(&id) {
                self.admit(record);
            }
        }
    }

    /// How many of `heads` this log does not hold with every operation of their causal
    /// past (decrypted): what a fold could not include yet. Each operation is visited once.
    pub fn missing(&self, heads: &[EnvelopeId]) -> usize {
        let mut whole: HashSet<EnvelopeId> = HashSet::new();
        heads
            .iter()
            .filter(|head| {
                let mut stack = vec![**head];
                let mut visiting = HashSet::new();
                while let Some(id) = stack.pop() {
                    if whole.contains(&id) || !visiting.insert(id) {
                        continue;
                    }
                    match self.ops.get(&id).or_else(|| self.ahead.get(&id)) {
                        Some(record) => stack.extend(record.op.deps.iter().copied()),
                        None => return true,
                    }
                }
                whole.extend(visiting);
                false
            })
            .count()
    }

    /// Accepted sealed roster envelopes not decrypted yet.
    pub fn sealed(&self) -> impl Iterator<Item = &Envelope> + Clone {
        self.sealed.values()
    }

    pub fn hold_sealed(&mut self, id: EnvelopeId, env: Envelope) {
        if matches!(env.body, Body::Sealed(_)) && !self.sealed.contains_key(&id) {
            let spent = self.spent.entry(env.header.author).or_default();
            spent.0 += 1;
            spent.1 = spent.1.saturating_add(env.encode().len());
        }
        self.sealed.insert(id, env);
    }

    /// Decrypts every held envelope whose key is now held.
    pub fn decrypt(&mut self, keys: &Keyring, out: &mut Results) {
        let ready: Vec<EnvelopeId> = self
            .sealed
            .iter()
            .filter(|(_, e)| keys.get(&KeySlot::of(&e.header)).is_some())
            .map(|(id, _)| *id)
            .collect();
        let limit = self.now_ms.saturating_add(MAX_ROSTER_CLOCK_AHEAD_MS);
        for id in ready {
            let Some(env) = self.sealed.remove(&id) else {
                continue;
            };
            let (Body::Sealed(ct), Some(key)) = (&env.body, keys.get(&KeySlot::of(&env.header)))
            else {
                continue;
            };
            let op = key
                .decrypt(&env.header.aad(), ct)
                .ok()
                .and_then(|plain| postcard::from_bytes::<RosterOp>(&plain).ok());
            match op {
                Some(op) => {
                    let record = OpRecord {
                        id,
                        author: env.header.author,
                        seq: env.header.seq,
                        op,
                    };
                    if record.op.at_ms > limit {
                        self.ahead.insert(id, record);
                    } else {
                        self.admit(record);
                    }
                }
                None => out.notices.push(Notice::Undecryptable(id)),
            }
        }
        self.report_inert(out);
    }

    /// Takes a decrypted operation in; it makes the next refold due unless it is inert
    /// and nothing waits for it.
    fn admit(&mut self, record: OpRecord) {
        let admins = &self.folded.potential_admins;
        let waited_for = self.folded.missing.contains(&record.id);
        let inert = candidates_inert(&record, admins) && !waited_for;
        let members_own = record.op.op.member_signed() && !admins.contains(&record.author);
        if members_own && !waited_for {
            self.deferred = true;
        } else {
            self.dirty |= !inert;
        }
        if inert {
            self.fresh_inert.push(record.id);
        }
        if let Some(waiting) = self.unjudged.remove(&record.id) {
            self.fresh_inert.extend(waiting);
        }
        self.ops.insert(record.id, record);
    }

    /// Inert operations are reported here, once each, when no refold is due (which
    /// could make their author an admin's) and everything they cite is held.
    fn report_inert(&mut self, out: &mut Results) {
        if self.dirty || self.deferred {
            return;
        }
        let admins = &self.folded.potential_admins;
        let ops = &self.ops;
        for id in std::mem::take(&mut self.fresh_inert) {
            let Some(record) = ops.get(&id) else {
                continue;
            };
            if !candidates_inert(record, admins) {
                continue; // the fold judges it
            }
            if let Some(absent) = record.op.deps.iter().find(|d| !ops.contains_key(d)) {
                self.unjudged.entry(*absent).or_default().push(id);
                continue;
            }
            if self.reported.insert(id) {
                out.notices
                    .push(Notice::RosterRejected(id, RosterError::NotAdmin));
            }
        }
    }

    /// Refolds if operations that may matter arrived (with `at_end`, members' own ones
    /// too: the input is done); returns whether the roster changed.
    pub fn refold(&mut self, out: &mut Results, at_end: bool) -> bool {
        let due = std::mem::take(&mut self.dirty) | (at_end && std::mem::take(&mut self.deferred));
        if !due {
            return false;
        }
        self.deferred = false;
        let folded = roster::fold(&self.genesis, self.ops.values());
        for (id, e) in &folded.rejected {
            if self.reported.insert(*id) {
                out.notices.push(Notice::RosterRejected(*id, e.clone()));
            }
        }
        let widened = folded
            .potential_admins
            .iter()
            .any(|d| !self.folded.potential_admins.contains(d));
        let changed = folded.roster != self.folded.roster;
        self.folded = folded;
        if changed {
            self.version += 1;
            out.effects.push(Effect::RosterChanged);
        }
        // A device newly able to act as an admin's: its earlier operations count now.
        if widened {
            self.dirty = true;
            return self.refold(out, at_end) || changed;
        }
        self.report_inert(out);
        changed
    }
}
