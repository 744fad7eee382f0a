//! Opening sled defensively, and what is done with a store that does not open: sled's
//! known leftovers are cleaned before opening, damage is told apart from other failures
//! (a panic inside sled is damage too), a damaged store is moved aside (never deleted),
//! and what is still readable in it is salvaged.

use std::path::{Path, PathBuf};

use super::StoreError;
use crate::core::envelope::Envelope;

/// Files and folders that sled keeps in the data directory.
fn is_sled_entry(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Removes what sled 0.34.7 leaves behind when it stops while writing a snapshot (a
/// crash, a full disk): `snap.<lsn>.generating`. sled renames it to `snap.<lsn>` once
/// it is complete and synced, and keeps the previous snapshot until then, so a leftover
/// one is never needed; but sled reads it at open and refuses to start (sled #1527).
/// Returns the files removed.
///
/// Only when no other process holds the store (sled's lock on `db`, which is taken here
/// and released before sled opens): a store in use may be writing a snapshot right now,
/// and removing it under the other process breaks that process's write.
pub fn clean_leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Some(_lock) = unused_store_lock(dir) else {
        return removed;
    };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::warn!(
                        "removed an unfinished sled snapshot left by an interrupted write: {}",
                        path.display()
                    );
                    removed.push(path);
                }
                Err(e) => tracing::warn!("could not remove {}: {e}", path.display()),
            }
        }
    }
    removed
}

/// sled's own lock on `<dir>/db` (an exclusive `flock`), if no process holds it; a
/// store without a `db` file has no process in it either.
fn unused_store_lock(dir: &Path) -> Option<Option<std::fs::File>> {
    let Ok(db) = std::fs::File::open(dir.join("db")) else {
        return Some(None);
    };
    rustix::fs::flock(&db, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .ok()
        .map(|()| Some(db))
}

fn damaged(path: &Path, why: String) -> StoreError {
    StoreError::Damaged {
        path: path.to_path_buf(),
        why,
    }
}

/// Maps a sled error met while opening or first reading the store.
pub fn classify(path: &Path, e: sled::Error) -> StoreError {
    use std::io::ErrorKind;
    match e {
        sled::Error::Io(io) if io.kind() == ErrorKind::WouldBlock => {
            StoreError::Locked(path.to_path_buf())
        }
        sled::Error::Io(io) if io.to_string().contains("lock") => {
            StoreError::Locked(path.to_path_buf())
        }
        sled::Error::Io(io)
            if matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData) =>
        {
            damaged(path, io.to_string())
        }
        sled::Error::Corruption { .. } => damaged(path, "sled found corrupted data".into()),
        e @ (sled::Error::ReportableBug(_) | sled::Error::Unsupported(_)) => {
            damaged(path, e.to_string())
        }
        other => StoreError::Sled(other),
    }
}

/// How long an open waits for sled's lock on a store this process opened before: one
/// closed a moment ago (an idle lock and unlock, a reopen after a write error) may still
/// be held by sled's background log writer, which lets it go once its last write is out.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The stores this process has opened.
static OPENED_HERE: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Opens sled at `path` after cleaning its leftovers; damage (including a panic inside
/// sled while it reads its files) is [`StoreError::Damaged`]. A lock held elsewhere is
/// [`StoreError::Locked`] at once, unless this process opened the store before (then it
/// is waited for, [`RELEASE_WAIT`] at most).
pub fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let opened_here = || {
        OPENED_HERE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(path)
    };
    let started = std::time::Instant::now();
    loop {
        match open_db_once(path) {
            Err(StoreError::Locked(_)) if started.elapsed() < RELEASE_WAIT && opened_here() => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(db) => {
                OPENED_HERE
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(path.to_path_buf());
                return Ok(db);
            }
            other => return other,
        }
    }
}

fn open_db_once(path: &Path) -> Result<sled::Db, StoreError> {
    clean_leftovers(path);
    let opened = std::panic::catch_unwind(|| sled::Config::new().path(path).open());
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(classify(path, e)),
        Err(_) => Err(damaged(
            path,
            "the storage engine failed reading its files".into(),
        )),
    }
}

/// Moves sled's files out of `dir` into a new `damaged-<time>` folder inside it and
/// returns that folder. The identity file and everything else stay.
pub fn move_aside(dir: &Path) -> Result<PathBuf, StoreError> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "unknown-time".into());
    let mut aside = dir.join(format!("damaged-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = dir.join(format!("damaged-{stamp}-{n}"));
    }
    let io = |p: &Path, e| StoreError::Io(p.to_path_buf(), e);
    std::fs::create_dir(&aside).map_err(|e| io(&aside, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
        let name = entry.file_name();
        if is_sled_entry(&name.to_string_lossy()) {
            std::fs::rename(entry.path(), aside.join(&name)).map_err(|e| io(&entry.path(), e))?;
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(aside)
}

/// What could still be read in a damaged store: its envelopes, accepted and pending,
/// each one that still decodes (the receiving replica verifies them like any other).
/// Envelopes are stored as received, so no key is needed to read them.
/// It reads a copy: sled repairs what it opens, and the damaged store is kept as it was.
pub fn salvage(aside: &Path) -> Result<Vec<Envelope>, StoreError> {
    let copy = aside.with_extension("salvage");
    let result = copy_dir(aside, &copy)
        .map_err(|e| StoreError::Io(copy.clone(), e))
        .and_then(|()| {
            salvage_in_place(&copy).or_else(|_| {
                // Without its snapshots sled rebuilds its page table from the log, up to
                // the first damaged record.
                for entry in std::fs::read_dir(&copy).into_iter().flatten().flatten() {
                    if entry.file_name().to_string_lossy().starts_with("snap.") {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
                salvage_in_place(&copy)
            })
        });
    let _ = std::fs::remove_dir_all(&copy);
    result
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn salvage_in_place(aside: &Path) -> Result<Vec<Envelope>, StoreError> {
    clean_leftovers(aside);
    let read = std::panic::catch_unwind(|| -> Result<Vec<Envelope>, StoreError> {
        let db = sled::Config::new()
            .path(aside)
            .open()
            .map_err(|e| classify(aside, e))?;
        let mut out = Vec::new();
        for (tree, skip) in [("envelopes", 32), ("pending", 0)] {
            let Ok(t) = db.open_tree(tree) else { continue };
            for item in t.iter() {
                // A damaged stretch ends the scan of that tree; what came before is kept.
                let Ok((_, v)) = item else { break };
                if let Some(env) = v.get(skip..).and_then(|b| Envelope::decode(b).ok()) {
                    out.push(env);
                }
            }
        }
        Ok(out)
    });
    read.unwrap_or_else(|_| {
        Err(damaged(
            aside,
            "the storage engine failed reading its files".into(),
        ))
    })
}
