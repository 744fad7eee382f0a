//! Replacing a lost laptop and bringing a member back (admins): a device invitation
//! for an existing member, which may revoke the device it replaces when it is issued,
//! and restoring a removed member without any of their old devices.
//!
//! A device invitation is an ordinary invitation (single-use, expiring, cancellable,
//! listed with the others) whose redemption adds the new device to the member it was
//! issued for ([`crate::core::roster::Op::AddInvitedDevice`]); it carries no role, so
//! it cannot change the member's.

use std::time::Duration;

use crate::core::ids::DeviceId;
use crate::core::invite::Invitation;
use crate::core::replica::AuthorError;
use crate::core::roster::Op;

use super::{MemberView, Node, NodeError};

/// A device invitation, and the device it replaced (revoked when it was issued).
pub struct DeviceInvitation {
    pub invitation: Invitation,
    pub revoked: Option<DeviceId>,
}

impl Node {
    /// Issues a one-time invitation for a new device of the present member `name`. With
    /// `replace` (a device id or its first 4+ characters), that device of theirs is
    /// revoked first, so a stolen laptop is cut off before its replacement exists.
    pub fn create_device_invite(
        &mut self,
        name: &str,
        replace: Option<&str>,
        valid_for: Duration,
        addrs: Vec<String>,
    ) -> Result<DeviceInvitation, NodeError> {
        self.may_issue(valid_for)?;
        let member = self.member_named(name)?;
        let revoke = match replace {
            None => None,
            Some(prefix) => {
                let device = self.device_by_prefix(prefix)?;
                let roster = self.replica()?.roster();
                let entry = roster.devices.get(&device);
                if entry.is_none_or(|d| d.member != member.id) {
                    return Err(NodeError::Invalid(format!(
                        "device {} is not one of {}'s; `huddle devices` lists whose each is",
                        device.short(),
                        member.name
                    )));
                }
                if entry.is_some_and(|d| d.revoked) {
                    return Err(NodeError::Invalid(format!(
                        "device {} is already revoked; issue the invitation without --replace",
                        device.short()
                    )));
                }
                if device == self.secret.id() {
                    return Err(NodeError::Invalid(
                        "this device cannot replace itself: issue the invitation from \
                         another admin's device"
                            .into(),
                    ));
                }
                let op = Op::RevokeDevice {
                    device,
                    cutoffs: Vec::new(),
                };
                roster
                    .check(&self.secret.id(), &op)
                    .map_err(AuthorError::Roster)?;
                Some((device, op))
            }
        };
        let invitation = self.issue(
            &member.name,
            member.role,
            member.admin,
            Some(member.id),
            valid_for,
            addrs,
        )?;
        let revoked = match revoke {
            Some((device, op)) => {
                self.roster_op(op)?;
                Some(device)
            }
            None => None,
        };
        Ok(DeviceInvitation {
            invitation,
            revoked,
        })
    }

    /// Brings back the removed member `name`, with no device (each old one stays
    /// revoked): an admin then issues them a device invitation. Refused if a present
    /// member has that name.
    pub fn restore_member(&mut self, name: &str) -> Result<(), NodeError> {
        let roster = self.replica()?.roster();
        if roster.member_by_name(name).is_some() {
            return Err(NodeError::Invalid(format!(
                "{} is a member already; only a removed member can be restored",
                name.trim()
            )));
        }
        let removed: Vec<_> = roster
            .members
            .values()
            .filter(|m| m.removed && m.name.eq_ignore_ascii_case(name.trim()))
            .map(|m| m.id)
            .collect();
        let member = match removed.as_slice() {
            [m] => *m,
            [] => return Err(NodeError::UnknownMember(name.to_string())),
            _ => return Err(NodeError::Ambiguous(name.to_string(), "removed member")),
        };
        self.roster_op(Op::RestoreMember { member })
    }

    /// Members removed from the clinic (who may be restored), by name.
    pub fn removed_members(&self) -> Result<Vec<MemberView>, NodeError> {
        let roster = self.replica()?.roster();
        let mut out: Vec<MemberView> = roster
            .members
            .values()
            .filter(|m| m.removed)
            .map(|m| MemberView {
                id: m.id.to_hex(),
                name: m.name.clone(),
                role: m.role.to_string(),
                admin: m.admin,
                devices: Vec::new(),
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(out)
    }
}
