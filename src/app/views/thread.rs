//! An open thread: messages with author, role, device and local time (UTC on hover),
//! urgent ones highlighted, who read each, and task cards with a "Mark done" button;
//! the composer below. Active emergency grants are announced on top; "Restrict…"
//! names the members who may read the thread (`huddle thread restrict`). One's own
//! messages have *Edit* (marked "edited" once saved) and *Retract* (after a confirmation,
//! shown to everyone as "message retracted"). Every message has *Reply*; a reply shows
//! the start of the message it answers above its text, and the original counts its
//! replies. A direct conversation is headed by its participants and offers no
//! *Restrict…* (its participants are fixed).

use std::collections::BTreeSet;

use egui::{Color32, RichText, Ui};

use super::composer::{self, ReplyTo};
use super::threads::subject_line;
use super::{Actions, ViewState};
use crate::app::message::Request;
use crate::app::state::AppState;
use crate::core::thread::{Priority, TaskStatus};
use crate::localtime;
use crate::node::{MessageDetail, ThreadDetail};

pub fn show(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions, narrow: bool) {
    let Some(t) = &state.thread else { return };
    let direct = is_direct(t);
    ui.horizontal(|ui| {
        if narrow
            && ui
                .button("Back to threads")
                .on_hover_text("Back (Esc)")
                .clicked()
        {
            out.close_thread = true;
        }
        ui.heading(&t.title);
        // A direct conversation's participants are fixed: nothing to restrict or lift.
        if !direct && view.restrict.is_none() && ui.button("Restrict…").clicked() {
            view.restrict = Some(BTreeSet::new());
        }
    });
    let about = match direct {
        true => "Direct message · only its participants read it, no one can be added".into(),
        false => format!("{} · {}", subject_line(Some(&t.subject)), t.category),
    };
    ui.label(
        RichText::new(format!(
            "{about} · started by {} on {}",
            t.created_by,
            localtime::local(t.created_ms)
        ))
        .weak(),
    );
    emergencies(ui, t);
    if !direct && !t.restricted_to.is_empty() {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("Restricted to {}", t.restricted_to.join(", "))).weak());
            if super::is_admin(state) && ui.button("Lift restriction").clicked() {
                out.send(Request::Unrestrict { thread: t.thread });
            }
        });
    }
    restrict(ui, state, t, view, out);
    ui.separator();
    egui::Panel::bottom("composer")
        .resizable(false)
        .show(ui, |ui| composer::show(ui, state, t, view, out));
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .stick_to_bottom(true)
            .show(ui, |ui| {
                let me = state.my_name();
                let draft = view.composer.of(t.thread);
                for m in &t.messages {
                    let card = Card { thread: t, m, me };
                    message(ui, &card, &mut view.message_edit, draft, out);
                    if view
                        .message_edit
                        .as_ref()
                        .is_some_and(|e| e.message() == m.id)
                    {
                        super::form_error(ui, state, crate::app::message::Form::MessageEdit);
                    }
                    ui.add_space(6.0);
                }
            });
    });
}

/// Whether the thread is a direct conversation.
pub fn is_direct(t: &ThreadDetail) -> bool {
    t.category == crate::core::policy::Category::Direct.as_str()
}

/// Announces the emergency grants active on this thread.
fn emergencies(ui: &mut Ui, t: &ThreadDetail) {
    let red = ui.visuals().error_fg_color;
    for e in t.emergencies.iter().filter(|e| e.active) {
        egui::Frame::group(ui.style())
            .fill(red.gamma_multiply(0.12))
            .stroke(egui::Stroke::new(1.5, red))
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.label(
                    RichText::new(format!(
                        "Emergency access by {} until {}",
                        e.member,
                        localtime::local(e.until_ms)
                    ))
                    .strong(),
                );
                ui.label(format!("Reason: {}", e.reason));
            });
    }
}

/// The restrict form: tick the members who may read the thread.
fn restrict(
    ui: &mut Ui,
    state: &AppState,
    t: &ThreadDetail,
    view: &mut ViewState,
    out: &mut Actions,
) {
    let Some(ticked) = &mut view.restrict else {
        return;
    };
    let mut close = false;
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(RichText::new("Only the members ticked read this thread").strong());
        ui.label(
            RichText::new(
                "Others see it as a restricted thread; a clinician may still open it in an \
                 emergency, with a written reason that is audited and announced here.",
            )
            .weak(),
        );
        ui.horizontal_wrapped(|ui| {
            for name in composer::readers(state, &t.category) {
                let mut on = ticked.contains(&name);
                if ui.checkbox(&mut on, &name).changed() {
                    if on {
                        ticked.insert(name);
                    } else {
                        ticked.remove(&name);
                    }
                }
            }
        });
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!ticked.is_empty(), egui::Button::new("Restrict thread"))
                .clicked()
            {
                out.send(Request::Restrict {
                    thread: t.thread,
                    members: ticked.iter().cloned().collect(),
                });
                close = true;
            }
            if ui.button("Cancel").clicked() {
                close = true;
            }
        });
    });
    if close {
        view.restrict = None;
    }
}

