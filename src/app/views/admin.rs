//! The admin screens (admins only): members with roles and devices, add a member,
//! invitations (the string and a QR code, expiry; list and cancel open ones), revoke or
//! replace a device, add a device for a member, remove and restore a member, change a
//! role, and the clinic's read policy; emergency accesses to
//! restricted threads are announced on top.

use egui::{RichText, Ui};

use super::setup::field;
use super::{Actions, ViewState};
use crate::app::message::Request;
use crate::app::state::AppState;
use crate::core::policy::Role;
use crate::localtime;

/// Emergency accesses listed at most (the newest; all are in the audit trail).
const MAX_EMERGENCIES_SHOWN: usize = 50;

pub struct AdminForms {
    pub name: String,
    pub role: Role,
    pub admin: bool,
    pub days: u32,
    /// A revocation waiting for confirmation: the device's id.
    pub confirm_revoke: Option<String>,
    /// A replacement waiting for confirmation: the lost device's id.
    pub confirm_replace: Option<String>,
    /// A removal waiting for confirmation: the member's name.
    pub confirm_remove: Option<String>,
}

impl Default for AdminForms {
    fn default() -> Self {
        AdminForms {
            name: String::new(),
            role: Role::Clinician,
            admin: false,
            days: crate::node::invites::DEFAULT_VALID_DAYS,
            confirm_revoke: None,
            confirm_replace: None,
            confirm_remove: None,
        }
    }
}

fn role_picker(ui: &mut Ui, id: impl egui::AsIdSalt, label: &str, role: &mut Role) -> bool {
    let before = *role;
    let l = ui.label(label);
    egui::ComboBox::from_id_salt(id)
        .selected_text(role.as_str())
        .show_ui(ui, |ui| {
            for r in Role::ALL {
                ui.selectable_value(role, r, r.as_str());
            }
        })
        .response
        .labelled_by(l.id);
    before != *role
}

pub fn show(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    if !state.snapshot.status.as_ref().is_some_and(|s| s.admin) {
        ui.label("Only the clinic's administrators see this screen.");
        return;
    }
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            invitation(ui, state, out);
            emergencies(ui, state);
            members(ui, state, view, out);
            ui.add_space(12.0);
            add_member(ui, state, view, out);
            ui.add_space(12.0);
            invites(ui, state, out);
            ui.add_space(12.0);
            policy(ui, state, out);
        });
}

fn invitation(ui: &mut Ui, state: &AppState, out: &mut Actions) {
    let Some(inv) = &state.invitation else { return };
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.heading(format!("Invitation for {}", inv.name));
        let valid = if inv.expires_ms > 0 {
            format!("Valid until {}. ", localtime::local(inv.expires_ms))
        } else {
            String::new()
        };
        let keeps = if inv.device {
            " They keep their threads, tasks and role."
        } else {
            ""
        };
        ui.label(format!(
            "{valid}Give it to them in person. It works once, on one device.{keeps}"
        ));
        if let Some(qr) = &inv.qr {
            ui.image((qr.id(), qr.size_vec2()));
        }
        let mut text = inv.text.clone();
        let l = ui.label("Invitation text");
        ui.add(
            egui::TextEdit::multiline(&mut text)
                .desired_rows(3)
                .desired_width(f32::INFINITY),
        )
        .labelled_by(l.id);
        ui.horizontal(|ui| {
            if ui.button("Copy").clicked() {
                ui.ctx().copy_text(inv.text.clone());
            }
            if ui.button("Done").clicked() {
                out.dismiss_invitation = true;
            }
        });
    });
    ui.add_space(12.0);
}

/// Emergency accesses to restricted threads, newest first: active ones in red.
fn emergencies(ui: &mut Ui, state: &AppState) {
    let list = &state.snapshot.emergencies;
    if list.is_empty() {
        return;
    }
    ui.heading("Emergency access");
    for e in list.iter().rev().take(MAX_EMERGENCIES_SHOWN) {
        let short: String = e.thread.chars().take(8).collect();
        let text = format!(
            "{}: emergency access to thread {short} until {}{} — {}",
            e.member,
            localtime::local(e.until_ms),
            if e.active { " (active)" } else { "" },
            e.reason
        );
        ui.label(if e.active {
            RichText::new(text).color(ui.visuals().error_fg_color)
        } else {
            RichText::new(text).weak()
        });
    }
    ui.add_space(12.0);
}

