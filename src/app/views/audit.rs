//! The audit trail (admins only; 45 CFR 164.312(b)): the entries the filters select —
//! member, thread, since, as `huddle audit` takes them — newest first, a page at most
//! ([`MAX_AUDIT_ROWS`]); "Verify" checks every chain held and names what it finds; "Export
//! CSV…" writes the filtered trail as `huddle audit --csv` does to a path typed here.

use egui::{Color32, RichText, Ui};

use super::setup::field;
use super::{Actions, ViewState};
use crate::app::bridge::{MAX_AUDIT_ROWS, MAX_FILTER_CHARS};
use crate::app::message::{AuditQuery, Request};
use crate::app::state::AppState;
use crate::localtime;
use crate::node::AuditRecord;

/// Height of one row of the table.
const ROW: f32 = 22.0;
/// Longest export path accepted, in characters.
const MAX_PATH_CHARS: usize = 1024;

#[derive(Default)]
pub struct AuditForm {
    pub query: AuditQuery,
    pub export_path: String,
}

/// What the audit tab asks for when it is chosen: a fresh page for the filters shown.
pub fn load(view: &ViewState) -> Request {
    Request::Audit(view.audit.query.clone())
}

pub fn show(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    if !state.snapshot.status.as_ref().is_some_and(|s| s.admin) {
        ui.label("Only the clinic's administrators see the audit trail.");
        return;
    }
    ui.heading("Audit trail");
    filters(ui, view, out);
    verified(ui, state);
    export(ui, view, out);
    ui.separator();
    table(ui, state);
}

fn bounded(ui: &mut Ui, label: &str, text: &mut String, max: usize) {
    field(ui, label, text, false);
    if text.chars().count() > max {
        *text = text.chars().take(max).collect();
    }
}

fn filters(ui: &mut Ui, view: &mut ViewState, out: &mut Actions) {
    let q = &mut view.audit.query;
    ui.columns(3, |cols| {
        bounded(&mut cols[0], "Member", &mut q.member, MAX_FILTER_CHARS);
        bounded(&mut cols[1], "Thread", &mut q.thread, MAX_FILTER_CHARS);
        bounded(
            &mut cols[2],
            "Since (YYYY-MM-DD or RFC 3339)",
            &mut q.since,
            MAX_FILTER_CHARS,
        );
    });
    ui.horizontal(|ui| {
        if ui.button("Show entries").clicked() {
            out.send(Request::Audit(q.clone()));
        }
        if ui.button("Clear filters").clicked() {
            *q = AuditQuery::default();
            out.send(Request::Audit(q.clone()));
        }
        if ui
            .button("Verify")
            .on_hover_text("Check every audit chain this device holds")
            .clicked()
        {
            out.send(Request::VerifyAudit);
        }
    });
}

fn verified(ui: &mut Ui, state: &AppState) {
    let Some(findings) = &state.verified else {
        return;
    };
    if findings.is_empty() {
        ui.label(
            RichText::new("Verified: every audit chain held is intact")
                .color(Color32::from_rgb(30, 130, 60)),
        );
        return;
    }
    let red = ui.visuals().error_fg_color;
    ui.label(
        RichText::new(format!("Verify found {} problem(s):", findings.len()))
            .strong()
            .color(red),
    );
    for f in findings {
        ui.label(RichText::new(f).color(red));
    }
}

fn export(ui: &mut Ui, view: &mut ViewState, out: &mut Actions) {
    let f = &mut view.audit;
    ui.horizontal(|ui| {
        let l = ui.label("Export to file");
        ui.add(
            egui::TextEdit::singleline(&mut f.export_path)
                .hint_text("/full/path/audit.csv")
                .char_limit(MAX_PATH_CHARS)
                .desired_width(360.0),
        )
        .labelled_by(l.id);
        let path = f.export_path.trim();
        if ui
            .add_enabled(!path.is_empty(), egui::Button::new("Export CSV…"))
            .on_hover_text(
                "The filtered trail, as `huddle audit --csv` writes it; the export is audited",
            )
            .clicked()
        {
            out.send(Request::ExportAudit {
                query: f.query.clone(),
                path: path.into(),
            });
        }
    });
}

