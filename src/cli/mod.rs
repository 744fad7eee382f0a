//! The headless `huddle` command: argument parsing and dispatch to the node. Every
//! listing is also available as JSON with `--json`.

mod carry;
pub mod claim;
pub mod control;
mod join;
pub mod output;
mod passphrase;
mod serve;
mod unlock;
mod wait;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::core::identity::DevicePublic;
use crate::core::policy::{Category, Role};
use crate::core::thread::{MESSAGE_RANDOM_BYTES, Subject};
use crate::node::{Node, TaskRequest};
use crate::store::Store;

/// Shown under every `--help`: the words `--role` and `--category` take.
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
        /// The message id (16 hex characters), chosen by the command before the post is
        /// sent to a running node, so that a lost answer can be checked.
        #[arg(long, hide = true, value_name = "HEX")]
        id: Option<String>,
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
    /// List the clinic's members.
    Members,
    /// List the clinic's devices: member, device id, active or revoked, last seen.
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
/// (What `--due` takes, a YYYY-MM-DD date, plus full times.)
pub fn since_ms(s: &str) -> Result<u64> {
    let s = s.trim();
    let at = if let Ok(date) = s.parse::<jiff::civil::Date>() {
        date.to_zoned(jiff::tz::TimeZone::system())?.timestamp()
    } else {
        s.parse::<jiff::Timestamp>().map_err(|_| {
            anyhow::anyhow!(
                "`{}` is not a time: give YYYY-MM-DD or RFC 3339 (2026-11-26T14:05:00Z)",
                s.chars().take(40).collect::<String>()
            )
        })?
    };
    Ok(u64::try_from(at.as_millisecond()).unwrap_or(0))
}

#[derive(Subcommand, Debug)]
pub enum PassphraseCommand {
    /// Change the passphrase (the current one from HUDDLE_PASSPHRASE or asked; the new one
    /// from HUDDLE_NEW_PASSPHRASE or asked twice). The old one no longer opens the data.
    Change,
}

/// Network options of `serve` and `join`.
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
    /// How long it stays valid, e.g. 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
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
    patient: Option<String>,
    /// A topic, e.g. "Friday coverage".
    #[arg(long, value_name = "LABEL")]
    topic: Option<String>,
    /// Who may read it is decided by its category: clinical, scheduling, billing or
    /// operations.
    #[arg(long)]
    category: Category,
    /// A short title, e.g. "Authorization renewal".
    #[arg(long)]
    title: String,
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

fn data_dir(cli: &Cli) -> Result<PathBuf> {
    data_dir_or_default(cli.data_dir.as_ref())
}

/// The data directory given, or the OS data directory + `/huddle`.
pub fn data_dir_or_default(given: Option<&PathBuf>) -> Result<PathBuf> {
    match given {
        Some(d) => Ok(d.clone()),
        None => Ok(dirs::data_dir()
            .context("no OS data directory; pass --data-dir or set HUDDLE_DATA_DIR")?
            .join("huddle")),
    }
}

/// Opens the node, creating the data directory when `create` allows it.
fn open_node(dir: &std::path::Path, create: bool) -> Result<Node> {
    if !Store::exists(dir) {
        if !create {
            return Err(crate::store::StoreError::NotFound(dir.to_path_buf()).into());
        }
        let fresh = !dir.exists();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let created = restrict(dir)
            .and_then(|_| passphrase::new())
            .and_then(|pass| Ok(Node::create(dir, pass.as_bytes())?));
        let theirs = created.as_ref().err().and_then(|e| e.downcast_ref());
        if created.is_err() && fresh && !theirs.is_some_and(wait::is_locked) {
            // Nothing is left behind by a creation that failed (unless another process
            // is creating the same directory: that one is not ours to remove).
            let _ = std::fs::remove_dir_all(dir);
        }
        return created;
    }
    let pass = passphrase::existing()?;
    Ok(Node::open(dir, pass.as_bytes())?)
}

