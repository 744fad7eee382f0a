//! `huddle serve`: runs this device as a node on the LAN until Ctrl-C or SIGTERM, with
//! the control socket open for other `huddle` commands. It claims the data directory
//! before its store ([`super::claim`]), so busy commands cannot keep it out. Shutdown is
//! clean: the socket is removed (requests still queued are declined), the network stops,
//! and the node's store is flushed and closed.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::sync::Arc;

use super::claim::Claim;
use super::{NetArgs, control, passphrase};
use crate::core::invite::clinic_tag;
use crate::net::{MdnsConfig, NetConfig, Network, addr};
use crate::node::actor;
use crate::store::{Store, StoreError};

/// Default TCP port, so that clinics can note one address per device.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/47733";

/// Network configuration from the command line plus remembered peers.
pub fn net_config(
    args: &NetArgs,
    tag: [u8; 8],
    remembered: &[String],
    advertise: bool,
) -> Result<NetConfig> {
    let listen = match &args.listen {
        Some(a) => vec![addr::parse(a).map_err(anyhow::Error::msg)?],
        None if advertise => vec![DEFAULT_LISTEN.parse()?],
        None => Vec::new(),
    };
    let mut peers = Vec::new();
    for p in args.peers.iter().chain(remembered) {
        peers.push(addr::parse(p).map_err(anyhow::Error::msg)?);
    }
    let mdns = (!args.no_mdns).then(|| MdnsConfig {
        tag,
        interface: args.mdns_interface.clone(),
        advertise,
    });
    Ok(NetConfig {
        listen,
        peers,
        mdns,
    })
}

pub fn run(dir: &Path, args: &NetArgs) -> Result<()> {
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
    for p in &args.peers {
        addr::parse(p).map_err(anyhow::Error::msg)?;
        node.add_peer(p)?;
    }
    let config = net_config(args, clinic_tag(&clinic), &node.peers()?, true)?;
    let secret = node.network_identity();
    runtime.block_on(async move {
        let (handle, outbox, thread) = actor::spawn(node);
        let net = Arc::new(Network::start(handle.clone(), outbox, secret, config).await?);
        // Invitations list every address the node listens on, as they are now: the first
        // ones before the control socket opens, then each change (interfaces come and go).
        net.listen_addrs().await;
        let mut updates = net.listen_updates();
        let listening = addr::for_invitation(&updates.borrow_and_update());
        handle
            .call(move |n| n.set_listen_addrs(&listening))
            .await??;
        let recorder = tokio::spawn(record_listen_addrs(handle.clone(), updates));
        let (listener, claimed) = claim.into_listener()?;
        let (stop_control, stopped) = tokio::sync::oneshot::channel();
        let control = control::serve(dir, listener, handle.clone(), net.clone(), stopped)?;
        tracing::info!("serving; Ctrl-C or SIGTERM stops");
        // An error here means the watcher is gone, which it never is before a stop.
        let _ = stop.wait_for(|stopped| *stopped).await;
        tracing::info!("stopping");
        // Requests already taken are answered; those still queued are declined.
        let _ = stop_control.send(());
        let _ = control.await;
        recorder.abort();
        // Stopped through the shared handle: a control request still in flight may hold
        // another, and the network's tasks must end now either way (they hold node
        // handles, and the node thread ends only when the last one is gone).
        net.stop().await;
        drop(net);
        let _ = recorder.await;
        drop(handle);
        // The node thread ends when the last handle is gone; it owns the store.
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok();
        tracing::info!("stopped; everything is on disk");
        drop(claimed);
        anyhow::Ok(())
    })
}

/// Records the node's listen addresses (for invitations) each time they change.
async fn record_listen_addrs(
    node: actor::NodeHandle,
    mut updates: tokio::sync::watch::Receiver<Vec<libp2p::Multiaddr>>,
) {
    while updates.changed().await.is_ok() {
        let listening = addr::for_invitation(&updates.borrow_and_update());
        match node.call(move |n| n.set_listen_addrs(&listening)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("listen addresses not recorded: {e}"),
            Err(_) => return,
        }
    }
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
