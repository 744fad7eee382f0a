//! What the sync line needs to stay true across a restart: how many envelopes authored
//! here no peer held yet (thread changes and the device's bookkeeping, counted apart) and
//! when the last sync round finished. The network keeps the running counts while it runs
//! and records them here as they change; the next start begins from them, so "offline
//! since 2:14 pm · 12 changes will sync…" does not reset to "up to date" on a restart.

use serde::{Deserialize, Serialize};

use crate::node::{Node, NodeError};
use crate::store::Sealed;

const BACKLOG_KEY: &[u8] = b"sync-backlog";

/// The sync counts a network leaves for the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBacklog {
    /// Thread changes authored here that no peer held yet.
    pub changes: u64,
    /// Audit entries, key grants and roster operations authored here, likewise.
    pub bookkeeping: u64,
    /// When a sync round with a peer last finished.
    pub last_synced_ms: Option<u64>,
}

impl Node {
    /// The counts the last network recorded; none when never recorded, unreadable (a
    /// locked node cannot open sealed records) or damaged: the line then starts empty,
    /// as it did before the counts were kept.
    pub fn sync_backlog(&self) -> SyncBacklog {
        match self.store.get_sealed(Sealed::Secrets, BACKLOG_KEY) {
            Ok(Some(bytes)) => postcard::from_bytes(&bytes).unwrap_or_default(),
            Ok(None) => SyncBacklog::default(),
            Err(e) => {
                tracing::debug!("sync counts not read: {e}");
                SyncBacklog::default()
            }
        }
    }

    /// Records the running counts.
    pub fn record_sync_backlog(&mut self, backlog: SyncBacklog) -> Result<(), NodeError> {
        let bytes = postcard::to_stdvec(&backlog).unwrap_or_default();
        self.store
            .put_sealed(Sealed::Secrets, BACKLOG_KEY, &bytes)?;
        Ok(())
    }
}
