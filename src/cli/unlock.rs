//! `huddle unlock` and `huddle lock`, and the proof every command sends to a running
//! `huddle serve`: `HUDDLE_PASSPHRASE` if set, else the token of the session an unlock
//! opened, kept in `<data dir>/session` (owner-only) until `huddle lock` removes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use super::control::{self, Forwarded};
use super::passphrase;
use crate::host::guard::Proof;

/// The session token's file in the data directory.
pub const SESSION_FILE: &str = "session";
/// A token file longer than this is not one (64 hex characters and a newline).
const MAX_TOKEN_FILE: u64 = 256;

fn session_path(dir: &Path) -> PathBuf {
    dir.join(SESSION_FILE)
}

/// The proof at hand for commands sent to a running serve.
pub fn proof(dir: &Path) -> Proof {
    if let Some(pass) = passphrase::from_env() {
        return Proof::Passphrase(pass);
    }
    match read_token(dir) {
        Some(token) => Proof::Token(token),
        None => Proof::None,
    }
}

fn read_token(dir: &Path) -> Option<Zeroizing<String>> {
    use std::io::Read;
    let file = std::fs::File::open(session_path(dir)).ok()?;
    let mut token = Zeroizing::new(String::new());
    file.take(MAX_TOKEN_FILE).read_to_string(&mut token).ok()?;
    Some(Zeroizing::new(token.trim().to_string()))
}

fn write_token(dir: &Path, token: &str) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = session_path(dir);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An older file keeps its mode when opened: it is made owner-only either way.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn remove_token(dir: &Path) {
    let _ = std::fs::remove_file(session_path(dir));
}

/// Prints a reply; fails with its error.
fn finish(reply: control::Reply) -> Result<()> {
    print!("{}", reply.out.stdout);
    eprint!("{}", reply.out.stderr);
    match reply.error {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}

/// `huddle unlock`: proves the passphrase to the running serve, which opens its node if
/// it is locked and a session; the session's token is kept owner-only.
pub fn unlock(dir: &Path, args: &[String]) -> Result<()> {
    if !control::running(dir) {
        bail!(
            "no huddle serve is running on {}: nothing to unlock (commands open the store \
             with the passphrase themselves)",
            dir.display()
        );
    }
    let pass = passphrase::existing()?;
    match control::forward_with(dir, args, Proof::Passphrase(pass)) {
        Forwarded::Answered(mut reply) => {
            let token = Zeroizing::new(reply.session.take());
            if reply.error.is_none() {
                let token = token.as_deref().context("serve opened no session")?;
                write_token(dir, token)?;
            }
            finish(reply)
        }
        Forwarded::NotRunning | Forwarded::Declined => {
            bail!("huddle serve stopped before it answered")
        }
        Forwarded::CutOff(why) => bail!("no answer from huddle serve: {why}"),
    }
}

/// `huddle lock`: ends the session (its file is removed) and locks the running serve.
pub fn lock(dir: &Path, args: &[String]) -> Result<()> {
    let proof = proof(dir);
    remove_token(dir);
    match control::forward_with(dir, args, proof) {
        Forwarded::Answered(reply) => finish(reply),
        Forwarded::NotRunning => {
            println!(
                "no huddle serve is running on {}; no session is left",
                dir.display()
            );
            Ok(())
        }
        Forwarded::Declined => bail!("huddle serve stopped before it answered"),
        Forwarded::CutOff(why) => bail!("no answer from huddle serve: {why}"),
    }
}