/// Whether `body` mentions `me` (`@Name`, as the composer's *@ Mention* writes it).
pub fn mentions(body: &str, me: Option<&str>) -> bool {
    me.is_some_and(|me| !me.is_empty() && body.contains(&format!("@{me}")))
}

/// The body with every `@me` drawn strong in the selection colour.
fn body_text(ui: &Ui, body: &str, me: Option<&str>) -> egui::text::LayoutJob {
    let mut job = egui::text::LayoutJob::default();
    let plain = egui::TextFormat {
        font_id: egui::TextStyle::Body.resolve(ui.style()),
        color: ui.visuals().text_color(),
        ..Default::default()
    };
    let marked = egui::TextFormat {
        color: ui.visuals().selection.stroke.color,
        background: ui.visuals().selection.bg_fill.gamma_multiply(0.4),
        ..plain.clone()
    };
    let tag = me.filter(|m| !m.is_empty()).map(|m| format!("@{m}"));
    let mut rest = body;
    while let Some(tag) = &tag
        && let Some(at) = rest.find(tag.as_str())
    {
        job.append(&rest[..at], 0.0, plain.clone());
        job.append(tag, 0.0, marked.clone());
        rest = &rest[at + tag.len()..];
    }
    job.append(rest, 0.0, plain);
    job
}

/// An edit or retraction of one's own message, under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageEdit {
    /// The text as being rewritten; `focus` until the box has taken the keyboard.
    Editing {
        message: String,
        text: String,
        focus: bool,
    },
    /// Asked whether to retract it.
    Retracting { message: String },
}

impl MessageEdit {
    /// The message concerned.
    pub fn message(&self) -> &str {
        match self {
            MessageEdit::Editing { message, .. } | MessageEdit::Retracting { message } => message,
        }
    }
}

/// One message as drawn: its thread, itself and this member's name.
struct Card<'a> {
    thread: &'a ThreadDetail,
    m: &'a MessageDetail,
    me: Option<&'a str>,
}

/// The quote of the message `m` answers, above its text.
fn quote(ui: &mut Ui, m: &MessageDetail) {
    let Some(q) = &m.reply_to else { return };
    let said = if q.author.is_empty() {
        "In reply to an earlier message that is not on this device".to_string()
    } else if q.retracted {
        format!("In reply to {}: message retracted", q.author)
    } else {
        format!("In reply to {}: {}", q.author, q.quote)
    };
    egui::Frame::new()
        .inner_margin(egui::Margin::symmetric(6, 2))
        .fill(ui.visuals().faint_bg_color)
        .stroke(egui::Stroke::new(
            2.0,
            ui.visuals().widgets.noninteractive.bg_stroke.color,
        ))
        .show(ui, |ui| {
            ui.label(RichText::new(said).weak().italics());
        });
}

