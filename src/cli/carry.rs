//! Carrying out one command on a data directory: through a running `huddle serve` if
//! there is one, else on the store itself, waiting while another command holds the store
//! (and forwarding instead if a serve starts meanwhile). An answer cut off mid-way is
//! settled: a post says whether it was stored, a view is asked again, any other change
//! says plainly that it is unknown whether it was applied, and how to check.

use std::path::Path;

use anyhow::{Result, bail};
use clap::Parser;
use rand::RngCore;
use zeroize::Zeroizing;

use super::control::{self, Forwarded, Reply};
use super::output::{self, Out};
use super::wait::{StoreWait, is_locked};
use super::{
    BundleCommand, Cli, Command, DeviceCommand, InviteArgs, MemberCommand, TaskCommand,
    ThreadCommand, creates, execute, open_node, passphrase,
};
use crate::core::thread::MESSAGE_RANDOM_BYTES;
use crate::node::Node;
use crate::store::Store;

/// The end of a command: an answer, or an answer cut off (saying what happened).
pub enum Done {
    Answered(Reply),
    CutOff(String),
}

/// Chooses a post's message id before anything is sent, and adds it to the arguments a
/// running node receives (`--id`), so that an answer cut off can still be settled.
pub fn with_message_id(cli: Cli, args: &[String]) -> Result<(Cli, Vec<String>)> {
    let Command::Post { id: None, .. } = &cli.command else {
        return Ok((cli, args.to_vec()));
    };
    let mut random = [0u8; MESSAGE_RANDOM_BYTES];
    rand::rng().fill_bytes(&mut random);
    let id = hex::encode(random);
    let mut args = args.to_vec();
    // Options must come before a `--` that ends them (`post T -- -text`).
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.insert(at, format!("--id={id}"));
    let cli = Cli::try_parse_from(std::iter::once("huddle".to_string()).chain(args.clone()))?;
    match &cli.command {
        Command::Post {
            id: Some(chosen), ..
        } if *chosen == id => Ok((cli, args)),
        _ => bail!("the message id was lost from the post's arguments"),
    }
}

/// Carries out the command: forwarded while a node serves `dir`, else on the store as
/// soon as no other process holds it (at most [`super::wait::lock_wait`]).
pub fn carry_out(dir: &Path, cli: &Cli, args: &[String]) -> Result<Done> {
    let mut wait = StoreWait::new(dir);
    let mut pass = None;
    loop {
        match control::forward(dir, args) {
            Forwarded::Answered(reply) => return Ok(Done::Answered(reply)),
            Forwarded::CutOff(why) => return Ok(Done::CutOff(why)),
            // Its node stopped (or never opened): the store is ours to wait for.
            Forwarded::NotRunning | Forwarded::Declined => {}
        }
        let Some(mut node) = try_open(dir, creates(&cli.command), &mut pass)? else {
            wait.pause()?;
            continue;
        };
        let mut out = Out::default();
        let error = execute(&mut node, cli, &mut out)
            .err()
            .map(|e| format!("{e:#}"));
        return Ok(Done::Answered(Reply {
            out,
            error,
            not_run: false,
            session: None,
        }));
    }
}

