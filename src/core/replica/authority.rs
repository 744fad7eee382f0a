//! Who may write what: checked on every envelope, by every device, with or without the
//! keys to read it (a blind relay applies the same rules).
//!
//! - A thread's id carries its category, so one thread id has one category.
//! - Thread logs carry sealed changes, and grants of the thread's own keys once it is
//!   restricted (epoch marked [`RESTRICTED_EPOCH`], see `restricted`); category key
//!   logs carry grants; the roster log carries both (sealed operations and roster key
//!   grants).
//! - An author may write a log if it may read it now (an active device whose member's
//!   role reads the log's category; every active device for the roster), or if the
//!   envelope lies before the cutoff recorded when its access was taken away. An
//!   envelope of an author the roster does not know, or does not allow yet, is held
//!   (within the per-author bounds of `pending`) until the roster decides; one of a
//!   revoked device, a removed member or past a cutoff is refused.
//! - The audit log has no category: every active device writes its own chain in it
//!   (and no other, since a chain is its author's), under the same cutoffs.

use crate::core::envelope::{Body, Envelope, Header};
use crate::core::ids::LogId;
use crate::core::roster::{Roster, WriteVerdict};

use super::IngestError;
use super::keyring::RESTRICTED_EPOCH;

/// The envelope's log and body agree, whoever wrote it.
pub(super) fn check_shape(env: &Envelope) -> Result<(), IngestError> {
    let log = &env.header.log;
    if !log.well_formed() {
        return Err(IngestError::MalformedLog);
    }
    match (log, &env.body) {
        // A restricted thread's own keys travel in its log.
        (LogId::Thread { .. }, Body::Grants(_)) if env.header.epoch & RESTRICTED_EPOCH != 0 => {
            Ok(())
        }
        // Audit entries carry their own sealed key (see `core::audit`), never grants.
        (LogId::Thread { .. } | LogId::Audit, Body::Grants(_)) => {
            Err(IngestError::WrongBody("key grants"))
        }
        (LogId::Keys(_), Body::Sealed(_)) => Err(IngestError::WrongBody("a sealed change")),
        _ => Ok(()),
    }
}

/// Whether the author of `h` may write its log at that position under `roster`:
/// `Ok(true)` yes, `Ok(false)` not yet (held until the roster says), `Err` never.
pub(super) fn may_write(roster: &Roster, h: &Header) -> Result<bool, IngestError> {
    match roster.write_verdict(&h.author, &h.log, h.seq) {
        WriteVerdict::Allowed => Ok(true),
        WriteVerdict::NotYet => Ok(false),
        WriteVerdict::Never => Err(IngestError::NotAllowed {
            author: h.author,
            log: h.log,
        }),
    }
}
