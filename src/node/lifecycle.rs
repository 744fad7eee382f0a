//! Device lifecycle (admins): revoking a device, removing a member, changing a role,
//! and the device list. Each is one roster operation; the replica records the cutoffs
//! and, on every device that learns of it, rotates the keys the change makes due. The
//! network learns here which devices lost their place, and closes their connections.

use std::collections::BTreeSet;

use crate::core::ids::{DeviceId, LogId};
use crate::core::policy::{Category, Role};
use crate::core::roster::Op;

use super::{DeviceView, Node, NodeError, Seen};

impl Node {
    /// Revokes the device whose id starts with `prefix` (at least 4 hex characters).
    /// Returns the revoked device.
    pub fn revoke_device(&mut self, prefix: &str) -> Result<DeviceId, NodeError> {
        let device = self.device_by_prefix(prefix)?;
        self.roster_op(Op::RevokeDevice {
            device,
            cutoffs: Vec::new(),
        })?;
        Ok(device)
    }

    /// Revokes every active device of the member named `name`; returns them.
    pub fn revoke_member_devices(&mut self, name: &str) -> Result<Vec<DeviceId>, NodeError> {
        let member = self.member_named(name)?.id;
        let roster = self.replica()?.roster();
        let devices: Vec<DeviceId> = roster
            .devices
            .values()
            .filter(|d| d.member == member && !d.revoked)
            .map(|d| d.public.id)
            .collect();
        if devices.is_empty() {
            return Err(NodeError::Invalid(format!("{name} has no active device")));
        }
        for device in &devices {
            self.roster_op(Op::RevokeDevice {
                device: *device,
                cutoffs: Vec::new(),
            })?;
        }
        Ok(devices)
    }

    /// Removes a member (and so every device of theirs) from the clinic, and withdraws
    /// the device invitations this device issued for them.
    pub fn remove_member(&mut self, name: &str) -> Result<(), NodeError> {
        let member = self.member_named(name)?.id;
        self.roster_op(Op::RemoveMember {
            member,
            cutoffs: Vec::new(),
        })?;
        self.cancel_device_invites_for(member)?;
        Ok(())
    }

    /// Changes a member's role; `admin` changes the admin flag when given.
    pub fn change_role(
        &mut self,
        name: &str,
        role: Role,
        admin: Option<bool>,
    ) -> Result<(), NodeError> {
        let m = self.member_named(name)?;
        self.roster_op(Op::ChangeRole {
            member: m.id,
            role,
            admin: admin.unwrap_or(m.admin),
            cutoffs: Vec::new(),
        })
    }

    /// Lets `role` read `category` threads, or no longer (admins only). Narrowing
    /// rotates the category's key like a revocation: the role's devices keep what they
    /// had and get nothing new.
    pub fn set_read_policy(
        &mut self,
        role: Role,
        category: Category,
        allowed: bool,
    ) -> Result<(), NodeError> {
        let mut policy = self.replica()?.roster().policy.clone();
        let reads = policy.reads.entry(role).or_default();
        let changed = if allowed {
            reads.insert(category)
        } else {
            reads.remove(&category)
        };
        if !changed {
            return Ok(());
        }
        self.roster_op(Op::SetPolicy {
            policy,
            cutoffs: Vec::new(),
        })
    }

    /// Every device of the clinic: member, status, and when it last wrote anything this
    /// device holds.
    /// The clinic's devices; none is online here (the running node's connections say
    /// that: [`crate::node::mark_online`]).
    pub fn devices(&self) -> Result<Vec<DeviceView>, NodeError> {
        let replica = self.replica()?;
        let roster = replica.roster();
        let mut out: Vec<DeviceView> = roster
            .devices
            .values()
            .map(|d| {
                let member = roster.members.get(&d.member);
                let status = match member {
                    _ if d.revoked => "revoked",
                    Some(m) if m.removed => "removed",
                    Some(_) => "active",
                    None => "unknown",
                };
                DeviceView {
                    device: d.public.id.to_hex(),
                    member: member.map_or_else(String::new, |m| m.name.clone()),
                    role: member.map_or_else(String::new, |m| m.role.to_string()),
                    status: status.to_string(),
                    seen: Seen::from_day(self.last_written(&d.public.id)),
                    this_device: d.public.id == self.secret.id(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.member, &a.device).cmp(&(&b.member, &b.device)));
        Ok(out)
    }

    /// The newest time a device stated on an envelope this device holds.
    fn last_written(&self, device: &DeviceId) -> Option<u64> {
        let replica = self.replica.as_ref()?;
        replica
            .heads()
            .iter()
            .filter(|((_, author), _)| author == device)
            .filter_map(|((log, author), head)| {
                self.store
                    .chain(log, author, head.seq..head.seq + 1)
                    .next()?
                    .ok()
                    .map(|e| e.header.at_ms)
            })
            .max()
    }

    pub(super) fn device_by_prefix(&self, prefix: &str) -> Result<DeviceId, NodeError> {
        let p = prefix.trim().to_ascii_lowercase();
        if p.len() < 4 {
            return Err(NodeError::Invalid(format!(
                "`{prefix}`: give at least 4 characters of the device id"
            )));
        }
        let found: Vec<DeviceId> = self
            .replica()?
            .roster()
            .devices
            .keys()
            .filter(|d| d.to_hex().starts_with(&p))
            .copied()
            .collect();
        match found.as_slice() {
            [d] => Ok(*d),
            [] => Err(NodeError::Invalid(format!(
                "no device of this clinic matches `{prefix}`"
            ))),
            _ => Err(NodeError::Ambiguous(prefix.to_string(), "device")),
        }
    }

    pub(super) fn active_devices(&self) -> BTreeSet<DeviceId> {
        let Some(replica) = self.replica.as_ref() else {
            return BTreeSet::new();
        };
        let roster = replica.roster();
        roster
            .devices
            .keys()
            .filter(|d| roster.may_read(d, &LogId::Roster))
            .copied()
            .collect()
    }

    /// The roster changed: note devices that were active and are no longer.
    pub(super) fn note_cut_off(&mut self) {
        let now = self.active_devices();
        self.cut_off.extend(self.active.difference(&now).copied());
        self.active = now;
    }

    /// Devices that lost their place since the last call (the network disconnects them).
    pub fn take_cut_off(&mut self) -> Vec<DeviceId> {
        std::mem::take(&mut self.cut_off)
    }

    /// Takes the current active devices as the baseline (after opening or joining).
    pub(super) fn baseline_active(&mut self) {
        self.active = self.active_devices();
    }
}
