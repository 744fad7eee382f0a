//! Keys of restricted threads (45 CFR 164.312(a)(2)(ii)), so that the roster's rule of
//! who reads a restricted thread ([`Roster::may_read_at`]) holds against a modified
//! client too, not only an honest one.
//!
//! - Own keys: from its restriction on, a thread is sealed with random keys of its own,
//!   in slots (the thread's log, [`RESTRICTED_EPOCH`] | generation, fingerprint); their
//!   grants travel in the thread's log. A device whose role reads the category but who
//!   is no participant holds the category key, which opens none of it.
//! - Writing: before sealing into a restricted thread, the writer takes, of the thread's
//!   keys it holds, the newest whose holders are exactly the devices that may read the
//!   thread now (participants, and admins only as participants; active emergency
//!   grantees). If none is, it mints the next generation and seals it to exactly those
//!   devices. So once someone's access ends (restriction narrowed, member removed,
//!   device revoked, emergency window over), the next post uses a key they never held.
//! - Holders of a key: the author and every recipient of every grant envelope of it
//!   this device accepted into a chain, whether the grant counts or not — too many only
//!   cost a rotation, too few would leak. A key handed on to an emergency reader by a
//!   device whose grant this writer has not seen yet is caught by time instead: a key
//!   first granted before an emergency window of the thread ended is never written with
//!   after it ended (times as the signed envelopes and roster operation state them).
//! - Handing on: after each input, a device that may read the thread now seals the
//!   thread's keys it holds (the newest [`MAX_KEYS_HANDED_ON`]) to each device allowed
//!   now that is not a holder yet — an emergency grantee, a newly named participant, a
//!   participant's new device — once (recorded like category grants), so an emergency
//!   reader reads without waiting for a post. At most [`MAX_RESTRICTED_GRANTS_PER_INPUT`]
//!   grant envelopes per input; emergency grants are bounded per member by the roster.
//! - Counting: a grant opens for this device only if its author and every recipient
//!   may read the thread at the time the grant states (its signed `at_ms`), under the
//!   roster as this device knows it: a non-participant cannot plant a key it knows, and
//!   nobody can give a key to a non-reader through an honest device. A grant to this
//!   device that does not count yet is held ([`MAX_HELD_RESTRICTED_GRANTS`], in memory)
//!   and decided again when the roster changes.
//!
//! A direct conversation (`core::roster::direct`) is sealed the same way from its first
//! change on: its participants are its restriction, and it has no category key.
//!
//! Not covered: what was written before the restriction (or by a device that had not
//! learned of it yet) stays under the category key, readable by the category's readers;
//! and a device keeps what it could once read.

use rand::CryptoRng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};

use crate::core::cipher::SecretKey;
use crate::core::envelope::{Grant, Header};
use crate::core::identity::{DevicePublic, DeviceSecret};
use crate::core::ids::{ClinicId, DeviceId, EnvelopeId, LogId};
use crate::core::roster::Roster;

use super::keyring::{KeySlot, Keyring, RESTRICTED_EPOCH, key_id};
use super::{AuthorError, Ctx, Lookup, Notice, Replica, Results};

/// Restricted grants to this device held until they count, at most (oldest dropped).
pub const MAX_HELD_RESTRICTED_GRANTS: usize = 1024;
/// Keys of one thread handed to a device that may now read it, newest first.
pub const MAX_KEYS_HANDED_ON: usize = 64;
/// Grant envelopes handing on restricted keys that one input may author.
pub const MAX_RESTRICTED_GRANTS_PER_INPUT: usize = 128;

/// A restricted grant to this device that does not count yet, its key already opened.
pub(super) struct HeldGrant {
    author: DeviceId,
    at_ms: u64,
    slot: KeySlot,
    recipients: Vec<DeviceId>,
    key: SecretKey,
}

