//! Integrity at rest of the trees kept unsealed (`envelopes`, `pending`, `heads`,
//! `granted`). Someone holding the files but not the passphrase could edit, remove, add
//! or roll back their records (a forgotten grant, a chain head moved back so the device
//! forks its own chain, a message removed, the roster operation that revoked a stolen
//! laptop deleted). Each record has a tag, HMAC-SHA256 over (tree, key, value) under a
//! key derived from the data key; each tree's tags are folded into a set digest (their
//! XOR and their count) kept sealed in `meta`. A write changes its records and the
//! digests in one sled transaction (crash-atomic, O(1): the old record's tag is taken
//! out, the new one's put in); the open recomputes the digests and compares them.
//!
//! The same pass checks every chain of envelope records complete: the records of each
//! (log, author) run from position 0 to the head the `heads` tree records, with the
//! envelope accepted there at the head ([`ChainGap`]). It is what protects a store made
//! before digests were kept, and it names where a chain is broken.
//!
//! What the open does with a difference ([`check`]):
//! - envelope records changed (digest or chain): the store opens *quarantined*
//!   ([`ChangedOutside`]): readable (so `audit verify` can name what changed), never
//!   written, and nothing is folded from it; `huddle repair` rebuilds it. A roster,
//!   key or audit log is never folded from records changed outside Huddle: removing the
//!   record of a revocation would otherwise give back a roster that lists the revoked
//!   device as active.
//! - only index trees changed (`heads`, `pending`, `granted`): [`StoreError::Modified`],
//!   and the node rebuilds the store at once from the identity file, its envelope
//!   records (which proved themselves) and its peers.
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
//! copy (digests included) cannot be told from the store alone (the identity file's
//! roster anchor tells a store older than itself: `node::identity`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Store, StoreError, corrupt, crypt, parse_log_author, recovery};
use crate::core::cipher::SecretKey;
use crate::core::ids::{DeviceId, LogId};

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
    #[cfg(test)]
    pub(super) fn compute(db: &sled::Db, mac: &MacKey) -> Result<Digests, sled::Error> {
        scan(db, mac).map(|(digests, _)| digests)
    }

    /// The trees whose digest differs from `stored`, in [`Plain::ALL`] order.
    fn differing(&self, stored: &Digests) -> Vec<Plain> {
        Plain::ALL
            .into_iter()
            .filter(|t| self.0[*t as usize] != stored.0[*t as usize])
            .collect()
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

/// Why a store is not as Huddle left it (found at open): it is quarantined.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangedOutside {
    /// The envelope records' digest differs from the one sealed with the last write: a
    /// record was edited, added or removed.
    Records,
    /// The records of one chain do not run from its first position to its head.
    Chain(ChainGap),
    /// Its records agree with each other, but its roster lacks operations that this
    /// device's identity file recorded (found by the node): the store was put back to an
    /// older copy of itself.
    OlderThanIdentity { missing: usize },
}

impl fmt::Display for ChangedOutside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangedOutside::Records => {
                f.write_str("records in `envelopes` were edited, added or removed")
            }
            ChangedOutside::Chain(gap) => write!(f, "records in `envelopes` {gap}"),
            ChangedOutside::OlderThanIdentity { missing } => write!(
                f,
                "it lacks {missing} roster operation(s) this device's identity file recorded: \
                 it was put back to an older copy"
            ),
        }
    }
}

/// Where a chain of envelope records breaks: the chain (`None` when a record's key names
/// no chain position) and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainGap {
    pub chain: Option<(LogId, DeviceId)>,
    pub what: GapKind,
}

/// What is wrong with a chain of envelope records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapKind {
    /// A record's key is not a chain position.
    NotAPosition,
    /// No record at this position, though the chain goes on or its head is later.
    Missing(u64),
    /// A record at this position, past the chain's head: never accepted here.
    PastHead(u64),
    /// Records of a chain of which nothing was accepted here.
    NoHead,
    /// The record at the head's position is not the envelope accepted there.
    NotTheHead(u64),
}

