//! What a received Automerge change may cost, checked on its bytes before Automerge reads
//! them. Automerge 0.12 inflates a compressed change chunk without any limit (a 1 MB
//! chunk can inflate to a gigabyte), and its run-length encoded columns let a few bytes
//! claim 2^40 operations, each of which parsing, judging and applying would visit. So a
//! change is admitted only as an uncompressed change chunk (we send `raw_bytes`, which
//! are never compressed) with uncompressed columns, whose runs, counted here in one pass
//! over its bytes without expanding them, stay within [`MAX_CHANGE_OPS`] operations,
//! [`MAX_CHANGE_COLUMN_ITEMS`] values per column and
//! [`MAX_CHANGE_EXPANDED_STRING_BYTES`] bytes of strings.
//!
//! The layout read here is Automerge's binary format (chunk header, change header,
//! column metadata, column data); see automerge's `storage/chunk.rs` and
//! `storage/change.rs`.

use crate::core::limits::{
    MAX_CHANGE_BYTES, MAX_CHANGE_COLUMN_ITEMS, MAX_CHANGE_EXPANDED_STRING_BYTES, MAX_CHANGE_OPS,
};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED: u8 = 2;
/// Column id of the action column: one value per operation.
const ACTION_COLUMN: u32 = 4;
/// Counters stay far below where `start_op + ops` could overflow.
const MAX_START_OP: u64 = 1 << 53;

/// Why a change was refused before Automerge read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeBoundError {
    #[error("change of {0} bytes exceeds the {MAX_CHANGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("compressed changes are refused (they could inflate without bound)")]
    Compressed,
    #[error("compressed columns are refused")]
    CompressedColumn,
    #[error("not an Automerge change chunk")]
    NotAChange,
    #[error("change claims more than {MAX_CHANGE_OPS} operations")]
    TooManyOps,
    #[error("a column of the change expands to more than {MAX_CHANGE_COLUMN_ITEMS} values")]
    ColumnTooLong,
    #[error("the change's strings expand to more than {MAX_CHANGE_EXPANDED_STRING_BYTES} bytes")]
    StringsTooLong,
    #[error("malformed change encoding: {0}")]
    Malformed(&'static str),
}

/// Checks that `bytes` are a change Automerge can read at a bounded cost; returns the
/// number of operations it holds.
pub fn check_change_bytes(bytes: &[u8]) -> Result<usize, ChangeBoundError> {
    if bytes.len() > MAX_CHANGE_BYTES {
        return Err(ChangeBoundError::TooLarge(bytes.len()));
    }
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err(ChangeBoundError::NotAChange);
    }
    r.take(4)?; // checksum, verified by Automerge
    match r.byte()? {
        CHUNK_CHANGE => {}
        CHUNK_COMPRESSED => return Err(ChangeBoundError::Compressed),
        _ => return Err(ChangeBoundError::NotAChange),
    }
    let len = r.uleb()?;
    if len != r.0.len() as u64 {
        return Err(ChangeBoundError::Malformed("chunk length"));
    }
    let deps = r.uleb()?;
    r.take(count(deps)?.checked_mul(32).ok_or(END)?)?;
    r.bytes()?; // actor
    r.uleb()?; // seq
    if r.uleb()? > MAX_START_OP {
        return Err(ChangeBoundError::Malformed("start op"));
    }
    r.sleb()?; // time
    r.bytes()?; // message
    for _ in 0..count(r.uleb()?)? {
        r.bytes()?; // other actors
    }
    let columns = count(r.uleb()?)?;
    let mut specs = Vec::new();
    for _ in 0..columns {
        let spec = u32::try_from(r.uleb()?).map_err(|_| ChangeBoundError::Malformed("column"))?;
        specs.push((spec, count(r.uleb()?)?));
    }
    let mut ops = 0;
    let mut strings = 0;
    for (spec, len) in specs {
        let data = r.take(len)?;
        if spec & 0b1000 != 0 {
            return Err(ChangeBoundError::CompressedColumn);
        }
        // The action column holds one value per operation.
        let (limit, too_many) = if spec >> 4 == ACTION_COLUMN {
            (MAX_CHANGE_OPS, ChangeBoundError::TooManyOps)
        } else {
            (MAX_CHANGE_COLUMN_ITEMS, ChangeBoundError::ColumnTooLong)
        };
        let items = column_items(spec & 0b111, data, limit, &mut strings).ok_or(too_many)??;
        if spec >> 4 == ACTION_COLUMN {
            ops = ops.max(items);
        }
    }
    Ok(ops)
}