fn message(
    ui: &mut Ui,
    card: &Card<'_>,
    edit: &mut Option<MessageEdit>,
    composer: &mut composer::Composer,
    out: &mut Actions,
) {
    let (t, m, me) = (card.thread, card.m, card.me);
    let urgent = m.priority == Priority::Urgent;
    let mine = me == Some(m.author.as_str()) && !m.retracted;
    let mentioned = mentions(&m.body, me);
    let mut frame = egui::Frame::group(ui.style());
    if urgent {
        frame = frame
            .fill(ui.visuals().error_fg_color.gamma_multiply(0.12))
            .stroke(egui::Stroke::new(1.5, ui.visuals().error_fg_color));
    } else if mentioned {
        frame = frame
            .fill(ui.visuals().selection.bg_fill.gamma_multiply(0.15))
            .stroke(egui::Stroke::new(1.5, ui.visuals().selection.stroke.color));
    }
    frame.show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.label(RichText::new(&m.author).strong());
            ui.label(
                RichText::new(format!("{} · device {}", m.author_role, m.author_device)).weak(),
            );
            ui.label(localtime::local(m.at_ms))
                .on_hover_text(localtime::utc(m.at_ms));
            if urgent {
                ui.label(
                    RichText::new("URGENT")
                        .strong()
                        .color(Color32::from_rgb(190, 30, 30)),
                );
            }
            if mentioned {
                ui.label(
                    RichText::new("mentions you")
                        .strong()
                        .color(ui.visuals().selection.stroke.color),
                );
            }
            if m.edited {
                ui.label(RichText::new("edited").weak().italics());
            }
            if !m.retracted && edit.is_none() && ui.small_button("Reply").clicked() {
                composer.reply_to = Some(ReplyTo {
                    message: m.id.clone(),
                    author: m.author.clone(),
                    quote: crate::node::quote_of(&m.body),
                });
                composer.focus = true;
            }
            if mine && edit.is_none() {
                if ui.small_button("Edit").clicked() {
                    *edit = Some(MessageEdit::Editing {
                        message: m.id.clone(),
                        text: m.body.clone(),
                        focus: true,
                    });
                }
                if ui.small_button("Retract").clicked() {
                    *edit = Some(MessageEdit::Retracting {
                        message: m.id.clone(),
                    });
                }
            }
        });
        quote(ui, m);
        match edit.as_mut().filter(|e| e.message() == m.id) {
            _ if m.retracted => {
                ui.label(RichText::new("message retracted").weak().italics());
            }
            Some(MessageEdit::Editing { text, focus, .. }) => {
                let (save, cancel) = edit_form(ui, text, focus);
                if save {
                    out.send(Request::EditMessage {
                        thread: t.thread,
                        message: m.id.clone(),
                        text: text.clone(),
                    });
                }
                if cancel {
                    *edit = None;
                }
            }
            Some(MessageEdit::Retracting { .. }) => {
                ui.label(body_text(ui, &m.body, me));
                ui.horizontal_wrapped(|ui| {
                    ui.label("Retract this message? Everyone will see \"message retracted\".");
                    if ui.button("Retract message").clicked() {
                        out.send(Request::RetractMessage {
                            thread: t.thread,
                            message: m.id.clone(),
                        });
                    }
                    if ui.button("Keep it").clicked() {
                        *edit = None;
                    }
                });
            }
            None => {
                ui.label(body_text(ui, &m.body, me));
            }
        }
        if let Some(task) = &m.task {
            egui::Frame::new()
                .inner_margin(6.0)
                .stroke(ui.visuals().widgets.noninteractive.bg_stroke)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.horizontal_wrapped(|ui| match task.status {
                        TaskStatus::Open => {
                            let overdue = localtime::parse_due(&task.due).is_err();
                            let due = RichText::new(format!("due {}", task.due));
                            ui.label(format!("Task for {}", task.assignee));
                            ui.label(if overdue {
                                due.color(ui.visuals().error_fg_color).strong()
                            } else {
                                due
                            });
                            if ui.button("Mark done").clicked() {
                                out.send(Request::CompleteTask {
                                    thread: t.thread,
                                    message: m.id.clone(),
                                });
                            }
                        }
                        TaskStatus::Done => {
                            let by = task.done_by.as_deref().unwrap_or("someone");
                            let when = task.done_ms.map(localtime::local).unwrap_or_default();
                            ui.label(format!("Task for {} done by {by} {when}", task.assignee));
                        }
                    });
                });
        }
        let mut footer: Vec<String> = crate::node::replies_words(m.replies).into_iter().collect();
        if !m.read_by.is_empty() {
            footer.push(format!("read by {}", m.read_by.join(", ")));
        }
        if !footer.is_empty() {
            ui.label(RichText::new(footer.join(" · ")).small().weak());
        }
    });
}

/// The text box of an edit (focused when it opens) and its buttons; whether *Save* or
/// *Cancel* was clicked.
fn edit_form(ui: &mut Ui, text: &mut String, focus: &mut bool) -> (bool, bool) {
    let label = ui.label("Edit message");
    let text_box = ui
        .add(
            egui::TextEdit::multiline(text)
                .desired_rows(2)
                .desired_width(f32::INFINITY),
        )
        .labelled_by(label.id);
    if std::mem::take(focus) {
        text_box.request_focus();
    }
    let mut clicked = (false, false);
    ui.horizontal(|ui| {
        clicked.0 = ui
            .add_enabled(!text.trim().is_empty(), egui::Button::new("Save edit"))
            .clicked();
        clicked.1 = ui.button("Cancel edit").clicked();
    });
    clicked
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn a_mention_is_the_whole_at_name() {
        assert!(mentions("@Lee P. please call", Some("Lee P.")));
        assert!(!mentions("Lee P. please call", Some("Lee P.")));
        assert!(!mentions("@Lee please call", Some("Lee P.")));
        assert!(!mentions("@ anything", Some("")));
        assert!(!mentions("@Lee P.", None));
    }
}