fn log_name(log: &LogId) -> String {
    match log {
        LogId::Roster => "the roster log".into(),
        LogId::Thread { id, .. } => format!("thread {}", id.short()),
        LogId::Keys(category) => format!("the {category} key log"),
        LogId::Audit => "the audit log".into(),
    }
}

impl fmt::Display for ChainGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((log, author)) = &self.chain else {
            return f.write_str("hold a record whose key is no chain position");
        };
        let chain = format!("device {}…'s chain in {}", author.short(), log_name(log));
        match self.what {
            GapKind::NotAPosition => write!(f, "of {chain} are unreadable"),
            GapKind::Missing(seq) => write!(f, "lack #{seq} of {chain}"),
            GapKind::PastHead(seq) => {
                write!(f, "hold #{seq} of {chain}, past the last one accepted")
            }
            GapKind::NoHead => write!(f, "hold {chain}, of which nothing was accepted"),
            GapKind::NotTheHead(seq) => write!(
                f,
                "hold at #{seq} of {chain} another envelope than the one accepted there"
            ),
        }
    }
}

/// Walks the envelope records in key order (log, author, position) and finds the first
/// chain that does not run from position 0 to its head. `heads`: the `heads` tree.
struct ChainWalk<'a> {
    heads: &'a HashMap<sled::IVec, sled::IVec>,
    /// The chain being walked: its key (log and author), next position, last record.
    current: Option<(sled::IVec, u64, sled::IVec)>,
    /// Chains that had records and matched their head.
    matched: HashSet<sled::IVec>,
    gap: Option<ChainGap>,
}

impl<'a> ChainWalk<'a> {
    fn new(heads: &'a HashMap<sled::IVec, sled::IVec>) -> Self {
        ChainWalk {
            heads,
            current: None,
            matched: HashSet::new(),
            gap: None,
        }
    }

    fn found(&mut self, chain: &[u8], what: GapKind) {
        self.gap.get_or_insert(ChainGap {
            chain: parse_log_author(chain),
            what,
        });
    }

    fn record(&mut self, key: &sled::IVec, value: &sled::IVec) {
        if self.gap.is_some() {
            return;
        }
        let Some(seq) = key
            .get(50..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
        else {
            return self.found(key, GapKind::NotAPosition);
        };
        let chain = &key[..50];
        match &mut self.current {
            Some((current, next, last)) if current[..] == *chain => {
                if seq != *next {
                    let missing = *next;
                    return self.found(chain, GapKind::Missing(missing));
                }
                *next = seq + 1;
                *last = value.clone();
            }
            _ => {
                self.close();
                if parse_log_author(chain).is_none() {
                    return self.found(chain, GapKind::NotAPosition);
                }
                if seq != 0 {
                    return self.found(chain, GapKind::Missing(0));
                }
                self.current = Some((sled::IVec::from(chain), 1, value.clone()));
            }
        }
    }

    /// The chain walked so far ended: it must end at its head.
    fn close(&mut self) {
        let Some((chain, next, last)) = self.current.take() else {
            return;
        };
        if self.gap.is_some() {
            return;
        }
        let heads = self.heads;
        let Some(head) = heads.get(&chain) else {
            return self.found(&chain, GapKind::NoHead);
        };
        let head_seq = head
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes);
        let last_seq = next - 1;
        match head_seq {
            Some(h) if last_seq > h => self.found(&chain, GapKind::PastHead(h + 1)),
            Some(h) if last_seq < h => self.found(&chain, GapKind::Missing(next)),
            Some(h) if head.get(8..40) != last.get(..32) => {
                self.found(&chain, GapKind::NotTheHead(h))
            }
            Some(_) => {
                self.matched.insert(chain);
            }
            None => self.found(&chain, GapKind::NotTheHead(last_seq)),
        }
    }

