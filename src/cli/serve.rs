//! `huddle serve`: runs this device as a node on the LAN until Ctrl-C or SIGTERM, with
//! the control socket open for other `huddle` commands. Shutdown is clean: the socket is
//! removed, the network stops, and the node's store is flushed and closed.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::sync::Arc;

use super::{NetArgs, control, open_node};
use crate::core::invite::clinic_tag;
use crate::net::{MdnsConfig, NetConfig, Network, addr};
use crate::node::actor;

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
    let mut node = open_node(dir, false)?;
    let Some((clinic, _)) = node.summary() else {
        bail!("this device has no clinic yet: run `huddle init`, or `huddle join INVITE`");
    };
    for p in &args.peers {
        addr::parse(p).map_err(anyhow::Error::msg)?;
        node.add_peer(p)?;
    }
    let config = net_config(args, clinic_tag(&clinic), &node.peers()?, true)?;
    let secret = node.network_identity();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
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
        let control = control::serve(dir, handle.clone(), net.clone())?;
        tracing::info!("serving; Ctrl-C or SIGTERM stops");
        wait_for_stop().await?;
        tracing::info!("stopping");
        control.abort();
        recorder.abort();
        let _ = std::fs::remove_file(dir.join(control::SOCKET));
        // Stopped through the shared handle: a control request still in flight may hold
        // another, and the network's tasks must end now either way (they hold node
        // handles, and the node thread ends only when the last one is gone).
        net.stop().await;
        drop(net);
        let _ = control.await;
        let _ = recorder.await;
        drop(handle);
        // The node thread ends when the last handle is gone; it owns the store.
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok();
        tracing::info!("stopped; everything is on disk");
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

async fn wait_for_stop() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("Ctrl-C handler")?,
        _ = term.recv() => {}
    }
    Ok(())
}
