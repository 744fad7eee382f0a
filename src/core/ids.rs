//! Identifiers: fixed-size byte strings shown as hex, and the log an envelope belongs to.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::policy::Category;

/// Why a textual identifier could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a valid {kind}: expected {len} hex characters")]
pub struct ParseIdError {
    pub kind: &'static str,
    pub text: String,
    pub len: usize,
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// The identifier as lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first eight hex characters, for people.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || ParseIdError { kind: $kind, text: s.to_string(), len: $len * 2 };
                let bytes = hex::decode(s.trim()).map_err(|_| err())?;
                Ok(Self(bytes.try_into().map_err(|_| err())?))
            }
        }
    };
}

byte_id!(
    /// A clinic: the hash of its signed genesis.
    ClinicId, 32, "clinic id");
byte_id!(
    /// A device: its ed25519 verifying key, which is also its future libp2p identity.
    DeviceId, 32, "device id");
byte_id!(
    /// An envelope: the hash of its signed encoding.
    EnvelopeId, 32, "envelope id");
byte_id!(
    /// A staff member of a clinic (random, stable across renames and devices).
    MemberId, 16, "member id");
byte_id!(
    /// A thread: its first byte is its category's code, so that one thread id has one
    /// category that every device can check without keys; the rest is random (derived
    /// from its creator, see `core::thread`).
    ThreadId, 16, "thread id");
byte_id!(
    /// A key's public fingerprint: which of the keys of one epoch sealed an envelope.
    KeyId, 8, "key id");

/// The log an envelope belongs to. A thread's category is part of its log, so every
/// device of the clinic — including one that cannot decrypt the thread — knows who may
/// read it, and shows it as present-but-locked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub enum LogId {
    /// The clinic roster: members, devices, roles and policy.
    Roster,
    /// One conversation thread.
    Thread { id: ThreadId, category: Category },
    /// Grants of a category's keys: every thread of the category at epoch `e` is
    /// encrypted with a key derived from the category key of epoch `e`.
    Keys(Category),
    /// The clinic's audit trail: one chain per device, each entry sealed to the admin
    /// devices of its time (see `core::audit`). It has no category, so every active
    /// device may write (only) its own chain, and every device relays it blind.
    Audit,
}

impl LogId {
    /// A fixed-width binary key for ordered storage: tag, category, thread id (18 bytes).
    pub fn key_bytes(&self) -> [u8; 18] {
        let mut out = [0u8; 18];
        match self {
            LogId::Roster => {}
            LogId::Thread { id, category } => {
                out[0] = 1;
                out[1] = category.code();
                out[2..].copy_from_slice(&id.0);
            }
            LogId::Keys(category) => {
                out[0] = 2;
                out[1] = category.code();
            }
            LogId::Audit => out[0] = 3,
        }
        out
    }

    /// Inverse of [`LogId::key_bytes`].
    pub fn from_key_bytes(bytes: &[u8]) -> Option<LogId> {
        match bytes.first()? {
            0 if bytes.len() == 18 && bytes[1..].iter().all(|b| *b == 0) => Some(LogId::Roster),
            1 if bytes.len() == 18 => Some(LogId::Thread {
                category: Category::from_code(bytes[1])?,
                id: ThreadId(bytes[2..].try_into().ok()?),
            }),
            2 if bytes.len() == 18 && bytes[2..].iter().all(|b| *b == 0) => {
                Some(LogId::Keys(Category::from_code(bytes[1])?))
            }
            3 if bytes.len() == 18 && bytes[1..].iter().all(|b| *b == 0) => Some(LogId::Audit),
            _ => None,
        }
    }

    /// Whether a thread log's id carries its category (one thread id, one category).
    pub fn well_formed(&self) -> bool {
        match self {
            LogId::Thread { id, category } => id.0[0] == category.code(),
            // Direct conversations have no category key: their keys are their own.
            LogId::Keys(category) => !category.is_direct(),
            LogId::Roster | LogId::Audit => true,
        }
    }

    /// The log whose keys encrypt this log: a thread's category key log; a direct
    /// conversation, the roster and the audit log are their own (a direct conversation
    /// has no category key; audit entries carry their keys, see `core::audit`).
    pub fn key_log(&self) -> LogId {
        match self {
            LogId::Thread { category, .. } if !category.is_direct() => LogId::Keys(*category),
            other => *other,
        }
    }

    /// The category whose readers may read (and so write) this log; `None` for the
    /// roster and the audit log, which every active device may write (audit entries
    /// are readable by admins only, by how they are sealed).
    pub fn category(&self) -> Option<Category> {
        match self {
            LogId::Thread { category, .. } | LogId::Keys(category) => Some(*category),
            LogId::Roster | LogId::Audit => None,
        }
    }

    /// Whether this is a direct conversation's log (see `core::roster::direct`).
    pub fn is_direct(&self) -> bool {
        matches!(self, LogId::Thread { category, .. } if category.is_direct())
    }

    /// The thread this log belongs to, if any.
    pub fn thread(&self) -> Option<ThreadId> {
        match self {
            LogId::Thread { id, .. } => Some(*id),
            LogId::Roster | LogId::Keys(_) | LogId::Audit => None,
        }
    }
}
