//! The control socket of a running node (`huddle serve` or the desktop app): a Unix
//! socket in the data directory, readable and writable by its owner only. Other
//! `huddle` commands on the same data directory send it typed requests
//! ([`protocol::Command`]: a node [`crate::node::Op`], `unlock` or `lock`) instead of
//! waiting for the store's lock, and render the typed answer themselves.
//!
//! - [`protocol`]: the request and reply, their encoding, version and size bounds;
//! - [`server`]: binding, answering (with proof: [`crate::host::guard`]) and closing;
//! - [`client`]: sending one request and reading its reply.
//!
//! The socket is bound before the node opens its store ([`crate::host::claim`]):
//! requests queue until the node answers them. Requests still queued when the socket
//! closes are declined ([`protocol::Answer::NotRun`]), and their commands carry on by
//! themselves.

pub mod client;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};

pub use client::{Forwarded, forward, running};
pub use server::{bind, close, serve};

/// The socket's file name in the data directory.
pub const SOCKET: &str = "control.sock";

fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}
