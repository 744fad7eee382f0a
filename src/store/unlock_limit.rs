//! Failed unlocks, rate-limited and remembered: every wrong passphrase is recorded in
//! `<data dir>/unlock-failures` (owner-only), and after [`FREE_FAILURES`] consecutive
//! failures the next attempt is refused until a growing delay has passed (1 s, 2 s,
//! 4 s … at most [`MAX_DELAY_SECS`]). A right passphrase ends the run of failures; the
//! times of the failures stay in the file until the opened store takes them
//! ([`super::Store::take_failed_unlocks`]) so they can be audited.
//!
//! Layout: one line per event, `F <unix ms>` for a failure and `S <unix ms>` for a
//! success; unreadable lines are ignored, and only the last [`MAX_LINES`] are kept.
//! This slows guessing through Huddle itself (the app's lock screen, the CLI); it
//! cannot slow a thief who copies the files away, which is what Argon2id's cost is for.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::StoreError;

/// The file's name inside the data directory.
pub const FILE: &str = "unlock-failures";
/// Consecutive failures allowed without a delay.
pub const FREE_FAILURES: usize = 5;
/// The longest delay between attempts.
pub const MAX_DELAY_SECS: u64 = 60;
/// Lines kept (older ones are dropped): bounds the file.
const MAX_LINES: usize = 1000;
/// A larger file is not read (nothing Huddle writes comes near it).
const MAX_BYTES: u64 = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Event {
    Failure(u64),
    Success(u64),
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn read(dir: &Path) -> Vec<Event> {
    let p = path(dir);
    match std::fs::metadata(&p) {
        Ok(m) if m.len() <= MAX_BYTES => {}
        _ => return Vec::new(),
    }
    let text = std::fs::read_to_string(&p).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (kind, ms) = line.split_once(' ')?;
            let ms = ms.trim().parse().ok()?;
            match kind {
                "F" => Some(Event::Failure(ms)),
                "S" => Some(Event::Success(ms)),
                _ => None,
            }
        })
        .collect()
}

fn write(dir: &Path, events: &[Event]) -> Result<(), StoreError> {
    let p = path(dir);
    let io = |e| StoreError::Io(p.clone(), e);
    if events.is_empty() {
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        };
    }
    let keep = &events[events.len().saturating_sub(MAX_LINES)..];
    let mut text = String::new();
    for e in keep {
        match e {
            Event::Failure(ms) => text.push_str(&format!("F {ms}\n")),
            Event::Success(ms) => text.push_str(&format!("S {ms}\n")),
        }
    }
    let tmp = p.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &p).map_err(io)
}

/// The failures since the last success, oldest first.
fn consecutive(events: &[Event]) -> Vec<u64> {
    let start = events
        .iter()
        .rposition(|e| matches!(e, Event::Success(_)))
        .map_or(0, |i| i + 1);
    events[start..]
        .iter()
        .filter_map(|e| match e {
            Event::Failure(ms) => Some(*ms),
            Event::Success(_) => None,
        })
        .collect()
}

/// The delay owed after `failures` consecutive failures.
pub fn delay_secs(failures: usize) -> u64 {
    match failures.checked_sub(FREE_FAILURES + 1) {
        None => 0,
        Some(extra) => 1u64
            .checked_shl(extra.min(32) as u32)
            .unwrap_or(MAX_DELAY_SECS)
            .min(MAX_DELAY_SECS),
    }
}

/// Milliseconds still to wait at `now_ms` after the consecutive failures `failures`.
pub fn wait_ms(failures: &[u64], now_ms: u64) -> u64 {
    let Some(&last) = failures.last() else {
        return 0;
    };
    // A last failure in the future (a clock set back) is counted from now.
    let from = last.min(now_ms);
    (from + delay_secs(failures.len()) * 1000).saturating_sub(now_ms)
}

