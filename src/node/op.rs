//! The node's typed operations: what a person or a script can ask of an open node, one
//! variant each ([`Op`]), and what each returns ([`OpResult`]). The CLI builds an `Op`
//! from its parsed arguments, the app's bridge from its requests, and the control
//! socket carries it ([`crate::host::control`]); [`Node::execute`] carries it out on the
//! node thread and returns data, never text: each face renders the result on its own
//! side.
//!
//! Both enums cross the control socket as JSON, so a variant added later is one a
//! node of the previous release refuses with "unknown variant" (the CLI and the node
//! are the same binary on one device; the socket's version number says so first).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::views::{
    DeviceView, ImportReport, InviteView, MemberView, Status, ThreadDetail, ThreadSummary,
};
use super::{AuditFilter, AuditTrail, EmergencyView, TaskView};
use crate::core::audit::Finding;
use crate::core::identity::DevicePublic;
use crate::core::ids::{DeviceId, ThreadId};
use crate::core::policy::{Category, Policy, Role};
use crate::core::thread::{MESSAGE_RANDOM_BYTES, Subject};

/// A task attached to a new message: who it is for (a member's name) and when it is due
/// (`YYYY-MM-DD`, today or later on the node's clock).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TaskRequest {
    pub assignee: String,
    pub due: String,
}

/// Which safeguard settings to change; `None` keeps the current one.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SafeguardChange {
    pub idle_lock_minutes: Option<u32>,
    pub offline_lease_days: Option<u32>,
    pub emergency_minutes: Option<u32>,
}

/// One operation on an open node. Threads, messages, devices and invitations are named
/// as people type them: a thread or message id or its first 4+ characters, a member's
/// name, a device id prefix.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Op {
    /// Found a clinic on this (fresh) device as its first admin.
    Init {
        clinic: String,
        name: String,
        role: Role,
    },
    NewThread {
        subject: Subject,
        category: Category,
        title: String,
    },
    /// Post under a message id the caller chose (so that a lost answer can be checked
    /// with [`Op::FindMessage`]); `None` lets the node choose.
    Post {
        thread: String,
        text: String,
        urgent: bool,
        task: Option<TaskRequest>,
        id: Option<[u8; MESSAGE_RANDOM_BYTES]>,
        /// The message it answers (its id or 4+ characters of it). Omitted when
        /// `None`, so a request without it is the previous release's; a serve of the
        /// previous release ignores the field and posts the text as a plain message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
    Threads,
    /// A thread's messages; recorded in the audit trail as a view.
    Show {
        thread: String,
    },
    /// Records in the audit trail that this member opened the thread (the app, which
    /// shows a thread it keeps up to date by reading it again).
    RecordView {
        thread: String,
    },
    /// Whether the thread holds message `id` (hex): a check, not a view.
    FindMessage {
        thread: String,
        id: String,
    },
    /// Mark every message of the thread read.
    Read {
        thread: String,
    },
    Tasks {
        mine: bool,
    },
    CompleteTask {
        thread: String,
        message: String,
    },
    AddMember {
        name: String,
        role: Role,
        admin: bool,
    },
    Members,
    RemoveMember {
        name: String,
    },
    ChangeRole {
        name: String,
        role: Role,
        /// `Some` changes the admin flag too.
        admin: Option<bool>,
    },
    Devices,
    /// This device's public keys.
    DeviceKey,
    AddDevice {
        member: String,
        key: DevicePublic,
    },
    RevokeDevice {
        device: String,
    },
    /// Revoke every device of a member.
    RevokeMemberDevices {
        member: String,
    },
    /// Write every envelope held to `path`, which must be absolute (never relative to
    /// a running node's working directory).
    ExportBundle {
        path: PathBuf,
    },
    /// Validate and import the bundle at `path` (absolute).
    ImportBundle {
        path: PathBuf,
    },
    Status,
    Invite {
        name: String,
        role: Role,
        admin: bool,
        valid_for_ms: u64,
    },
    /// A device invitation for the present member `member`; `replace` (a device id or
    /// its first characters) is revoked as it is issued.
    InviteDevice {
        member: String,
        replace: Option<String>,
        valid_for_ms: u64,
    },
    /// Bring back a removed member, without their old devices.
    RestoreMember {
        name: String,
    },
    /// Start a direct conversation with the members `names` (or find the one with
    /// exactly them); returns [`OpResult::ThreadCreated`].
    NewDirect {
        names: Vec<String>,
    },
    Invites,
    CancelInvite {
        id: String,
    },
    Policy,
    SetSafeguards(SafeguardChange),
    /// Whether `role` reads `category` (admins).
    SetReadPolicy {
        role: Role,
        category: Category,
        allowed: bool,
    },
    Restrict {
        thread: String,
        to: Vec<String>,
    },
    /// Lifts a thread's restriction (admins).
    Unrestrict {
        thread: String,
    },
    OpenEmergency {
        thread: String,
        reason: String,
    },
    Emergencies,
    Audit(AuditFilter),
    /// Records that `entries` audit entries were exported (the app's CSV export).
    RecordAuditExport {
        entries: u64,
    },
    VerifyAudit,
    /// Remember a peer address (`HOST:PORT` or a multiaddr); a running host dials it.
    AddPeer {
        addr: String,
    },
    /// Threads whose message text contains `query` (case-insensitive), on this device.
    Search {
        query: String,
    },
    /// Replace the text of one's own message (its id or 4+ characters of it).
    Edit {
        thread: String,
        message: String,
        text: String,
    },
    /// Retract one's own message.
    Retract {
        thread: String,
        message: String,
    },
    /// The removed members (answered as [`OpResult::Members`]). A serve of the previous
    /// release does not know it and refuses the request as malformed.
    RemovedMembers,
}

