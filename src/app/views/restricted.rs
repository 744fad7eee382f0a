//! A restricted thread this member does not participate in: no title, no messages —
//! only "Restricted thread" and, for a clinician in an emergency, "Break glass": a
//! written reason (required, bounded) opens it for the clinic policy's emergency
//! minutes, audited and announced in the thread and to admins (`huddle emergency open`).

use egui::{RichText, Ui};

use super::{Actions, ViewState};
use crate::app::message::Request;
use crate::core::roster::MAX_EMERGENCY_REASON_BYTES;
use crate::node::{RESTRICTED_LABEL, ThreadSummary};

/// Whether the list shows `s` as a restricted thread this member may not read now.
pub fn is_restricted(s: &ThreadSummary) -> bool {
    !s.readable && s.title.as_deref() == Some(RESTRICTED_LABEL)
}

pub fn show(ui: &mut Ui, s: &ThreadSummary, admin: bool, view: &mut ViewState, out: &mut Actions) {
    ui.heading(RESTRICTED_LABEL);
    if admin {
        ui.horizontal(|ui| {
            ui.label("As an admin you may lift the restriction for every reader of its category.");
            if ui.button("Lift restriction").clicked() {
                out.send(Request::Unrestrict { thread: s.thread });
            }
        });
        ui.add_space(8.0);
    }
    ui.label(format!(
        "A {} thread only its participants read. If a patient's safety needs it now, \
         open it in an emergency: your access lasts a limited time, is recorded in the \
         audit trail and is announced to the thread's readers and the admins.",
        s.category
    ));
    ui.add_space(8.0);
    let l = ui.label("Reason for emergency access");
    ui.add(
        egui::TextEdit::multiline(&mut view.break_glass)
            .desired_rows(3)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(l.id);
    let used = view.break_glass.trim().len();
    let too_long = used > MAX_EMERGENCY_REASON_BYTES;
    let count = RichText::new(format!("{used} / {MAX_EMERGENCY_REASON_BYTES}")).small();
    ui.label(if too_long {
        count.color(ui.visuals().error_fg_color)
    } else {
        count.weak()
    });
    let ok = used > 0 && !too_long;
    if ui
        .add_enabled(ok, egui::Button::new("Break glass"))
        .on_disabled_hover_text("Write why you need this thread now")
        .clicked()
    {
        out.send(Request::BreakGlass {
            thread: s.thread,
            reason: view.break_glass.trim().to_string(),
        });
        view.break_glass.clear();
    }
}
