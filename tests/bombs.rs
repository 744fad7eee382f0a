//! Inputs that cost far more to read than to send: compressed Automerge changes that
//! inflate to gigabytes, run-length encoded changes that claim 2^40 operations in a few
//! bytes, and bundle files larger than memory. Memory is measured in-process by a
//! counting global allocator; tests in this file run one at a time so that each
//! measures only itself.

mod alloc;
mod sim;

use huddle::core::envelope::{Body, DecodeError, Envelope};
use huddle::core::ids::{DeviceId, LogId, MemberId};
use huddle::core::limits::{
    BATCH_BYTES, MAX_CHANGE_OPS, MAX_ENVELOPE_BYTES, MAX_FRAME, MAX_MESSAGE_TEXT_BYTES,
};
use huddle::core::policy::{Category, Role};
use huddle::core::sync::{Message, Range, batches};
use huddle::core::thread::{ChangeAuthor, MessageView, Subject, ThreadDoc, ThreadError};
use huddle::node::{Node, NodeError, bundle};
use sha2::{Digest, Sha256};
use sim::Network;
use std::io::Write;
use std::sync::Mutex;

/// What one received envelope may add to a device's memory.
const MEMORY_BOUND: usize = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Measuring memory
// ---------------------------------------------------------------------------------------

/// One measuring test at a time (the harness runs tests on parallel threads).
static SERIAL: Mutex<()> = Mutex::new(());

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Runs `f` and returns its result and how far allocated memory rose above where it
/// stood when `f` started.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    alloc::measure(f)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------
// Building hostile changes
// ---------------------------------------------------------------------------------------

const ADMIN: &str = "dana-pc";
const LEE: &str = "lee-laptop";

/// Dana (admin, founder) and Lee, both clinicians, with a clinical thread holding one
/// message from each.
fn clinic(seed: u64) -> (Network, LogId) {
    let mut net = Network::new(seed, ADMIN);
    net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let lee = net.add_member(ADMIN, "Lee", Role::Clinician, false);
    net.add_device(ADMIN, lee, LEE);
    net.regrant(ADMIN);
    net.sync_all();
    let log = net.create_thread(ADMIN, Category::Clinical, "Sara M. - intake");
    net.sync_all();
    net.post(
        ADMIN,
        log,
        "Sara's authorization renews on the 3rd",
        false,
        None,
    );
    net.post(LEE, log, "I'll call her insurer", false, None);
    net.sync_all();
    (net, log)
}

fn uleb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn sleb(out: &mut Vec<u8>, mut n: i64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        let done = (n == 0 && b & 0x40 == 0) || (n == -1 && b & 0x40 != 0);
        out.push(if done { b } else { b | 0x80 });
        if done {
            return;
        }
    }
}

/// An Automerge chunk of `chunk_type` around `data`, with a valid checksum.
fn chunk(chunk_type: u8, data: &[u8]) -> Vec<u8> {
    let mut hashed = vec![chunk_type];
    uleb(&mut hashed, data.len() as u64);
    let mut h = Sha256::new();
    h.update(&hashed);
    h.update(data);
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83];
    out.extend_from_slice(&h.finalize()[..4]);
    out.extend(hashed);
    out.extend_from_slice(data);
    out
}

/// A compressed change chunk whose data inflates to `inflated` zero bytes (what the
/// chunk would say is irrelevant: Automerge inflates it before reading anything).
fn compressed_bomb(inflated: usize) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(zeros.len());
        z.write_all(&zeros[..n]).expect("deflate");
        left -= n;
    }
    chunk(2, &z.finish().expect("deflate"))
}

