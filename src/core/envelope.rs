//! Envelopes: the unit of storage and sync. Each is signed by its author device and
//! chained to that author's previous envelope in the same log, so any device — even one
//! that cannot decrypt it — detects a forged, altered, reordered or forked envelope.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::identity::{self, BadSignature, DeviceSecret};
use super::ids::{ClinicId, DeviceId, EnvelopeId, KeyId, LogId};
use super::sig::Signature;

pub use super::limits::MAX_ENVELOPE_BYTES;

/// Where an envelope sits: clinic, log, author chain position and key epoch.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Header {
    pub clinic: ClinicId,
    pub log: LogId,
    pub author: DeviceId,
    /// Position in the author's chain for this log, from 0.
    pub seq: u64,
    /// The author's previous envelope in this log; `None` exactly when `seq == 0`.
    pub prev: Option<EnvelopeId>,
    /// Key epoch: of the key that encrypts `Body::Sealed`, or of the key `Body::Grants`
    /// carries. A log's epoch advances when the roster narrows who may read it.
    pub epoch: u32,
    /// Which key of that epoch (two devices may mint one concurrently).
    pub key: KeyId,
    /// When the author wrote it, by the author's clock (milliseconds since the Unix
    /// epoch): the time shown for what it carries. Signed, so no other device can
    /// change it.
    pub at_ms: u64,
}

/// What an envelope carries.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Body {
    /// A change (roster operation or Automerge change), encrypted with the log's epoch
    /// key; the header is the associated data.
    Sealed(Vec<u8>),
    /// The log's key `header.key` of `header.epoch`, sealed to each recipient device.
    Grants(Vec<Grant>),
}

/// One sealed copy of a key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Grant {
    pub recipient: DeviceId,
    pub sealed: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Envelope {
    pub header: Header,
    pub body: Body,
    pub signature: Signature,
}

/// Bytes that are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("envelope of {0} bytes exceeds the {MAX_ENVELOPE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("malformed envelope: {0} trailing bytes")]
    Trailing(usize),
    #[error("malformed envelope: not in its one canonical encoding")]
    NotCanonical,
}

const SIGN_DOMAIN: &[u8] = b"huddle/envelope/v1";
const ID_DOMAIN: &[u8] = b"huddle/envelope-id/v1";

impl Header {
    /// Associated data for the body's encryption: the whole header, so a ciphertext moved
    /// to another position, log, epoch or clinic no longer decrypts.
    pub fn aad(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

fn signed_bytes(header: &Header, body: &Body) -> Vec<u8> {
    let mut out = SIGN_DOMAIN.to_vec();
    // Serializing plain structs into a Vec cannot fail.
    out.extend(postcard::to_stdvec(&(header, body)).unwrap_or_default());
    out
}

impl Envelope {
    pub fn sign(author: &DeviceSecret, header: Header, body: Body) -> Envelope {
        let signature = author.sign(&signed_bytes(&header, &body));
        Envelope {
            header,
            body,
            signature,
        }
    }

    /// Checks the author's signature over header and body.
    pub fn verify(&self) -> Result<(), BadSignature> {
        identity::verify(
            &self.header.author,
            &signed_bytes(&self.header, &self.body),
            &self.signature,
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Checks every envelope's signature; `result[i]` says whether `envs[i]` verifies.
    /// Each is verified on its own with the same strict rule as [`Envelope::verify`]
    /// (ed25519 batch verification can accept crafted signatures that strict
    /// verification refuses, which would let devices disagree); large batches are
    /// split across the machine's cores.
    pub fn verify_all(envs: &[&Envelope]) -> Vec<bool> {
        const PARALLEL_FROM: usize = 32;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        if envs.len() < PARALLEL_FROM || threads < 2 {
            return envs.iter().map(|e| e.verify().is_ok()).collect();
        }
        let per = envs.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = envs
                .chunks(per)
                .map(|chunk| {
                    let n = chunk.len();
                    (
                        n,
                        s.spawn(move || {
                            chunk.iter().map(|e| e.verify().is_ok()).collect::<Vec<_>>()
                        }),
                    )
                })
                .collect();
            parts
                .into_iter()
                // A verifier thread only panics on a bug; count its envelopes as unverified.
                .flat_map(|(n, p)| p.join().unwrap_or_else(|_| vec![false; n]))
                .collect()
        })
    }

    /// Decodes exactly one envelope; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let (env, rest) = postcard::take_from_bytes::<Envelope>(bytes)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        // postcard accepts over-long varints, and the signature and id cover the
        // re-encoding: without this, one envelope would have many wire forms (found by
        // fuzzing, `tests/fuzz_cases/envelope/`).
        if env.encode() != bytes {
            return Err(DecodeError::NotCanonical);
        }
        Ok(env)
    }

    /// The content address of this envelope (covers the signature too).
    pub fn id(&self) -> EnvelopeId {
        let mut h = Sha256::new();
        h.update(ID_DOMAIN);
        h.update(self.encode());
        EnvelopeId(h.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::ThreadId;
    use crate::core::policy::Category;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn sample() -> (Envelope, DeviceSecret) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let author = DeviceSecret::generate(&mut rng);
        let header = Header {
            clinic: ClinicId([7; 32]),
            log: LogId::Thread {
                id: ThreadId([1; 16]),
                category: Category::Clinical,
            },
            author: author.id(),
            seq: 0,
            prev: None,
            epoch: 0,
            key: KeyId([0; 8]),
            at_ms: 0,
        };
        (
            Envelope::sign(&author, header, Body::Sealed(vec![1, 2, 3])),
            author,
        )
    }

    #[test]
    fn round_trip_and_any_alteration_breaks_the_signature() {
        let (env, _) = sample();
        let decoded = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(decoded, env);
        assert!(decoded.verify().is_ok());
        let mut altered = env.clone();
        altered.header.seq = 1;
        assert!(altered.verify().is_err());
        let mut altered = env.clone();
        altered.body = Body::Sealed(vec![1, 2, 4]);
        assert!(altered.verify().is_err());
        assert_ne!(altered.id(), env.id());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let (env, _) = sample();
        let mut bytes = env.encode();
        bytes.push(0);
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn batch_verification_names_each_bad_signature() {
        let (env, author) = sample();
        let mut envs: Vec<Envelope> = (0..70)
            .map(|i| {
                let mut h = env.header.clone();
                h.seq = i;
                Envelope::sign(&author, h, Body::Sealed(vec![i as u8]))
            })
            .collect();
        envs[3].signature.0[5] ^= 1;
        envs[66].body = Body::Sealed(vec![9, 9]);
        let refs: Vec<&Envelope> = envs.iter().collect();
        let ok = Envelope::verify_all(&refs);
        let bad: Vec<usize> = (0..70).filter(|i| !ok[*i]).collect();
        assert_eq!(bad, vec![3, 66]);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn flipping_any_byte_is_detected(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (env, _) = sample();
            let mut bytes = env.encode();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            if let Ok(decoded) = Envelope::decode(&bytes) {
                prop_assert!(decoded == env || decoded.verify().is_err());
            }
        }
    }
}
