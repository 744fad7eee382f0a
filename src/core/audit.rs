//! The audit trail's rules (45 CFR 164.312(b)), without I/O.
//!
//! Every device appends what it does to its own chain in [`LogId::Audit`]: envelopes are
//! already signed per-(log, author) hash chains, so an entry cannot be edited, removed
//! or reordered without the chain showing it. Entries carry ids only — never patient
//! text, titles or message bodies.
//!
//! An entry is sealed to the clinic's *admin devices* at the time it is written: a
//! fresh content key encrypts the entry (the header is the associated data) and is
//! sealed to each admin device with the Noise X pattern of [`crate::core::seal`], bound
//! to the envelope's header and the recipient. Every other device stores and relays
//! the envelope blind. This replaces, for this one log, the category key logs that
//! threads use: no key epoch has to be agreed, a removed admin reads nothing written
//! after the roster dropped it (the next entry is sealed without it), and the roster's
//! rules need no change (the audit log has no category, so every active device may
//! write its own chain and a revoked device's cutoff applies as for the roster).

use rand::CryptoRng;
use serde::{Deserialize, Serialize};

use super::cipher::SecretKey;
use super::envelope::{Body, Envelope, Grant, Header};
use super::identity::{DevicePublic, DeviceSecret};
use super::ids::{ClinicId, DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use super::policy::Role;
use super::roster::{Op, Roster};
use super::seal::{self, SealError};

/// Failed-unlock times carried by one entry, at most.
pub const MAX_FAILED_TIMES: usize = 64;
/// Longest free text an entry may carry (an emergency-access reason), in bytes.
pub const MAX_REASON_BYTES: usize = 500;
/// Longest message id an entry may carry, in bytes (shown ids are 16 hex characters).
pub const MAX_MESSAGE_ID_BYTES: usize = 64;

/// What happened. Ids only: nothing a patient could be recognized by.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum AuditEvent {
    /// The store was unlocked with the passphrase.
    Unlock,
    /// Wrong passphrases were tried at these times (recorded at the next unlock).
    FailedUnlocks {
        times_ms: Vec<u64>,
    },
    /// A thread's messages were shown.
    ThreadViewed {
        thread: ThreadId,
    },
    /// A message was posted.
    Posted {
        thread: ThreadId,
        message: String,
    },
    /// A task was marked done.
    TaskDone {
        thread: ThreadId,
        message: String,
    },
    /// A bundle of this many envelopes was exported.
    Exported {
        envelopes: u64,
    },
    InviteIssued {
        invite: [u8; 8],
        admin: bool,
    },
    /// An invitation enrolled `device`.
    InviteUsed {
        invite: [u8; 8],
        device: DeviceId,
    },
    InviteCancelled {
        invite: [u8; 8],
    },
    MemberAdded {
        member: MemberId,
        role: Role,
        admin: bool,
    },
    DeviceAdded {
        member: MemberId,
        device: DeviceId,
    },
    RoleChanged {
        member: MemberId,
        role: Role,
        admin: bool,
    },
    MemberRemoved {
        member: MemberId,
    },
    DeviceRevoked {
        device: DeviceId,
    },
    PolicyChanged,
    /// This device minted key `epoch` of `log` because the roster narrowed its readers.
    KeyRotated {
        log: LogId,
        epoch: u32,
    },
    /// A clinician opened a thread they are not a participant of, in an emergency.
    EmergencyAccess {
        thread: ThreadId,
        reason: String,
    },
    /// This device's store was rebuilt from its identity file (recorded once it may
    /// write again, after a peer sent its history back).
    Rebuilt,
    /// Another device offered an audit envelope at position `seq` of its chain that
    /// conflicts with the chain held here: its chain was truncated or rewritten.
    /// `held` is the envelope held at that position (none if the offered one did not
    /// follow the held head).
    ChainConflict {
        device: DeviceId,
        seq: u64,
        held: Option<EnvelopeId>,
        offered: EnvelopeId,
    },
    /// A thread was restricted to this many participants.
    ThreadRestricted {
        thread: ThreadId,
        participants: u32,
    },
    // Variants below were added later; appended so older entries still decode. An
    // admin device of an earlier release cannot decode them: it leaves such an entry
    // out of its trail and names it in `audit verify` as one that does not open, until
    // it upgrades.
    /// The node was locked (its keys left memory), or an unlock session was ended.
    Locked,
    /// An admin lifted a thread's restriction.
    ThreadUnrestricted {
        thread: ThreadId,
    },
    /// The author changed a message's text (the earlier text stays in the thread's
    /// history).
    MessageEdited {
        thread: ThreadId,
        message: String,
    },
    /// The author retracted a message.
    MessageRetracted {
        thread: ThreadId,
        message: String,
    },
    /// An admin brought a removed member back (without their old devices).
    MemberRestored {
        member: MemberId,
    },
    /// A member started a direct conversation of this many participants (themselves
    /// included).
    DirectStarted {
        thread: ThreadId,
        participants: u32,
    },
}

