//! A running device node: the node thread, the network and the control socket, started
//! and stopped in one order. `huddle serve` and the desktop app both run one; `huddle
//! join` and the app's join screen enroll through [`join`].

mod join;

pub use join::{FIND_INVITER, Joined, enroll};

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::NetArgs;
use crate::cli::claim::{Claim, Claimed};
use crate::cli::control;
use crate::net::{MdnsConfig, NetConfig, Network, addr};
use crate::node::Node;
use crate::node::actor::{self, NodeHandle};

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

/// A node serving its data directory: syncing on the LAN and answering the control
/// socket. Stop it with [`Host::stop`]; everything is on disk once that returns.
pub struct Host {
    dir: PathBuf,
    node: NodeHandle,
    net: Arc<Network>,
    stop_control: tokio::sync::oneshot::Sender<()>,
    control: tokio::task::JoinHandle<()>,
    recorder: tokio::task::JoinHandle<()>,
    thread: std::thread::JoinHandle<Node>,
    claimed: Claimed,
}

impl Host {
    /// Starts the network for `node` (opened through `claim`) and then answers the
    /// control socket. Must run inside a tokio runtime.
    pub async fn start(dir: &Path, claim: Claim, node: Node, config: NetConfig) -> Result<Host> {
        let secret = node.network_identity();
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
        Ok(Host {
            dir: dir.to_path_buf(),
            node: handle,
            net,
            stop_control,
            control,
            recorder,
            thread,
            claimed,
        })
    }

    /// The node, to call into.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// The network, for peers and sync progress.
    pub fn network(&self) -> &Arc<Network> {
        &self.net
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops in order: the control socket (requests already taken are answered, those
    /// still queued are declined), the network, then the node thread, which flushes
    /// and closes the store.
    pub async fn stop(self) {
        let Host {
            node,
            net,
            stop_control,
            control,
            recorder,
            thread,
            claimed,
            ..
        } = self;
        let _ = stop_control.send(());
        let _ = control.await;
        recorder.abort();
        // Stopped through the shared handle: a control request still in flight may hold
        // another, and the network's tasks must end now either way (they hold node
        // handles, and the node thread ends only when the last one is gone).
        net.stop().await;
        drop(net);
        let _ = recorder.await;
        drop(node);
        // The node thread ends when the last handle is gone; it owns the store.
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok();
        drop(claimed);
    }
}

/// Records the node's listen addresses (for invitations) each time they change.
async fn record_listen_addrs(
    node: NodeHandle,
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