const END: ChangeBoundError = ChangeBoundError::Malformed("ends early");

fn count(n: u64) -> Result<usize, ChangeBoundError> {
    usize::try_from(n).map_err(|_| END)
}

/// How many values a column holds once its runs are expanded, counted without
/// expanding them (string bytes are added to `strings`); `None` once past `limit`.
fn column_items(
    kind: u32,
    data: &[u8],
    limit: usize,
    strings: &mut usize,
) -> Option<Result<usize, ChangeBoundError>> {
    // Column types: 0 group, 1 actor, 2 integer, 3 delta, 4 boolean, 5 string,
    // 6 value metadata (run-length encoded), 7 raw values (read as bytes, never expanded).
    let mut r = Reader(data);
    let mut items: usize = 0;
    let mut add = |n: u64| -> Option<u64> {
        items = items.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
        (items <= limit).then_some(n)
    };
    let mut read = || -> Result<Option<()>, ChangeBoundError> {
        while !r.0.is_empty() {
            if kind == 4 {
                // Booleans: alternating run lengths of `false` and `true`.
                if add(r.uleb()?).is_none() {
                    return Ok(None);
                }
                continue;
            }
            let run = r.sleb()?;
            let Some(n) = add(if run == 0 {
                r.uleb()?
            } else {
                run.unsigned_abs()
            }) else {
                return Ok(None);
            };
            match run {
                0 => {} // a run of nulls
                1.. => r.value(kind, n, strings)?,
                _ => {
                    for _ in 0..n {
                        r.value(kind, 1, strings)?;
                    }
                }
            }
        }
        Ok(Some(()))
    };
    if kind == 7 {
        return Some(Ok(0));
    }
    match read() {
        Ok(Some(())) => Some(Ok(items)),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ChangeBoundError> {
        if n > self.0.len() {
            return Err(END);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, ChangeBoundError> {
        Ok(self.take(1)?[0])
    }

    fn uleb(&mut self) -> Result<u64, ChangeBoundError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ChangeBoundError::Malformed("overlong integer"))
    }

    fn sleb(&mut self) -> Result<i64, ChangeBoundError> {
        let mut value: i64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= i64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if shift < 57 && b & 0x40 != 0 {
                    value |= -1i64 << (shift + 7);
                }
                return Ok(value);
            }
        }
        Err(ChangeBoundError::Malformed("overlong integer"))
    }

    /// A length-prefixed byte string.
    fn bytes(&mut self) -> Result<&'a [u8], ChangeBoundError> {
        let n = self.uleb()?;
        self.take(count(n)?)
    }

    /// One value of a run-length encoded column, standing for `repeats` values.
    fn value(
        &mut self,
        kind: u32,
        repeats: u64,
        strings: &mut usize,
    ) -> Result<(), ChangeBoundError> {
        match kind {
            3 => {
                self.sleb()?;
            }
            5 => {
                let len = self.bytes()?.len() as u64;
                let total = (*strings as u64).saturating_add(len.saturating_mul(repeats));
                if total > MAX_CHANGE_EXPANDED_STRING_BYTES as u64 {
                    return Err(ChangeBoundError::StringsTooLong);
                }
                *strings = total as usize;
            }
            _ => {
                self.uleb()?;
            }
        }
        Ok(())
    }
}
