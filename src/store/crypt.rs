//! Encryption at rest: a random data key, wrapped with a key derived from the user's
//! passphrase by Argon2id. Every sealed value is bound to its tree and sled key, so a
//! record copied to another place no longer opens.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::core::cipher::{DecryptError, SecretKey};

/// Argon2id cost, stored with the database so it can be raised later.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct KdfParams {
    pub salt: [u8; 16],
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

impl KdfParams {
    /// Argon2id for new stores and passphrase changes, with a fresh salt: 64 MiB, 3
    /// passes, 1 lane (RFC 9106's second recommended option, and above OWASP's minimum
    /// for interactive logins). Stores made with other parameters (19 MiB, 2 passes
    /// before issue #10) keep theirs until the passphrase is changed.
    pub fn recommended(salt: [u8; 16]) -> Self {
        KdfParams {
            salt,
            memory_kib: 64 * 1024,
            iterations: 3,
            lanes: 1,
        }
    }

    /// The parameters of stores created before issue #10 (19 MiB, 2 passes): still opened.
    pub fn legacy(salt: [u8; 16]) -> Self {
        KdfParams {
            salt,
            memory_kib: 19 * 1024,
            iterations: 2,
            lanes: 1,
        }
    }

    /// Recommended parameters with a fresh random salt.
    pub fn fresh() -> Self {
        let mut salt = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        Self::recommended(salt)
    }
}

/// Derives the key that wraps the data key.
pub fn derive(passphrase: &[u8], params: &KdfParams) -> Result<SecretKey, argon2::Error> {
    let p = Params::new(params.memory_kib, params.iterations, params.lanes, Some(32))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p).hash_password_into(
        passphrase,
        &params.salt,
        out.as_mut(),
    )?;
    Ok(SecretKey::from_bytes(*out))
}

fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut a = b"huddle/at-rest/v1/".to_vec();
    a.extend_from_slice(tree.as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}

/// Encrypts `plain` for storage at `tree`/`key`.
pub fn seal(data_key: &SecretKey, tree: &str, key: &[u8], plain: &[u8]) -> Vec<u8> {
    data_key.encrypt(&mut rand::rng(), &aad(tree, key), plain)
}

/// Opens a value stored at `tree`/`key`.
pub fn open(
    data_key: &SecretKey,
    tree: &str,
    key: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    data_key
        .decrypt(&aad(tree, key), sealed)
        .map(Zeroizing::new)
}
