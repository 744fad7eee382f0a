//! The roster log on this device: sealed roster envelopes until their key arrives,
//! decrypted operations, and the roster folded from them.
//!
//! Folding costs time in the number of operations, so an operation refolds the roster
//! only if it could take effect: its author's device has been an admin's at some point.
//! Anyone else's roster operation is decrypted, kept (it costs O(1)) and has no effect.

use std::collections::{HashMap, HashSet};

use crate::core::envelope::{Body, Envelope};
use crate::core::ids::EnvelopeId;
use crate::core::roster::{self, Folded, Genesis, Op, OpRecord, Roster, RosterError, RosterOp};

use super::keyring::{KeySlot, Keyring};
use super::{Effect, Notice, Results};

pub(super) struct RosterLog {
    genesis: Genesis,
    ops: HashMap<EnvelopeId, OpRecord>,
    sealed: HashMap<EnvelopeId, Envelope>,
    folded: Folded,
    /// Operations arrived that may change the fold.
    dirty: bool,
    /// Bumped at every change of the folded roster.
    version: u64,
    /// Operations already reported as having no effect.
    reported: HashSet<EnvelopeId>,
}

impl RosterLog {
    pub fn new(genesis: &Genesis) -> Self {
        RosterLog {
            genesis: genesis.clone(),
            ops: HashMap::new(),
            sealed: HashMap::new(),
            folded: roster::fold(genesis, &[]),
            dirty: false,
            version: 0,
            reported: HashSet::new(),
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
        self.folded.waiting.len() + self.sealed.len()
    }

    /// Accepted sealed roster envelopes not decrypted yet.
    pub fn sealed(&self) -> impl Iterator<Item = &Envelope> + Clone {
        self.sealed.values()
    }

    pub fn hold_sealed(&mut self, id: EnvelopeId, env: Envelope) {
        self.sealed.insert(id, env);
    }

    /// Decrypts every held envelope whose key is now held.
    pub fn decrypt(&mut self, keys: &Keyring, out: &mut Results) {
        let mut inert = Vec::new();
        let ready: Vec<EnvelopeId> = self
            .sealed
            .iter()
            .filter(|(_, e)| keys.get(&KeySlot::of(&e.header)).is_some())
            .map(|(id, _)| *id)
            .collect();
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
                    let author = env.header.author;
                    // Member-signed operations (thread restriction, emergency access)
                    // may matter whoever wrote them; the fold decides.
                    let may_matter = matches!(op.op, Op::Init { .. })
                        || op.op.member_signed()
                        || self.folded.ever_admin.contains(&author)
                        || !self.folded.waiting.is_empty();
                    self.dirty |= may_matter;
                    if !may_matter {
                        inert.push(id);
                    }
                    self.ops.insert(id, OpRecord { id, author, op });
                }
                None => out.notices.push(Notice::Undecryptable(id)),
            }
        }
        // Without a refold coming, an operation no admin wrote is reported here, at O(1);
        // with one, the fold reports it.
        if !self.dirty {
            for id in inert {
                if self.reported.insert(id) {
                    out.notices
                        .push(Notice::RosterRejected(id, RosterError::NotAdmin));
                }
            }
        }
    }

    /// Refolds if operations that may matter arrived; returns whether the roster changed.
    pub fn refold(&mut self, out: &mut Results) -> bool {
        if !std::mem::take(&mut self.dirty) {
            return false;
        }
        let ops: Vec<OpRecord> = self.ops.values().cloned().collect();
        let folded = roster::fold(&self.genesis, &ops);
        for (id, e) in &folded.rejected {
            if self.reported.insert(*id) {
                out.notices.push(Notice::RosterRejected(*id, e.clone()));
            }
        }
        let changed = folded.roster != self.folded.roster;
        self.folded = folded;
        if changed {
            self.version += 1;
            out.effects.push(Effect::RosterChanged);
        }
        changed
    }
}
