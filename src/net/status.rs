//! What the network shows people, as watchable state: the admitted peers connected now
//! ([`PeerView`]) and how sync is going ([`SyncProgress`]). Both are kept with counters
//! and a map bounded by the connection limits; nothing here grows with the history.
//! Figures a peer states about itself (how much it holds) are shown, never trusted:
//! they only feed the progress bar, with saturating arithmetic.

use libp2p::PeerId;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tokio::sync::watch;

use super::{addr, locked};
use crate::core::ids::DeviceId;
use crate::core::sync::{Features, Summary};
use crate::node::now_ms;

/// A connected device of the clinic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub device: DeviceId,
    /// The address of its first connection, if known.
    pub addr: Option<String>,
    pub connected_since_ms: u64,
    /// When the last sync round with it completed (this connection or an earlier one).
    pub last_sync_ms: Option<u64>,
}

/// How sync is going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// A sync round that brings envelopes is running.
    pub syncing: bool,
    /// Envelopes received in the current (or last) run of such rounds.
    pub received: u64,
    /// Envelopes the peers of that run said they hold and this device lacks.
    pub expected: u64,
    /// Changes to threads (messages, tasks, read markers) authored on this device that
    /// no peer has taken yet (since the network started).
    pub waiting: u64,
    /// The device's own bookkeeping envelopes (audit entries, key grants, roster
    /// operations) that no peer has taken yet: counted apart, so that opening a thread
    /// (an audit entry) does not read as a change waiting to sync.
    pub waiting_bookkeeping: u64,
    /// When a sync round with any peer last completed.
    pub last_synced_ms: Option<u64>,
}

struct Connection {
    addr: String,
    since_ms: u64,
}

#[derive(Default)]
struct PeerState {
    admitted: HashSet<PeerId>,
    connected: HashMap<PeerId, Connection>,
    last_sync: HashMap<PeerId, u64>,
    /// What each peer's `Hello` said it understands (see `core::sync::Features`).
    features: HashMap<PeerId, Features>,
}

/// Admitted and connected peers; publishes the [`PeerView`] list on every change.
pub(crate) struct Peers {
    state: Mutex<PeerState>,
    view: watch::Sender<Vec<PeerView>>,
}

impl Peers {
    pub fn new() -> Peers {
        Peers {
            state: Mutex::default(),
            view: watch::channel(Vec::new()).0,
        }
    }

    pub fn watch(&self) -> watch::Receiver<Vec<PeerView>> {
        self.view.subscribe()
    }

    /// A first connection to `peer` (admitted or not) was established.
    pub fn connected(&self, peer: PeerId, address: String) {
        let mut s = locked(&self.state);
        s.connected.entry(peer).or_insert(Connection {
            addr: address,
            since_ms: now_ms(),
        });
        self.publish(&s);
    }

    /// The last connection to `peer` closed; returns whether it was admitted.
    pub fn disconnected(&self, peer: &PeerId) -> bool {
        let mut s = locked(&self.state);
        s.connected.remove(peer);
        s.last_sync.remove(peer);
        s.features.remove(peer);
        let was = s.admitted.remove(peer);
        self.publish(&s);
        was
    }

    /// Admits `peer` to data exchange.
    pub fn admit(&self, peer: PeerId) {
        let mut s = locked(&self.state);
        if s.admitted.insert(peer) {
            self.publish(&s);
        }
    }

    /// Takes `peer`'s admission away; returns whether it had one.
    pub fn remove(&self, peer: &PeerId) -> bool {
        let mut s = locked(&self.state);
        let was = s.admitted.remove(peer);
        if was {
            self.publish(&s);
        }
        was
    }

    pub fn contains(&self, peer: &PeerId) -> bool {
        locked(&self.state).admitted.contains(peer)
    }

    pub fn admitted(&self) -> Vec<PeerId> {
        locked(&self.state).admitted.iter().copied().collect()
    }

    /// `peer`'s `Hello` said what it understands.
    pub fn set_features(&self, peer: PeerId, features: Features) {
        locked(&self.state).features.insert(peer, features);
    }

    /// What `peer` understands, once one of its `Hello`s arrived on this connection.
    pub fn features(&self, peer: &PeerId) -> Option<Features> {
        locked(&self.state).features.get(peer).copied()
    }

    /// A sync round with `peer` completed.
    pub fn synced(&self, peer: PeerId) {
        let mut s = locked(&self.state);
        if s.connected.contains_key(&peer) {
            s.last_sync.insert(peer, now_ms());
            self.publish(&s);
        }
    }

