//! What the network runs and how much of it at once: [`Tasks`] owns every task the
//! network starts (stream handlers, sync rounds, pushes, accept loops), so that shutting
//! down ends them all; [`Slots`] bounds how many streams are handled at once, per peer
//! and in all.

use libp2p::PeerId;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;

use super::locked;

/// The network's tasks. After [`Tasks::shutdown`] nothing new starts.
#[derive(Clone)]
pub(crate) struct Tasks(Arc<Mutex<Option<JoinSet<()>>>>);

impl Tasks {
    pub fn new() -> Tasks {
        Tasks(Arc::new(Mutex::new(Some(JoinSet::new()))))
    }

    /// Runs `task` until it ends or the network shuts down. Finished tasks are collected
    /// here, so the set holds only what is still running.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        let mut set = locked(&self.0);
        if let Some(set) = set.as_mut() {
            while set.try_join_next().is_some() {}
            set.spawn(task);
        }
    }

    /// Tasks running now (for tests and logs).
    pub fn running(&self) -> usize {
        let mut set = locked(&self.0);
        set.as_mut().map_or(0, |set| {
            while set.try_join_next().is_some() {}
            set.len()
        })
    }

    /// Cancels every task and waits for them to end, until `deadline`.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        let taken = locked(&self.0).take();
        if let Some(mut set) = taken {
            set.abort_all();
            let _ = tokio::time::timeout_at(deadline, async {
                while set.join_next().await.is_some() {}
            })
            .await;
        }
    }

    /// Cancels every task without waiting (when the network is dropped).
    pub fn abort(&self) {
        if let Some(mut set) = locked(&self.0).take() {
            set.abort_all();
        }
    }
}

#[derive(Default)]
struct Counts {
    by_peer: HashMap<PeerId, usize>,
    total: usize,
}

/// A bounded number of things at once, per peer and in all.
#[derive(Clone)]
pub(crate) struct Slots {
    counts: Arc<Mutex<Counts>>,
    per_peer: usize,
    total: usize,
}

/// One taken slot; dropping it frees the slot.
pub(crate) struct Slot {
    counts: Arc<Mutex<Counts>>,
    peer: PeerId,
}

impl Slots {
    pub fn new(per_peer: usize, total: usize) -> Slots {
        Slots {
            counts: Arc::default(),
            per_peer,
            total,
        }
    }

    /// A slot for `peer`, if both its share and the total have room.
    pub fn try_take(&self, peer: PeerId) -> Option<Slot> {
        let mut counts = locked(&self.counts);
        let held = counts.by_peer.get(&peer).copied().unwrap_or(0);
        if held >= self.per_peer || counts.total >= self.total {
            return None;
        }
        counts.by_peer.insert(peer, held + 1);
        counts.total += 1;
        Some(Slot {
            counts: self.counts.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = locked(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.by_peer.get_mut(&self.peer) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slots_bound_each_peer_and_the_total() {
        let slots = Slots::new(2, 3);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let a1 = slots.try_take(a).unwrap();
        let _a2 = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none(), "a third for one peer");
        let _b1 = slots.try_take(b).unwrap();
        assert!(slots.try_take(c).is_none(), "a fourth in all");
        drop(a1);
        assert!(slots.try_take(c).is_some(), "a freed slot is free again");
    }

    #[tokio::test]
    async fn shutdown_ends_every_task() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        tasks.spawn(async {});
        tokio::task::yield_now().await;
        tasks
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(1))
            .await;
        assert!(rx.await.is_err(), "the pending task was dropped");
        assert_eq!(tasks.running(), 0);
        tasks.spawn(std::future::pending());
        assert_eq!(tasks.running(), 0, "nothing starts after shutdown");
    }
}
