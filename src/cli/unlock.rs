//! `huddle unlock` and `huddle lock`, and the proof every command sends to a running
//! `huddle serve`: `HUDDLE_PASSPHRASE` if set, else the token of the session an unlock
//! opened, kept in `<data dir>/session` (owner-only) until `huddle lock` removes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use super::passphrase;
use huddle::host::control::protocol::{Answer, Command};
use huddle::host::control::{self, Forwarded};
use huddle::host::guard::Proof;

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

/// `huddle unlock`: proves the passphrase to the running node, which opens a session
/// (and, for `huddle serve`, its node if it is locked); the session's token is kept
/// owner-only.
pub fn unlock(dir: &Path) -> Result<()> {
    if !control::running(dir) {
        bail!(
            "no huddle serve is running on {}: nothing to unlock (commands open the store \
             with the passphrase themselves)",
            dir.display()
        );
    }
    let pass = passphrase::existing()?;
    match control::forward(dir, Command::Unlock, Proof::Passphrase(pass)) {
        Forwarded::Answered(reply) => match &reply.answer {
            Answer::Unlocked { session } => {
                write_token(dir, session)?;
                println!(
                    "unlocked: commands need no passphrase until `huddle lock`, or 15 idle \
                     minutes"
                );
                Ok(())
            }
            Answer::Failed(e) => bail!("{e}"),
            other => bail!("the node answered the unlock with {other:?}"),
        },
        Forwarded::NotRunning | Forwarded::Declined => {
            bail!("huddle serve stopped before it answered")
        }
        Forwarded::CutOff(why) => bail!("no answer from huddle serve: {why}"),
    }
}

/// `huddle lock`: ends the session (its file is removed) and locks the running serve.
pub fn lock(dir: &Path) -> Result<()> {
    let proof = proof(dir);
    remove_token(dir);
    match control::forward(dir, Command::Lock, proof) {
        Forwarded::Answered(reply) => match reply.answer {
            Answer::LockedNow { closed, serve } => {
                println!(
                    "{}",
                    match (serve, closed) {
                        (true, true) => {
                            "locked: the node is closed and its keys are out of memory; it \
                             syncs blind until `huddle unlock` opens it again"
                        }
                        (true, false) => "already locked; the session is ended",
                        (false, _) => "the session is ended (the desktop app locks itself)",
                    }
                );
                Ok(())
            }
            Answer::Failed(ref e) => bail!("{e}"),
            ref other => bail!("the node answered the lock with {other:?}"),
        },
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
