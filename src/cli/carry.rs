//! Carrying out one operation on a data directory: through a running node (`huddle
//! serve` or the app) if there is one, else on the store itself, waiting while another
//! command holds the store (and forwarding instead if a node starts meanwhile). An
//! answer cut off mid-way is settled: a post says whether it was stored, a read is
//! asked again, any other change says plainly that it is unknown whether it was
//! applied, and how to check.

use std::path::Path;

use anyhow::{Result, bail};
use zeroize::Zeroizing;

use super::{open_node, passphrase, unlock};
use huddle::host::control::protocol::{Answer, Command};
use huddle::host::control::{self, Forwarded};
use huddle::host::wait::{StoreWait, is_locked};
use huddle::node::{Node, Op, OpResult};
use huddle::store::Store;

/// The end of a command: an answer, or an answer cut off (saying what happened).
pub enum Done {
    Answered(Answer),
    CutOff(String),
}

/// Carries out `op`: forwarded while a node serves `dir`, else on the store as soon as
/// no other process holds it (at most [`huddle::host::wait::lock_wait`]).
pub fn carry_out(dir: &Path, op: &Op, create: bool) -> Result<Done> {
    let mut wait = StoreWait::new(dir);
    let mut pass = None;
    loop {
        match control::forward(dir, Command::Run(op.clone()), unlock::proof(dir)) {
            Forwarded::Answered(reply) => return Ok(Done::Answered(reply.answer.clone())),
            Forwarded::CutOff(why) => return Ok(Done::CutOff(why)),
            // Its node stopped (or never opened): the store is ours to wait for.
            Forwarded::NotRunning | Forwarded::Declined => {}
        }
        let Some(mut node) = try_open(dir, create, &mut pass)? else {
            wait.pause()?;
            continue;
        };
        return Ok(Done::Answered(match node.execute(op.clone()) {
            Ok(result) => Answer::Done(result),
            Err(e) => Answer::Failed(format!("{:#}", anyhow::Error::from(e))),
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
        // A quarantined store still answers `status` and `audit verify`.
        Node::open_or_quarantine(dir, pass.as_bytes()).map_err(anyhow::Error::from)
    } else {
        open_node(dir, create)
    };
    match opened {
        Ok(node) => Ok(Some(node)),
        Err(e) if e.downcast_ref().is_some_and(is_locked) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An answer settled after a cut-off, and a note for stderr.
pub struct Settled {
    pub answer: Answer,
    pub note: Option<String>,
}

/// What to answer for `op` whose answer was cut off (`why`).
pub fn settle(dir: &Path, op: &Op, why: &str) -> Settled {
    if let Op::Post {
        thread,
        id: Some(id),
        ..
    } = op
    {
        let id = hex::encode(id);
        let answer = settle_post(dir, thread, &id, why);
        let note = matches!(answer, Answer::Done(_)).then(|| {
            format!("note: the node stopped answering ({why}), but the post was stored (id {id})")
        });
        return Settled { answer, note };
    }
    let answer = settle_change(dir, op, why);
    Settled { answer, note: None }
}

fn settle_change(dir: &Path, op: &Op, why: &str) -> Answer {
    if op.is_read() {
        // A read changes nothing: it is simply asked again.
        return match carry_out(dir, op, false) {
            Ok(Done::Answered(answer)) => answer,
            Ok(Done::CutOff(again)) => Answer::Failed(format!(
                "the node stopped answering twice ({why}; then {again})"
            )),
            Err(e) => Answer::Failed(format!("the node stopped answering ({why}), then {e:#}")),
        };
    }
    let (change, check) = change_check(op);
    Answer::Failed(format!(
        "the node stopped answering ({why}): it is unknown whether `{change}` was applied; \
         check with {check} before trying again"
    ))
}

/// Looks for the post's message in its thread, through the node if it answers again,
/// else on the store once it is free.
fn settle_post(dir: &Path, thread: &str, id: &str, why: &str) -> Answer {
    let find = Op::FindMessage {
        thread: thread.to_string(),
        id: id.to_string(),
    };
    let found = carry_out(dir, &find, false).and_then(|done| match done {
        Done::Answered(Answer::Done(OpResult::Found(found))) => Ok(found),
        Done::Answered(Answer::Failed(e)) => bail!("{e}"),
        Done::Answered(other) => bail!("it answered {other:?}"),
        Done::CutOff(again) => bail!("it stopped answering again: {again}"),
    });
    match found {
        Ok(true) => Answer::Done(OpResult::Message(id.to_string())),
        Ok(false) => Answer::Failed(format!(
            "the node stopped answering ({why}), and the post was NOT stored: post it again"
        )),
        Err(e) => Answer::Failed(format!(
            "the node stopped answering ({why}), and whether the post was stored could not \
             be checked ({e:#}): look for id {id} with `huddle show {thread}` before posting \
             again"
        )),
    }
}

/// For an operation that changes something: its name, and how to check whether it was
/// applied.
fn change_check(op: &Op) -> (&'static str, String) {
    let show = |thread: &str| format!("`huddle show {thread}`");
    match op {
        Op::Init { .. } => ("init", "`huddle status`".into()),
        Op::SetSafeguards(_) => ("policy set", "`huddle policy`".into()),
        Op::NewThread { .. } => ("thread new", "`huddle threads`".into()),
        Op::Post { thread, .. } => ("post", show(thread)),
        Op::Read { thread } => ("read", show(thread)),
        Op::CompleteTask { thread, .. } => ("task done", show(thread)),
        Op::Edit { thread, .. } => ("edit", show(thread)),
        Op::Retract { thread, .. } => ("retract", show(thread)),
        Op::Restrict { thread, .. } => ("thread restrict", show(thread)),
        Op::Unrestrict { thread } => ("thread unrestrict", show(thread)),
        Op::OpenEmergency { .. } => ("emergency open", "`huddle emergency list`".into()),
        Op::AddMember { .. } => ("member add", "`huddle members`".into()),
        Op::RemoveMember { .. } => ("member remove", "`huddle members`".into()),
        Op::ChangeRole { .. } => ("member role", "`huddle members`".into()),
        Op::AddDevice { .. } => ("device add", "`huddle devices`".into()),
        Op::RevokeDevice { .. } | Op::RevokeMemberDevices { .. } => {
            ("device revoke", "`huddle devices`".into())
        }
        Op::ImportBundle { .. } => (
            "bundle import",
            "`huddle status` (importing the same bundle again is harmless)".into(),
        ),
        Op::CancelInvite { .. } => ("invite cancel", "`huddle invites`".into()),
        Op::Invite { .. } => ("invite", "`huddle invites`".into()),
        Op::InviteDevice { .. } => (
            "device invite",
            "`huddle invites` and `huddle devices`".into(),
        ),
        Op::RestoreMember { .. } => ("member restore", "`huddle members`".into()),
        Op::NewDirect { .. } => ("direct new", "`huddle threads`".into()),
        Op::AddPeer { .. } => ("peer add", "nothing: adding it again is harmless".into()),
        _ => ("the command", "`huddle status`".into()),
    }
}
