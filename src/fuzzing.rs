//! Entry points for coverage-guided fuzzing (`fuzz/`, run with `cargo fuzz`) and for the
//! replay of kept crashers (`tests/fuzz_regressions.rs`). Each takes bytes as a hostile
//! peer, LAN stranger or damaged disk would hand them to a decoder, and panics only when
//! a property breaks: a decoder must never panic, and whatever decodes must re-encode to
//! a value that decodes to itself. Not part of the supported API.

mod clinic;
mod handshake;
pub mod seeds;

use std::str::FromStr;

use crate::core::cipher::SecretKey;
use crate::core::envelope::{Body, Envelope};
use crate::core::identity::{DevicePublic, DeviceSecret};
use crate::core::ids::{ClinicId, DeviceId, LogId};
use crate::core::invite::{Invitation, Issued};
use crate::core::replica::KeySlot;
use crate::core::roster::SignedGenesis;
use crate::core::sync::{Message, Session, Step, Summary};
use crate::core::thread::ThreadDoc;
use crate::core::{seal, sync};
use crate::node::ThreadSummary;
use crate::node::bundle;

pub use clinic::{deliver_change, thread_change};
pub use handshake::enroll_frame;

/// A fuzz target's entry point: takes any bytes, panics only when a property breaks.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: each is a `fuzz/fuzz_targets/<name>.rs` and a
/// `tests/fuzz_cases/<name>/` directory of kept inputs.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("sync_message", sync_message),
    ("enroll_frame", enroll_frame),
    ("invitation", invitation),
    ("bundle", bundle),
    ("store_records", store_records),
    ("thread_change", thread_change),
    ("control_request", control_request),
];

/// Splits `data` into frames, each a 2-byte big-endian length and that many bytes (the
/// last one cut short if the data ends first): one fuzz input drives several steps.
pub fn frames(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = data.split_first_chunk::<2>()?;
        let n = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (frame, tail) = rest.split_at(n);
        data = tail;
        Some(frame)
    })
}

/// Joins frames in the layout [`frames`] splits (for building seeds).
pub fn join_frames<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&part[..usize::from(len)]);
    }
    out
}

/// A fixed device: opens grants and signs nothing real.
fn fixed_device() -> DeviceSecret {
    DeviceSecret::from_bytes(&[7; 64])
}

/// One envelope from the wire: decode, re-encode, verify, open what it carries with a
/// key that is not the right one. An envelope has one wire form: whatever decodes
/// re-encodes to the input, byte for byte (`tests/fuzz_cases/envelope/`).
pub fn envelope(data: &[u8]) {
    let Ok(env) = Envelope::decode(data) else {
        return;
    };
    let bytes = env.encode();
    assert_eq!(
        bytes, data,
        "an envelope decoded from a non-canonical encoding"
    );
    let again = Envelope::decode(&bytes).expect("a re-encoded envelope decodes");
    assert_eq!(again, env, "envelope decode/encode round trip");
    assert_eq!(again.encode(), bytes, "re-encoding is stable");
    let verified = env.verify().is_ok();
    let _ = env.id();
    let wrong_key = SecretKey::from_bytes([9; 32]);
    match &env.body {
        Body::Sealed(ct) => {
            assert!(
                wrong_key.decrypt(&env.header.aad(), ct).is_err() || !verified,
                "a signed envelope opened with a key nobody holds"
            );
        }
        Body::Grants(grants) => {
            let me = fixed_device();
            for grant in grants {
                let _ = seal::open(&me, b"huddle/fuzz", &grant.sealed);
            }
        }
    }
}

/// A sync session fed with fuzzed messages (one per frame, see [`frames`]); what they
/// ask to ingest is decoded as envelopes.
pub fn sync_message(data: &[u8]) {
    let clinic = ClinicId([1; 32]);
    let mut mine = Summary::default();
    mine.chains.insert((LogId::Roster, DeviceId([2; 32])), 3);
    let mut session = Session::new(clinic, mine);
    for frame in frames(data) {
        let Ok(msg) = Message::decode(frame) else {
            continue;
        };
        let bytes = msg.encode();
        assert_eq!(
            Message::decode(&bytes).as_ref(),
            Ok(&msg),
            "sync message round trip"
        );
        let Ok(steps) = session.on_message(msg) else {
            continue;
        };
        for step in steps {
            match step {
                Step::Ingest(batch) => {
                    for env in batch {
                        let _ = Envelope::decode(&env);
                    }
                }
                Step::SendRanges(ranges) => {
                    for r in ranges {
                        assert!(r.from < r.to, "an empty or backwards range: {r:?}");
                    }
                    let _ = session.sent_all();
                }
                Step::Send(_) | Step::Finished => {}
            }
        }
    }
    let _ = sync::batches(Vec::new()).count();
}

/// A control-socket request, as any program of the same OS user could send it: decode
/// (bounded, version first); what decodes encodes back to a request that decodes to
/// the same command. Replies decode the same way.
pub fn control_request(data: &[u8]) {
    use crate::host::control::protocol::{
        Request, decode_reply, decode_request, encode_reply, encode_request,
    };
    if let Ok(mut request) = decode_request(data) {
        let again = Request {
            version: request.version,
            proof: std::mem::take(&mut request.proof),
            command: request.command.clone(),
        };
        let back = decode_request(&encode_request(&again)).expect("a request re-decodes");
        assert_eq!(back.command, request.command, "request round trip");
    }
    if let Ok(reply) = decode_reply(data) {
        let back = decode_reply(&encode_reply(&reply)).expect("a reply re-decodes");
        assert_eq!(back, reply, "reply round trip");
    }
}

