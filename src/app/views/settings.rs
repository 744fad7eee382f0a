//! Settings: changing this device's passphrase (`huddle passphrase change`). The
//! current passphrase, the new one twice; a new one the store would refuse (under 12
//! characters, a common password) is refused here with the reason. The bridge locks,
//! re-wraps and unlocks (see `bridge::safeguards`); a wrong current passphrase leaves
//! Huddle locked.

use egui::{RichText, Ui};
use zeroize::Zeroizing;

use super::Actions;
use super::setup::{field, strength};
use crate::app::message::Request;

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

pub fn show(ui: &mut Ui, form: &mut PassphraseForm, out: &mut Actions) {
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
}
