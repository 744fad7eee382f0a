//! Integrity at rest of the trees kept unsealed (`envelopes`, `pending`, `heads`,
//! `granted`). Someone holding the files but not the passphrase could edit, remove, add
//! or roll back their records (a forgotten grant, a chain head moved back so the device
//! forks its own chain, a message removed). Each record has a tag, HMAC-SHA256 over
//! (tree, key, value) under a key derived from the data key; each tree's tags are folded
//! into a set digest (their XOR and their count) kept sealed in `meta`. A write changes
//! its records and the digests in one sled transaction (crash-atomic, O(1): the old
//! record's tag is taken out, the new one's put in); the open recomputes the digests and
//! names the first tree that differs ([`StoreError::Modified`]), which the node treats as
//! damage (rebuilt from the identity file and refilled by its peers).
//!
//! The tags are never stored, so the digest of a tree only matches the very set of
//! records it was computed from (a different set matches with probability 2⁻²⁵⁶ without
//! the key). The data key, wrapped with the passphrase's key, carries a marker byte once
//! the store keeps digests, so removing the digest record does not pass for an old store;
//! stores made before are upgraded at their first open with the passphrase.
//!
//! Not covered here: `meta` (its records are sealed or are the wrapped key itself),
//! sealed trees (each value is authenticated and bound to its tree and key), and a tree
//! named `inbox`, written while the node is locked (so without the data key): every
//! envelope in it is validated at unlock like one from the network (signature, chain
//! position, roster) and removed then, so an edited one is no worse than a hostile peer's;
//! a removed one is sent again by its peer. Putting the whole directory back to an older
//! copy (digests included) cannot be told from the disk alone.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Store, StoreError, corrupt, crypt, recovery};
use crate::core::cipher::SecretKey;

/// The `meta` record holding the sealed digests.
pub(super) const RECORD: &str = "integrity";
/// Appended to the data key before it is wrapped: this store keeps digests.
pub(super) const MARKER: u8 = 1;
const KEY_DOMAIN: &[u8] = b"huddle/at-rest/tree-mac/v1\0";

/// The trees whose records are authenticated here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plain {
    Envelopes,
    Pending,
    Heads,
    Granted,
}

impl Plain {
    pub(super) const ALL: [Plain; 4] = [
        Plain::Envelopes,
        Plain::Pending,
        Plain::Heads,
        Plain::Granted,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Plain::Envelopes => "envelopes",
            Plain::Pending => "pending",
            Plain::Heads => "heads",
            Plain::Granted => "granted",
        }
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`, for a key of at most 64 bytes.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut pad = Zeroizing::new([0u8; 64]);
    pad[..key.len()].copy_from_slice(key);
    pad.iter_mut().for_each(|b| *b ^= 0x36);
    let mut inner = Sha256::new();
    inner.update(&pad[..]);
    parts.iter().for_each(|p| inner.update(p));
    let inner = inner.finalize();
    // 0x36 ^ 0x5c: from the inner pad to the outer one.
    pad.iter_mut().for_each(|b| *b ^= 0x36 ^ 0x5c);
    let mut outer = Sha256::new();
    outer.update(&pad[..]);
    outer.update(inner);
    outer.finalize().into()
}

/// The key the tags are made with, derived from the data key (zeroized on drop).
pub(super) struct MacKey(Zeroizing<[u8; 32]>);

impl MacKey {
    pub(super) fn derive(data_key: &SecretKey) -> MacKey {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        h.update(data_key.as_bytes());
        h.finalize_into(sha2::digest::generic_array::GenericArray::from_mut_slice(
            &mut key[..],
        ));
        MacKey(key)
    }

    /// The tag of one record: its tree, key (length first) and value.
    fn tag(&self, tree: Plain, key: &[u8], value: &[u8]) -> [u8; 32] {
        let len = u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes();
        hmac_sha256(
            &self.0[..],
            &[tree.name().as_bytes(), &[0], &len, key, value],
        )
    }
}

/// The set digest of one tree.
#[derive(Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Debug)]
struct TreeDigest {
    records: u64,
    folded: [u8; 32],
}

impl TreeDigest {
    fn fold(&mut self, tag: &[u8; 32], added: bool) {
        self.folded.iter_mut().zip(tag).for_each(|(a, b)| *a ^= b);
        self.records = if added {
            self.records.wrapping_add(1)
        } else {
            self.records.wrapping_sub(1)
        };
    }
}

/// The digests of the plain trees, in [`Plain::ALL`] order.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub(super) struct Digests([TreeDigest; 4]);

impl Digests {
    /// Takes record `key`'s `old` value out of the digest of `tree` and puts `new` in.
    pub(super) fn replace(
        &mut self,
        mac: &MacKey,
        tree: Plain,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) {
        let digest = &mut self.0[tree as usize];
        if let Some(old) = old {
            digest.fold(&mac.tag(tree, key, old), false);
        }
        if let Some(new) = new {
            digest.fold(&mac.tag(tree, key, new), true);
        }
    }

    /// The digests of the trees as they are in `db`.
    pub(super) fn compute(db: &sled::Db, mac: &MacKey) -> Result<Digests, sled::Error> {
        let mut out = Digests::default();
        for tree in Plain::ALL {
            for item in db.open_tree(tree.name())?.iter() {
                let (k, v) = item?;
                out.replace(mac, tree, &k, None, Some(&v));
            }
        }
        Ok(out)
    }

    /// The first tree whose digest differs from `stored`.
    fn differs_only_in_envelopes(&self, stored: &Digests) -> bool {
        Plain::ALL
            .into_iter()
            .filter(|t| self.0[*t as usize] != stored.0[*t as usize])
            .eq([Plain::Envelopes])
    }

    fn first_difference(&self, stored: &Digests) -> Option<Plain> {
        Plain::ALL
            .into_iter()
            .find(|t| self.0[*t as usize] != stored.0[*t as usize])
    }

    pub(super) fn seal(&self, data_key: &SecretKey) -> Vec<u8> {
        let plain = postcard::to_stdvec(self).unwrap_or_default();
        crypt::seal(data_key, "meta", RECORD.as_bytes(), &plain)
    }

    /// The digests stored in `meta`, if there are any.
    pub(super) fn load(
        meta: &sled::Tree,
        data_key: &SecretKey,
    ) -> Result<Option<Digests>, StoreError> {
        let Some(sealed) = meta.get(RECORD)? else {
            return Ok(None);
        };
        let plain = crypt::open(data_key, "meta", RECORD.as_bytes(), &sealed)
            .map_err(|_| corrupt("meta", RECORD.as_bytes(), "does not decrypt"))?;
        postcard::from_bytes(&plain)
            .map(Some)
            .map_err(|_| corrupt("meta", RECORD.as_bytes(), "does not decode"))
    }
}

/// What the open found.
pub(super) enum Checked {
    /// The trees match their stored digests.
    Intact(Digests),
    /// A store made before digests were kept: these are to be stored now.
    Unprotected(Digests),
    /// Only the envelope records differ (the stored digests, kept so that the difference
    /// stays visible). Envelopes prove themselves (signature, id, chain): the store opens,
    /// the node warns, `audit verify` names the changed audit entries, and `huddle
    /// repair` rebuilds. Rebuilding at once would throw away what shows the change.
    EnvelopesChanged(Digests),
}

