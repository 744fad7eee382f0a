//! The clinic roster: a signed genesis, then admin operations (members, devices, roles,
//! policy) carried in roster envelopes. Every device folds the same set of operations
//! with the same rule ([`fold`]: causal order, authority from the causal past, removal
//! wins), so all devices agree on the roster whatever order the envelopes arrived in;
//! an operation that is not allowed has no effect anywhere.
//!
//! The roster also decides key epochs: every operation that takes a device's access to
//! a log away (revocation, removal, a narrower role or policy) advances that log's
//! epoch, and records how far the device's envelopes in each log had been accepted
//! ([`Cutoff`]); anything it signs past that is refused everywhere.

mod access;
mod ancestry;
mod candidates;
mod direct;
mod fold;
mod restrict;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::identity::{self, BadSignature, DevicePublic, DeviceSecret};
use super::ids::{ClinicId, DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use super::policy::{Category, Policy, Role};
use super::sig::Signature;

pub use access::{
    EmergencyGrant, MAX_EMERGENCIES_PER_DAY, MAX_EMERGENCY_REASON_BYTES,
    MAX_OVERLAPPING_EMERGENCIES, Restriction, thread_in,
};
pub use candidates::inert as candidates_inert;
pub use direct::{MAX_DIRECT_PARTICIPANTS, MAX_DIRECT_THREADS};
pub use fold::{Folded, fold};

/// The founding statement of a clinic: no names, only the founder's device keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Genesis {
    pub founder: DevicePublic,
    pub created_ms: u64,
    pub nonce: [u8; 16],
}

/// A genesis signed by its founder device; the clinic id is the hash of this.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct SignedGenesis {
    pub genesis: Genesis,
    pub signature: Signature,
}

const GENESIS_DOMAIN: &[u8] = b"huddle/genesis/v1";

impl SignedGenesis {
    pub fn new(founder: &DeviceSecret, created_ms: u64, nonce: [u8; 16]) -> Self {
        let genesis = Genesis {
            founder: founder.public(),
            created_ms,
            nonce,
        };
        let signature = founder.sign(&Self::signed_bytes(&genesis));
        SignedGenesis { genesis, signature }
    }

    fn signed_bytes(genesis: &Genesis) -> Vec<u8> {
        let mut out = GENESIS_DOMAIN.to_vec();
        out.extend(postcard::to_stdvec(genesis).unwrap_or_default());
        out
    }

    pub fn verify(&self) -> Result<(), BadSignature> {
        identity::verify(
            &self.genesis.founder.id,
            &Self::signed_bytes(&self.genesis),
            &self.signature,
        )
    }

    pub fn clinic_id(&self) -> ClinicId {
        let mut h = Sha256::new();
        h.update(GENESIS_DOMAIN);
        h.update(self.encode());
        ClinicId(h.finalize().into())
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// See [`Roster::write_verdict`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WriteVerdict {
    Allowed,
    NotYet,
    Never,
}

/// How far a device's envelopes in one log were accepted when its access to that log
/// was taken away: envelopes at `seq < next` still count, later ones are refused.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Cutoff {
    pub device: DeviceId,
    pub log: LogId,
    pub next: u64,
}

