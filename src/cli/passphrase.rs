//! The passphrase: from `HUDDLE_PASSPHRASE`, or asked for on the terminal. It is wiped
//! from memory when dropped.

use anyhow::{Result, bail};
use zeroize::Zeroizing;

const ENV: &str = "HUDDLE_PASSPHRASE";

/// The passphrase from `HUDDLE_PASSPHRASE`, if set.
pub fn from_env() -> Option<Zeroizing<String>> {
    std::env::var(ENV).ok().map(Zeroizing::new)
}

fn ask(prompt: &str) -> Result<Zeroizing<String>> {
    match rpassword::prompt_password(prompt) {
        Ok(p) => Ok(Zeroizing::new(p)),
        Err(_) => bail!("no terminal to ask for the passphrase: set {ENV}"),
    }
}

/// The passphrase of an existing data directory.
pub fn existing() -> Result<Zeroizing<String>> {
    match from_env() {
        Some(p) => Ok(p),
        None => ask("Passphrase: "),
    }
}

/// A passphrase for a new data directory, asked twice on a terminal.
pub fn new() -> Result<Zeroizing<String>> {
    if let Some(p) = from_env() {
        return Ok(p);
    }
    let first = ask("Choose a passphrase for this device (8+ characters): ")?;
    let again = ask("Repeat it: ")?;
    if *first != *again {
        bail!("the passphrases do not match");
    }
    Ok(first)
}