/// An uncompressed change by `actor` whose columns claim `ops` operations, each putting
/// null at key `key` of the root map: a few dozen bytes, whatever `ops` is.
fn rle_bomb(actor: &DeviceId, ops: u64, key: &str) -> Vec<u8> {
    let run = |value: &[u8]| {
        let mut col = Vec::new();
        sleb(&mut col, ops as i64);
        col.extend_from_slice(value);
        col
    };
    let mut key_value = Vec::new();
    uleb(&mut key_value, key.len() as u64);
    key_value.extend_from_slice(key.as_bytes());
    let mut insert = Vec::new();
    uleb(&mut insert, ops); // that many `false`
    // (column spec, data) in Automerge's column order: key string, insert, action,
    // value metadata (null), pred group (no preds).
    let columns: Vec<(u64, Vec<u8>)> = vec![
        ((1 << 4) | 5, run(&key_value)),
        ((3 << 4) | 4, insert),
        ((4 << 4) | 2, run(&[1])),
        ((5 << 4) | 6, run(&[0])),
        ((7 << 4), run(&[0])),
    ];
    let mut body = Vec::new();
    uleb(&mut body, 0); // no dependencies
    uleb(&mut body, actor.0.len() as u64);
    body.extend_from_slice(&actor.0);
    uleb(&mut body, 9); // seq
    uleb(&mut body, 1_000); // start op
    sleb(&mut body, 1_700_000_000_000); // time
    uleb(&mut body, 0); // no message
    uleb(&mut body, 0); // no other actors
    uleb(&mut body, columns.len() as u64);
    for (spec, data) in &columns {
        uleb(&mut body, *spec);
        uleb(&mut body, data.len() as u64);
    }
    for (_, data) in columns {
        body.extend(data);
    }
    chunk(1, &body)
}

/// Lee's hostile client seals `change` into the thread and commits it on its own
/// device (it bypasses every check of its own).
fn seal_as_lee(net: &mut Network, log: LogId, change: &[u8]) -> Envelope {
    let at = net.tick();
    net.forge_sealed_at(LEE, log, None, change, at)
}

/// Rebuilds `name`'s document of `log` from its stored envelopes, as a node does when
/// it loads a thread; returns what it shows and what it refused.
fn reload(net: &Network, name: &str, log: &LogId) -> (Vec<MessageView>, Vec<ThreadError>) {
    let d = net.device(name);
    let roster = d.replica.roster();
    let member_of =
        |dev: &DeviceId| -> Option<MemberId> { roster.devices.get(dev).map(|e| e.member) };
    let changes: Vec<(ChangeAuthor, Vec<u8>)> = d
        .store
        .log(log)
        .into_iter()
        .filter_map(|env| {
            let change = d.replica.open_thread_change(env)?;
            let author = ChangeAuthor {
                device: env.header.author,
                member: member_of(&env.header.author)?,
                at_ms: env.header.at_ms,
            };
            Some((author, change))
        })
        .collect();
    let mut doc = ThreadDoc::new(&d.id());
    let thread = log.thread().expect("a thread log");
    let refused = doc.apply_batch(Category::Clinical, thread, &member_of, changes);
    (doc.messages().expect("the thread loads"), refused)
}

fn shown(net: &Network, name: &str, log: &LogId) -> Vec<MessageView> {
    net.device(name)
        .messages(&log.thread().expect("a thread log"))
        .expect("the thread is shown")
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Control: the measurement sees what unguarded Automerge does with a compressed change
/// (it inflates all of it before any check), so the bounds below are not vacuous.
#[test]
fn control_automerge_inflates_compressed_changes_unbounded() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let inflated = 32 << 20;
    let bomb = compressed_bomb(inflated);
    assert!(bomb.len() < 64 * 1024);
    let (_, peak) = peak_growth(|| automerge::Change::from_bytes(bomb.clone()));
    eprintln!(
        "unguarded: a {} KiB compressed change took {:.1} MiB",
        bomb.len() / 1024,
        mib(peak)
    );
    assert!(peak >= inflated, "peak {peak}");
}

