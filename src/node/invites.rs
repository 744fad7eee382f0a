//! Invitations on the inviting device (issue, list, cancel, redeem once), joining on the
//! new device, and the remembered peer addresses.
//!
//! A member invitation creates the member it names, with its role and admin flag, and
//! then adds the new device to that member. It never attaches a device to a member that
//! already exists: if the name has been taken since the invitation was issued,
//! redemption is refused and the invitation stays open (it is not consumed). Attaching a
//! device to an existing member takes a device invitation (`replace`), issued for that
//! member by an admin.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;
use zeroize::Zeroizing;

use crate::core::audit::AuditEvent;
use crate::core::identity::DevicePublic;
use crate::core::ids::{DeviceId, MemberId};
use crate::core::invite::{Invitation, InviteError, Issued, IssuedState, clinic_tag};
use crate::core::policy::Role;
use crate::core::replica::{AuthorError, Replica};
use crate::core::roster::{Op, RosterError, SignedGenesis};
use crate::node::{GENESIS_KEY, INVITER_KEY, InviteView, Node, NodeError, now_ms};
use crate::store::{Sealed, StoreError};

const LISTEN_KEY: &[u8] = b"listen";
/// How long an invitation stays valid unless its issuer says otherwise: the same in the
/// app and the CLI (a therapist may start days after the practice manager invites).
pub const DEFAULT_VALID_DAYS: u32 = 7;
/// The longest an invitation may be valid.
pub const MAX_VALID_DAYS: u32 = 30;

/// The default validity as a duration.
pub fn default_validity() -> Duration {
    Duration::from_secs(u64::from(DEFAULT_VALID_DAYS) * 86_400)
}

/// Invitation ids may be shortened to a unique prefix of this many hex characters.
const MIN_PREFIX: usize = 4;

