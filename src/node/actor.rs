//! The node as an actor: one thread owns the [`Node`] (sled and Argon2 work is blocking),
//! and a cloneable [`NodeHandle`] sends it jobs over a bounded channel. After every job,
//! envelopes the node accepted are handed to the network for live push.

use tokio::sync::{mpsc, oneshot};

use super::{Node, Outgoing};

/// Jobs waiting for the node; senders wait when it is full.
const QUEUE: usize = 64;
/// Batches of new envelopes waiting to be pushed; when full, a batch is dropped and
/// the next periodic sync round delivers it instead.
pub const OUTBOX_QUEUE: usize = 256;

type Job = Box<dyn FnOnce(&mut Node) + Send>;

/// What the node hands the network after a job: envelopes to push, and devices that
/// lost their place in the clinic (revoked or removed) whose connections must close.
#[derive(Debug, Default)]
pub struct Batch {
    pub envelopes: Vec<Outgoing>,
    pub cut_off: Vec<crate::core::ids::DeviceId>,
}

/// Batches the node wants the network to act on.
pub type Outbox = mpsc::Receiver<Batch>;

/// The node has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the node has stopped")]
pub struct Stopped;

#[derive(Clone)]
pub struct NodeHandle {
    jobs: mpsc::Sender<Job>,
}

impl NodeHandle {
    /// Runs `f` on the node and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |node| {
            let _ = tx.send(f(node));
        });
        self.jobs.send(job).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// Starts the actor thread. It ends, returning the node, when every handle is dropped.
pub fn spawn(mut node: Node) -> (NodeHandle, Outbox, std::thread::JoinHandle<Node>) {
    let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
    let (out_tx, out_rx) = mpsc::channel(OUTBOX_QUEUE);
    node.set_relay(true);
    let thread = std::thread::Builder::new()
        .name("huddle-node".into())
        .spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                job(&mut node);
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
            node
        })
        .expect("spawning the node thread");
    (NodeHandle { jobs }, out_rx, thread)
}
