//! The composer: text, urgent, an optional task (assignee only among members who may
//! read this thread; due date not in the past), @mentions of those members, and the
//! quick templates. Enter sends (a setting; Ctrl+Enter always does). A reply names the
//! message it answers above the text box until it is sent or *Cancel reply* is clicked.
//! Each thread keeps its own draft ([`Drafts`]): text typed in one patient's thread never
//! follows you into another's.

use egui::{RichText, Ui};

use super::{Actions, ViewState};
use crate::app::message::{NewTask, Request};
use crate::app::state::AppState;
use crate::core::ids::ThreadId;
use crate::core::policy::{Category, Role};
use crate::localtime;
use crate::node::ThreadDetail;

/// The quick templates staff asked for.
pub const TEMPLATES: [&str; 4] = [
    "New referral needs follow-up by end of today",
    "Client canceled — please confirm reschedule",
    "Insurance authorization still pending — hold scheduling",
    "Please upload evaluation for billing",
];

#[derive(Default)]
pub struct Composer {
    pub text: String,
    pub urgent: bool,
    pub with_task: bool,
    pub assignee: Option<String>,
    pub due: String,
    /// The message being answered, chosen with its *Reply* button.
    pub reply_to: Option<ReplyTo>,
    /// The text box takes the keyboard on the next frame (after *Reply*).
    pub focus: bool,
}

/// Every thread's unsent draft, and which are being sent (in the order sent: the bridge
/// answers each post, stored or refused, in that order).
#[derive(Default)]
pub struct Drafts {
    by_thread: std::collections::HashMap<ThreadId, Composer>,
    sending: std::collections::VecDeque<ThreadId>,
}

impl Drafts {
    /// `thread`'s draft (empty the first time).
    pub fn of(&mut self, thread: ThreadId) -> &mut Composer {
        self.by_thread.entry(thread).or_default()
    }

    /// `thread`'s draft was sent: it is kept (a refusal shows beside it) until stored.
    fn sending(&mut self, thread: ThreadId) {
        self.sending.push_back(thread);
    }

    /// The oldest post sent was stored: the draft it came from is emptied.
    pub fn sent(&mut self) {
        if let Some(thread) = self.sending.pop_front() {
            self.by_thread.remove(&thread);
        }
    }

    /// The oldest post sent was refused: its draft stays as typed.
    pub fn refused(&mut self) {
        self.sending.pop_front();
    }
}

/// The message a reply being written answers, as the composer shows it (in its own
/// thread's draft, so it is never sent from another thread).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub message: String,
    pub author: String,
    pub quote: String,
}

/// Members who may read a thread of `category`: the only ones a task or a mention may
/// name.
pub fn readers(state: &AppState, category: &str) -> Vec<String> {
    let Ok(category) = category.parse::<Category>() else {
        return Vec::new();
    };
    state
        .snapshot
        .members
        .iter()
        .filter(|m| {
            m.role.parse::<Role>().is_ok_and(|role| {
                state
                    .snapshot
                    .policy
                    .iter()
                    .any(|(r, c, may)| *r == role && *c == category && *may)
            })
        })
        .map(|m| m.name.clone())
        .collect()
}

/// A calendar beside the typed due date: it starts at the date typed (today when none
/// or not a date), never offers a year before this one, and writes the day chosen
/// into the field as YYYY-MM-DD.
fn due_picker(ui: &mut Ui, due: &mut String) {
    let today = localtime::today();
    let mut day = due.trim().parse().unwrap_or(today);
    let this_year = today.year();
    let picked = ui
        .add(
            egui_extras::DatePickerButton::new(&mut day)
                .id_salt("due-picker")
                // Its icon is not in the app's fonts: the button says what it is.
                .show_icon(false)
                .format("Calendar: %b %-d, %Y")
                // Day, month and year arrows only: no drop-downs inside the popup.
                .calendar_week(false)
                .combo_boxes(false)
                .start_end_years(this_year..=this_year.saturating_add(5)),
        )
        .on_hover_text("Choose the due date on a calendar");
    if picked.changed() {
        *due = day.to_string();
    }
}

