//! What the identity file holds ([`crate::store::identity_file`] seals it), and the
//! roster anchor in it: the trust that survives a store changed outside Huddle.
//!
//! The file is sealed with the passphrase's key and written atomically, so someone with
//! the disk but not the passphrase cannot edit it (only put an older copy back). Besides
//! this device's keys, genesis and names, it records the roster this device had folded:
//! the fold's heads (operations no other depends on) and the devices active then
//! ([`Anchor`]). A roster that holds those heads, each with its whole causal past,
//! includes every operation this device had; one that lacks a revocation (deleted from
//! the unsealed `envelopes` tree, or a store put back to an older copy) does not. Until
//! its roster holds them again, the device writes nothing, grants no key, and syncs only
//! with the devices the anchor names as active ([`Node::roster_missing`]).
//!
//! Encoding, versioned: version 1 (the previous release) is [`Identity`] alone, postcard.
//! Version 2 appends an [`Extension`] after it (its first byte is its version). A device
//! of the previous release reads a version-2 file as version 1 — postcard reads the
//! fields it knows and ignores the bytes after them — and rewrites it without the
//! extension at its next change: a downgrade drops the anchor until this release writes
//! it again. The file is only ever read by the device that wrote it.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::core::ids::{DeviceId, EnvelopeId};

use super::Node;

/// The version of [`Extension`] this release writes.
const VERSION: u8 = 2;

/// What the identity file holds (version 1: the fields, in this order, never change).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Default)]
pub(super) struct Identity {
    pub device: Vec<u8>,
    pub genesis: Option<Vec<u8>>,
    pub inviter: Option<[u8; 32]>,
    pub clinic_name: Option<String>,
    pub member: Option<String>,
    pub peers: Vec<String>,
}

/// The roster this device had folded when the file was last written.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq, Debug)]
pub(super) struct Anchor {
    /// The fold's heads: roster operations (envelope ids) no other one depends on.
    pub heads: Vec<[u8; 32]>,
    /// The devices active in that roster.
    pub active: Vec<[u8; 32]>,
}

impl Anchor {
    pub fn heads(&self) -> Vec<EnvelopeId> {
        self.heads.iter().copied().map(EnvelopeId).collect()
    }

    pub fn admits(&self, device: &DeviceId) -> bool {
        self.active.contains(&device.0)
    }
}

/// Appended to [`Identity`] from version 2 on.
#[derive(Serialize, Deserialize)]
struct Extension {
    version: u8,
    anchor: Anchor,
}

/// An anchor read from the identity file, with the names it was written with (kept in
/// the file while the roster that gives them is not back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Recorded {
    pub anchor: Anchor,
    pub clinic_name: Option<String>,
    pub member: Option<String>,
}

/// The file's plaintext for `identity` and `anchor` (version 2; version 1 without one).
pub(super) fn encode(identity: &Identity, anchor: Option<&Anchor>) -> Zeroizing<Vec<u8>> {
    let mut plain = Zeroizing::new(postcard::to_stdvec(identity).unwrap_or_default());
    if let Some(anchor) = anchor {
        let extension = Extension {
            version: VERSION,
            anchor: anchor.clone(),
        };
        plain.extend(postcard::to_stdvec(&extension).unwrap_or_default());
    }
    plain
}

/// Reads a file's plaintext of any version; `Err` names what does not read.
pub(super) fn decode(plain: &[u8]) -> Result<(Identity, Option<Recorded>), &'static str> {
    let (identity, rest): (Identity, &[u8]) =
        postcard::take_from_bytes(plain).map_err(|_| "unreadable contents")?;
    if rest.is_empty() {
        return Ok((identity, None));
    }
    // A later version may append more after the extension: what this one knows is read.
    let extension: Extension =
        postcard::from_bytes(rest).map_err(|_| "unreadable roster anchor")?;
    if extension.version < VERSION {
        return Err("unknown roster anchor version");
    }
    let recorded = Recorded {
        anchor: extension.anchor,
        clinic_name: identity.clinic_name.clone(),
        member: identity.member.clone(),
    };
    Ok((identity, Some(recorded)))
}

impl Node {
    /// The anchor of the roster as this node holds it now, or as recorded while that one
    /// is not back.
    pub(super) fn anchor(&self) -> Option<Anchor> {
        if let Some(recorded) = &self.awaited {
            return Some(recorded.anchor.clone());
        }
        let replica = self.replica.as_ref()?;
        Some(Anchor {
            heads: replica.roster_heads().iter().map(|id| id.0).collect(),
            active: self.active_devices().into_iter().map(|d| d.0).collect(),
        })
    }

    /// How many roster operations this device had folded (its identity file recorded
    /// them) its roster does not hold yet: 0 once everything it had is back.
    pub fn roster_missing(&self) -> usize {
        match (&self.awaited, &self.replica) {
            (Some(recorded), Some(replica)) => replica.roster_missing(&recorded.anchor.heads()),
            (Some(recorded), None) => recorded.anchor.heads.len(),
            (None, _) => 0,
        }
    }

