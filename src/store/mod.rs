//! Persistent storage in sled, encrypted at rest. Envelopes are stored as received (they
//! are already end-to-end encrypted and signed); everything else that can hold names,
//! clinical text or secret keys is sealed with the data key. Sled keys hold only ids.
//! Nothing is acknowledged before [`Store::flush`] returns.

mod crypt;

use std::path::{Path, PathBuf};

use rand::RngCore;
use zeroize::Zeroizing;

use crate::core::cipher::SecretKey;
use crate::core::envelope::Envelope;
use crate::core::ids::{DeviceId, EnvelopeId, LogId, ThreadId};
use crate::core::replica::{Head, KeySlot};
use crypt::KdfParams;

const FORMAT: &[u8] = b"huddle-store-1";
/// The shortest passphrase accepted for a new store.
pub const MIN_PASSPHRASE: usize = 8;

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
    #[error("the passphrase must be at least {MIN_PASSPHRASE} characters")]
    WeakPassphrase,
    #[error("{0} is in use by another Huddle process")]
    Locked(PathBuf),
    #[error("corrupted record in `{tree}` at key {key}: {why}")]
    Corrupt {
        tree: &'static str,
        key: String,
        why: &'static str,
    },
    #[error("{path} is not a Huddle data directory (format `{found}`)")]
    Format { path: PathBuf, found: String },
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
    envelopes: sled::Tree,
    pending: sled::Tree,
    heads: sled::Tree,
    granted: sled::Tree,
}

fn corrupt(tree: &'static str, key: &[u8], why: &'static str) -> StoreError {
    StoreError::Corrupt {
        tree,
        key: hex::encode(key),
        why,
    }
}

fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    sled::Config::new().path(path).open().map_err(|e| match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
            StoreError::Locked(path.to_path_buf())
        }
        sled::Error::Io(io) if io.to_string().contains("lock") => {
            StoreError::Locked(path.to_path_buf())
        }
        other => StoreError::Sled(other),
    })
}

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
        path.join("conf").exists() || path.join("db").exists()
    }

    /// Creates a new store at `path`, protected by `passphrase`.
    pub fn create(path: &Path, passphrase: &[u8]) -> Result<Store, StoreError> {
        if Self::exists(path) {
            return Err(StoreError::AlreadyExists(path.to_path_buf()));
        }
        if passphrase.len() < MIN_PASSPHRASE {
            return Err(StoreError::WeakPassphrase);
        }
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let params = KdfParams::recommended(salt);
        let wrap =
            crypt::derive(passphrase, &params).map_err(|e| StoreError::Kdf(e.to_string()))?;
        let data_key = SecretKey::generate(&mut rand::rng());
        let db = open_db(path)?;
        let meta = db.open_tree("meta")?;
        meta.insert("kdf", postcard::to_stdvec(&params).unwrap_or_default())?;
        meta.insert(
            "wrapped-key",
            crypt::seal(&wrap, "meta", b"wrapped-key", data_key.as_bytes()),
        )?;
        meta.insert("format", FORMAT)?;
        db.flush()?;
        Self::assemble(path, db, data_key)
    }

    /// Opens an existing store; a wrong passphrase changes nothing.
    pub fn open(path: &Path, passphrase: &[u8]) -> Result<Store, StoreError> {
        if !Self::exists(path) {
            return Err(StoreError::NotFound(path.to_path_buf()));
        }
        let db = open_db(path)?;
        let meta = db.open_tree("meta")?;
        let format = meta.get("format")?.map(|v| v.to_vec()).unwrap_or_default();
        if format != FORMAT {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(&format).into_owned(),
            });
        }
        let params: KdfParams = meta
            .get("kdf")?
            .and_then(|v| postcard::from_bytes(&v).ok())
            .ok_or_else(|| corrupt("meta", b"kdf", "missing or unreadable"))?;
        let wrapped = meta
            .get("wrapped-key")?
            .ok_or_else(|| corrupt("meta", b"wrapped-key", "missing"))?;
        let wrap =
            crypt::derive(passphrase, &params).map_err(|e| StoreError::Kdf(e.to_string()))?;
        let raw = crypt::open(&wrap, "meta", b"wrapped-key", &wrapped)
            .map_err(|_| StoreError::WrongPassphrase(path.to_path_buf()))?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("meta", b"wrapped-key", "wrong length"))?;
        Self::assemble(path, db, SecretKey::from_bytes(bytes))
    }

    fn assemble(path: &Path, db: sled::Db, data_key: SecretKey) -> Result<Store, StoreError> {
        Ok(Store {
            path: path.to_path_buf(),
            envelopes: db.open_tree("envelopes")?,
            pending: db.open_tree("pending")?,
            heads: db.open_tree("heads")?,
            granted: db.open_tree("granted")?,
            data_key,
            db,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    // ---- sealed values ----

    pub fn put_sealed(&self, tree: Sealed, key: &[u8], plain: &[u8]) -> Result<(), StoreError> {
        let t = self.db.open_tree(tree.name())?;
        t.insert(key, crypt::seal(&self.data_key, tree.name(), key, plain))?;
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
        self.db.open_tree(tree.name())?.remove(key)?;
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
        self.envelopes
            .insert(envelope_key(&h.log, &h.author, h.seq), value)?;
        let mut head = h.seq.to_be_bytes().to_vec();
        head.extend_from_slice(&id.0);
        self.heads.insert(log_author_key(&h.log, &h.author), head)?;
        Ok(())
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

    /// Accepted envelopes of `log` by `author` from `from_seq` on.
    pub fn envelopes_after(
        &self,
        log: &LogId,
        author: &DeviceId,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<Envelope, StoreError>> + '_ {
        let start = envelope_key(log, author, from_seq);
        let end = envelope_key(log, author, u64::MAX);
        self.envelopes.range(start..=end).map(|item| {
            let (k, v) = item?;
            Self::decode_envelope(&k, &v)
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
        self.pending.insert(id.0, env.encode())?;
        Ok(())
    }

    pub fn remove_pending(&self, id: &EnvelopeId) -> Result<(), StoreError> {
        self.pending.remove(id.0)?;
        Ok(())
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
        self.granted.insert(k, &[])?;
        Ok(())
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
