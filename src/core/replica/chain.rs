//! Chain checks: every signature of a batch is verified before anything is stored, and
//! an envelope must sit at the next position of its author's chain in its log.

use std::collections::HashSet;

use crate::core::envelope::{Envelope, Header};
use crate::core::ids::EnvelopeId;

use super::{Head, IngestError};

/// The ids of the envelopes in `batch` whose signatures verify (all are checked).
pub(super) fn verify_batch(batch: &[Envelope]) -> HashSet<EnvelopeId> {
    let refs: Vec<&Envelope> = batch.iter().collect();
    Envelope::verify_all(&refs)
        .into_iter()
        .zip(batch)
        .filter(|(ok, _)| *ok)
        .map(|(_, env)| env.id())
        .collect()
}

/// Where an envelope falls in its author's chain.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Position {
    /// The very envelope already held at that position.
    Duplicate,
    /// Beyond the next position: its predecessor has not arrived.
    Ahead,
    /// The next position, linked to the current head.
    Next,
}

/// Places `h` (of envelope `id`) against its chain's `head`; `held_at` names the
/// envelope already held at an earlier position.
pub(super) fn position(
    h: &Header,
    id: &EnvelopeId,
    head: Option<Head>,
    held_at: impl Fn(u64) -> Option<EnvelopeId>,
) -> Result<Position, IngestError> {
    if (h.seq == 0) != h.prev.is_none() {
        return Err(IngestError::BrokenChain);
    }
    let next = head.map_or(0, |h| h.seq + 1);
    if h.seq < next {
        return match held_at(h.seq) {
            Some(held) if held == *id => Ok(Position::Duplicate),
            _ => Err(IngestError::Equivocation {
                author: h.author,
                seq: h.seq,
            }),
        };
    }
    if h.seq > next {
        return Ok(Position::Ahead);
    }
    if h.prev != head.map(|h| h.id) {
        return Err(IngestError::BrokenChain);
    }
    Ok(Position::Next)
}