/// Whether a grant of a restricted thread's key counts: its author and each recipient
/// may read the thread at the time the grant states.
pub fn restricted_grant_counts(
    roster: &Roster,
    log: &LogId,
    author: &DeviceId,
    at_ms: u64,
    recipients: &[DeviceId],
) -> bool {
    roster.may_read_at(author, log, at_ms)
        && recipients.iter().all(|r| roster.may_read_at(r, log, at_ms))
}

/// When the latest emergency window of thread `log` that has ended by `now_ms` ended
/// (0 if none): a key first granted before then may have reached its reader.
pub fn emergencies_ended_by(roster: &Roster, log: &LogId, now_ms: u64) -> u64 {
    let Some(thread) = log.thread() else {
        return 0;
    };
    // Forgotten grants (kept grants are bounded per member) still count.
    let forgotten = Some(roster.forgotten_window_end(&thread)).filter(|end| *end <= now_ms);
    roster
        .emergency_grants()
        .iter()
        .filter(|e| e.thread == thread && e.until_ms <= now_ms)
        .map(|e| e.until_ms)
        .chain(forgotten)
        .max()
        .unwrap_or(0)
}

impl Keyring {
    /// Records the holders of an accepted grant envelope of a restricted thread's key
    /// and opens this device's grant if it counts (else holds it). Returns whether this
    /// device gained a key.
    #[allow(clippy::too_many_arguments)]
    pub fn accept_restricted_grants(
        &mut self,
        secret: &DeviceSecret,
        clinic: &ClinicId,
        me: &DeviceId,
        roster: &Roster,
        id: EnvelopeId,
        h: &Header,
        grants: &[Grant],
        out: &mut Results,
    ) -> bool {
        let slot = KeySlot::of(h);
        let recipients: Vec<DeviceId> = grants.iter().map(|g| g.recipient).collect();
        let minted = self.minted.entry(slot).or_insert(h.at_ms);
        *minted = (*minted).min(h.at_ms);
        self.count(
            &slot,
            std::iter::once(h.author).chain(recipients.iter().copied()),
            out,
        );
        if self.keys.contains_key(&slot) {
            return false;
        }
        let Some(key) = grants
            .iter()
            .find(|g| g.recipient == *me)
            .and_then(|g| self.open(secret, clinic, me, roster, &slot, &h.author, g, id, out))
        else {
            return false;
        };
        if restricted_grant_counts(roster, &h.log, &h.author, h.at_ms, &recipients) {
            return self.add(slot, key, out);
        }
        out.notices.push(Notice::RestrictedGrantHeld(id));
        if self.held.len() >= MAX_HELD_RESTRICTED_GRANTS {
            self.held.remove(0);
        }
        self.held.push(HeldGrant {
            author: h.author,
            at_ms: h.at_ms,
            slot,
            recipients,
            key,
        });
        false
    }

    /// The roster changed: held restricted grants that count now are taken. Returns
    /// the slots this device gained a key of.
    pub fn reconsider_held_restricted(
        &mut self,
        roster: &Roster,
        out: &mut Results,
    ) -> Vec<KeySlot> {
        let (due, later): (Vec<HeldGrant>, Vec<HeldGrant>) =
            std::mem::take(&mut self.held).into_iter().partition(|g| {
                restricted_grant_counts(roster, &g.slot.log, &g.author, g.at_ms, &g.recipients)
            });
        self.held = later;
        let mut gained = Vec::new();
        for g in due {
            if self.add(g.slot, g.key, out) {
                gained.push(g.slot);
            }
        }
        gained
    }

    /// Whether `device` may hold the key in a restricted `slot`.
    pub fn holds(&self, slot: &KeySlot, device: &DeviceId) -> bool {
        self.holders.get(slot).is_some_and(|h| h.contains(device))
    }

    /// The key to seal into restricted thread `log` with: the newest held whose holders
    /// are exactly `allowed` and that was first granted at or after `not_before_ms`
    /// (smallest fingerprint among equals, so that concurrent mints converge).
    pub fn current_restricted(
        &self,
        log: &LogId,
        allowed: &HashSet<DeviceId>,
        not_before_ms: u64,
    ) -> Option<KeySlot> {
        self.keys
            .keys()
            .filter(|s| s.log == *log && self.holders.get(s).is_some_and(|h| h == allowed))
            .filter(|s| self.minted.get(s).copied().unwrap_or(0) >= not_before_ms)
            .max_by_key(|s| (s.epoch, Reverse(s.key)))
            .copied()
    }

