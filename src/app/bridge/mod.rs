//! The bridge thread: it owns the tokio runtime, the node (through [`Host`]) and the
//! network, so the UI thread never waits on any of them. The UI sends [`Request`]s; the
//! bridge answers with [`Update`]s on a channel and wakes the UI with
//! `request_repaint`. Node changes arrive coalesced ([`crate::node::Watch`]) and are
//! turned into at most one fresh [`Snapshot`] per [`REFRESH_EVERY`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{Notify, mpsc};

use super::message::{Phase, Request, Update};
use crate::core::ids::ThreadId;
use crate::host::Host;
use crate::store::Store;

/// The most often the views are rebuilt while changes keep arriving (a first sync).
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// How the app's node runs.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    pub dir: PathBuf,
    pub net: crate::host::NetOptions,
}

/// The UI's end of the bridge.
pub struct Bridge {
    requests: mpsc::UnboundedSender<Request>,
    updates: std_mpsc::Receiver<Update>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Signals that the bridge's node has stopped.
    stopped: std_mpsc::Receiver<()>,
}

/// The longest the app waits on close for its node to stop and flush.
pub const STOP_WAIT: Duration = Duration::from_secs(15);

impl Bridge {
    /// Starts the bridge thread; `wake` is called after each update is sent.
    pub fn start(config: BridgeConfig, wake: impl Fn() + Send + Sync + 'static) -> Result<Bridge> {
        let (requests, incoming) = mpsc::unbounded_channel();
        let (updates_tx, updates) = std_mpsc::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("huddle-bridge")
            .enable_all()
            .build()
            .context("starting the bridge's runtime")?;
        let out = Out {
            tx: updates_tx,
            wake: Arc::new(wake),
        };
        let (stopped_tx, stopped) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("huddle-bridge".into())
            .spawn(move || {
                runtime.block_on(Worker::new(config, out).run(incoming));
                let _ = stopped_tx.send(());
            })
            .context("starting the bridge thread")?;
        Ok(Bridge {
            requests,
            updates,
            thread: Some(thread),
            stopped,
        })
    }

    pub fn send(&self, request: Request) {
        // A closed bridge (the app is closing) has nothing left to do with requests.
        let _ = self.requests.send(request);
    }

    /// The next update, if one is waiting.
    pub fn try_recv(&self) -> Option<Update> {
        self.updates.try_recv().ok()
    }
}

impl Drop for Bridge {
    /// Stops the node cleanly (the store is flushed and closed) before the app exits.
    fn drop(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.requests, closed));
        match self.stopped.recv_timeout(STOP_WAIT) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                tracing::error!(
                    "the node did not stop within {} s; closing anyway",
                    STOP_WAIT.as_secs()
                );
            }
        }
    }
}

/// The bridge's sending side: each update wakes the UI.
#[derive(Clone)]
struct Out {
    tx: std_mpsc::Sender<Update>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Out {
    fn send(&self, update: Update) {
        if self.tx.send(update).is_ok() {
            (self.wake)();
        }
    }

    /// A failure nobody asked for by a form: a toast, in plain words (the log keeps
    /// nothing of it: errors may name a thread's patient label).
    fn error(&self, e: &anyhow::Error) {
        self.send(Update::Error(crate::app::words::plain(e)));
    }

    /// A form's request refused: shown beside the form, in plain words.
    fn form_error(&self, form: crate::app::message::Form, e: &anyhow::Error) {
        self.send(Update::FormError {
            form,
            text: crate::app::words::plain(e),
        });
    }
}

struct Worker {
    config: BridgeConfig,
    out: Out,
    host: Option<Running>,
    /// The running node's peers and sync progress (kept apart from `host` so that
    /// both can be awaited at once).
    peers: Option<tokio::sync::watch::Receiver<Vec<crate::net::PeerView>>>,
    progress: Option<tokio::sync::watch::Receiver<crate::net::SyncProgress>>,
    open_thread: Option<ThreadId>,
    /// A join in progress (enrollment and first sync), on the running host's network.
    joining: Option<tokio::task::JoinHandle<Result<crate::net::Stats, crate::net::NetError>>>,
    /// Whether the UI was told the clinic is open since the node started.
    shown_open: bool,
    /// When the first emergency grant announced in the open thread ends: the views
    /// are rebuilt then (a grant's end changes who reads, without any new envelope).
    grant_ends: Option<Instant>,
}

/// A running node and what watches it.
struct Running {
    host: Host,
    changed: Arc<Notify>,
    watch: crate::node::Watch,
    /// Locked: the node is closed and syncs blind ([`crate::node::blind`]).
    locked: bool,
}

impl Worker {
    fn new(config: BridgeConfig, out: Out) -> Worker {
        Worker {
            config,
            out,
            host: None,
            peers: None,
            progress: None,
            open_thread: None,
            joining: None,
            shown_open: false,
            grant_ends: None,
        }
    }

