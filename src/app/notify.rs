//! Notifications, in the app and on the desktop, through one [`Notifier`] trait so tests
//! record what would have been shown. An [`Alert`] names only a thread and its category:
//! its text never carries a patient label, a title or message text, because desktop
//! notifications appear on lock screens.

use crate::core::ids::ThreadId;
use crate::core::policy::Category;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Something worth interrupting a person for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Alert {
    /// An urgent message arrived.
    Urgent {
        thread: ThreadId,
        category: Category,
    },
    /// A message mentions me.
    Mention {
        thread: ThreadId,
        category: Category,
    },
    /// A task was assigned to me.
    TaskAssigned {
        thread: ThreadId,
        category: Category,
    },
}

impl Alert {
    /// The thread that opening the alert shows.
    pub fn thread(&self) -> ThreadId {
        match self {
            Alert::Urgent { thread, .. }
            | Alert::Mention { thread, .. }
            | Alert::TaskAssigned { thread, .. } => *thread,
        }
    }

    /// The thread's category, the only thing about it that the alert's text names.
    pub fn category(&self) -> Category {
        match self {
            Alert::Urgent { category, .. }
            | Alert::Mention { category, .. }
            | Alert::TaskAssigned { category, .. } => *category,
        }
    }

    /// The summary and body to show: what happened and in which category of thread,
    /// nothing more.
    pub fn text(&self) -> (String, String) {
        let category = self.category().as_str();
        let article = if category.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        let what = match self {
            Alert::Urgent { .. } => "Urgent message in",
            Alert::Mention { .. } => "You were mentioned in",
            Alert::TaskAssigned { .. } => "A task was assigned to you in",
        };
        let place = match self.category().is_direct() {
            // Not who takes part: a notification names no one.
            true => "a direct conversation".to_string(),
            false => format!("{article} {category} thread"),
        };
        (
            "Huddle".to_string(),
            format!("{what} {place} — open Huddle"),
        )
    }
}

/// Shows alerts. Implementations must return at once: `notify` is called from the UI
/// thread.
pub trait Notifier: Send {
    fn notify(&mut self, alert: &Alert);
    /// True when notifications cannot be shown here (the app says so in Settings).
    fn unavailable(&self) -> bool {
        false
    }
}

/// Records alerts instead of showing them; clones share one record.
#[derive(Clone, Default, Debug)]
pub struct RecordingNotifier {
    shown: Arc<Mutex<Vec<Alert>>>,
}

impl RecordingNotifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every alert notified so far, oldest first.
    pub fn shown(&self) -> Vec<Alert> {
        self.shown
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Notifier for RecordingNotifier {
    fn notify(&mut self, alert: &Alert) {
        self.shown
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(*alert);
    }
}

/// Alerts waiting to be shown; more are dropped (a burst of alerts is not worth more
/// desktop notifications than this).
const QUEUE: usize = 16;
/// Shown notifications whose click is still awaited; the oldest stops being awaited
/// when one more is shown.
const MAX_WAITING: usize = 4;
/// How long showing one notification may take before it is given up.
const SHOW_TIMEOUT: Duration = Duration::from_secs(5);

/// Shows alerts as desktop notifications (app name "Huddle", a default action "Open").
/// Showing and waiting for clicks happen on one worker thread of its own, so `notify`
/// never blocks; a click calls `on_click` with the alert's thread, on that worker thread.
pub struct DesktopNotifier {
    queue: Option<mpsc::Sender<Alert>>,
    unreachable: Arc<AtomicBool>,
    #[cfg(test)]
    worker: Option<std::thread::JoinHandle<()>>,
}

impl DesktopNotifier {
    pub fn new(on_click: impl Fn(ThreadId) + Send + Sync + 'static) -> DesktopNotifier {
        let (queue, alerts) = mpsc::channel(QUEUE);
        let unreachable = Arc::new(AtomicBool::new(!session_bus_known()));
        let worker = Worker {
            on_click: Arc::new(on_click),
            unreachable: unreachable.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("huddle-notify".into())
            .spawn(move || worker.run(alerts));
        match spawned {
            Ok(_handle) => DesktopNotifier {
                queue: Some(queue),
                unreachable,
                #[cfg(test)]
                worker: Some(_handle),
            },
            Err(e) => {
                tracing::warn!("desktop notifications are off: no worker thread: {e}");
                unreachable.store(true, Ordering::Relaxed);
                DesktopNotifier {
                    queue: None,
                    unreachable,
                    #[cfg(test)]
                    worker: None,
                }
            }
        }
    }

    /// True once showing a notification has failed (no desktop notification service,
    /// as on a headless machine), so the app can say that only in-app toasts appear.
    pub fn service_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }

    /// Closes the queue and waits for the worker to show what was queued and end.
    #[cfg(test)]
    fn shut_down(mut self) -> std::thread::Result<()> {
        self.queue = None;
        match self.worker.take() {
            Some(worker) => worker.join(),
            None => Ok(()),
        }
    }
}

impl Notifier for DesktopNotifier {
    fn unavailable(&self) -> bool {
        self.service_unreachable()
    }

    fn notify(&mut self, alert: &Alert) {
        let Some(queue) = &self.queue else { return };
        if let Err(e) = queue.try_send(*alert) {
            tracing::debug!("desktop notification dropped: {e}");
        }
    }
}

/// Whether a D-Bus session bus is there to carry notifications (its address is given,
/// or the usual socket exists): without one, nothing can be shown, and the app says so
/// from the start rather than after the first alert is lost.
fn session_bus_known() -> bool {
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty())
        || std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|d| std::path::Path::new(&d).join("bus").exists())
}