/// An admin operation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Op {
    /// The founder device names the clinic and its founding admin member.
    Init {
        clinic_name: String,
        member: MemberId,
        name: String,
        role: Role,
    },
    AddMember {
        member: MemberId,
        name: String,
        role: Role,
        admin: bool,
    },
    AddDevice {
        member: MemberId,
        device: DevicePublic,
    },
    ChangeRole {
        member: MemberId,
        role: Role,
        admin: bool,
        cutoffs: Vec<Cutoff>,
    },
    RemoveMember {
        member: MemberId,
        cutoffs: Vec<Cutoff>,
    },
    RevokeDevice {
        device: DeviceId,
        cutoffs: Vec<Cutoff>,
    },
    SetPolicy {
        policy: Policy,
        cutoffs: Vec<Cutoff>,
    },
    // Variants below were added later; appended so older encodings still decode.
    /// An [`Op::AddMember`] made by redeeming an invitation: `invitation` is its public
    /// id (never its secret); a second use of the same id is refused everywhere.
    AddInvitedMember {
        member: MemberId,
        name: String,
        role: Role,
        admin: bool,
        invitation: [u8; 8],
    },
    /// Names a thread's participants (rules in `access.rs`).
    RestrictThread {
        thread: ThreadId,
        category: Category,
        members: Vec<MemberId>,
    },
    /// A member opens a restricted thread for themselves in an emergency.
    EmergencyAccess {
        thread: ThreadId,
        category: Category,
        member: MemberId,
        reason: String,
        from_ms: u64,
        until_ms: u64,
    },
    /// An admin lifts a thread's restriction: it is read again by its category's
    /// readers. A device of an earlier release cannot decode this operation: it keeps
    /// the restriction (fails closed) and reports the envelope as undecryptable until it
    /// upgrades.
    UnrestrictThread {
        thread: ThreadId,
        category: Category,
    },
    /// An [`Op::AddDevice`] made by redeeming a device invitation for an existing member
    /// (a replacement laptop): the member keeps their id, history and role, which this
    /// operation cannot change. `invitation` is single-use like
    /// [`Op::AddInvitedMember`]'s. A device of an earlier release cannot decode it: it
    /// does not accept the new device (fails closed) and holds the roster operations
    /// that follow it until it upgrades.
    AddInvitedDevice {
        member: MemberId,
        device: DevicePublic,
        invitation: [u8; 8],
    },
    /// An admin brings a removed member back, with none of their old devices (each is
    /// revoked); refused if a present member has taken the name meanwhile, or if a
    /// removal of that member is concurrent with it (removal wins). A device of an
    /// earlier release cannot decode it: it keeps the member removed (fails closed) and
    /// holds the roster operations that follow it until it upgrades.
    RestoreMember { member: MemberId },
    /// A member starts a direct conversation (rules in `direct.rs`): `thread` derives
    /// from the author's device and `nonce`; `members` are the others taking part. A
    /// device of an earlier release cannot decode it: it never learns of the
    /// conversation (whose log it is never sent, see `core::sync::Features`) and holds
    /// the roster operations that follow it until it upgrades.
    StartDirect {
        thread: ThreadId,
        nonce: [u8; 16],
        members: Vec<MemberId>,
    },
}

impl Op {
    /// Whether this operation takes roster authority away from `device` of `member`
    /// (revokes it, removes its member, or takes the member's admin flag).
    pub fn removes_authority_of(&self, device: &DeviceId, member: &MemberId) -> bool {
        match self {
            Op::RevokeDevice { device: d, .. } => d == device,
            Op::RemoveMember { member: m, .. } => m == member,
            Op::ChangeRole {
                member: m, admin, ..
            } => m == member && !admin,
            _ => false,
        }
    }

    /// Operations that can take access away are folded before others that are ready
    /// at the same time (removal wins).
    pub(super) fn narrows(&self) -> bool {
        matches!(
            self,
            Op::RevokeDevice { .. }
                | Op::RemoveMember { .. }
                | Op::ChangeRole { .. }
                | Op::SetPolicy { .. }
        )
    }

    fn cutoffs(&self) -> &[Cutoff] {
        match self {
            Op::ChangeRole { cutoffs, .. }
            | Op::RemoveMember { cutoffs, .. }
            | Op::RevokeDevice { cutoffs, .. }
            | Op::SetPolicy { cutoffs, .. } => cutoffs,
            _ => &[],
        }
    }
}

/// The plaintext of a roster envelope: an operation and the roster heads it follows.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct RosterOp {
    pub deps: Vec<EnvelopeId>,
    pub at_ms: u64,
    pub op: Op,
}

/// An operation as received: its envelope id, author and position in its author's
/// roster chain (an author knows everything it wrote before, see `ancestry`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpRecord {
    pub id: EnvelopeId,
    pub author: DeviceId,
    pub seq: u64,
    pub op: RosterOp,
}

