//! Sealing a key to one device with the one-way Noise pattern X (snow):
//! `Noise_X_25519_ChaChaPoly_BLAKE2s`. Only the recipient's X25519 key opens it, and the
//! recipient learns (authenticated) the sender's X25519 static key. The prologue binds a
//! sealed key to its context (clinic, log, epoch, recipient), so it cannot be replayed
//! as the key of another thread.

use super::cipher::SecretKey;
use super::identity::DeviceSecret;
use zeroize::Zeroizing;

const PATTERN: &str = "Noise_X_25519_ChaChaPoly_BLAKE2s";
/// ephemeral (32) + encrypted static (32 + 16) + encrypted payload (32 + 16).
pub const SEALED_LEN: usize = 128;

/// Why a sealed key could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("sealed key is {0} bytes, expected {SEALED_LEN}")]
    Length(usize),
    #[error("sealed key does not open with this device's key in this context")]
    Open,
    #[error("noise handshake setup failed: {0}")]
    Noise(String),
}

fn params() -> snow::params::NoiseParams {
    // The pattern string is a constant that snow parses; a failure is a programming error
    // caught by every test that seals.
    PATTERN.parse().expect("valid noise pattern")
}

/// Seals `key` from `sender` to the device whose X25519 key is `recipient`.
pub fn seal(
    sender: &DeviceSecret,
    recipient: &[u8; 32],
    context: &[u8],
    key: &SecretKey,
) -> Result<Vec<u8>, SealError> {
    let secret = sender.exchange_secret();
    let noise = |e: snow::Error| SealError::Noise(e.to_string());
    let mut hs = snow::Builder::new(params())
        .local_private_key(secret.as_ref())
        .and_then(|b| b.remote_public_key(recipient))
        .and_then(|b| b.prologue(context))
        .and_then(|b| b.build_initiator())
        .map_err(noise)?;
    let mut out = vec![0u8; SEALED_LEN];
    let n = hs.write_message(key.as_bytes(), &mut out).map_err(noise)?;
    out.truncate(n);
    Ok(out)
}

/// Opens a sealed key; returns it with the sender's X25519 static key.
pub fn open(
    recipient: &DeviceSecret,
    context: &[u8],
    sealed: &[u8],
) -> Result<(SecretKey, [u8; 32]), SealError> {
    if sealed.len() != SEALED_LEN {
        return Err(SealError::Length(sealed.len()));
    }
    let secret = recipient.exchange_secret();
    let mut hs = snow::Builder::new(params())
        .local_private_key(secret.as_ref())
        .and_then(|b| b.prologue(context))
        .and_then(|b| b.build_responder())
        .map_err(|e| SealError::Noise(e.to_string()))?;
    let mut plain = Zeroizing::new([0u8; 64]);
    let n = hs
        .read_message(sealed, plain.as_mut())
        .map_err(|_| SealError::Open)?;
    let key: [u8; 32] = plain[..n].try_into().map_err(|_| SealError::Open)?;
    let sender: [u8; 32] = hs
        .get_remote_static()
        .and_then(|s| s.try_into().ok())
        .ok_or(SealError::Open)?;
    Ok((SecretKey::from_bytes(key), sender))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn only_the_recipient_opens_and_learns_the_sender() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let (a, b, c) = (
            DeviceSecret::generate(&mut rng),
            DeviceSecret::generate(&mut rng),
            DeviceSecret::generate(&mut rng),
        );
        let key = SecretKey::generate(&mut rng);
        let sealed = seal(&a, &b.public().exchange, b"ctx", &key).unwrap();
        assert_eq!(sealed.len(), SEALED_LEN);
        let (opened, sender) = open(&b, b"ctx", &sealed).unwrap();
        assert_eq!(opened, key);
        assert_eq!(sender, a.public().exchange);
        assert_eq!(open(&c, b"ctx", &sealed).err(), Some(SealError::Open));
        assert_eq!(open(&b, b"other", &sealed).err(), Some(SealError::Open));
        assert_eq!(
            open(&b, b"ctx", &sealed[1..]).err(),
            Some(SealError::Length(127))
        );
    }
}
