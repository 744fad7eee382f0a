//! The free-space reserve: every write is refused while the store's filesystem has less
//! free than the reserve, so sled itself never meets a full disk (it cannot recover from
//! one by itself: see `Store::recover`).
//!
//! Why the reserve is what it is (sled 0.34.7): sled writes, on its own and at any time,
//! whole log segments (`segment_size`, 512 KiB, several in flight while its cleaner
//! rewrites fragmented segments in `LowSpace` mode) and, every `snapshot_after_ops`
//! (1 000 000) operations, a new `snap.*` file written beside the old one before the old
//! one is removed. [`RESERVE_BASE`] covers the segments many times over and the snapshot
//! term grows with the store: twice the largest snapshot there is.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
/// The fixed part of the reserve.
pub const RESERVE_BASE: u64 = 32 * MIB;
/// While this much more than the reserve is free, a measurement is reused this long.
const CACHE_MARGIN: u64 = 64 * MIB;
const CACHE_FOR: Duration = Duration::from_millis(250);

/// There is not enough room to write safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    pub free: u64,
    pub reserve: u64,
}

impl Short {
    pub fn free_mib(&self) -> u64 {
        self.free / MIB
    }
    pub fn reserve_mib(&self) -> u64 {
        self.reserve.div_ceil(MIB)
    }
}

/// Free space checks for one store directory.
pub struct Guard {
    dir: PathBuf,
    reserve: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl Guard {
    pub fn new(dir: &Path) -> Guard {
        Guard {
            dir: dir.to_path_buf(),
            reserve: reserve_for(dir),
            last: Mutex::new(None),
        }
    }

    /// Ok when at least the reserve (scaled by `share`, 1.0 = all of it) is free.
    pub fn check(&self, share: f64) -> Result<(), Short> {
        let needed = (self.reserve as f64 * share) as u64;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let free = match *last {
            Some((at, free)) if at.elapsed() < CACHE_FOR && free > needed + CACHE_MARGIN => free,
            _ => {
                let free = free_bytes(&self.dir).unwrap_or(u64::MAX);
                *last = Some((Instant::now(), free));
                free
            }
        };
        if free < needed {
            return Err(Short {
                free,
                reserve: self.reserve,
            });
        }
        Ok(())
    }
}

/// The reserve for the store at `dir`: [`RESERVE_BASE`] plus twice its largest snapshot.
pub fn reserve_for(dir: &Path) -> u64 {
    let largest_snapshot = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("snap."))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    RESERVE_BASE + 2 * largest_snapshot
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
#[cfg(unix)]
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(not(unix))]
pub fn free_bytes(_dir: &Path) -> std::io::Result<u64> {
    Ok(u64::MAX)
}
