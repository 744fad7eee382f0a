//! Device identity: an ed25519 signing key (the device id, later also its libp2p
//! identity) and an X25519 static key that thread keys are sealed to.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use x25519_dalek::{PublicKey as ExchangePublic, StaticSecret};
use zeroize::Zeroizing;

use super::ids::DeviceId;
use super::sig::Signature;

/// A device's secret keys. Both halves zeroize themselves when dropped.
pub struct DeviceSecret {
    signing: SigningKey,
    exchange: StaticSecret,
}

/// What other devices know of a device: its id (ed25519 key) and X25519 key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Debug)]
pub struct DevicePublic {
    pub id: DeviceId,
    pub exchange: [u8; 32],
}

/// A signature that does not verify, or a key that is not a valid ed25519 point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct BadSignature;

/// Text that is not a device key string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Huddle device key (expected `{PREFIX}` followed by 136 hex characters{0})")]
pub struct ParseKeysError(&'static str);

const PREFIX: &str = "huddle-device:";

impl DeviceSecret {
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_bytes(&bytes)
    }

    /// Rebuilds the keys from [`DeviceSecret::to_bytes`].
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut sign = Zeroizing::new([0u8; 32]);
        let mut exch = Zeroizing::new([0u8; 32]);
        sign.copy_from_slice(&bytes[..32]);
        exch.copy_from_slice(&bytes[32..]);
        DeviceSecret {
            signing: SigningKey::from_bytes(&sign),
            exchange: StaticSecret::from(*exch),
        }
    }

    pub fn to_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(&self.signing.to_bytes());
        out[32..].copy_from_slice(self.exchange.as_bytes());
        out
    }

    pub fn id(&self) -> DeviceId {
        DeviceId(self.signing.verifying_key().to_bytes())
    }

    pub fn public(&self) -> DevicePublic {
        DevicePublic {
            id: self.id(),
            exchange: ExchangePublic::from(&self.exchange).to_bytes(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// The raw X25519 secret, for the Noise handshake that opens sealed keys.
    pub fn exchange_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.exchange.to_bytes())
    }
}

/// Checks `signature` over `message` by the device `signer` (strict: no malleability).
pub fn verify(
    signer: &DeviceId,
    message: &[u8],
    signature: &Signature,
) -> Result<(), BadSignature> {
    let key = VerifyingKey::from_bytes(&signer.0).map_err(|_| BadSignature)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &sig).map_err(|_| BadSignature)
}

impl DevicePublic {
    fn checksum(&self) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(b"huddle/device-keys/v1");
        h.update(self.id.0);
        h.update(self.exchange);
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }
}

impl fmt::Display for DevicePublic {
    /// `huddle-device:` + hex(ed25519 key ‖ X25519 key ‖ 4-byte checksum).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}{}{}",
            hex::encode(self.id.0),
            hex::encode(self.exchange),
            hex::encode(self.checksum())
        )
    }
}

impl FromStr for DevicePublic {
    type Err = ParseKeysError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.trim().strip_prefix(PREFIX).ok_or(ParseKeysError(""))?;
        let bytes = hex::decode(body).map_err(|_| ParseKeysError(""))?;
        if bytes.len() != 68 {
            return Err(ParseKeysError(""));
        }
        let public = DevicePublic {
            id: DeviceId(bytes[..32].try_into().map_err(|_| ParseKeysError(""))?),
            exchange: bytes[32..64].try_into().map_err(|_| ParseKeysError(""))?,
        };
        if public.checksum()[..] != bytes[64..] {
            return Err(ParseKeysError(
                "; the checksum does not match, was it copied whole?",
            ));
        }
        VerifyingKey::from_bytes(&public.id.0)
            .map_err(|_| ParseKeysError("; invalid ed25519 key"))?;
        Ok(public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn keys_round_trip_and_typos_are_caught() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let secret = DeviceSecret::generate(&mut rng);
        let again = DeviceSecret::from_bytes(&secret.to_bytes());
        assert_eq!(secret.public(), again.public());
        let text = secret.public().to_string();
        assert_eq!(text.parse::<DevicePublic>(), Ok(secret.public()));
        let mut typo = text.clone().into_bytes();
        let i = typo.len() - 10;
        typo[i] = if typo[i] == b'0' { b'1' } else { b'0' };
        assert!(
            String::from_utf8(typo)
                .unwrap()
                .parse::<DevicePublic>()
                .is_err()
        );
    }

    #[test]
    fn signatures_verify_only_for_the_signer_and_message() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let a = DeviceSecret::generate(&mut rng);
        let b = DeviceSecret::generate(&mut rng);
        let sig = a.sign(b"hello");
        assert!(verify(&a.id(), b"hello", &sig).is_ok());
        assert!(verify(&a.id(), b"hellO", &sig).is_err());
        assert!(verify(&b.id(), b"hello", &sig).is_err());
    }
}
