//! What the UI asks of the bridge ([`Request`]) and what the bridge tells the UI
//! ([`Update`]). Widgets never touch the node: they return requests, applied in one
//! place ([`super::HuddleApp`]), and the bridge answers with updates drained each frame.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::core::ids::ThreadId;
use crate::core::policy::{Category, Role};
use crate::core::thread::Subject;
use crate::net::{PeerView, SyncProgress};
use crate::node::{
    AuditRecord, DeviceView, EmergencyView, InviteView, MemberView, Status, TaskView, ThreadDetail,
    ThreadSummary,
};

/// The audit screen's filters as typed; the bridge reads them as `huddle audit
/// [--member NAME] [--thread THREAD] [--since TIME]` does (empty: no filter).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub member: String,
    pub thread: String,
    pub since: String,
}

/// A page of the audit trail for the admin screen: the newest entries first, at most
/// [`crate::app::bridge::MAX_AUDIT_ROWS`] of `total`.
#[derive(Clone, Debug, Default)]
pub struct AuditPage {
    pub query: AuditQuery,
    pub rows: Vec<AuditRecord>,
    /// Entries the filters select (the page shows the newest of them).
    pub total: usize,
    /// Entries written before this device was an admin (not readable here).
    pub not_sealed_to_me: usize,
}

/// A task attached to a new message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub assignee: String,
    /// `YYYY-MM-DD`, checked not to be in the past.
    pub due: String,
}

/// The form a request comes from: its refusal is shown beside that form, in plain
/// words, not in a passing toast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    Found,
    Join,
    Unlock,
    NewThread,
    NewDirect,
    Composer,
    AddMember,
    /// The members list: devices for a member, removing and restoring members.
    Members,
    Passphrase,
    /// Editing or retracting one's own message in the open thread.
    MessageEdit,
}

#[derive(Debug)]
pub enum Request {
    /// First run: create the data directory and found a clinic as its first admin.
    Found {
        clinic: String,
        name: String,
        role: Role,
        passphrase: Zeroizing<String>,
    },
    /// First run: create the data directory and enroll with an invitation.
    Join {
        invite: String,
        peers: Vec<String>,
        passphrase: Zeroizing<String>,
    },
    Unlock(Zeroizing<String>),
    /// Stop the node and drop every key (the lock button and the idle lock).
    Lock,
    /// Search message text in every thread this device can read (locally).
    Search(String),
    OpenThread(ThreadId),
    CloseThread,
    NewThread {
        subject: Subject,
        category: Category,
        title: String,
    },
    /// Start (or open) the direct conversation with exactly these members and oneself.
    NewDirect {
        names: Vec<String>,
    },
    Post {
        thread: ThreadId,
        text: String,
        urgent: bool,
        task: Option<NewTask>,
        /// The message answered (its shown id).
        reply_to: Option<String>,
    },
    CompleteTask {
        thread: ThreadId,
        message: String,
    },
    /// Replace the text of one's own message.
    EditMessage {
        thread: ThreadId,
        message: String,
        text: String,
    },
    /// Retract one's own message.
    RetractMessage {
        thread: ThreadId,
        message: String,
    },
    /// Admin screens.
    Invite {
        name: String,
        role: Role,
        admin: bool,
        days: u32,
    },
    CancelInvite(String),
    RevokeDevice(String),
    /// A device invitation for an existing member; `replace` is revoked as it is issued.
    InviteDevice {
        member: String,
        replace: Option<String>,
        days: u32,
    },
    RemoveMember(String),
    RestoreMember(String),
    ChangeRole {
        member: String,
        role: Role,
    },
    ReadPolicy(Role, Category, bool),
    /// The audit trail (admins): a page for these filters.
    Audit(AuditQuery),
    /// Check every audit chain held (`huddle audit verify`).
    VerifyAudit,
    /// Write the filtered trail as `huddle audit --csv` does to a new file at `path`
    /// (absolute); the export is itself audited.
    ExportAudit {
        query: AuditQuery,
        path: PathBuf,
    },
    /// Lift a thread's restriction (admins; `huddle thread unrestrict`).
    Unrestrict {
        thread: ThreadId,
    },
    /// Restrict a thread to these members (`huddle thread restrict`).
    Restrict {
        thread: ThreadId,
        members: Vec<String>,
    },
    /// Emergency access to a restricted thread, with a written reason
    /// (`huddle emergency open`).
    BreakGlass {
        thread: ThreadId,
        reason: String,
    },
    /// Re-wrap the store's key with a new passphrase (`huddle passphrase change`).
    ChangePassphrase {
        current: Zeroizing<String>,
        new: Zeroizing<String>,
    },
}

