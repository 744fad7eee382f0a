//! `huddle serve`: runs this device as a node on the LAN until Ctrl-C or SIGTERM, with
//! the control socket open for other `huddle` commands. It claims the data directory
//! before its store ([`huddle::host::claim`]), so busy commands cannot keep it out. Shutdown is
//! clean: the socket is removed (requests still queued are declined), the network stops,
//! and the node's store is flushed and closed. It locks after its idle time (the clinic
//! policy's, or a shorter `--idle-lock`): see [`huddle::host::live`].

use anyhow::{Context, Result, bail};
use std::path::Path;

use super::args::ServeArgs;
use super::passphrase;
use huddle::core::invite::clinic_tag;
use huddle::host::claim::Claim;
use huddle::host::{IdleLock, Serving, control, net_config};
use huddle::net::addr;
use huddle::store::{Store, StoreError};

pub fn run(dir: &Path, serve_args: &ServeArgs) -> Result<()> {
    let args = &serve_args.net;
    if control::running(dir) {
        bail!("a huddle serve is already running on {}", dir.display());
    }
    if !Store::exists(dir) {
        return Err(StoreError::NotFound(dir.to_path_buf()).into());
    }
    // Asked before the socket opens: no command queues behind a passphrase prompt.
    let passphrase = passphrase::existing()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // From here on, Ctrl-C or SIGTERM stops cleanly, even while waiting for the store.
    let mut stop = runtime.block_on(watch_stop())?;
    let claim = Claim::take(dir)?;
    let stopping = stop.clone();
    let Some(mut node) = claim.open_node(passphrase.as_bytes(), || *stopping.borrow())? else {
        tracing::info!("stopped before the store was free");
        return Ok(());
    };
    drop(passphrase);
    let Some((clinic, _)) = node.summary() else {
        bail!("this device has no clinic yet: run `huddle init`, or `huddle join INVITE`");
    };
    node.audit_unlock();
    for p in &args.peers {
        addr::parse(p).map_err(anyhow::Error::msg)?;
        node.add_peer(p)?;
    }
    let config = net_config(&args.options(), clinic_tag(&clinic), &node.peers()?, true)?;
    runtime.block_on(async move {
        let idle_lock = IdleLock {
            requested_minutes: serve_args.idle_lock,
            test_seconds: serve_args.idle_lock_seconds,
        };
        let host = Serving::start(dir, claim, node, config, idle_lock).await?;
        tracing::info!("serving; Ctrl-C or SIGTERM stops");
        // An error here means the watcher is gone, which it never is before a stop.
        let _ = stop.wait_for(|stopped| *stopped).await;
        tracing::info!("stopping");
        host.stop().await;
        tracing::info!("stopped; everything is on disk");
        anyhow::Ok(())
    })
}

/// Watches for Ctrl-C and SIGTERM (both handled from the moment this returns): the
/// receiver turns `true` at the first.
async fn watch_stop() -> Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("Ctrl-C handler")?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        // Receivers keep reading `true` after the sender is gone.
        let _ = tx.send(true);
    });
    Ok(rx)
}
