//! The control socket of a running `huddle serve`: a Unix socket in the data directory,
//! readable and writable by its owner only. Other `huddle` commands on the same data
//! directory send their arguments through it and print what the node answers, instead
//! of waiting for the store's lock. One JSON request and one JSON reply per connection.
//!
//! Every command needs proof ([`crate::host::guard`]): the passphrase, or the token of
//! a session `huddle unlock` opened (kept owner-only in the data directory, see
//! [`super::unlock`]). While `huddle serve` is locked only `status`, `unlock` and `lock`
//! are answered.
//!
//! The socket is bound before the node opens its store ([`super::claim`]): requests
//! queue until the node answers them. Requests still queued when the socket closes are
//! declined (`not_run`), and their commands carry on by themselves.

use anyhow::{Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use zeroize::{Zeroize, Zeroizing};

use super::output::Out;
use super::{Cli, Command, PeerCommand, unlock};
use crate::host::guard::{Proof, Refused};
use crate::host::{Live, Running};
use crate::node::actor::LockState;
use crate::store::identity_file;

pub const SOCKET: &str = "control.sock";
/// Requests larger than this are refused (arguments only; no bulk data).
const MAX_REQUEST: u64 = 1024 * 1024;
/// How long a request being declined may take to arrive.
const DECLINE_READ: Duration = Duration::from_secs(1);
/// The pause after a failed accept (out of file descriptors, say), so as not to spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// A request (a command line) must arrive within this once connected: a client that
/// connects and sends nothing would otherwise hold a node handle, and a stopping serve
/// waits for the last one.
const REQUEST_READ: Duration = Duration::from_secs(10);
/// At stop, requests being answered get this long to finish; then they are abandoned.
const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// Requests answered at once; more connections wait in the socket's queue.
const MAX_ANSWERS: usize = 16;

#[derive(Serialize, Deserialize, Default)]
struct Request {
    args: Vec<String>,
    /// The passphrase, as proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passphrase: Option<String>,
    /// A session token (hex), as proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl Drop for Request {
    fn drop(&mut self) {
        self.passphrase.zeroize();
        self.token.zeroize();
    }
}

impl Request {
    fn take_proof(&mut self) -> Proof {
        match (self.passphrase.take(), self.token.take()) {
            (Some(p), _) => Proof::Passphrase(Zeroizing::new(p)),
            (None, Some(t)) => Proof::Token(Zeroizing::new(t)),
            (None, None) => Proof::None,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Reply {
    pub out: Out,
    pub error: Option<String>,
    /// The node stopped before carrying the request out: nothing was done.
    #[serde(default)]
    pub not_run: bool,
    /// The token of the session an unlock opened (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl Reply {
    fn answer(out: Out, error: Option<String>) -> Reply {
        Reply {
            out,
            error,
            not_run: false,
            session: None,
        }
    }

    fn refused(why: impl std::fmt::Display) -> Reply {
        Reply::answer(Out::default(), Some(why.to_string()))
    }

    fn said(text: String) -> Reply {
        let out = Out {
            stdout: text,
            ..Out::default()
        };
        Reply::answer(out, None)
    }
}

/// What became of a forwarded command.
pub enum Forwarded {
    /// No node serves the data directory (no socket, or a stale one).
    NotRunning,
    /// The node stopped before carrying the command out.
    Declined,
    Answered(Reply),
    /// The connection broke, or the answer is not one: the command may or may not have
    /// been carried out. Says what happened.
    CutOff(String),
}

fn socket(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// Whether a node is serving this data directory.
pub fn running(dir: &Path) -> bool {
    UnixStream::connect(socket(dir)).is_ok()
}

/// Sends the command to the node serving `dir`, if one does, with the proof at hand
/// (`HUDDLE_PASSPHRASE`, else the unlock session), and reads its answer.
pub fn forward(dir: &Path, args: &[String]) -> Forwarded {
    forward_with(dir, args, unlock::proof(dir))
}

/// Sends the command with `proof`.
pub fn forward_with(dir: &Path, args: &[String], proof: Proof) -> Forwarded {
    let Ok(mut stream) = UnixStream::connect(socket(dir)) else {
        return Forwarded::NotRunning;
    };
    let mut request = Request::default();
    request.args = args.to_vec();
    match proof {
        Proof::Passphrase(p) => request.passphrase = Some(p.to_string()),
        Proof::Token(t) => request.token = Some(t.to_string()),
        Proof::None => {}
    }
    let sent = serde_json::to_vec(&request)
        .map(Zeroizing::new)
        .map_err(std::io::Error::from)
        .and_then(|r| stream.write_all(&r))
        .and_then(|_| stream.shutdown(std::net::Shutdown::Write));
    if let Err(e) = sent {
        return Forwarded::CutOff(format!("sending the command: {e}"));
    }
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        return Forwarded::CutOff(format!("reading its answer: {e}"));
    }
    if raw.is_empty() {
        return Forwarded::CutOff("it closed the connection without an answer".into());
    }
    match serde_json::from_slice::<Reply>(&raw) {
        Ok(reply) if reply.not_run => Forwarded::Declined,
        Ok(reply) => Forwarded::Answered(reply),
        Err(e) => Forwarded::CutOff(format!("its answer is malformed: {e}")),
    }
}

/// Binds the control socket of `dir` (a stale one, whose node is gone, is replaced).
/// Connections queue on it until [`serve`] answers them.
pub fn bind(dir: &Path) -> Result<UnixListener> {
    let path = socket(dir);
    if path.exists() {
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// Closes the control socket: removes it, so that no command connects any more, then
/// declines the requests already queued on it.
pub fn close(dir: &Path, listener: &UnixListener) {
    let _ = std::fs::remove_file(socket(dir));
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while let Ok((mut stream, _)) = listener.accept() {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(DECLINE_READ));
        let _ = stream.set_write_timeout(Some(DECLINE_READ));
        // The request is read first: closing a socket with unread data resets it.
        let _ = (&mut stream).take(MAX_REQUEST).read_to_end(&mut Vec::new());
        let reply = Reply {
            not_run: true,
            ..Reply::answer(Out::default(), None)
        };
        if let Ok(bytes) = serde_json::to_vec(&reply) {
            let _ = stream.write_all(&bytes);
        }
    }
}

/// Answers the commands sent to `listener` (bound by [`bind`]) for `live` until `stop`
/// fires or its sender is dropped; then closes the socket (see [`close`]).
pub fn serve(
    listener: UnixListener,
    live: Arc<Live>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let dir = live.dir().to_path_buf();
    Ok(tokio::spawn(async move {
        // Answers in progress belong to this task, so a stop ends them.
        let mut answers = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => break,
                Some(_) = answers.join_next(), if !answers.is_empty() => continue,
                accepted = listener.accept(), if answers.len() < MAX_ANSWERS => accepted,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            };
            let live = live.clone();
            answers.spawn(async move {
                if let Err(e) = answer(stream, live).await {
                    tracing::warn!("control request failed: {e:#}");
                }
            });
        }
        let finished = async { while answers.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(ANSWER_WAIT, finished).await;
        answers.abort_all();
        match listener.into_std() {
            Ok(listener) => {
                let closing = tokio::task::spawn_blocking(move || close(&dir, &listener));
                let _ = closing.await;
            }
            Err(_) => {
                let _ = std::fs::remove_file(socket(&dir));
            }
        }
    }))
}

async fn answer(mut stream: tokio::net::UnixStream, live: Arc<Live>) -> Result<()> {
    let mut raw = Zeroizing::new(Vec::new());
    let mut limited = (&mut stream).take(MAX_REQUEST);
    tokio::time::timeout(REQUEST_READ, limited.read_to_end(&mut raw))
        .await
        .context("no control request arrived in time")??;
    let mut request: Request = serde_json::from_slice(&raw).context("malformed control request")?;
    let proof = request.take_proof();
    let args = std::mem::take(&mut request.args);
    let reply = match Cli::try_parse_from(std::iter::once("huddle".to_string()).chain(args)) {
        Err(e) => Reply::refused(e),
        Ok(cli) => respond(&live, cli, proof).await,
    };
    stream.write_all(&serde_json::to_vec(&reply)?).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Checks `proof` while the node runs: the passphrase against the identity file (the
/// store's own key is the node's), or the session token.
async fn check(live: &Live, proof: &Proof) -> Result<(), Refused> {
    match proof {
        Proof::Passphrase(pass) => {
            let dir = live.dir().to_path_buf();
            live.guard
                .with_passphrase(pass, move |pass| {
                    identity_file::open(&dir, pass.as_bytes())?;
                    Ok(())
                })
                .await
        }
        Proof::Token(token) => live.guard.with_token(token).await,
        Proof::None => Err(Refused::Missing),
    }
}

const LOCKED: &str = "huddle serve is locked (idle, or `huddle lock`): it holds no keys and \
                      syncs blind (it stores and forwards envelopes it cannot read); run \
                      `huddle unlock`";

async fn respond(live: &Live, cli: Cli, proof: Proof) -> Reply {
    match &cli.command {
        Command::Lock => {
            let was_running = live.lock().await;
            return Reply::said(match (live.locks_itself(), was_running) {
                (true, true) => "locked: the node is closed and its keys are out of memory; \
                                 it syncs blind until `huddle unlock` opens it again\n"
                    .into(),
                (true, false) => "already locked; the session is ended\n".into(),
                (false, _) => "the session is ended (the desktop app locks itself)\n".into(),
            });
        }
        Command::Unlock => return unlock_node(live, &proof).await,
        _ => {}
    }
    let state = live.lock_state().await;
    let running = live.running().await;
    let (Some(running), LockState::Open) = (running.as_ref(), state) else {
        if matches!(cli.command, Command::Status) {
            return Reply::said(locked_status(state, cli.json));
        }
        return Reply::refused(LOCKED);
    };
    if let Err(refused) = check(live, &proof).await {
        return Reply::refused(refused);
    }
    live.touch();
    execute(running, cli).await
}

/// `huddle status` of a locked serve: what it may say without keys.
fn locked_status(state: LockState, json: bool) -> String {
    let (network, inbox) = match state {
        LockState::Blind { inbox } => ("blind", inbox),
        _ => ("stopped", 0),
    };
    if json {
        let status = serde_json::json!({ "locked": true, "network": network, "inbox": inbox });
        return format!("{status}\n");
    }
    match state {
        LockState::Blind { inbox } => {
            format!("{LOCKED}\n{inbox} envelope(s) received while locked wait for the unlock\n")
        }
        _ => "huddle serve is locked and not syncing; run `huddle unlock`\n".into(),
    }
}

/// `huddle unlock`: the passphrase (only) opens a session, and the node if it is locked.
async fn unlock_node(live: &Live, proof: &Proof) -> Reply {
    let Proof::Passphrase(pass) = proof else {
        return Reply::refused(
            "`huddle unlock` needs the passphrase (HUDDLE_PASSPHRASE or the terminal)",
        );
    };
    let locked = live.lock_state().await != LockState::Open;
    let opened = match locked {
        true => live.unlock(pass).await,
        false => check(live, proof).await,
    };
    if let Err(refused) = opened {
        return Reply::refused(refused);
    }
    live.touch();
    let token = live.guard.open_session();
    let mut reply = Reply::said(
        "unlocked: commands need no passphrase until `huddle lock`, or 15 idle minutes\n".into(),
    );
    reply.session = Some(token.to_string());
    reply
}

async fn execute(running: &Running, cli: Cli) -> Reply {
    let dial = match &cli.command {
        Command::Peer(PeerCommand::Add { addr }) => crate::net::addr::parse(addr).ok(),
        _ => None,
    };
    let called = running
        .node
        .call(move |n| {
            let mut out = Out::default();
            let error = super::execute(n, &cli, &mut out)
                .err()
                .map(|e| format!("{e:#}"));
            Reply::answer(out, error)
        })
        .await;
    let reply = match called {
        Ok(reply) => reply,
        Err(e) => return Reply::refused(format!("the node stopped: {e}")),
    };
    if let (Some(addr), None) = (dial, &reply.error) {
        running.net.dial(addr).await;
    }
    reply
}
