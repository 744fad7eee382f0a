//! Proof that whoever sends a command through the control socket holds the passphrase
//! (45 CFR 164.312(a)(2)(i) and (d)): the socket is owner-only, but any process of the
//! same OS user can reach it, so the socket alone proves nothing. A request carries the
//! passphrase, or a session token that `huddle unlock` obtained with it; `huddle lock`
//! ends every session. Wrong passphrases slow down: after two, each further attempt
//! waits twice as long as the one before (up to a minute), whoever asks.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::store::{StoreError, identity_file};

/// The file a session token is kept in, in the data directory (owner-only).
pub const SESSION_FILE: &str = "session";
/// Sessions open at once, at most (older ones end first).
const MAX_SESSIONS: usize = 16;
/// Wrong passphrases that cost nothing; the next ones wait 2 s, 4 s, 8 s …
const FREE_FAILURES: u32 = 2;
const MAX_DELAY: Duration = Duration::from_secs(60);

/// What a request proves itself with.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub enum Proof {
    Passphrase(String),
    /// A session token, hex.
    Session(String),
}

/// Why a proof was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(
        "the running node needs proof of the passphrase: set HUDDLE_PASSPHRASE (or type it when asked), or run `huddle unlock` first"
    )]
    Missing,
    #[error("wrong passphrase for {0}")]
    Wrong(PathBuf),
    #[error("too many wrong passphrases: try again in {0} s")]
    Throttled(u64),
    #[error(
        "the session has ended (locked, expired, or the node restarted): run `huddle unlock` again"
    )]
    SessionEnded,
    #[error("`huddle unlock` needs the passphrase itself, not a session")]
    UnlockNeedsPassphrase,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node's side: verified passphrases, sessions, and the delay after failures.
pub struct Guard {
    dir: PathBuf,
    /// A random key for this process: what is kept of the verified passphrase is a keyed
    /// hash, never the passphrase.
    key: Zeroizing<[u8; 32]>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    verified: Option<[u8; 32]>,
    /// Session token hashes and when each ends unless used.
    sessions: HashMap<[u8; 32], Instant>,
    failures: u32,
    not_before: Option<Instant>,
}

impl Guard {
    pub fn new(dir: &Path) -> Guard {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rng(), key.as_mut());
        Guard {
            dir: dir.to_path_buf(),
            key,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keyed(&self, passphrase: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key.as_ref());
        h.update(passphrase.as_bytes());
        h.finalize().into()
    }

    /// Checks a passphrase (an Argon2 run unless it is the one verified before; call
    /// off the async executor). Refused at once while failures make callers wait.
    pub fn check_passphrase(&self, passphrase: &str, now: Instant) -> Result<(), ProofError> {
        let keyed = self.keyed(passphrase);
        {
            let s = self.state();
            if let Some(until) = s.not_before.filter(|t| *t > now) {
                return Err(ProofError::Throttled((until - now).as_secs().max(1)));
            }
            if s.verified.is_some_and(|v| same(&v, &keyed)) {
                return Ok(());
            }
        }
        match identity_file::open(&self.dir, passphrase.as_bytes()) {
            Ok(_) => {
                let mut s = self.state();
                s.verified = Some(keyed);
                s.failures = 0;
                s.not_before = None;
                Ok(())
            }
            Err(StoreError::WrongPassphrase(p)) => {
                let mut s = self.state();
                s.failures = s.failures.saturating_add(1);
                s.not_before = Some(now + delay_after(s.failures));
                Err(ProofError::Wrong(p))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Checks a session token; a valid one is extended by `idle`.
    pub fn check_session(
        &self,
        token: &str,
        now: Instant,
        idle: Duration,
    ) -> Result<(), ProofError> {
        let hash = token_hash(token);
        let mut s = self.state();
        s.sessions.retain(|_, until| *until > now);
        let found = s
            .sessions
            .iter()
            .find(|(h, _)| same(h, &hash))
            .map(|(h, _)| *h);
        match found {
            Some(h) => {
                s.sessions.insert(h, now + idle);
                Ok(())
            }
            None => Err(ProofError::SessionEnded),
        }
    }

    /// Opens a session (after a passphrase proof): its token, hex.
    pub fn open_session(&self, now: Instant, idle: Duration) -> Zeroizing<String> {
        let mut token = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rng(), token.as_mut());
        let hex = Zeroizing::new(hex::encode(token.as_ref()));
        let mut s = self.state();
        s.sessions.retain(|_, until| *until > now);
        while s.sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = s.sessions.iter().min_by_key(|(_, t)| **t).map(|(h, _)| *h) else {
                break;
            };
            s.sessions.remove(&oldest);
        }
        s.sessions.insert(token_hash(&hex), now + idle);
        hex
    }

    /// Ends every session and forgets the verified passphrase.
    pub fn lock(&self) {
        let mut s = self.state();
        s.sessions.clear();
        s.verified = None;
    }
}

/// How long the caller waits after `failures` wrong passphrases in a row.
pub fn delay_after(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None | Some(0) => Duration::ZERO,
        Some(n) => Duration::from_secs(1u64 << n.min(6)).min(MAX_DELAY),
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares in constant time.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- the client's side ----

fn session_path(dir: &Path) -> PathBuf {
    dir.join(SESSION_FILE)
}

/// The session token kept in the data directory, if any.
pub fn saved_session(dir: &Path) -> Option<Zeroizing<String>> {
    let text = Zeroizing::new(std::fs::read_to_string(session_path(dir)).ok()?);
    let token = text.trim();
    (token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Zeroizing::new(token.to_string()))
}

/// Keeps a session token, readable by its owner only.
pub fn save_session(dir: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = session_path(dir);
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()
}

pub fn forget_session(dir: &Path) {
    let _ = std::fs::remove_file(session_path(dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_two_failures_and_are_capped() {
        let secs: Vec<u64> = (0..12).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(secs, [0, 0, 0, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[test]
    fn sessions_end_when_idle_or_locked_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::new(dir.path());
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let token = guard.open_session(t0, idle);
        assert!(
            guard
                .check_session(&token, t0 + Duration::from_secs(50), idle)
                .is_ok()
        );
        // Used at 50 s: good until 110 s.
        assert!(
            guard
                .check_session(&token, t0 + Duration::from_secs(100), idle)
                .is_ok()
        );
        assert!(
            guard
                .check_session(&token, t0 + Duration::from_secs(161), idle)
                .is_err()
        );
        let token = guard.open_session(t0, idle);
        assert!(guard.check_session(&"0".repeat(64), t0, idle).is_err());
        guard.lock();
        assert!(guard.check_session(&token, t0, idle).is_err());
        let first = guard.open_session(t0, idle);
        for i in 0..MAX_SESSIONS as u64 {
            guard.open_session(t0 + Duration::from_millis(i + 1), idle);
        }
        assert!(
            guard.check_session(&first, t0, idle).is_err(),
            "the oldest ended"
        );
    }
}