/// Without the chunk-type check before Automerge reads a change, the hostile change
/// below (≈ 240 KiB, inside the envelope limit) would be inflated to 240 MiB on every
/// device that receives it, and again every time the thread loads; the 1 GiB one would
/// be, were envelopes not bounded before decoding.
#[test]
fn attack_compressed_change_bomb_refused_within_memory_bound() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut net, log) = clinic(801);
    let before = shown(&net, ADMIN, &log);
    let errors_before = net.device(ADMIN).doc_errors.len();

    // 1 GiB inflated: the envelope itself is over the limit and never decoded.
    let gib = compressed_bomb(1 << 30);
    let env = seal_as_lee(&mut net, log, &gib);
    let bytes = env.encode();
    drop(env);
    let (decoded, peak) = peak_growth(|| net.deliver_bytes(ADMIN, &bytes).map(|d| d.result));
    eprintln!(
        "1 GiB bomb: {} KiB envelope refused at decoding, peak +{:.2} MiB",
        bytes.len() / 1024,
        mib(peak)
    );
    assert!(
        matches!(decoded, Err(DecodeError::TooLarge(_))),
        "{decoded:?}"
    );
    assert!(peak < 2 * MAX_ENVELOPE_BYTES, "peak {peak}");
    drop((gib, bytes));

    // 240 MiB inflated, inside the envelope limit: received through the normal path.
    let bomb = compressed_bomb(240 << 20);
    assert!(
        bomb.len() < MAX_ENVELOPE_BYTES - 4096,
        "{} bytes",
        bomb.len()
    );
    let env = seal_as_lee(&mut net, log, &bomb);
    let env = net.commit(LEE, env);
    let ((), peak) = peak_growth(|| net.sync(ADMIN));
    eprintln!(
        "240 MiB bomb: {} KiB change refused on receipt, peak +{:.2} MiB",
        bomb.len() / 1024,
        mib(peak)
    );
    assert!(peak < MEMORY_BOUND, "peak {peak}");
    let d = net.device(ADMIN);
    assert_eq!(d.doc_errors.len(), errors_before + 1);
    let refusal = d.doc_errors.last().expect("refused");
    assert!(
        refusal.contains("compressed changes are refused"),
        "{refusal}"
    );
    assert_eq!(shown(&net, ADMIN, &log), before, "nothing of it applied");
    // Like every signed, chained envelope of a reader of the log, it is kept (devices
    // without the key keep and relay it too); what it carries never enters the
    // document, and loading the thread refuses it again at the same small cost.
    assert!(d.store.contains(&env.id()));
    let ((shown_after_load, refused), peak) = peak_growth(|| reload(&net, ADMIN, &log));
    eprintln!(
        "thread reload with the bomb stored: peak +{:.2} MiB",
        mib(peak)
    );
    assert!(peak < MEMORY_BOUND, "peak {peak}");
    assert_eq!(shown_after_load, before);
    assert!(
        refused
            .iter()
            .any(|e| matches!(e, ThreadError::Unbounded(_))),
        "{refused:?}"
    );

    // Lee's chain goes on: a later honest post from Lee applies.
    net.post(LEE, log, "Insurer called back", false, None);
    net.sync_all();
    assert_eq!(shown(&net, ADMIN, &log).len(), before.len() + 1);
}

