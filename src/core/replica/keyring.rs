//! The keys this device holds, and who has been given which.
//!
//! Keys belong to key logs: the roster's, and one per category. A category key of
//! epoch `e` encrypts every thread of that category at `e` through a per-thread key
//! derived from it, so a rotation after a revocation seals one new key per category to
//! each remaining reader — not one per thread. A log's epoch is the roster's
//! ([`Roster::epoch`]); two devices may mint a key for the same epoch concurrently, so
//! a key is named by its slot (log, epoch, fingerprint), readers keep every key, and
//! writers pick the same one ([`Keyring::writing_slot`]).
//!
//! A grant counts only from an author allowed to write the key log (checked before
//! acceptance) and only for recipients allowed to read it; a grant for an epoch the
//! roster has not reached is held, and counts later only if its author may still read
//! the log then (a device cannot plant keys for future epochs before it is revoked).
//!
//! A restricted thread has key slots of its own, outside its category's key log: a
//! thread envelope whose epoch carries [`RESTRICTED_EPOCH`] is sealed with one of them,
//! and their grants travel in the thread's own log (see `restricted`, which writes,
//! checks and hands them on). So holding the category key does not open what was
//! written to a thread after its restriction; what was written before stays under the
//! category key.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

use crate::core::cipher::SecretKey;
use crate::core::envelope::{Body, Envelope, Grant, Header};
use crate::core::identity::{DevicePublic, DeviceSecret};
use crate::core::ids::{ClinicId, DeviceId, EnvelopeId, KeyId, LogId};
use crate::core::roster::Roster;
use crate::core::seal;

use super::{Effect, Notice, Results};

/// Grants held for future epochs, at most (older ones are dropped first).
pub const MAX_DEFERRED_GRANTS: usize = 1024;

/// Set in the epoch of a restricted thread's own key (the rest is its generation). No
/// roster epoch comes near it, so the header alone tells every device, with keys or
/// without, which kind of key sealed a thread envelope.
pub const RESTRICTED_EPOCH: u32 = 1 << 31;

/// One key: its key log (the roster or a category), epoch and fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KeySlot {
    pub log: LogId,
    pub epoch: u32,
    pub key: KeyId,
}

impl KeySlot {
    /// Bytes of [`KeySlot::to_bytes`].
    pub const LEN: usize = 18 + 4 + 8;

    pub fn of(header: &Header) -> KeySlot {
        let log = match header.log {
            LogId::Thread { .. } if header.epoch & RESTRICTED_EPOCH != 0 => header.log,
            log => log.key_log(),
        };
        KeySlot {
            log,
            epoch: header.epoch,
            key: header.key,
        }
    }

    /// Whether this is a restricted thread's own key (its key log is the thread's log).
    pub fn is_restricted(&self) -> bool {
        matches!(self.log, LogId::Thread { .. })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.log.key_bytes().to_vec();
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.key.0);
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<KeySlot> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(KeySlot {
            log: LogId::from_key_bytes(&b[..18])?,
            epoch: u32::from_be_bytes(b[18..22].try_into().ok()?),
            key: KeyId(b[22..30].try_into().ok()?),
        })
    }
}

