//! The headless `huddle` command: argument parsing and dispatch to the node. Every
//! listing is also available as JSON with `--json`.

mod output;
mod passphrase;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::core::identity::DevicePublic;
use crate::core::policy::{Category, Role};
use crate::core::thread::Subject;
use crate::node::{Node, TaskRequest};
use crate::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "huddle",
    version,
    about = "Care team messaging for small clinics: no server, end-to-end encrypted."
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Found a clinic on this device, as its first admin.
    Init {
        #[arg(long)]
        clinic: String,
        /// Your name as the clinic's staff will see it.
        #[arg(long)]
        name: String,
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
        text: String,
        #[arg(long)]
        urgent: bool,
        /// Make the message a task; needs --assignee and --due.
        #[arg(long, requires_all = ["assignee", "due"])]
        task: bool,
        #[arg(long, requires = "task", value_name = "NAME")]
        assignee: Option<String>,
        /// Due date, YYYY-MM-DD.
        #[arg(long, requires = "task", value_name = "DATE")]
        due: Option<String>,
    },
    /// List threads with unread counts.
    Threads,
    /// Show a thread's messages.
    Show { thread: String },
    /// Mark every message of a thread as read.
    Read { thread: String },
    /// Tasks: `huddle task done`.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Members: `huddle member add`.
    #[command(subcommand)]
    Member(MemberCommand),
    /// List the clinic's members.
    Members,
    /// This device's keys, and enrolling other devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Offline sync by removable drive.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// This device, its clinic and member.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum ThreadCommand {
    /// Start a thread about a patient or a topic (prints the thread id).
    New(NewThread),
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
    /// clinical, scheduling, billing or operations.
    #[arg(long)]
    category: Category,
    #[arg(long)]
    title: String,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Mark a task done.
    Done { thread: String, message: String },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a staff member (admins only).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Print this device's public keys (creates the data directory if needed).
    Key,
    /// Enroll another device for a member (admins only).
    Add {
        #[arg(long, value_name = "NAME")]
        member: String,
        /// The keys printed by `huddle device key` on that device.
        #[arg(long, value_name = "KEYS")]
        key: DevicePublic,
    },
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Write every envelope this device holds to FILE.
    Export { file: PathBuf },
    /// Validate and import the envelopes in FILE.
    Import { file: PathBuf },
}

fn data_dir(cli: &Cli) -> Result<PathBuf> {
    match &cli.data_dir {
        Some(d) => Ok(d.clone()),
        None => Ok(dirs::data_dir()
            .context("no OS data directory; pass --data-dir or set HUDDLE_DATA_DIR")?
            .join("huddle")),
    }
}

/// Opens the node, creating the data directory when `create` allows it.
fn node(cli: &Cli, create: bool) -> Result<Node> {
    let dir = data_dir(cli)?;
    if !Store::exists(&dir) {
        if !create {
            return Err(crate::store::StoreError::NotFound(dir).into());
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pass = passphrase::new()?;
        return Ok(Node::create(&dir, pass.as_bytes())?);
    }
    let pass = passphrase::existing()?;
    Ok(Node::open(&dir, pass.as_bytes())?)
}

fn valid_date(s: &str) -> Result<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &format)
        .with_context(|| format!("`{s}` is not a date (expected YYYY-MM-DD)"))?;
    Ok(s.trim().to_string())
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    match &cli.command {
        Command::Init { clinic, name, role } => {
            let mut n = node(&cli, true)?;
            n.init_clinic(clinic, name, *role)?;
            output::status(&n.status(), json)
        }
        Command::Thread(ThreadCommand::New(t)) => {
            let subject = match (&t.patient, &t.topic) {
                (Some(p), _) => Subject::Patient(p.clone()),
                (_, Some(tp)) => Subject::Topic(tp.clone()),
                _ => bail!("give --patient LABEL or --topic LABEL"),
            };
            let id = node(&cli, false)?.new_thread(subject, t.category, &t.title)?;
            output::id(&id.to_hex(), json)
        }
        Command::Post {
            thread,
            text,
            urgent,
            task,
            assignee,
            due,
        } => {
            let task = match (task, assignee, due) {
                (true, Some(a), Some(d)) => Some(TaskRequest {
                    assignee: a.clone(),
                    due: valid_date(d)?,
                }),
                (true, _, _) => bail!("--task needs --assignee NAME and --due DATE"),
                _ => None,
            };
            let id = node(&cli, false)?.post(thread, text, *urgent, task)?;
            output::id(&id, json)
        }
        Command::Threads => {
            let (threads, problems) = node(&cli, false)?.threads()?;
            for p in &problems {
                eprintln!("warning: {p}");
            }
            output::threads(&threads, json)
        }
        Command::Show { thread } => output::thread(&node(&cli, false)?.thread(thread)?, json),
        Command::Read { thread } => {
            let n = node(&cli, false)?.mark_read(thread)?;
            output::count("marked read", n, json)
        }
        Command::Task(TaskCommand::Done { thread, message }) => {
            let id = node(&cli, false)?.complete_task(thread, message)?;
            output::id(&id, json)
        }
        Command::Member(MemberCommand::Add { name, role, admin }) => {
            let id = node(&cli, false)?.add_member(name, *role, *admin)?;
            output::id(&id.to_hex(), json)
        }
        Command::Members => output::members(&node(&cli, false)?.members()?, json),
        Command::Device(DeviceCommand::Key) => {
            output::device_key(&node(&cli, true)?.device(), json)
        }
        Command::Device(DeviceCommand::Add { member, key }) => {
            node(&cli, false)?.add_device(member, *key)?;
            output::id(&key.id.to_hex(), json)
        }
        Command::Bundle(BundleCommand::Export { file }) => {
            let n = node(&cli, false)?.export_bundle(file)?;
            output::count("envelopes exported", n as usize, json)
        }
        Command::Bundle(BundleCommand::Import { file }) => {
            let report = node(&cli, false)?.import_bundle(file)?;
            output::import(&report, json)?;
            if !report.refused.is_empty() {
                bail!(
                    "{} envelope(s) were refused; the valid ones were imported",
                    report.refused.len()
                );
            }
            Ok(())
        }
        Command::Status => output::status(&node(&cli, false)?.status(), json),
    }
}
