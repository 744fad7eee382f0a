//! The node as an actor: one thread owns the [`Node`] (sled and Argon2 work is blocking),
//! and a cloneable [`NodeHandle`] sends it jobs over a bounded channel. After every job,
//! envelopes the node accepted are handed to the network for live push. Locking swaps
//! the node for its blind self ([`super::blind`]) in place, so the network keeps running.

use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};

use super::blind::{BlindNode, Sight};
use super::{Node, NodeError, Outgoing, SyncSide};
use crate::store::StoreError;

/// Jobs waiting for the node; senders wait when it is full.
const QUEUE: usize = 64;
/// Batches of new envelopes waiting to be pushed; when full, a batch is dropped and
/// the next periodic sync round delivers it instead.
pub const OUTBOX_QUEUE: usize = 256;

type Job = Box<dyn FnOnce(&mut Held) + Send>;
/// How often, and how long apart, a locking node tries to reopen its store blind.
const REOPEN_TRIES: u32 = 20;
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// What the node thread holds: the open node, or a locked one (blind, or shut when it
/// cannot sync blind: no clinic yet, or its store did not open without the key).
pub enum Held {
    Open(Box<Node>),
    Blind(Box<BlindNode>),
    Shut(PathBuf),
}

impl Held {
    fn open_blind(dir: PathBuf, sight: Option<Sight>) -> Held {
        let Some(sight) = sight else {
            return Held::Shut(dir);
        };
        // The closed node's last handles on the database may take a moment to go.
        let mut tries = 0;
        loop {
            match BlindNode::open(&dir, sight.clone()) {
                Ok(blind) => return Held::Blind(Box::new(blind)),
                Err(NodeError::Store(StoreError::Locked(_))) if tries < REOPEN_TRIES => {
                    tries += 1;
                    std::thread::sleep(REOPEN_WAIT);
                }
                Err(e) => {
                    tracing::warn!("locked without blind sync: {e}");
                    return Held::Shut(dir);
                }
            }
        }
    }

    /// Locks: the node is closed (its store flushed, its keys zeroized as it drops), and
    /// the store opened again without the key. Returns whether it was open.
    fn lock(&mut self) -> bool {
        let placeholder = Held::Shut(PathBuf::new());
        match std::mem::replace(self, placeholder) {
            Held::Open(node) => {
                let (sight, dir) = (node.sight(), node.dir().to_path_buf());
                drop(node);
                *self = Held::open_blind(dir, sight);
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }

    /// Unlocks with `open` (which opens the node in the directory it is given; the node
    /// takes in its inbox as it opens). On failure the node stays locked.
    fn unlock(&mut self, open: impl FnOnce(&Path) -> anyhow::Result<Node>) -> anyhow::Result<bool> {
        let placeholder = Held::Shut(PathBuf::new());
        let (dir, sight, synced) = match std::mem::replace(self, placeholder) {
            Held::Open(node) => {
                *self = Held::Open(node);
                return Ok(false);
            }
            Held::Blind(blind) => {
                let kept = (
                    blind.dir().to_path_buf(),
                    Some(blind.sight().clone()),
                    blind.synced(),
                );
                drop(blind);
                kept
            }
            Held::Shut(dir) => (dir, None, false),
        };
        match open(&dir) {
            Ok(mut node) => {
                node.set_relay(true);
                if synced && let Err(e) = node.synced_with_peer() {
                    tracing::warn!("the sync made while locked was not recorded: {e}");
                }
                *self = Held::Open(Box::new(node));
                Ok(true)
            }
            Err(e) => {
                *self = match sight {
                    Some(_) => Held::open_blind(dir, sight),
                    None => Held::Shut(dir),
                };
                Err(e)
            }
        }
    }
}

/// What the node hands the network after a job: envelopes to push, and devices that
/// lost their place in the clinic (revoked or removed) whose connections must close.
#[derive(Debug, Default)]
pub struct Batch {
    pub envelopes: Vec<Outgoing>,
    pub cut_off: Vec<crate::core::ids::DeviceId>,
}

/// Batches the node wants the network to act on.
pub type Outbox = mpsc::Receiver<Batch>;

/// The node cannot take the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("the node has stopped")]
    Ended,
    #[error("the node is locked")]
    Locked,
}

/// How a locked node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    Open,
    /// Locked, syncing blind: envelopes waiting in its inbox.
    Blind {
        inbox: u64,
    },
    /// Locked, not syncing.
    Shut,
}

#[derive(Clone)]
pub struct NodeHandle {
    jobs: mpsc::Sender<Job>,
}

impl NodeHandle {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Held) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |held| {
            let _ = tx.send(f(held));
        });
        self.jobs.send(job).await.map_err(|_| Stopped::Ended)?;
        rx.await.map_err(|_| Stopped::Ended)
    }

    /// Runs `f` on the open node and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        self.run(move |held| match held {
            Held::Open(node) => Ok(f(node)),
            _ => Err(Stopped::Locked),
        })
        .await?
    }

    /// Runs `f` on the node's sync side: the open node, or the locked one syncing blind.
    pub async fn call_sync<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn SyncSide) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        self.run(move |held| match held {
            Held::Open(node) => Ok(f(node.as_mut())),
            Held::Blind(blind) => Ok(f(blind.as_mut())),
            Held::Shut(_) => Err(Stopped::Locked),
        })
        .await?
    }

    /// Locks the node (see [`Held`]); returns whether it was open.
    pub async fn lock(&self) -> Result<bool, Stopped> {
        self.run(Held::lock).await
    }

    /// Unlocks with `open`, from a blocking context (the caller checks the passphrase
    /// there); returns whether it was locked.
    pub fn unlock_blocking(
        &self,
        open: impl FnOnce(&Path) -> anyhow::Result<Node> + Send + 'static,
    ) -> anyhow::Result<bool> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |held| {
            let _ = tx.send(held.unlock(open));
        });
        self.jobs.blocking_send(job).map_err(|_| Stopped::Ended)?;
        rx.blocking_recv().map_err(|_| Stopped::Ended)?
    }

    pub async fn lock_state(&self) -> Result<LockState, Stopped> {
        self.run(|held| match held {
            Held::Open(_) => LockState::Open,
            Held::Blind(blind) => LockState::Blind {
                inbox: blind.inbox_len(),
            },
            Held::Shut(_) => LockState::Shut,
        })
        .await
    }
}

/// Starts the actor thread. It ends, returning what it holds, when every handle is
/// dropped.
pub fn spawn(mut node: Node) -> (NodeHandle, Outbox, std::thread::JoinHandle<Held>) {
    let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
    let (out_tx, out_rx) = mpsc::channel(OUTBOX_QUEUE);
    node.set_relay(true);
    let mut held = Held::Open(Box::new(node));
    let thread = std::thread::Builder::new()
        .name("huddle-node".into())
        .spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                job(&mut held);
                let Held::Open(node) = &mut held else {
                    continue;
                };
                let batch = Batch {
                    envelopes: node.take_outbox(),
                    cut_off: node.take_cut_off(),
                };
                if batch.envelopes.is_empty() && batch.cut_off.is_empty() {
                    continue;
                }
                // A cut-off must not be lost to a full queue: wait for room then.
                if !batch.cut_off.is_empty() {
                    if out_tx.blocking_send(batch).is_err() {
                        tracing::debug!("network stopped; cut-off not delivered");
                    }
                } else if out_tx.try_send(batch).is_err() {
                    tracing::debug!("push queue full; the next sync round carries these envelopes");
                }
            }
            held
        })
        .expect("spawning the node thread");
    (NodeHandle { jobs }, out_rx, thread)
}
