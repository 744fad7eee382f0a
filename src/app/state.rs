//! What the app knows, rebuilt only from the bridge's updates: the phase, the latest
//! snapshot of the node, the open thread, peers and sync progress, and the toasts.
//! Also where arrivals become notifications: a new snapshot is compared with the last
//! one (urgent unread, mentions, tasks assigned to me), never with message text.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::message::{AuditPage, Form, Phase, Snapshot, Update};
use super::notify::Alert;
use crate::core::ids::ThreadId;
use crate::core::policy::Category;
use crate::net::{PeerView, SyncProgress};
use crate::node::{ThreadDetail, ThreadSummary};

/// How long a toast stays.
pub const TOAST_FOR: Duration = Duration::from_secs(6);
/// Toasts shown at once; older ones give way.
pub const MAX_TOASTS: usize = 3;

pub struct Toast {
    pub text: String,
    pub error: bool,
    pub until: Instant,
    /// Clicking the toast opens this thread.
    pub thread: Option<ThreadId>,
}

/// A new invitation, shown until dismissed.
pub struct ShownInvitation {
    pub name: String,
    /// When it stops being valid (unix ms; 0: not known).
    pub expires_ms: u64,
    /// For a new device of an existing member.
    pub device: bool,
    pub text: String,
    pub qr: Option<egui::TextureHandle>,
}

pub struct AppState {
    pub phase: Phase,
    pub snapshot: Snapshot,
    pub thread: Option<ThreadDetail>,
    pub peers: Vec<PeerView>,
    pub progress: SyncProgress,
    pub invitation: Option<ShownInvitation>,
    pub toasts: Vec<Toast>,
    /// Desktop notifications cannot be shown on this computer (said in Settings).
    pub notifications_off: bool,
    /// Each form's last refusal, shown beside it until the form is sent again.
    pub form_errors: BTreeMap<Form, String>,
    /// The last message-text search: its query and the threads that matched.
    pub search_hits: Option<(String, BTreeSet<ThreadId>)>,
    /// The audit trail page last read (admins).
    pub audit: Option<AuditPage>,
    /// The last `audit verify`: its findings (empty: intact).
    pub verified: Option<Vec<String>>,
    /// Whether a snapshot arrived since the last unlock: the first one is the baseline
    /// for notifications, not news.
    baseline: bool,
}

impl Default for AppState {
    fn default() -> Self {
        AppState {
            phase: Phase::Locked,
            snapshot: Snapshot::default(),
            thread: None,
            peers: Vec::new(),
            progress: SyncProgress::default(),
            invitation: None,
            toasts: Vec::new(),
            notifications_off: false,
            form_errors: BTreeMap::new(),
            search_hits: None,
            audit: None,
            verified: None,
            baseline: false,
        }
    }
}

impl AppState {
    /// Applies one update; returns the alerts it raises.
    pub fn apply(&mut self, update: Update, now: Instant) -> Vec<Alert> {
        match update {
            Update::Phase(phase) => {
                if phase != Phase::Open {
                    // Leaving the open node: nothing decrypted stays on screen.
                    self.snapshot = Snapshot::default();
                    self.thread = None;
                    self.peers.clear();
                    self.invitation = None;
                    self.search_hits = None;
                    self.audit = None;
                    self.verified = None;
                    self.baseline = false;
                }
                if phase == Phase::Open {
                    for form in [Form::Found, Form::Join, Form::Unlock] {
                        self.form_errors.remove(&form);
                    }
                }
                self.phase = phase;
            }
            Update::Snapshot(snapshot) => {
                let alerts = if self.baseline {
                    alerts(&self.snapshot, &snapshot)
                } else {
                    Vec::new()
                };
                self.baseline = true;
                let old = std::mem::take(&mut self.snapshot);
                self.snapshot = *snapshot;
                if !self.snapshot.full {
                    self.snapshot.members = old.members;
                    self.snapshot.removed = old.removed;
                    self.snapshot.devices = old.devices;
                    self.snapshot.invites = old.invites;
                    self.snapshot.policy = old.policy;
                    self.snapshot.safeguards = old.safeguards;
                    self.snapshot.emergencies = old.emergencies;
                }
                // A thread no longer readable here (an emergency grant ended, a
                // restriction or role change): its messages leave the screen.
                if let Some(t) = &self.thread
                    && self.summary(&t.thread).is_some_and(|s| !s.readable)
                {
                    self.thread = None;
                }
                for alert in &alerts {
                    self.toast_for(alert, now);
                }
                return alerts;
            }
            // Selecting is the app's business (see `HuddleApp::on_update`).
            Update::Created(_) => {}
            Update::Thread(detail) => self.thread = Some(*detail),
            Update::Peers(peers) => self.peers = peers,
            Update::Progress(progress) => self.progress = progress,
            Update::Invitation {
                text,
                name,
                expires_ms,
                device,
            } => {
                self.invitation = Some(ShownInvitation {
                    name,
                    expires_ms,
                    device,
                    text,
                    qr: None,
                })
            }
            Update::SearchHits { query, threads } => {
                self.search_hits = Some((query, threads.into_iter().collect()))
            }
            Update::Audit(page) => self.audit = Some(*page),
            Update::Verified(findings) => self.verified = Some(findings),
            Update::Done(text) => self.toast(text, false, None, now),
            Update::Error(text) => self.toast(text, true, None, now),
            Update::FormError { form, text } => {
                // A passphrase change refused with a wrong current passphrase locks
                // Huddle: the lock screen, now showing, says why.
                let form = match (form, &self.phase) {
                    (Form::Passphrase, Phase::Locked) => Form::Unlock,
                    _ => form,
                };
                self.form_errors.insert(form, text);
            }
            // The view lets go of the form (`HuddleApp::on_update`).
            Update::FormDone(form) => {
                self.form_errors.remove(&form);
            }
        }
        Vec::new()
    }