    /// The newest generation of restricted thread `log` this device holds a key of.
    fn newest_restricted_epoch(&self, log: &LogId) -> Option<u32> {
        self.keys
            .keys()
            .filter(|s| s.log == *log)
            .map(|s| s.epoch)
            .max()
    }

    /// Restricted keys held, by thread log, newest first.
    fn restricted_by_thread(&self) -> BTreeMap<LogId, Vec<KeySlot>> {
        let mut by: BTreeMap<LogId, Vec<KeySlot>> = BTreeMap::new();
        for slot in self.keys.keys().filter(|s| s.is_restricted()) {
            by.entry(slot.log).or_default().push(*slot);
        }
        for slots in by.values_mut() {
            slots.sort_by_key(|s| Reverse((s.epoch, Reverse(s.key))));
        }
        by
    }
}

impl Replica {
    /// The key slot to seal into `log` with if it is a restricted thread (minting and
    /// granting a new key when no held one has exactly the allowed readers as holders);
    /// `None` for any other log.
    pub(super) fn restricted_writing_slot<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        log: &LogId,
        out: &mut Results,
    ) -> Result<Option<KeySlot>, AuthorError> {
        let roster = self.roster.roster();
        let Some(thread) = log.thread() else {
            return Ok(None);
        };
        if roster.own_keys_of(&thread).is_none() {
            return Ok(None);
        }
        if !roster.may_read_at(&self.me.id, log, ctx.now_ms) {
            return Err(AuthorError::NotAllowed);
        }
        let readers = roster.readers_at(log, ctx.now_ms);
        let allowed: HashSet<DeviceId> = readers.iter().map(|d| d.id).collect();
        let not_before = emergencies_ended_by(roster, log, ctx.now_ms);
        if let Some(slot) = self.keys.current_restricted(log, &allowed, not_before) {
            return Ok(Some(slot));
        }
        let epoch = self
            .keys
            .newest_restricted_epoch(log)
            .map_or(RESTRICTED_EPOCH, |e| e.saturating_add(1) | RESTRICTED_EPOCH);
        let key = SecretKey::generate(ctx.rng);
        let slot = KeySlot {
            log: *log,
            epoch,
            key: key_id(&key),
        };
        let env = self.author_grants(ctx, &slot, &key, &readers)?;
        self.commit_own(ctx, env, out)?;
        Ok(Some(slot))
    }

    /// Hands the keys of restricted threads this device may read now to the devices
    /// allowed now that hold none of them yet (see the module doc). Returns whether it
    /// authored anything.
    pub(super) fn hand_on_restricted_keys<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        out: &mut Results,
    ) -> bool {
        let now = ctx.now_ms;
        let mut work: Vec<(KeySlot, Vec<DevicePublic>)> = Vec::new();
        let roster = self.roster.roster();
        'threads: for (log, slots) in self.keys.restricted_by_thread() {
            let restricted = log
                .thread()
                .is_some_and(|t| roster.own_keys_of(&t).is_some());
            if !restricted || !roster.may_read_at(&self.me.id, &log, now) {
                continue;
            }
            let readers = roster.readers_at(&log, now);
            for slot in slots.into_iter().take(MAX_KEYS_HANDED_ON) {
                let missing: Vec<DevicePublic> = readers
                    .iter()
                    .filter(|d| !self.keys.holds(&slot, &d.id))
                    .copied()
                    .collect();
                if !missing.is_empty() {
                    work.push((slot, missing));
                    if work.len() >= MAX_RESTRICTED_GRANTS_PER_INPUT {
                        break 'threads;
                    }
                }
            }
        }
        self.grant_each(ctx, work, out)
    }
}
