//! The command line as typed: clap's parsing of `huddle` and its subcommands. Nothing
//! here runs anything: [`super::plan`] turns a parsed command into the node's typed
//! operation, and [`super::run`] carries it out.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use huddle::core::identity::DevicePublic;
use huddle::core::policy::{Category, Role};
use huddle::host::NetOptions;

const ROLES_AND_CATEGORIES: &str = "\
Roles (--role):
  clinician    reads clinical, scheduling and operations threads
  scheduler    the front desk (also `front-desk`): reads scheduling and operations
  billing      reads billing, scheduling and operations
Categories (--category): clinical, scheduling, billing, operations.
(That is the default read policy; `huddle status` names your role.)";

#[derive(Parser, Debug)]
#[command(
    name = "huddle",
    version,
    about = "Care team messaging for small clinics: no server, end-to-end encrypted.",
    after_help = ROLES_AND_CATEGORIES
)]
pub struct Cli {
    /// Data directory of this device [default: the OS data directory + /huddle].
    #[arg(long, global = true, env = "HUDDLE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print listings as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The `huddle` command line as typed: a subcommand runs headless ([`Cli`]); none opens
/// the desktop app.
#[derive(Parser, Debug)]
#[command(
    name = "huddle",
    version,
    about = "Care team messaging for small clinics: no server, end-to-end encrypted.\n\n\
             Without a subcommand, `huddle` opens the desktop app on this device's data \
             directory.",
    after_help = ROLES_AND_CATEGORIES
)]
pub struct Launch {
    /// Data directory of this device [default: the OS data directory + /huddle].
    #[arg(long, global = true, env = "HUDDLE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print listings as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub app: AppArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Launch {
    /// The headless command, if one was given.
    pub fn into_command(self) -> Result<Result<Cli, (Option<PathBuf>, AppArgs)>> {
        let a = &self.app;
        let app_only = a.net.listen.is_some()
            || !a.net.peers.is_empty()
            || a.net.mdns_interface.is_some()
            || a.screenshot.is_some()
            || a.idle_lock != DEFAULT_IDLE_LOCK;
        Ok(match self.command {
            Some(_) if app_only => bail!(
                "--listen, --peer, --mdns-interface and --idle-lock before a subcommand \
                 belong to the app; give network options after it (`huddle serve --peer …`)"
            ),
            Some(command) => Ok(Cli {
                data_dir: self.data_dir,
                json: self.json,
                command,
            }),
            None => Err((self.data_dir, self.app)),
        })
    }
}

/// Idle minutes before the app locks, unless `--idle-lock` says otherwise.
pub const DEFAULT_IDLE_LOCK: u64 = 15;

