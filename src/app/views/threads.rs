//! The thread list: filters (patient or topic, category), local search, unread and
//! urgent badges and open-task counts; threads this role cannot read appear only as
//! locked. Rows are laid out with `ScrollArea::show_rows`, so 10³ threads cost only the
//! rows on screen. Direct conversations have a tab of their own (and never count as
//! patients or topics). Also the new-thread and new-direct-message dialogs.

use std::collections::BTreeSet;

use egui::{Color32, RichText, Ui};

use super::setup::field;
use super::{Actions, ViewState};
use crate::app::message::Request;
use crate::app::state::AppState;
use crate::core::ids::ThreadId;
use crate::core::policy::Category;
use crate::core::thread::Subject;
use crate::node::ThreadSummary;

/// Height of one row of the list.
pub const ROW: f32 = 44.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    All,
    Patients,
    Topics,
    /// Direct conversations (listed apart: never among patients or topics).
    Direct,
}

/// Typing pause after which message text is searched.
pub const SEARCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Default)]
pub struct Filter {
    pub search: String,
    /// When the search text last changed, until its message search is sent.
    pub typed_at: Option<std::time::Instant>,
    pub kind: Kind,
    pub category: Option<Category>,
}

impl Filter {
    /// Whether a thread passes: title, subject label, or message text (`hits`, found
    /// by the node for this query), all searched on this device.
    pub fn keeps(&self, s: &ThreadSummary, hits: Option<&(String, BTreeSet<ThreadId>)>) -> bool {
        if let Some(c) = self.category
            && s.category != c.as_str()
        {
            return false;
        }
        let subject = s.subject.as_ref();
        let direct = is_direct(s);
        match self.kind {
            Kind::All => {}
            Kind::Direct if direct => {}
            Kind::Patients if !direct && matches!(subject, Some(Subject::Patient(_))) => {}
            Kind::Topics if !direct && matches!(subject, Some(Subject::Topic(_))) => {}
            _ => return false,
        }
        let q = self.search.trim().to_lowercase();
        if q.is_empty() {
            return true;
        }
        let label = match subject {
            Some(Subject::Patient(l) | Subject::Topic(l)) => l.as_str(),
            None => "",
        };
        s.title.as_deref().unwrap_or("").to_lowercase().contains(&q)
            || label.to_lowercase().contains(&q)
            || hits.is_some_and(|(query, threads)| {
                query.trim().to_lowercase() == q && threads.contains(&s.thread)
            })
    }
}

/// Whether a listed thread is a direct conversation.
pub fn is_direct(s: &ThreadSummary) -> bool {
    s.category == Category::Direct.as_str()
}

/// "1 open task", "3 open tasks".
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A thread's subject as the list shows it.
pub fn subject_line(s: Option<&Subject>) -> String {
    match s {
        Some(Subject::Patient(l)) => format!("Patient: {l}"),
        Some(Subject::Topic(l)) => format!("Topic: {l}"),
        None => String::new(),
    }
}

pub fn show(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    ui.horizontal(|ui| {
        let search = ui.add(
            egui::TextEdit::singleline(&mut view.filter.search)
                .hint_text("Search (Ctrl+K)")
                .desired_width(ui.available_width() - 190.0),
        );
        search.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Search threads")
        });
        if std::mem::take(&mut view.focus_search) {
            search.request_focus();
        }
        // Message text is searched by the node once typing pauses.
        if search.changed() {
            view.filter.typed_at = Some(std::time::Instant::now());
        }
        if let Some(at) = view.filter.typed_at {
            let wait = SEARCH_PAUSE.saturating_sub(at.elapsed());
            if wait.is_zero() {
                view.filter.typed_at = None;
                out.send(Request::Search(view.filter.search.clone()));
            } else {
                ui.ctx().request_repaint_after(wait);
            }
        }
        if ui.button("New thread").clicked() {
            view.new_thread = Some(NewThreadForm::default());
        }
        if ui
            .button("Message…")
            .on_hover_text("New direct message")
            .clicked()
        {
            view.new_direct = Some(BTreeSet::new());
        }
    });
    ui.horizontal(|ui| {
        let f = &mut view.filter;
        ui.selectable_value(&mut f.kind, Kind::All, "All");
        ui.selectable_value(&mut f.kind, Kind::Patients, "Patients");
        ui.selectable_value(&mut f.kind, Kind::Topics, "Topics");
        ui.selectable_value(&mut f.kind, Kind::Direct, "Direct");
        egui::ComboBox::from_id_salt("category")
            .selected_text(f.category.map_or("Any category", |c| c.as_str()))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut f.category, None, "Any category");
                for c in Category::ALL {
                    ui.selectable_value(&mut f.category, Some(c), c.as_str());
                }
            });
    });
    ui.separator();
    let rows: Vec<&ThreadSummary> = state
        .snapshot
        .threads
        .iter()
        .filter(|s| view.filter.keeps(s, state.search_hits.as_ref()))
        .collect();
    if rows.is_empty() {
        ui.label(RichText::new("No threads yet: start one with New thread").weak());
        return;
    }
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show_rows(ui, ROW, rows.len(), |ui, range| {
            for s in &rows[range] {
                row(ui, s, view, out);
            }
        });
}