fn members(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    ui.heading("Members and devices");
    let me = state
        .snapshot
        .status
        .as_ref()
        .and_then(|s| s.member.clone());
    let devices = &state.snapshot.devices;
    let days = view.admin.days;
    egui::Grid::new("members")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            for m in &state.snapshot.members {
                ui.label(RichText::new(&m.name).strong());
                let mut role: Role = m.role.parse().unwrap_or(Role::Clinician);
                let changed = ui
                    .horizontal(|ui| {
                        role_picker(
                            ui,
                            ("role-of", &m.id),
                            &format!("Role of {}", m.name),
                            &mut role,
                        )
                    })
                    .inner;
                if changed {
                    out.send(Request::ChangeRole {
                        member: m.name.clone(),
                        role,
                    });
                }
                ui.label(if m.admin { "admin" } else { "" });
                ui.horizontal(|ui| {
                    if ui.button(format!("Add a device for {}", m.name)).clicked() {
                        out.send(Request::InviteDevice {
                            member: m.name.clone(),
                            replace: None,
                            days,
                        });
                    }
                    if me.as_deref() != Some(m.name.as_str()) {
                        remove_button(ui, &m.name, view, out);
                    }
                });
                ui.end_row();
                for d in devices.iter().filter(|d| d.member == m.name) {
                    ui.label("");
                    let short: String = d.device.chars().take(8).collect();
                    ui.label(format!("device {short} · {}", d.status));
                    ui.label(if d.this_device { "this device" } else { "" });
                    if d.status == "active" && !d.this_device {
                        device_buttons(ui, &m.name, &d.device, days, view, out);
                    } else {
                        ui.label("");
                    }
                    ui.end_row();
                }
            }
        });
    super::form_error(ui, state, crate::app::message::Form::Members);
    removed_members(ui, state, out);
}

/// Revoke, or replace (revoke and invite a new device for the same member), each
/// after a confirmation.
fn device_buttons(
    ui: &mut Ui,
    member: &str,
    device: &str,
    days: u32,
    view: &mut ViewState,
    out: &mut Actions,
) {
    let short: String = device.chars().take(8).collect();
    let f = &mut view.admin;
    ui.horizontal(|ui| {
        if f.confirm_revoke.as_deref() == Some(device) {
            if ui.button(format!("Confirm revoking {short}")).clicked() {
                out.send(Request::RevokeDevice(device.to_string()));
                f.confirm_revoke = None;
            }
            if ui.button("Keep").clicked() {
                f.confirm_revoke = None;
            }
        } else if f.confirm_replace.as_deref() == Some(device) {
            if ui
                .button(format!("Revoke {short} and invite a new device"))
                .clicked()
            {
                out.send(Request::InviteDevice {
                    member: member.to_string(),
                    replace: Some(device.to_string()),
                    days,
                });
                f.confirm_replace = None;
            }
            if ui.button("Keep").clicked() {
                f.confirm_replace = None;
            }
        } else {
            if ui.button(format!("Revoke device {short}")).clicked() {
                f.confirm_revoke = Some(device.to_string());
            }
            if ui
                .button(format!("Replace lost device {short}"))
                .on_hover_text(format!(
                    "Revokes it now and shows an invitation for {member}'s new device: \
                     they keep their threads and role"
                ))
                .clicked()
            {
                f.confirm_replace = Some(device.to_string());
            }
        }
    });
}