/// What the next attempts cost after the failures recorded so far: how many are left
/// before a wait, and the wait owed now (for the lock screen's words).
pub fn outlook(dir: &Path) -> (usize, u64) {
    let run = consecutive(&read(dir));
    let free_left = (FREE_FAILURES + 1).saturating_sub(run.len());
    (free_left, delay_secs(run.len()))
}

/// Refuses an attempt made too soon after failures ([`StoreError::TooManyFailures`]).
pub fn check(dir: &Path) -> Result<(), StoreError> {
    let wait = wait_ms(&consecutive(&read(dir)), now_ms());
    if wait > 0 {
        return Err(StoreError::TooManyFailures {
            wait_secs: wait.div_ceil(1000),
        });
    }
    Ok(())
}

/// Records a wrong passphrase.
pub fn failed(dir: &Path) {
    let mut events = read(dir);
    events.push(Event::Failure(now_ms()));
    if let Err(e) = write(dir, &events) {
        tracing::warn!("could not record a failed unlock: {e}");
    }
}

/// Records a right passphrase: the run of failures ends (their times are kept).
pub fn succeeded(dir: &Path) {
    let events = read(dir);
    if events.is_empty() || matches!(events.last(), Some(Event::Success(_))) {
        return;
    }
    let mut events = events;
    events.push(Event::Success(now_ms()));
    if let Err(e) = write(dir, &events) {
        tracing::warn!("could not record an unlock: {e}");
    }
}

/// The times (unix ms) of every failed unlock recorded, oldest first, without removing them.
pub fn failures(dir: &Path) -> Vec<u64> {
    read(dir)
        .into_iter()
        .filter_map(|e| match e {
            Event::Failure(ms) => Some(ms),
            Event::Success(_) => None,
        })
        .collect()
}

/// The recorded failures, removed from the file (after a successful unlock).
pub fn take(dir: &Path) -> Vec<u64> {
    let taken = failures(dir);
    if let Err(e) = write(dir, &[]) {
        tracing::warn!("could not clear the failed unlocks: {e}");
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outlook_counts_tries_down_to_the_first_wait() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(outlook(dir.path()), (FREE_FAILURES + 1, 0));
        for left in (1..=FREE_FAILURES).rev() {
            failed(dir.path());
            assert_eq!(outlook(dir.path()), (left, 0));
        }
        failed(dir.path());
        assert_eq!(outlook(dir.path()), (0, 1));
        succeeded(dir.path());
        assert_eq!(outlook(dir.path()), (FREE_FAILURES + 1, 0));
    }

    #[test]
    fn the_delay_grows_and_is_capped() {
        let delays: Vec<u64> = (0..14).map(delay_secs).collect();
        assert_eq!(delays, [0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(delay_secs(usize::MAX), MAX_DELAY_SECS);
    }

    #[test]
    fn the_wait_counts_from_the_last_failure_with_an_injected_clock() {
        let t = 1_000_000;
        let six: Vec<u64> = (0..6).map(|i| t + i).collect();
        assert_eq!(wait_ms(&six[..5], t + 5), 0);
        assert_eq!(wait_ms(&six, t + 5), 1000);
        assert_eq!(wait_ms(&six, t + 505), 500);
        assert_eq!(wait_ms(&six, t + 1005), 0);
        // A failure dated in the future does not lock for longer than the delay.
        let future = [u64::MAX / 2; 12];
        assert_eq!(wait_ms(&future, t), 60_000);
    }

    #[test]
    fn a_success_ends_the_run_and_take_clears() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..7 {
            failed(dir.path());
        }
        assert!(matches!(
            check(dir.path()),
            Err(StoreError::TooManyFailures { wait_secs: 2 })
        ));
        succeeded(dir.path());
        assert!(check(dir.path()).is_ok());
        assert_eq!(failures(dir.path()).len(), 7);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        assert_eq!(take(dir.path()).len(), 7);
        assert!(failures(dir.path()).is_empty());
        assert!(!dir.path().join(FILE).exists());
    }
}