/// Options of the desktop app (`huddle` with no subcommand).
#[derive(Args, Debug, Clone)]
pub struct AppArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// Lock after this many idle minutes (default 15).
    #[arg(long, value_name = "MINUTES", default_value_t = DEFAULT_IDLE_LOCK, value_parser = clap::value_parser!(u64).range(1..=240))]
    pub idle_lock: u64,
    /// Save a PNG of the window once the clinic shows, then quit (for documentation).
    #[arg(long, value_name = "PNG", hide = true)]
    pub screenshot: Option<PathBuf>,
    /// With --screenshot: open the most recent thread first.
    #[arg(long, hide = true, requires = "screenshot")]
    pub screenshot_thread: bool,
    /// With --screenshot: show the admin's audit trail.
    #[arg(
        long,
        hide = true,
        requires = "screenshot",
        conflicts_with = "screenshot_thread"
    )]
    pub screenshot_audit: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Found a clinic on this device, as its first admin.
    #[command(after_help = ROLES_AND_CATEGORIES)]
    Init {
        /// The clinic's name, e.g. "Maple Street Therapy".
        #[arg(long)]
        clinic: String,
        /// Your name as the clinic's staff will see it.
        #[arg(long)]
        name: String,
        /// Your role: clinician, scheduler (front-desk) or billing.
        #[arg(long, default_value = "clinician")]
        role: Role,
    },
    /// Threads: `huddle thread new`.
    #[command(subcommand)]
    Thread(ThreadCommand),
    /// Direct conversations among named members: `huddle direct new NAME…`.
    #[command(subcommand)]
    Direct(DirectCommand),
    /// Post a message to a thread (prints the message id).
    Post {
        /// Thread id (or its first characters).
        thread: String,
        /// The message (never leaves the clinic's devices unencrypted).
        text: String,
        /// Mark the message urgent.
        #[arg(long)]
        urgent: bool,
        /// Make the message a task; needs --assignee and --due.
        #[arg(long, requires_all = ["assignee", "due"])]
        task: bool,
        /// Who the task is for: a member who may read this thread.
        #[arg(long, requires = "task", value_name = "NAME")]
        assignee: Option<String>,
        /// Due date, YYYY-MM-DD, today or later.
        #[arg(long, requires = "task", value_name = "DATE")]
        due: Option<String>,
        /// Answer this message (its id or first 4+ characters): it is quoted above the
        /// reply wherever the reply is shown.
        #[arg(long, value_name = "MSG")]
        reply_to: Option<String>,
        /// The message id (16 hex characters), chosen by the command before the post is
        /// sent to a running node, so that a lost answer can be checked.
        #[arg(long, hide = true, value_name = "HEX")]
        id: Option<String>,
    },
    /// Change the text of your own message (marked "edited"; the earlier text stays
    /// in the thread's history).
    Edit {
        /// Thread id (or its first characters).
        thread: String,
        /// Message id (or its first 4+ characters).
        message: String,
        /// The new text.
        text: String,
    },
    /// Take back your own message: shown as "message retracted" (an open task on it
    /// is closed).
    Retract {
        /// Thread id (or its first characters).
        thread: String,
        /// Message id (or its first 4+ characters).
        message: String,
    },
    /// List threads with unread counts.
    Threads,
    /// Show a thread's messages (times in this computer's time zone).
    Show {
        /// Thread id (or its first characters).
        thread: String,
    },
    /// Mark every message of a thread as read.
    Read {
        /// Thread id (or its first characters).
        thread: String,
    },
    /// List tasks in the threads you may read: open first, soonest due first, overdue
    /// marked.
    Tasks {
        /// Only tasks assigned to you.
        #[arg(long)]
        mine: bool,
    },
    /// Tasks: `huddle task done`.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Members: `huddle member add`.
    #[command(subcommand)]
    Member(MemberCommand),
    /// List the clinic's members (`--removed`: the removed ones, whom `huddle member
    /// restore NAME` can bring back).
    Members {
        /// List the removed members instead (whom `huddle member restore NAME` brings
        /// back).
        #[arg(long)]
        removed: bool,
    },
    /// List the clinic's devices: member, device id, active or revoked, online (through
    /// a running serve) or the day last seen.
    Devices,
    /// This device's keys, and enrolling other devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Offline sync by removable drive.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// This device, its clinic and member.
    Status,
    /// Run this device as a node on the LAN until stopped (Ctrl-C or SIGTERM); it locks
    /// after the clinic's idle time (`huddle unlock` opens it again).
    Serve(ServeArgs),
    /// Prove the passphrase to the running `huddle serve` once: commands then need no
    /// passphrase until `huddle lock` or 15 idle minutes (a locked serve opens again).
    Unlock,
    /// End the unlock session and lock the running `huddle serve` (its keys leave memory).
    Lock,
    /// Issue a one-time invitation for a new member's device (admins only);
    /// `invite cancel ID` withdraws one.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = ROLES_AND_CATEGORIES
    )]
    Invite(InviteArgs),
    /// List the open invitations this device issued.
    Invites,
    /// Emergency access to restricted threads: `huddle emergency open|list`.
    #[command(subcommand)]
    Emergency(EmergencyCommand),
    /// Join a clinic with an invitation (creates this device's data directory).
    Join {
        /// The invitation string `huddle invite` printed on an admin's device.
        invite: String,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Peers to dial when multicast discovery is blocked.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Rebuild a damaged store from this device's identity file (the damaged one is kept
    /// aside); the device then gets the clinic's messages back from its peers.
    Repair,
    /// The clinic's policy: which roles read which categories, the idle lock, the
    /// offline lease and emergency access time; `policy set` changes the latter.
    #[command(args_conflicts_with_subcommands = true)]
    Policy {
        #[command(subcommand)]
        action: Option<PolicyCommand>,
    },
    /// The clinic's audit trail, oldest first (admins only); `audit verify` checks every
    /// audit chain this device holds.
    #[command(args_conflicts_with_subcommands = true)]
    Audit(AuditArgs),
    /// The device's passphrase: `huddle passphrase change`.
    #[command(subcommand)]
    Passphrase(PassphraseCommand),
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Change the clinic's safeguard settings (admins only); unnamed ones stay.
    Set {
        /// Minutes without use before every device locks (1 to 240; a user may choose
        /// fewer on their device).
        #[arg(long, value_name = "MINUTES")]
        idle_lock: Option<u32>,
        /// Days a device may go without syncing with the clinic before it locks clinical
        /// threads (1 to 90).
        #[arg(long, value_name = "DAYS")]
        lease_days: Option<u32>,
        /// Minutes that emergency access to a restricted thread lasts (5 to 1440).
        #[arg(long, value_name = "MINUTES")]
        emergency_minutes: Option<u32>,
    },
}