    /// Admitted peers with a live connection, by device.
    fn publish(&self, s: &PeerState) {
        let mut list: Vec<PeerView> = s
            .admitted
            .iter()
            .filter_map(|peer| {
                let c = s.connected.get(peer)?;
                Some(PeerView {
                    device: addr::device(peer)?,
                    addr: Some(c.addr.clone()),
                    connected_since_ms: c.since_ms,
                    last_sync_ms: s.last_sync.get(peer).copied(),
                })
            })
            .collect();
        list.sort_by_key(|p| p.device);
        self.view.send_if_modified(|old| {
            let changed = *old != list;
            if changed {
                *old = std::mem::take(&mut list);
            }
            changed
        });
    }
}

impl SyncProgress {
    /// What the next network should start from.
    pub fn backlog(&self) -> crate::node::SyncBacklog {
        crate::node::SyncBacklog {
            changes: self.waiting,
            bookkeeping: self.waiting_bookkeeping,
            last_synced_ms: self.last_synced_ms,
        }
    }
}

/// Envelopes authored here, by kind (see [`SyncProgress::waiting`]): a running count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Authored {
    pub changes: u64,
    pub bookkeeping: u64,
}

impl Authored {
    fn max(self, other: Authored) -> Authored {
        Authored {
            changes: self.changes.max(other.changes),
            bookkeeping: self.bookkeeping.max(other.bookkeeping),
        }
    }

    fn plus(self, other: Authored) -> Authored {
        Authored {
            changes: self.changes.saturating_add(other.changes),
            bookkeeping: self.bookkeeping.saturating_add(other.bookkeeping),
        }
    }

    pub fn is_empty(self) -> bool {
        self == Authored::default()
    }
}

#[derive(Default)]
struct ProgressState {
    /// Sessions that expect envelopes, running now.
    active: usize,
    received: u64,
    expected: u64,
    /// Envelopes authored here that the network has seen (a running count).
    authored: Authored,
    /// The running count up to which some peer holds them.
    delivered: Authored,
    last_synced_ms: Option<u64>,
}

/// Sync progress; publishes [`SyncProgress`] on every change.
pub(crate) struct Progress {
    state: Mutex<ProgressState>,
    view: watch::Sender<SyncProgress>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            state: Mutex::default(),
            view: watch::channel(SyncProgress::default()).0,
        }
    }

    /// Progress that starts from what the last network left (see
    /// [`crate::node::SyncBacklog`]): its envelopes still wait until a peer takes them.
    pub fn resume(backlog: crate::node::SyncBacklog) -> Progress {
        let progress = Progress::new();
        progress.update(|s| {
            s.authored = Authored {
                changes: backlog.changes,
                bookkeeping: backlog.bookkeeping,
            };
            s.last_synced_ms = backlog.last_synced_ms;
        });
        progress
    }

    pub fn watch(&self) -> watch::Receiver<SyncProgress> {
        self.view.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut ProgressState)) {
        let mut s = locked(&self.state);
        f(&mut s);
        let now = SyncProgress {
            syncing: s.active > 0,
            received: s.received,
            expected: s.expected,
            waiting: s.authored.changes.saturating_sub(s.delivered.changes),
            waiting_bookkeeping: s
                .authored
                .bookkeeping
                .saturating_sub(s.delivered.bookkeeping),
            last_synced_ms: s.last_synced_ms,
        };
        self.view.send_if_modified(|old| {
            let changed = *old != now;
            *old = now;
            changed
        });
    }

    /// `count` envelopes authored here were handed to the network; returns the running
    /// count that includes them (for [`Progress::delivered`]).
    pub fn authored(&self, count: Authored) -> Authored {
        let mut end = Authored::default();
        self.update(|s| {
            s.authored = s.authored.plus(count);
            end = s.authored;
        });
        end
    }

    /// Some peer holds every envelope authored here up to the running count `upto`.
    pub fn delivered(&self, upto: Authored) {
        self.update(|s| s.delivered = s.delivered.max(upto));
    }

    /// The running count of envelopes authored here, as a session starts.
    pub fn authored_so_far(&self) -> Authored {
        locked(&self.state).authored
    }

    /// A sync round completed; the peer holds all that was authored here before
    /// `authored_before` (see [`Progress::authored_so_far`]).
    pub fn round_done(&self, authored_before: Authored) {
        self.update(|s| {
            s.delivered = s.delivered.max(authored_before);
            s.last_synced_ms = Some(now_ms());
        });
    }

    /// A session learned that its peer holds `lacking` envelopes this device lacks. The
    /// first such session of a run starts the counts afresh. The returned guard ends the
    /// session's part in the run when dropped.
    pub fn expecting(&self, lacking: u64) -> Expecting<'_> {
        self.update(|s| {
            if s.active == 0 {
                s.received = 0;
                s.expected = 0;
            }
            s.active += 1;
            s.expected = s.expected.saturating_add(lacking);
        });
        Expecting(self)
    }
}

