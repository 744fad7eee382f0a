//! Envelopes held back: waiting for their predecessor, or for their author to appear in
//! the roster. Held envelopes cost memory and disk on a device that may not even know
//! their author, so they are bounded in count, in bytes, and per author.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::core::envelope::{Body, Envelope};
use crate::core::ids::{DeviceId, EnvelopeId, LogId};
use crate::core::roster::{Roster, WriteVerdict};

use super::IngestError;

/// Most envelopes held at once.
pub const MAX_PENDING: usize = 200_000;
/// Most bytes of held envelopes (their bodies).
pub const MAX_PENDING_BYTES: usize = 256 * 1024 * 1024;
/// Most envelopes held for one author: a stranger's or a hostile device's flood fills
/// its own share, not the device. A new device's first sync holds at most one batch
/// per author before the roster admits them.
pub const MAX_PENDING_PER_AUTHOR: usize = 20_000;
/// Most bytes held for one author.
pub const MAX_PENDING_BYTES_PER_AUTHOR: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub(super) struct Pending {
    envelopes: HashMap<EnvelopeId, Envelope>,
    index: HashMap<(LogId, DeviceId), BTreeMap<u64, BTreeSet<EnvelopeId>>>,
    /// Per author: envelopes and bytes held.
    per_author: HashMap<DeviceId, (usize, usize)>,
    bytes: usize,
}

fn size(env: &Envelope) -> usize {
    match &env.body {
        Body::Sealed(ct) => ct.len(),
        Body::Grants(g) => g.iter().map(|g| g.sealed.len() + 32).sum(),
    }
}

impl Pending {
    pub fn len(&self) -> usize {
        self.envelopes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }

    pub fn contains(&self, id: &EnvelopeId) -> bool {
        self.envelopes.contains_key(id)
    }

    /// Whether one more envelope like `env` may be held.
    pub fn admit(&self, env: &Envelope) -> Result<(), IngestError> {
        if self.envelopes.len() >= MAX_PENDING {
            return Err(IngestError::PendingFull("count"));
        }
        if self.bytes + size(env) > MAX_PENDING_BYTES {
            return Err(IngestError::PendingFull("bytes"));
        }
        let (count, bytes) = self
            .per_author
            .get(&env.header.author)
            .copied()
            .unwrap_or((0, 0));
        if count >= MAX_PENDING_PER_AUTHOR || bytes + size(env) > MAX_PENDING_BYTES_PER_AUTHOR {
            return Err(IngestError::PendingFull("for this author"));
        }
        Ok(())
    }

    pub fn hold(&mut self, id: EnvelopeId, env: Envelope) {
        let h = &env.header;
        let fresh = self
            .index
            .entry((h.log, h.author))
            .or_default()
            .entry(h.seq)
            .or_default()
            .insert(id);
        if fresh {
            let n = size(&env);
            let mine = self.per_author.entry(h.author).or_default();
            mine.0 += 1;
            mine.1 += n;
            self.bytes += n;
            self.envelopes.insert(id, env);
        }
    }

    /// Holds a persisted envelope again after a restart (bounds are not re-checked).
    pub fn restore(&mut self, id: EnvelopeId, env: Envelope) {
        self.hold(id, env);
    }

    pub fn take(&mut self, id: &EnvelopeId) -> Option<Envelope> {
        let env = self.envelopes.remove(id)?;
        let h = &env.header;
        let key = (h.log, h.author);
        if let Some(by_seq) = self.index.get_mut(&key) {
            if let Some(ids) = by_seq.get_mut(&h.seq) {
                ids.remove(id);
                if ids.is_empty() {
                    by_seq.remove(&h.seq);
                }
            }
            if by_seq.is_empty() {
                self.index.remove(&key);
            }
        }
        let n = size(&env);
        if let Some(mine) = self.per_author.get_mut(&h.author) {
            mine.0 -= 1;
            mine.1 -= n;
            if mine.0 == 0 {
                self.per_author.remove(&h.author);
            }
        }
        self.bytes -= n;
        Some(env)
    }

    /// Held envelopes that sit at (or before) the next position of their chain and
    /// whose author the roster has decided on (allowed, or never); `next` gives a
    /// chain's next position.
    pub fn ready(
        &self,
        roster: &Roster,
        next: impl Fn(&LogId, &DeviceId) -> u64,
    ) -> Vec<EnvelopeId> {
        self.index
            .iter()
            .filter_map(|((log, author), by_seq)| {
                let (seq, ids) = by_seq.first_key_value()?;
                let decided = roster.write_verdict(author, log, *seq) != WriteVerdict::NotYet;
                (decided && *seq <= next(log, author))
                    .then(|| ids.iter().copied().collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    }

    /// [`Pending::ready`] for one chain only.
    pub fn ready_in(
        &self,
        roster: &Roster,
        (log, author): (LogId, DeviceId),
        next: impl Fn(&LogId, &DeviceId) -> u64,
    ) -> Vec<EnvelopeId> {
        let Some((seq, ids)) = self
            .index
            .get(&(log, author))
            .and_then(|by_seq| by_seq.first_key_value())
        else {
            return Vec::new();
        };
        let decided = roster.write_verdict(&author, &log, *seq) != WriteVerdict::NotYet;
        if decided && *seq <= next(&log, &author) {
            ids.iter().copied().collect()
        } else {
            Vec::new()
        }
    }

    /// Held roster envelopes (a joining device looks for its roster key among them).
    pub fn roster_envelopes(&self) -> impl Iterator<Item = &Envelope> {
        self.envelopes
            .values()
            .filter(|e| e.header.log == LogId::Roster)
    }
}
