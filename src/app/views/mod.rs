//! The screens. Each takes the app's state read-only, its own view state (form fields,
//! selection) mutably, and pushes [`Request`]s instead of acting: the app applies them
//! in one place. Every control carries a label AccessKit exposes, which is also how
//! the UI tests find them.

mod admin;
mod audit;
mod composer;
mod peers;
mod restricted;
mod settings;
mod setup;
mod tasks;
mod thread;
mod threads;

use egui::{Align, Layout, RichText, Ui};

use super::message::{Phase, Request};
use super::state::AppState;
use crate::core::ids::ThreadId;

pub use composer::{Composer, Drafts};
pub use setup::SetupForm;
pub use threads::Filter;

/// Below this width the list and the open thread are two views, not side by side.
pub const NARROW: f32 = 900.0;

/// The main screen's sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Section {
    #[default]
    Threads,
    MyTasks,
    Peers,
    Admin,
    Audit,
    Settings,
}

/// What the UI alone keeps: never node data, only what the user is doing.
#[derive(Default)]
pub struct ViewState {
    pub section: Section,
    pub selected: Option<ThreadId>,
    pub filter: Filter,
    /// Each thread's unsent message.
    pub composer: Drafts,
    pub new_thread: Option<threads::NewThreadForm>,
    /// The new-direct-message dialog: the names ticked so far.
    pub new_direct: Option<std::collections::BTreeSet<String>>,
    pub setup: SetupForm,
    pub admin: admin::AdminForms,
    pub audit: audit::AuditForm,
    pub passphrase: settings::PassphraseForm,
    /// The open thread's restrict form: the members ticked so far.
    pub restrict: Option<std::collections::BTreeSet<String>>,
    /// An edit or retraction of one's own message under way in the open thread.
    pub message_edit: Option<thread::MessageEdit>,
    /// The reason typed for emergency access to the selected restricted thread.
    pub break_glass: String,
    /// Set by Ctrl+K: the search box takes focus next frame.
    pub focus_search: bool,
    /// This person's preferences on this device (saved when changed).
    pub prefs: crate::app::prefs::Prefs,
}

/// What the frame asks for besides node requests.
#[derive(Default)]
pub struct Actions {
    pub requests: Vec<Request>,
    pub open: Option<ThreadId>,
    /// A restricted thread chosen in the list: shown without its messages.
    pub select_restricted: Option<ThreadId>,
    pub close_thread: bool,
    pub lock: bool,
    pub dismiss_invitation: bool,
    /// The preferences changed: save them.
    pub prefs_changed: bool,
}

impl Actions {
    pub fn send(&mut self, r: Request) {
        self.requests.push(r);
    }
}

pub fn show(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    toasts(ui, state, out);
    match &state.phase {
        Phase::FirstRun => setup::first_run(ui, state, view, out),
        Phase::Locked => setup::unlock(ui, state, view, out),
        Phase::Working(what) => centered(ui, |ui| {
            ui.spinner();
            ui.label(what.as_str());
        }),
        Phase::Removed => centered(ui, |ui| {
            ui.heading("This device was removed from the clinic");
            ui.label(
                "An administrator revoked this device or removed its member. Huddle no \
                 longer syncs here and cannot show the clinic's threads.",
            );
        }),
        Phase::Open => main(ui, state, view, out),
    }
}

/// A form's last refusal, in plain words, on the line reserved for it below the form
/// (blank when there is none, so nothing moves when one appears).
pub fn form_error(ui: &mut Ui, state: &AppState, form: crate::app::message::Form) {
    let text = state.form_errors.get(&form).map_or(" ", String::as_str);
    ui.add(egui::Label::new(RichText::new(text).color(ui.visuals().error_fg_color)).wrap());
}

/// The request that loads the audit screen for the filters it shows.
/// Whether this device's member is an admin.
pub fn is_admin(state: &AppState) -> bool {
    state.snapshot.status.as_ref().is_some_and(|s| s.admin)
}

pub fn audit_request(view: &ViewState) -> Request {
    audit::load(view)
}

/// A column in the middle of the window, for the screens before the clinic is open.
pub fn centered(ui: &mut Ui, add: impl FnOnce(&mut Ui)) {
    egui::CentralPanel::default().show(ui, |ui| {
        ui.with_layout(Layout::top_down(Align::Center), |ui| {
            ui.add_space((ui.available_height() * 0.15).min(120.0));
            ui.set_max_width(420.0);
            add(ui);
        });
    });
}