/// The sealed plaintext of one audit envelope. Time and device are the envelope's
/// signed header (`at_ms`, `author`), so they are not repeated here.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct AuditEntry {
    /// The member the device belonged to when it wrote the entry.
    pub member: Option<MemberId>,
    pub event: AuditEvent,
}

/// The body of an audit envelope: the entry encrypted with a fresh key, and that key
/// sealed to each admin device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
struct AuditBox {
    grants: Vec<Grant>,
    ciphertext: Vec<u8>,
}

/// Why an audit envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditOpenError {
    #[error("not an audit envelope")]
    NotAudit,
    #[error("the entry is not sealed to this device (it was not an admin when written)")]
    NotForMe,
    #[error("the entry's author is not a device of this clinic")]
    UnknownAuthor,
    #[error("the entry's key does not open, or not from its author")]
    BadSeal,
    #[error("the entry does not decrypt: altered")]
    Undecryptable,
    #[error("the entry is malformed: {0}")]
    Malformed(&'static str),
    #[error("the entry names a member other than its signing device's: a forgery")]
    Misattributed,
}

/// Who signed an audit envelope, as the roster knows them: the device's public keys and
/// the member it belongs to (`None` only for a founder device before its clinic is
/// named). An entry counts only for that member.
#[derive(Clone, Copy, Debug)]
pub struct Signer<'a> {
    pub keys: &'a DevicePublic,
    pub member: Option<MemberId>,
}

/// The devices an audit entry is sealed to: every active device of an admin member.
pub fn admin_devices(roster: &Roster) -> Vec<DevicePublic> {
    roster
        .devices
        .values()
        .filter(|d| roster.active_member(&d.public.id).is_some_and(|m| m.admin))
        .map(|d| d.public)
        .collect()
}