/// Why an operation is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    #[error("the clinic roster has not been initialized")]
    NotInitialized,
    #[error("the clinic roster is already initialized")]
    AlreadyInitialized,
    #[error("only the founding device may initialize the clinic")]
    NotFounder,
    #[error("device {0:?} is not enrolled in this clinic")]
    UnknownDevice(DeviceId),
    #[error("device {0:?} has been revoked")]
    DeviceRevoked(DeviceId),
    #[error("only an admin may change the roster")]
    NotAdmin,
    #[error("no such member")]
    UnknownMember,
    #[error("that member id is already taken")]
    DuplicateMember,
    #[error("a member named `{0}` already exists")]
    DuplicateName(String),
    #[error("that device is already enrolled")]
    DuplicateDevice,
    #[error("the clinic must keep at least one admin with an active device")]
    LastAdmin,
    #[error("policy refused: {0}")]
    Safeguard(String),
    #[error("names must not be empty")]
    EmptyName,
    #[error("its author was not an admin in the operation's causal past")]
    NotAdminInCausalPast,
    #[error("its author's authority was removed concurrently (removal wins)")]
    RemovedConcurrently,
    #[error("this invitation was already used to enroll a member")]
    InvitationUsed,
    #[error("the member's role may not read that thread's category")]
    MayNotReadCategory,
    #[error("that thread id belongs to another category")]
    WrongCategory,
    #[error("only an admin or a participant may change a restricted thread's participants")]
    NotParticipant,
    #[error("a restriction names 1 to 256 existing members (of at most 65536 restricted threads)")]
    BadParticipants,
    #[error("emergency access is requested by the member for themselves only")]
    NotYourself,
    #[error("that thread is not restricted")]
    NotRestricted,
    #[error("that member already participates in the thread")]
    AlreadyParticipant,
    #[error("an emergency needs a written reason (at most 1024 bytes)")]
    BadReason,
    #[error("emergency access lasts at most the clinic policy's emergency minutes")]
    BadWindow,
    #[error("too many emergency accesses at once for this member")]
    TooManyEmergencies,
    #[error("an emergency window starts when its request is written")]
    WindowNotNow,
    #[error("this member has opened the most emergency accesses allowed in one day")]
    TooManyEmergenciesToday,
    #[error("this thread's participants have been changed too often; ask an admin")]
    TooManyChanges,
    #[error("that member has not been removed")]
    NotRemoved,
    #[error("the member was removed again concurrently (removal wins)")]
    RemovalConcurrent,
    #[error("a direct conversation's id must derive from the device that starts it")]
    NotDirectStarter,
    #[error("that direct conversation was already started")]
    DirectStarted,
    #[error(
        "a direct conversation names 1 to 31 other present members (of at most 65536 conversations)"
    )]
    BadDirectParticipants,
    #[error(
        "a direct conversation's participants are fixed: nobody, not even an admin, can be added, removed or let in"
    )]
    DirectFixed,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Member {
    pub id: MemberId,
    pub name: String,
    pub role: Role,
    pub admin: bool,
    pub removed: bool,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct DeviceEntry {
    pub public: DevicePublic,
    pub member: MemberId,
    pub revoked: bool,
}

/// The roster as folded from its operations.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Roster {
    pub founder: DevicePublic,
    pub clinic_name: Option<String>,
    pub members: BTreeMap<MemberId, Member>,
    pub devices: BTreeMap<DeviceId, DeviceEntry>,
    pub policy: Policy,
    /// Key epoch of each key log (the roster, each category); absent means 0.
    pub epochs: BTreeMap<LogId, u32>,
    /// Per device and log, the first chain position no longer accepted.
    pub cutoffs: HashMap<(DeviceId, LogId), u64>,
    /// Key logs (the roster, a category) each device has lost access to: where it has no
    /// cutoff, it had written nothing before, so nothing more of it counts.
    pub lost: std::collections::HashSet<(DeviceId, LogId)>,
    /// Restricted threads and their participants.
    pub restricted: BTreeMap<ThreadId, Restriction>,
    /// Emergency grants in fold order (bounded per member).
    pub emergencies: Vec<EmergencyGrant>,
    /// Per thread, the latest end of a forgotten emergency grant's window.
    pub forgotten_windows: BTreeMap<ThreadId, u64>,
    /// Public ids of invitations already used to enroll a member.
    pub used_invitations: BTreeSet<[u8; 8]>,
    /// Direct conversations and their participants (see `direct`).
    pub direct: BTreeMap<ThreadId, Restriction>,
}

impl Roster {
    pub fn new(genesis: &Genesis) -> Self {
        Roster {
            founder: genesis.founder,
            clinic_name: None,
            members: BTreeMap::new(),
            devices: BTreeMap::new(),
            policy: Policy::default(),
            epochs: BTreeMap::new(),
            cutoffs: HashMap::new(),
            lost: std::collections::HashSet::new(),
            restricted: BTreeMap::new(),
            emergencies: Vec::new(),
            forgotten_windows: BTreeMap::new(),
            used_invitations: BTreeSet::new(),
            direct: BTreeMap::new(),
        }
    }

    /// The epoch that new envelopes of `log` must be sealed at (its key log's epoch).
    pub fn epoch(&self, log: &LogId) -> u32 {
        self.epochs.get(&log.key_log()).copied().unwrap_or(0)
    }