/// Records the sync counts on the node as they change, so that the next start resumes
/// them ([`Progress::resume`]); [`super::Network::stop`] records the last ones. A locked
/// node records nothing (its sealed records are closed); the counts stay in memory.
pub(crate) async fn record_backlog(
    mut progress: watch::Receiver<SyncProgress>,
    node: crate::node::actor::NodeHandle,
    mut stop: watch::Receiver<bool>,
) {
    let mut recorded = progress.borrow().backlog();
    loop {
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = progress.borrow_and_update().backlog();
        if now != recorded {
            match node.call(move |n| n.record_sync_backlog(now)).await {
                Ok(Ok(())) => recorded = now,
                Ok(Err(e)) => tracing::debug!("sync counts not recorded: {e}"),
                Err(e) => tracing::debug!("sync counts not recorded: {e}"),
            }
        }
    }
}

/// A session that expects envelopes; dropping it ends its part in the run.
pub(crate) struct Expecting<'a>(&'a Progress);

impl Expecting<'_> {
    /// A batch of `count` envelopes arrived.
    pub fn received(&self, count: u64) {
        self.0
            .update(|s| s.received = s.received.saturating_add(count));
    }
}

impl Drop for Expecting<'_> {
    fn drop(&mut self) {
        self.0.update(|s| s.active = s.active.saturating_sub(1));
    }
}

/// How many envelopes `theirs` holds that `mine` lacks (as the peer states it).
pub fn lacking(mine: &Summary, theirs: &Summary) -> u64 {
    theirs
        .chains
        .iter()
        .map(|(key, &n)| n.saturating_sub(mine.chains.get(key).copied().unwrap_or(0)))
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::LogId;

    #[test]
    fn a_run_counts_what_peers_offer_and_what_arrives() {
        let p = Progress::new();
        let rx = p.watch();
        {
            let a = p.expecting(10);
            let _b = p.expecting(5);
            a.received(4);
            assert_eq!(
                *rx.borrow(),
                SyncProgress {
                    syncing: true,
                    received: 4,
                    expected: 15,
                    ..Default::default()
                }
            );
        }
        assert!(!rx.borrow().syncing, "the run ended with its sessions");
        assert_eq!(rx.borrow().received, 4, "the last run stays visible");
        let _c = p.expecting(3);
        assert_eq!((rx.borrow().received, rx.borrow().expected), (0, 3));
    }

    fn changes(n: u64) -> Authored {
        Authored {
            changes: n,
            bookkeeping: 0,
        }
    }

    #[test]
    fn waiting_counts_authored_envelopes_no_peer_has_taken() {
        let p = Progress::new();
        let rx = p.watch();
        let first = p.authored(changes(3));
        let before = p.authored_so_far();
        p.authored(changes(2));
        assert_eq!(rx.borrow().waiting, 5);
        p.delivered(first);
        assert_eq!(rx.borrow().waiting, 2);
        p.round_done(before);
        assert_eq!(rx.borrow().waiting, 2, "authored after the round started");
        assert!(rx.borrow().last_synced_ms.is_some());
        p.delivered(changes(1));
        assert_eq!(rx.borrow().waiting, 2, "delivery never goes back");
    }

    #[test]
    fn bookkeeping_is_counted_apart_from_changes() {
        let p = Progress::new();
        let rx = p.watch();
        let upto = p.authored(Authored {
            changes: 2,
            bookkeeping: 3,
        });
        assert_eq!(
            (rx.borrow().waiting, rx.borrow().waiting_bookkeeping),
            (2, 3)
        );
        p.delivered(upto);
        assert_eq!(
            (rx.borrow().waiting, rx.borrow().waiting_bookkeeping),
            (0, 0)
        );
    }

    #[test]
    fn a_lying_summary_saturates_instead_of_overflowing() {
        let log = LogId::Roster;
        let mut theirs = Summary::default();
        theirs.chains.insert((log, DeviceId([1; 32])), u64::MAX);
        theirs.chains.insert((log, DeviceId([2; 32])), u64::MAX);
        let mut mine = Summary::default();
        mine.chains.insert((log, DeviceId([3; 32])), 7);
        assert_eq!(lacking(&mine, &theirs), u64::MAX);
        mine.chains.insert((log, DeviceId([1; 32])), u64::MAX);
        theirs.chains.remove(&(log, DeviceId([2; 32])));
        assert_eq!(lacking(&mine, &theirs), 0);
    }
}