pub fn show(
    ui: &mut Ui,
    state: &AppState,
    t: &ThreadDetail,
    view: &mut ViewState,
    out: &mut Actions,
) {
    let c = view.composer.of(t.thread);
    // A direct conversation is read by its participants, whatever their roles.
    let readers = match super::thread::is_direct(t) {
        true => t.restricted_to.clone(),
        false => readers(state, &t.category),
    };
    ui.add_space(4.0);
    if let Some(r) = &c.reply_to {
        let mut cancel = false;
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("Replying to {}: {}", r.author, r.quote)).italics());
            cancel = ui.small_button("Cancel reply").clicked();
        });
        if cancel {
            c.reply_to = None;
        }
    }
    ui.horizontal_wrapped(|ui| {
        egui::ComboBox::from_id_salt("templates")
            .selected_text("Templates")
            .show_ui(ui, |ui| {
                for text in TEMPLATES {
                    if ui.selectable_label(false, text).clicked() {
                        c.text = text.to_string();
                    }
                }
            });
        egui::ComboBox::from_id_salt("mention")
            .selected_text("@ Mention")
            .show_ui(ui, |ui| {
                for name in &readers {
                    if ui.selectable_label(false, name).clicked() {
                        if !c.text.is_empty() && !c.text.ends_with(' ') {
                            c.text.push(' ');
                        }
                        c.text.push_str(&format!("@{name} "));
                    }
                }
            });
        ui.checkbox(&mut c.urgent, "Urgent");
        ui.checkbox(&mut c.with_task, "Task");
    });
    let mut task_ok = true;
    if c.with_task {
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Assignee");
            egui::ComboBox::from_id_salt("assignee")
                .selected_text(c.assignee.as_deref().unwrap_or("Choose…"))
                .show_ui(ui, |ui| {
                    for name in &readers {
                        ui.selectable_value(&mut c.assignee, Some(name.clone()), name);
                    }
                })
                .response
                .labelled_by(l.id);
            let l = ui.label("Due (YYYY-MM-DD)");
            ui.add(egui::TextEdit::singleline(&mut c.due).desired_width(100.0))
                .labelled_by(l.id);
            due_picker(ui, &mut c.due);
        });
        let due = localtime::parse_due(&c.due);
        if let (false, Err(e)) = (c.due.is_empty(), &due) {
            ui.label(RichText::new(e.to_string()).color(ui.visuals().error_fg_color));
        }
        task_ok = due.is_ok() && c.assignee.as_ref().is_some_and(|a| readers.contains(a));
    }
    let enter_sends = view.prefs.enter_sends;
    let (hint, newline) = if enter_sends {
        (
            "Write a message (Enter sends, Shift+Enter: new line)",
            egui::KeyboardShortcut::new(egui::Modifiers::SHIFT, egui::Key::Enter),
        )
    } else {
        (
            "Write a message (Ctrl+Enter sends)",
            egui::KeyboardShortcut::new(egui::Modifiers::NONE, egui::Key::Enter),
        )
    };
    let text = ui.add(
        egui::TextEdit::multiline(&mut c.text)
            .desired_rows(2)
            .desired_width(f32::INFINITY)
            .return_key(newline)
            .hint_text(hint),
    );
    text.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Message"));
    if std::mem::take(&mut c.focus) {
        text.request_focus();
    }
    // The sending key: Ctrl+Enter always, and Enter with no modifier when Enter sends
    // (Shift+Enter is then a new line).
    let key_send = text.has_focus()
        && ui.input(|i| {
            i.events.iter().any(|e| match e {
                egui::Event::Key {
                    key: egui::Key::Enter,
                    pressed: true,
                    modifiers: m,
                    ..
                } => (enter_sends && m.is_none()) || (m.command && !m.shift),
                _ => false,
            })
        });
    let ready = !c.text.trim().is_empty() && task_ok;
    let send = ui.add_enabled(ready, egui::Button::new("Send")).clicked();
    if ready && (send || key_send) {
        let task = c.with_task.then(|| NewTask {
            assignee: c.assignee.clone().unwrap_or_default(),
            due: c.due.trim().to_string(),
        });
        out.send(Request::Post {
            thread: t.thread,
            text: c.text.trim().to_string(),
            urgent: c.urgent,
            task,
            reply_to: c.reply_to.as_ref().map(|r| r.message.clone()),
        });
        view.composer.sending(t.thread);
        // Emptied once the message is stored (`Form::Composer` done); a refusal shows
        // below with the text kept.
    }
    super::form_error(ui, state, crate::app::message::Form::Composer);
}
