//! The device's identity kept beside the store, and rebuilding a store that cannot be
//! used from it. The identity file holds what this device cannot get back from its
//! peers: its secret keys, its clinic's genesis and who enrolled it (plus names and peer
//! addresses, to say what was recovered and whom to sync with), and the roster anchor
//! ([`super::identity`]). Everything else comes back by the normal sync. The damaged or
//! changed store is moved aside, never deleted, and the envelopes still readable in it
//! are salvaged, each validated again like a received one.
//!
//! A salvage never brings back a smaller roster: the roster log is salvaged only if its
//! fold holds every roster head the identity file recorded. Otherwise (a revocation, a
//! demotion or a restriction removed from the records) the roster comes from the peers
//! the anchor names as active, and the device writes nothing until it is back.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::core::envelope::Envelope;
use crate::core::identity::DeviceSecret;
use crate::core::ids::{DeviceId, LogId};
use crate::core::replica::{Ctx, Input, Replica};
use crate::core::roster::SignedGenesis;
use crate::store::{Sealed, Store, StoreError, identity_file, recovery};

use super::identity::{self, Identity, Recorded};
use super::{
    DEVICE_KEY, GENESIS_KEY, INVITER_KEY, ImportReport, NoLookup, Node, NodeError, RESYNC_KEY,
    now_ms,
};

/// What a rebuild recovered and what it could not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Why the store was rebuilt.
    pub reason: String,
    /// Where the damaged store was moved (nothing is deleted).
    pub damaged_copy: Option<PathBuf>,
    pub device: String,
    pub clinic: Option<String>,
    pub member: Option<String>,
    /// Envelopes read back from the damaged store.
    pub salvaged: usize,
    /// Why nothing could be read from the damaged store, if so.
    pub salvage_failed: Option<String>,
    /// The roster log was left out of the salvage: this many of the roster operations
    /// the identity file recorded are not in it (it comes back from the peers).
    pub roster_left_out: Option<usize>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the store could not be used ({}); it was rebuilt from {}",
            self.reason,
            identity_file::IDENTITY_FILE
        )?;
        write!(f, "recovered: this device ({})", self.device)?;
        if let Some(c) = &self.clinic {
            write!(f, ", clinic {c}")?;
        }
        if let Some(m) = &self.member {
            write!(f, ", member {m}")?;
        }
        writeln!(f)?;
        match (&self.salvage_failed, self.salvaged) {
            (Some(why), _) => writeln!(
                f,
                "salvaged: nothing (the damaged store could not be read: {why})"
            )?,
            (None, n) => writeln!(f, "salvaged: {n} envelopes from the damaged store")?,
        }
        if let Some(n) = self.roster_left_out {
            writeln!(
                f,
                "roster: not salvaged ({n} roster operation(s) this device had are missing from \
                 the damaged store): it comes back from the clinic's other devices, and this \
                 device writes nothing until it has"
            )?;
        }
        writeln!(
            f,
            "lost: whatever this device had not yet synced to another device (unless \
             salvaged above); run `huddle serve` to get everything else back from your peers"
        )?;
        if let Some(p) = &self.damaged_copy {
            write!(f, "the damaged store is kept at {}", p.display())?;
        }
        Ok(())
    }
}

/// Whether an error at open means the store is damaged (and may be rebuilt); records
/// changed outside Huddle are damage too.
fn is_damage(e: &NodeError) -> bool {
    matches!(
        e,
        NodeError::Store(
            StoreError::Damaged { .. }
                | StoreError::Modified { .. }
                | StoreError::Corrupt { .. }
                | StoreError::NotFound(_)
                | StoreError::Format { .. }
                | StoreError::Sled(
                    sled::Error::Corruption { .. }
                        | sled::Error::ReportableBug(_)
                        | sled::Error::Unsupported(_)
                )
        )
    )
}