/// `audit [--member NAME] [--thread THREAD] [--since TIME] [--csv]`, or `audit verify`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditCommand>,
    /// Only entries written by this member's devices.
    #[arg(long, value_name = "NAME")]
    pub member: Option<String>,
    /// Only entries about this thread (its id or first characters).
    #[arg(long, value_name = "THREAD")]
    pub thread: Option<String>,
    /// Only entries from this time on: YYYY-MM-DD (local midnight) or RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = since_ms)]
    pub since: Option<u64>,
    /// Comma-separated values with a header row (times in UTC).
    #[arg(long)]
    pub csv: bool,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check every audit chain held: names any entry edited, removed, reordered or
    /// truncated; exits non-zero on any finding.
    Verify,
}

/// `--since`: a date (local midnight) or an RFC 3339 time, as ms since the Unix epoch.
fn since_ms(s: &str) -> Result<u64> {
    Ok(huddle::localtime::since_ms(s)?)
}

#[derive(Subcommand, Debug)]
pub enum PassphraseCommand {
    /// Change the passphrase (the current one from HUDDLE_PASSPHRASE or asked; the new one
    /// from HUDDLE_NEW_PASSPHRASE or asked twice). The old one no longer opens the data.
    Change,
}

/// Network options of `serve`, `join` and the app.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Address to listen on, HOST:PORT or a multiaddr [default: 0.0.0.0:47733].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A peer to dial (repeatable); remembered and redialed with backoff.
    #[arg(long = "peer", value_name = "ADDR")]
    pub peers: Vec<String>,
    /// Turn LAN discovery (mDNS) off.
    #[arg(long, env = "HUDDLE_NO_MDNS", action = clap::ArgAction::SetTrue, value_parser = clap::builder::FalseyValueParser::new())]
    pub no_mdns: bool,
    /// Use only this network interface for mDNS.
    #[arg(long, value_name = "NAME")]
    pub mdns_interface: Option<String>,
}

impl NetArgs {
    /// The options as the host takes them.
    pub fn options(&self) -> NetOptions {
        NetOptions {
            listen: self.listen.clone(),
            peers: self.peers.clone(),
            no_mdns: self.no_mdns,
            mdns_interface: self.mdns_interface.clone(),
        }
    }
}

/// Options of `serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// Lock after this many idle minutes; at most the clinic policy's (default 15),
    /// a longer value is capped at it.
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub idle_lock: Option<u64>,
    /// For tests only: lock after this many idle seconds (overrides the policy).
    #[arg(long, value_name = "SECONDS", hide = true)]
    pub idle_lock_seconds: Option<u64>,
}

/// `invite --name N --role R [--admin] [--expires D]`, or `invite cancel ID`.
#[derive(Args, Debug)]
pub struct InviteArgs {
    #[command(subcommand)]
    pub action: Option<InviteCommand>,
    /// The new member's name (a member of that name must not exist yet).
    #[arg(long, required = true)]
    pub name: Option<String>,
    /// The new member's role: clinician, scheduler (front-desk) or billing.
    #[arg(long, required = true)]
    pub role: Option<Role>,
    /// Make the new member an admin (may change the roster and invite).
    #[arg(long)]
    pub admin: bool,
    /// How long it stays valid, e.g. 30m, 24h, 7d (at most 30 days; the app's default
    /// too).
    #[arg(long, default_value_t = huddle::node::invites::default_validity().into(), value_name = "DURATION")]
    pub expires: humantime::Duration,
}

