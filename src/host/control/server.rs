//! Answering the control socket: every request needs proof ([`crate::host::guard`]):
//! the passphrase, or the token of a session `huddle unlock` opened. While the node is
//! locked only `Op::Status`, `unlock` and `lock` are answered. Each request is read
//! within a time limit and a size bound, decoded once into a typed
//! [`Command`](super::protocol::Command), and carried out by the node thread
//! ([`crate::node::Node::execute`]); the answer is data, rendered by the client.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::protocol::{
    Answer, Command, LockedNetwork, MAX_REQUEST_BYTES, Reply, decode_request, encode_reply,
};
use super::socket_path;
use crate::host::guard::{Proof, Refused};
use crate::host::{Live, Running};
use crate::node::actor::LockState;
use crate::node::{Op, OpResult};
use crate::store::identity_file;

/// How long a request being declined may take to arrive.
const DECLINE_READ: Duration = Duration::from_secs(1);
/// The pause after a failed accept (out of file descriptors, say), so as not to spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// A request must arrive within this once connected: a client that connects and sends
/// nothing would otherwise hold a node handle, and a stopping node waits for the last
/// one.
const REQUEST_READ: Duration = Duration::from_secs(10);
/// At stop, requests being answered get this long to finish; then they are abandoned.
const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// Requests answered at once; more connections wait in the socket's queue.
const MAX_ANSWERS: usize = 16;

/// Binds the control socket of `dir` (a stale one, whose node is gone, is replaced).
/// Connections queue on it until [`serve`] answers them.
pub fn bind(dir: &Path) -> Result<UnixListener> {
    let path = socket_path(dir);
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
    let _ = std::fs::remove_file(socket_path(dir));
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while let Ok((mut stream, _)) = listener.accept() {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(DECLINE_READ));
        let _ = stream.set_write_timeout(Some(DECLINE_READ));
        // The request is read first: closing a socket with unread data resets it.
        let limit = MAX_REQUEST_BYTES as u64;
        let _ = (&mut stream).take(limit).read_to_end(&mut Vec::new());
        let _ = stream.write_all(&encode_reply(&Reply::new(Answer::NotRun)));
    }
}

/// Answers the requests sent to `listener` (bound by [`bind`]) for `live` until `stop`
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
                let _ = std::fs::remove_file(socket_path(&dir));
            }
        }
    }))
}

async fn answer(mut stream: tokio::net::UnixStream, live: Arc<Live>) -> Result<()> {
    let mut raw = Zeroizing::new(Vec::new());
    let mut limited = (&mut stream).take(MAX_REQUEST_BYTES as u64 + 1);
    tokio::time::timeout(REQUEST_READ, limited.read_to_end(&mut raw))
        .await
        .context("no control request arrived in time")??;
    let reply = match decode_request(&raw) {
        Err(e) => Reply::failed(e),
        Ok(mut request) => {
            let proof = request.proof.take();
            Reply::new(respond(&live, request.command.clone(), proof).await)
        }
    };
    stream.write_all(&encode_reply(&reply)).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Checks `proof` while the node runs: the passphrase against the identity file (with
/// the guard's delays and the rate limit every unlock has; a wrong one is recorded in
/// the unlock-failures file and audited at the next unlock, as serve's are), or the
/// session token.
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

fn locked_words(serve: bool) -> &'static str {
    if serve {
        "huddle serve is locked (idle, or `huddle lock`): it holds no keys and syncs blind \
         (it stores and forwards envelopes it cannot read); run `huddle unlock`"
    } else {
        "the desktop app is locked: unlock it in its window, then `huddle unlock` opens a \
         session for commands"
    }
}

async fn respond(live: &Live, command: Command, proof: Proof) -> Answer {
    let op = match command {
        Command::Lock => {
            let closed = live.lock().await;
            return Answer::LockedNow {
                closed,
                serve: live.locks_itself(),
            };
        }
        Command::Unlock => return unlock(live, &proof).await,
        Command::Run(op) => op,
    };
    let state = live.lock_state().await;
    let running = live.running().await;
    let (Some(running), LockState::Open) = (running.as_ref(), state) else {
        if op == Op::Status {
            let (network, inbox) = match state {
                LockState::Blind { inbox } => (LockedNetwork::Blind, inbox),
                _ => (LockedNetwork::Stopped, 0),
            };
            return Answer::Locked {
                network,
                inbox,
                serve: live.locks_itself(),
            };
        }
        return Answer::Failed(locked_words(live.locks_itself()).into());
    };
    if let Err(refused) = check(live, &proof).await {
        return Answer::Failed(refused.to_string());
    }
    live.touch();
    execute(running, op).await
}

/// `unlock`: the passphrase (only) opens a session. A locked serve opens its node with
/// it (with the rate limit and audit of every unlock); a locked app is unlocked in its
/// own window only, so nothing is checked and no session opens.
async fn unlock(live: &Live, proof: &Proof) -> Answer {
    let Proof::Passphrase(pass) = proof else {
        return Answer::Failed(
            "`huddle unlock` needs the passphrase (HUDDLE_PASSPHRASE or the terminal)".into(),
        );
    };
    let opened = match live.lock_state().await {
        LockState::Open => check(live, proof).await,
        _ if live.locks_itself() => live.unlock(pass).await,
        _ => return Answer::Failed(locked_words(false).into()),
    };
    if let Err(refused) = opened {
        return Answer::Failed(refused.to_string());
    }
    live.touch();
    Answer::Unlocked {
        session: live.guard.open_session().to_string(),
    }
}

async fn execute(running: &Running, op: Op) -> Answer {
    let dial = match &op {
        Op::AddPeer { addr } => crate::net::addr::parse(addr).ok(),
        _ => None,
    };
    let called = running.node.call(move |n| n.execute(op)).await;
    match called {
        Ok(Ok(OpResult::Devices(mut devices))) => {
            let connected: Vec<String> = running
                .net
                .peers()
                .borrow()
                .iter()
                .map(|p| p.device.to_hex())
                .collect();
            crate::node::mark_online(&mut devices, &connected);
            Answer::Done(OpResult::Devices(devices))
        }
        Ok(Ok(result)) => {
            if let Some(addr) = dial {
                running.net.dial(addr).await;
            }
            Answer::Done(result)
        }
        Ok(Err(e)) => Answer::Failed(format!("{:#}", anyhow::Error::from(e))),
        Err(e) => Answer::Failed(format!("the node stopped: {e}")),
    }
}