/// The worker thread's side of a [`DesktopNotifier`].
struct Worker {
    on_click: Arc<dyn Fn(ThreadId) + Send + Sync>,
    unreachable: Arc<AtomicBool>,
}

impl Worker {
    fn run(self, mut alerts: mpsc::Receiver<Alert>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::warn!("desktop notifications are off: {e}");
                self.unreachable.store(true, Ordering::Relaxed);
                return;
            }
        };
        runtime.block_on(async move {
            // Tasks awaiting a click, oldest first; a panic in one ends only that task.
            let mut waiting: VecDeque<tokio::task::JoinHandle<()>> = VecDeque::new();
            while let Some(alert) = alerts.recv().await {
                waiting.retain(|task| !task.is_finished());
                match tokio::time::timeout(SHOW_TIMEOUT, show(&alert)).await {
                    Ok(Ok(Some(click))) => {
                        if waiting.len() >= MAX_WAITING
                            && let Some(oldest) = waiting.pop_front()
                        {
                            oldest.abort();
                        }
                        let on_click = self.on_click.clone();
                        let thread = alert.thread();
                        waiting.push_back(tokio::spawn(async move {
                            if click.await {
                                on_click(thread);
                            }
                        }));
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => self.failed(&e),
                    Err(_) => self.failed(&"the notification service did not answer"),
                }
            }
            for task in waiting {
                task.abort();
            }
        });
    }

    /// Logs the first failure at warn and the rest at debug.
    fn failed(&self, why: &dyn std::fmt::Display) {
        if self.unreachable.swap(true, Ordering::Relaxed) {
            tracing::debug!("desktop notification not shown: {why}");
        } else {
            tracing::warn!("desktop notifications are off: {why}; alerts show only in the app");
        }
    }
}

fn notification(alert: &Alert) -> notify_rust::Notification {
    let (summary, body) = alert.text();
    let mut notification = notify_rust::Notification::new();
    notification
        .appname("Huddle")
        .summary(&summary)
        .body(&body)
        .action("default", "Open");
    notification
}

/// A future that resolves to whether the notification was clicked.
type Click = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

/// Shows the notification; where the platform lets us, also returns its click.
#[cfg(all(unix, not(target_os = "macos")))]
async fn show(alert: &Alert) -> Result<Option<Click>, notify_rust::error::Error> {
    use notify_rust::NotificationResponse;
    let handle = notification(alert).show_async().await?;
    Ok(Some(Box::pin(async move {
        let mut clicked = false;
        handle
            .wait_for_action_async(|response| {
                clicked = match response {
                    NotificationResponse::Default => true,
                    NotificationResponse::Action(action) => action == "default",
                    _ => false,
                };
            })
            .await;
        clicked
    })))
}

