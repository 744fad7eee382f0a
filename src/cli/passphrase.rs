//! The passphrase: from `HUDDLE_PASSPHRASE`, or asked for on the terminal. It is wiped
//! from memory when dropped. `huddle passphrase change` takes the new one from
//! `HUDDLE_NEW_PASSPHRASE` or asks for it twice.

use std::path::Path;

use anyhow::{Result, bail};
use zeroize::Zeroizing;

use huddle::store::Store;

const ENV: &str = "HUDDLE_PASSPHRASE";
const NEW_ENV: &str = "HUDDLE_NEW_PASSPHRASE";

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
    let first =
        ask("Choose a passphrase for this device (12+ characters, not a common password): ")?;
    let again = ask("Repeat it: ")?;
    if *first != *again {
        bail!("the passphrases do not match");
    }
    Ok(first)
}

/// Re-wraps the store in `dir` with a new passphrase (no `huddle serve` may hold it).
pub fn change(dir: &Path) -> Result<()> {
    if !Store::has_database(dir) {
        return Err(huddle::store::StoreError::NotFound(dir.to_path_buf()).into());
    }
    let current = existing()?;
    let mut store = Store::open(dir, current.as_bytes())?;
    let new = match std::env::var(NEW_ENV).ok().map(Zeroizing::new) {
        Some(p) => p,
        None => {
            let first = ask("New passphrase (12+ characters, not a common password): ")?;
            let again = ask("Repeat the new passphrase: ")?;
            if *first != *again {
                bail!("the new passphrases do not match; nothing was changed");
            }
            first
        }
    };
    if *new == *current {
        bail!("the new passphrase is the current one; nothing was changed");
    }
    store.change_passphrase(new.as_bytes())?;
    Ok(())
}