/// A key's public fingerprint (reveals nothing of the key).
pub fn key_id(key: &SecretKey) -> KeyId {
    let mut h = Sha256::new();
    h.update(b"huddle/key-id/v1");
    h.update(key.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    KeyId(id)
}

/// The key of one thread at one epoch, derived from its category key (or from the
/// thread's own key, for a restricted thread).
fn derive_thread_key(category_key: &SecretKey, log: &LogId) -> SecretKey {
    let mut h = Sha256::new();
    h.update(b"huddle/thread-key/v1");
    h.update(category_key.as_bytes());
    h.update(log.key_bytes());
    SecretKey::from_bytes(h.finalize().into())
}

/// What a sealed grant is bound to: clinic, slot and recipient.
pub fn grant_context(clinic: &ClinicId, slot: &KeySlot, recipient: &DeviceId) -> Vec<u8> {
    let mut c = b"huddle/grant/v2".to_vec();
    c.extend_from_slice(&clinic.0);
    c.extend_from_slice(&slot.to_bytes());
    c.extend_from_slice(&recipient.0);
    c
}

/// Grants for an epoch the roster has not reached; this device's own key among them
/// already opened (so no secret is needed to decide them later).
struct Deferred {
    envelope: EnvelopeId,
    author: DeviceId,
    slot: KeySlot,
    recipients: Vec<DeviceId>,
    mine: Option<SecretKey>,
}

#[derive(Default)]
pub(super) struct Keyring {
    pub(super) keys: HashMap<KeySlot, SecretKey>,
    granted: HashSet<(KeySlot, DeviceId)>,
    /// For restricted slots: every device that may hold the key (see `restricted`).
    pub(super) holders: HashMap<KeySlot, HashSet<DeviceId>>,
    /// For restricted slots: the earliest time a grant of the key states (see
    /// `restricted`; unknown after a restart, taken as 0).
    pub(super) minted: HashMap<KeySlot, u64>,
    /// Restricted grants to this device that do not count yet (see `restricted`).
    pub(super) held: Vec<super::restricted::HeldGrant>,
    /// Roster keys sealed to this device by authors it cannot check yet (it joined by
    /// bundle and cannot read the roster): confirmed once one opens an accepted roster
    /// envelope.
    candidates: Vec<(KeySlot, SecretKey)>,
    deferred: Vec<Deferred>,
}

impl Keyring {
    pub fn restore(
        &mut self,
        keys: impl IntoIterator<Item = (KeySlot, SecretKey)>,
        granted: impl IntoIterator<Item = (KeySlot, DeviceId)>,
    ) {
        self.keys.extend(keys);
        for (slot, device) in granted {
            if slot.is_restricted() {
                self.holders.entry(slot).or_default().insert(device);
            }
            self.granted.insert((slot, device));
        }
    }

    pub fn slots(&self) -> Vec<KeySlot> {
        let mut s: Vec<KeySlot> = self.keys.keys().copied().collect();
        s.sort();
        s
    }

    pub fn holds_any(&self, key_log: &LogId) -> bool {
        self.keys.keys().any(|s| s.log == *key_log)
    }

    pub fn get(&self, slot: &KeySlot) -> Option<&SecretKey> {
        self.keys.get(slot)
    }

    /// The newest epoch of `key_log` this device holds a key of.
    pub fn newest_epoch(&self, key_log: &LogId) -> Option<u32> {
        self.keys
            .keys()
            .filter(|s| s.log == *key_log)
            .map(|s| s.epoch)
            .max()
    }

    /// The key to write `key_log` with at `epoch`: of the keys held for that epoch, the
    /// one with the smallest fingerprint, so that devices which minted concurrently
    /// converge on one key as soon as they hold each other's.
    pub fn writing_slot(&self, key_log: &LogId, epoch: u32) -> Option<KeySlot> {
        self.keys
            .keys()
            .filter(|s| s.log == *key_log && s.epoch == epoch)
            .min_by_key(|s| s.key)
            .copied()
    }

    /// The key that opens an envelope with header `h` (derived for thread logs).
    pub fn thread_key(&self, h: &Header) -> Option<SecretKey> {
        let key = self.keys.get(&KeySlot::of(h))?;
        Some(match h.log {
            LogId::Thread { .. } => derive_thread_key(key, &h.log),
            _ => key.clone(),
        })
    }

    /// Adds a key; `false` if it was held already.
    pub fn add(&mut self, slot: KeySlot, key: SecretKey, out: &mut Results) -> bool {
        if self.keys.contains_key(&slot) {
            return false;
        }
        out.effects.push(Effect::Key {
            slot,
            key: key.clone(),
        });
        self.keys.insert(slot, key);
        true
    }

    /// Counts and opens the grants of an accepted envelope by an author allowed to
    /// write its key log. Returns whether this device gained a key.
    #[allow(clippy::too_many_arguments)]
    pub fn accept_grants(
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
        let mine = grants
            .iter()
            .find(|g| g.recipient == *me)
            .filter(|_| !self.keys.contains_key(&slot))
            .and_then(|g| self.open(secret, clinic, me, roster, &slot, &h.author, g, id, out));
        if h.epoch > roster.epoch(&h.log) {
            out.notices.push(Notice::GrantDeferred(id));
            if self.deferred.len() >= MAX_DEFERRED_GRANTS {
                self.deferred.remove(0);
            }
            self.deferred.push(Deferred {
                envelope: id,
                author: h.author,
                slot,
                recipients: grants.iter().map(|g| g.recipient).collect(),
                mine,
            });
            return false;
        }
        self.count(&slot, grants.iter().map(|g| g.recipient), out);
        mine.is_some_and(|key| self.add(slot, key, out))
    }

    pub(super) fn count(
        &mut self,
        slot: &KeySlot,
        recipients: impl IntoIterator<Item = DeviceId>,
        out: &mut Results,
    ) {
        // Every recipient of an accepted grant envelope (its author was allowed to write
        // the key log) counts as served, whatever this device knows of the recipient
        // yet: counting must not depend on the order envelopes arrive in. Grants to
        // devices that may not read the log are harmless: only readers are ever owed.
        for r in recipients {
            if slot.is_restricted() {
                self.holders.entry(*slot).or_default().insert(r);
            }
            if self.granted.insert((*slot, r)) {
                out.effects.push(Effect::Granted {
                    slot: *slot,
                    device: r,
                });
            }
        }
    }

    /// Opens this device's grant: it must come from the envelope author's key and
    /// carry the key the slot names.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open(
        &self,
        secret: &DeviceSecret,
        clinic: &ClinicId,
        me: &DeviceId,
        roster: &Roster,
        slot: &KeySlot,
        author: &DeviceId,
        grant: &Grant,
        id: EnvelopeId,
        out: &mut Results,
    ) -> Option<SecretKey> {
        let author_exchange = match roster.devices.get(author) {
            Some(d) => Some(d.public.exchange),
            None if *author == roster.founder.id => Some(roster.founder.exchange),
            None => None,
        };
        let ctx = grant_context(clinic, slot, me);
        match seal::open(secret, &ctx, &grant.sealed) {
            Ok((key, sender)) if Some(sender) == author_exchange && key_id(&key) == slot.key => {
                Some(key)
            }
            _ => {
                out.notices.push(Notice::BadGrant(id));
                None
            }
        }
    }

    /// The roster changed: grants for epochs it has now reached count if their author
    /// may still read the log. Returns the slots this device gained a key of.
    pub fn reconsider_deferred(&mut self, roster: &Roster, out: &mut Results) -> Vec<KeySlot> {
        let (due, later): (Vec<Deferred>, Vec<Deferred>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| d.slot.epoch <= roster.epoch(&d.slot.log));
        self.deferred = later;
        let mut gained = Vec::new();
        for d in due {
            if !roster.may_read(&d.author, &d.slot.log) {
                out.notices.push(Notice::GrantRefused(d.envelope));
                continue;
            }
            self.count(&d.slot, d.recipients, out);
            if let Some(key) = d.mine
                && self.add(d.slot, key, out)
            {
                gained.push(d.slot);
            }
        }
        gained
    }

    /// A held roster envelope may carry this device's roster key from an author it
    /// cannot check yet: keep the key as a candidate.
    pub fn consider_roster_candidate(
        &mut self,
        secret: &DeviceSecret,
        clinic: &ClinicId,
        me: &DeviceId,
        env: &Envelope,
    ) {
        let Body::Grants(grants) = &env.body else {
            return;
        };
        let slot = KeySlot::of(&env.header);
        if slot.log != LogId::Roster || self.keys.contains_key(&slot) {
            return;
        }
        if let Some(g) = grants.iter().find(|g| g.recipient == *me)
            && let Ok((key, _)) = seal::open(secret, &grant_context(clinic, &slot, me), &g.sealed)
            && key_id(&key) == slot.key
            && !self.candidates.iter().any(|(s, _)| *s == slot)
        {
            self.candidates.push((slot, key));
        }
    }

    /// Confirms candidates that open one of `sealed` (accepted roster envelopes not yet
    /// decrypted). Returns whether any was confirmed.
    pub fn confirm_roster_candidates<'a>(
        &mut self,
        sealed: impl Iterator<Item = &'a Envelope> + Clone,
        out: &mut Results,
    ) -> bool {
        let mut confirmed = false;
        for (slot, key) in std::mem::take(&mut self.candidates) {
            let opens = sealed.clone().any(|e| match &e.body {
                Body::Sealed(ct) => {
                    KeySlot::of(&e.header) == slot && key.decrypt(&e.header.aad(), ct).is_ok()
                }
                Body::Grants(_) => false,
            });
            if opens {
                confirmed |= self.add(slot, key, out);
            } else {
                self.candidates.push((slot, key));
            }
        }
        confirmed
    }

    /// Keys this device holds that a device allowed to read them has not been given.
    pub fn missing_grants(
        &self,
        roster: &Roster,
        me: &DeviceId,
    ) -> Vec<(KeySlot, Vec<DevicePublic>)> {
        let mut out: Vec<_> = self
            .keys
            .keys()
            // Restricted keys go only to who may read the thread now (see `restricted`).
            .filter(|slot| !slot.is_restricted() && roster.may_read(me, &slot.log))
            .filter_map(|slot| {
                let missing: Vec<DevicePublic> = roster
                    .readers_of(&slot.log)
                    .into_iter()
                    .filter(|d| d.id != *me && !self.granted.contains(&(*slot, d.id)))
                    .collect();
                (!missing.is_empty()).then_some((*slot, missing))
            })
            .collect();
        out.sort_by_key(|(slot, _)| *slot);
        out
    }
}