fn remove_button(ui: &mut Ui, name: &str, view: &mut ViewState, out: &mut Actions) {
    let f = &mut view.admin;
    if f.confirm_remove.as_deref() == Some(name) {
        if ui.button(format!("Confirm removing {name}")).clicked() {
            out.send(Request::RemoveMember(name.to_string()));
            f.confirm_remove = None;
        }
        if ui.button("Keep").clicked() {
            f.confirm_remove = None;
        }
    } else if ui.button(format!("Remove {name}")).clicked() {
        f.confirm_remove = Some(name.to_string());
    }
}

/// Removed members, each of whom may be restored (without their old devices).
fn removed_members(ui: &mut Ui, state: &AppState, out: &mut Actions) {
    if state.snapshot.removed.is_empty() {
        return;
    }
    ui.add_space(8.0);
    ui.label(RichText::new("Removed members").strong());
    for m in &state.snapshot.removed {
        ui.horizontal(|ui| {
            ui.label(format!("{} ({})", m.name, m.role));
            if ui
                .button(format!("Restore {}", m.name))
                .on_hover_text("They come back with their role, and no device: add one after")
                .clicked()
            {
                out.send(Request::RestoreMember(m.name.clone()));
            }
        });
    }
}

fn add_member(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    let f = &mut view.admin;
    ui.heading("Add a member");
    field(ui, "Member name", &mut f.name, false);
    ui.horizontal(|ui| {
        role_picker(ui, "new-member-role", "Role", &mut f.role);
        ui.checkbox(&mut f.admin, "Administrator");
        let l = ui.label("Invitation valid (days)");
        ui.add(egui::DragValue::new(&mut f.days).range(1..=crate::node::invites::MAX_VALID_DAYS))
            .labelled_by(l.id);
    });
    let ok = !f.name.trim().is_empty();
    ui.label(
        RichText::new(
            "The invitation names the member and their role; they become a member when \
             their device joins with it.",
        )
        .weak(),
    );
    if ui
        .add_enabled(ok, egui::Button::new("Add member and invite"))
        .clicked()
    {
        out.send(Request::Invite {
            name: f.name.trim().into(),
            role: f.role,
            admin: f.admin,
            days: f.days,
        });
    }
    super::form_error(ui, state, crate::app::message::Form::AddMember);
}

fn invites(ui: &mut Ui, state: &AppState, out: &mut Actions) {
    ui.heading("Open invitations");
    if state.snapshot.invites.is_empty() {
        ui.label(RichText::new("None").weak());
        return;
    }
    egui::Grid::new("invites")
        .striped(true)
        .num_columns(3)
        .show(ui, |ui| {
            for i in &state.snapshot.invites {
                if i.device {
                    ui.label(format!("a new device of {} ({})", i.name, i.role));
                } else {
                    ui.label(format!("{} ({})", i.name, i.role));
                }
                ui.label(format!("expires {}", localtime::local(i.expires_ms)));
                if ui
                    .button(format!("Cancel invitation for {}", i.name))
                    .clicked()
                {
                    out.send(Request::CancelInvite(i.id.clone()));
                }
                ui.end_row();
            }
        });
}

fn policy(ui: &mut Ui, state: &AppState, out: &mut Actions) {
    ui.heading("Who reads what");
    ui.label(RichText::new("A role reads a thread only if its category is ticked.").weak());
    egui::Grid::new("policy").striped(true).show(ui, |ui| {
        ui.label("");
        for c in crate::core::policy::Category::ALL {
            ui.label(c.as_str());
        }
        ui.end_row();
        for r in Role::ALL {
            ui.label(r.as_str());
            for c in crate::core::policy::Category::ALL {
                let may = state
                    .snapshot
                    .policy
                    .iter()
                    .any(|(pr, pc, m)| *pr == r && *pc == c && *m);
                let mut ticked = may;
                let name = format!("{r} reads {c}");
                let resp = ui.checkbox(&mut ticked, "");
                resp.widget_info(|| {
                    egui::WidgetInfo::selected(egui::Role::CheckBox, true, ticked, &name)
                });
                if ticked != may {
                    out.send(Request::ReadPolicy(r, c, ticked));
                }
            }
            ui.end_row();
        }
    });
}