fn main(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    egui::Panel::top("bar").show(ui, |ui| top_bar(ui, state, view, out));
    let narrow = ui.available_width() < NARROW;
    match view.section {
        Section::Threads => {
            let restricted = view
                .selected
                .and_then(|t| state.summary(&t))
                .filter(|s| restricted::is_restricted(s))
                .cloned();
            let open = view.selected.is_some() && state.thread.is_some();
            if narrow {
                egui::CentralPanel::default().show(ui, |ui| {
                    if let Some(s) = &restricted {
                        restricted::show(ui, s, is_admin(state), view, out);
                    } else if open {
                        thread::show(ui, state, view, out, true);
                    } else {
                        threads::show(ui, state, view, out);
                    }
                });
            } else {
                egui::Panel::left("list")
                    .resizable(true)
                    .default_size(360.0)
                    .min_size(280.0)
                    .show(ui, |ui| threads::show(ui, state, view, out));
                egui::CentralPanel::default().show(ui, |ui| {
                    if let Some(s) = &restricted {
                        restricted::show(ui, s, is_admin(state), view, out);
                    } else if open {
                        thread::show(ui, state, view, out, false);
                    } else {
                        ui.centered_and_justified(|ui| {
                            ui.label(RichText::new("Choose a thread").weak());
                        });
                    }
                });
            }
        }
        Section::MyTasks => {
            egui::CentralPanel::default().show(ui, |ui| tasks::show(ui, state, view, out));
        }
        Section::Peers => {
            egui::CentralPanel::default().show(ui, |ui| peers::show(ui, state));
        }
        Section::Admin => {
            egui::CentralPanel::default().show(ui, |ui| admin::show(ui, state, view, out));
        }
        Section::Audit => {
            egui::CentralPanel::default().show(ui, |ui| audit::show(ui, state, view, out));
        }
        Section::Settings => {
            egui::CentralPanel::default().show(ui, |ui| settings::show(ui, state, view, out));
        }
    }
    if let Some(form) = &mut view.new_thread {
        let mut close = false;
        threads::new_thread_dialog(ui, state, form, &mut close, out);
        if close {
            view.new_thread = None;
        }
    }
    if let Some(ticked) = &mut view.new_direct {
        let mut close = false;
        threads::new_direct_dialog(ui, state, ticked, &mut close, out);
        if close {
            view.new_direct = None;
        }
    }
}

fn top_bar(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    let mut below = false;
    ui.horizontal_wrapped(|ui| {
        let status = state.snapshot.status.as_ref();
        let clinic = status
            .and_then(|s| s.clinic_name.as_deref())
            .unwrap_or("Huddle");
        ui.heading(clinic);
        if let Some(s) = status
            && let (Some(m), Some(r)) = (&s.member, &s.role)
        {
            ui.label(RichText::new(format!("{m} · {r}")).weak());
        }
        ui.separator();
        let admin = status.is_some_and(|s| s.admin);
        let mut sections = vec![
            (Section::Threads, "Threads"),
            (Section::MyTasks, "My tasks"),
            (Section::Peers, "Devices"),
        ];
        if admin {
            sections.push((Section::Admin, "Admin"));
            sections.push((Section::Audit, "Audit trail"));
        }
        sections.push((Section::Settings, "Settings"));
        for (section, label) in sections {
            if ui
                .selectable_label(view.section == section, label)
                .clicked()
            {
                view.section = section;
                if section == Section::Audit {
                    out.send(audit_request(view));
                }
            }
        }
        // Where the tabs leave too little room (the 800 px layout), the sync line goes
        // on a row of its own below them rather than over them.
        // (A wrapping row's available width is a whole row: measure what is left of it.)
        let left = ui.max_rect().right() - ui.cursor().left();
        below = left < peers::sync_line_width(ui, state) + 60.0;
        if !below {
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                lock_and_sync(ui, state, out)
            });
        }
    });
    if below {
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            lock_and_sync(ui, state, out)
        });
    }
}

fn lock_and_sync(ui: &mut Ui, state: &AppState, out: &mut Actions) {
    if ui
        .button("Lock")
        .on_hover_text("Lock Huddle: keys leave memory until the passphrase is entered")
        .clicked()
    {
        out.lock = true;
    }
    peers::sync_line(ui, state);
}

/// Widest a toast grows before its text wraps.
const TOAST_WIDTH: f32 = 420.0;

fn toasts(ui: &mut Ui, state: &AppState, out: &mut Actions) {
    if state.toasts.is_empty() {
        return;
    }
    egui::Area::new(egui::Id::unique("toasts"))
        .anchor(egui::Align2::RIGHT_BOTTOM, [-12.0, -12.0])
        .order(egui::Order::Tooltip)
        .show(ui.ctx(), |ui| {
            // At most `MAX_TOASTS`: `AppState::toast` lets the oldest go.
            for t in &state.toasts {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    let text = if t.error {
                        RichText::new(&t.text).color(ui.visuals().error_fg_color)
                    } else {
                        RichText::new(&t.text)
                    };
                    // Sized to its text: one line up to the widest toast, wrapped past it
                    // (an area has no width of its own to wrap into).
                    let font = egui::TextStyle::Body.resolve(ui.style());
                    let one_line = ui
                        .painter()
                        .layout_no_wrap(t.text.clone(), font, egui::Color32::WHITE)
                        .size()
                        .x;
                    ui.set_width(one_line.min(TOAST_WIDTH) + 2.0);
                    let r = ui.add(egui::Label::new(text).wrap().sense(egui::Sense::click()));
                    if let (true, Some(thread)) = (r.clicked(), t.thread) {
                        out.open = Some(thread);
                    }
                });
            }
        });
}