fn table(ui: &mut Ui, state: &AppState) {
    let Some(page) = &state.audit else {
        ui.label(RichText::new("Loading…").weak());
        return;
    };
    let shown = page.rows.len();
    let mut note = if shown < page.total {
        format!(
            "The newest {shown} of {} entries (at most {MAX_AUDIT_ROWS} are shown: narrow the \
             filters, or export them all)",
            page.total
        )
    } else {
        format!("{} entries, newest first", page.total)
    };
    if page.not_sealed_to_me > 0 {
        note.push_str(&format!(
            "; {} written before this device was an admin are not readable here",
            page.not_sealed_to_me
        ));
    }
    ui.label(RichText::new(note).weak());
    if page.rows.is_empty() {
        return;
    }
    let widths = [150.0, 190.0, 130.0, 170.0];
    ui.horizontal(|ui| {
        for (title, w) in ["Time", "Member · device", "Event", "Thread"]
            .iter()
            .zip(widths)
        {
            cell(ui, w, egui::Label::new(RichText::new(*title).strong()));
        }
        ui.label(RichText::new("Details").strong());
    });
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show_rows(ui, ROW, page.rows.len(), |ui, range| {
            for r in &page.rows[range] {
                row(ui, state, r, &widths);
            }
        });
}

/// One entry: the member by name and the thread by title where this device may read
/// it (a thread it may not read by its short id); the ids on hover.
fn row(ui: &mut Ui, state: &AppState, r: &AuditRecord, widths: &[f32; 4]) {
    let member = r
        .member_name
        .clone()
        .or_else(|| r.member.map(|m| format!("member {}", m.short())))
        .unwrap_or_else(|| "?".into());
    let member_ids = match r.member {
        Some(m) => format!("member {} · device {}", m.to_hex(), r.device.to_hex()),
        None => format!("device {}", r.device.to_hex()),
    };
    let thread = r.event.thread();
    let title = thread
        .and_then(|t| state.summary(&t))
        .and_then(|s| s.title.clone())
        .or_else(|| thread.map(|t| format!("thread {}", t.short())))
        .unwrap_or_default();
    let thread_id = thread.map(|t| format!("thread {}", t.to_hex()));
    let cells = [
        (localtime::local(r.at_ms), Some(localtime::utc(r.at_ms))),
        (format!("{member} · {}", r.device.short()), Some(member_ids)),
        (r.event.kind().to_string(), None),
        (title, thread_id),
    ];
    ui.horizontal(|ui| {
        for ((text, hover), w) in cells.into_iter().zip(widths) {
            let shown = cell(ui, *w, egui::Label::new(text).truncate());
            if let Some(hover) = hover {
                shown.on_hover_text(hover);
            }
        }
        let named = |m: &crate::core::ids::MemberId| {
            let hex = m.to_hex();
            let snapshot = &state.snapshot;
            let mut known = snapshot.members.iter().chain(&snapshot.removed);
            known.find(|v| v.id == hex).map(|v| v.name.clone())
        };
        let (shown, plain) = (r.event.details_naming(&named), r.event.details());
        let details = ui.add(egui::Label::new(&shown).truncate());
        if shown != plain {
            details.on_hover_text(plain);
        }
    });
}

/// A column of the table: `w` wide, its text on the left; the label's response.
fn cell(ui: &mut Ui, w: f32, label: egui::Label) -> egui::Response {
    ui.allocate_ui_with_layout(
        [w, ROW].into(),
        egui::Layout::left_to_right(egui::Align::Center),
        |ui| {
            ui.set_width(w);
            ui.add(label)
        },
    )
    .inner
}
