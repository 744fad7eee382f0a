//! This person's app preferences on this device (`<data dir>/app-prefs.json`): how the
//! composer sends. Not sealed, and not clinic data: someone who can edit the file can
//! only flip a preference, which they could do in the app's Settings. A missing,
//! oversized, unreadable or non-regular file gives the defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name inside the data directory.
pub const FILE: &str = "app-prefs.json";
/// A larger file is not read.
const MAX_BYTES: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    /// Enter sends the message and Shift+Enter starts a new line; off: Enter starts a
    /// new line and Ctrl+Enter sends.
    pub enter_sends: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs { enter_sends: true }
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

impl Prefs {
    /// The saved preferences, or the defaults.
    pub fn load(dir: &Path) -> Prefs {
        let p = path(dir);
        match std::fs::metadata(&p) {
            // A regular file only: a FIFO or a device put there would block the read.
            Ok(m) if m.is_file() && m.len() <= MAX_BYTES => {}
            _ => return Prefs::default(),
        }
        std::fs::read(&p)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Saves into an existing data directory (written whole, then renamed into place).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let p = path(dir);
        let tmp = p.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_survive_a_restart_and_a_damaged_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Prefs::load(dir.path()).enter_sends);
        Prefs { enter_sends: false }.save(dir.path()).unwrap();
        assert!(!Prefs::load(dir.path()).enter_sends);
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(Prefs::load(dir.path()).enter_sends);
        std::fs::write(dir.path().join(FILE), vec![b' '; 10_000]).unwrap();
        assert!(Prefs::load(dir.path()).enter_sends);
        // A FIFO in its place (a same-user program's doing) would block a read forever.
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join(FILE))
            .status()
            .is_ok_and(|s| s.success());
        if made {
            assert!(Prefs::load(dir.path()).enter_sends);
        }
    }
}