/// Recomputes the digests of the trees in `db` and compares them with those stored;
/// `marked`: the wrapped data key says digests are kept.
pub(super) fn check(
    path: &Path,
    db: &sled::Db,
    meta: &sled::Tree,
    data_key: &SecretKey,
    mac: &MacKey,
    marked: bool,
) -> Result<Checked, StoreError> {
    let damage = |e| recovery::classify(path, e);
    let stored = Digests::load(meta, data_key)?;
    let found = Digests::compute(db, mac).map_err(damage)?;
    let modified = |tree| StoreError::Modified {
        path: path.to_path_buf(),
        tree,
    };
    match stored {
        None if marked => Err(modified("meta")),
        None => Ok(Checked::Unprotected(found)),
        Some(stored) => match found.first_difference(&stored) {
            Some(Plain::Envelopes) if found.differs_only_in_envelopes(&stored) => {
                Ok(Checked::EnvelopesChanged(stored))
            }
            Some(tree) => Err(modified(tree.name())),
            None => Ok(Checked::Intact(found)),
        },
    }
}

/// One change to a plain tree: `value` `None` removes the record.
pub(super) struct Change<'a> {
    pub tree: Plain,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl Store {
    fn plain_tree(&self, tree: Plain) -> &sled::Tree {
        match tree {
            Plain::Envelopes => &self.envelopes,
            Plain::Pending => &self.pending,
            Plain::Heads => &self.heads,
            Plain::Granted => &self.granted,
        }
    }

    /// Writes `changes` (at most one per tree) and the digests they lead to, atomically.
    pub(super) fn write_plain(&self, changes: &[Change<'_>]) -> Result<(), StoreError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        // Removing is allowed on a nearly full disk (as before digests were kept).
        if changes.iter().any(|c| c.value.is_some()) {
            self.before_write()?;
        }
        let mut digests = self.digests.lock().unwrap_or_else(|p| p.into_inner());
        let mut trees: Vec<&sled::Tree> = changes.iter().map(|c| self.plain_tree(c.tree)).collect();
        trees.push(&self.meta);
        let written = trees[..].transaction(|views| {
            let mut next = digests.clone();
            for (change, view) in changes.iter().zip(views) {
                let old = match change.value {
                    Some(v) => view.insert(change.key, v)?,
                    None => view.remove(change.key)?,
                };
                next.replace(
                    &self.mac,
                    change.tree,
                    change.key,
                    old.as_deref(),
                    change.value,
                );
            }
            let meta = views
                .last()
                .ok_or(ConflictableTransactionError::Abort(()))?;
            meta.insert(RECORD, next.seal(&self.data_key))?;
            Ok(next)
        });
        match written {
            Ok(next) => {
                *digests = next;
                Ok(())
            }
            Err(TransactionError::Storage(e)) => self.wrote(Err(e)),
            Err(TransactionError::Abort(())) => Err(StoreError::Damaged {
                path: self.path.clone(),
                why: "a write touched no tree".into(),
            }),
        }
    }

    /// Recomputes the digests of the unsealed trees and compares them with those stored,
    /// as every open does (to measure that cost, or to check a store kept open long).
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let found = Digests::compute(&self.db, &self.mac)?;
        let modified = |tree| StoreError::Modified {
            path: self.path.clone(),
            tree,
        };
        let stored = Digests::load(&self.meta, &self.data_key)?.ok_or_else(|| modified("meta"))?;
        match found.first_difference(&stored) {
            Some(tree) => Err(modified(tree.name())),
            None => Ok(()),
        }
    }

    /// After sled was reopened: the digests as stored (what was written is whole).
    pub(super) fn reload_digests(&self) -> Result<(), StoreError> {
        if let Some(stored) = Digests::load(&self.meta, &self.data_key)? {
            *self.digests.lock().unwrap_or_else(|p| p.into_inner()) = stored;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