/// Without the column pre-check, Automerge would visit every operation a run claims:
/// the first change below claims 2^40 operations in under 100 bytes (Automerge's
/// `from_bytes` alone would count them one by one for hours, and judging or applying
/// them would allocate for each); the second claims one operation more than allowed;
/// the third repeats a 100 KiB key 4,000 times (400 MB of key copies while judging).
#[test]
fn attack_rle_op_bomb_refused() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Control: Automerge does expand runs (2^20 operations from a few dozen bytes).
    let (mut net, log) = clinic(802);
    let lee = net.device(LEE).id();
    let small = rle_bomb(&lee, 1 << 20, "x");
    assert!(small.len() < 100);
    let parsed = automerge::Change::from_bytes(small).expect("automerge reads it");
    assert_eq!(parsed.len(), 1 << 20);
    drop(parsed);

    let before = shown(&net, ADMIN, &log);
    let errors_before = net.device(ADMIN).doc_errors.len();
    let bombs = [
        (rle_bomb(&lee, 1 << 40, "x"), "expands to more than"),
        (rle_bomb(&lee, MAX_CHANGE_OPS as u64 + 1, "x"), "operations"),
        (
            rle_bomb(&lee, (MAX_CHANGE_OPS - 96) as u64, &"k".repeat(100 * 1024)),
            "strings",
        ),
    ];
    for (i, (bomb, what)) in bombs.iter().enumerate() {
        let env = seal_as_lee(&mut net, log, bomb);
        net.commit(LEE, env);
        let started = std::time::Instant::now();
        let ((), peak) = peak_growth(|| net.sync(ADMIN));
        eprintln!(
            "RLE bomb ({what}, {} bytes): refused in {:?}, peak +{:.2} MiB",
            bomb.len(),
            started.elapsed(),
            mib(peak)
        );
        assert!(peak < MEMORY_BOUND, "peak {peak}");
        let d = net.device(ADMIN);
        assert_eq!(d.doc_errors.len(), errors_before + i + 1);
        let refusal = d.doc_errors.last().expect("refused");
        assert!(refusal.contains(what), "{refusal}");
    }
    assert_eq!(shown(&net, ADMIN, &log), before);
    let ((shown_after_load, _), peak) = peak_growth(|| reload(&net, ADMIN, &log));
    assert!(peak < MEMORY_BOUND, "peak {peak}");
    assert_eq!(shown_after_load, before);
}

const PASS: &[u8] = b"test passphrase";

/// Without streaming, importing this 50 MiB bundle held every record at once (and a
/// copy of each decoded): memory grew with the file.
#[test]
fn bundle_import_streams_in_bounded_memory() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::create(&dir.path().join("a"), PASS).expect("node");
    node.init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
        .expect("init");
    let thread = node
        .new_thread(
            Subject::Topic("Friday coverage".into()),
            Category::Scheduling,
            "Who covers Friday",
        )
        .expect("thread")
        .to_hex();
    node.post(&thread, "I can", false, None).expect("post");
    let exported = dir.path().join("export.huddle");
    node.export_bundle(&exported).expect("export");
    let (genesis, records) =
        bundle::read(std::fs::File::open(&exported).expect("open")).expect("read");

    // The node's own envelopes, then 200 junk records of the largest size.
    let junk_records = 200;
    let big = dir.path().join("big.huddle");
    let file = std::io::BufWriter::new(std::fs::File::create(&big).expect("create"));
    let mut w = bundle::Writer::new(file, &genesis).expect("writer");
    for r in &records {
        w.record(r).expect("record");
    }
    let junk = vec![0xa5u8; MAX_ENVELOPE_BYTES];
    for _ in 0..junk_records {
        w.record(&junk).expect("record");
    }
    w.finish().expect("finish");
    drop((junk, genesis));
    let size = std::fs::metadata(&big).expect("size").len() as usize;
    assert!(size > 50 << 20);

    let (report, peak) = peak_growth(|| node.import_bundle(&big));
    let report = report.expect("import");
    eprintln!(
        "bundle import of {:.1} MiB: peak +{:.2} MiB",
        mib(size),
        mib(peak)
    );
    assert_eq!(report.refused.len(), junk_records);
    assert_eq!(report.duplicate, records.len());
    assert!(peak < size / 8, "peak {peak} for a file of {size}");

    // A damaged copy (last byte flipped) imports nothing, also in bounded memory.
    let mut bytes = std::fs::read(&big).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let damaged = dir.path().join("damaged.huddle");
    std::fs::write(&damaged, &bytes).expect("write");
    drop(bytes);
    let envelopes = node.status().envelopes;
    let (result, peak) = peak_growth(|| node.import_bundle(&damaged));
    assert!(
        matches!(
            result,
            Err(NodeError::Bundle(bundle::BundleError::Damaged(_)))
        ),
        "{result:?}"
    );
    assert!(peak < size / 8, "peak {peak}");
    assert_eq!(node.status().envelopes, envelopes);
}

