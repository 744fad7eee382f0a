//! Proof for the control socket: every command a running node answers comes with the
//! passphrase or with the token of a session an unlock opened. The guard checks both:
//! passphrases one at a time (each costs an Argon2 run, off the async executor), with a
//! growing delay after each failure; tokens in constant time against the hash of the one
//! open session, which ends after [`SESSION_IDLE`] without use, or at a lock.

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::node::NodeError;
use crate::store::StoreError;

/// An unlock session ends after this long without a command.
pub const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
/// A passphrase longer than this is refused before any Argon2 run.
pub const MAX_PASSPHRASE: usize = 1024;
/// The delay after the first failed proof; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(8);

/// What a client sends to show that it may command the node.
pub enum Proof {
    None,
    Passphrase(Zeroizing<String>),
    /// A session token, hex.
    Token(Zeroizing<String>),
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "Huddle is running on this data directory (the app or `huddle serve`) and needs \
         proof for every command: set HUDDLE_PASSPHRASE or run `huddle unlock`"
    )]
    Missing,
    #[error(
        "the unlock session has ended (idle, locked, or serve restarted): set \
         HUDDLE_PASSPHRASE or run `huddle unlock`"
    )]
    SessionEnded,
    #[error("{0}")]
    Wrong(String),
    #[error("the passphrase could not be checked: {0}")]
    Unchecked(String),
}

struct Session {
    digest: [u8; 32],
    last_use: Instant,
}

/// The proof checks of one control socket.
pub struct Guard {
    session: std::sync::Mutex<Option<Session>>,
    /// Failed proofs in a row; held while a passphrase is checked, so checks run one
    /// at a time and each waits out the delay the failures before it earned.
    failures: tokio::sync::Mutex<u32>,
    session_idle: Duration,
}

/// Whether an error is a wrong passphrase (from the store or a node opening it).
pub fn is_wrong_passphrase(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref(), Some(StoreError::WrongPassphrase(_)))
            || matches!(
                c.downcast_ref(),
                Some(NodeError::Store(StoreError::WrongPassphrase(_)))
            )
    })
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Compares without an early exit, so the time taken says nothing about where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn delay(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => FIRST_DELAY
            .saturating_mul(1 << (n - 1).min(10))
            .min(MAX_DELAY),
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(SESSION_IDLE)
    }
}

impl Guard {
    pub fn new(session_idle: Duration) -> Guard {
        Guard {
            session: std::sync::Mutex::new(None),
            failures: tokio::sync::Mutex::new(0),
            session_idle,
        }
    }

    /// Checks a passphrase with `check` (which runs an Argon2 and may open the node: it
    /// runs on a blocking thread). A wrong passphrase earns the next check a longer
    /// wait; this one already waited for the failures before it.
    pub async fn with_passphrase<T: Send + 'static>(
        &self,
        passphrase: &Zeroizing<String>,
        check: impl FnOnce(Zeroizing<String>) -> Result<T> + Send + 'static,
    ) -> Result<T, Refused> {
        let mut failures = self.failures.lock().await;
        tokio::time::sleep(delay(*failures)).await;
        if passphrase.len() > MAX_PASSPHRASE {
            *failures = failures.saturating_add(1);
            return Err(Refused::Wrong("wrong passphrase".into()));
        }
        let pass = passphrase.clone();
        let checked = tokio::task::spawn_blocking(move || check(pass))
            .await
            .map_err(|e| Refused::Unchecked(e.to_string()))?;
        match checked {
            Ok(t) => {
                *failures = 0;
                Ok(t)
            }
            Err(e) if is_wrong_passphrase(&e) => {
                *failures = failures.saturating_add(1);
                Err(Refused::Wrong(format!("{e:#}")))
            }
            Err(e) => Err(Refused::Unchecked(format!("{e:#}"))),
        }
    }

    /// Checks a session token; a valid one's session lasts [`SESSION_IDLE`] from now.
    pub async fn with_token(&self, token_hex: &str) -> Result<(), Refused> {
        let mut token = Zeroizing::new([0u8; 32]);
        let decoded = hex::decode_to_slice(token_hex.trim(), token.as_mut()).is_ok();
        let presented = digest(token.as_ref());
        let valid = {
            let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            match session.as_mut() {
                Some(s) if s.last_use.elapsed() > self.session_idle => {
                    *session = None;
                    false
                }
                Some(s) if decoded && same(&s.digest, &presented) => {
                    s.last_use = Instant::now();
                    true
                }
                _ => false,
            }
        };
        if valid {
            *self.failures.lock().await = 0;
            return Ok(());
        }
        let mut failures = self.failures.lock().await;
        *failures = failures.saturating_add(1);
        tokio::time::sleep(delay(*failures)).await;
        Err(Refused::SessionEnded)
    }

    /// Opens a session (ending any other): its token, hex, for the client to keep.
    pub fn open_session(&self) -> Zeroizing<String> {
        let mut token = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(token.as_mut());
        let session = Session {
            digest: digest(token.as_ref()),
            last_use: Instant::now(),
        };
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        Zeroizing::new(hex::encode(token.as_ref()))
    }

    /// Ends the session, if one is open.
    pub fn end_session(&self) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_opens_only_its_own_session_until_it_ends() {
        let guard = Guard::new(Duration::from_secs(60));
        assert!(matches!(
            guard.with_token("00").await,
            Err(Refused::SessionEnded)
        ));
        let token = guard.open_session();
        assert!(guard.with_token(&token).await.is_ok());
        let mut other = token.to_string();
        other.replace_range(0..1, if other.starts_with('0') { "1" } else { "0" });
        assert!(guard.with_token(&other).await.is_err());
        guard.end_session();
        assert!(guard.with_token(&token).await.is_err());
    }

    #[tokio::test]
    async fn an_idle_session_ends() {
        let guard = Guard::new(Duration::from_millis(1));
        let token = guard.open_session();
        std::thread::sleep(Duration::from_millis(5));
        assert!(guard.with_token(&token).await.is_err());
    }

    #[test]
    fn failures_wait_longer_each_time_up_to_a_cap() {
        assert_eq!(delay(0), Duration::ZERO);
        assert!(delay(2) > delay(1));
        assert_eq!(delay(100), MAX_DELAY);
    }
}
