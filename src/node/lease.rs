//! The offline lease (issue #10, item 5): a device out of contact with every other
//! device of its clinic for longer than the policy's lease stops showing clinical
//! threads until a peer has synced with it again, so a laptop stolen while off the
//! network locks clinical data on its own.
//!
//! Contact is a finished sync session with a peer of the clinic (which also tells the
//! device whether it is still enrolled). Time is this device's clock, never allowed to
//! run backwards: the latest time seen is kept, so turning the clock back does not
//! extend a lease. A device with no other device in its clinic has nobody to be in
//! contact with, and no lease.

use crate::core::ids::LogId;
use crate::core::policy::Category;
use crate::node::views::ThreadSummary;
use crate::node::{Node, NodeError, now_ms};
use crate::store::{Sealed, StoreError};

const LAST_CONTACT_KEY: &[u8] = b"last-contact";
const LATEST_TIME_KEY: &[u8] = b"latest-time";
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Node {
    /// Reads the lease's clock state at open; a device that never recorded contact
    /// starts its lease now. Keeps the latest time seen.
    pub(super) fn load_lease(&mut self) -> Result<(), NodeError> {
        let read = |key: &[u8]| -> Result<Option<u64>, NodeError> {
            Ok(match self.store.get_sealed(Sealed::Secrets, key)? {
                Some(b) => Some(u64::from_be_bytes(b.as_slice().try_into().map_err(
                    |_| StoreError::Corrupt {
                        tree: "secrets",
                        key: String::from_utf8_lossy(key).into_owned(),
                        why: "wrong length",
                    },
                )?)),
                None => None,
            })
        };
        let latest = read(LATEST_TIME_KEY)?.unwrap_or(0).max(now_ms());
        self.latest_time_ms = latest;
        self.last_contact_ms = match read(LAST_CONTACT_KEY)? {
            Some(t) => t,
            None => {
                self.store
                    .put_sealed(Sealed::Secrets, LAST_CONTACT_KEY, &latest.to_be_bytes())?;
                latest
            }
        };
        self.store
            .put_sealed(Sealed::Secrets, LATEST_TIME_KEY, &latest.to_be_bytes())?;
        Ok(())
    }

    /// A peer of the clinic finished a sync session with this device: the lease starts
    /// again (if this device is still enrolled).
    pub(super) fn note_contact(&mut self) -> Result<(), NodeError> {
        if !self.replica.as_ref().is_some_and(|r| r.enrolled()) {
            return Ok(());
        }
        let now = self.lease_now();
        self.latest_time_ms = now;
        self.last_contact_ms = now;
        self.store
            .put_sealed(Sealed::Secrets, LAST_CONTACT_KEY, &now.to_be_bytes())?;
        self.store
            .put_sealed(Sealed::Secrets, LATEST_TIME_KEY, &now.to_be_bytes())?;
        self.store.flush()?;
        Ok(())
    }

    /// The clock as the lease sees it: never earlier than a time already seen.
    fn lease_now(&self) -> u64 {
        now_ms().max(self.latest_time_ms)
    }

    /// Whether the lease has run out: clinical threads are locked until contact.
    pub fn lease_expired(&self) -> bool {
        let Some(replica) = self.replica.as_ref() else {
            return false;
        };
        let me = self.secret.id();
        let roster = replica.roster();
        if roster.all_devices().iter().all(|d| d.id == me) {
            return false;
        }
        let days = u64::from(roster.policy.safeguards.offline_lease_days);
        self.lease_now().saturating_sub(self.last_contact_ms) > days * DAY_MS
    }

    /// When this device last finished a sync with a peer (ms since the epoch).
    pub fn last_contact_ms(&self) -> u64 {
        self.last_contact_ms
    }

    /// Refuses a clinical thread while the lease has run out.
    pub(super) fn check_lease(&self, log: &LogId) -> Result<(), NodeError> {
        if log.category() == Some(Category::Clinical) && self.lease_expired() {
            let days = self
                .replica
                .as_ref()
                .map_or(0, |r| r.roster().policy.safeguards.offline_lease_days);
            return Err(NodeError::LeaseExpired(days));
        }
        Ok(())
    }

    /// Shows clinical threads as locked while the lease has run out.
    pub(super) fn lease_filter(&self, summaries: &mut [ThreadSummary]) {
        if !self.lease_expired() {
            return;
        }
        for s in summaries.iter_mut() {
            if s.category == Category::Clinical.as_str() && s.readable {
                *s = super::docs::locked_summary(s.thread, Category::Clinical, s.envelopes);
            }
        }
    }
}