    /// The member a device belongs (or belonged) to, revoked devices included.
    pub fn member_of(&self, device: &DeviceId) -> Option<MemberId> {
        self.devices.get(device).map(|d| d.member)
    }

    /// Whether `device` may read `log` now: an active device whose member's role may
    /// read the log's category (every active device reads the roster); for a direct
    /// conversation, an active device of a participant.
    pub fn may_read(&self, device: &DeviceId, log: &LogId) -> bool {
        let Some(member) = self.active_member(device) else {
            return false;
        };
        if let Some(participant) = self.direct_reader(&member.id, log) {
            return participant;
        }
        log.category()
            .is_none_or(|c| self.policy.may_read(member.role, c))
    }

    /// Whether an envelope by `device` at `seq` of `log` counts: it may read the log
    /// now, or it could when it wrote that envelope (before its cutoff there).
    pub fn may_write(&self, device: &DeviceId, log: &LogId, seq: u64) -> bool {
        if self.may_read(device, log) {
            return true;
        }
        // Before the roster is initialized, the founder writes its first roster
        // envelopes (the roster key grant and the founding operation).
        if *log == LogId::Roster && self.clinic_name.is_none() && *device == self.founder.id {
            return true;
        }
        self.cutoffs
            .get(&(*device, *log))
            .is_some_and(|next| seq < *next)
    }

    /// Whether an envelope by `device` at `seq` of `log` counts now, may count once the
    /// roster moves on (an author not yet known, or not yet given the role), or never
    /// will (a revoked device, a removed member, a position past the cutoff).
    pub fn write_verdict(&self, device: &DeviceId, log: &LogId, seq: u64) -> WriteVerdict {
        if self.may_write(device, log, seq) {
            return WriteVerdict::Allowed;
        }
        let Some(entry) = self.devices.get(device) else {
            return WriteVerdict::NotYet;
        };
        let removed = self.members.get(&entry.member).is_none_or(|m| m.removed);
        // A started direct conversation's participants never change.
        let outsider = log.is_direct()
            && log
                .thread()
                .and_then(|t| self.direct.get(&t))
                .is_some_and(|r| !r.members.contains(&entry.member));
        let past_cutoff = self.cutoffs.contains_key(&(*device, *log))
            || self.lost.contains(&(*device, log.key_log()));
        if entry.revoked || removed || past_cutoff || outsider {
            WriteVerdict::Never
        } else {
            WriteVerdict::NotYet
        }
    }

    /// Devices that may read `log` now.
    pub fn readers_of(&self, log: &LogId) -> Vec<DevicePublic> {
        if log.is_direct() {
            return self.active_devices(|m| self.direct_reader(&m.id, log) == Some(true));
        }
        match log.category() {
            Some(c) => self.readers(c),
            None => self.all_devices(),
        }
    }

    /// The member behind a device that may act now (device not revoked, member present).
    pub fn active_member(&self, device: &DeviceId) -> Option<&Member> {
        let entry = self.devices.get(device).filter(|d| !d.revoked)?;
        self.members.get(&entry.member).filter(|m| !m.removed)
    }

    /// Whether envelopes by this device are accepted into the clinic's logs.
    pub fn knows_device(&self, device: &DeviceId) -> bool {
        *device == self.founder.id || self.devices.contains_key(device)
    }

