//! Every size limit of the protocol, derived from each other so that what one layer
//! accepts always fits the next: the largest post fits a change, the largest change fits
//! an envelope, the largest envelope fits a batch, the largest batch fits a frame. The
//! `const` assertions below fail the build if an edit breaks one of these links.
//!
//! Why an envelope is at most 256 KiB: a care team's message is a few hundred bytes, and
//! the largest legitimate envelopes are far below the limit. A post of the longest text
//! ([`MAX_MESSAGE_TEXT_BYTES`], 64 KiB) takes about 65 KiB; key grants sealed to 100
//! readers take 100 × 163 bytes ≈ 16 KiB; a roster operation with cutoffs for 100
//! devices takes ≈ 6 KiB (one cutoff ≤ 61 bytes, so the limit holds about 4,000 cutoffs:
//! 100 devices with 40 chains each); a read-receipt change holds at most
//! [`MAX_RECEIPTS_PER_CHANGE`] receipts, ≤ 128 KiB. A small envelope limit keeps what one
//! received envelope can cost small: see [`MAX_CHANGE_OPS`].

/// Longest message text a user may post, in bytes of UTF-8 (about 10,000 words).
pub const MAX_MESSAGE_TEXT_BYTES: usize = 64 * 1024;
/// Longest thread title, subject label or task due date, in bytes of UTF-8.
pub const MAX_LABEL_BYTES: usize = 1024;
/// Most read receipts one change records (marking more read takes several changes).
pub const MAX_RECEIPTS_PER_CHANGE: usize = 1024;
/// Most bytes one read receipt adds to a change: its key (member hex, `:`, message key:
/// 82 bytes), its time and its share of the column encoding.
pub const RECEIPT_BYTES: usize = 128;
/// Most bytes of a local change besides its texts and receipts: chunk header, actor,
/// time, up to 256 dependency hashes and the fixed fields of a message or thread header.
pub const CHANGE_FRAME_BYTES: usize = 16 * 1024;
/// Labels a thread header or a message carries besides its text (title and subject;
/// task due date).
pub const LABELS_PER_CHANGE: usize = 2;

/// Largest encoded envelope; larger ones are refused before decoding.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;
/// Bytes an envelope adds around the change it seals: header (≤ 160 bytes), nonce and
/// tag, signature (64), length prefixes, with room to spare.
pub const ENVELOPE_OVERHEAD_BYTES: usize = 1024;
/// Largest Automerge change (or roster operation) an envelope can carry.
pub const MAX_CHANGE_BYTES: usize = MAX_ENVELOPE_BYTES - ENVELOPE_OVERHEAD_BYTES;
/// Most operations a received change may hold. Checked on the change's encoding before
/// Automerge reads it: run-length encoding lets a few bytes claim billions of
/// operations, and each one Automerge reads costs time and memory (about 2 KiB each
/// while it is judged and applied), so this bounds what one envelope can cost: well
/// under 64 MiB and a fraction of a second.
pub const MAX_CHANGE_OPS: usize = 4096;
/// Most values any one column of a received change may expand to (a change's operations
/// may each overwrite several values, so grouped columns hold more than one per op).
pub const MAX_CHANGE_COLUMN_ITEMS: usize = 4 * MAX_CHANGE_OPS;
/// Most bytes the strings of a received change may expand to once its runs are spelled
/// out (an honest change repeats few keys, so this is about its own size).
pub const MAX_CHANGE_EXPANDED_STRING_BYTES: usize = 2 * MAX_CHANGE_BYTES;

/// Most envelopes in one `Envelopes` or `Push` message.
pub const BATCH_ENVELOPES: usize = 256;
/// Most envelope bytes in one batch: a batch closes before an envelope would take it
/// past this, and always holds at least one envelope.
pub const BATCH_BYTES: usize = 1024 * 1024;
/// Most bytes a batch message adds around its envelopes: the message tag, the count and
/// one length prefix per envelope (each a varint of at most 10 bytes).
pub const BATCH_OVERHEAD_BYTES: usize = 16 + BATCH_ENVELOPES * 10;
/// Largest encoded batch message.
pub const MAX_BATCH_MESSAGE_BYTES: usize = BATCH_BYTES + BATCH_OVERHEAD_BYTES;

