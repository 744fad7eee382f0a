//! Persistent storage in sled, encrypted at rest. Envelopes are stored as received (they
//! are already end-to-end encrypted and signed); everything else that can hold names,
//! clinical text or secret keys is sealed with the data key. Sled keys hold only ids.
//! Nothing is acknowledged before [`Store::flush`] returns. Writes are refused while the
//! disk is nearly full ([`space`]); a flush never blocks for ever; after sled met a write
//! error the store is reopened ([`Store::recover`]); a store that does not open can be
//! rebuilt from the identity file beside it ([`identity_file`], [`recovery`]). The
//! trees kept unsealed are authenticated with the data key, so records changed outside
//! Huddle are found at open ([`integrity`]); a store whose envelope records changed is
//! opened quarantined: read, never written ([`Store::changed_outside`]).

pub mod blind;
mod crypt;
pub mod dir;
pub mod identity_file;
pub mod integrity;
pub mod recovery;
pub mod space;
pub mod strength;
pub mod unlock_limit;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::core::cipher::SecretKey;
use crate::core::envelope::Envelope;
use crate::core::ids::{DeviceId, EnvelopeId, LogId, ThreadId};
use crate::core::replica::{Head, KeySlot};
pub use crypt::KdfParams;
pub use integrity::{ChainGap, ChangedOutside, GapKind};

