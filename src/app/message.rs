//! What the UI asks of the bridge ([`Request`]) and what the bridge tells the UI
//! ([`Update`]). Widgets never touch the node: they return requests, applied in one
//! place ([`super::HuddleApp`]), and the bridge answers with updates drained each frame.

use zeroize::Zeroizing;

use crate::core::ids::ThreadId;
use crate::core::policy::{Category, Role};
use crate::core::thread::Subject;
use crate::net::{PeerView, SyncProgress};
use crate::node::{
    DeviceView, InviteView, MemberView, Status, TaskView, ThreadDetail, ThreadSummary,
};

/// A task attached to a new message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub assignee: String,
    /// `YYYY-MM-DD`, checked not to be in the past.
    pub due: String,
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
    Post {
        thread: ThreadId,
        text: String,
        urgent: bool,
        task: Option<NewTask>,
    },
    CompleteTask {
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
    ChangeRole {
        member: String,
        role: Role,
    },
    ReadPolicy(Role, Category, bool),
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
    pub devices: Vec<DeviceView>,
    pub invites: Vec<InviteView>,
    /// The clinic's read policy: (role, category, may read).
    pub policy: Vec<(Role, Category, bool)>,
    /// The clinic's safeguard settings (idle lock, lease, emergency access).
    pub safeguards: Option<crate::core::policy::Safeguards>,
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
    },
    /// Threads whose messages contain `query`.
    SearchHits {
        query: String,
        threads: Vec<ThreadId>,
    },
    /// A short confirmation for a toast.
    Done(String),
    /// A refusal or failure, in words.
    Error(String),
}