fn row(ui: &mut Ui, s: &ThreadSummary, view: &ViewState, out: &mut Actions) {
    let selected = view.selected == Some(s.thread);
    let (title, detail) = if s.readable && is_direct(s) {
        (
            s.title.clone().unwrap_or_default(),
            "Direct message · only its participants read it".to_string(),
        )
    } else if s.readable {
        (
            s.title.clone().unwrap_or_default(),
            format!("{} · {}", subject_line(s.subject.as_ref()), s.category),
        )
    } else if super::restricted::is_restricted(s) {
        (
            crate::node::RESTRICTED_LABEL.to_string(),
            format!("{} · only its participants read it", s.category),
        )
    } else {
        (
            format!("Locked {} thread", s.category),
            "Your role cannot read this thread".to_string(),
        )
    };
    let mut badges = Vec::new();
    if s.urgent_unread > 0 {
        badges.push(format!("{} urgent", s.urgent_unread));
    }
    if s.unread > 0 {
        badges.push(format!("{} unread", s.unread));
    }
    if s.open_tasks > 0 {
        badges.push(plural(s.open_tasks, "open task"));
    }
    let name = if badges.is_empty() {
        title.clone()
    } else {
        format!("{title} ({})", badges.join(", "))
    };
    let r = ui
        .allocate_ui([ui.available_width(), ROW].into(), |ui| {
            ui.vertical(|ui| {
                ui.horizontal(|ui| {
                    let t = RichText::new(&title);
                    ui.label(if s.unread > 0 { t.strong() } else { t });
                    if s.urgent_unread > 0 {
                        ui.label(
                            RichText::new("URGENT")
                                .color(Color32::WHITE)
                                .background_color(Color32::from_rgb(190, 30, 30)),
                        );
                    }
                    if s.unread > 0 {
                        ui.label(RichText::new(s.unread.to_string()).strong());
                    }
                    if s.open_tasks > 0 {
                        ui.label(RichText::new(plural(s.open_tasks, "open task")).weak());
                    }
                });
                ui.label(RichText::new(detail).small().weak());
            })
        })
        .response;
    let r = ui.interact(
        r.rect,
        ui.scope_id().with(("thread", s.thread)),
        egui::Sense::click(),
    );
    r.widget_info(|| egui::WidgetInfo::selected(egui::Role::Button, true, selected, &name));
    if selected {
        ui.painter().rect_stroke(
            r.rect,
            4.0,
            ui.visuals().selection.stroke,
            egui::StrokeKind::Inside,
        );
    }
    if r.clicked() && s.readable {
        out.open = Some(s.thread);
    } else if r.clicked() && super::restricted::is_restricted(s) {
        out.select_restricted = Some(s.thread);
    }
}

/// The new-thread dialog's fields.
pub struct NewThreadForm {
    pub patient: bool,
    pub label: String,
    pub title: String,
    pub category: Option<Category>,
}

impl Default for NewThreadForm {
    fn default() -> Self {
        NewThreadForm {
            patient: true,
            label: String::new(),
            title: String::new(),
            category: None,
        }
    }
}

impl NewThreadForm {
    /// Nothing typed or chosen yet.
    pub fn is_blank(&self) -> bool {
        self.label.trim().is_empty() && self.title.trim().is_empty() && self.category.is_none()
    }
}