/// Opens the node, or `None` while another process holds the store. The passphrase is
/// asked once, however many tries it takes.
fn try_open(
    dir: &Path,
    create: bool,
    pass: &mut Option<Zeroizing<String>>,
) -> Result<Option<Node>> {
    let opened = if Store::exists(dir) {
        let pass = match pass {
            Some(p) => p,
            None => pass.insert(passphrase::existing()?),
        };
        Node::open(dir, pass.as_bytes()).map_err(anyhow::Error::from)
    } else {
        open_node(dir, create)
    };
    match opened {
        Ok(node) => Ok(Some(node)),
        Err(e) if e.downcast_ref().is_some_and(is_locked) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What to answer for a command whose answer was cut off (`why`).
pub fn settle(dir: &Path, cli: &Cli, args: &[String], why: &str) -> Reply {
    if let Command::Post {
        thread,
        id: Some(id),
        ..
    } = &cli.command
    {
        return settle_post(dir, cli.json, thread, id, why);
    }
    let failed = |error: String| Reply {
        out: Out::default(),
        error: Some(error),
        not_run: false,
        session: None,
    };
    match change_check(&cli.command) {
        // A view changes nothing: it is simply asked again.
        None => match carry_out(dir, cli, args) {
            Ok(Done::Answered(reply)) => reply,
            Ok(Done::CutOff(again)) => failed(format!(
                "the node stopped answering twice ({why}; then {again})"
            )),
            Err(e) => failed(format!("the node stopped answering ({why}), then {e:#}")),
        },
        Some((change, check)) => failed(format!(
            "the node stopped answering ({why}): it is unknown whether `{change}` was \
             applied; check with {check} before trying again"
        )),
    }
}

/// Looks for the post's message in its thread, through the node if it answers again,
/// else on the store once it is free.
fn settle_post(dir: &Path, json: bool, thread: &str, id: &str, why: &str) -> Reply {
    let show = ["--json", "show", "--", thread].map(String::from);
    let found =
        Cli::try_parse_from(std::iter::once("huddle").chain(show.iter().map(|a| a.as_str())))
            .map_err(anyhow::Error::from)
            .and_then(|cli| carry_out(dir, &cli, &show))
            .and_then(|done| match done {
                Done::Answered(Reply { error: Some(e), .. }) => bail!("{e}"),
                Done::Answered(reply) => has_message(&reply.out.stdout, id),
                Done::CutOff(again) => bail!("it stopped answering again: {again}"),
            });
    let mut out = Out::default();
    let error = match found {
        Ok(true) => {
            out.stderr = format!(
                "note: the node stopped answering ({why}), but the post was stored (id {id})\n"
            );
            return match output::id(&mut out, id, json) {
                Ok(()) => Reply {
                    out,
                    error: None,
                    not_run: false,
                    session: None,
                },
                Err(e) => Reply {
                    out,
                    error: Some(format!("{e:#}")),
                    not_run: false,
                    session: None,
                },
            };
        }
        Ok(false) => format!(
            "the node stopped answering ({why}), and the post was NOT stored: post it again"
        ),
        Err(e) => format!(
            "the node stopped answering ({why}), and whether the post was stored could not \
             be checked ({e:#}): look for id {id} with `huddle show {thread}` before posting \
             again"
        ),
    };
    Reply {
        out,
        error: Some(error),
        not_run: false,
        session: None,
    }
}

/// Whether `show --json` output lists the message `id`.
fn has_message(shown: &str, id: &str) -> Result<bool> {
    let thread: serde_json::Value = serde_json::from_str(shown)?;
    let Some(messages) = thread["messages"].as_array() else {
        bail!("the thread's messages are not listed");
    };
    Ok(messages.iter().any(|m| m["id"] == id))
}

/// For a command that changes something: its name, and how to check whether it was
/// applied. `None` for views, which can simply be asked again.
fn change_check(command: &Command) -> Option<(&'static str, String)> {
    let show = |thread: &str| format!("`huddle show {thread}`");
    let check = match command {
        Command::Threads
        | Command::Tasks { .. }
        | Command::Show { .. }
        | Command::Members
        | Command::Devices
        | Command::Status
        | Command::Invites
        | Command::Policy { action: None }
        | Command::Audit(_)
        | Command::Device(DeviceCommand::Key)
        | Command::Bundle(BundleCommand::Export { .. }) => return None,
        Command::Init { .. } => ("init", "`huddle status`".into()),
        Command::Policy { action: Some(_) } => ("policy set", "`huddle policy`".into()),
        Command::Thread(ThreadCommand::New(_)) => ("thread new", "`huddle threads`".into()),
        Command::Post { thread, .. } => ("post", show(thread)),
        Command::Read { thread } => ("read", show(thread)),
        Command::Task(TaskCommand::Done { thread, .. }) => ("task done", show(thread)),
        Command::Member(MemberCommand::Add { .. }) => ("member add", "`huddle members`".into()),
        Command::Member(MemberCommand::Remove { .. }) => {
            ("member remove", "`huddle members`".into())
        }
        Command::Member(MemberCommand::Role { .. }) => ("member role", "`huddle members`".into()),
        Command::Device(DeviceCommand::Add { .. }) => ("device add", "`huddle devices`".into()),
        Command::Device(DeviceCommand::Revoke { .. }) => {
            ("device revoke", "`huddle devices`".into())
        }
        Command::Bundle(BundleCommand::Import { .. }) => (
            "bundle import",
            "`huddle status` (importing the same bundle again is harmless)".into(),
        ),
        Command::Invite(InviteArgs {
            action: Some(_), ..
        }) => ("invite cancel", "`huddle invites`".into()),
        Command::Invite(_) => ("invite", "`huddle invites`".into()),
        Command::Peer(_) => ("peer add", "nothing: adding it again is harmless".into()),
        _ => ("the command", "`huddle status`".into()),
    };
    Some(check)
}
