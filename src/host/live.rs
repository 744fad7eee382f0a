//! What a control socket commands: the running node (node thread and network) while it
//! is unlocked, nothing while it is locked. `huddle serve` locks after an idle time (no
//! command through the socket): the node is closed, so its keys and decrypted documents
//! leave memory, and its network keeps syncing blind ([`crate::node::blind`]); an
//! unlock with the passphrase opens it again and takes in what arrived meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use zeroize::Zeroizing;

use super::guard::{Guard, Refused};
use super::record_listen_addrs;
use crate::net::{NetConfig, Network, addr};
use crate::node::Node;
use crate::node::actor::{self, Held, LockState, NodeHandle};

/// The node thread and the network of an open node.
pub struct Running {
    pub node: NodeHandle,
    pub net: Arc<Network>,
    recorder: tokio::task::JoinHandle<()>,
    thread: std::thread::JoinHandle<Held>,
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

    /// `huddle lock`: ends the session (audited while the node is open) and, for serve,
    /// closes the node (its network goes on blind). The app's node is locked by its own
    /// window ([`Live::lock_node`]). Waits for the commands in progress. Returns whether
    /// a node was closed.
    pub async fn lock(&self) -> bool {
        self.guard.end_session();
        if !self.locks_itself() {
            if let Some(running) = self.running.read().await.as_ref() {
                let _ = running.node.call(|n| n.audit_lock()).await;
            }
            return false;
        }
        self.lock_node().await
    }

    /// Locks the node: every session ends, the lock is audited, and the node is closed
    /// (its keys leave memory; its network goes on blind). Returns whether it was open.
    pub async fn lock_node(&self) -> bool {
        self.guard.end_session();
        let running = self.running.write().await;
        let Some(running) = running.as_ref() else {
            return false;
        };
        let _ = running.node.call(|n| n.audit_lock()).await;
        match running.node.lock().await {
            Ok(true) => {
                tracing::info!("locked: the node is closed and its keys dropped; syncing blind");
                true
            }
            Ok(false) | Err(_) => false,
        }
    }

    /// How the node stands (open, or locked blind or shut).
    pub async fn lock_state(&self) -> LockState {
        match self.running.read().await.as_ref() {
            Some(running) => running.node.lock_state().await.unwrap_or(LockState::Shut),
            None => LockState::Shut,
        }
    }

    /// Opens serve's node again with the passphrase (checked by the guard, with its
    /// delays, and by the store's rate limit and audit of failed unlocks); it takes in
    /// what arrived while locked. The app's node is unlocked in its window only: this
    /// refuses it.
    pub async fn unlock(&self, passphrase: &Zeroizing<String>) -> Result<(), Refused> {
        let Some(idle_lock) = self.idle_lock.clone() else {
            return Err(Refused::Unchecked(
                "the desktop app is unlocked in its own window".into(),
            ));
        };
        let running = self.running.write().await;
        let Some(node) = running.as_ref().map(|r| r.node.clone()) else {
            return Err(Refused::Unchecked("the node has stopped".into()));
        };
        let idle = self
            .guard
            .with_passphrase(passphrase, move |pass| {
                node.unlock_blocking(move |dir| {
                    let mut node = Node::open(dir, pass.as_bytes())?;
                    node.audit_unlock();
                    Ok(node)
                })?;
                let policy = tokio::runtime::Handle::current()
                    .block_on(node.call(|n| n.policy()))
                    .map_err(anyhow::Error::from)??;
                Ok(idle_lock.effective(policy.safeguards.idle_lock_minutes))
            })
            .await?;
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
                if self.lock_state().await == LockState::Open {
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