    fn dir(&self) -> &Path {
        &self.config.dir
    }

    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let phase = if Store::exists(self.dir()) {
            Phase::Locked
        } else {
            Phase::FirstRun
        };
        self.out.send(Update::Phase(phase));
        // Changes keep coming during a sync: at most one snapshot per REFRESH_EVERY.
        let mut due: Option<Instant> = None;
        let mut last = Instant::now();
        loop {
            let changed = self.host.as_ref().map(|r| r.changed.clone());
            let changed = async {
                match changed {
                    Some(c) => c.notified().await,
                    None => std::future::pending().await,
                }
            };
            let refresh_at = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                request = requests.recv() => match request {
                    Some(r) => self.handle(r).await,
                    None => break,
                },
                () = changed => {
                    due.get_or_insert((last + REFRESH_EVERY).max(Instant::now()));
                }
                () = tokio::time::sleep_until(refresh_at.into()), if due.is_some() => {
                    due = None;
                    last = Instant::now();
                    self.refresh(false).await;
                }
                () = sleep_until(self.grant_ends) => {
                    self.grant_ends = None;
                    self.refresh(true).await;
                }
                Some(joined) = lifecycle::join_finished(self.joining.as_mut()) => {
                    self.joining = None;
                    self.joined(joined).await;
                }
                Some(()) = watch_changed(self.peers.as_mut()) => {
                    let peers = self.peers.as_mut().map(|p| p.borrow_and_update().clone());
                    self.out.send(Update::Peers(peers.unwrap_or_default()));
                }
                Some(()) = watch_changed(self.progress.as_mut()) => {
                    if let Some(p) = self.progress.as_mut().map(|p| *p.borrow_and_update()) {
                        self.out.send(Update::Progress(p));
                    }
                }
            }
        }
        self.stop().await;
    }

    async fn stop(&mut self) {
        if let Some(join) = self.joining.take() {
            join.abort();
        }
        self.peers = None;
        self.progress = None;
        if let Some(running) = self.host.take() {
            running.host.stop().await;
        }
        self.open_thread = None;
        self.grant_ends = None;
    }

    async fn handle(&mut self, request: Request) {
        let form = request.form();
        let result = match request {
            Request::Found {
                clinic,
                name,
                role,
                passphrase,
            } => self.found(&clinic, &name, role, passphrase).await,
            Request::Join {
                invite,
                peers,
                passphrase,
            } => self.join(&invite, &peers, passphrase).await,
            Request::Unlock(passphrase) => self.unlock_counted(passphrase).await,
            Request::Lock => self.lock().await,
            Request::OpenThread(thread) => {
                self.open_thread = Some(thread);
                match self.show_thread().await {
                    Ok(()) => self.record_view(thread).await,
                    Err(e) => Err(e),
                }
            }
            Request::Search(query) => self.search(query).await,
            Request::CloseThread => {
                self.open_thread = None;
                self.grant_ends = None;
                Ok(())
            }
            Request::Audit(query) => self.audit_page(query).await,
            Request::VerifyAudit => self.verify_audit().await,
            Request::ExportAudit { query, path } => self.export_audit(query, path).await,
            Request::ChangePassphrase { current, new } => {
                self.change_passphrase(current, new).await
            }
            other => self.change(other).await,
        };
        if let (Ok(()), Some(form)) = (&result, form) {
            self.out.send(Update::FormDone(form));
        }
        if let Err(e) = result {
            match form {
                Some(form) => self.out.form_error(form, &e),
                None => self.out.error(&e),
            }
        }
    }
}

/// Resolves at `at`; never when there is no time to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves when a watched value changed; `None` when there is nothing to watch.
async fn watch_changed<T>(rx: Option<&mut tokio::sync::watch::Receiver<T>>) -> Option<()> {
    match rx {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

mod actions;
mod lifecycle;
mod safeguards;

pub use safeguards::{MAX_AUDIT_ROWS, MAX_FILTER_CHARS, audit_filter};