/// The audit event a roster operation records (none for founding the clinic).
pub fn roster_event(op: &Op) -> Option<AuditEvent> {
    Some(match op {
        Op::Init { .. } => return None,
        Op::AddMember {
            member,
            role,
            admin,
            ..
        }
        | Op::AddInvitedMember {
            member,
            role,
            admin,
            ..
        } => AuditEvent::MemberAdded {
            member: *member,
            role: *role,
            admin: *admin,
        },
        Op::AddDevice { member, device } | Op::AddInvitedDevice { member, device, .. } => {
            AuditEvent::DeviceAdded {
                member: *member,
                device: device.id,
            }
        }
        Op::ChangeRole {
            member,
            role,
            admin,
            ..
        } => AuditEvent::RoleChanged {
            member: *member,
            role: *role,
            admin: *admin,
        },
        Op::RemoveMember { member, .. } => AuditEvent::MemberRemoved { member: *member },
        Op::RevokeDevice { device, .. } => AuditEvent::DeviceRevoked { device: *device },
        Op::SetPolicy { .. } => AuditEvent::PolicyChanged,
        Op::RestrictThread {
            thread, members, ..
        } => AuditEvent::ThreadRestricted {
            thread: *thread,
            participants: u32::try_from(members.len()).unwrap_or(u32::MAX),
        },
        Op::EmergencyAccess { thread, reason, .. } => AuditEvent::EmergencyAccess {
            thread: *thread,
            reason: truncated(reason, MAX_REASON_BYTES),
        },
        Op::UnrestrictThread { thread, .. } => AuditEvent::ThreadUnrestricted { thread: *thread },
        Op::RestoreMember { member } => AuditEvent::MemberRestored { member: *member },
        Op::StartDirect {
            thread, members, ..
        } => AuditEvent::DirectStarted {
            thread: *thread,
            participants: u32::try_from(members.len().saturating_add(1)).unwrap_or(u32::MAX),
        },
    })
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncated(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl AuditEvent {
    /// The thread the event concerns, if any.
    pub fn thread(&self) -> Option<ThreadId> {
        match self {
            AuditEvent::ThreadViewed { thread }
            | AuditEvent::Posted { thread, .. }
            | AuditEvent::TaskDone { thread, .. }
            | AuditEvent::MessageEdited { thread, .. }
            | AuditEvent::MessageRetracted { thread, .. }
            | AuditEvent::EmergencyAccess { thread, .. }
            | AuditEvent::ThreadRestricted { thread, .. }
            | AuditEvent::DirectStarted { thread, .. }
            | AuditEvent::ThreadUnrestricted { thread } => Some(*thread),
            _ => None,
        }
    }

    /// A short machine name for the event (CSV and JSON `event` column).
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Unlock => "unlock",
            AuditEvent::Locked => "lock",
            AuditEvent::FailedUnlocks { .. } => "failed-unlocks",
            AuditEvent::ThreadViewed { .. } => "thread-viewed",
            AuditEvent::Posted { .. } => "post",
            AuditEvent::TaskDone { .. } => "task-done",
            AuditEvent::Exported { .. } => "export",
            AuditEvent::InviteIssued { .. } => "invite-issued",
            AuditEvent::InviteUsed { .. } => "invite-used",
            AuditEvent::InviteCancelled { .. } => "invite-cancelled",
            AuditEvent::MemberAdded { .. } => "member-added",
            AuditEvent::DeviceAdded { .. } => "device-added",
            AuditEvent::RoleChanged { .. } => "role-changed",
            AuditEvent::MemberRemoved { .. } => "member-removed",
            AuditEvent::DeviceRevoked { .. } => "device-revoked",
            AuditEvent::PolicyChanged => "policy-changed",
            AuditEvent::KeyRotated { .. } => "key-rotated",
            AuditEvent::EmergencyAccess { .. } => "emergency-access",
            AuditEvent::Rebuilt => "rebuilt",
            AuditEvent::ChainConflict { .. } => "chain-conflict",
            AuditEvent::ThreadRestricted { .. } => "thread-restricted",
            AuditEvent::ThreadUnrestricted { .. } => "thread-unrestricted",
            AuditEvent::MessageEdited { .. } => "message-edited",
            AuditEvent::MessageRetracted { .. } => "message-retracted",
            AuditEvent::MemberRestored { .. } => "member-restored",
            AuditEvent::DirectStarted { .. } => "direct-started",
        }
    }

    /// The event's details (ids and counts; an emergency reason), for people.
    pub fn details(&self) -> String {
        self.details_naming(&|_| None)
    }

    /// [`AuditEvent::details`] with members by name where `name` knows them (the app's
    /// trail, for an admin; the id is then on hover).
    pub fn details_naming(&self, name: &dyn Fn(&MemberId) -> Option<String>) -> String {
        let who = |m: &MemberId| name(m).unwrap_or_else(|| format!("member {}", m.short()));
        match self {
            AuditEvent::Unlock
            | AuditEvent::Locked
            | AuditEvent::PolicyChanged
            | AuditEvent::Rebuilt
            | AuditEvent::ThreadUnrestricted { .. } => String::new(),
            AuditEvent::FailedUnlocks { times_ms } => format!("{} attempts", times_ms.len()),
            AuditEvent::ThreadViewed { .. } => String::new(),
            AuditEvent::Posted { message, .. }
            | AuditEvent::TaskDone { message, .. }
            | AuditEvent::MessageEdited { message, .. }
            | AuditEvent::MessageRetracted { message, .. } => format!("message {message}"),
            AuditEvent::Exported { envelopes } => format!("{envelopes} envelopes"),
            AuditEvent::InviteIssued { invite, admin } => {
                format!("invitation {}{}", hex::encode(invite), admin_suffix(*admin))
            }
            AuditEvent::InviteUsed { invite, device } => {
                format!(
                    "invitation {} by device {}",
                    hex::encode(invite),
                    device.short()
                )
            }
            AuditEvent::InviteCancelled { invite } => format!("invitation {}", hex::encode(invite)),
            AuditEvent::MemberAdded {
                member,
                role,
                admin,
            }
            | AuditEvent::RoleChanged {
                member,
                role,
                admin,
            } => format!("{} as {role}{}", who(member), admin_suffix(*admin)),
            AuditEvent::DeviceAdded { member, device } => {
                format!("device {} of {}", device.short(), who(member))
            }
            AuditEvent::MemberRemoved { member } | AuditEvent::MemberRestored { member } => {
                who(member)
            }
            AuditEvent::DeviceRevoked { device } => format!("device {}", device.short()),
            AuditEvent::KeyRotated { log, epoch } => format!("{log:?} epoch {epoch}"),
            AuditEvent::EmergencyAccess { reason, .. } => format!("reason: {reason}"),
            AuditEvent::ThreadRestricted { participants, .. }
            | AuditEvent::DirectStarted { participants, .. } => {
                format!("{participants} participants")
            }
            AuditEvent::ChainConflict {
                device,
                seq,
                held,
                offered,
            } => format!(
                "device {}'s audit chain was truncated or rewritten at #{seq} (held {}, offered {})",
                device.short(),
                held.map_or("none".into(), |h| h.short()),
                offered.short()
            ),
        }
    }

    /// Whether the event respects the bounds every reader checks.
    fn within_bounds(&self) -> bool {
        match self {
            AuditEvent::FailedUnlocks { times_ms } => times_ms.len() <= MAX_FAILED_TIMES,
            AuditEvent::Posted { message, .. }
            | AuditEvent::TaskDone { message, .. }
            | AuditEvent::MessageEdited { message, .. }
            | AuditEvent::MessageRetracted { message, .. } => message.len() <= MAX_MESSAGE_ID_BYTES,
            AuditEvent::EmergencyAccess { reason, .. } => reason.len() <= MAX_REASON_BYTES,
            _ => true,
        }
    }
}

