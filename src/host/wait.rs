//! Waiting for a data directory's store while another process holds it (sled allows one
//! process at a time). Commands are short, so a command that finds the store busy polls
//! it with backoff, says so once on stderr, and gives up after [`lock_wait`] with an
//! error naming the process that holds it (when the OS tells: Linux `/proc/locks`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::node::NodeError;
use crate::store::StoreError;

/// How long a command waits for a busy store by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);
/// Overrides [`DEFAULT_LOCK_WAIT`], in seconds (fractions allowed; 0 fails at once).
pub const LOCK_WAIT_ENV: &str = "HUDDLE_LOCK_WAIT";
/// The longest wait the override may ask for: one day.
const LONGEST_LOCK_WAIT: f64 = 86_400.0;
/// The first pause between tries; each pause doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_millis(200);

/// How long to wait for a busy store: [`LOCK_WAIT_ENV`] if it holds a number of seconds,
/// else [`DEFAULT_LOCK_WAIT`].
pub fn lock_wait() -> Duration {
    std::env::var(LOCK_WAIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_LOCK_WAIT, |s| {
            Duration::from_secs_f64(s.min(LONGEST_LOCK_WAIT))
        })
}

/// Whether a node failed to open only because another process holds its store.
pub fn is_locked(e: &NodeError) -> bool {
    matches!(e, NodeError::Store(StoreError::Locked(_)))
}

/// One command's wait for a busy store.
pub struct StoreWait<'a> {
    dir: &'a Path,
    started: Instant,
    limit: Duration,
    pause: Duration,
    announced: bool,
}

impl<'a> StoreWait<'a> {
    pub fn new(dir: &'a Path) -> StoreWait<'a> {
        StoreWait {
            dir,
            started: Instant::now(),
            limit: lock_wait(),
            pause: FIRST_PAUSE,
            announced: false,
        }
    }

    /// The store was found busy: pauses before the next try (saying so the first time),
    /// or fails once the wait is over.
    pub fn pause(&mut self) -> Result<()> {
        let waited = self.started.elapsed();
        if waited >= self.limit {
            return Err(anyhow!(
                "{} is in use by another Huddle process{} and stayed so for {:.0} s; if that \
                 process is stuck, stop it (set {LOCK_WAIT_ENV} to wait longer, or keep \
                 `huddle serve` running so that commands share the data directory)",
                self.dir.display(),
                holder(self.dir).map_or_else(String::new, |h| format!(" ({h})")),
                waited.as_secs_f64(),
            ));
        }
        if !self.announced {
            eprintln!(
                "waiting for another huddle command using {}…",
                self.dir.display()
            );
            self.announced = true;
        }
        std::thread::sleep(self.pause.min(self.limit - waited));
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        Ok(())
    }
}

/// The process holding the store's lock, as `pid 1234, huddle post`: from the flock
/// entries of `/proc/locks` for sled's `db` file. Only the program and its subcommand
/// are named, never other arguments (a post's text is an argument).
pub fn holder(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let db = std::fs::metadata(dir.join("db")).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks
        .lines()
        .find_map(|line| lock_owner(line, db.dev(), db.ino()))?;
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    Some(match program(&argv) {
        Some(program) => format!("pid {pid}, {program}"),
        None => format!("pid {pid}"),
    })
}

/// The pid in one `/proc/locks` line, if it is a held (not awaited) lock on the file
/// `dev`/`ino`: `1: FLOCK  ADVISORY  WRITE 1234 08:02:5678 0 EOF`.
fn lock_owner(line: &str, dev: u64, ino: u64) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) == Some(&"->") {
        return None;
    }
    let mut file = fields.get(5)?.split(':');
    let major = u64::from_str_radix(file.next()?, 16).ok()?;
    let minor = u64::from_str_radix(file.next()?, 16).ok()?;
    let inode: u64 = file.next()?.parse().ok()?;
    // The kernel prints MAJOR:MINOR of the device; `st_dev` encodes them as glibc does.
    let (dev_major, dev_minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    (inode == ino && major == dev_major && minor == dev_minor)
        .then(|| fields.get(4)?.parse().ok())
        .flatten()
}

/// `huddle post` from a NUL-separated command line: the program's file name and, for
/// huddle, its subcommand (options and their values skipped).
fn program(argv: &[u8]) -> Option<String> {
    let mut args = argv
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let name = args.next()?.rsplit('/').next()?.to_string();
    if name.is_empty() {
        return None;
    }
    if !name.starts_with("huddle") {
        return Some(name);
    }
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if arg == "--data-dir" {
            skip_value = true;
        } else if !arg.is_empty() && !arg.starts_with('-') {
            let command = arg.bytes().all(|b| b.is_ascii_lowercase());
            return Some(if command {
                format!("{name} {arg}")
            } else {
                name
            });
        }
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines_are_matched_by_device_and_inode() {
        let dev = (8 << 8) | 2;
        let line = "1: FLOCK  ADVISORY  WRITE 4242 08:02:5678 0 EOF";
        assert_eq!(lock_owner(line, dev, 5678), Some(4242));
        assert_eq!(lock_owner(line, dev, 5679), None);
        assert_eq!(lock_owner(line, (8 << 8) | 3, 5678), None);
        let waiter = "1: -> FLOCK  ADVISORY  WRITE 4243 08:02:5678 0 EOF";
        assert_eq!(lock_owner(waiter, dev, 5678), None);
        assert_eq!(lock_owner("garbage", dev, 5678), None);
    }

    #[test]
    fn only_the_program_and_its_subcommand_are_named() {
        let argv = b"/usr/bin/huddle\0--data-dir\0/tmp/post\0post\0abcd\0Secret text\0";
        assert_eq!(program(argv).as_deref(), Some("huddle post"));
        let argv = b"huddle\0--json\0--data-dir\0d\0Mixed Case\0";
        assert_eq!(program(argv).as_deref(), Some("huddle"));
        assert_eq!(program(b"/opt/other\0post\0").as_deref(), Some("other"));
        assert_eq!(program(b"").as_deref(), None);
    }
}
