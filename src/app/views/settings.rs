//! Settings: how the composer sends (Enter, or Ctrl+Enter), whether desktop
//! notifications can be shown here, and changing this device's passphrase (`huddle passphrase change`). The
//! current passphrase, the new one twice; a new one the store would refuse (under 12
//! characters, a common password) is refused here with the reason. The bridge locks,
//! re-wraps and unlocks (see `bridge::safeguards`); a wrong current passphrase leaves
//! Huddle locked.

use egui::{RichText, Ui};
use zeroize::Zeroizing;

use super::setup::{field, strength};
use super::{Actions, ViewState};
use crate::app::message::{Form, Request};
use crate::app::state::AppState;

#[derive(Default)]
pub struct PassphraseForm {
    pub current: Zeroizing<String>,
    pub new: Zeroizing<String>,
    pub repeat: Zeroizing<String>,
    /// Why the last attempt was refused here.
    pub error: Option<String>,
}

impl PassphraseForm {
    /// The request for this form, or why it cannot be sent.
    fn request(&mut self) -> Result<Request, String> {
        if self.current.is_empty() {
            return Err("Enter the current passphrase".into());
        }
        if let Some(why) = crate::store::strength::weakness(&self.new) {
            return Err(format!("The new passphrase is too weak: {why}"));
        }
        if *self.new != *self.repeat {
            return Err("The new passphrases differ".into());
        }
        if *self.new == *self.current {
            return Err("The new passphrase is the current one".into());
        }
        self.repeat = Zeroizing::default();
        Ok(Request::ChangePassphrase {
            current: std::mem::take(&mut self.current),
            new: std::mem::take(&mut self.new),
        })
    }
}

pub fn show(ui: &mut Ui, state: &AppState, view: &mut ViewState, out: &mut Actions) {
    ui.heading("Messages");
    let before = view.prefs;
    ui.checkbox(
        &mut view.prefs.enter_sends,
        "Enter sends (Shift+Enter starts a new line)",
    );
    ui.label(
        RichText::new("Off: Enter starts a new line and Ctrl+Enter sends.")
            .small()
            .weak(),
    );
    if view.prefs != before {
        out.prefs_changed = true;
    }
    ui.add_space(12.0);
    ui.heading("Notifications");
    if state.notifications_off {
        ui.label(
            RichText::new(
                "Desktop notifications are off: this computer has no notification service \
                 (D-Bus). Alerts still show in Huddle's window while it is open.",
            )
            .color(ui.visuals().warn_fg_color),
        );
    } else {
        ui.label(
            "Urgent messages, mentions and tasks for you show as desktop notifications, \
             naming only the kind of thread (never a patient or message text).",
        );
    }
    ui.add_space(12.0);
    passphrase(ui, state, &mut view.passphrase, out);
}

fn passphrase(ui: &mut Ui, state: &AppState, form: &mut PassphraseForm, out: &mut Actions) {
    ui.heading("Change passphrase");
    ui.label(
        RichText::new(
            "The passphrase opens this device's data. Huddle locks while it changes and \
             opens again with the new one; the old one then no longer opens it.",
        )
        .weak(),
    );
    ui.set_max_width(420.0);
    field(ui, "Current passphrase", &mut form.current, true);
    field(ui, "New passphrase", &mut form.new, true);
    let (hint, _) = strength(&form.new);
    if !hint.is_empty() {
        ui.label(RichText::new(hint).small().weak());
    }
    field(ui, "Repeat new passphrase", &mut form.repeat, true);
    if ui.button("Change passphrase").clicked() {
        match form.request() {
            Ok(request) => {
                form.error = None;
                out.send(request);
            }
            Err(why) => {
                // Refused: the new passphrase is typed again from scratch.
                form.error = Some(why);
                form.new = Zeroizing::default();
                form.repeat = Zeroizing::default();
            }
        }
    }
    if let Some(why) = &form.error {
        ui.label(RichText::new(why).color(ui.visuals().error_fg_color));
    }
    super::form_error(ui, state, Form::Passphrase);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(current: &str, new: &str, repeat: &str) -> PassphraseForm {
        PassphraseForm {
            current: Zeroizing::new(current.into()),
            new: Zeroizing::new(new.into()),
            repeat: Zeroizing::new(repeat.into()),
            error: None,
        }
    }

    #[test]
    fn only_a_strong_repeated_new_passphrase_is_sent() {
        let good = "quiet violet harbor 2031";
        let refused = |f: &mut PassphraseForm| f.request().err().unwrap_or_default();
        assert!(refused(&mut form("", good, good)).contains("current"));
        assert!(refused(&mut form("old one here", "short", "short")).contains("12 characters"));
        assert!(
            refused(&mut form("old one here", "password1234", "password1234"))
                .contains("common password")
        );
        assert!(refused(&mut form("old one here", good, "quiet violet")).contains("differ"));
        assert!(refused(&mut form(good, good, good)).contains("current one"));
        let mut ok = form("old one here", good, good);
        match ok.request() {
            Ok(Request::ChangePassphrase { current, new }) => {
                assert_eq!((current.as_str(), new.as_str()), ("old one here", good));
            }
            other => panic!("{other:?}"),
        }
        assert!(ok.current.is_empty() && ok.new.is_empty() && ok.repeat.is_empty());
    }
}
