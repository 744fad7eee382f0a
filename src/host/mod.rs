//! A running device node: the node thread, the network and the control socket, started
//! and stopped in one order. `huddle serve` and the desktop app both run one.
//!
//! - [`claim`]: a node claims its data directory (binds the control socket) before it
//!   waits for the store ([`wait`]), so plain commands cannot keep it out;
//! - [`control`]: the control socket's typed protocol, server and client; every
//!   request needs proof ([`guard`]);
//! - [`live`]: what the socket commands, and `huddle serve`'s idle lock;
//! - [`options`]: network options (listen address, peers, discovery);
//! - [`join`]: enrolling a new device by invitation (`huddle join`, the app's join).

pub mod claim;
pub mod control;
pub mod guard;
mod join;
pub mod live;
mod options;
pub mod wait;

pub use join::{FIND_INVITER, Joined, enroll};
pub use live::{IdleLock, Live, Running};
pub use options::{DEFAULT_LISTEN, NetOptions, net_config};

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::net::{NetConfig, Network, addr};
use crate::node::Node;
use crate::node::actor::NodeHandle;
use claim::{Claim, Claimed};

/// A node serving its data directory for the desktop app: syncing on the LAN and
/// answering the control socket (with proof). The app locks itself by stopping it. Stop
/// it with [`Host::stop`]; everything is on disk once that returns.
pub struct Host {
    node: NodeHandle,
    net: Arc<Network>,
    socket: Socket,
}

/// The control socket's task, the state it commands, and the claim on the directory.
struct Socket {
    dir: PathBuf,
    live: Arc<Live>,
    stop_control: tokio::sync::oneshot::Sender<()>,
    control: tokio::task::JoinHandle<()>,
    idle_watch: Option<tokio::task::JoinHandle<()>>,
    claimed: Claimed,
}

impl Socket {
    fn open(dir: &Path, claim: Claim, live: Arc<Live>) -> Result<Socket> {
        let (listener, claimed) = claim.into_listener()?;
        let (stop_control, stopped) = tokio::sync::oneshot::channel();
        let control = control::serve(listener, live.clone(), stopped)?;
        let idle_watch = live
            .locks_itself()
            .then(|| tokio::spawn(live.clone().watch_idle()));
        Ok(Socket {
            dir: dir.to_path_buf(),
            live,
            stop_control,
            control,
            idle_watch,
            claimed,
        })
    }

    /// Stops in order: the idle watch, the control socket (requests already taken are
    /// answered, those still queued are declined), the network, then the node thread,
    /// which flushes and closes the store.
    async fn stop(self) {
        if let Some(watch) = self.idle_watch {
            watch.abort();
            let _ = watch.await;
        }
        let _ = self.stop_control.send(());
        let _ = self.control.await;
        if let Some(running) = self.live.take().await {
            running.stop().await;
        }
        drop(self.claimed);
    }
}

impl Host {
    /// Starts the network for `node` (opened through `claim`) and then answers the
    /// control socket. Must run inside a tokio runtime.
    pub async fn start(dir: &Path, claim: Claim, node: Node, config: NetConfig) -> Result<Host> {
        let running = Running::start(node, config).await?;
        let (node, net) = (running.node.clone(), running.net.clone());
        let live = Arc::new(Live::new(dir, running, None, Duration::MAX));
        let socket = Socket::open(dir, claim, live)?;
        Ok(Host { node, net, socket })
    }

    /// The node, to call into.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// The network, for peers and sync progress.
    pub fn network(&self) -> &Arc<Network> {
        &self.net
    }

    /// Locks the node (the lock button, the idle lock): every unlock session of the
    /// control socket ends, the lock is audited, and the node closes while its network
    /// goes on blind. Returns whether it was open.
    pub async fn lock(&self) -> bool {
        self.socket.live.lock_node().await
    }

    pub fn dir(&self) -> &Path {
        &self.socket.dir
    }

    /// Stops the control socket, the network and the node thread (see [`Socket`]).
    pub async fn stop(self) {
        let Host { node, net, socket } = self;
        // The node thread ends when the last handle is gone: these are let go first.
        drop((node, net));
        socket.stop().await;
    }
}

/// `huddle serve`'s node: like [`Host`], but it locks after its idle time and is
/// unlocked again through the control socket (so it hands out no node handle).
pub struct Serving {
    socket: Socket,
}

impl Serving {
    /// Starts the network for `node` (opened through `claim`), then answers the control
    /// socket; locks after `idle_lock`'s idle time for the node's clinic policy.
    pub async fn start(
        dir: &Path,
        claim: Claim,
        node: Node,
        config: NetConfig,
        idle_lock: IdleLock,
    ) -> Result<Serving> {
        let idle = idle_lock.effective(node.policy()?.safeguards.idle_lock_minutes);
        tracing::info!("locks after {}s without a command", idle.as_secs());
        let running = Running::start(node, config).await?;
        let live = Arc::new(Live::new(dir, running, Some(idle_lock), idle));
        Ok(Serving {
            socket: Socket::open(dir, claim, live)?,
        })
    }

    /// Stops the control socket, the network and the node thread (if unlocked).
    pub async fn stop(self) {
        self.socket.stop().await;
    }
}

/// Records the node's listen addresses (for invitations) each time they change.
pub(crate) async fn record_listen_addrs(
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
