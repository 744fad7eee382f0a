//! Huddle: care team messaging for small clinics, with no server.
//!
//! # Layout
//! - [`core`]: sans-IO rules. A [`core::replica::Replica`] validates every envelope
//!   (signature, clinic, author chain, enrollment), folds the roster, opens the keys sealed
//!   to this device, and returns effects to persist and changes to apply to Automerge
//!   thread documents ([`core::thread`]).
//! - [`store`]: sled, encrypted at rest with a data key unlocked by the passphrase.
//! - [`node`]: owns the store and the replica; the one handle the CLI (and later the
//!   network and the app) call. It carries out the replica's effects and keeps thread
//!   documents, snapshots and list summaries up to date.
//! - [`localtime`]: times and due dates as people read and type them.
//! - [`cli`]: the headless `huddle` command.

pub mod app;
pub mod cli;
pub mod core;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod localtime;
pub mod net;
pub mod node;
pub mod store;
