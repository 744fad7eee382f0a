//! The control socket of a running `huddle serve`: a Unix socket in the data directory,
//! readable and writable by its owner only. Other `huddle` commands on the same data
//! directory send their arguments through it and print what the node answers, instead
//! of failing on the store's lock. One JSON request and one JSON reply per connection.

use anyhow::{Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::output::Out;
use super::{Cli, Command, PeerCommand};
use crate::net::Network;
use crate::node::actor::NodeHandle;

pub const SOCKET: &str = "control.sock";
/// Requests larger than this are refused (arguments only; no bulk data).
const MAX_REQUEST: u64 = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Request {
    args: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub struct Reply {
    pub out: Out,
    pub error: Option<String>,
}

fn socket(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// Whether a node is serving this data directory.
pub fn running(dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket(dir)).is_ok()
}

/// Sends the command to a running node; `None` if no node is serving `dir`.
pub fn forward(dir: &Path, args: &[String]) -> Result<Option<Reply>> {
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket(dir)) else {
        return Ok(None);
    };
    let request = serde_json::to_vec(&Request {
        args: args.to_vec(),
    })?;
    stream.write_all(&request)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .context("reading the running node's answer")?;
    Ok(Some(
        serde_json::from_slice(&reply).context("the running node's answer is malformed")?,
    ))
}

/// Serves the control socket until the returned task is aborted.
pub fn serve(
    dir: &Path,
    node: NodeHandle,
    net: Arc<Network>,
) -> Result<tokio::task::JoinHandle<()>> {
    let path = socket(dir);
    if path.exists() {
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (node, net) = (node.clone(), net.clone());
            tokio::spawn(async move {
                if let Err(e) = answer(stream, node, net).await {
                    tracing::warn!("control request failed: {e:#}");
                }
            });
        }
    }))
}

async fn answer(
    mut stream: tokio::net::UnixStream,
    node: NodeHandle,
    net: Arc<Network>,
) -> Result<()> {
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_REQUEST)
        .read_to_end(&mut raw)
        .await?;
    let request: Request = serde_json::from_slice(&raw).context("malformed control request")?;
    let reply = match Cli::try_parse_from(std::iter::once("huddle".to_string()).chain(request.args))
    {
        Err(e) => Reply {
            out: Out::default(),
            error: Some(e.to_string()),
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
                    Reply { out, error }
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
