//! The desktop app: the device's node in one window. Shaped like egui's own demo and
//! rerun: the UI keeps only view state; widgets return [`message::Request`]s, applied in
//! one place ([`HuddleApp::apply`]); a bridge thread ([`bridge`]) owns the tokio runtime,
//! the node and the network, and wakes the UI; each frame drains its updates under a
//! time budget. Nothing here blocks on the node, the disk or the network.

pub mod bridge;
pub mod message;
pub mod notify;
pub mod prefs;
pub mod qr;
pub mod screenshot;
pub mod state;
pub mod views;
pub mod words;

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::core::ids::ThreadId;
use bridge::{Bridge, BridgeConfig};
use message::{Phase, Request, Update};
use notify::Notifier;
use state::AppState;
use views::{Actions, Section, ViewState};

/// Idle time after which the app locks, unless configured otherwise.
pub const IDLE_LOCK: Duration = Duration::from_secs(15 * 60);
/// Time per frame spent applying the bridge's updates; the rest waits for the next frame.
pub const DRAIN_BUDGET: Duration = Duration::from_millis(4);

/// How the app starts.
pub struct AppOptions {
    pub bridge: BridgeConfig,
    pub idle_lock: Duration,
    /// Where alerts go; `None` shows OS desktop notifications.
    pub notifier: Option<Box<dyn Notifier>>,
    /// Unlock at start with this passphrase (`HUDDLE_PASSPHRASE`, as for the CLI).
    pub passphrase: Option<zeroize::Zeroizing<String>>,
    /// Save a PNG of the window once the clinic shows, then close (README screenshots).
    pub screenshot: Option<Screenshot>,
}

pub struct Screenshot {
    pub path: PathBuf,
    /// Open the most recent readable thread first.
    pub open_thread: bool,
    /// Show the admin's audit trail.
    pub audit: bool,
}

pub struct HuddleApp {
    bridge: Bridge,
    /// The data directory (the preferences file lives there).
    dir: PathBuf,
    pub state: AppState,
    pub view: ViewState,
    notifier: Box<dyn Notifier>,
    clicks: std_mpsc::Receiver<ThreadId>,
    idle_lock: Duration,
    last_active: Instant,
    screenshot: Option<ScreenshotRun>,
}

/// A screenshot in progress: when the clinic first showed, and whether it was asked for.
struct ScreenshotRun {
    shot: Screenshot,
    since: Option<Instant>,
    requested: bool,
}

impl HuddleApp {
    pub fn new(ctx: &egui::Context, options: AppOptions) -> Result<HuddleApp> {
        let waker = ctx.clone();
        let dir = options.bridge.dir.clone();
        let bridge = Bridge::start(options.bridge, move || waker.request_repaint())?;
        let (click_tx, clicks) = std_mpsc::channel();
        let notifier = match options.notifier {
            Some(n) => n,
            None => {
                let waker = ctx.clone();
                Box::new(notify::DesktopNotifier::new(move |thread| {
                    if click_tx.send(thread).is_ok() {
                        waker.request_repaint();
                    }
                }))
            }
        };
        if let Some(p) = options.passphrase {
            bridge.send(Request::Unlock(p));
        }
        let view = ViewState {
            prefs: prefs::Prefs::load(&dir),
            ..ViewState::default()
        };
        Ok(HuddleApp {
            bridge,
            dir,
            state: AppState::default(),
            view,
            notifier,
            clicks,
            idle_lock: options.idle_lock,
            last_active: Instant::now(),
            screenshot: options.screenshot.map(|shot| ScreenshotRun {
                shot,
                since: None,
                requested: false,
            }),
        })
    }

    /// Applies the bridge's waiting updates, for at most `budget`; whatever is left
    /// is applied next frame (a repaint is requested).
    pub fn drain(&mut self, ctx: &egui::Context, budget: Duration) {
        let start = Instant::now();
        while let Some(update) = self.bridge.try_recv() {
            self.on_update(update, ctx);
            if start.elapsed() >= budget {
                ctx.request_repaint();
                break;
            }
        }
        while let Ok(thread) = self.clicks.try_recv() {
            self.open(thread);
        }
    }

