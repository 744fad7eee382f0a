//! Claiming a data directory for a long-running node (`huddle serve`, later the desktop
//! app). A node must always win the store from plain commands, which would otherwise
//! keep taking it one after the other: it announces itself first by binding the control
//! socket (plain commands look for it before touching the store, and forward to it from
//! then on), and only then waits for the commands already running to release the store.
//! Requests queue on the socket meanwhile.

use std::fs::File;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::control;
use super::wait::{StoreWait, is_locked};
use crate::node::Node;
use crate::store::{Store, StoreError};

/// A data directory announced by a node that does not have its store yet. Dropped
/// unopened (a wrong passphrase, say), it closes the socket and declines what queued.
pub struct Claim {
    dir: PathBuf,
    exclusive: File,
    listener: Option<UnixListener>,
}

/// A claimed data directory whose node is open: held until the node stops, so that
/// no other node starts on it. The control socket is removed when it is dropped.
pub struct Claimed {
    dir: PathBuf,
    _exclusive: File,
}

impl Claim {
    /// Announces a node on `dir`: fails if another node serves it, else binds the
    /// control socket.
    pub fn take(dir: &Path) -> Result<Claim> {
        if !Store::exists(dir) {
            return Err(StoreError::NotFound(dir.to_path_buf()).into());
        }
        // Two nodes starting at once: the directory's own lock decides.
        let exclusive = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        match exclusive.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                bail!("a huddle serve is already running on {}", dir.display())
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", dir.display()));
            }
        }
        if control::running(dir) {
            bail!("a huddle serve is already running on {}", dir.display());
        }
        let listener = control::bind(dir)?;
        Ok(Claim {
            dir: dir.to_path_buf(),
            exclusive,
            listener: Some(listener),
        })
    }

    /// Opens the node as soon as the commands that hold the store let go of it (they
    /// are short; no new one takes it), waiting at most `HUDDLE_LOCK_WAIT` seconds (default 30).
    /// `None` if `stopping` turned true meanwhile.
    pub fn open_node(
        &self,
        passphrase: &[u8],
        stopping: impl Fn() -> bool,
    ) -> Result<Option<Node>> {
        let mut wait = StoreWait::new(&self.dir);
        loop {
            match Node::open(&self.dir, passphrase) {
                Err(e) if is_locked(&e) => wait.pause()?,
                opened => return Ok(Some(opened?)),
            }
            if stopping() {
                return Ok(None);
            }
        }
    }

    /// The control socket, to answer on, and the claim to hold while the node runs.
    pub fn into_listener(mut self) -> Result<(UnixListener, Claimed)> {
        // The directory's lock belongs to the open file: a duplicate keeps holding it.
        let exclusive = self.exclusive.try_clone()?;
        let listener = self
            .listener
            .take()
            .context("the control socket was handed out already")?;
        let claimed = Claimed {
            dir: self.dir.clone(),
            _exclusive: exclusive,
        };
        Ok((listener, claimed))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            control::close(&self.dir, &listener);
        }
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(control::SOCKET));
    }
}
