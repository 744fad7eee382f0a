//! The store of a locked node ("blind"): sled opened without the passphrase. It reads
//! only what is stored as received — envelopes, signed by their authors and end-to-end
//! encrypted — and keeps envelopes that arrive while locked in the `inbox` tree, never
//! decrypting anything. [`Store::take_inbox`] hands them to the node at the next unlock,
//! where each is validated like any other received envelope before it is accepted.
//!
//! The inbox is not authenticated with the data key (a locked node has none): it needs no
//! more, since nothing in it is trusted before that validation, and it is bounded
//! ([`MAX_INBOX_BYTES`], [`MAX_INBOX_ENVELOPES`]) as well as by the disk reserve.

use std::path::{Path, PathBuf};

use super::recovery::{self, open_db};
use super::{
    FORMAT, Store, StoreError, WRITE_SHARE, disk_full, envelope_key, parse_log_author, space,
};
use crate::core::envelope::Envelope;
use crate::core::ids::{DeviceId, EnvelopeId, LogId};

/// Bytes the inbox holds at most; beyond, envelopes are refused (their senders keep
/// them, and the next sync after the unlock brings them).
pub const MAX_INBOX_BYTES: u64 = 256 * 1024 * 1024;
/// Envelopes the inbox holds at most.
pub const MAX_INBOX_ENVELOPES: u64 = 200_000;
/// Inbox envelopes handed to the node per batch at unlock.
pub const INBOX_BATCH: usize = 512;

const INBOX: &str = "inbox";

/// The last envelope of one chain: its position and id.
pub type Tip = ((LogId, DeviceId), (u64, EnvelopeId));

/// A store opened without its key: envelopes out, received envelopes into the inbox.
pub struct BlindStore {
    path: PathBuf,
    db: sled::Db,
    envelopes: sled::Tree,
    inbox: sled::Tree,
    space: space::Guard,
    bytes: u64,
    count: u64,
}

/// Why the inbox took no more.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("the locked node's inbox is full ({count} envelopes, {bytes} bytes)")]
    Full { count: u64, bytes: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn value_of(env: &Envelope, id: &EnvelopeId) -> Vec<u8> {
    let mut value = id.0.to_vec();
    value.extend(env.encode());
    value
}

impl BlindStore {
    /// Opens the store at `path` without a passphrase (it must exist and be Huddle's).
    pub fn open(path: &Path) -> Result<BlindStore, StoreError> {
        if !Store::has_database(path) {
            return Err(StoreError::NotFound(path.to_path_buf()));
        }
        let db = open_db(path)?;
        let damage = |e| recovery::classify(path, e);
        let meta = db.open_tree("meta").map_err(damage)?;
        let format = meta.get("format").map_err(damage)?;
        if format.as_deref() != Some(FORMAT) {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(format.as_deref().unwrap_or_default()).into_owned(),
            });
        }
        let inbox = db.open_tree(INBOX).map_err(damage)?;
        let (mut bytes, mut count) = (0u64, 0u64);
        for item in inbox.iter() {
            let (_, v) = item.map_err(damage)?;
            bytes += v.len() as u64;
            count += 1;
        }
        Ok(BlindStore {
            path: path.to_path_buf(),
            envelopes: db.open_tree("envelopes").map_err(damage)?,
            inbox,
            space: space::Guard::new(path),
            db,
            bytes,
            count,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Envelopes in the inbox.
    pub fn inbox_len(&self) -> u64 {
        self.count
    }

    /// The last inbox envelope of each chain. An unreadable record is skipped (it stays
    /// for the node to refuse at unlock).
    pub fn inbox_tips(&self) -> Vec<Tip> {
        let mut tips: Vec<Tip> = Vec::new();
        for (k, v) in self.inbox.iter().flatten() {
            let (Some(chain), Ok(env)) = (parse_log_author(&k), Store::decode_envelope(&k, &v))
            else {
                continue;
            };
            let tip = (chain, (env.header.seq, env.id()));
            match tips.last_mut() {
                Some(last) if last.0 == chain => *last = tip,
                _ => tips.push(tip),
            }
        }
        tips
    }

    /// Keeps `env` (already checked by the caller: author, signature, place in its
    /// chain) until the next unlock.
    pub fn put_inbox(&mut self, env: &Envelope, id: &EnvelopeId) -> Result<(), InboxError> {
        let value = value_of(env, id);
        let (count, bytes) = (self.count + 1, self.bytes + value.len() as u64);
        if count > MAX_INBOX_ENVELOPES || bytes > MAX_INBOX_BYTES {
            return Err(InboxError::Full {
                count: self.count,
                bytes: self.bytes,
            });
        }
        self.space.check(WRITE_SHARE).map_err(disk_full)?;
        let h = &env.header;
        self.inbox
            .insert(envelope_key(&h.log, &h.author, h.seq), value)
            .map_err(StoreError::from)?;
        (self.count, self.bytes) = (count, bytes);
        Ok(())
    }

    /// Stored and inbox envelopes of `log` by `author` from `from_seq` on, in chain
    /// order (an inbox envelope continues the stored chain).
    pub fn envelopes_after(
        &self,
        log: &LogId,
        author: &DeviceId,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<Envelope, StoreError>> + '_ {
        let range = envelope_key(log, author, from_seq)..=envelope_key(log, author, u64::MAX);
        self.envelopes
            .range(range.clone())
            .chain(self.inbox.range(range))
            .map(|item| {
                let (k, v) = item?;
                Store::decode_envelope(&k, &v)
            })
    }

    /// Makes the inbox durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

impl Store {
    /// Up to [`INBOX_BATCH`] envelopes received while locked, with their sled keys (for
    /// [`Store::remove_inbox`]); unreadable records are dropped.
    pub fn inbox_batch(&self) -> Result<(Vec<Vec<u8>>, Vec<Envelope>), StoreError> {
        let inbox = self.db.open_tree(INBOX)?;
        let (mut keys, mut envs) = (Vec::new(), Vec::new());
        for item in inbox.iter().take(INBOX_BATCH) {
            let (k, v) = item?;
            match Store::decode_envelope(&k, &v) {
                Ok(env) => envs.push(env),
                Err(e) => tracing::warn!("an inbox record was dropped: {e}"),
            }
            keys.push(k.to_vec());
        }
        Ok((keys, envs))
    }

    /// Forgets inbox records once the node has taken them.
    pub fn remove_inbox(&self, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        self.before_write()?;
        let inbox = self.wrote(self.db.open_tree(INBOX))?;
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k.as_slice());
        }
        self.wrote(inbox.apply_batch(batch))?;
        Ok(())
    }
}