const FORMAT: &[u8] = b"huddle-store-1";
pub use strength::MIN_PASSPHRASE;
/// How long a flush may take before it is given up (with a warning): sled can block in a
/// flush for ever after a write error. What was acknowledged had been flushed before.
pub const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("no Huddle data at {0} (run `huddle init` or `huddle device key` first)")]
    NotFound(PathBuf),
    #[error("Huddle data already exists at {0}")]
    AlreadyExists(PathBuf),
    #[error("wrong passphrase for {0}")]
    WrongPassphrase(PathBuf),
    #[error("the passphrase is too weak: {0}")]
    WeakPassphrase(&'static str),
    #[error(
        "too many wrong passphrases: try again in {wait_secs} s (each further failure doubles the wait)"
    )]
    TooManyFailures { wait_secs: u64 },
    #[error("{0} is in use by another Huddle process")]
    Locked(PathBuf),
    #[error("corrupted record in `{tree}` at key {key}: {why}")]
    Corrupt {
        tree: &'static str,
        key: String,
        why: &'static str,
    },
    #[error("the `{tree}` records in {path} were modified outside Huddle")]
    Modified { path: PathBuf, tree: &'static str },
    #[error(
        "This device's store was changed outside Huddle ({why}), so Huddle will not use it. \
         Run `huddle repair`: it rebuilds the store from this device's identity file and the \
         clinic's other devices, keeping the changed copy aside."
    )]
    Changed { path: PathBuf, why: ChangedOutside },
    #[error("{path} is not a Huddle data directory (format `{found}`)")]
    Format { path: PathBuf, found: String },
    #[error(
        "the disk is almost full ({free_mib} MiB free; Huddle keeps {reserve_mib} MiB in reserve): \
         nothing was saved; free some space and try again"
    )]
    DiskFull { free_mib: u64, reserve_mib: u64 },
    #[error("the store at {path} is damaged ({why})")]
    Damaged { path: PathBuf, why: String },
    #[error("the identity file {path} is damaged ({why}); it cannot be used to rebuild the store")]
    IdentityDamaged { path: PathBuf, why: &'static str },
    #[error("no identity file at {0}: the store cannot be rebuilt")]
    IdentityMissing(PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the disk did not finish writing within {} s", FLUSH_WAIT.as_secs())]
    FlushStuck,
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// A sealed tree's sled key and its opened value (or why it did not open).
pub type SealedEntry = (Vec<u8>, Result<Zeroizing<Vec<u8>>, StoreError>);
/// A stored key: its log and epoch.
pub type KeyEntry = (KeySlot, SecretKey);
/// A stored chain head: log and author.
pub type HeadEntry = ((LogId, DeviceId), Head);

/// Trees whose values are sealed with the data key.
#[derive(Clone, Copy, Debug)]
pub enum Sealed {
    /// Device secret and clinic genesis.
    Secrets,
    /// Thread and roster keys, by log and epoch.
    Keys,
    /// Automerge snapshots, by thread.
    Snapshots,
    /// Thread list entries, by thread.
    Summaries,
    /// Invitations this device issued.
    Invites,
    /// Peer addresses to dial.
    Peers,
}

impl Sealed {
    fn name(self) -> &'static str {
        match self {
            Sealed::Secrets => "secrets",
            Sealed::Keys => "keys",
            Sealed::Snapshots => "snapshots",
            Sealed::Summaries => "summaries",
            Sealed::Invites => "invites",
            Sealed::Peers => "peers",
        }
    }
}

pub struct Store {
    path: PathBuf,
    db: sled::Db,
    data_key: SecretKey,
    /// The key the passphrase derives (seals the data key and the identity file).
    wrap_key: SecretKey,
    kdf: KdfParams,
    /// Failed unlocks recorded before this one (unix ms), for the audit trail.
    failed_unlocks: Vec<u64>,
    space: space::Guard,
    /// sled met a write error: it refuses everything until it is reopened.
    poisoned: AtomicBool,
    envelopes: sled::Tree,
    pending: sled::Tree,
    heads: sled::Tree,
    granted: sled::Tree,
    meta: sled::Tree,
    /// Authenticates the records of the four trees above ([`integrity`]).
    mac: integrity::MacKey,
    /// Their digests as stored (updated with every write).
    digests: Mutex<integrity::Digests>,
    /// The envelope records are not as Huddle left them ([`Store::changed_outside`]):
    /// nothing is written to this store.
    changed_outside: Option<ChangedOutside>,
}

fn disk_full(short: space::Short) -> StoreError {
    StoreError::DiskFull {
        free_mib: short.free_mib(),
        reserve_mib: short.reserve_mib(),
    }
}

fn corrupt(tree: &'static str, key: &[u8], why: &'static str) -> StoreError {
    StoreError::Corrupt {
        tree,
        key: hex::encode(key),
        why,
    }
}

use integrity::{Change, Plain};
use recovery::open_db;

/// Meta records of a passphrase change under way: the new parameters and wrapping.
const KDF_NEXT: &str = "kdf-next";
const WRAPPED_NEXT: &str = "wrapped-key-next";

/// Refuses a passphrase that is too weak for a new store or a change.
fn check_strength(passphrase: &[u8]) -> Result<(), StoreError> {
    match strength::weakness(&String::from_utf8_lossy(passphrase)) {
        Some(why) => Err(StoreError::WeakPassphrase(why)),
        None => Ok(()),
    }
}

/// Argon2id parameters stored in `meta` at `record`.
fn read_params(
    meta: &sled::Tree,
    record: &str,
    damage: impl Fn(sled::Error) -> StoreError,
) -> Result<Option<KdfParams>, StoreError> {
    Ok(meta
        .get(record)
        .map_err(damage)?
        .and_then(|v| postcard::from_bytes(&v).ok()))
}

/// The data key in `meta` at `record`, if `wrap` opens it, and whether it carries the
/// marker of a store that keeps digests ([`integrity`]).
fn unwrap_key(
    meta: &sled::Tree,
    record: &str,
    wrap: &SecretKey,
    damage: impl Fn(sled::Error) -> StoreError,
) -> Result<Option<(SecretKey, bool)>, StoreError> {
    let wrapped = meta
        .get(record)
        .map_err(damage)?
        .ok_or_else(|| corrupt("meta", record.as_bytes(), "missing"))?;
    let Ok(raw) = crypt::open(wrap, "meta", record.as_bytes(), &wrapped) else {
        return Ok(None);
    };
    let (key, marked) = match raw.as_slice() {
        [key @ .., integrity::MARKER] if key.len() == 32 => (key, true),
        key => (key, false),
    };
    let bytes: [u8; 32] = key
        .try_into()
        .map_err(|_| corrupt("meta", record.as_bytes(), "wrong length"))?;
    Ok(Some((SecretKey::from_bytes(bytes), marked)))
}

/// The data key sealed for `meta` at `record` with `wrap`, marked as keeping digests.
fn wrap_data_key(wrap: &SecretKey, record: &str, data_key: &SecretKey) -> Vec<u8> {
    let mut plain = Zeroizing::new(data_key.as_bytes().to_vec());
    plain.push(integrity::MARKER);
    crypt::seal(wrap, "meta", record.as_bytes(), &plain)
}

/// Share of the reserve that a single write needs free; a whole command checks for all
/// of it first ([`Store::ensure_space`]), so a write inside a command that passed never
/// fails on it unless the command wrote half the reserve.
const WRITE_SHARE: f64 = 0.5;

fn envelope_key(log: &LogId, author: &DeviceId, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(58);
    k.extend_from_slice(&log.key_bytes());
    k.extend_from_slice(&author.0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn log_author_key(log: &LogId, author: &DeviceId) -> Vec<u8> {
    let mut k = log.key_bytes().to_vec();
    k.extend_from_slice(&author.0);
    k
}

fn parse_log_author(key: &[u8]) -> Option<(LogId, DeviceId)> {
    Some((
        LogId::from_key_bytes(key.get(..18)?)?,
        DeviceId(key.get(18..50)?.try_into().ok()?),
    ))
}

impl Store {
    /// Whether `path` holds a Huddle store.
    pub fn exists(path: &Path) -> bool {
        path.join("conf").exists() || path.join("db").exists() || identity_file::exists(path)
    }

    /// Whether sled's own files are there (a data directory may hold only its identity
    /// file after the store was lost).
    pub fn has_database(path: &Path) -> bool {
        path.join("conf").exists() || path.join("db").exists()
    }

    /// Creates a new store at `path`, protected by `passphrase`.
    pub fn create(path: &Path, passphrase: &[u8]) -> Result<Store, StoreError> {
        if Self::exists(path) {
            return Err(StoreError::AlreadyExists(path.to_path_buf()));
        }
        check_strength(passphrase)?;
        let params = KdfParams::fresh();
        let wrap =
            crypt::derive(passphrase, &params).map_err(|e| StoreError::Kdf(e.to_string()))?;
        Self::create_with(path, wrap, params)
    }

    /// Creates a new store whose data key is wrapped with `wrap` (derived with `params`):
    /// a store rebuilt from the identity file keeps the passphrase's parameters.
    pub fn create_with(
        path: &Path,
        wrap: SecretKey,
        params: KdfParams,
    ) -> Result<Store, StoreError> {
        if Self::has_database(path) {
            return Err(StoreError::AlreadyExists(path.to_path_buf()));
        }
        space::Guard::new(path).check(1.0).map_err(disk_full)?;
        let data_key = SecretKey::generate(&mut rand::rng());
        let db = open_db(path)?;
        let meta = db.open_tree("meta")?;
        meta.insert("kdf", postcard::to_stdvec(&params).unwrap_or_default())?;
        meta.insert(
            "wrapped-key",
            wrap_data_key(&wrap, "wrapped-key", &data_key),
        )?;
        let digests = integrity::Digests::default();
        meta.insert(integrity::RECORD, digests.seal(&data_key))?;
        meta.insert("format", FORMAT)?;
        db.flush()?;
        let mut store = Self::assemble(path, db, data_key, wrap, params, digests)?;
        store.failed_unlocks = unlock_limit::take(path);
        Ok(store)
    }

    /// Opens an existing store; a wrong passphrase changes nothing.
    pub fn open(path: &Path, passphrase: &[u8]) -> Result<Store, StoreError> {
        Self::open_known(path, passphrase, None)
    }

    /// Opens with a key already derived from the passphrase (by the identity file, whose
    /// parameters are the store's), so the passphrase is checked once.
    pub fn open_known(
        path: &Path,
        passphrase: &[u8],
        known: Option<(SecretKey, KdfParams)>,
    ) -> Result<Store, StoreError> {
        if !Self::has_database(path) {
            return Err(StoreError::NotFound(path.to_path_buf()));
        }
        let db = open_db(path)?;
        let damage = |e| recovery::classify(path, e);
        let meta = db.open_tree("meta").map_err(damage)?;
        let format = meta
            .get("format")
            .map_err(damage)?
            .map(|v| v.to_vec())
            .unwrap_or_default();
        if format != FORMAT {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(&format).into_owned(),
            });
        }
        let params = read_params(&meta, "kdf", damage)?
            .ok_or_else(|| corrupt("meta", b"kdf", "missing or unreadable"))?;
        let next = read_params(&meta, KDF_NEXT, damage)?;
        // The key the passphrase derives, with the parameters that opened it: the
        // store's, or those of a passphrase change that was interrupted after the
        // identity file took the new passphrase (`Store::change_passphrase`).
        let (wrap, used, derived) = match known {
            Some((key, p)) if p == params || Some(p) == next => (key, p, false),
            _ => {
                unlock_limit::check(path)?;
                let derive = |p: &KdfParams| {
                    crypt::derive(passphrase, p).map_err(|e| StoreError::Kdf(e.to_string()))
                };
                let key = derive(&params)?;
                match next {
                    Some(n) if unwrap_key(&meta, "wrapped-key", &key, damage)?.is_none() => {
                        (derive(&n)?, n, true)
                    }
                    _ => (key, params, true),
                }
            }
        };
        let record = if used == params {
            "wrapped-key"
        } else {
            WRAPPED_NEXT
        };
        let (data_key, marked) = match unwrap_key(&meta, record, &wrap, damage)? {
            Some(k) => k,
            None => {
                if derived {
                    unlock_limit::failed(path);
                }
                return Err(StoreError::WrongPassphrase(path.to_path_buf()));
            }
        };
        if derived {
            unlock_limit::succeeded(path);
        }
        let mac = integrity::MacKey::derive(&data_key);
        let digests = match integrity::check(path, &db, &meta, &data_key, &mac, marked)? {
            integrity::Checked::Intact(digests) => digests,
            integrity::Checked::EnvelopesChanged(why) => {
                // Quarantined: nothing below is written (an interrupted passphrase change
                // is finished after the repair), and failed unlocks stay recorded.
                let mut store = Self::assemble(path, db, data_key, wrap, used, Default::default())?;
                store.changed_outside = Some(why);
                return Ok(store);
            }
            integrity::Checked::Unprotected(digests) => {
                // A store made before digests were kept: they are kept from now on.
                let mut batch = sled::Batch::default();
                batch.insert(integrity::RECORD, digests.seal(&data_key));
                batch.insert(record, wrap_data_key(&wrap, record, &data_key));
                meta.apply_batch(batch)?;
                db.flush()?;
                tracing::info!("the store's unsealed records are authenticated from now on");
                digests
            }
        };
        if next.is_some() {
            // Finish (or forget) an interrupted passphrase change.
            let mut batch = sled::Batch::default();
            if used != params {
                batch.insert("kdf", postcard::to_stdvec(&used).unwrap_or_default());
                batch.insert(
                    "wrapped-key",
                    wrap_data_key(&wrap, "wrapped-key", &data_key),
                );
            }
            batch.remove(KDF_NEXT);
            batch.remove(WRAPPED_NEXT);
            meta.apply_batch(batch)?;
            db.flush()?;
        }
        let mut store = Self::assemble(path, db, data_key, wrap, used, digests)?;
        store.failed_unlocks = unlock_limit::take(path);
        Ok(store)
    }

    /// Why the envelope records are not as Huddle left them, if so (found at open): the
    /// store is quarantined. It reads (`audit verify` names the audit entries edited,
    /// removed or reordered), refuses every write ([`StoreError::Changed`]), and `huddle
    /// repair` rebuilds it.
    pub fn changed_outside(&self) -> Option<&ChangedOutside> {
        self.changed_outside.as_ref()
    }

    /// Whether the store was changed outside Huddle ([`Store::changed_outside`]).
    pub fn envelopes_modified(&self) -> bool {
        self.changed_outside.is_some()
    }

    /// Quarantines the store for a change found above it (its roster is older than the
    /// identity file beside it): from now on it refuses every write.
    pub fn quarantine(&mut self, why: ChangedOutside) {
        self.changed_outside = Some(why);
    }

    /// Refuses a write to a quarantined store.
    fn refuse_if_changed(&self) -> Result<(), StoreError> {
        match &self.changed_outside {
            Some(why) => Err(StoreError::Changed {
                path: self.path.clone(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Re-wraps the data key (and the identity file) with `new`, a fresh salt and the
    /// recommended Argon2id parameters. A crash at any point leaves the old or the new
    /// passphrase opening everything: the new wrapping is first added beside the old
    /// one, then the identity file is replaced (atomically: the point of no return),
    /// then the old wrapping goes; [`Store::open_known`] finishes an interrupted change.
    pub fn change_passphrase(&mut self, new: &[u8]) -> Result<(), StoreError> {
        self.refuse_if_changed()?;
        check_strength(new)?;
        self.ensure_space()?;
        let params = KdfParams::fresh();
        let wrap = crypt::derive(new, &params).map_err(|e| StoreError::Kdf(e.to_string()))?;
        if identity_file::exists(&self.path) {
            self.stage_wrapping(&wrap, &params)?;
            self.rewrap_identity(&wrap, &params)?;
        }
        self.commit_wrapping(wrap, params)
    }

    /// Change, step 1: the new wrapping beside the old one (the old passphrase still opens).
    fn stage_wrapping(&self, wrap: &SecretKey, params: &KdfParams) -> Result<(), StoreError> {
        let meta = self.wrote(self.db.open_tree("meta"))?;
        let mut batch = sled::Batch::default();
        batch.insert(KDF_NEXT, postcard::to_stdvec(params).unwrap_or_default());
        batch.insert(
            WRAPPED_NEXT,
            wrap_data_key(wrap, WRAPPED_NEXT, &self.data_key),
        );
        self.wrote(meta.apply_batch(batch))?;
        self.flush()
    }

    /// Change, step 2: the identity file sealed with the new key (from here on only the
    /// new passphrase opens the directory).
    fn rewrap_identity(&self, wrap: &SecretKey, params: &KdfParams) -> Result<(), StoreError> {
        let plain = self
            .read_identity()
            .ok_or_else(|| StoreError::IdentityDamaged {
                path: identity_file::path(&self.path),
                why: "it does not open with this store's key",
            })?;
        identity_file::write(&self.path, wrap, params, &plain)
    }

    /// Change, step 3: the new wrapping replaces the old one.
    fn commit_wrapping(&mut self, wrap: SecretKey, params: KdfParams) -> Result<(), StoreError> {
        let meta = self.wrote(self.db.open_tree("meta"))?;
        let mut batch = sled::Batch::default();
        batch.insert("kdf", postcard::to_stdvec(&params).unwrap_or_default());
        batch.insert(
            "wrapped-key",
            wrap_data_key(&wrap, "wrapped-key", &self.data_key),
        );
        batch.remove(KDF_NEXT);
        batch.remove(WRAPPED_NEXT);
        self.wrote(meta.apply_batch(batch))?;
        self.flush()?;
        self.wrap_key = wrap;
        self.kdf = params;
        Ok(())
    }

    /// The times (unix ms) of the wrong passphrases tried before this store was opened,
    /// oldest first; each is returned once (for the audit trail).
    pub fn take_failed_unlocks(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.failed_unlocks)
    }

    /// The Argon2id parameters the passphrase is derived with.
    pub fn kdf_params(&self) -> KdfParams {
        self.kdf
    }

    fn assemble(
        path: &Path,
        db: sled::Db,
        data_key: SecretKey,
        wrap_key: SecretKey,
        kdf: KdfParams,
        digests: integrity::Digests,
    ) -> Result<Store, StoreError> {
        let damage = |e| recovery::classify(path, e);
        Ok(Store {
            meta: db.open_tree("meta").map_err(damage)?,
            mac: integrity::MacKey::derive(&data_key),
            digests: Mutex::new(digests),
            changed_outside: None,
            path: path.to_path_buf(),
            envelopes: db.open_tree("envelopes").map_err(damage)?,
            pending: db.open_tree("pending").map_err(damage)?,
            heads: db.open_tree("heads").map_err(damage)?,
            granted: db.open_tree("granted").map_err(damage)?,
            space: space::Guard::new(path),
            poisoned: AtomicBool::new(false),
            data_key,
            failed_unlocks: Vec::new(),
            wrap_key,
            kdf,
            db,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses to start a command that writes unless the whole reserve is free.
    pub fn ensure_space(&self) -> Result<(), StoreError> {
        self.space.check(1.0).map_err(disk_full)
    }

    /// Every single write checks for part of the reserve.
    fn before_write(&self) -> Result<(), StoreError> {
        self.refuse_if_changed()?;
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(StoreError::Damaged {
                path: self.path.clone(),
                why: "an earlier write failed; reopen it".into(),
            });
        }
        self.space.check(WRITE_SHARE).map_err(disk_full)
    }

    /// The result of a sled write: an error leaves sled refusing everything (its global
    /// error) until [`Store::recover`] reopens it.
    fn wrote<T>(&self, r: sled::Result<T>) -> Result<T, StoreError> {
        r.map_err(|e| {
            tracing::warn!("write to the store failed: {e}");
            self.poisoned.store(true, Ordering::Relaxed);
            StoreError::Sled(e)
        })
    }

    /// Whether a write failed since the store was opened (see [`Store::recover`]).
    pub fn needs_recovery(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// Reopens sled after a write error (sled 0.34.7 keeps the first I/O error as its
    /// global error and fails every later operation, even once space is back). What was
    /// flushed before is there again; what was not had not been acknowledged.
    pub fn recover(&mut self) -> Result<(), StoreError> {
        if !self.needs_recovery() {
            return Ok(());
        }
        self.ensure_space()?;
        let placeholder = sled::Config::new().temporary(true).open()?;
        // Every handle on the old database goes before it is opened again (its lock).
        let _old = std::mem::replace(&mut self.db, placeholder.clone());
        for tree in [
            &mut self.envelopes,
            &mut self.pending,
            &mut self.heads,
            &mut self.granted,
            &mut self.meta,
        ] {
            *tree = placeholder.open_tree("placeholder")?;
        }
        drop(_old);
        let db = open_db(&self.path)?;
        let damage = |e| recovery::classify(&self.path, e);
        self.envelopes = db.open_tree("envelopes").map_err(damage)?;
        self.pending = db.open_tree("pending").map_err(damage)?;
        self.heads = db.open_tree("heads").map_err(damage)?;
        self.granted = db.open_tree("granted").map_err(damage)?;
        self.meta = db.open_tree("meta").map_err(damage)?;
        self.db = db;
        self.poisoned.store(false, Ordering::Relaxed);
        self.reload_digests()?;
        tracing::warn!("the store was reopened after a failed write");
        Ok(())
    }

    /// Makes everything written so far durable. A flush that does not end within
    /// [`FLUSH_WAIT`] is given up ([`StoreError::FlushStuck`]); the store then needs
    /// [`Store::recover`].
    pub fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("huddle-flush".into())
            .spawn(move || {
                let flushed = db.flush();
                // Let go of the database before answering: whoever waits may close and
                // reopen it at once (locking a node), and sled's file lock must be free.
                drop(db);
                let _ = tx.send(flushed);
            });
        if let Err(e) = spawned {
            // No thread to wait on: flush here.
            tracing::debug!("flush thread not started: {e}");
            return self.wrote(self.db.flush()).map(drop);
        }
        match rx.recv_timeout(FLUSH_WAIT) {
            Ok(r) => self.wrote(r).map(drop),
            Err(_) => {
                tracing::warn!(
                    "the store's flush did not finish within {} s; given up",
                    FLUSH_WAIT.as_secs()
                );
                self.poisoned.store(true, Ordering::Relaxed);
                Err(StoreError::FlushStuck)
            }
        }
    }

    // ---- the identity file ----

    /// Writes the identity file beside the store, sealed with the passphrase's key.
    pub fn save_identity(&self, plain: &[u8]) -> Result<(), StoreError> {
        self.refuse_if_changed()?;
        identity_file::write(&self.path, &self.wrap_key, &self.kdf, plain)
    }

    /// The identity file's contents, if it is there and this store's key opens it.
    pub fn read_identity(&self) -> Option<Zeroizing<Vec<u8>>> {
        identity_file::open_with(&self.path, &self.wrap_key)
            .ok()
            .flatten()
    }

    // ---- sealed values ----

    pub fn put_sealed(&self, tree: Sealed, key: &[u8], plain: &[u8]) -> Result<(), StoreError> {
        self.before_write()?;
        let t = self.wrote(self.db.open_tree(tree.name()))?;
        self.wrote(t.insert(key, crypt::seal(&self.data_key, tree.name(), key, plain)))?;
        Ok(())
    }

    pub fn get_sealed(
        &self,
        tree: Sealed,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let t = self.db.open_tree(tree.name())?;
        match t.get(key)? {
            None => Ok(None),
            Some(v) => crypt::open(&self.data_key, tree.name(), key, &v)
                .map(Some)
                .map_err(|_| corrupt(tree.name(), key, "does not decrypt")),
        }
    }

    pub fn remove_sealed(&self, tree: Sealed, key: &[u8]) -> Result<(), StoreError> {
        self.refuse_if_changed()?;
        let t = self.wrote(self.db.open_tree(tree.name()))?;
        self.wrote(t.remove(key))?;
        Ok(())
    }

    /// Every (key, value) of a sealed tree; each entry fails or succeeds on its own.
    pub fn scan_sealed(&self, tree: Sealed) -> Result<Vec<SealedEntry>, StoreError> {
        let t = self.db.open_tree(tree.name())?;
        let mut out = Vec::new();
        for item in t.iter() {
            let (k, v) = item?;
            let opened = crypt::open(&self.data_key, tree.name(), &k, &v)
                .map_err(|_| corrupt(tree.name(), &k, "does not decrypt"));
            out.push((k.to_vec(), opened));
        }
        Ok(out)
    }

    // ---- keys ----

    pub fn put_key(&self, slot: &KeySlot, key: &SecretKey) -> Result<(), StoreError> {
        self.put_sealed(Sealed::Keys, &slot.to_bytes(), key.as_bytes())
    }

    pub fn keys(&self) -> Result<Vec<KeyEntry>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in self.scan_sealed(Sealed::Keys)? {
            let slot = KeySlot::from_bytes(&k).ok_or_else(|| corrupt("keys", &k, "bad key"))?;
            let bytes: [u8; 32] = v?
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("keys", &k, "wrong length"))?;
            out.push((slot, SecretKey::from_bytes(bytes)));
        }
        Ok(out)
    }

    // ---- envelopes ----

    /// Stores an accepted envelope and makes it its chain's head.
    pub fn put_envelope(&self, env: &Envelope, id: &EnvelopeId) -> Result<(), StoreError> {
        let h = &env.header;
        let mut value = id.0.to_vec();
        value.extend(env.encode());
        let mut head = h.seq.to_be_bytes().to_vec();
        head.extend_from_slice(&id.0);
        self.write_plain(&[
            Change {
                tree: Plain::Envelopes,
                key: &envelope_key(&h.log, &h.author, h.seq),
                value: Some(&value),
            },
            Change {
                tree: Plain::Heads,
                key: &log_author_key(&h.log, &h.author),
                value: Some(&head),
            },
        ])
    }

    /// Writes an envelope's record as a tool outside Huddle would: no head moves and no
    /// digest changes (for tests of what reads do with a record planted past a head).
    #[cfg(test)]
    pub(crate) fn plant_record(&self, env: &Envelope) {
        let h = &env.header;
        let mut value = env.id().0.to_vec();
        value.extend(env.encode());
        self.envelopes
            .insert(envelope_key(&h.log, &h.author, h.seq), value)
            .expect("planted");
    }

    pub fn envelope_id_at(
        &self,
        log: &LogId,
        author: &DeviceId,
        seq: u64,
    ) -> Result<Option<EnvelopeId>, StoreError> {
        Ok(self
            .envelopes
            .get(envelope_key(log, author, seq))?
            .and_then(|v| v.get(..32).and_then(|b| b.try_into().ok()).map(EnvelopeId)))
    }

    fn decode_envelope(key: &[u8], value: &[u8]) -> Result<Envelope, StoreError> {
        let bytes = value
            .get(32..)
            .ok_or_else(|| corrupt("envelopes", key, "truncated"))?;
        let env =
            Envelope::decode(bytes).map_err(|_| corrupt("envelopes", key, "does not decode"))?;
        if env.id().0[..] != value[..32] || env.verify().is_err() {
            return Err(corrupt("envelopes", key, "signature or id mismatch"));
        }
        Ok(env)
    }

    /// Accepted envelopes of one log (or all logs), in chain order per author; a damaged
    /// record is returned as an error in its place and the rest still come.
    pub fn envelopes(
        &self,
        log: Option<&LogId>,
    ) -> impl Iterator<Item = Result<Envelope, StoreError>> + '_ {
        let prefix = log.map(|l| l.key_bytes().to_vec()).unwrap_or_default();
        self.envelopes.scan_prefix(prefix).map(|item| {
            let (k, v) = item?;
            Self::decode_envelope(&k, &v)
        })
    }

    /// Accepted envelopes of `log` by `author` at `positions`: a caller bounds them at the
    /// chain's head as the replica accepted it, so that a record past the head (never
    /// accepted: planted on disk) is never read. A record that does not hold the envelope
    /// its key names (log, author, position) comes as an error in its place.
    pub fn chain(
        &self,
        log: &LogId,
        author: &DeviceId,
        positions: std::ops::Range<u64>,
    ) -> impl Iterator<Item = Result<Envelope, StoreError>> + '_ {
        let start = envelope_key(log, author, positions.start);
        let end = envelope_key(log, author, positions.end.max(positions.start));
        let (log, author) = (*log, *author);
        self.envelopes.range(start..end).map(move |item| {
            let (k, v) = item?;
            let env = Self::decode_envelope(&k, &v)?;
            let h = &env.header;
            let seq = k
                .get(50..58)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            if h.log != log || h.author != author || Some(h.seq) != seq {
                return Err(corrupt("envelopes", &k, "not the envelope of its position"));
            }
            Ok(env)
        })
    }

    /// Every stored record of `log` as (author, position, the envelope or why it is
    /// damaged), in storage order: `audit verify` names where a damaged or moved record
    /// sits, which [`Store::envelopes`] does not say.
    #[allow(clippy::type_complexity)]
    pub fn envelope_records(
        &self,
        log: &LogId,
    ) -> impl Iterator<Item = Result<(DeviceId, u64, Result<Envelope, StoreError>), StoreError>> + '_
    {
        self.envelopes.scan_prefix(log.key_bytes()).map(|item| {
            let (k, v) = item?;
            let (_, author) =
                parse_log_author(&k).ok_or_else(|| corrupt("envelopes", &k, "bad key"))?;
            let seq = k
                .get(50..58)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| corrupt("envelopes", &k, "bad key"))?;
            Ok((author, seq, Self::decode_envelope(&k, &v)))
        })
    }

    pub fn envelope_count(&self) -> usize {
        self.envelopes.len()
    }

    pub fn heads(&self) -> Result<Vec<HeadEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.heads.iter() {
            let (k, v) = item?;
            let la = parse_log_author(&k).ok_or_else(|| corrupt("heads", &k, "bad key"))?;
            let seq = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            let id = v.get(8..40).and_then(|b| b.try_into().ok()).map(EnvelopeId);
            match (seq, id) {
                (Some(seq), Some(id)) => out.push((la, Head { seq, id })),
                _ => return Err(corrupt("heads", &k, "bad value")),
            }
        }
        Ok(out)
    }

    // ---- pending envelopes ----

    pub fn put_pending(&self, env: &Envelope, id: &EnvelopeId) -> Result<(), StoreError> {
        self.write_plain(&[Change {
            tree: Plain::Pending,
            key: &id.0,
            value: Some(&env.encode()),
        }])
    }

    pub fn remove_pending(&self, id: &EnvelopeId) -> Result<(), StoreError> {
        self.write_plain(&[Change {
            tree: Plain::Pending,
            key: &id.0,
            value: None,
        }])
    }

    /// Pending envelopes; damaged ones are skipped (they were never accepted).
    pub fn pending(&self) -> Result<Vec<Envelope>, StoreError> {
        let mut out = Vec::new();
        for item in self.pending.iter() {
            let (_, v) = item?;
            if let Ok(env) = Envelope::decode(&v) {
                out.push(env);
            }
        }
        Ok(out)
    }

    // ---- who has been given which key ----

    pub fn put_granted(&self, slot: &KeySlot, device: &DeviceId) -> Result<(), StoreError> {
        let mut k = slot.to_bytes();
        k.extend_from_slice(&device.0);
        self.write_plain(&[Change {
            tree: Plain::Granted,
            key: &k,
            value: Some(&[]),
        }])
    }

    pub fn granted(&self) -> Result<Vec<(KeySlot, DeviceId)>, StoreError> {
        let mut out = Vec::new();
        for item in self.granted.iter() {
            let (k, _) = item?;
            let parsed = (|| {
                let slot = KeySlot::from_bytes(k.get(..KeySlot::LEN)?)?;
                let device = DeviceId(k.get(KeySlot::LEN..)?.try_into().ok()?);
                Some((slot, device))
            })();
            out.push(parsed.ok_or_else(|| corrupt("granted", &k, "bad key"))?);
        }
        Ok(out)
    }

    /// Thread ids are sled keys of the snapshot and summary trees.
    pub fn thread_key(thread: &ThreadId) -> Vec<u8> {
        thread.0.to_vec()
    }
}

#[cfg(test)]
mod change_tests;
