//! "My tasks": open tasks assigned to me across every thread I can read, due soonest
//! first, overdue ones highlighted, each with its thread's patient or topic (the
//! snapshot holds open tasks only).

use egui::{RichText, Ui};

use super::{Actions, Section, ViewState};
use crate::app::message::Request;
use crate::app::state::AppState;

pub fn show(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    ui.heading("My tasks");
    let me = state.my_name().unwrap_or_default();
    // The node lists them by due date.
    let mine: Vec<_> = state
        .snapshot
        .tasks
        .iter()
        .filter(|t| t.assignee == me)
        .collect();
    if mine.is_empty() {
        ui.label(RichText::new("Nothing assigned to you").weak());
        return;
    }
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("my-tasks")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    for t in mine {
                        let due = if t.overdue {
                            RichText::new(format!("{} · overdue", t.due))
                                .color(ui.visuals().error_fg_color)
                                .strong()
                        } else {
                            RichText::new(&t.due)
                        };
                        ui.label(due);
                        ui.label(&t.text);
                        // Whom it is about: the thread's patient (or topic).
                        let subject = state
                            .summary(&t.thread)
                            .map(|s| super::threads::subject_line(s.subject.as_ref()))
                            .unwrap_or_default();
                        ui.label(RichText::new(subject).weak());
                        if ui.link(&t.thread_title).clicked() {
                            out.open = Some(t.thread);
                            view.section = Section::Threads;
                        }
                        if ui.button("Mark done").clicked() {
                            out.send(Request::CompleteTask {
                                thread: t.thread,
                                message: t.message_id.clone(),
                            });
                        }
                        ui.end_row();
                    }
                });
        });
}
