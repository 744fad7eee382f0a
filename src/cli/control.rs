//! The control socket of a running `huddle serve`: a Unix socket in the data directory,
//! readable and writable by its owner only. Other `huddle` commands on the same data
//! directory send their arguments through it and print what the node answers, instead
//! of waiting for the store's lock. One JSON request and one JSON reply per connection.
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

use super::output::Out;
use super::{Cli, Command, PeerCommand};
use crate::net::Network;
use crate::node::actor::NodeHandle;

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

#[derive(Serialize, Deserialize)]
struct Request {
    args: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub struct Reply {
    pub out: Out,
    pub error: Option<String>,
    /// The node stopped before carrying the request out: nothing was done.
    #[serde(default)]
    pub not_run: bool,
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

/// Sends the command to the node serving `dir`, if one does, and reads its answer.
pub fn forward(dir: &Path, args: &[String]) -> Forwarded {
    let Ok(mut stream) = UnixStream::connect(socket(dir)) else {
        return Forwarded::NotRunning;
    };
    let request = Request {
        args: args.to_vec(),
    };
    let sent = serde_json::to_vec(&request)
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
            out: Out::default(),
            error: None,
            not_run: true,
        };
        if let Ok(bytes) = serde_json::to_vec(&reply) {
            let _ = stream.write_all(&bytes);
        }
    }
}

/// Answers the commands sent to `listener` (bound by [`bind`]) until `stop` fires or
/// its sender is dropped; then closes the socket (see [`close`]).
pub fn serve(
    dir: &Path,
    listener: UnixListener,
    node: NodeHandle,
    net: Arc<Network>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let dir = dir.to_path_buf();
    Ok(tokio::spawn(async move {
        // Answers in progress belong to this task, so a stop ends them.
        let mut answers = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => break,
                Some(_) = answers.join_next(), if !answers.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            };
            let (node, net) = (node.clone(), net.clone());
            answers.spawn(async move {
                if let Err(e) = answer(stream, node, net).await {
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

async fn answer(
    mut stream: tokio::net::UnixStream,
    node: NodeHandle,
    net: Arc<Network>,
) -> Result<()> {
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(MAX_REQUEST);
    tokio::time::timeout(REQUEST_READ, limited.read_to_end(&mut raw))
        .await
        .context("no control request arrived in time")??;
    let request: Request = serde_json::from_slice(&raw).context("malformed control request")?;
    let reply = match Cli::try_parse_from(std::iter::once("huddle".to_string()).chain(request.args))
    {
        Err(e) => Reply {
            out: Out::default(),
            error: Some(e.to_string()),
            not_run: false,
        },
        Ok(cli) => {
            let dial = match &cli.command {
                Command::Peer(PeerCommand::Add { addr }) => crate::net::addr::parse(addr).ok(),
                _ => None,
            };
            let reply = node
                .call(move |n| {
                    let mut out = Out::default();
                    let error = super::execute(n, &cli, &mut out)
                        .err()
                        .map(|e| format!("{e:#}"));
                    Reply {
                        out,
                        error,
                        not_run: false,
                    }
                })
                .await?;
            if let (Some(addr), None) = (dial, &reply.error) {
                net.dial(addr).await;
            }
            reply
        }
    };
    stream.write_all(&serde_json::to_vec(&reply)?).await?;
    stream.shutdown().await?;
    Ok(())
}
