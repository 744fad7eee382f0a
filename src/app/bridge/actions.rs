//! What the user does with an open node: posts, threads, tasks and the admin changes,
//! each one typed [`Op`] carried out on the node thread (the operations the CLI and
//! the control socket carry); and the reads that rebuild the views after a change,
//! local or synced.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Worker;
use crate::app::message::{Phase, Request, Snapshot, Update};
use crate::core::ids::ThreadId;
use crate::core::policy::{Category, Role};
use crate::core::roster::MAX_EMERGENCY_REASON_BYTES;
use crate::node::invites::MAX_VALID_DAYS;
use crate::node::{Node, NodeError, Op, OpResult, TaskRequest};

impl Worker {
    /// Runs `op` on the node thread (the same typed operation the CLI and the control
    /// socket carry).
    pub(super) async fn execute(&self, op: Op) -> Result<OpResult> {
        let Some(running) = &self.host else {
            bail!("Huddle is locked: unlock it first");
        };
        let node = running.host.node().clone();
        Ok(node.call(move |n| n.execute(op)).await??)
    }

    /// Runs a change on the node as its [`Op`], then refreshes the views.
    pub(super) async fn change(&mut self, request: Request) -> Result<()> {
        let done = match request {
            Request::NewThread {
                subject,
                category,
                title,
            } => {
                let op = Op::NewThread {
                    subject,
                    category,
                    title,
                };
                if let OpResult::ThreadCreated(id) = self.execute(op).await? {
                    self.open_thread = Some(id);
                    self.out.send(Update::Created(id));
                }
                "Thread created".to_string()
            }
            Request::NewDirect { names } => {
                if let OpResult::ThreadCreated(id) = self.execute(Op::NewDirect { names }).await? {
                    self.open_thread = Some(id);
                    self.out.send(Update::Created(id));
                }
                "Conversation open".to_string()
            }
            Request::Post {
                thread,
                text,
                urgent,
                task,
                reply_to,
            } => {
                if let Some(t) = &task {
                    crate::localtime::parse_due(&t.due)?;
                }
                let task = task.map(|t| TaskRequest {
                    assignee: t.assignee,
                    due: t.due,
                });
                let op = Op::Post {
                    thread: thread.to_hex(),
                    text,
                    urgent,
                    task,
                    id: None,
                    reply_to,
                };
                self.execute(op).await?;
                "Sent".to_string()
            }
            Request::CompleteTask { thread, message } => {
                let op = Op::CompleteTask {
                    thread: thread.to_hex(),
                    message,
                };
                self.execute(op).await?;
                "Task marked done".to_string()
            }
            Request::EditMessage {
                thread,
                message,
                text,
            } => {
                let op = Op::Edit {
                    thread: thread.to_hex(),
                    message,
                    text,
                };
                self.execute(op).await?;
                "Message edited".to_string()
            }
            Request::RetractMessage { thread, message } => {
                let op = Op::Retract {
                    thread: thread.to_hex(),
                    message,
                };
                self.execute(op).await?;
                "Message retracted".to_string()
            }
            Request::Invite {
                name,
                role,
                admin,
                days,
            } => {
                let op = Op::Invite {
                    name: name.clone(),
                    role,
                    admin,
                    valid_for_ms: u64::from(days.clamp(1, MAX_VALID_DAYS)) * 86_400_000,
                };
                if let OpResult::Invitation {
                    text, expires_ms, ..
                } = self.execute(op).await?
                {
                    self.out.send(Update::Invitation {
                        expires_ms,
                        text,
                        name: name.clone(),
                        device: false,
                    });
                }
                format!("Invitation for {name} ready")
            }
            Request::CancelInvite(id) => match self.execute(Op::CancelInvite { id }).await? {
                OpResult::InviteCancelled(cancelled) => {
                    format!("Invitation for {} cancelled", cancelled.name)
                }
                _ => "Invitation cancelled".to_string(),
            },
            Request::RevokeDevice(device) => {
                match self.execute(Op::RevokeDevice { device }).await? {
                    OpResult::Revoked(ids) => match ids.first() {
                        Some(d) => format!("Device {} revoked", d.short()),
                        None => "Device revoked".to_string(),
                    },
                    _ => "Device revoked".to_string(),
                }
            }
            Request::InviteDevice {
                member,
                replace,
                days,
            } => {
                let op = Op::InviteDevice {
                    member: member.clone(),
                    replace,
                    valid_for_ms: u64::from(days.clamp(1, MAX_VALID_DAYS)) * 86_400_000,
                };
                let mut said = format!("Invitation for a new device of {member} ready");
                if let OpResult::DeviceInvitation {
                    text,
                    expires_ms,
                    revoked,
                    ..
                } = self.execute(op).await?
                {
                    if let Some(d) = revoked {
                        said = format!("Device {} revoked. {said}", d.short());
                    }
                    self.out.send(Update::Invitation {
                        expires_ms,
                        text,
                        name: format!("a new device of {member}"),
                        device: true,
                    });
                }
                said
            }
            Request::RemoveMember(name) => {
                self.execute(Op::RemoveMember { name: name.clone() })
                    .await?;
                format!("{name} removed: their devices are cut off")
            }
            Request::RestoreMember(name) => {
                self.execute(Op::RestoreMember { name: name.clone() })
                    .await?;
                format!("{name} restored, with no device yet")
            }
            Request::ChangeRole { member, role } => {
                let op = Op::ChangeRole {
                    name: member.clone(),
                    role,
                    admin: None,
                };
                self.execute(op).await?;
                format!("{member} is now {role}")
            }
            Request::ReadPolicy(role, category, allowed) => {
                let op = Op::SetReadPolicy {
                    role,
                    category,
                    allowed,
                };
                self.execute(op).await?;
                let verb = if allowed {
                    "may now read"
                } else {
                    "may no longer read"
                };
                format!("{role} {verb} {category} threads")
            }
            Request::Unrestrict { thread } => {
                self.execute(Op::Unrestrict {
                    thread: thread.to_hex(),
                })
                .await?;
                "Restriction lifted: the thread's category readers read it again".to_string()
            }
            Request::Restrict { thread, members } => {
                let shown = members.join(", ");
                let op = Op::Restrict {
                    thread: thread.to_hex(),
                    to: members,
                };
                self.execute(op).await?;
                format!("Thread restricted to {shown}")
            }
            Request::BreakGlass { thread, reason } => {
                let reason = reason.trim().to_string();
                if reason.is_empty() || reason.len() > MAX_EMERGENCY_REASON_BYTES {
                    bail!(
                        "emergency access needs a written reason of at most \
                         {MAX_EMERGENCY_REASON_BYTES} bytes"
                    );
                }
                let op = Op::OpenEmergency {
                    thread: thread.to_hex(),
                    reason,
                };
                let result = self.execute(op).await?;
                self.execute(Op::RecordView {
                    thread: thread.to_hex(),
                })
                .await?;
                self.open_thread = Some(thread);
                match result {
                    OpResult::Emergencies(grants) if !grants.is_empty() => format!(
                        "Emergency access until {}: announced in the thread and to admins",
                        crate::localtime::local(grants[0].until_ms)
                    ),
                    _ => {
                        "Emergency access opened: announced in the thread and to admins".to_string()
                    }
                }
            }
            other => bail!("not a change: {other:?}"),
        };
        self.out.send(Update::Done(done));
        self.refresh(true).await;
        Ok(())
    }