    pub fn toast(&mut self, text: String, error: bool, thread: Option<ThreadId>, now: Instant) {
        if self.toasts.len() >= MAX_TOASTS {
            self.toasts.remove(0);
        }
        self.toasts.push(Toast {
            text,
            error,
            until: now + TOAST_FOR,
            thread,
        });
    }

    fn toast_for(&mut self, alert: &Alert, now: Instant) {
        let (_, body) = alert.text();
        self.toast(body, false, Some(alert.thread()), now);
    }

    /// Drops toasts whose time is up.
    pub fn expire(&mut self, now: Instant) {
        self.toasts.retain(|t| t.until > now);
    }

    pub fn summary(&self, thread: &ThreadId) -> Option<&ThreadSummary> {
        self.snapshot.threads.iter().find(|s| s.thread == *thread)
    }

    /// This device's member name, once open.
    pub fn my_name(&self) -> Option<&str> {
        self.snapshot.status.as_ref()?.member.as_deref()
    }
}

/// What changed between two snapshots that the user should be told about.
pub fn alerts(old: &Snapshot, new: &Snapshot) -> Vec<Alert> {
    let before: BTreeMap<ThreadId, &ThreadSummary> =
        old.threads.iter().map(|s| (s.thread, s)).collect();
    let mut out = Vec::new();
    for s in new.threads.iter().filter(|s| s.readable) {
        let Ok(category) = s.category.parse::<Category>() else {
            continue;
        };
        let was = before.get(&s.thread);
        let grew = |now: usize, then: fn(&ThreadSummary) -> usize| now > was.map_or(0, |w| then(w));
        if grew(s.urgent_unread, |w| w.urgent_unread) {
            out.push(Alert::Urgent {
                thread: s.thread,
                category,
            });
        }
        if grew(s.mentions_unread, |w| w.mentions_unread) {
            out.push(Alert::Mention {
                thread: s.thread,
                category,
            });
        }
    }
    let mine = |snap: &Snapshot| -> BTreeSet<(ThreadId, String)> {
        let me = snap.status.as_ref().and_then(|s| s.member.clone());
        snap.tasks
            .iter()
            .filter(|t| {
                Some(&t.assignee) == me.as_ref()
                    && t.status == crate::core::thread::TaskStatus::Open
            })
            .map(|t| (t.thread, t.message_id.clone()))
            .collect()
    };
    let had = mine(old);
    for (thread, _) in mine(new).difference(&had) {
        let category = new
            .threads
            .iter()
            .find(|s| s.thread == *thread)
            .and_then(|s| s.category.parse().ok())
            .unwrap_or(Category::Operations);
        out.push(Alert::TaskAssigned {
            thread: *thread,
            category,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Status, TaskView};

    fn summary(thread: u8, urgent: usize, mentions: usize) -> ThreadSummary {
        ThreadSummary {
            thread: ThreadId([thread; 16]),
            id: ThreadId([thread; 16]).to_hex(),
            category: "clinical".into(),
            readable: true,
            subject: None,
            title: Some("Jane Doe intake".into()),
            messages: 3,
            unread: urgent + mentions,
            urgent_unread: urgent,
            mentions_unread: mentions,
            open_tasks: 0,
            last_ms: None,
            envelopes: 3,
        }
    }

    fn snapshot(threads: Vec<ThreadSummary>, tasks: Vec<TaskView>) -> Snapshot {
        Snapshot {
            status: Some(Status {
                clinic_id: Some("c".into()),
                clinic_name: Some("Maple".into()),
                device: "d".into(),
                member: Some("Lee P.".into()),
                role: Some("clinician".into()),
                admin: false,
                envelopes: 0,
                pending: 0,
                resyncing: false,
                lease_expired: false,
                changed: None,
                roster_missing: 0,
            }),
            threads,
            tasks,
            ..Snapshot::default()
        }
    }

    #[test]
    fn only_news_raises_alerts_and_the_first_snapshot_is_the_baseline() {
        let mut state = AppState::default();
        let now = Instant::now();
        let first = snapshot(vec![summary(1, 1, 0)], vec![]);
        assert!(
            state
                .apply(Update::Snapshot(Box::new(first)), now)
                .is_empty()
        );
        // Same counts: nothing new.
        let same = snapshot(vec![summary(1, 1, 0)], vec![]);
        assert!(
            state
                .apply(Update::Snapshot(Box::new(same)), now)
                .is_empty()
        );
        let task = TaskView {
            thread: ThreadId([2; 16]),
            thread_title: "x".into(),
            message_id: "m".into(),
            text: "t".into(),
            assignee: "Lee P.".into(),
            due: "2099-01-01".into(),
            status: crate::core::thread::TaskStatus::Open,
            done_by: None,
            overdue: false,
        };
        let news = snapshot(vec![summary(1, 2, 1), summary(2, 0, 0)], vec![task]);
        let alerts = state.apply(Update::Snapshot(Box::new(news)), now);
        assert_eq!(alerts.len(), 3, "{alerts:?}");
        assert!(matches!(alerts[0], Alert::Urgent { .. }));
        assert!(matches!(alerts[1], Alert::Mention { .. }));
        assert!(matches!(alerts[2], Alert::TaskAssigned { .. }));
        // Toasts carry the alert's text, never the thread's title.
        assert!(state.toasts.iter().all(|t| !t.text.contains("Jane")));
    }

    #[test]
    fn a_thread_no_longer_readable_leaves_the_screen() {
        let mut state = AppState::default();
        let now = Instant::now();
        state.apply(Update::Phase(Phase::Open), now);
        state.apply(
            Update::Snapshot(Box::new(snapshot(vec![summary(1, 0, 0)], vec![]))),
            now,
        );
        state.thread = Some(ThreadDetail {
            thread: ThreadId([1; 16]),
            id: ThreadId([1; 16]).to_hex(),
            category: "clinical".into(),
            subject: crate::core::thread::Subject::Patient("Jane Doe".into()),
            title: "Jane Doe intake".into(),
            created_by: "Lee P.".into(),
            created_ms: 0,
            emergencies: Vec::new(),
            restricted_to: Vec::new(),
            messages: Vec::new(),
        });
        // Still readable: the thread stays.
        state.apply(
            Update::Snapshot(Box::new(snapshot(vec![summary(1, 0, 0)], vec![]))),
            now,
        );
        assert!(state.thread.is_some());
        // An emergency grant ended: the list shows it restricted, the messages go.
        let mut hidden = summary(1, 0, 0);
        hidden.readable = false;
        hidden.title = Some(crate::node::RESTRICTED_LABEL.into());
        state.apply(
            Update::Snapshot(Box::new(snapshot(vec![hidden], vec![]))),
            now,
        );
        assert!(state.thread.is_none());
    }

    #[test]
    fn locking_clears_everything_decrypted() {
        let mut state = AppState::default();
        let now = Instant::now();
        state.apply(Update::Phase(Phase::Open), now);
        state.apply(
            Update::Snapshot(Box::new(snapshot(vec![summary(1, 0, 0)], vec![]))),
            now,
        );
        state.apply(Update::Audit(Box::default()), now);
        state.apply(
            Update::Verified(vec!["device 1a2b: entry #3 edited".into()]),
            now,
        );
        assert!(state.audit.is_some() && state.verified.is_some());
        state.apply(Update::Phase(Phase::Locked), now);
        assert!(state.snapshot.threads.is_empty() && state.snapshot.status.is_none());
        assert!(state.thread.is_none() && state.search_hits.is_none());
        assert!(state.audit.is_none() && state.verified.is_none());
    }
}
