//! Watching a node for changes without a queue that grows with them: each watcher
//! holds one [`ChangeSet`], coalesced per thread, and its waker runs only when that set
//! goes from empty to non-empty. A first sync of 10⁵ envelopes wakes a UI a handful
//! of times and never holds more than one entry per thread.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};

use crate::core::ids::ThreadId;

/// What changed since the watcher last took its changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Threads with a new or re-read change.
    pub threads: BTreeSet<ThreadId>,
    /// The roster (members, devices, roles, policy) or the invitations changed.
    pub roster: bool,
    /// Envelopes accepted.
    pub accepted: u64,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty() && !self.roster && self.accepted == 0
    }
}

/// One change, as the node reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Thread(ThreadId),
    Roster,
    Accepted,
}

struct Shared {
    changes: Mutex<ChangeSet>,
    waker: Box<dyn Fn() + Send + Sync>,
}

/// A subscription to a node's changes ([`super::Node::watch`]). Clones share it;
/// dropping the last one ends it.
#[derive(Clone)]
pub struct Watch(Arc<Shared>);

impl Watch {
    /// The changes since the last call, leaving none.
    pub fn take(&self) -> ChangeSet {
        match self.0.changes.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

/// The node's side: the live watchers.
#[derive(Default)]
pub(super) struct Watchers(Vec<Weak<Shared>>);

impl Watchers {
    pub fn add(&mut self, waker: impl Fn() + Send + Sync + 'static) -> Watch {
        let shared = Arc::new(Shared {
            changes: Mutex::new(ChangeSet::default()),
            waker: Box::new(waker),
        });
        self.0.push(Arc::downgrade(&shared));
        Watch(shared)
    }

    pub fn emit(&mut self, change: Change) {
        self.0.retain(|w| w.strong_count() > 0);
        for shared in self.0.iter().filter_map(Weak::upgrade) {
            let was_empty = {
                let mut c = match shared.changes.lock() {
                    Ok(c) => c,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let was_empty = c.is_empty();
                match change {
                    Change::Thread(t) => {
                        c.threads.insert(t);
                    }
                    Change::Roster => c.roster = true,
                    Change::Accepted => c.accepted += 1,
                }
                was_empty
            };
            if was_empty {
                (shared.waker)();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn changes_coalesce_and_wake_once_per_take() {
        let woken = Arc::new(AtomicUsize::new(0));
        let mut watchers = Watchers::default();
        let w = woken.clone();
        let watch = watchers.add(move || {
            w.fetch_add(1, Ordering::SeqCst);
        });
        let a = ThreadId([1; 16]);
        let b = ThreadId([2; 16]);
        for i in 0..10_000 {
            watchers.emit(Change::Accepted);
            watchers.emit(Change::Thread(if i % 2 == 0 { a } else { b }));
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        let taken = watch.take();
        assert_eq!(taken.threads.len(), 2);
        assert_eq!(taken.accepted, 10_000);
        assert!(watch.take().is_empty());
        watchers.emit(Change::Roster);
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert!(watch.take().roster);
    }

    #[test]
    fn a_dropped_watch_is_pruned() {
        let mut watchers = Watchers::default();
        let watch = watchers.add(|| {});
        drop(watch);
        watchers.emit(Change::Roster);
        assert!(watchers.0.is_empty());
    }
}
