//! The identity file beside the store (`<data dir>/identity.huddle`): what this device
//! needs to start again from nothing but its peers when the store itself is damaged.
//! Sealed with the key the passphrase derives (the Argon2id parameters, salt included,
//! are in its header), checksummed so damage is told apart from a wrong passphrase, and
//! written atomically (temporary file, fsync, rename, fsync of the directory).
//!
//! Layout: magic line, u16 BE length of the parameters, the parameters (postcard), the
//! sealed contents, SHA-256 of everything before it.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::StoreError;
use super::crypt::{self, KdfParams};
use super::unlock_limit;
use crate::core::cipher::SecretKey;

/// The identity file's name inside the data directory.
pub const IDENTITY_FILE: &str = "identity.huddle";
const MAGIC: &[u8] = b"HUDDLE-IDENTITY-1\n";
const TREE: &str = "identity-file";
/// Far above any real identity (keys, a genesis, a few names and addresses).
const MAX_LEN: u64 = 1024 * 1024;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(IDENTITY_FILE)
}

pub fn exists(dir: &Path) -> bool {
    path(dir).is_file()
}

fn damaged(dir: &Path, why: &'static str) -> StoreError {
    StoreError::IdentityDamaged {
        path: path(dir),
        why,
    }
}

/// Writes `plain` sealed with `key` (derived with `params`), replacing the old file.
pub fn write(
    dir: &Path,
    key: &SecretKey,
    params: &KdfParams,
    plain: &[u8],
) -> Result<(), StoreError> {
    let params_bytes = postcard::to_stdvec(params).unwrap_or_default();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(params_bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(&params_bytes);
    out.extend(crypt::seal(key, TREE, &params_bytes, plain));
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    let target = path(dir);
    let tmp = target.with_extension("huddle.tmp");
    let io = |e| StoreError::Io(target.clone(), e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&out).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &target).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The file's Argon2id parameters and sealed part, checksum verified.
pub fn read_sealed(dir: &Path) -> Result<(KdfParams, Vec<u8>, Vec<u8>), StoreError> {
    let p = path(dir);
    let len = std::fs::metadata(&p)
        .map_err(|e| StoreError::Io(p.clone(), e))?
        .len();
    if len > MAX_LEN {
        return Err(damaged(dir, "far too large"));
    }
    let bytes = std::fs::read(&p).map_err(|e| StoreError::Io(p.clone(), e))?;
    if !bytes.starts_with(MAGIC) {
        return Err(damaged(dir, "not an identity file"));
    }
    let body_len = bytes
        .len()
        .checked_sub(32)
        .filter(|&l| l >= MAGIC.len() + 2)
        .ok_or_else(|| damaged(dir, "truncated"))?;
    if Sha256::digest(&bytes[..body_len])[..] != bytes[body_len..] {
        return Err(damaged(dir, "checksum mismatch"));
    }
    let at = MAGIC.len();
    let params_len = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
    let params_bytes = bytes
        .get(at + 2..at + 2 + params_len)
        .filter(|_| at + 2 + params_len <= body_len)
        .ok_or_else(|| damaged(dir, "truncated header"))?;
    let params: KdfParams =
        postcard::from_bytes(params_bytes).map_err(|_| damaged(dir, "unreadable header"))?;
    let sealed = bytes[at + 2 + params_len..body_len].to_vec();
    Ok((params, params_bytes.to_vec(), sealed))
}

/// Opens the file with the key `key`; `None` when that key does not open it.
pub fn open_with(dir: &Path, key: &SecretKey) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    let (_, params_bytes, sealed) = read_sealed(dir)?;
    Ok(crypt::open(key, TREE, &params_bytes, &sealed).ok())
}

/// Opens the file with the passphrase: its contents, the derived key and parameters.
/// Attempts are rate-limited and a wrong passphrase is recorded ([`unlock_limit`]).
pub fn open(
    dir: &Path,
    passphrase: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, SecretKey, KdfParams), StoreError> {
    let (params, params_bytes, sealed) = read_sealed(dir)?;
    unlock_limit::check(dir)?;
    let key = crypt::derive(passphrase, &params).map_err(|e| StoreError::Kdf(e.to_string()))?;
    // The checksum held, so a failure to open is the passphrase.
    let Ok(plain) = crypt::open(&key, TREE, &params_bytes, &sealed) else {
        unlock_limit::failed(dir);
        return Err(StoreError::WrongPassphrase(dir.to_path_buf()));
    };
    unlock_limit::succeeded(dir);
    Ok((plain, key, params))
}
