//! The screens before the clinic opens: first run (found a clinic, or join with an
//! invitation) and unlock.

use egui::{RichText, Ui};
use zeroize::Zeroizing;

use super::{Actions, ViewState, centered, form_error};
use crate::app::message::Form;
use crate::app::message::Request;
use crate::app::state::AppState;
use crate::core::policy::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SetupMode {
    #[default]
    Found,
    Join,
}

/// The first-run and unlock forms. Passphrases are wiped when replaced or dropped.
pub struct SetupForm {
    pub mode: SetupMode,
    pub clinic: String,
    pub name: String,
    pub role: Role,
    pub passphrase: Zeroizing<String>,
    pub repeat: Zeroizing<String>,
    pub invite: String,
    pub peer: String,
}

impl Default for SetupForm {
    fn default() -> Self {
        SetupForm {
            mode: SetupMode::Found,
            clinic: String::new(),
            name: String::new(),
            role: Role::Clinician,
            passphrase: Zeroizing::new(String::new()),
            repeat: Zeroizing::new(String::new()),
            invite: String::new(),
            peer: String::new(),
        }
    }
}

/// A labelled single-line field; the label is what screen readers (and tests) name it by.
pub fn field(ui: &mut Ui, label: &str, text: &mut String, secret: bool) -> egui::Response {
    let l = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(text)
            .password(secret)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(l.id)
}

/// How hard a passphrase looks to guess, in words, and whether the store accepts it
/// (`store::strength`: 12+ characters, not a common password).
pub fn strength(p: &str) -> (&'static str, bool) {
    if p.is_empty() {
        return ("", false);
    }
    if let Some(why) = crate::store::strength::weakness(p) {
        return (why, false);
    }
    let chars = p.chars().count();
    let classes = [
        p.chars().any(|c| c.is_lowercase()),
        p.chars().any(|c| c.is_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_alphanumeric()),
    ]
    .into_iter()
    .filter(|x| *x)
    .count();
    let words = p.split_whitespace().count();
    match chars {
        n if n >= 20 && words >= 3 => ("strong: a long passphrase", true),
        n if n >= 14 && classes >= 3 => ("strong", true),
        _ => ("fair: longer is stronger (try a few unrelated words)", true),
    }
}

fn passphrase_fields(ui: &mut Ui, form: &mut SetupForm) -> bool {
    field(ui, "Passphrase", &mut form.passphrase, true);
    let (hint, long_enough) = strength(&form.passphrase);
    // Hint and error lines are always there (blank when they have nothing to say), so a
    // field never moves under the pointer while the user types.
    let hint = match (hint.is_empty(), long_enough) {
        (true, _) => " ".to_string(),
        (false, true) => format!("Strength: {hint}"),
        (false, false) => format!("Not accepted: {hint}"),
    };
    ui.label(RichText::new(hint).small());
    field(ui, "Repeat passphrase", &mut form.repeat, true);
    let same = *form.passphrase == *form.repeat;
    let differ = if !form.repeat.is_empty() && !same {
        "The passphrases differ: type the same one twice."
    } else {
        " "
    };
    ui.label(
        RichText::new(differ)
            .small()
            .color(ui.visuals().error_fg_color),
    );
    long_enough && same
}

pub fn first_run(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    let form = &mut view.setup;
    centered(ui, |ui| {
        ui.heading("Welcome to Huddle");
        ui.label("Care team messaging that stays on your clinic's own devices.");
        ui.add_space(12.0);
        ui.horizontal(|ui| {
            ui.selectable_value(&mut form.mode, SetupMode::Found, "Found a clinic");
            ui.selectable_value(&mut form.mode, SetupMode::Join, "Join with an invitation");
        });
        ui.add_space(8.0);
        match form.mode {
            SetupMode::Found => {
                field(ui, "Clinic name", &mut form.clinic, false);
                field(ui, "Your name", &mut form.name, false);
                ui.horizontal(|ui| {
                    let l = ui.label("Your role");
                    egui::ComboBox::from_id_salt("role")
                        .selected_text(form.role.as_str())
                        .show_ui(ui, |ui| {
                            for r in Role::ALL {
                                ui.selectable_value(&mut form.role, r, r.as_str());
                            }
                        })
                        .response
                        .labelled_by(l.id);
                });
                let ok = passphrase_fields(ui, form)
                    && !form.clinic.trim().is_empty()
                    && !form.name.trim().is_empty();
                if ui
                    .add_enabled(ok, egui::Button::new("Create clinic"))
                    .clicked()
                {
                    // The fields keep what was typed (a refusal loses nothing); the
                    // form is wiped when the clinic opens.
                    out.send(Request::Found {
                        clinic: form.clinic.trim().to_string(),
                        name: form.name.trim().to_string(),
                        role: form.role,
                        passphrase: form.passphrase.clone(),
                    });
                }
                form_error(ui, state, Form::Found);
            }
            SetupMode::Join => {
                field(ui, "Invitation", &mut form.invite, false);
                field(
                    ui,
                    "Inviting device address (optional)",
                    &mut form.peer,
                    false,
                );
                ui.label(
                    RichText::new(
                        "Only needed where the network blocks discovery: HOST:PORT of the \
                         device that issued the invitation.",
                    )
                    .small()
                    .weak(),
                );
                let ok = passphrase_fields(ui, form) && !form.invite.trim().is_empty();
                if ui
                    .add_enabled(ok, egui::Button::new("Join clinic"))
                    .clicked()
                {
                    let peer = form.peer.trim();
                    out.send(Request::Join {
                        invite: form.invite.trim().to_string(),
                        peers: if peer.is_empty() {
                            vec![]
                        } else {
                            vec![peer.to_string()]
                        },
                        passphrase: form.passphrase.clone(),
                    });
                }
                form_error(ui, state, Form::Join);
            }
        }
    });
}

pub fn unlock(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    let form = &mut view.setup;
    centered(ui, |ui| {
        ui.heading("Huddle is locked");
        ui.label("Enter this device's passphrase to open the clinic's threads.");
        ui.label(
            RichText::new(
                "While locked, keys are out of memory. A device locked after use keeps \
                 passing the clinic's messages on without reading them; they show at the \
                 next unlock.",
            )
            .small()
            .weak(),
        );
        ui.add_space(8.0);
        let r = field(ui, "Passphrase", &mut form.passphrase, true);
        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Unlock").clicked() || enter) && !form.passphrase.is_empty() {
            out.send(Request::Unlock(std::mem::take(&mut form.passphrase)));
        }
        form_error(ui, state, Form::Unlock);
    });
}

#[cfg(test)]
mod tests {
    use super::strength;

    #[test]
    fn the_strength_hint_refuses_only_what_the_store_refuses() {
        assert!(!strength("short").1);
        assert!(!strength("eight ch").1);
        assert!(!strength("Password1234!").1);
        assert!(strength("twelve chars").1);
        assert!(
            strength("correct horse battery staple")
                .0
                .starts_with("strong")
        );
        assert!(strength("abcdefgh").0.contains("12 characters"));
    }
}
