//! The data directory itself: where it is by default, and keeping it owner-only.

use std::path::{Path, PathBuf};

/// The OS data directory + `/huddle` (`~/.local/share/huddle` on Linux), if the OS has
/// one.
pub fn default_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("huddle"))
}

/// Makes a data directory readable by its owner only.
pub fn restrict(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
