//! The offline bundle file: the clinic's genesis and signed, encrypted envelopes, for a
//! removable drive. Layout: magic line, then length-prefixed records (genesis first),
//! then a trailer with the record count and a SHA-256 of everything before it, so a
//! truncated or damaged file is noticed. Every envelope is validated on import like any
//! other received envelope; the file itself is trusted for nothing.
//!
//! Files are read as a stream, one record at a time, so a bundle of any size is written
//! and imported in bounded memory: an import first reads the file through to check its
//! trailer (a damaged file imports nothing), then reads it again and imports it batch by
//! batch.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};

use crate::core::limits::MAX_BUNDLE_RECORD_BYTES;

const MAGIC: &[u8] = b"HUDDLE-BUNDLE-1\n";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("not a Huddle bundle")]
    NotABundle,
    #[error("the bundle is truncated or damaged ({0}); nothing was imported")]
    Damaged(&'static str),
    #[error("the bundle's genesis is invalid")]
    BadGenesis,
    #[error("the bundle belongs to another clinic; nothing was imported")]
    OtherClinic,
    #[error(
        "this device is not enrolled in the bundle's clinic; ask an admin to run `huddle device add` with this device's key, then export a new bundle"
    )]
    NotEnrolled,
    #[error(
        "the bundle changed while it was being imported; the envelopes read before the change were imported"
    )]
    ChangedWhileImporting,
    #[error("bundle I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a bundle record by record.
pub struct Writer<W: Write> {
    out: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W, genesis: &[u8]) -> Result<Self, BundleError> {
        out.write_all(MAGIC)?;
        let mut w = Writer {
            out,
            hash: Sha256::new(),
            count: 0,
        };
        w.hash.update(MAGIC);
        w.record(genesis)?;
        Ok(w)
    }

    pub fn record(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        let len = (bytes.len() as u32).to_be_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(bytes)?;
        self.hash.update(len);
        self.hash.update(bytes);
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer; returns the number of records after the genesis.
    pub fn finish(mut self) -> Result<(W, u64), BundleError> {
        self.out.write_all(&u32::MAX.to_be_bytes())?;
        self.out.write_all(&self.count.to_be_bytes())?;
        self.out.write_all(&self.hash.finalize())?;
        self.out.flush()?;
        Ok((self.out, self.count - 1))
    }
}

/// Reads a bundle record by record, holding one record at a time. The trailer is
/// checked when the last record has been read: a record handed out earlier may belong to
/// a damaged file, so callers that must not act on a damaged file run [`verify`] first.
pub struct Reader<R: Read> {
    input: R,
    hash: Sha256,
    count: u64,
    done: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(mut input: R) -> Result<Self, BundleError> {
        let mut magic = [0u8; MAGIC.len()];
        input
            .read_exact(&mut magic)
            .map_err(|_| BundleError::NotABundle)?;
        if magic != MAGIC {
            return Err(BundleError::NotABundle);
        }
        let mut hash = Sha256::new();
        hash.update(MAGIC);
        Ok(Reader {
            input,
            hash,
            count: 0,
            done: false,
        })
    }

    /// The next record (the genesis first), or `None` once the trailer has been read and
    /// found to match everything before it.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, BundleError> {
        if self.done {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|_| BundleError::Damaged("ends early"))?;
        if len == u32::MAX.to_be_bytes() {
            self.finish()?;
            return Ok(None);
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_BUNDLE_RECORD_BYTES {
            return Err(BundleError::Damaged("record too large"));
        }
        let mut rec = vec![0u8; n];
        self.input
            .read_exact(&mut rec)
            .map_err(|_| BundleError::Damaged("ends early"))?;
        self.hash.update(len);
        self.hash.update(&rec);
        self.count += 1;
        Ok(Some(rec))
    }

    fn finish(&mut self) -> Result<(), BundleError> {
        let mut count = [0u8; 8];
        let mut digest = [0u8; 32];
        self.input
            .read_exact(&mut count)
            .map_err(|_| BundleError::Damaged("trailer missing"))?;
        self.input
            .read_exact(&mut digest)
            .map_err(|_| BundleError::Damaged("trailer missing"))?;
        let hash = std::mem::take(&mut self.hash).finalize();
        if u64::from_be_bytes(count) != self.count || digest[..] != hash[..] {
            return Err(BundleError::Damaged("checksum mismatch"));
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(BundleError::Damaged("data after the trailer"));
        }
        if self.count == 0 {
            return Err(BundleError::Damaged("no genesis"));
        }
        self.done = true;
        Ok(())
    }
}

/// Reads a whole bundle through, checking its trailer, holding one record at a time;
/// returns the genesis bytes and how many records follow it.
pub fn verify(input: impl Read) -> Result<(Vec<u8>, u64), BundleError> {
    let mut reader = Reader::new(input)?;
    let genesis = reader
        .next_record()?
        .ok_or(BundleError::Damaged("no genesis"))?;
    let mut records = 0;
    while reader.next_record()?.is_some() {
        records += 1;
    }
    Ok((genesis, records))
}

/// Reads a whole bundle into memory: the genesis bytes and the envelope records, after
/// the trailer is checked. For tests and tools with small files; importing streams.
pub fn read(input: impl Read) -> Result<(Vec<u8>, Vec<Vec<u8>>), BundleError> {
    let mut reader = Reader::new(input)?;
    let mut records = Vec::new();
    while let Some(rec) = reader.next_record()? {
        records.push(rec);
    }
    if records.is_empty() {
        return Err(BundleError::Damaged("no genesis"));
    }
    let genesis = records.remove(0);
    Ok((genesis, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), b"genesis").unwrap();
        w.record(b"one").unwrap();
        w.record(b"two").unwrap();
        w.finish().unwrap().0
    }

    #[test]
    fn round_trip() {
        let (g, recs) = read(&sample()[..]).unwrap();
        assert_eq!(g, b"genesis");
        assert_eq!(recs, vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn truncation_and_damage_are_reported() {
        let bytes = sample();
        for cut in [0, 5, MAGIC.len() + 3, bytes.len() - 1] {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[MAGIC.len() + 6] ^= 1;
        assert!(matches!(read(&flipped[..]), Err(BundleError::Damaged(_))));
        assert!(matches!(
            read(&b"PK\x03\x04 a zip file"[..]),
            Err(BundleError::NotABundle)
        ));
    }
}
