//! The sans-IO core: identities, roster, policy, envelopes, keys, thread documents and
//! the replica state machine. Nothing here touches a disk, a socket or a clock: time and
//! randomness come in as arguments, and storage work goes out as [`replica::Effect`]s.

pub mod audit;
pub mod cipher;
pub mod envelope;
pub mod identity;
pub mod ids;
pub mod invite;
pub mod limits;
pub mod policy;
pub mod replica;
pub mod roster;
pub mod seal;
pub mod sig;
pub mod sync;
pub mod thread;