fn admin_suffix(admin: bool) -> &'static str {
    if admin { " (admin)" } else { "" }
}

/// Binds a sealed entry key to its envelope's header and recipient.
fn grant_context(header: &Header, recipient: &DeviceId) -> Vec<u8> {
    let mut c = b"huddle/audit-grant/v1".to_vec();
    c.extend(header.aad());
    c.extend_from_slice(&recipient.0);
    c
}

/// The key an audit entry is encrypted with; its fingerprint goes in the header's `key`.
pub fn entry_key(rng: &mut impl CryptoRng) -> SecretKey {
    SecretKey::generate(rng)
}

/// Seals `entry` (encoded) under `header` for `admins`; `key` must be the one whose
/// fingerprint the header carries.
pub fn seal_entry(
    secret: &DeviceSecret,
    rng: &mut impl CryptoRng,
    header: &Header,
    key: &SecretKey,
    admins: &[DevicePublic],
    plain: &[u8],
) -> Result<Body, SealError> {
    let grants = admins
        .iter()
        .map(|a| {
            Ok(Grant {
                recipient: a.id,
                sealed: seal::seal(secret, &a.exchange, &grant_context(header, &a.id), key)?,
            })
        })
        .collect::<Result<Vec<_>, SealError>>()?;
    let ciphertext = key.encrypt(rng, &header.aad(), plain);
    let sealed = postcard::to_stdvec(&AuditBox { grants, ciphertext }).unwrap_or_default();
    Ok(Body::Sealed(sealed))
}

/// Encodes an entry for [`seal_entry`].
pub fn encode_entry(entry: &AuditEntry) -> Vec<u8> {
    postcard::to_stdvec(entry).unwrap_or_default()
}

/// Opens an audit envelope as device `me`; `signer` is its author as the roster knows
/// it: the X25519 key that sealed the entry key must be the device's, and the member
/// the entry names must be the device's member (an entry cannot speak for another
/// member, whatever its sealed text says).
pub fn open_entry(
    me: &DeviceSecret,
    signer: Option<Signer<'_>>,
    clinic: &ClinicId,
    env: &Envelope,
) -> Result<AuditEntry, AuditOpenError> {
    let h = &env.header;
    if h.log != LogId::Audit || h.clinic != *clinic {
        return Err(AuditOpenError::NotAudit);
    }
    let Body::Sealed(bytes) = &env.body else {
        return Err(AuditOpenError::NotAudit);
    };
    let signer = signer
        .filter(|s| s.keys.id == h.author)
        .ok_or(AuditOpenError::UnknownAuthor)?;
    let author = signer.keys;
    let (boxed, rest): (AuditBox, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|_| AuditOpenError::Malformed("body"))?;
    if !rest.is_empty() {
        return Err(AuditOpenError::Malformed("trailing bytes"));
    }
    let grant = boxed
        .grants
        .iter()
        .find(|g| g.recipient == me.id())
        .ok_or(AuditOpenError::NotForMe)?;
    let (key, sender) = seal::open(me, &grant_context(h, &me.id()), &grant.sealed)
        .map_err(|_| AuditOpenError::BadSeal)?;
    if sender != author.exchange || crate::core::replica::key_id(&key) != h.key {
        return Err(AuditOpenError::BadSeal);
    }
    let plain = key
        .decrypt(&h.aad(), &boxed.ciphertext)
        .map_err(|_| AuditOpenError::Undecryptable)?;
    let (entry, rest): (AuditEntry, &[u8]) =
        postcard::take_from_bytes(&plain).map_err(|_| AuditOpenError::Malformed("entry"))?;
    if !rest.is_empty() || !entry.event.within_bounds() {
        return Err(AuditOpenError::Malformed("entry out of bounds"));
    }
    if entry.member != signer.member {
        return Err(AuditOpenError::Misattributed);
    }
    Ok(entry)
}