    fn on_update(&mut self, update: Update, ctx: &egui::Context) {
        let now = Instant::now();
        match &update {
            Update::Phase(phase) => tracing::debug!("phase: {phase:?}"),
            // Errors name no patient text (node and store errors name ids and paths).
            Update::Error(e) => tracing::debug!("error shown: {e}"),
            Update::FormError { form, text } => tracing::debug!("{form:?} refused: {text}"),
            Update::Snapshot(_) => tracing::debug!("snapshot"),
            _ => {}
        }
        if let Update::Phase(Phase::Open) = &update {
            self.last_active = now;
            // The first-run and unlock fields (passphrases among them) go once open.
            self.view.setup = views::SetupForm::default();
        }
        if let Update::FormError {
            form: message::Form::Composer,
            ..
        } = &update
        {
            self.view.composer.refused();
        }
        if let Update::FormDone(form) = &update {
            match form {
                message::Form::Composer => self.view.composer.sent(),
                message::Form::AddMember => self.view.admin.name.clear(),
                message::Form::NewThread => self.view.new_thread = None,
                message::Form::NewDirect => self.view.new_direct = None,
                message::Form::MessageEdit => self.view.message_edit = None,
                _ => {}
            }
        }
        if let Update::Created(thread) = &update {
            self.view.section = Section::Threads;
            self.view.selected = Some(*thread);
        }
        let invitation = matches!(update, Update::Invitation { .. });
        for alert in self.state.apply(update, now) {
            self.notifier.notify(&alert);
        }
        if invitation && let Some(inv) = &mut self.state.invitation {
            match qr::qr_image(&inv.text) {
                Ok(image) => {
                    inv.qr = Some(ctx.load_texture("invitation-qr", image, Default::default()))
                }
                Err(e) => tracing::warn!("no QR code for the invitation: {e}"),
            }
        }
    }

    /// Applies what the frame's widgets asked for.
    pub fn apply(&mut self, actions: Actions) {
        for r in actions.requests {
            // Sent again: the form's last refusal gives way to this attempt's answer.
            if let Some(form) = r.form() {
                self.state.form_errors.remove(&form);
            }
            self.bridge.send(r);
        }
        if actions.prefs_changed
            && let Err(e) = self.view.prefs.save(&self.dir)
        {
            self.state.toast(
                format!("The setting could not be saved ({e}); it holds until Huddle closes."),
                true,
                None,
                Instant::now(),
            );
        }
        if let Some(thread) = actions.open {
            self.open(thread);
        }
        if let Some(thread) = actions.select_restricted {
            self.view.selected = Some(thread);
            self.view.restrict = None;
            self.view.message_edit = None;
            self.view.break_glass.clear();
            self.state.thread = None;
            self.bridge.send(Request::CloseThread);
        }
        if actions.close_thread {
            self.view.selected = None;
            self.state.thread = None;
            self.bridge.send(Request::CloseThread);
        }
        if actions.dismiss_invitation {
            self.state.invitation = None;
        }
        if actions.lock {
            self.lock();
        }
    }

    fn open(&mut self, thread: ThreadId) {
        self.view.section = Section::Threads;
        if self.view.selected != Some(thread) {
            self.view.restrict = None;
            self.view.message_edit = None;
        }
        self.view.selected = Some(thread);
        if self
            .state
            .thread
            .as_ref()
            .is_none_or(|t| t.thread != thread)
        {
            self.state.thread = None;
        }
        self.bridge.send(Request::OpenThread(thread));
    }

    /// Drops everything decrypted from the screen at once; the bridge stops the node,
    /// which drops the keys.
    pub fn lock(&mut self) {
        if self.state.phase != Phase::Open {
            return;
        }
        self.state
            .apply(Update::Phase(Phase::Locked), Instant::now());
        self.view.selected = None;
        self.view.composer = Default::default();
        self.view.restrict = None;
        self.view.message_edit = None;
        self.view.break_glass.clear();
        self.bridge.send(Request::Lock);
    }