impl Node {
    /// Opens the data directory; a store that is damaged is rebuilt from the identity file
    /// (the report says what was recovered). A wrong passphrase never rebuilds anything.
    pub fn open_or_rebuild(
        dir: &Path,
        passphrase: &[u8],
    ) -> Result<(Node, Option<RecoveryReport>), NodeError> {
        // The identity file checks the passphrase before sled touches anything (sled
        // rewrites what it recovers from): a wrong one changes nothing, damage or not.
        // It is checked once, so one wrong passphrase counts (and costs) once.
        let (known, recorded) = match identity_file::open(dir, passphrase) {
            Ok((plain, key, params)) => {
                let recorded = match identity::decode(&plain) {
                    Ok((_, recorded)) => recorded,
                    Err(why) => {
                        tracing::warn!("the identity file's contents: {why}");
                        None
                    }
                };
                (Some((key, params)), recorded)
            }
            Err(e @ StoreError::WrongPassphrase(_)) => return Err(e.into()),
            Err(e) if identity_file::exists(dir) => {
                tracing::warn!("{e}");
                (None, None)
            }
            Err(_) => (None, None),
        };
        let identity_opened = known.is_some();
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Node::open_store(dir, passphrase, known, recorded)
        }))
        .unwrap_or_else(|_| {
            Err(StoreError::Damaged {
                path: dir.to_path_buf(),
                why: "reading it failed".into(),
            }
            .into())
        });
        let e = match opened {
            Ok(node) => return Ok((node, None)),
            Err(e) => e,
        };
        if !identity_file::exists(dir) {
            return Err(e);
        }
        let damaged = match &e {
            // The store's own key record may be what is damaged: the identity file, whose
            // checksum tells damage from a wrong passphrase, decides.
            NodeError::Store(StoreError::WrongPassphrase(_)) => identity_opened,
            e => is_damage(e),
        };
        if !damaged {
            return Err(e);
        }
        let report = Node::rebuild(dir, passphrase, &e.to_string())?;
        Ok(report)
    }

    /// `huddle repair`: rebuilds the store from the identity file if it is damaged or
    /// quarantined; `None` when it opens and reads normally (nothing is changed then).
    pub fn repair(dir: &Path, passphrase: &[u8]) -> Result<Option<RecoveryReport>, NodeError> {
        let (node, report) = Node::open_or_rebuild(dir, passphrase)?;
        let Some(why) = node.store.changed_outside().cloned() else {
            return Ok(report);
        };
        // Envelope records changed outside Huddle open quarantined (so that `audit
        // verify` can name what changed); a repair rebuilds the store.
        drop(node);
        let why = format!("it was changed outside Huddle: {why}");
        let (node, report) = Node::rebuild(dir, passphrase, &why)?;
        drop(node);
        Ok(report)
    }

    /// Builds a fresh store from the identity file, moving the damaged one aside (`why`:
    /// the reason, for the report). The rebuilt replica authors nothing while the salvage
    /// is taken in; afterwards it waits for a peer unless it is alone in its clinic.
    fn rebuild(
        dir: &Path,
        passphrase: &[u8],
        why: &str,
    ) -> Result<(Node, Option<RecoveryReport>), NodeError> {
        let (plain, wrap, params) = identity_file::open(dir, passphrase)?;
        let damaged_file = |why| StoreError::IdentityDamaged {
            path: identity_file::path(dir),
            why,
        };
        let (identity, recorded) = identity::decode(&plain).map_err(damaged_file)?;
        let device: &[u8; 64] = identity
            .device
            .as_slice()
            .try_into()
            .map_err(|_| damaged_file("bad device key"))?;
        let secret = DeviceSecret::from_bytes(device);
        let genesis = match &identity.genesis {
            Some(g) => Some(SignedGenesis::decode(g).map_err(|_| damaged_file("bad genesis"))?),
            None => None,
        };
        let aside = if Store::has_database(dir) {
            Some(recovery::move_aside(dir)?)
        } else {
            None
        };
        let store = Store::create_with(dir, wrap, params)?;
        store.put_sealed(Sealed::Secrets, DEVICE_KEY, secret.to_bytes().as_ref())?;
        if let Some(g) = &genesis {
            store.put_sealed(Sealed::Secrets, GENESIS_KEY, &g.encode())?;
        }
        if let Some(i) = &identity.inviter {
            store.put_sealed(Sealed::Secrets, INVITER_KEY, i)?;
        }
        store.flush()?;
        let mut node = Node::assemble(store, secret);
        node.inviter = identity.inviter.map(DeviceId);
        // The identity file keeps the recorded roster anchor while the rebuild runs (every
        // write below rewrites it), and nothing is authored until the hold is decided.
        node.awaited = recorded.clone();
        if let Some(g) = genesis {
            let mut replica = Replica::new(node.secret.public(), g)?;
            replica.set_resyncing(true);
            node.replica = Some(replica);
        }
        for p in &identity.peers {
            node.add_peer(p)?;
        }
        let mut report = RecoveryReport {
            reason: why.to_string(),
            damaged_copy: aside.clone(),
            device: node.secret.id().short(),
            clinic: identity.clinic_name.clone(),
            member: identity.member.clone(),
            salvaged: 0,
            salvage_failed: None,
            roster_left_out: None,
        };
        match aside.as_deref().map(recovery::salvage) {
            None => report.salvage_failed = Some("it was not there".into()),
            Some(Err(e)) => report.salvage_failed = Some(e.to_string()),
            Some(Ok(envelopes)) if node.replica.is_some() && !envelopes.is_empty() => {
                let (envelopes, left_out) = node.salvageable(envelopes, recorded.as_ref())?;
                report.roster_left_out = left_out;
                let mut ingest = ImportReport::default();
                node.run(Input::Envelopes(envelopes), &mut ingest)?;
                report.salvaged = ingest.accepted;
            }
            Some(Ok(_)) => {}
        }
        let alone = recorded.as_ref().map(|r| {
            let me = node.secret.id();
            r.anchor.active.iter().all(|d| *d == me.0)
        });
        let missing = node.await_recorded(recorded);
        if missing > 0 {
            tracing::warn!(
                "{missing} roster operation(s) this device had are not back yet: it writes \
                 nothing until a device of the clinic has sent them"
            );
        }
        // A roster that is not back holds the device even where it has no peer to wait
        // for (and the marker keeps its next open from taking the store for rolled back).
        node.hold_until_resynced(&identity.peers, alone.map(|a| a && missing == 0))?;
        node.load_lease()?;
        node.baseline_active();
        node.keep_identity();
        Ok((node, Some(report)))
    }

    /// What of `envelopes` (salvaged from a damaged or changed store) may be ingested:
    /// all of them if the roster log among them folds to a roster holding every head the
    /// identity file recorded (or it recorded none: a file of the previous release);
    /// otherwise all but the roster log, and how many recorded operations it lacked.
    /// A roster folded from what is left after a revocation was removed would list the
    /// revoked device as active again: it is taken from the peers instead.
    fn salvageable(
        &self,
        envelopes: Vec<Envelope>,
        recorded: Option<&Recorded>,
    ) -> Result<(Vec<Envelope>, Option<usize>), NodeError> {
        let (Some(recorded), Some(replica)) = (recorded, self.replica.as_ref()) else {
            return Ok((envelopes, None));
        };
        let mut scratch = Replica::new(self.secret.public(), replica.genesis().clone())?;
        scratch.set_follow_up(false);
        let mut ctx = Ctx {
            secret: &self.secret,
            rng: &mut rand::rng(),
            now_ms: now_ms(),
            lookup: &NoLookup,
        };
        let roster: Vec<Envelope> = envelopes
            .iter()
            .filter(|e| e.header.log == LogId::Roster)
            .cloned()
            .collect();
        scratch.handle(&mut ctx, Input::Envelopes(roster))?;
        let missing = scratch.roster_missing(&recorded.anchor.heads());
        if missing == 0 {
            return Ok((envelopes, None));
        }
        tracing::warn!(
            "the damaged store's roster lacks {missing} roster operation(s) this device had: \
             it is not salvaged"
        );
        let rest = envelopes
            .into_iter()
            .filter(|e| e.header.log != LogId::Roster)
            .collect();
        Ok((rest, Some(missing)))
    }

    /// After a rebuild: if any other device may hold envelopes this one authored, hold
    /// authoring until a peer has sent them back ([`Node::synced_with_peer`]); writing
    /// earlier would reuse a position of this device's own chain, and every peer would
    /// refuse the result as a fork.
    /// `alone_recorded`: whether the identity file's anchor named no active device but
    /// this one and its roster is back (`None` without an anchor: the salvaged roster
    /// says).
    fn hold_until_resynced(
        &mut self,
        peers: &[String],
        alone_recorded: Option<bool>,
    ) -> Result<(), NodeError> {
        let Some(replica) = self.replica.as_mut() else {
            return Ok(());
        };
        let me = self.secret.id();
        let alone = peers.is_empty()
            && replica.roster().founder.id == me
            && alone_recorded.unwrap_or_else(|| replica.roster().devices.keys().all(|d| *d == me));
        replica.set_resyncing(!alone);
        if !alone {
            self.store.put_sealed(Sealed::Secrets, RESYNC_KEY, &[1])?;
            self.store.flush()?;
        }
        Ok(())
    }

    /// A peer has sent everything it holds that this device lacked: a rebuilt device
    /// has its own history back (as far as that peer knows it) and may write again.
    pub fn synced_with_peer(&mut self) -> Result<(), NodeError> {
        self.note_contact()?;
        let missing = self.roster_missing();
        let Some(replica) = self.replica.as_mut() else {
            return Ok(());
        };
        if !replica.resyncing() {
            return Ok(());
        }
        if missing > 0 {
            tracing::warn!(
                "{missing} roster operation(s) this device had are not back yet: it writes \
                 nothing until a device of the clinic has sent them"
            );
            return Ok(());
        }
        self.store.remove_sealed(Sealed::Secrets, RESYNC_KEY)?;
        self.store.flush()?;
        replica.set_resyncing(false);
        // Grants and rotations held meanwhile follow now.
        self.run(Input::Resume, &mut ImportReport::default())?;
        self.audit_quietly(crate::core::audit::AuditEvent::Rebuilt);
        Ok(())
    }

    /// What the identity file should hold now: while a recorded roster is not back, its
    /// anchor and names stay.
    fn identity(&self) -> (Identity, Option<identity::Anchor>) {
        let replica = self.replica.as_ref();
        let member = replica.and_then(|r| r.roster().active_member(&self.secret.id()));
        let awaited = self.awaited.as_ref();
        let identity = Identity {
            device: self.secret.to_bytes().to_vec(),
            genesis: replica.map(|r| r.genesis().encode()),
            inviter: self.inviter.map(|d| d.0),
            clinic_name: match awaited {
                Some(r) => r.clinic_name.clone(),
                None => replica.and_then(|r| r.roster().clinic_name.clone()),
            },
            member: match awaited {
                Some(r) => r.member.clone(),
                None => member.map(|m| m.name.clone()),
            },
            peers: self.peers().unwrap_or_default(),
        };
        (identity, self.anchor())
    }

    /// Notes what the identity file on disk holds (after opening).
    pub(super) fn note_identity_on_disk(&mut self) {
        self.identity_digest = self.store.read_identity().map(|p| digest(&p));
    }

    /// Writes the identity file if what it should hold changed. A failure is a warning:
    /// the store itself holds everything, and the next change tries again.
    pub(super) fn keep_identity(&mut self) {
        if self.store.envelopes_modified() {
            return;
        }
        let (identity, anchor) = self.identity();
        let plain: Zeroizing<Vec<u8>> = identity::encode(&identity, anchor.as_ref());
        let d = digest(&plain);
        if self.identity_digest == Some(d) {
            return;
        }
        match self.store.save_identity(&plain) {
            Ok(()) => self.identity_digest = Some(d),
            Err(e) => tracing::warn!("identity file not written: {e}"),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