    pub fn member_by_name(&self, name: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| !m.removed && m.name.eq_ignore_ascii_case(name.trim()))
    }

    /// Active devices whose member may read `category` under the clinic's policy.
    pub fn readers(&self, category: Category) -> Vec<DevicePublic> {
        self.active_devices(|m| self.policy.may_read(m.role, category))
    }

    /// Every active device of the clinic.
    pub fn all_devices(&self) -> Vec<DevicePublic> {
        self.active_devices(|_| true)
    }

    fn active_devices(&self, pred: impl Fn(&Member) -> bool) -> Vec<DevicePublic> {
        self.devices
            .values()
            .filter(|d| self.active_member(&d.public.id).is_some_and(&pred))
            .map(|d| d.public)
            .collect()
    }

    fn admin_devices_left(&self) -> usize {
        self.devices
            .keys()
            .filter(|d| self.active_member(d).is_some_and(|m| m.admin))
            .count()
    }

    /// Checks whether `author` may perform `op` now, without changing anything.
    pub fn check(&self, author: &DeviceId, op: &Op) -> Result<(), RosterError> {
        self.clone().apply(author, op)
    }

    /// Applies `op` by `author` if allowed; advances the epoch of every key log that
    /// loses a reader and records the operation's cutoffs.
    pub fn apply(&mut self, author: &DeviceId, op: &Op) -> Result<(), RosterError> {
        if !op.narrows() {
            return self.apply_inner(author, op);
        }
        let logs = key_logs();
        let before: Vec<Vec<DevicePublic>> = logs.iter().map(|l| self.readers_of(l)).collect();
        self.apply_inner(author, op)?;
        for (log, before) in logs.iter().zip(before) {
            let after = self.readers_of(log);
            let lost: Vec<DeviceId> = before
                .iter()
                .filter(|d| !after.contains(d))
                .map(|d| d.id)
                .collect();
            if !lost.is_empty() {
                *self.epochs.entry(*log).or_default() += 1;
            }
            self.lost.extend(lost.into_iter().map(|d| (d, *log)));
        }
        for c in op.cutoffs() {
            let next = self.cutoffs.entry((c.device, c.log)).or_default();
            *next = (*next).max(c.next);
        }
        Ok(())
    }

    fn apply_inner(&mut self, author: &DeviceId, op: &Op) -> Result<(), RosterError> {
        if let Op::Init {
            clinic_name,
            member,
            name,
            role,
        } = op
        {
            if self.clinic_name.is_some() {
                return Err(RosterError::AlreadyInitialized);
            }
            if *author != self.founder.id {
                return Err(RosterError::NotFounder);
            }
            if clinic_name.trim().is_empty() || name.trim().is_empty() {
                return Err(RosterError::EmptyName);
            }
            self.clinic_name = Some(clinic_name.trim().to_string());
            self.members.insert(
                *member,
                Member {
                    id: *member,
                    name: name.trim().to_string(),
                    role: *role,
                    admin: true,
                    removed: false,
                },
            );
            self.devices.insert(
                self.founder.id,
                DeviceEntry {
                    public: self.founder,
                    member: *member,
                    revoked: false,
                },
            );
            return Ok(());
        }
        if self.clinic_name.is_none() {
            return Err(RosterError::NotInitialized);
        }
        match self.devices.get(author) {
            None => return Err(RosterError::UnknownDevice(*author)),
            Some(d) if d.revoked => return Err(RosterError::DeviceRevoked(*author)),
            Some(_) => {}
        }
        if let Some(outcome) = self.apply_member_op(author, op) {
            return outcome;
        }
        if !self.active_member(author).is_some_and(|m| m.admin) {
            return Err(RosterError::NotAdmin);
        }
        match op {
            Op::Init { .. }
            | Op::RestrictThread { .. }
            | Op::EmergencyAccess { .. }
            | Op::StartDirect { .. } => {
                unreachable!("handled above")
            }
            Op::UnrestrictThread { thread, category } => {
                let view = self.restricted.get(thread).cloned();
                self.check_lift(*thread, *category, view.as_ref())?;
                self.restricted.remove(thread);
            }
            Op::AddInvitedMember {
                member,
                name,
                role,
                admin,
                invitation,
            } => {
                self.use_invitation(invitation)?;
                return self.apply_inner(
                    author,
                    &Op::AddMember {
                        member: *member,
                        name: name.clone(),
                        role: *role,
                        admin: *admin,
                    },
                );
            }
            Op::AddMember {
                member,
                name,
                role,
                admin,
            } => {
                if name.trim().is_empty() {
                    return Err(RosterError::EmptyName);
                }
                if self.members.contains_key(member) {
                    return Err(RosterError::DuplicateMember);
                }
                if self.member_by_name(name).is_some() {
                    return Err(RosterError::DuplicateName(name.trim().to_string()));
                }
                let m = Member {
                    id: *member,
                    name: name.trim().to_string(),
                    role: *role,
                    admin: *admin,
                    removed: false,
                };
                self.members.insert(*member, m);
            }
            Op::AddInvitedDevice {
                member,
                device,
                invitation,
            } => {
                // Checked before the invitation is spent, so a refusal changes nothing.
                self.check_new_device(member, device)?;
                self.use_invitation(invitation)?;
                return self.apply_inner(
                    author,
                    &Op::AddDevice {
                        member: *member,
                        device: *device,
                    },
                );
            }
            Op::RestoreMember { member } => self.restore_member(member)?,
            Op::AddDevice { member, device } => {
                self.check_new_device(member, device)?;
                self.devices.insert(
                    device.id,
                    DeviceEntry {
                        public: *device,
                        member: *member,
                        revoked: false,
                    },
                );
            }
            Op::ChangeRole {
                member,
                role,
                admin,
                ..
            } => {
                let m = self.live_member(member)?;
                m.role = *role;
                m.admin = *admin;
                self.keep_an_admin()?;
            }
            Op::RemoveMember { member, .. } => {
                self.live_member(member)?.removed = true;
                self.keep_an_admin()?;
            }
            Op::RevokeDevice { device, .. } => {
                match self.devices.get_mut(device) {
                    None => return Err(RosterError::UnknownDevice(*device)),
                    Some(d) if d.revoked => return Err(RosterError::DeviceRevoked(*device)),
                    Some(d) => d.revoked = true,
                }
                self.keep_an_admin()?;
            }
            Op::SetPolicy { policy, .. } => {
                // A modified admin client may not switch the safeguards off.
                policy
                    .safeguards
                    .check()
                    .map_err(|e| RosterError::Safeguard(e.to_string()))?;
                self.policy = policy.clone();
            }
        }
        Ok(())
    }

    /// Whether `author` may write an admin operation now (as [`Roster::apply`] checks).
    pub(super) fn acting_admin(&self, author: &DeviceId) -> Result<(), RosterError> {
        if self.clinic_name.is_none() {
            return Err(RosterError::NotInitialized);
        }
        match self.devices.get(author) {
            None => return Err(RosterError::UnknownDevice(*author)),
            Some(d) if d.revoked => return Err(RosterError::DeviceRevoked(*author)),
            Some(_) => {}
        }
        if !self.active_member(author).is_some_and(|m| m.admin) {
            return Err(RosterError::NotAdmin);
        }
        Ok(())
    }

    /// Sets (or, with `None`, lifts) a thread's restriction as the fold merged it.
    pub(super) fn set_restriction(&mut self, thread: ThreadId, state: Option<Restriction>) {
        match state {
            Some(r) => self.restricted.insert(thread, r),
            None => self.restricted.remove(&thread),
        };
    }

    /// Whether `device` may be added to `member`: a present member, a device not yet
    /// enrolled (revoked ones included, so an old laptop never comes back).
    fn check_new_device(
        &self,
        member: &MemberId,
        device: &DevicePublic,
    ) -> Result<(), RosterError> {
        if self.members.get(member).is_none_or(|m| m.removed) {
            return Err(RosterError::UnknownMember);
        }
        if self.devices.contains_key(&device.id) || device.id == self.founder.id {
            return Err(RosterError::DuplicateDevice);
        }
        Ok(())
    }

    /// Brings a removed member back without their devices (rules on [`Op::RestoreMember`]).
    fn restore_member(&mut self, id: &MemberId) -> Result<(), RosterError> {
        let m = self.members.get(id).ok_or(RosterError::UnknownMember)?;
        if !m.removed {
            return Err(RosterError::NotRemoved);
        }
        if let Some(present) = self.member_by_name(&m.name) {
            return Err(RosterError::DuplicateName(present.name.clone()));
        }
        for d in self.devices.values_mut().filter(|d| d.member == *id) {
            d.revoked = true;
        }
        if let Some(m) = self.members.get_mut(id) {
            m.removed = false;
        }
        Ok(())
    }

    /// The members named, each present (not removed), as a set.
    pub(super) fn present_members(
        &self,
        members: &[MemberId],
    ) -> Result<BTreeSet<MemberId>, RosterError> {
        members
            .iter()
            .map(|m| match self.members.get(m) {
                Some(found) if !found.removed => Ok(*m),
                _ => Err(RosterError::UnknownMember),
            })
            .collect()
    }

    fn live_member(&mut self, id: &MemberId) -> Result<&mut Member, RosterError> {
        self.members
            .get_mut(id)
            .filter(|m| !m.removed)
            .ok_or(RosterError::UnknownMember)
    }

    fn keep_an_admin(&self) -> Result<(), RosterError> {
        if self.admin_devices_left() == 0 {
            Err(RosterError::LastAdmin)
        } else {
            Ok(())
        }
    }
}

/// The logs whose keys the roster rotates: the roster's own, and each category's.
fn key_logs() -> Vec<LogId> {
    std::iter::once(LogId::Roster)
        .chain(Category::ALL.into_iter().map(LogId::Keys))
        .collect()
}

#[cfg(test)]
#[path = "replace_tests.rs"]
mod replace_tests;