/// Makes a data directory readable by its owner only.
pub(crate) fn restrict(dir: &std::path::Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// A due date: YYYY-MM-DD, not before today (this computer's date).
fn valid_due(s: &str) -> Result<String> {
    Ok(crate::localtime::parse_due(s)?.to_string())
}

/// A message id as `--id` gives it: 16 lowercase hex characters.
fn message_id(hex_id: &str) -> Result<[u8; MESSAGE_RANDOM_BYTES]> {
    let mut random = [0u8; MESSAGE_RANDOM_BYTES];
    match hex::decode_to_slice(hex_id, &mut random) {
        Ok(()) if !hex_id.bytes().any(|b| b.is_ascii_uppercase()) => Ok(random),
        _ => bail!(
            "`{hex_id}` is not a message id ({} hex characters)",
            2 * MESSAGE_RANDOM_BYTES
        ),
    }
}

/// Whether a command needs a data directory that may not exist yet.
fn creates(command: &Command) -> bool {
    matches!(
        command,
        Command::Init { .. } | Command::Device(DeviceCommand::Key)
    )
}

/// Opens the desktop app (`huddle` with no subcommand) on the data directory.
pub fn open_app(dir: Option<PathBuf>, args: AppArgs) -> Result<()> {
    let dir = data_dir_or_default(dir.as_ref())?;
    if control::running(&dir) {
        bail!(
            "a huddle serve is running on {}: stop it first (the app runs the node itself)",
            dir.display()
        );
    }
    for p in &args.net.peers {
        crate::net::addr::parse(p).map_err(anyhow::Error::msg)?;
    }
    crate::app::run(crate::app::AppOptions {
        bridge: crate::app::bridge::BridgeConfig { dir, net: args.net },
        idle_lock: std::time::Duration::from_secs(args.idle_lock * 60),
        notifier: None,
        passphrase: passphrase::from_env(),
        screenshot: args.screenshot.map(|path| crate::app::Screenshot {
            path,
            open_thread: args.screenshot_thread,
            audit: args.screenshot_audit,
        }),
    })
}

/// Runs one command: through a running `huddle serve` on the same data directory if
/// there is one, else on the store directly, waiting while another command holds it
/// (module `carry`). Returns the process exit code.
pub fn run(cli: Cli, args: &[String]) -> Result<std::process::ExitCode> {
    let dir = data_dir(&cli)?;
    match &cli.command {
        Command::Serve(args) => {
            return serve::run(&dir, args).map(|_| std::process::ExitCode::SUCCESS);
        }
        Command::Unlock => {
            return unlock::unlock(&dir, args).map(|_| std::process::ExitCode::SUCCESS);
        }
        Command::Lock => {
            return unlock::lock(&dir, args).map(|_| std::process::ExitCode::SUCCESS);
        }
        Command::Repair => {
            if control::running(&dir) {
                bail!("stop the `huddle serve` running on {} first", dir.display());
            }
            let pass = passphrase::existing()?;
            match Node::repair(&dir, pass.as_bytes())? {
                Some(report) => println!("{report}"),
                None => println!("the store opens and reads normally: nothing to repair"),
            }
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Passphrase(PassphraseCommand::Change) => {
            if control::running(&dir) {
                bail!(
                    "stop the `huddle serve` running on {} first, then change the passphrase",
                    dir.display()
                );
            }
            passphrase::change(&dir)?;
            println!(
                "passphrase changed: the old one no longer opens {}",
                dir.display()
            );
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Join { invite, net } => {
            if control::running(&dir) {
                bail!(
                    "a huddle serve is running on {}: this device already has a clinic",
                    dir.display()
                );
            }
            return join::run(&dir, invite, net).map(|_| std::process::ExitCode::SUCCESS);
        }
        _ => {}
    }
    let (cli, args) = carry::with_message_id(cli, args)?;
    let reply = match carry::carry_out(&dir, &cli, &args)? {
        carry::Done::Answered(reply) => reply,
        carry::Done::CutOff(why) => carry::settle(&dir, &cli, &args, &why),
    };
    print!("{}", reply.out.stdout);
    eprint!("{}", reply.out.stderr);
    match reply.error {
        None => Ok(std::process::ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: {e}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

/// Carries out a command on an open node (locally or inside `huddle serve`).
pub fn execute(node: &mut Node, cli: &Cli, o: &mut output::Out) -> Result<()> {
    let json = cli.json;
    match &cli.command {
        Command::Init { clinic, name, role } => {
            node.init_clinic(clinic, name, *role)?;
            output::status(o, &node.status(), json)
        }
        Command::Thread(ThreadCommand::New(t)) => {
            let subject = match (&t.patient, &t.topic) {
                (Some(p), _) => Subject::Patient(p.clone()),
                (_, Some(tp)) => Subject::Topic(tp.clone()),
                _ => bail!("give --patient LABEL or --topic LABEL"),
            };
            let id = node.new_thread(subject, t.category, &t.title)?;
            output::id(o, &id.to_hex(), json)
        }
        Command::Thread(ThreadCommand::Restrict { thread, to }) => {
            node.restrict_thread(thread, to)?;
            if json {
                return output::json(o, &serde_json::json!({ "restricted": thread, "to": to }));
            }
            o.stdout.push_str(&format!(
                "thread {thread} restricted to {}\n",
                to.join(", ")
            ));
            Ok(())
        }
        Command::Emergency(EmergencyCommand::Open { thread, reason }) => {
            output::emergencies(o, &[node.open_emergency(thread, reason)?], json)
        }
        Command::Emergency(EmergencyCommand::List) => {
            output::emergencies(o, &node.emergency_grants()?, json)
        }
        Command::Post {
            thread,
            text,
            urgent,
            task,
            assignee,
            due,
            id,
        } => {
            let task = match (task, assignee, due) {
                (true, Some(a), Some(d)) => Some(TaskRequest {
                    assignee: a.clone(),
                    due: valid_due(d)?,
                }),
                (true, _, _) => bail!("--task needs --assignee NAME and --due DATE"),
                _ => None,
            };
            let id = match id {
                Some(id) => node.post_with_id(thread, text, *urgent, task, message_id(id)?)?,
                None => node.post(thread, text, *urgent, task)?,
            };
            output::id(o, &id, json)
        }
        Command::Threads => {
            let (threads, problems) = node.threads()?;
            for p in &problems {
                o.stderr.push_str(&format!("warning: {p}\n"));
            }
            output::threads(o, &threads, json)
        }
        Command::Tasks { mine } => output::tasks(o, &node.tasks(*mine)?, *mine, json),
        Command::Read { thread } => {
            let n = node.mark_read(thread)?;
            output::count(o, "marked read", n, json)
        }
        Command::Task(TaskCommand::Done { thread, message }) => {
            let id = node.complete_task(thread, message)?;
            output::id(o, &id, json)
        }
        Command::Member(MemberCommand::Add { name, role, admin }) => {
            let id = node.add_member(name, *role, *admin)?;
            // An open invitation for this name can no longer be redeemed: say so.
            for i in node.invites().unwrap_or_default() {
                if i.name.eq_ignore_ascii_case(name.trim()) {
                    o.stderr.push_str(&format!(
                        "note: invitation {} for `{}` can no longer be redeemed (that name is \
                         taken now); withdraw it with `huddle invite cancel {}`\n",
                        i.id, i.name, i.id
                    ));
                }
            }
            if json {
                return output::id(o, &id.to_hex(), json);
            }
            let admin = if *admin { " and admin" } else { "" };
            o.stdout.push_str(&format!(
                "added {name} as {role}{admin} (member {}). To enroll their device, run \
                 `huddle device key` on it, then here: huddle device add --member \"{name}\" \
                 --key KEYS\n",
                id.short()
            ));
            Ok(())
        }
        Command::Members => output::members(o, &node.members()?, json),
        Command::Devices => output::devices(o, &node.devices()?, json),
        Command::Device(DeviceCommand::Revoke { device, member }) => {
            let revoked = match (device, member) {
                (Some(d), _) => vec![node.revoke_device(d)?],
                (None, Some(name)) => node.revoke_member_devices(name)?,
                (None, None) => bail!("name a device, or a member with --member"),
            };
            if json {
                let ids: Vec<String> = revoked.iter().map(|d| d.to_hex()).collect();
                return output::json(o, &serde_json::json!({ "revoked": ids }));
            }
            for d in revoked {
                o.stdout.push_str(&format!(
                    "revoked device {}: disconnected, its later envelopes refused, keys rotated\n",
                    d.short()
                ));
            }
            Ok(())
        }
        Command::Member(MemberCommand::Remove { name }) => {
            node.remove_member(name)?;
            o.stdout.push_str(&format!(
                "removed {name}: their devices are cut off and keys rotated\n"
            ));
            Ok(())
        }
        Command::Member(MemberCommand::Role {
            name,
            role,
            admin,
            no_admin,
        }) => {
            let flag = match (admin, no_admin) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            node.change_role(name, *role, flag)?;
            o.stdout.push_str(&format!("{name} is now {role}\n"));
            Ok(())
        }
        Command::Device(DeviceCommand::Key) => output::device_key(o, &node.device(), json),
        Command::Device(DeviceCommand::Add { member, key }) => {
            node.add_device(member, *key)?;
            if json {
                return output::id(o, &key.id.to_hex(), json);
            }
            o.stdout.push_str(&format!(
                "enrolled device {} for {member}; it syncs with the clinic once it meets one of \
                 its devices (`huddle serve` on both, same network)\n",
                key.id.to_hex()
            ));
            Ok(())
        }
        Command::Bundle(BundleCommand::Export { file }) => {
            let n = node.export_bundle(file)?;
            node.record_export(n);
            output::count(o, "envelopes exported", n as usize, json)
        }
        Command::Bundle(BundleCommand::Import { file }) => {
            let report = node.import_bundle(file)?;
            output::import(o, &report, json)?;
            if !report.refused.is_empty() {
                bail!(
                    "{} envelope(s) were refused; the valid ones were imported",
                    report.refused.len()
                );
            }
            Ok(())
        }
        Command::Status => output::status(o, &node.status(), json),
        Command::Invite(InviteArgs {
            action: Some(InviteCommand::Cancel { id }),
            ..
        }) => {
            let cancelled = node.cancel_invite(id)?;
            output::invite_cancelled(o, &cancelled, json)
        }
        Command::Invite(InviteArgs {
            action: None,
            name,
            role,
            admin,
            expires,
        }) => {
            let (Some(name), Some(role)) = (name, role) else {
                bail!("give --name NAME and --role ROLE");
            };
            let addrs = node.listen_addrs();
            if addrs.is_empty() {
                o.stderr.push_str("note: no addresses known yet; the new device will look for this one by mDNS (run `huddle serve`)\n");
            }
            let invite = node.create_invite(name, *role, *admin, (*expires).into(), addrs)?;
            output::id(o, &invite.encode(), json)
        }
        Command::Policy { action: None } => output::policy(o, &node.policy()?, json),
        Command::Policy {
            action:
                Some(PolicyCommand::Set {
                    idle_lock,
                    lease_days,
                    emergency_minutes,
                }),
        } => {
            let mut s = node.safeguards()?;
            s.idle_lock_minutes = idle_lock.unwrap_or(s.idle_lock_minutes);
            s.offline_lease_days = lease_days.unwrap_or(s.offline_lease_days);
            s.emergency_minutes = emergency_minutes.unwrap_or(s.emergency_minutes);
            node.set_safeguards(s)?;
            output::policy(o, &node.policy()?, json)
        }
        Command::Invites => output::invites(o, &node.invites()?, crate::node::now_ms(), json),
        Command::Show { thread } => {
            let detail = node.thread(thread)?;
            node.record_view(detail.thread)?;
            output::thread(o, &detail, json)
        }
        Command::Audit(AuditArgs {
            action: Some(AuditCommand::Verify),
            ..
        }) => {
            let findings = node.audit_verify()?;
            output::audit_findings(o, &findings, json)?;
            let modified = match node.envelopes_modified() {
                true => {
                    "; the store's envelope records were changed outside Huddle \
                         (`huddle repair` rebuilds them from the peers)"
                }
                false => "",
            };
            if !findings.is_empty() {
                bail!(
                    "the audit trail has {} finding(s){modified}",
                    findings.len()
                );
            }
            if node.envelopes_modified() {
                bail!("no audit entry is changed{modified}");
            }
            Ok(())
        }
        Command::Audit(args) => {
            let filter = crate::node::AuditFilter {
                member: args.member.clone(),
                thread: args.thread.clone(),
                since_ms: args.since,
            };
            output::audit_trail(o, &node.audit_trail(&filter)?, json, args.csv)
        }
        Command::Peer(PeerCommand::Add { addr }) => {
            crate::net::addr::parse(addr).map_err(anyhow::Error::msg)?;
            node.add_peer(addr.trim())?;
            output::id(o, addr.trim(), json)
        }
        Command::Serve(_)
        | Command::Join { .. }
        | Command::Repair
        | Command::Unlock
        | Command::Lock
        | Command::Passphrase(_) => {
            bail!(
                "`serve`, `join`, `repair`, `unlock`, `lock` and `passphrase` cannot run inside a running node"
            )
        }
    }
}
