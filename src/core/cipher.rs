//! Symmetric encryption of envelope payloads with a log's epoch key
//! (XChaCha20-Poly1305: random 24-byte nonces are safe at any volume).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

const NONCE: usize = 24;

/// A 256-bit symmetric key; wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// Decryption failed: wrong key, or the bytes or their context were altered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed: wrong key or altered data")]
pub struct DecryptError;

impl SecretKey {
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        let key = SecretKey(k);
        k.zeroize();
        key
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `nonce ‖ ciphertext`, authenticated together with `aad`.
    pub fn encrypt(&self, rng: &mut impl CryptoRng, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.0));
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            // Encryption fails only for inputs beyond 256 GiB, which no caller produces.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, aad: &[u8], data: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if data.len() < NONCE + 16 {
            return Err(DecryptError);
        }
        let (nonce, sealed) = data.split_at(NONCE);
        XChaCha20Poly1305::new(Key::from_slice(&self.0))
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn round_trip_and_tamper_detection() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let key = SecretKey::generate(&mut rng);
        let mut ct = key.encrypt(&mut rng, b"ctx", b"note");
        assert_eq!(key.decrypt(b"ctx", &ct).unwrap(), b"note");
        assert_eq!(key.decrypt(b"other", &ct), Err(DecryptError));
        assert_eq!(
            SecretKey::generate(&mut rng).decrypt(b"ctx", &ct),
            Err(DecryptError)
        );
        ct[30] ^= 1;
        assert_eq!(key.decrypt(b"ctx", &ct), Err(DecryptError));
        assert_eq!(key.decrypt(b"ctx", &ct[..10]), Err(DecryptError));
    }
}
