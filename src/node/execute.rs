//! Carrying out an [`Op`] on an open node: one arm per operation, each a call of the
//! node's own methods, returning data ([`OpResult`]). Arguments that came from outside
//! (a socket client, a script) are checked here as the node's methods check them: a
//! bundle path must be absolute, a due date valid, a message id well formed.

use std::time::Duration;

use super::op::{Op, OpResult, SafeguardChange};
use super::{Node, NodeError};
use crate::core::ids::ThreadId;

impl Node {
    /// Carries out `op` and returns what it produced.
    pub fn execute(&mut self, op: Op) -> Result<OpResult, NodeError> {
        Ok(match op {
            Op::Init { clinic, name, role } => {
                self.init_clinic(&clinic, &name, role)?;
                OpResult::Status(self.status())
            }
            Op::NewThread {
                subject,
                category,
                title,
            } => OpResult::ThreadCreated(self.new_thread(subject, category, &title)?),
            Op::Post {
                thread,
                text,
                urgent,
                task,
                id,
                reply_to,
            } => {
                let task = match task {
                    Some(mut t) => {
                        t.due = crate::localtime::parse_due(&t.due)
                            .map_err(|e| NodeError::Invalid(e.to_string()))?
                            .to_string();
                        Some(t)
                    }
                    None => None,
                };
                let id = id.unwrap_or_else(super::random_message_id);
                OpResult::Message(match reply_to {
                    Some(original) => {
                        self.post_reply_with_id(&thread, &original, &text, urgent, task, id)?
                    }
                    None => self.post_with_id(&thread, &text, urgent, task, id)?,
                })
            }
            Op::Threads => {
                let (threads, problems) = self.threads()?;
                OpResult::Threads { threads, problems }
            }
            Op::Show { thread } => {
                let detail = self.thread(&thread)?;
                self.record_view(detail.thread)?;
                OpResult::Thread(Box::new(detail))
            }
            Op::FindMessage { thread, id } => {
                let detail = self.thread(&thread)?;
                OpResult::Found(detail.messages.iter().any(|m| m.id == id))
            }
            Op::Read { thread } => OpResult::MarkedRead(self.mark_read(&thread)?),
            Op::Tasks { mine } => OpResult::Tasks(self.tasks(mine)?),
            Op::CompleteTask { thread, message } => {
                OpResult::Message(self.complete_task(&thread, &message)?)
            }
            Op::Edit {
                thread,
                message,
                text,
            } => OpResult::Message(self.edit_message(&thread, &message, &text)?),
            Op::Retract { thread, message } => {
                OpResult::Message(self.retract_message(&thread, &message)?)
            }
            Op::AddMember { name, role, admin } => {
                let member = self.add_member(&name, role, admin)?;
                let stranded_invites = self
                    .invites()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| i.name.eq_ignore_ascii_case(name.trim()))
                    .collect();
                OpResult::MemberAdded {
                    member: member.to_hex(),
                    stranded_invites,
                }
            }
            Op::Members => OpResult::Members(self.members()?),
            Op::RemovedMembers => OpResult::Members(self.removed_members()?),
            Op::RemoveMember { name } => {
                self.remove_member(&name)?;
                OpResult::Done
            }
            Op::ChangeRole { name, role, admin } => {
                self.change_role(&name, role, admin)?;
                OpResult::Done
            }
            Op::Devices => OpResult::Devices(self.devices()?),
            Op::DeviceKey => OpResult::DeviceKey(self.device()),
            Op::AddDevice { member, key } => {
                self.add_device(&member, key)?;
                OpResult::DeviceAdded(key.id)
            }
            Op::RevokeDevice { device } => OpResult::Revoked(vec![self.revoke_device(&device)?]),
            Op::RevokeMemberDevices { member } => {
                OpResult::Revoked(self.revoke_member_devices(&member)?)
            }
            Op::ExportBundle { path } => {
                absolute(&path)?;
                let n = self.export_bundle(&path)?;
                self.record_export(n);
                OpResult::Exported(n)
            }
            Op::ImportBundle { path } => {
                absolute(&path)?;
                OpResult::Imported(self.import_bundle(&path)?)
            }
            Op::Status => OpResult::Status(self.status()),
            Op::Invite {
                name,
                role,
                admin,
                valid_for_ms,
            } => {
                let addrs = self.listen_addrs();
                let no_addresses = addrs.is_empty();
                let valid_for = Duration::from_millis(valid_for_ms);
                let expires_ms = super::now_ms().saturating_add(valid_for_ms);
                let invite = self.create_invite(&name, role, admin, valid_for, addrs)?;
                OpResult::Invitation {
                    text: invite.encode(),
                    no_addresses,
                    expires_ms,
                }
            }
            Op::InviteDevice {
                member,
                replace,
                valid_for_ms,
            } => {
                let addrs = self.listen_addrs();
                let no_addresses = addrs.is_empty();
                let valid_for = Duration::from_millis(valid_for_ms);
                let expires_ms = super::now_ms().saturating_add(valid_for_ms);
                let made =
                    self.create_device_invite(&member, replace.as_deref(), valid_for, addrs)?;
                OpResult::DeviceInvitation {
                    text: made.invitation.encode(),
                    no_addresses,
                    expires_ms,
                    revoked: made.revoked,
                }
            }
            Op::RestoreMember { name } => {
                self.restore_member(&name)?;
                OpResult::Done
            }
            Op::NewDirect { names } => OpResult::ThreadCreated(self.new_direct(&names)?),
            Op::Invites => OpResult::Invites {
                invites: self.invites()?,
                now_ms: super::now_ms(),
            },
            Op::CancelInvite { id } => OpResult::InviteCancelled(self.cancel_invite(&id)?),
            Op::Policy => OpResult::Policy(self.policy()?),
            Op::SetSafeguards(change) => {
                self.change_safeguards(change)?;
                OpResult::Policy(self.policy()?)
            }
            Op::SetReadPolicy {
                role,
                category,
                allowed,
            } => {
                self.set_read_policy(role, category, allowed)?;
                OpResult::Done
            }
            Op::Restrict { thread, to } => {
                self.restrict_thread(&thread, &to)?;
                OpResult::Done
            }
            Op::Unrestrict { thread } => {
                self.unrestrict_thread(&thread)?;
                OpResult::Done
            }
            Op::OpenEmergency { thread, reason } => {
                OpResult::Emergencies(vec![self.open_emergency(&thread, &reason)?])
            }
            Op::RecordView { thread } => {
                self.record_view(&thread)?;
                OpResult::Done
            }
            Op::Emergencies => OpResult::Emergencies(self.emergency_grants()?),
            Op::Audit(filter) => OpResult::Audit(self.audit_trail(&filter)?),
            Op::RecordAuditExport { entries } => {
                self.record_export(entries);
                OpResult::Done
            }
            Op::VerifyAudit => OpResult::AuditVerified {
                findings: self.audit_verify()?,
                envelopes_modified: self.envelopes_modified(),
            },
            Op::AddPeer { addr } => {
                crate::net::addr::parse(&addr).map_err(NodeError::Invalid)?;
                self.add_peer(addr.trim())?;
                OpResult::Done
            }
            Op::Search { query } => OpResult::SearchHits(self.search(&query)?),
        })
    }

    fn change_safeguards(&mut self, change: SafeguardChange) -> Result<(), NodeError> {
        let mut s = self.safeguards()?;
        s.idle_lock_minutes = change.idle_lock_minutes.unwrap_or(s.idle_lock_minutes);
        s.offline_lease_days = change.offline_lease_days.unwrap_or(s.offline_lease_days);
        s.emergency_minutes = change.emergency_minutes.unwrap_or(s.emergency_minutes);
        self.set_safeguards(s)
    }

    /// Threads this device reads whose message text contains `query` (at least two
    /// characters, case-insensitive); on this device only.
    pub fn search(&self, query: &str) -> Result<Vec<ThreadId>, NodeError> {
        let needle = query.trim().to_lowercase();
        if needle.chars().count() < 2 {
            return Ok(Vec::new());
        }
        let (list, _) = self.threads()?;
        let mut hits = Vec::new();
        for s in list.iter().filter(|s| s.readable) {
            let detail = self.thread(s.thread)?;
            if detail
                .messages
                .iter()
                .any(|m| m.body.to_lowercase().contains(&needle))
            {
                hits.push(s.thread);
            }
        }
        Ok(hits)
    }
}

/// Refuses a path a running node would read relative to its own working directory.
fn absolute(path: &std::path::Path) -> Result<(), NodeError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(NodeError::Invalid(format!(
            "`{}` is not an absolute path: give the file's full path",
            path.display()
        )))
    }
}