    /// Rebuilds the views after a change; `all` also re-reads the admin lists (they
    /// change only with the roster or after a local change).
    pub(super) async fn refresh(&mut self, all: bool) {
        let Some(running) = &self.host else { return };
        let changes = running.watch.take();
        let all = all || changes.roster;
        let node = running.host.node().clone();
        let joining = self.joining.is_some();
        let read = node.call(move |n| snapshot(n, all, joining)).await;
        // The node thread ends only once every handle is gone: none may be held here
        // when `stop` waits for it.
        drop(node);
        match read {
            // No clinic yet: a join still waits for the roster.
            Ok(Ok(None)) => return,
            Ok(Ok(Some(snapshot))) => {
                if !self.shown_open {
                    self.shown_open = true;
                    self.out.send(Update::Phase(Phase::Open));
                }
                let removed = snapshot
                    .status
                    .as_ref()
                    .is_some_and(|s| s.clinic_id.is_some() && s.member.is_none());
                self.out.send(Update::Snapshot(Box::new(snapshot)));
                if removed {
                    self.stop().await;
                    self.out.send(Update::Phase(Phase::Removed));
                    return;
                }
            }
            Ok(Err(e)) => self.out.error(&e.into()),
            Err(_) => return,
        }
        let open = self.open_thread;
        if open.is_some_and(|t| all || changes.threads.contains(&t))
            && let Err(e) = self.show_thread().await
        {
            self.out.error(&e);
        }
    }

