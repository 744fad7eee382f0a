//! The node's side of network sync: its summary, the envelopes a peer lacks, received
//! envelopes (validated like every other), who may connect, and the outbox of envelopes
//! to push to connected peers.

use crate::core::envelope::Envelope;
use crate::core::ids::{ClinicId, DeviceId};
use crate::core::limits::MAX_ENVELOPE_BYTES;
use crate::core::sync::{Range, Summary, batch_has_room};
use crate::node::{ImportReport, Node, NodeError};
use crate::store::StoreError;

/// What the network asks of a node, open or locked ([`super::blind::BlindNode`]): the
/// sync protocol's side of it.
pub trait SyncSide {
    /// The clinic and what this device holds, or `None` before it belongs to a clinic.
    fn summary(&self) -> Option<(ClinicId, Summary)>;
    /// Up to one batch of the envelopes in `range`, starting at `range.from`.
    fn load_batch(&self, range: &Range) -> Result<Vec<Vec<u8>>, NodeError>;
    /// Validates and keeps envelopes received in a sync session.
    fn receive(&mut self, envelopes: &[Vec<u8>]) -> Result<ImportReport, NodeError>;
    /// Validates and keeps envelopes `from` pushed as they were created.
    fn receive_push(
        &mut self,
        envelopes: &[Vec<u8>],
        from: DeviceId,
    ) -> Result<ImportReport, NodeError>;
    /// A sync session with a peer finished.
    fn synced_with_peer(&mut self) -> Result<(), NodeError>;
    /// Whether `device` may sync with this one.
    fn peer_allowed(&self, device: &DeviceId) -> bool;
}

impl SyncSide for Node {
    fn summary(&self) -> Option<(ClinicId, Summary)> {
        Node::summary(self)
    }
    fn load_batch(&self, range: &Range) -> Result<Vec<Vec<u8>>, NodeError> {
        Node::load_batch(self, range)
    }
    fn receive(&mut self, envelopes: &[Vec<u8>]) -> Result<ImportReport, NodeError> {
        Node::receive(self, envelopes)
    }
    fn receive_push(
        &mut self,
        envelopes: &[Vec<u8>],
        from: DeviceId,
    ) -> Result<ImportReport, NodeError> {
        Node::receive_push(self, envelopes, from)
    }
    fn synced_with_peer(&mut self) -> Result<(), NodeError> {
        Node::synced_with_peer(self)
    }
    fn peer_allowed(&self, device: &DeviceId) -> bool {
        Node::peer_allowed(self, device)
    }
}

/// Up to one batch of `envelopes` (one chain, from `range.from`) that ends before
/// `range.to`. A record that cannot be read is skipped, not fatal: the round goes on,
/// and the peer gets that envelope from another device.
pub(super) fn fill_batch(
    envelopes: impl Iterator<Item = Result<Envelope, StoreError>>,
    range: &Range,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for env in envelopes {
        let env = match env {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!("not sent in sync: {e}");
                continue;
            }
        };
        if env.header.seq >= range.to {
            break;
        }
        let encoded = env.encode();
        if encoded.len() > MAX_ENVELOPE_BYTES {
            // Stored before the limit existed: no peer would accept it.
            tracing::warn!("not sent in sync: envelope of {} bytes", encoded.len());
            continue;
        }
        if !batch_has_room(out.len(), bytes, encoded.len()) {
            break;
        }
        bytes += encoded.len();
        out.push(encoded);
    }
    out
}

/// An envelope to push to connected peers.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub envelope: Vec<u8>,
    /// The peer it came from, which has it already.
    pub not_to: Option<DeviceId>,
}

impl Node {
    /// Starts collecting accepted envelopes for [`Node::take_outbox`] (a running node
    /// pushes them to its peers).
    pub fn set_relay(&mut self, on: bool) {
        self.relay = on;
        self.outbox.clear();
    }

    /// Envelopes to push since the last call, encoded.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }

    /// Queues an accepted envelope for push if it is live news: authored here, or
    /// received by push (then passed on to every peer but the one that sent it).
    /// Envelopes received in a sync session or from a bundle may be a whole history:
    /// the network passes them on by starting sessions with its other peers, which
    /// send only what each lacks (pushing them would send a newly enrolled device's
    /// whole download back to its peers).
    pub(super) fn queue_push(&mut self, env: &Envelope) {
        if !self.relay {
            return;
        }
        let not_to = if env.header.author == self.secret.id() {
            None
        } else if let Some(from) = self.pushed_by {
            Some(from)
        } else {
            return;
        };
        self.outbox.push(Outgoing {
            envelope: env.encode(),
            not_to,
        });
    }

    /// The clinic and what this device holds, or `None` before it belongs to a clinic.
    pub fn summary(&self) -> Option<(ClinicId, Summary)> {
        let r = self.replica.as_ref()?;
        Some((r.clinic(), Summary::from_heads(r.heads())))
    }

    /// Up to one batch of the envelopes in `range`, starting at `range.from`, and never
    /// past the chain's head as the replica accepted it.
    pub fn load_batch(&self, range: &Range) -> Result<Vec<Vec<u8>>, NodeError> {
        let next = self.replica.as_ref().map_or(0, |r| {
            r.heads()
                .get(&(range.log, range.author))
                .map_or(0, |h| h.seq + 1)
        });
        Ok(fill_batch(
            self.store
                .chain(&range.log, &range.author, range.from..next),
            range,
        ))
    }

    /// Validates and stores envelopes that `from` pushed as they were created; the
    /// accepted ones are pushed on to other peers (see [`Node::take_outbox`]).
    pub fn receive_push(
        &mut self,
        envelopes: &[Vec<u8>],
        from: DeviceId,
    ) -> Result<ImportReport, NodeError> {
        self.pushed_by = Some(from);
        let result = self.receive(envelopes);
        self.pushed_by = None;
        result
    }

    /// Validates and stores envelopes received from a peer in a sync session.
    pub fn receive(&mut self, envelopes: &[Vec<u8>]) -> Result<ImportReport, NodeError> {
        let mut report = ImportReport::default();
        let mut decoded = Vec::with_capacity(envelopes.len());
        for bytes in envelopes {
            match Envelope::decode(bytes) {
                Ok(env) => decoded.push(env),
                Err(e) => report.refused.push(e.to_string()),
            }
        }
        self.ingest_all(decoded, &mut report)?;
        Ok(report)
    }

    /// The device's identity, for the network (its libp2p key is the same ed25519 key).
    pub fn network_identity(&self) -> std::sync::Arc<crate::core::identity::DeviceSecret> {
        std::sync::Arc::new(crate::core::identity::DeviceSecret::from_bytes(
            &self.secret.to_bytes(),
        ))
    }

    /// Trusts `inviter` (named in the invitation being redeemed) until the roster arrives.
    pub fn expect_inviter(&mut self, inviter: DeviceId) {
        if self.replica.is_none() {
            self.inviter = Some(inviter);
        }
    }

    /// Whether `device` may exchange data with this one: an active device of the clinic.
    /// Before this device knows its roster, only the device that enrolled it may; while
    /// the roster its identity file recorded is not back, only the devices active in it.
    pub fn peer_allowed(&self, device: &DeviceId) -> bool {
        if let Some(recorded) = &self.awaited {
            return recorded.anchor.admits(device);
        }
        match &self.replica {
            None => self.inviter == Some(*device),
            Some(r) if !r.enrolled() => {
                self.inviter == Some(*device) || r.roster().active_member(device).is_some()
            }
            Some(r) => r.roster().active_member(device).is_some(),
        }
    }
}
