//! What a control socket commands: the running node (node thread and network) while it
//! is unlocked, nothing while it is locked. `huddle serve` locks after an idle time (no
//! command through the socket): the network stops and the node is dropped, so its keys
//! and decrypted documents leave memory; an unlock with the passphrase opens it again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use zeroize::Zeroizing;

use super::guard::{Guard, Refused};
use super::{net_config, record_listen_addrs};
use crate::cli::NetArgs;
use crate::core::invite::clinic_tag;
use crate::net::{NetConfig, Network, addr};
use crate::node::Node;
use crate::node::actor::{self, NodeHandle};

/// The node thread and the network of an open node.
pub struct Running {
    pub node: NodeHandle,
    pub net: Arc<Network>,
    recorder: tokio::task::JoinHandle<()>,
    thread: std::thread::JoinHandle<Node>,
}

impl Running {
    /// Starts the node thread and the network; the listen addresses are recorded once
    /// known, and at each change.
    pub async fn start(node: Node, config: NetConfig) -> Result<Running> {
        let secret = node.network_identity();
        let (handle, outbox, thread) = actor::spawn(node);
        let net = Arc::new(Network::start(handle.clone(), outbox, secret, config).await?);
        net.listen_addrs().await;
        let mut updates = net.listen_updates();
        let listening = addr::for_invitation(&updates.borrow_and_update());
        handle
            .call(move |n| n.set_listen_addrs(&listening))
            .await??;
        let recorder = tokio::spawn(record_listen_addrs(handle.clone(), updates));
        Ok(Running {
            node: handle,
            net,
            recorder,
            thread,
        })
    }

    /// Stops the network, then the node thread, which flushes and closes the store and
    /// drops the node (its keys zeroize themselves).
    pub async fn stop(self) {
        let Running {
            node,
            net,
            recorder,
            thread,
        } = self;
        recorder.abort();
        // Stopped through the shared handle: the network's tasks hold node handles, and
        // the node thread ends only when the last one is gone.
        net.stop().await;
        drop(net);
        let _ = recorder.await;
        drop(node);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok();
    }
}

/// How `huddle serve` locks by itself: after `idle` without a command.
#[derive(Clone, Debug)]
pub struct IdleLock {
    /// What the user asked for (`serve --idle-lock MINUTES`): used when shorter than
    /// the clinic policy's, else capped at the policy's.
    pub requested_minutes: Option<u64>,
    /// Test only (`serve --idle-lock-seconds`, hidden): overrides both.
    pub test_seconds: Option<u64>,
    /// The network options to start again with at unlock.
    pub net: NetArgs,
}

impl IdleLock {
    /// The idle time for a node whose clinic policy says `policy_minutes`.
    pub fn effective(&self, policy_minutes: u32) -> Duration {
        if let Some(s) = self.test_seconds {
            return Duration::from_secs(s.max(1));
        }
        let policy = u64::from(policy_minutes.max(1));
        let minutes = match self.requested_minutes {
            Some(m) if m > policy => {
                tracing::warn!(
                    "--idle-lock {m} is longer than the clinic policy's {policy} minutes: \
                     capped at {policy}"
                );
                policy
            }
            Some(m) => m.max(1),
            None => policy,
        };
        Duration::from_secs(minutes * 60)
    }
}

/// The shared state of a control socket: the node when unlocked, the proof checks, the
/// time of the last command, and (for `serve`) how to lock and unlock.
pub struct Live {
    dir: PathBuf,
    running: tokio::sync::RwLock<Option<Running>>,
    pub guard: Guard,
    idle_lock: Option<IdleLock>,
    idle: std::sync::Mutex<Duration>,
    last_use: std::sync::Mutex<Instant>,
}

impl Live {
    pub fn new(dir: &Path, running: Running, idle_lock: Option<IdleLock>, idle: Duration) -> Live {
        Live {
            dir: dir.to_path_buf(),
            running: tokio::sync::RwLock::new(Some(running)),
            guard: Guard::default(),
            idle_lock,
            idle: std::sync::Mutex::new(idle),
            last_use: std::sync::Mutex::new(Instant::now()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this node locks (serve) rather than its owner locking it (the app).
    pub fn locks_itself(&self) -> bool {
        self.idle_lock.is_some()
    }

    /// The running node, read-locked: a lock waits until the caller lets go.
    pub async fn running(&self) -> tokio::sync::RwLockReadGuard<'_, Option<Running>> {
        self.running.read().await
    }

    /// Records a command served: the idle time starts again.
    pub fn touch(&self) {
        *self.last_use.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_use
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    fn idle_limit(&self) -> Duration {
        *self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the session and, for serve, stops the network and drops the node. Waits for
    /// the commands in progress. Returns whether the node was running.
    pub async fn lock(&self) -> bool {
        self.guard.end_session();
        if !self.locks_itself() {
            return false;
        }
        let taken = self.running.write().await.take();
        match taken {
            Some(running) => {
                running.stop().await;
                tracing::info!("locked: the node is closed and its keys dropped");
                true
            }
            None => false,
        }
    }

    /// Opens the node again with the passphrase (checked by the guard, with its delays)
    /// and restarts the network. Nothing to do if it runs.
    pub async fn unlock(&self, passphrase: &Zeroizing<String>) -> Result<(), Refused> {
        let Some(idle_lock) = self.idle_lock.clone() else {
            return Ok(());
        };
        let mut running = self.running.write().await;
        if running.is_some() {
            return Ok(());
        }
        let dir = self.dir.clone();
        let (node, config, idle) = self
            .guard
            .with_passphrase(passphrase, move |pass| {
                let node = Node::open(&dir, pass.as_bytes())?;
                let (clinic, _) = node.summary().context("this device has no clinic")?;
                let config = net_config(&idle_lock.net, clinic_tag(&clinic), &node.peers()?, true)?;
                let idle = idle_lock.effective(node.policy()?.safeguards.idle_lock_minutes);
                Ok((node, config, idle))
            })
            .await?;
        let started = Running::start(node, config)
            .await
            .map_err(|e| Refused::Unchecked(format!("restarting the node: {e:#}")))?;
        *running = Some(started);
        *self.idle.lock().unwrap_or_else(|p| p.into_inner()) = idle;
        self.touch();
        tracing::info!("unlocked");
        Ok(())
    }

    /// Locks once the node has been idle for its idle time; runs until aborted.
    pub async fn watch_idle(self: Arc<Live>) {
        loop {
            let limit = self.idle_limit();
            let idle = self.idle_for();
            if idle >= limit {
                if self.running.read().await.is_some() {
                    tracing::info!("idle for {}s: locking", idle.as_secs());
                    self.lock().await;
                }
                self.touch();
                continue;
            }
            let tick = (limit - idle).min(Duration::from_secs(1));
            tokio::time::sleep(tick.max(Duration::from_millis(20))).await;
        }
    }

    /// Takes the running node out, for a final stop.
    pub async fn take(&self) -> Option<Running> {
        self.running.write().await.take()
    }
}