/// What `audit verify` found wrong with one device's audit chain.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Finding {
    /// The record at this position does not decode, or its signature or id fails.
    Edited { device: DeviceId, seq: u64 },
    /// No record at this position, though later ones (or the chain's head) exist.
    Missing { device: DeviceId, seq: u64 },
    /// The record stored at position `at` is entry `seq`.
    OutOfOrder { device: DeviceId, seq: u64, at: u64 },
    /// Entry `seq` does not link to the entry held before it.
    BrokenLink { device: DeviceId, seq: u64 },
    /// Entry `seq` verifies but its sealed body does not open for this admin device.
    Unreadable { device: DeviceId, seq: u64 },
    /// Entry `seq` opens but names a member other than its device's (a forgery by a
    /// modified client; it is left out of the trail).
    Misattributed { device: DeviceId, seq: u64 },
    /// A conflicting entry was offered for position `seq` (see
    /// [`AuditEvent::ChainConflict`]); `witness` is the device that recorded it.
    Rewritten {
        device: DeviceId,
        seq: u64,
        witness: DeviceId,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Edited { device, seq } => {
                write!(f, "device {}…: entry #{seq} was edited", device.short())
            }
            Finding::Missing { device, seq } => {
                write!(f, "device {}…: entry #{seq} is missing", device.short())
            }
            Finding::OutOfOrder { device, seq, at } => write!(
                f,
                "device {}…: entry #{seq} is out of order (stored at #{at})",
                device.short()
            ),
            Finding::BrokenLink { device, seq } => write!(
                f,
                "device {}…: entry #{seq} does not follow the entry before it (edited or replaced)",
                device.short()
            ),
            Finding::Unreadable { device, seq } => write!(
                f,
                "device {}…: entry #{seq} does not open (altered)",
                device.short()
            ),
            Finding::Misattributed { device, seq } => write!(
                f,
                "device {}…: entry #{seq} names another member than its device's (forged; left out of the trail)",
                device.short()
            ),
            Finding::Rewritten {
                device,
                seq,
                witness,
            } => write!(
                f,
                "device {}…'s audit chain was truncated or rewritten at #{seq} (seen by device {}…)",
                device.short(),
                witness.short()
            ),
        }
    }
}

/// Missing positions reported per chain, at most.
pub const MAX_MISSING_REPORTED: usize = 1000;

/// One stored audit record of one device, in storage order: the position it is stored
/// at, and what it holds (`None` when it did not decode or verify).
pub struct StoredRecord {
    pub at: u64,
    pub entry: Option<(u64, EnvelopeId, Option<EnvelopeId>)>,
}

/// Checks one device's stored audit chain: records in storage order (`at` ascending),
/// and the head the store recorded for the chain (its last seq), if any. Each record
/// should hold entry `at`, linked to entry `at - 1`; positions from 0 to the head should
/// all be present.
pub fn check_chain(device: DeviceId, records: &[StoredRecord], head: Option<u64>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let held_seqs: std::collections::BTreeMap<u64, (EnvelopeId, Option<EnvelopeId>)> = records
        .iter()
        .filter_map(|r| r.entry)
        .map(|(seq, id, prev)| (seq, (id, prev)))
        .collect();
    let stored_at: std::collections::BTreeSet<u64> = records.iter().map(|r| r.at).collect();
    let last = records
        .iter()
        .map(|r| r.at)
        .chain(head)
        .chain(held_seqs.keys().copied())
        .max();
    for r in records {
        match r.entry {
            None => findings.push(Finding::Edited { device, seq: r.at }),
            Some((seq, _, _)) if seq != r.at => findings.push(Finding::OutOfOrder {
                device,
                seq,
                at: r.at,
            }),
            Some((seq, _, prev)) => {
                let expected = seq
                    .checked_sub(1)
                    .and_then(|p| held_seqs.get(&p))
                    .map(|(id, _)| *id);
                let linked = match (seq, prev) {
                    (0, None) => true,
                    (0, Some(_)) => false,
                    (_, None) => false,
                    // The entry before is missing or damaged: reported as such.
                    (_, Some(p)) => expected.is_none_or(|e| e == p),
                };
                if !linked {
                    findings.push(Finding::BrokenLink { device, seq });
                }
            }
        }
    }
    if let Some(last) = last {
        let mut missing = 0;
        for seq in 0..=last {
            if !stored_at.contains(&seq) {
                findings.push(Finding::Missing { device, seq });
                missing += 1;
                // Bounds the walk (and the report) for an absurd head on a damaged disk.
                if missing >= MAX_MISSING_REPORTED {
                    break;
                }
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests;
