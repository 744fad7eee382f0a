//! Huddle: care team messaging for small clinics, with no server.
//!
//! # Layout
//! - [`core`]: sans-IO rules. A [`core::replica::Replica`] validates every envelope
//!   (signature, clinic, author chain, enrollment), folds the roster, opens the keys sealed
//!   to this device, and returns effects to persist and changes to apply to Automerge
//!   thread documents ([`core::thread`]).
//! - [`store`]: sled, encrypted at rest with a data key unlocked by the passphrase.
//! - [`node`]: owns the store and the replica; the one handle the command line, the
//!   network and the app call, with typed operations ([`node::Op`]). It carries out the
//!   replica's effects and keeps thread documents, snapshots and list summaries up to
//!   date.
//! - [`net`]: the libp2p swarm, LAN discovery and sync sessions; it moves bytes and
//!   decides no policy.
//! - [`host`]: a running node (node thread, network, control socket), as `huddle
//!   serve` and the desktop app run it; its control socket carries those operations.
//! - [`app`]: the desktop app (egui/eframe).
//! - [`localtime`]: times and due dates as people read and type them.
//!
//! The headless `huddle` command line is part of the binary (`src/main.rs`,
//! `src/cli/`), not of this library: nothing here depends on it.

pub mod app;
pub mod core;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod localtime;
pub mod net;
pub mod node;
pub mod store;
