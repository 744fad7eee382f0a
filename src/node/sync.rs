//! The node's side of network sync: its summary, the envelopes a peer lacks, received
//! envelopes (validated like every other), who may connect, and the outbox of envelopes
//! to push to connected peers.

use crate::core::envelope::Envelope;
use crate::core::ids::{ClinicId, DeviceId};
use crate::core::sync::{BATCH_BYTES, BATCH_ENVELOPES, Range, Summary};
use crate::node::{ImportReport, Node, NodeError};

impl Node {
    /// Starts collecting accepted envelopes for [`Node::take_outbox`] (a running node
    /// pushes them to its peers).
    pub fn set_relay(&mut self, on: bool) {
        self.relay = on;
        self.outbox.clear();
    }

    /// Envelopes accepted since the last call, encoded.
    pub fn take_outbox(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.outbox)
    }

    /// The clinic and what this device holds, or `None` before it belongs to a clinic.
    pub fn summary(&self) -> Option<(ClinicId, Summary)> {
        let r = self.replica.as_ref()?;
        Some((r.clinic(), Summary::from_heads(r.heads())))
    }

    /// Up to one batch of the envelopes in `range`, starting at `range.from`.
    pub fn load_batch(&self, range: &Range) -> Result<Vec<Vec<u8>>, NodeError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for env in self
            .store
            .envelopes_after(&range.log, &range.author, range.from)
        {
            let env = env?;
            if env.header.seq >= range.to || out.len() >= BATCH_ENVELOPES || bytes >= BATCH_BYTES {
                break;
            }
            let encoded = env.encode();
            bytes += encoded.len();
            out.push(encoded);
        }
        Ok(out)
    }

    /// Validates and stores envelopes received from a peer.
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
    /// Before this device knows its roster, only the device that enrolled it may.
    pub fn peer_allowed(&self, device: &DeviceId) -> bool {
        match &self.replica {
            None => self.inviter == Some(*device),
            Some(r) if !r.enrolled() => {
                self.inviter == Some(*device) || r.roster().active_member(device).is_some()
            }
            Some(r) => r.roster().active_member(device).is_some(),
        }
    }
}