/// Where the app stands, as the bridge sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No data directory yet: found a clinic or join one.
    FirstRun,
    /// A data directory: the passphrase opens it.
    Locked,
    /// The passphrase is being checked (Argon2) or the clinic is being joined.
    Working(String),
    /// The node runs.
    Open,
    /// This device was revoked or its member removed: the clinic shut it out.
    Removed,
}

/// A fresh copy of what the views show, sent whenever the node changed.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Whether the admin lists and policy below were read (else keep the last ones).
    pub full: bool,
    pub status: Option<Status>,
    pub threads: Vec<ThreadSummary>,
    pub tasks: Vec<TaskView>,
    pub members: Vec<MemberView>,
    /// Members removed from the clinic, who an admin may restore.
    pub removed: Vec<MemberView>,
    pub devices: Vec<DeviceView>,
    pub invites: Vec<InviteView>,
    /// The clinic's read policy: (role, category, may read).
    pub policy: Vec<(Role, Category, bool)>,
    /// The clinic's safeguard settings (idle lock, lease, emergency access).
    pub safeguards: Option<crate::core::policy::Safeguards>,
    /// Every emergency access of the clinic, oldest first (admins; read with the lists).
    pub emergencies: Vec<EmergencyView>,
}

#[derive(Debug)]
pub enum Update {
    Phase(Phase),
    Snapshot(Box<Snapshot>),
    /// A thread this device just created: the UI selects it.
    Created(ThreadId),
    /// The open thread, re-read after each change to it.
    Thread(Box<ThreadDetail>),
    Peers(Vec<PeerView>),
    Progress(SyncProgress),
    /// A new invitation, shown once (its string and QR code).
    Invitation {
        text: String,
        name: String,
        /// When it stops being valid (unix ms).
        expires_ms: u64,
        /// A device invitation for an existing member (not a new member).
        device: bool,
    },
    /// Threads whose messages contain `query`.
    SearchHits {
        query: String,
        threads: Vec<ThreadId>,
    },
    Audit(Box<AuditPage>),
    /// What `audit verify` found: empty when every chain held is intact.
    Verified(Vec<String>),
    /// A short confirmation for a toast.
    Done(String),
    /// A refusal or failure, in words.
    Error(String),
    /// A refusal of a form's request, shown beside the form.
    FormError {
        form: Form,
        text: String,
    },
    /// A form's request was carried out: the form may let go of what was typed.
    FormDone(Form),
}

impl Request {
    /// The form this request was sent from, if any.
    pub fn form(&self) -> Option<Form> {
        Some(match self {
            Request::Found { .. } => Form::Found,
            Request::Join { .. } => Form::Join,
            Request::Unlock(_) => Form::Unlock,
            Request::NewThread { .. } => Form::NewThread,
            Request::NewDirect { .. } => Form::NewDirect,
            Request::Post { .. } => Form::Composer,
            Request::Invite { .. } => Form::AddMember,
            Request::InviteDevice { .. } | Request::RemoveMember(_) | Request::RestoreMember(_) => {
                Form::Members
            }
            Request::ChangePassphrase { .. } => Form::Passphrase,
            Request::EditMessage { .. } | Request::RetractMessage { .. } => Form::MessageEdit,
            _ => return None,
        })
    }
}
