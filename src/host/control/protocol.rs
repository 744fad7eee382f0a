//! What crosses the control socket: one [`Request`] and one [`Reply`] per connection,
//! each a JSON document. A request carries a version number, the client's proof (the
//! passphrase or an unlock session's token) and a typed [`Command`]: a node operation
//! ([`Op`]), `unlock` or `lock`. Requests are size-bounded and decoded in two steps:
//! the version first, so that a client of another release gets a plain answer instead
//! of a decoding error, then the whole request.
//!
//! The CLI and the node it talks to are one binary on one device; the version says
//! when they are not (a running `huddle serve` of an older release after an upgrade).

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::super::guard::Proof;
use crate::node::{Op, OpResult};

/// The protocol's version; a request of another version is answered with
/// [`Answer::Failed`] naming both.
pub const VERSION: u32 = 1;
/// Requests larger than this are refused unread (an operation's arguments: a post's
/// text is at most 64 KiB).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Replies larger than this are not read (a thread of 10⁵ messages is ~40 MB as JSON;
/// the audit trail of a busy year about as much).
pub const MAX_REPLY_BYTES: usize = 512 * 1024 * 1024;

/// What the client asks for.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Carry out a node operation (needs proof; while locked only `Op::Status`).
    Run(Op),
    /// Prove the passphrase once and open a session (serve's node opens if locked).
    Unlock,
    /// End the session and, for `huddle serve`, lock the node. Needs no proof: it only
    /// takes access away.
    Lock,
}

/// The client's proof, as sent.
#[derive(Default, Serialize, Deserialize)]
pub enum WireProof {
    #[default]
    None,
    Passphrase(String),
    /// A session token, hex.
    Token(String),
}

impl Drop for WireProof {
    fn drop(&mut self) {
        match self {
            WireProof::Passphrase(s) | WireProof::Token(s) => s.zeroize(),
            WireProof::None => {}
        }
    }
}

impl From<Proof> for WireProof {
    fn from(proof: Proof) -> WireProof {
        match proof {
            Proof::None => WireProof::None,
            Proof::Passphrase(p) => WireProof::Passphrase(p.to_string()),
            Proof::Token(t) => WireProof::Token(t.to_string()),
        }
    }
}

impl WireProof {
    /// The proof for the guard (the wire copy is wiped when dropped).
    pub fn take(&mut self) -> Proof {
        match std::mem::take(self) {
            WireProof::None => Proof::None,
            WireProof::Passphrase(ref p) => Proof::Passphrase(Zeroizing::new(p.clone())),
            WireProof::Token(ref t) => Proof::Token(Zeroizing::new(t.clone())),
        }
    }
}

/// One request.
#[derive(Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(default)]
    pub proof: WireProof,
    pub command: Command,
}

/// The first step of decoding: only the version.
#[derive(Deserialize)]
struct Versioned {
    version: u32,
}

/// How a locked node's network stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum LockedNetwork {
    /// It keeps syncing blind: envelopes are checked, stored and forwarded unread.
    Blind,
    /// It is not syncing.
    Stopped,
}

/// What became of a request.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Answer {
    /// The operation ran and returned this.
    Done(OpResult),
    /// It was refused (no proof, locked, malformed) or it failed, in words.
    Failed(String),
    /// The node stopped before carrying it out: nothing was done.
    NotRun,
    /// `Op::Status` of a locked node: what it may say without keys.
    Locked {
        network: LockedNetwork,
        /// Envelopes received while locked, waiting for the unlock.
        inbox: u64,
        /// `huddle serve` (true) or the desktop app (false).
        serve: bool,
    },
    /// `unlock` succeeded: the token of the new session (hex).
    Unlocked { session: String },
    /// `lock` ended the session; `closed` says whether serve's node was open and is
    /// now locked, `serve` whether the node locks itself (serve) or is the app's.
    LockedNow { closed: bool, serve: bool },
}

/// One reply.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Reply {
    pub version: u32,
    pub answer: Answer,
}

impl Reply {
    pub fn new(answer: Answer) -> Reply {
        Reply {
            version: VERSION,
            answer,
        }
    }

    pub fn failed(why: impl std::fmt::Display) -> Reply {
        Reply::new(Answer::Failed(why.to_string()))
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Answer::Unlocked { session } = &mut self.answer {
            session.zeroize();
        }
    }
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("the request is larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("the reply is malformed: {0}")]
    MalformedReply(String),
    #[error("the reply is larger than {MAX_REPLY_BYTES} bytes")]
    ReplyTooLarge,
    #[error(
        "the running node speaks control protocol {ours}, this command {theirs}: use the \
         same huddle release for both (restart `huddle serve` or the app after an upgrade)"
    )]
    Version { ours: u32, theirs: u32 },
}

/// Decodes a request: bounded, version first.
pub fn decode_request(bytes: &[u8]) -> Result<Request, ProtocolError> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(ProtocolError::TooLarge);
    }
    let malformed = |e: serde_json::Error| ProtocolError::Malformed(e.to_string());
    let Versioned { version } = serde_json::from_slice(bytes).map_err(malformed)?;
    if version != VERSION {
        return Err(ProtocolError::Version {
            ours: VERSION,
            theirs: version,
        });
    }
    serde_json::from_slice(bytes).map_err(malformed)
}

/// Encodes a request (wiped from memory when dropped: it may hold the passphrase).
pub fn encode_request(request: &Request) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(request).unwrap_or_default())
}

/// Decodes a reply: bounded.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, ProtocolError> {
    if bytes.len() > MAX_REPLY_BYTES {
        return Err(ProtocolError::ReplyTooLarge);
    }
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::MalformedReply(e.to_string()))
}

/// Encodes a reply (wiped when dropped: it may hold a session token).
pub fn encode_reply(reply: &Reply) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(reply).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_another_version_is_named() {
        let request = Request {
            version: VERSION,
            proof: WireProof::Token("ab".into()),
            command: Command::Run(Op::Show {
                thread: "3fa8".into(),
            }),
        };
        let bytes = encode_request(&request);
        let back = decode_request(&bytes).unwrap();
        assert_eq!(back.command, request.command);
        let other = String::from_utf8(bytes.to_vec())
            .unwrap()
            .replace(&format!("\"version\":{VERSION}"), "\"version\":99");
        assert_eq!(
            decode_request(other.as_bytes()).err(),
            Some(ProtocolError::Version {
                ours: VERSION,
                theirs: 99
            })
        );
    }

    #[test]
    fn junk_and_oversized_requests_are_refused() {
        assert!(matches!(
            decode_request(b"{\"version\":1,\"command\":{\"Run\":\"Nope\"}}"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            decode_request(&[b' '; MAX_REQUEST_BYTES + 1]),
            Err(ProtocolError::TooLarge)
        ));
        assert!(matches!(
            decode_request(b"argv please"),
            Err(ProtocolError::Malformed(_))
        ));
    }
}