/// Shows the notification; clicks are not reported on this platform.
#[cfg(not(all(unix, not(target_os = "macos"))))]
async fn show(alert: &Alert) -> Result<Option<Click>, notify_rust::error::Error> {
    notification(alert).show().map(|_| None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::thread::Subject;
    use crate::node::Node;
    use std::process::Command;
    use std::time::Instant;

    fn every_alert(thread: ThreadId, category: Category) -> [Alert; 3] {
        [
            Alert::Urgent { thread, category },
            Alert::Mention { thread, category },
            Alert::TaskAssigned { thread, category },
        ]
    }

    #[test]
    fn a_direct_conversations_alert_names_nobody() {
        let thread = ThreadId([5; 16]);
        let texts: Vec<String> = every_alert(thread, Category::Direct)
            .iter()
            .map(|a| a.text().1)
            .collect();
        assert_eq!(
            texts,
            [
                "Urgent message in a direct conversation — open Huddle",
                "You were mentioned in a direct conversation — open Huddle",
                "A task was assigned to you in a direct conversation — open Huddle",
            ]
        );
    }

    #[test]
    fn alert_text_names_no_patient_title_or_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = Node::create(dir.path(), b"notify test passphrase").unwrap();
        node.init_clinic(
            "Maple Street Therapy",
            "Dana",
            crate::core::policy::Role::Clinician,
        )
        .unwrap();
        let title = "Knee surgery follow-up";
        let patient_words = ["Jane", "Doe", "Knee", "surgery"];
        for category in [Category::Clinical, Category::Operations] {
            let thread = node
                .new_thread(Subject::Patient("Jane Doe".into()), category, title)
                .unwrap();
            for alert in every_alert(thread, category) {
                assert_eq!(alert.thread(), thread);
                let (summary, body) = alert.text();
                assert_eq!(summary, "Huddle");
                assert!(body.ends_with(" thread — open Huddle"), "{body}");
                assert!(body.contains(category.as_str()), "{body}");
                // What is shown: not even the thread id.
                let shown = format!("{summary}\n{body}");
                for secret in patient_words.iter().copied().chain([&thread.short()[..6]]) {
                    assert!(!shown.contains(secret), "{secret:?} in {shown:?}");
                }
                // What may be logged.
                let logged = format!("{alert:?}");
                for secret in patient_words {
                    assert!(!logged.contains(secret), "{secret:?} in {logged:?}");
                }
            }
        }
    }

    #[test]
    fn alert_text_says_what_happened_in_which_category() {
        let thread = ThreadId([7; 16]);
        let bodies: Vec<String> = Category::ALL
            .into_iter()
            .flat_map(|category| every_alert(thread, category))
            .map(|alert| alert.text().1)
            .collect();
        assert_eq!(
            bodies[0],
            "Urgent message in a clinical thread — open Huddle"
        );
        assert_eq!(
            bodies[1],
            "You were mentioned in a clinical thread — open Huddle"
        );
        assert_eq!(
            bodies[2],
            "A task was assigned to you in a clinical thread — open Huddle"
        );
        assert_eq!(
            bodies[9],
            "Urgent message in an operations thread — open Huddle"
        );
        let distinct: std::collections::BTreeSet<&String> = bodies.iter().collect();
        assert_eq!(distinct.len(), bodies.len());
    }

    #[test]
    fn recording_notifier_records_through_every_clone() {
        let recorder = RecordingNotifier::new();
        let mut notifier: Box<dyn Notifier> = Box::new(recorder.clone());
        let first = Alert::Urgent {
            thread: ThreadId([1; 16]),
            category: Category::Clinical,
        };
        let second = Alert::Mention {
            thread: ThreadId([2; 16]),
            category: Category::Billing,
        };
        assert!(recorder.shown().is_empty());
        notifier.notify(&first);
        notifier.notify(&second);
        assert_eq!(recorder.shown(), vec![first, second]);
    }

    /// Runs [`desktop_notifier_child`] in a child process whose D-Bus session address
    /// names a socket that does not exist.
    #[test]
    fn desktop_notifier_without_dbus_neither_blocks_nor_panics() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("no-bus");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "app::notify::tests::desktop_notifier_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env("HUDDLE_NOTIFY_CHILD", "1")
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", socket.display()),
            )
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("the child hung");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status}");
    }

    #[test]
    #[ignore = "run by desktop_notifier_without_dbus_neither_blocks_nor_panics"]
    fn desktop_notifier_child() {
        // Never show real notifications on a developer's desktop.
        if std::env::var_os("HUDDLE_NOTIFY_CHILD").is_none() {
            return;
        }
        let clicks = Arc::new(Mutex::new(Vec::new()));
        let recorded = clicks.clone();
        let mut notifier = DesktopNotifier::new(move |thread| {
            recorded.lock().unwrap().push(thread);
        });
        assert!(!notifier.service_unreachable());
        let unreachable = notifier.unreachable.clone();
        let started = Instant::now();
        for i in 0..(QUEUE * 4) {
            notifier.notify(&Alert::Urgent {
                thread: ThreadId([i as u8; 16]),
                category: Category::Clinical,
            });
        }
        // Generous: only a hang fails this.
        assert!(started.elapsed() < Duration::from_secs(5));
        notifier.shut_down().expect("the worker panicked");
        assert!(clicks.lock().unwrap().is_empty());
        assert!(
            unreachable.load(Ordering::Relaxed),
            "the failure was not noticed"
        );
    }
}