/// Offers only the categories this role may read.
pub fn new_thread_dialog(
    ui: &mut Ui,
    state: &AppState,
    form: &mut NewThreadForm,
    close: &mut bool,
    out: &mut Actions,
) {
    let readable = readable_categories(state);
    let modal = egui::Modal::new(egui::Id::unique("new-thread")).show(ui.ctx(), |ui| {
        ui.set_width(360.0);
        ui.heading("New thread");
        ui.horizontal(|ui| {
            ui.selectable_value(&mut form.patient, true, "About a patient");
            ui.selectable_value(&mut form.patient, false, "About a topic");
        });
        let label = if form.patient { "Patient" } else { "Topic" };
        field(ui, label, &mut form.label, false);
        field(ui, "Title", &mut form.title, false);
        // The categories as buttons in the dialog itself: a pop-up list would be a
        // layer of its own, which can end up behind the dialog, and a click on it
        // would count as a click outside the dialog.
        ui.label("Category");
        ui.horizontal_wrapped(|ui| {
            for c in &readable {
                ui.selectable_value(&mut form.category, Some(*c), c.as_str());
            }
        });
        let missing = missing_fields(form);
        ui.horizontal(|ui| {
            let create = ui
                .add_enabled(missing.is_none(), egui::Button::new("Create thread"))
                .on_disabled_hover_text(missing.unwrap_or_default());
            if let (true, Some(category)) = (create.clicked(), form.category) {
                let label = form.label.trim().to_string();
                out.send(Request::NewThread {
                    subject: if form.patient {
                        Subject::Patient(label)
                    } else {
                        Subject::Topic(label)
                    },
                    category,
                    title: form.title.trim().to_string(),
                });
                // Closed when the thread is created (`Form::NewThread` done); a refusal
                // shows below, with everything typed kept.
            }
            if ui.button("Cancel").clicked() {
                *close = true;
            }
        });
        // Why Create waits, in words, on a line of its own that is always there (so
        // nothing moves under the pointer).
        ui.label(RichText::new(missing.unwrap_or(" ")).weak());
        super::form_error(ui, state, crate::app::message::Form::NewThread);
    });
    // Kept until Cancel or Create: a click beside the dialog or Escape loses nothing.
    let _ = modal;
}

/// The new-direct-message dialog: tick the members to write to (this device's member
/// takes part too); with exactly the people of a conversation already here, that one
/// opens.
pub fn new_direct_dialog(
    ui: &mut Ui,
    state: &AppState,
    ticked: &mut BTreeSet<String>,
    close: &mut bool,
    out: &mut Actions,
) {
    let me = state.my_name();
    let _ = egui::Modal::new(egui::Id::unique("new-direct")).show(ui.ctx(), |ui| {
        ui.set_width(360.0);
        ui.heading("New direct message");
        ui.label(
            RichText::new(
                "Only the people you choose and you can read it: no admin, no emergency \
                 access, and no one can be added later.",
            )
            .weak(),
        );
        ui.add_space(4.0);
        egui::ScrollArea::vertical()
            .max_height(240.0)
            .show(ui, |ui| {
                for m in state
                    .snapshot
                    .members
                    .iter()
                    .filter(|m| Some(m.name.as_str()) != me)
                {
                    let mut on = ticked.contains(&m.name);
                    if ui
                        .checkbox(&mut on, format!("{} ({})", m.name, m.role))
                        .changed()
                    {
                        if on {
                            ticked.insert(m.name.clone());
                        } else {
                            ticked.remove(&m.name);
                        }
                    }
                }
            });
        let missing = ticked
            .is_empty()
            .then_some("Tick at least one person to write to.");
        ui.horizontal(|ui| {
            let start = ui
                .add_enabled(missing.is_none(), egui::Button::new("Start conversation"))
                .on_disabled_hover_text(missing.unwrap_or_default());
            if start.clicked() {
                out.send(Request::NewDirect {
                    names: ticked.iter().cloned().collect(),
                });
            }
            if ui.button("Cancel").clicked() {
                *close = true;
            }
        });
        ui.label(RichText::new(missing.unwrap_or(" ")).weak());
        super::form_error(ui, state, crate::app::message::Form::NewDirect);
    });
}

/// What the new-thread form still needs, in words (`None`: it can be created).
fn missing_fields(form: &NewThreadForm) -> Option<&'static str> {
    let label = form.label.trim().is_empty();
    if label && form.patient {
        Some("Write the patient's label (as the clinic's records name them).")
    } else if label {
        Some("Write the topic.")
    } else if form.title.trim().is_empty() {
        Some("Write a title.")
    } else if form.category.is_none() {
        Some("Choose a category: it decides which roles read the thread.")
    } else {
        None
    }
}

/// The categories this device's role may read, from the clinic's policy.
pub fn readable_categories(state: &AppState) -> Vec<Category> {
    let role = state
        .snapshot
        .status
        .as_ref()
        .and_then(|s| s.role.as_deref())
        .and_then(|r| r.parse::<crate::core::policy::Role>().ok());
    state
        .snapshot
        .policy
        .iter()
        .filter(|(r, _, may)| Some(*r) == role && *may)
        .map(|(_, c, _)| *c)
        .collect()
}