    /// Finds the threads whose messages contain `query` (case-insensitive), on this
    /// device only.
    pub(super) async fn search(&mut self, query: String) -> Result<()> {
        if self.host.is_none() {
            return Ok(());
        }
        let op = Op::Search {
            query: query.clone(),
        };
        if let OpResult::SearchHits(threads) = self.execute(op).await? {
            self.out.send(Update::SearchHits { query, threads });
        }
        Ok(())
    }

    /// Records in the audit trail that this member opened `thread` (45 CFR 164.312(b)).
    pub(super) async fn record_view(&self, thread: ThreadId) -> Result<()> {
        if self.host.is_none() {
            return Ok(());
        }
        self.execute(Op::RecordView {
            thread: thread.to_hex(),
        })
        .await?;
        Ok(())
    }

    /// Sends the open thread and marks what it shows as read.
    pub(super) async fn show_thread(&mut self) -> Result<()> {
        let (Some(running), Some(thread)) = (&self.host, self.open_thread) else {
            return Ok(());
        };
        let node = running.host.node().clone();
        let detail = node.call(move |n| n.thread(thread)).await??;
        let unread = detail.messages.iter().any(|m| m.unread);
        let now = crate::node::now_ms();
        self.grant_ends = detail
            .emergencies
            .iter()
            .map(|e| e.until_ms)
            .min()
            .map(|until| Instant::now() + Duration::from_millis(until.saturating_sub(now)));
        self.out.send(Update::Thread(Box::new(detail)));
        // Marking read changes the thread: the watch brings the new unread counts.
        if unread {
            drop(node);
            self.execute(Op::Read {
                thread: thread.to_hex(),
            })
            .await?;
        }
        Ok(())
    }
}

/// Everything the views show, read in one call on the node thread.
/// `None` while there is no clinic to show: before the roster of a clinic being joined
/// names this device.
fn snapshot(n: &Node, all: bool, joining: bool) -> Result<Option<Snapshot>, NodeError> {
    let status = n.status();
    if status.clinic_id.is_none() || (joining && status.member.is_none()) {
        return Ok(None);
    }
    if status.member.is_none() {
        // Revoked or removed: the caller shuts the node down.
        return Ok(Some(Snapshot {
            status: Some(status),
            ..Snapshot::default()
        }));
    }
    let admin = status.admin;
    let (threads, _) = n.threads()?;
    let mut s = Snapshot {
        status: Some(status),
        threads,
        tasks: n.open_tasks(false)?,
        ..Snapshot::default()
    };
    if all {
        s.full = true;
        s.members = n.members()?;
        if admin {
            s.removed = n.removed_members()?;
        }
        s.devices = n.devices()?;
        if admin {
            s.invites = n.invites()?;
            s.emergencies = n.emergency_grants()?;
        }
        let policy = n.policy()?;
        s.policy = Role::ALL
            .into_iter()
            .flat_map(|r| Category::ALL.into_iter().map(move |c| (r, c)))
            .map(|(r, c)| (r, c, policy.may_read(r, c)))
            .collect();
        s.safeguards = Some(policy.safeguards);
    }
    Ok(Some(s))
}
