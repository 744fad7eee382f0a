//! A locked node that keeps syncing blind (45 CFR 164.312(a)(2)(iii)): it holds no
//! passphrase-derived key, no data key and no thread key, and decrypts nothing. It sends
//! peers the envelopes it has stored, and keeps those it receives in the store's inbox
//! ([`crate::store::blind`]); the next unlock hands them to the node
//! ([`Node::take_inbox`]), which validates each like any other received envelope.
//!
//! What it checks without keys, so that a stranger or an insider cannot fill the inbox
//! with junk: the envelope is of this clinic, its author was an active device when the
//! node locked, its signature holds, and it continues its author's chain (position and
//! link to the previous envelope). What only the roster and the keys can decide (may
//! this author write this log now? is the change well formed?) waits for the unlock.
//!
//! What stays in memory while locked: the device's ed25519 key inside the network (its
//! transport identity), the clinic id, the chain heads and the active devices' ids.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::sync::{SyncSide, fill_batch};
use super::{ImportReport, Node, NodeError};
use crate::core::envelope::Envelope;
use crate::core::ids::{ClinicId, DeviceId, EnvelopeId, LogId};
use crate::core::sync::{Range, Summary};
use crate::store::blind::{BlindStore, InboxError};

/// What an open node hands its locked self: nothing secret.
#[derive(Clone, Debug)]
pub struct Sight {
    clinic: ClinicId,
    heads: BTreeMap<(LogId, DeviceId), (u64, EnvelopeId)>,
    pub(super) allowed: BTreeSet<DeviceId>,
}

/// The locked node.
pub struct BlindNode {
    store: BlindStore,
    sight: Sight,
    /// A sync session finished while locked (the unlock counts it as contact).
    synced: bool,
}

/// Why a received envelope was not kept.
#[derive(Debug, thiserror::Error)]
enum Unkept {
    #[error("envelope of another clinic")]
    OtherClinic,
    #[error("author is not an active device of this clinic")]
    Stranger,
    #[error("bad signature")]
    Signature,
    #[error("does not continue its author's chain")]
    Chain,
}

impl Node {
    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.store.path()
    }

    /// Whether the store's envelope records were changed outside Huddle (found at open;
    /// [`crate::store::Store::changed_outside`]): the node is quarantined.
    pub fn envelopes_modified(&self) -> bool {
        self.store.envelopes_modified()
    }

    /// What this node's locked self may know, or `None` outside a clinic.
    pub fn sight(&self) -> Option<Sight> {
        let replica = self.replica.as_ref()?;
        Some(Sight {
            clinic: replica.clinic(),
            heads: replica
                .heads()
                .iter()
                .map(|(chain, head)| (*chain, (head.seq, head.id)))
                .collect(),
            allowed: match &self.awaited {
                Some(recorded) => recorded
                    .anchor
                    .active
                    .iter()
                    .copied()
                    .map(DeviceId)
                    .collect(),
                None => self.active_devices(),
            },
        })
    }

    /// Takes in what arrived while the node was locked: every envelope is validated and
    /// accepted as if received now, then leaves the inbox. Returns how many arrived.
    pub fn take_inbox(&mut self) -> Result<ImportReport, NodeError> {
        let mut report = ImportReport::default();
        loop {
            let (keys, envelopes) = self.store.inbox_batch()?;
            if keys.is_empty() {
                break;
            }
            self.ingest_all(envelopes, &mut report)?;
            self.store.remove_inbox(&keys)?;
        }
        if report.accepted + report.waiting + report.refused.len() > 0 {
            self.store.flush()?;
            tracing::info!(
                accepted = report.accepted,
                waiting = report.waiting,
                refused = report.refused.len(),
                "took in what arrived while locked"
            );
        }
        Ok(report)
    }
}

impl BlindNode {
    /// Opens the store at `dir` blind, for a node that saw `sight` before it locked.
    pub fn open(dir: &Path, mut sight: Sight) -> Result<BlindNode, NodeError> {
        let store = BlindStore::open(dir)?;
        for (chain, tip) in store.inbox_tips() {
            if sight.heads.get(&chain).is_none_or(|h| h.0 < tip.0) {
                sight.heads.insert(chain, tip);
            }
        }
        Ok(BlindNode {
            store,
            sight,
            synced: false,
        })
    }

    /// Envelopes waiting in the inbox.
    pub fn inbox_len(&self) -> u64 {
        self.store.inbox_len()
    }

    /// Whether a sync session finished while locked.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// What the node saw before it locked, to lock again after a failed unlock.
    pub fn sight(&self) -> &Sight {
        &self.sight
    }

    pub fn dir(&self) -> &Path {
        self.store.path()
    }

    fn check(&self, env: &Envelope) -> Result<bool, Unkept> {
        let h = &env.header;
        if h.clinic != self.sight.clinic {
            return Err(Unkept::OtherClinic);
        }
        if !self.sight.allowed.contains(&h.author) {
            return Err(Unkept::Stranger);
        }
        let (next, prev) = match self.sight.heads.get(&(h.log, h.author)) {
            Some((seq, id)) => (seq + 1, Some(*id)),
            None => (0, None),
        };
        if h.seq < next {
            return Ok(false);
        }
        if h.seq != next || h.prev != prev {
            return Err(Unkept::Chain);
        }
        env.verify().map_err(|_| Unkept::Signature)?;
        Ok(true)
    }

    fn keep(&mut self, bytes: &[u8], report: &mut ImportReport) -> Result<(), NodeError> {
        let env = match Envelope::decode(bytes) {
            Ok(env) => env,
            Err(e) => {
                report.refused.push(e.to_string());
                return Ok(());
            }
        };
        match self.check(&env) {
            Ok(false) => report.duplicate += 1,
            Err(e) => report.refused.push(e.to_string()),
            Ok(true) => {
                let id = env.id();
                match self.store.put_inbox(&env, &id) {
                    Ok(()) => {
                        let h = &env.header;
                        self.sight.heads.insert((h.log, h.author), (h.seq, id));
                        report.waiting += 1;
                    }
                    Err(InboxError::Full { .. }) => report
                        .refused
                        .push("the locked node's inbox is full".into()),
                    Err(InboxError::Store(e)) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

impl SyncSide for BlindNode {
    fn summary(&self) -> Option<(ClinicId, Summary)> {
        let chains = self
            .sight
            .heads
            .iter()
            .map(|(chain, (seq, _))| (*chain, seq + 1))
            .collect();
        Some((self.sight.clinic, Summary { chains }))
    }

    fn load_batch(&self, range: &Range) -> Result<Vec<Vec<u8>>, NodeError> {
        Ok(fill_batch(
            self.store
                .envelopes_after(&range.log, &range.author, range.from),
            range,
        ))
    }

    fn receive(&mut self, envelopes: &[Vec<u8>]) -> Result<ImportReport, NodeError> {
        let mut report = ImportReport::default();
        for bytes in envelopes {
            self.keep(bytes, &mut report)?;
        }
        if report.waiting > 0 {
            self.store.flush()?;
        }
        Ok(report)
    }

    fn receive_push(
        &mut self,
        envelopes: &[Vec<u8>],
        _from: DeviceId,
    ) -> Result<ImportReport, NodeError> {
        self.receive(envelopes)
    }

    fn synced_with_peer(&mut self) -> Result<(), NodeError> {
        self.synced = true;
        Ok(())
    }

    fn peer_allowed(&self, device: &DeviceId) -> bool {
        self.sight.allowed.contains(device)
    }
}