    /// Keyboard shortcuts and the idle lock.
    fn shortcuts_and_idle(&mut self, ctx: &egui::Context) {
        let now = Instant::now();
        let (active, search, escape) = ctx.input_mut(|i| {
            let active = !i.events.is_empty() || i.pointer.delta() != egui::Vec2::ZERO;
            let search = i.consume_key(egui::Modifiers::COMMAND, egui::Key::K);
            let escape = i.consume_key(egui::Modifiers::NONE, egui::Key::Escape);
            (active, search, escape)
        });
        if active {
            self.last_active = now;
        }
        if self.state.phase != Phase::Open {
            return;
        }
        if search {
            self.view.section = Section::Threads;
            self.view.focus_search = true;
        }
        if escape {
            if self.view.new_direct.as_ref().is_some_and(|t| t.is_empty()) {
                self.view.new_direct = None;
            } else if let Some(form) = &self.view.new_thread {
                // Escape closes the dialog only while nothing was typed in it: what was
                // typed goes only by Cancel.
                if form.is_blank() {
                    self.view.new_thread = None;
                }
            } else if self.view.selected.is_some() {
                self.apply(Actions {
                    close_thread: true,
                    ..Actions::default()
                });
            }
        }
        let idle = now.duration_since(self.last_active);
        let idle_lock = self.idle_lock();
        if idle >= idle_lock {
            self.lock();
            self.state
                .toast("Locked after inactivity".into(), false, None, now);
        } else {
            // Wake up in time to lock even if nothing else happens.
            ctx.request_repaint_after(idle_lock - idle);
        }
    }

    /// The idle time before the app locks: the user's choice (`--idle-lock`), never
    /// longer than the clinic's policy allows (45 CFR 164.312(a)(2)(iii)).
    fn idle_lock(&self) -> Duration {
        let policy = self
            .state
            .snapshot
            .safeguards
            .map(|s| Duration::from_secs(u64::from(s.idle_lock_minutes.max(1)) * 60));
        policy.map_or(self.idle_lock, |p| p.min(self.idle_lock))
    }

    fn screenshot(&mut self, ctx: &egui::Context) {
        let Some(run) = &mut self.screenshot else {
            return;
        };
        if run.requested || self.state.phase != Phase::Open || self.state.snapshot.status.is_none()
        {
            return;
        }
        let now = Instant::now();
        let since = *run.since.get_or_insert(now);
        let (open_thread, audit) = (run.shot.open_thread, run.shot.audit);
        if open_thread && self.view.selected.is_none() {
            let first = self.state.snapshot.threads.iter().find(|t| t.readable);
            if let Some(thread) = first.map(|t| t.thread) {
                self.open(thread);
            }
        }
        if audit && self.view.section != Section::Audit {
            self.view.section = Section::Audit;
            self.bridge.send(views::audit_request(&self.view));
        }
        let ready =
            (!open_thread || self.state.thread.is_some()) && (!audit || self.state.audit.is_some());
        if ready && now.duration_since(since) > Duration::from_secs(2) {
            let (path, waker) = (run_path(&self.screenshot), ctx.clone());
            let saved = egui::ScreenshotCallback::new(move |image| {
                match screenshot::save_png(&image, &path) {
                    Ok(()) => tracing::info!("screenshot saved to {}", path.display()),
                    Err(e) => tracing::error!("screenshot not saved: {e}"),
                }
                waker.send_viewport_cmd(egui::ViewportCommand::Close);
                waker.request_repaint();
            });
            ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(saved));
            if let Some(run) = &mut self.screenshot {
                run.requested = true;
            }
        }
        ctx.request_repaint_after(Duration::from_millis(200));
    }
}

fn run_path(run: &Option<ScreenshotRun>) -> PathBuf {
    run.as_ref()
        .map(|r| r.shot.path.clone())
        .unwrap_or_default()
}

impl eframe::App for HuddleApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain(ctx, DRAIN_BUDGET);
        self.state.notifications_off = self.notifier.unavailable();
        self.shortcuts_and_idle(ctx);
        let now = Instant::now();
        self.state.expire(now);
        if let Some(next) = self.state.toasts.iter().map(|t| t.until).min() {
            ctx.request_repaint_after(next.saturating_duration_since(now));
        }
        self.screenshot(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let mut actions = Actions::default();
        views::show(ui, &self.state, &mut self.view, &mut actions);
        self.apply(actions);
    }
}

/// Opens the app window on `options` (the `huddle` command with no subcommand).
pub fn run(options: AppOptions) -> Result<()> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Huddle")
            .with_inner_size([1120.0, 720.0])
            .with_min_inner_size([800.0, 560.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Huddle",
        native,
        Box::new(move |cc| Ok(Box::new(HuddleApp::new(&cc.egui_ctx, options)?))),
    )
    .map_err(|e| anyhow::anyhow!("the window could not open: {e}"))
}
