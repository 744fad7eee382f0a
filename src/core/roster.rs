//! The clinic roster: a signed genesis, then admin operations (members, devices, roles,
//! policy) carried in roster envelopes. Every device folds the same set of operations in
//! the same causal order (dependencies first, ties broken by envelope id) and checks each
//! against the state before it, so all devices agree on the roster whatever order the
//! envelopes arrived in; an operation that is not allowed there has no effect anywhere.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::identity::{self, BadSignature, DevicePublic, DeviceSecret};
use super::ids::{ClinicId, DeviceId, EnvelopeId, MemberId};
use super::policy::{Category, Policy, Role};
use super::sig::Signature;

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
    },
    RemoveMember {
        member: MemberId,
    },
    RevokeDevice {
        device: DeviceId,
    },
    SetPolicy {
        policy: Policy,
    },
}

/// The plaintext of a roster envelope: an operation and the roster heads it follows.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct RosterOp {
    pub deps: Vec<EnvelopeId>,
    pub at_ms: u64,
    pub op: Op,
}

/// An operation as received: its envelope id and author.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpRecord {
    pub id: EnvelopeId,
    pub author: DeviceId,
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
    #[error("names must not be empty")]
    EmptyName,
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
}

impl Roster {
    pub fn new(genesis: &Genesis) -> Self {
        Roster {
            founder: genesis.founder,
            clinic_name: None,
            members: BTreeMap::new(),
            devices: BTreeMap::new(),
            policy: Policy::default(),
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

    /// Applies `op` by `author` if allowed.
    pub fn apply(&mut self, author: &DeviceId, op: &Op) -> Result<(), RosterError> {
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
        if !self.active_member(author).is_some_and(|m| m.admin) {
            return Err(RosterError::NotAdmin);
        }
        match op {
            Op::Init { .. } => unreachable!("handled above"),
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
            Op::AddDevice { member, device } => {
                self.live_member(member)?;
                if self.devices.contains_key(&device.id) || device.id == self.founder.id {
                    return Err(RosterError::DuplicateDevice);
                }
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
            } => {
                let m = self.live_member(member)?;
                m.role = *role;
                m.admin = *admin;
                self.keep_an_admin()?;
            }
            Op::RemoveMember { member } => {
                self.live_member(member)?.removed = true;
                self.keep_an_admin()?;
            }
            Op::RevokeDevice { device } => {
                match self.devices.get_mut(device) {
                    None => return Err(RosterError::UnknownDevice(*device)),
                    Some(d) if d.revoked => return Err(RosterError::DeviceRevoked(*device)),
                    Some(d) => d.revoked = true,
                }
                self.keep_an_admin()?;
            }
            Op::SetPolicy { policy } => self.policy = policy.clone(),
        }
        Ok(())
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

/// The result of folding a set of operations.
#[derive(Clone, Debug)]
pub struct Folded {
    pub roster: Roster,
    /// Operations that were not allowed where they fell in the causal order.
    pub rejected: Vec<(EnvelopeId, RosterError)>,
    /// Operations waiting for a dependency that has not arrived.
    pub waiting: Vec<EnvelopeId>,
    /// Operations no other operation depends on: the deps of the next local operation.
    pub heads: Vec<EnvelopeId>,
}

/// Folds operations in causal order (ties by id); the result does not depend on the
/// order of `ops` or on duplicates in it.
pub fn fold(genesis: &Genesis, ops: &[OpRecord]) -> Folded {
    let by_id: HashMap<EnvelopeId, &OpRecord> = ops.iter().map(|o| (o.id, o)).collect();
    // An op is ready when all its deps are (transitively) present.
    let mut ready: HashSet<EnvelopeId> = HashSet::new();
    let mut waiting: BTreeSet<EnvelopeId> = by_id.keys().copied().collect();
    loop {
        let now: Vec<EnvelopeId> = waiting
            .iter()
            .filter(|id| by_id[*id].op.deps.iter().all(|d| ready.contains(d)))
            .copied()
            .collect();
        if now.is_empty() {
            break;
        }
        for id in now {
            waiting.remove(&id);
            ready.insert(id);
        }
    }
    // Kahn's algorithm over ready ops, smallest id first among those whose deps are done.
    let mut indegree: HashMap<EnvelopeId, usize> = HashMap::new();
    let mut children: HashMap<EnvelopeId, Vec<EnvelopeId>> = HashMap::new();
    for id in &ready {
        let deps: BTreeSet<&EnvelopeId> = by_id[id].op.deps.iter().collect();
        indegree.insert(*id, deps.len());
        for d in deps {
            children.entry(*d).or_default().push(*id);
        }
    }
    let mut frontier: BTreeSet<EnvelopeId> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut roster = Roster::new(genesis);
    let mut rejected = Vec::new();
    while let Some(id) = frontier.pop_first() {
        let rec = by_id[&id];
        if let Err(e) = roster.apply(&rec.author, &rec.op.op) {
            rejected.push((id, e));
        }
        for child in children.get(&id).into_iter().flatten() {
            let n = indegree.entry(*child).or_default();
            *n -= 1;
            if *n == 0 {
                frontier.insert(*child);
            }
        }
    }
    let depended: HashSet<&EnvelopeId> = ready
        .iter()
        .flat_map(|id| by_id[id].op.deps.iter())
        .collect();
    let mut heads: Vec<EnvelopeId> = ready
        .iter()
        .filter(|id| !depended.contains(id))
        .copied()
        .collect();
    heads.sort();
    Folded {
        roster,
        rejected,
        waiting: waiting.into_iter().collect(),
        heads,
    }
}