impl Op {
    /// Whether the operation only reads (asking it again after a lost answer is
    /// harmless). Views that write an audit entry (`Show`) count as reads: the entry
    /// records the view.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Op::Threads
                | Op::Show { .. }
                | Op::FindMessage { .. }
                | Op::Tasks { .. }
                | Op::Members
                | Op::RemovedMembers
                | Op::Devices
                | Op::DeviceKey
                | Op::Status
                | Op::Invites
                | Op::Policy
                | Op::Emergencies
                | Op::Audit(_)
                | Op::VerifyAudit
                | Op::Search { .. }
                | Op::ExportBundle { .. }
        )
    }
}

/// What an [`Op`] returns.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum OpResult {
    /// The operation changed what it names; there is nothing more to show.
    Done,
    Status(Status),
    ThreadCreated(ThreadId),
    /// A message posted or a task completed: the message id as shown.
    Message(String),
    Threads {
        threads: Vec<ThreadSummary>,
        /// Threads that could not be listed, in words.
        problems: Vec<String>,
    },
    Thread(Box<ThreadDetail>),
    Found(bool),
    MarkedRead(usize),
    Tasks(Vec<TaskView>),
    MemberAdded {
        member: String,
        /// Open invitations naming the same person, which can no longer be redeemed.
        stranded_invites: Vec<InviteView>,
    },
    Members(Vec<MemberView>),
    Devices(Vec<DeviceView>),
    DeviceKey(DevicePublic),
    DeviceAdded(DeviceId),
    Revoked(Vec<DeviceId>),
    Exported(u64),
    Imported(ImportReport),
    Invitation {
        text: String,
        /// No listen address was known: the new device finds this one by mDNS only.
        no_addresses: bool,
        /// When it stops being valid (unix ms). A serve of the previous release sends
        /// no such field: 0, and the expiry is not shown.
        #[serde(default)]
        expires_ms: u64,
    },
    /// A device invitation, like [`OpResult::Invitation`], and the device it replaced.
    DeviceInvitation {
        text: String,
        no_addresses: bool,
        expires_ms: u64,
        revoked: Option<DeviceId>,
    },
    Invites {
        invites: Vec<InviteView>,
        now_ms: u64,
    },
    InviteCancelled(InviteView),
    Policy(Policy),
    Emergencies(Vec<EmergencyView>),
    Audit(AuditTrail),
    AuditVerified {
        findings: Vec<Finding>,
        /// The store's envelope records were changed outside Huddle.
        envelopes_modified: bool,
    },
    SearchHits(Vec<ThreadId>),
}