#[derive(Subcommand, Debug)]
pub enum InviteCommand {
    /// Withdraw an open invitation: it is refused from then on, like a used one.
    Cancel {
        /// Its id as `huddle invites` lists it (or its first 4+ characters).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PeerCommand {
    /// Remember a peer address (HOST:PORT or multiaddr) and dial it.
    Add {
        /// HOST:PORT or a multiaddr, e.g. 192.168.1.20:47733.
        addr: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ThreadCommand {
    /// Start a thread about a patient or a topic (prints the thread id).
    #[command(after_help = ROLES_AND_CATEGORIES)]
    New(NewThread),
    /// Restrict a thread to named participants (others see "Restricted thread"; an
    /// admin, or a member whose role reads the thread's category, may do it).
    Restrict {
        /// Thread id (or its first characters).
        thread: String,
        /// The participants (you are added if your role reads the category).
        #[arg(long = "to", value_name = "NAME", num_args = 1.., required = true)]
        to: Vec<String>,
    },
    /// Lift a thread's restriction (admins): its category's readers read it again.
    Unrestrict {
        /// Thread id (or its first characters).
        thread: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DirectCommand {
    /// Start a conversation with the members named, readable only by them and you (no
    /// admin or emergency access); prints its id. With exactly the same people as a
    /// conversation you already have, prints that one's id.
    New {
        /// The other participants' names (1 to 31).
        #[arg(value_name = "NAME", num_args = 1.., required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum EmergencyCommand {
    /// Open a restricted thread you do not participate in, for the clinic policy's
    /// emergency minutes; announced in the thread and to admins.
    Open {
        /// Thread id (or its first characters).
        thread: String,
        /// Why (required; shown to the thread's readers and admins).
        #[arg(long)]
        reason: String,
    },
    /// List the clinic's emergency accesses (active and past).
    List,
}

#[derive(Args, Debug)]
pub struct NewThread {
    /// A patient label, e.g. "Sara M.".
    #[arg(
        long,
        value_name = "LABEL",
        conflicts_with = "topic",
        required_unless_present = "topic"
    )]
    pub patient: Option<String>,
    /// A topic, e.g. "Friday coverage".
    #[arg(long, value_name = "LABEL")]
    pub topic: Option<String>,
    /// Who may read it is decided by its category: clinical, scheduling, billing or
    /// operations.
    #[arg(long)]
    pub category: Category,
    /// A short title, e.g. "Authorization renewal".
    #[arg(long)]
    pub title: String,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Mark a task done.
    Done {
        /// Thread id (or its first characters).
        thread: String,
        /// The task's message id (or its first 4+ characters).
        message: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a staff member (admins only).
    #[command(after_help = ROLES_AND_CATEGORIES)]
    Add {
        /// Their name as the clinic's staff will see it.
        #[arg(long)]
        name: String,
        /// Their role: clinician, scheduler (front-desk) or billing.
        #[arg(long)]
        role: Role,
        /// Make them an admin (may change the roster and invite).
        #[arg(long)]
        admin: bool,
    },
    /// Remove a member and all their devices from the clinic (admins only). Keys of what
    /// they could read rotate: they cannot read anything posted afterwards.
    Remove {
        /// The member's name.
        name: String,
    },
    /// Bring back a removed member (admins only), with their history and role but none
    /// of their old devices: give them a device with `huddle device invite --member`.
    /// Refused if someone else has taken the name meanwhile.
    Restore {
        /// The removed member's name.
        name: String,
    },
    /// Change a member's role: clinician, scheduler (front-desk) or billing (admins
    /// only). A narrower role cannot read what is posted after the change.
    #[command(after_help = ROLES_AND_CATEGORIES)]
    Role {
        /// The member's name.
        name: String,
        /// The new role: clinician, scheduler (front-desk) or billing.
        role: Role,
        /// Make the member an admin.
        #[arg(long, conflicts_with = "no_admin")]
        admin: bool,
        /// Take the member's admin flag away.
        #[arg(long)]
        no_admin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Print this device's public keys (creates the data directory if needed).
    Key,
    /// Enroll another device for a member (admins only).
    Add {
        /// The member the device belongs to.
        #[arg(long, value_name = "NAME")]
        member: String,
        /// The keys printed by `huddle device key` on that device.
        #[arg(long, value_name = "KEYS")]
        key: DevicePublic,
    },
    /// Invite a new device for an existing member (a replacement laptop; admins only):
    /// prints the invitation. The member keeps their history and role; the invitation
    /// works once and expires like any other.
    Invite {
        /// The member the new device is for.
        #[arg(long, value_name = "NAME")]
        member: String,
        /// Revoke this device of theirs now (a lost or stolen laptop): its id, or its
        /// first characters (see `huddle devices`).
        #[arg(long, value_name = "DEVICE")]
        replace: Option<String>,
        /// How long it stays valid, e.g. 30m, 24h, 7d (at most 30 days).
        #[arg(long, default_value_t = huddle::node::invites::default_validity().into(), value_name = "DURATION")]
        expires: humantime::Duration,
    },
    /// Revoke a device (a lost or stolen laptop; admins only): it is disconnected, its
    /// later envelopes are refused everywhere, and keys rotate so it reads nothing new.
    Revoke {
        /// The device id, or its first characters (see `huddle devices`).
        #[arg(required_unless_present = "member", conflicts_with = "member")]
        device: Option<String>,
        /// Revoke every device of this member instead.
        #[arg(long, value_name = "NAME")]
        member: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Write every envelope this device holds to FILE.
    Export {
        /// Where to write the bundle (e.g. on a USB drive).
        file: PathBuf,
    },
    /// Validate and import the envelopes in FILE.
    Import {
        /// A bundle written by `huddle bundle export`.
        file: PathBuf,
    },
}