impl Node {
    /// Issues a one-time invitation for a new member's device (admins only). Refused if a
    /// member of that name exists, or an open invitation for that name does.
    pub fn create_invite(
        &mut self,
        name: &str,
        role: Role,
        admin: bool,
        valid_for: Duration,
        addrs: Vec<String>,
    ) -> Result<Invitation, NodeError> {
        self.may_issue(valid_for)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(AuthorError::Roster(RosterError::EmptyName).into());
        }
        if self.replica()?.roster().member_by_name(name).is_some() {
            return Err(AuthorError::Roster(RosterError::DuplicateName(name.to_string())).into());
        }
        self.issue(name, role, admin, None, valid_for, addrs)
    }

    /// Refuses an invitation this device may not issue: not an admin's, or valid for
    /// longer than [`MAX_VALID_DAYS`].
    pub(super) fn may_issue(&self, valid_for: Duration) -> Result<(), NodeError> {
        if !self.writer()?.admin {
            return Err(AuthorError::Roster(RosterError::NotAdmin).into());
        }
        if valid_for > Duration::from_secs(u64::from(MAX_VALID_DAYS) * 86_400) {
            return Err(NodeError::Invalid(format!(
                "an invitation is valid for at most {MAX_VALID_DAYS} days"
            )));
        }
        Ok(())
    }

    /// Records and returns a fresh invitation; refused while another open one names the
    /// same member (by name).
    pub(super) fn issue(
        &mut self,
        name: &str,
        role: Role,
        admin: bool,
        for_member: Option<MemberId>,
        valid_for: Duration,
        addrs: Vec<String>,
    ) -> Result<Invitation, NodeError> {
        let now = now_ms();
        if let Some(open) = self
            .all_issued()?
            .into_iter()
            .find(|i| i.check(now).is_ok() && i.name.eq_ignore_ascii_case(name))
        {
            return Err(NodeError::InvitationOpen {
                name: open.name.clone(),
                id: hex::encode(open.id),
            });
        }
        let mut rng = rand::rng();
        let mut issued = Issued {
            id: [0; 8],
            secret: [0; 32],
            name: name.to_string(),
            role,
            admin,
            expires_ms: now.saturating_add(valid_for.as_millis() as u64),
            state: IssuedState::Open,
            for_member,
        };
        rng.fill_bytes(&mut issued.id);
        rng.fill_bytes(&mut issued.secret);
        self.save_issued(&issued)?;
        self.store.flush()?;
        self.audit_quietly(AuditEvent::InviteIssued {
            invite: issued.id,
            admin,
        });
        Ok(Invitation {
            id: issued.id,
            secret: issued.secret,
            clinic_tag: clinic_tag(&self.replica()?.clinic()),
            inviter: self.secret.id(),
            addrs,
        })
    }

    /// Saves an invitation's state; watchers (the app's Admin screen) hear of it as a
    /// roster change, whoever made it (the app, or the CLI through the control socket).
    fn save_issued(&mut self, issued: &Issued) -> Result<(), NodeError> {
        self.store
            .put_sealed(Sealed::Invites, &issued.id, &issued.encode())?;
        self.emit(super::watch::Change::Roster);
        Ok(())
    }

    fn decode_issued(key: &[u8], bytes: &[u8]) -> Result<Issued, NodeError> {
        Issued::decode(bytes).map_err(|_| {
            StoreError::Corrupt {
                tree: "invites",
                key: hex::encode(key),
                why: "does not decode",
            }
            .into()
        })
    }

    fn issued(&self, id: &[u8; 8]) -> Result<Issued, NodeError> {
        let bytes = self
            .store
            .get_sealed(Sealed::Invites, id)?
            .ok_or(InviteError::Unknown)?;
        Self::decode_issued(id, &bytes)
    }

    /// Every invitation this device issued that can be read; unreadable records are
    /// skipped with a warning (they cannot be redeemed either).
    fn all_issued(&self) -> Result<Vec<Issued>, NodeError> {
        Ok(self
            .store
            .scan_sealed(Sealed::Invites)?
            .into_iter()
            .filter_map(|(k, v)| {
                match v
                    .map_err(NodeError::from)
                    .and_then(|v| Self::decode_issued(&k, &v))
                {
                    Ok(i) => Some(i),
                    Err(e) => {
                        tracing::warn!("{e}");
                        None
                    }
                }
            })
            .collect())
    }

    /// The invitations this device issued that can still be redeemed, soonest to expire
    /// first.
    pub fn invites(&self) -> Result<Vec<InviteView>, NodeError> {
        let roster = self.replica()?.roster();
        let now = now_ms();
        let mut open: Vec<InviteView> = self
            .all_issued()?
            .iter()
            // Used per the roster too: a restored older record may still say open.
            .filter(|i| i.check(now).is_ok() && !roster.invitation_used(&i.id))
            .map(invite_view)
            .collect();
        open.sort_by(|a, b| (a.expires_ms, &a.id).cmp(&(b.expires_ms, &b.id)));
        Ok(open)
    }

    /// Withdraws an open invitation by its id or a unique prefix of it (4+ characters).
    /// From then on it is refused like a used one. Returns what was cancelled.
    pub fn cancel_invite(&mut self, reference: &str) -> Result<InviteView, NodeError> {
        self.replica()?;
        let r = reference.trim().to_ascii_lowercase();
        let unknown = || NodeError::Invalid(format!("no invitation matches `{reference}`"));
        if r.len() < MIN_PREFIX {
            return Err(unknown());
        }
        let mut found: Vec<_> = self
            .store
            .scan_sealed(Sealed::Invites)?
            .into_iter()
            .filter(|(k, _)| hex::encode(k).starts_with(&r))
            .collect();
        let (key, value) = match found.len() {
            1 => found.remove(0),
            0 => return Err(unknown()),
            _ => return Err(NodeError::Ambiguous(reference.to_string(), "invitation")),
        };
        let mut issued = Self::decode_issued(&key, &value?)?;
        issued.check(now_ms())?;
        issued.state = IssuedState::Cancelled;
        self.save_issued(&issued)?;
        self.store.flush()?;
        self.audit_quietly(AuditEvent::InviteCancelled { invite: issued.id });
        Ok(invite_view(&issued))
    }

    /// Withdraws every open device invitation this device issued for `member` (when the
    /// member is removed: a laptop they were about to receive must not join as a
    /// device of a removed member, and the list must not offer it). Returns how many.
    pub(super) fn cancel_device_invites_for(
        &mut self,
        member: MemberId,
    ) -> Result<usize, NodeError> {
        let now = now_ms();
        let open: Vec<Issued> = self
            .all_issued()?
            .into_iter()
            .filter(|i| i.for_member == Some(member) && i.check(now).is_ok())
            .collect();
        let cancelled = open.len();
        for mut issued in open {
            issued.state = IssuedState::Cancelled;
            self.save_issued(&issued)?;
            self.audit_quietly(AuditEvent::InviteCancelled { invite: issued.id });
        }
        if cancelled > 0 {
            self.store.flush()?;
        }
        Ok(cancelled)
    }

    /// The secret of a redeemable invitation (for the handshake's pre-shared key).
    pub fn invite_secret(&self, id: &[u8; 8]) -> Result<Zeroizing<[u8; 32]>, NodeError> {
        let issued = self.issued(id)?;
        issued.check(now_ms())?;
        Ok(Zeroizing::new(issued.secret))
    }

    /// Redeems an invitation for the device that proved it held the secret; returns the
    /// genesis. A member invitation creates the member it names with its role and admin
    /// flag, then adds the device to it; a device invitation adds the device to the
    /// member it was issued for (their role unchanged). The roster operations are tried
    /// on a copy of the roster first: if any would be refused (the name is taken by now,
    /// the member was removed, the device is already enrolled, this device is no longer
    /// an admin) nothing changes and the invitation stays open. Otherwise it is marked
    /// used (durably, first), so it works once.
    pub fn redeem_invite(
        &mut self,
        id: &[u8; 8],
        device: DevicePublic,
    ) -> Result<Vec<u8>, NodeError> {
        let mut issued = self.issued(id)?;
        issued.check(now_ms())?;
        let roster = self.replica()?.roster();
        if roster.invitation_used(id) {
            return Err(InviteError::Used.into());
        }
        // The use is part of a roster operation: every device refuses a second one,
        // even from a copy of this data directory restored from before this use.
        let ops = match issued.for_member {
            Some(member) => {
                if roster.members.get(&member).is_none_or(|m| m.removed) {
                    return Err(InviteError::MemberGone(issued.name.clone()).into());
                }
                vec![Op::AddInvitedDevice {
                    member,
                    device,
                    invitation: *id,
                }]
            }
            None => {
                if roster.member_by_name(&issued.name).is_some() {
                    return Err(InviteError::NameTaken(issued.name.clone()).into());
                }
                let mut member = [0u8; 16];
                rand::rng().fill_bytes(&mut member);
                let member = MemberId(member);
                vec![
                    Op::AddInvitedMember {
                        member,
                        name: issued.name.clone(),
                        role: issued.role,
                        admin: issued.admin,
                        invitation: *id,
                    },
                    Op::AddDevice { member, device },
                ]
            }
        };
        let me = self.secret.id();
        let mut trial = roster.clone();
        for op in &ops {
            trial.apply(&me, op).map_err(AuthorError::Roster)?;
        }
        issued.state = IssuedState::Used;
        self.save_issued(&issued)?;
        self.store.flush()?;
        for op in ops {
            self.roster_op(op)?;
        }
        self.audit_quietly(AuditEvent::InviteUsed {
            invite: *id,
            device: device.id,
        });
        Ok(self.replica()?.genesis().encode())
    }

    /// Adopts the clinic of a genesis received from the device that enrolled this one,
    /// if it is the clinic the invitation's tag names; writes nothing otherwise.
    pub fn join_clinic(
        &mut self,
        genesis: &SignedGenesis,
        invite_tag: &[u8; 8],
        inviter: DeviceId,
    ) -> Result<(), NodeError> {
        if self.replica.is_some() {
            return Err(NodeError::AlreadyInClinic);
        }
        if clinic_tag(&genesis.clinic_id()) != *invite_tag {
            return Err(InviteError::WrongClinic.into());
        }
        let replica = Replica::new(self.secret.public(), genesis.clone())?;
        self.store
            .put_sealed(Sealed::Secrets, GENESIS_KEY, &genesis.encode())?;
        self.store
            .put_sealed(Sealed::Secrets, INVITER_KEY, &inviter.0)?;
        self.store.flush()?;
        self.replica = Some(replica);
        self.inviter = Some(inviter);
        Ok(())
    }

    /// Stops trusting the inviter named by an invitation whose redemption failed.
    pub fn forget_inviter(&mut self) {
        if self.replica.is_none() {
            self.inviter = None;
        }
    }

    /// Whether this device has been admitted to its clinic's roster.
    pub fn enrolled(&self) -> bool {
        self.replica.as_ref().is_some_and(|r| r.enrolled())
    }

    /// Records the addresses `huddle serve` listens on (put into invitations).
    pub fn set_listen_addrs(&mut self, addrs: &[String]) -> Result<(), NodeError> {
        self.store.put_sealed(
            Sealed::Secrets,
            LISTEN_KEY,
            &postcard::to_stdvec(addrs).unwrap_or_default(),
        )?;
        self.store.flush()?;
        Ok(())
    }

    /// The addresses this device last listened on.
    pub fn listen_addrs(&self) -> Vec<String> {
        match self.store.get_sealed(Sealed::Secrets, LISTEN_KEY) {
            Ok(Some(b)) => postcard::from_bytes(&b).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Remembers a peer address to dial.
    pub fn add_peer(&mut self, addr: &str) -> Result<(), NodeError> {
        let key: [u8; 16] = Sha256::digest(addr.as_bytes())[..16]
            .try_into()
            .unwrap_or_default();
        self.store
            .put_sealed(Sealed::Peers, &key, addr.as_bytes())?;
        self.store.flush()?;
        Ok(())
    }

    /// Remembered peer addresses; unreadable entries are skipped with a warning.
    pub fn peers(&self) -> Result<Vec<String>, NodeError> {
        Ok(self
            .store
            .scan_sealed(Sealed::Peers)?
            .into_iter()
            .filter_map(|(_, v)| match v {
                Ok(v) => String::from_utf8(v.to_vec()).ok(),
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            })
            .collect())
    }
}

/// What is shown of an issued invitation.
fn invite_view(i: &Issued) -> InviteView {
    InviteView {
        id: hex::encode(i.id),
        name: i.name.clone(),
        role: i.role.to_string(),
        admin: i.admin,
        expires_ms: i.expires_ms,
        device: i.for_member.is_some(),
    }
}