/// Invitation and device-key strings, as pasted by a person: parse, and what parses
/// prints back to the same value.
pub fn invitation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(invite) = Invitation::parse(text) {
        let again = Invitation::parse(&invite.encode());
        assert_eq!(again.as_ref(), Ok(&invite), "invitation round trip");
    }
    if let Ok(keys) = DevicePublic::from_str(text) {
        assert_eq!(
            DevicePublic::from_str(&keys.to_string()),
            Ok(keys),
            "device keys round trip"
        );
    }
}

/// An offline bundle file: read it whole; what reads is written back byte for byte.
pub fn bundle(data: &[u8]) {
    let Ok((genesis, records)) = bundle::read(data) else {
        return;
    };
    let mut writer = bundle::Writer::new(Vec::new(), &genesis).expect("writing to memory");
    for record in &records {
        writer.record(record).expect("writing to memory");
        let _ = Envelope::decode(record);
    }
    let (written, count) = writer.finish().expect("writing to memory");
    assert_eq!(
        written, data,
        "a bundle that reads is written back identically"
    );
    assert_eq!(count, records.len() as u64);
    if let Ok(g) = SignedGenesis::decode(&genesis) {
        let _ = g.verify();
    }
}

/// A stored record as a damaged disk may hand it back. The first byte picks the tree;
/// the rest is the record (`key ‖ value` where the tree keys by more than an id). Each is
/// read with the same public decoders the store and node use.
pub fn store_records(data: &[u8]) {
    let Some((&tree, rest)) = data.split_first() else {
        return;
    };
    match tree % 8 {
        0 => stored_envelope(rest),
        1 => stored_head(rest),
        2 => {
            // keys: KeySlot key, 32-byte secret value.
            let (k, v) = rest.split_at(rest.len().min(KeySlot::LEN));
            if let Some(slot) = KeySlot::from_bytes(k) {
                assert_eq!(slot.to_bytes(), k, "key slot round trip");
                let _ = <[u8; 32]>::try_from(v).map(SecretKey::from_bytes);
            }
        }
        3 => {
            // granted: KeySlot ‖ device id.
            let slot = rest.get(..KeySlot::LEN).and_then(KeySlot::from_bytes);
            let device = rest.get(KeySlot::LEN..).map(<[u8; 32]>::try_from);
            let _ = (slot, device);
        }
        4 => stored_snapshot(rest),
        5 => {
            if let Ok(s) = serde_json::from_slice::<ThreadSummary>(rest) {
                let json = serde_json::to_vec(&s).expect("a summary serializes");
                let again = serde_json::from_slice::<ThreadSummary>(&json);
                assert_eq!(again.ok().as_ref(), Some(&s), "summary round trip");
            }
        }
        6 => {
            if let Ok(issued) = Issued::decode(rest) {
                let _ = issued.check(1_700_000_000_000);
            }
        }
        _ => {
            // secrets: the genesis; the device secret is any 64 bytes.
            if let Ok(g) = SignedGenesis::decode(rest) {
                let _ = (g.verify(), g.clinic_id());
                assert_eq!(SignedGenesis::decode(&g.encode()).ok(), Some(g));
            }
            if let Ok(b) = <&[u8; 64]>::try_from(rest) {
                let _ = DeviceSecret::from_bytes(b).public();
            }
        }
    }
}

/// The envelopes tree: a 32-byte id then the envelope, checked as the store checks it.
fn stored_envelope(value: &[u8]) {
    let Some((id, bytes)) = value.split_first_chunk::<32>() else {
        return;
    };
    if let Ok(env) = Envelope::decode(bytes) {
        let matches = env.id().0 == *id && env.verify().is_ok();
        let _ = matches;
    }
}

/// The heads tree: key `log (18) ‖ author (32)`, value `seq (8, big-endian) ‖ id (32)`.
fn stored_head(record: &[u8]) {
    let (key, value) = record.split_at(record.len().min(50));
    if let Some(log) = key.get(..18).and_then(LogId::from_key_bytes) {
        assert_eq!(&log.key_bytes()[..], &key[..18], "log key round trip");
        let _ = log.well_formed();
    }
    let seq = value.first_chunk::<8>().map(|b| u64::from_be_bytes(*b));
    let _ = (seq, value.get(8..40));
}

/// The snapshots tree: a saved Automerge document and the chain positions it covers,
/// loaded and read as the node does.
fn stored_snapshot(bytes: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Snapshot {
        doc: Vec<u8>,
        covered: Vec<(DeviceId, u64)>,
    }
    // A raw document too, so the fuzzer reaches Automerge without the postcard wrapper.
    let doc = match postcard::from_bytes::<Snapshot>(bytes) {
        Ok(s) => {
            let _ = s.covered.len();
            s.doc
        }
        Err(_) => bytes.to_vec(),
    };
    let me = DeviceId([3; 32]);
    let Ok(mut doc) = ThreadDoc::load(&doc, &me) else {
        return;
    };
    let _ = doc.meta();
    let _ = doc.messages();
    let _ = doc.unread(&crate::core::ids::MemberId([4; 16]));
    let _ = doc.message_ids();
    let _ = doc.has_missing_deps();
}