/// Most chains (log, author) a sync summary is sized for.
pub const MAX_SUMMARY_CHAINS: usize = 65_536;
/// Most bytes one chain takes in an encoded summary: log (≤ 18), author (32), count (≤ 10).
pub const SUMMARY_CHAIN_BYTES: usize = 60;
/// Largest encoded summary message.
pub const MAX_SUMMARY_MESSAGE_BYTES: usize = 16 + MAX_SUMMARY_CHAINS * SUMMARY_CHAIN_BYTES;

/// Largest frame of the sync protocol: the largest message it carries (the 4-byte
/// length prefix is outside the frame).
pub const MAX_FRAME: usize = if MAX_BATCH_MESSAGE_BYTES > MAX_SUMMARY_MESSAGE_BYTES {
    MAX_BATCH_MESSAGE_BYTES
} else {
    MAX_SUMMARY_MESSAGE_BYTES
};

/// Most roster operations (sealed roster envelopes) a device that is not an admin's
/// may hold in the roster log: what it writes are thread restrictions and emergency
/// accesses (at most `MAX_EMERGENCIES_PER_DAY` a day), rare events in a device's years.
/// Past it, its roster envelopes are refused at ingest, at O(1) each.
pub const MAX_MEMBER_ROSTER_OPS: usize = 256;
/// Most bytes of roster operations such a device may hold (256 largest restrictions of
/// 256 participants take about 1 MiB).
pub const MAX_MEMBER_ROSTER_BYTES: usize = 1024 * 1024;
/// How far ahead of the receiving device's clock a roster operation may be stamped
/// before it is held until that time (clocks of a clinic's devices drift by seconds).
pub const MAX_ROSTER_CLOCK_AHEAD_MS: u64 = 5 * 60_000;

/// Largest record of a bundle file (the genesis or an envelope).
pub const MAX_BUNDLE_RECORD_BYTES: usize = MAX_ENVELOPE_BYTES;
/// Records a bundle import validates and stores at a time.
pub const BUNDLE_IMPORT_BATCH: usize = BATCH_ENVELOPES;

// A post of the longest text, with its header and labels, fits a change.
const _: () = assert!(
    MAX_MESSAGE_TEXT_BYTES + LABELS_PER_CHANGE * MAX_LABEL_BYTES + CHANGE_FRAME_BYTES
        <= MAX_CHANGE_BYTES
);
// A change of the most read receipts fits a change, and its operations are allowed.
const _: () =
    assert!(MAX_RECEIPTS_PER_CHANGE * RECEIPT_BYTES + CHANGE_FRAME_BYTES <= MAX_CHANGE_BYTES);
const _: () = assert!(MAX_RECEIPTS_PER_CHANGE + 64 <= MAX_CHANGE_OPS);
// The change fits its envelope.
const _: () = assert!(MAX_CHANGE_BYTES + ENVELOPE_OVERHEAD_BYTES <= MAX_ENVELOPE_BYTES);
// A batch always fits at least one largest envelope, and a full batch fits a frame.
const _: () = assert!(MAX_ENVELOPE_BYTES <= BATCH_BYTES);
const _: () = assert!(MAX_BATCH_MESSAGE_BYTES <= MAX_FRAME);
const _: () = assert!(MAX_SUMMARY_MESSAGE_BYTES <= MAX_FRAME);
// A frame's length fits the 4-byte prefix, and a bundle holds any envelope.
const _: () = assert!(MAX_FRAME <= u32::MAX as usize);
const _: () = assert!(MAX_ENVELOPE_BYTES <= MAX_BUNDLE_RECORD_BYTES);
const _: () = assert!(MAX_BUNDLE_RECORD_BYTES < u32::MAX as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_largest_envelope_fits_a_batch_and_a_frame() {
        // A batch of one largest envelope, as the sync protocol encodes it.
        let batch = crate::core::sync::Message::Envelopes(vec![vec![7u8; MAX_ENVELOPE_BYTES]]);
        assert!(batch.encode().len() <= MAX_FRAME);
        let full =
            crate::core::sync::Message::Envelopes(vec![
                vec![7u8; BATCH_BYTES / BATCH_ENVELOPES];
                BATCH_ENVELOPES
            ]);
        assert!(full.encode().len() <= MAX_BATCH_MESSAGE_BYTES);
    }
}