    /// The first gap, after the last chain; a head without records is one too.
    fn finish(mut self) -> Option<ChainGap> {
        self.close();
        if self.gap.is_none() && self.matched.len() != self.heads.len() {
            let lone = self
                .heads
                .keys()
                .find(|k| !self.matched.contains(*k))
                .cloned();
            if let Some(chain) = lone {
                self.found(&chain, GapKind::Missing(0));
            }
        }
        self.gap
    }
}

/// Computes the digests of the trees in `db` and, in the same pass, the first chain of
/// envelope records that does not run from position 0 to the head `heads` records.
fn scan(db: &sled::Db, mac: &MacKey) -> Result<(Digests, Option<ChainGap>), sled::Error> {
    let mut out = Digests::default();
    let mut heads = HashMap::new();
    for item in db.open_tree(Plain::Heads.name())?.iter() {
        let (k, v) = item?;
        out.replace(mac, Plain::Heads, &k, None, Some(&v));
        heads.insert(k, v);
    }
    let mut walk = ChainWalk::new(&heads);
    for item in db.open_tree(Plain::Envelopes.name())?.iter() {
        let (k, v) = item?;
        out.replace(mac, Plain::Envelopes, &k, None, Some(&v));
        walk.record(&k, &v);
    }
    let gap = walk.finish();
    for tree in [Plain::Pending, Plain::Granted] {
        for item in db.open_tree(tree.name())?.iter() {
            let (k, v) = item?;
            out.replace(mac, tree, &k, None, Some(&v));
        }
    }
    Ok((out, gap))
}

/// What the open found.
pub(super) enum Checked {
    /// The trees match their stored digests, and every chain is complete.
    Intact(Digests),
    /// A store made before digests were kept (its chains complete): these are to be
    /// stored now.
    Unprotected(Digests),
    /// The envelope records are not as Huddle left them: the store opens quarantined
    /// (read, never written, nothing folded) until `huddle repair` rebuilds it.
    EnvelopesChanged(ChangedOutside),
}

/// Recomputes the digests of the trees in `db`, checks every chain of envelope records
/// complete, and compares the digests with those stored; `marked`: the wrapped data key
/// says digests are kept. Index trees changed alone are [`StoreError::Modified`]; envelope
/// records changed (whatever else changed with them) are [`Checked::ChangedOutside`].
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
    let (found, gap) = scan(db, mac).map_err(damage)?;
    let modified = |tree| StoreError::Modified {
        path: path.to_path_buf(),
        tree,
    };
    match stored {
        None if marked => Err(modified("meta")),
        None => Ok(match gap {
            Some(gap) => Checked::EnvelopesChanged(ChangedOutside::Chain(gap)),
            None => Checked::Unprotected(found),
        }),
        Some(stored) => {
            let differing = found.differing(&stored);
            if differing.contains(&Plain::Envelopes) {
                return Ok(Checked::EnvelopesChanged(ChangedOutside::Records));
            }
            // The heads themselves changed: the chains are not judged against them (the
            // envelope records proved themselves; the store is rebuilt from them).
            if let Some(tree) = differing.first() {
                return Err(modified(tree.name()));
            }
            Ok(match gap {
                Some(gap) => Checked::EnvelopesChanged(ChangedOutside::Chain(gap)),
                None => Checked::Intact(found),
            })
        }
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
        self.refuse_if_changed()?;
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

    /// Recomputes the digests of the unsealed trees, compares them with those stored and
    /// checks every chain complete, as every open does (to measure that cost, or to check
    /// a store kept open long).
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let (found, gap) = scan(&self.db, &self.mac)?;
        let modified = |tree| StoreError::Modified {
            path: self.path.clone(),
            tree,
        };
        let stored = Digests::load(&self.meta, &self.data_key)?.ok_or_else(|| modified("meta"))?;
        if let Some(tree) = found.differing(&stored).first() {
            return Err(modified(tree.name()));
        }
        match gap {
            Some(gap) => Err(StoreError::Changed {
                path: self.path.clone(),
                why: ChangedOutside::Chain(gap),
            }),
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