    /// Waits for `recorded` if this node's roster does not hold it all: it writes
    /// nothing, grants nothing and syncs only with the devices active then until it does.
    /// Returns how many of its roster operations are missing.
    pub(super) fn await_recorded(&mut self, recorded: Option<Recorded>) -> usize {
        self.awaited = recorded;
        let missing = self.roster_missing();
        if missing == 0 {
            self.awaited = None;
        } else if let Some(replica) = self.replica.as_mut() {
            replica.set_resyncing(true);
        }
        missing
    }

    /// After a roster change: the roster awaited is back once it holds every recorded head.
    pub(super) fn note_roster_back(&mut self) {
        if self.awaited.is_some() && self.roster_missing() == 0 {
            self.awaited = None;
            tracing::info!("every roster operation this device had is back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            device: vec![7; 64],
            genesis: Some(vec![1, 2, 3]),
            inviter: Some([9; 32]),
            clinic_name: Some("Maple".into()),
            member: Some("Sam K.".into()),
            peers: vec!["127.0.0.1:47733".into()],
        }
    }

    fn anchor() -> Anchor {
        Anchor {
            heads: vec![[4; 32], [5; 32]],
            active: vec![[6; 32]],
        }
    }

    #[test]
    fn a_version_1_file_reads_without_an_anchor() {
        let plain = postcard::to_stdvec(&identity()).unwrap();
        let (read, recorded) = decode(&plain).unwrap();
        assert_eq!(read.member.as_deref(), Some("Sam K."));
        assert_eq!(recorded, None);
        assert_eq!(encode(&identity(), None).as_slice(), plain.as_slice());
    }

    #[test]
    fn a_version_2_file_keeps_its_anchor_and_a_version_1_reader_still_reads_it() {
        let plain = encode(&identity(), Some(&anchor()));
        let (read, recorded) = decode(&plain).unwrap();
        assert_eq!(read.peers, identity().peers);
        let recorded = recorded.expect("an anchor");
        assert_eq!(recorded.anchor, anchor());
        assert_eq!(recorded.member.as_deref(), Some("Sam K."));
        // What the previous release does: `postcard::from_bytes` of version 1's struct.
        let old: Identity = postcard::from_bytes(&plain).unwrap();
        assert_eq!(old.device, identity().device);
        assert_eq!(old.clinic_name.as_deref(), Some("Maple"));
    }

    /// While the roster its identity file recorded is not back, a device syncs only with
    /// the devices active in it (not with one its partial roster lists as active, such as
    /// a laptop whose revocation is missing), and writes nothing.
    #[test]
    fn until_the_recorded_roster_is_back_only_its_active_devices_sync_and_nothing_is_written() {
        use crate::core::policy::{Category, Role};
        use crate::core::thread::Subject;
        use crate::node::{Node, NodeError};
        let root = tempfile::tempdir().unwrap();
        let pass = b"a passphrase long enough";
        let mut node = Node::create(&root.path().join("a"), pass).unwrap();
        node.init_clinic("Maple", "Sam K.", Role::Clinician)
            .unwrap();
        let thread = node
            .new_thread(Subject::Topic("Rota".into()), Category::Operations, "Week")
            .unwrap();
        let laptop = Node::create(&root.path().join("b"), pass).unwrap().device();
        let peer = Node::create(&root.path().join("c"), pass).unwrap().device();
        for (name, device) in [("Lee", &laptop), ("Cy", &peer)] {
            node.add_member(name, Role::Clinician, false).unwrap();
            node.add_device(name, *device).unwrap();
        }
        assert!(node.peer_allowed(&laptop.id) && node.peer_allowed(&peer.id));
        let me = node.device().id;
        let recorded = Recorded {
            anchor: Anchor {
                // An operation (the laptop's revocation) this roster does not hold.
                heads: vec![[9; 32]],
                active: vec![me.0, peer.id.0],
            },
            clinic_name: Some("Maple".into()),
            member: Some("Sam K.".into()),
        };
        assert_eq!(node.await_recorded(Some(recorded.clone())), 1);
        assert!(!node.peer_allowed(&laptop.id), "the laptop is not admitted");
        assert!(node.peer_allowed(&peer.id));
        let sight = node.sight().unwrap();
        assert!(!sight.allowed.contains(&laptop.id) && sight.allowed.contains(&peer.id));
        let envelopes = node.store.envelope_count();
        assert!(matches!(
            node.post(thread, "while the roster is not back", false, None),
            Err(NodeError::RosterNotBack(1))
        ));
        assert!(matches!(
            node.revoke_device(&peer.id.to_hex()),
            Err(NodeError::RosterNotBack(1))
        ));
        assert_eq!(
            node.store.envelope_count(),
            envelopes,
            "nothing was written"
        );
        assert_eq!(node.status().roster_missing, 1);
        // The identity file keeps the recorded anchor, not the partial roster's.
        node.keep_identity();
        let (_, kept) = decode(&node.store.read_identity().unwrap()).unwrap();
        assert_eq!(kept, Some(recorded));
    }

    #[test]
    fn a_damaged_or_older_extension_is_refused() {
        let mut plain = encode(&identity(), Some(&anchor())).to_vec();
        let at = postcard::to_stdvec(&identity()).unwrap().len();
        plain[at] = 1;
        assert_eq!(decode(&plain).err(), Some("unknown roster anchor version"));
        plain.truncate(at + 3);
        plain[at] = VERSION;
        assert_eq!(decode(&plain).err(), Some("unreadable roster anchor"));
    }
}