/// An envelope at the size limit fits a batch and a frame; the longest post a user may
/// write is authored, batched for sync and carried by a bundle to another device; a
/// longer one is refused before anything is stored.
#[test]
fn largest_envelope_syncs() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Synthetic: an envelope of exactly the largest size.
    let (mut net, log) = clinic(803);
    let mut env = seal_as_lee(&mut net, log, b"x");
    let to_limit = |env: &Envelope| MAX_ENVELOPE_BYTES as isize - env.encode().len() as isize;
    for _ in 0..2 {
        // Twice: the ciphertext's length prefix grows with it.
        let by = to_limit(&env);
        let Body::Sealed(ct) = &mut env.body else {
            unreachable!("sealed")
        };
        ct.resize((ct.len() as isize + by) as usize, 0);
    }
    let bytes = env.encode();
    assert_eq!(bytes.len(), MAX_ENVELOPE_BYTES);
    assert!(Envelope::decode(&bytes).is_ok());
    let mut over = bytes.clone();
    over.push(0);
    assert!(matches!(
        Envelope::decode(&over),
        Err(DecodeError::TooLarge(_))
    ));
    let all: Vec<Vec<u8>> = vec![bytes.clone(); 9];
    for batch in batches(all) {
        assert!(batch.iter().map(Vec::len).sum::<usize>() <= BATCH_BYTES);
        assert!(Message::Envelopes(batch).encode().len() <= MAX_FRAME);
    }

    // Real: the longest post, by two devices.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut admin = Node::create(&dir.path().join("a"), PASS).expect("node");
    admin
        .init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
        .expect("init");
    let mut tablet = Node::create(&dir.path().join("b"), PASS).expect("node");
    admin
        .add_device("Dana", tablet.device())
        .expect("add device");
    let thread = admin
        .new_thread(
            Subject::Patient("Sara M.".into()),
            Category::Clinical,
            "Intake notes",
        )
        .expect("thread")
        .to_hex();
    let stored = admin.status().envelopes;
    let too_long = "a".repeat(MAX_MESSAGE_TEXT_BYTES + 1);
    let refused = admin.post(&thread, &too_long, false, None);
    let Err(e) = refused else {
        panic!("a post over the limit was accepted")
    };
    eprintln!("refused post: {e}");
    assert!(
        matches!(e, NodeError::Thread(ThreadError::TooLong { .. })),
        "{e:?}"
    );
    assert_eq!(admin.status().envelopes, stored, "nothing stored");
    let longest = "é".repeat(MAX_MESSAGE_TEXT_BYTES / 2);
    admin
        .post(&thread, &longest, false, None)
        .expect("the longest post");
    // Its envelope goes out in one batch that fits a frame.
    let (_, summary) = admin.summary().expect("summary");
    let (&(log, author), &next) = summary
        .chains
        .iter()
        .filter(|((l, _), _)| l.thread().is_some())
        .max_by_key(|(_, n)| **n)
        .expect("the thread's chain");
    let batch = admin
        .load_batch(&Range {
            log,
            author,
            from: 0,
            to: next,
        })
        .expect("batch");
    assert_eq!(batch.len() as u64, next);
    assert!(batch.iter().any(|e| e.len() > MAX_MESSAGE_TEXT_BYTES));
    assert!(Message::Envelopes(batch).encode().len() <= MAX_FRAME);
    // And a bundle carries it to the tablet.
    let file = dir.path().join("to-tablet.huddle");
    admin.export_bundle(&file).expect("export");
    let report = tablet.import_bundle(&file).expect("import");
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    let shown = tablet.thread(&thread).expect("the tablet reads the thread");
    assert_eq!(shown.messages.len(), 1);
    assert_eq!(shown.messages[0].body, longest);
}
