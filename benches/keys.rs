//! Key distribution costs: sealing a key to one device and opening it (`core::seal`,
//! one-way Noise X with X25519 and ChaCha20-Poly1305); sealing one key to 10
//! recipients in one signed grant envelope, as a replica does; signing and verifying a
//! typical message envelope (what every received envelope costs); and a key ROTATION
//! after one revocation in a clinic of 1,000 readable threads and 50 devices.
//!
//! The rotation: a clinic is generated (`support::generate_live`: 1,000 threads, 1,000
//! messages, the two authoring devices and 48 admin readers), then the founder authors
//! `Op::RevokeDevice` of one reader through `Input::Roster`, and the whole
//! `Replica::handle` call is timed — the operation (with its cutoffs), and the
//! follow-up that mints the next key of every log whose epoch advanced and grants it to
//! every remaining reader. It is repeated on further readers (each revocation advances
//! the epochs again), and one `keys: rotation` line prints wall and process CPU time.
//! `HUDDLE_BENCH_THREADS`, `HUDDLE_BENCH_MESSAGES`, `HUDDLE_BENCH_DEVICES` and
//! `HUDDLE_BENCH_REVOCATIONS` change that workload.

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use huddle::core::cipher::SecretKey;
use huddle::core::envelope::{Body, Envelope, Grant, Header};
use huddle::core::identity::{DevicePublic, DeviceSecret};
use huddle::core::ids::{EnvelopeId, LogId, ThreadId};
use huddle::core::policy::Category;
use huddle::core::replica::{Input, KeySlot, Notice, grant_context, key_id};
use huddle::core::roster::{Op, SignedGenesis};
use huddle::core::seal;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use support::Spec;

/// Recipients of the grant benchmark.
const RECIPIENTS: usize = 10;

/// A grant context of the real shape (domain, clinic, log, epoch, recipient).
const CONTEXT: &[u8] = b"huddle/grant/v2 clinic-id-32-bytes-long.. key-slot-30-bytes-long.... recipient-id-32-bytes-long....";

fn thread_log(rng: &mut ChaCha20Rng) -> LogId {
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(rng, &mut id);
    LogId::Thread {
        id: ThreadId(id),
        category: Category::Clinical,
    }
}

fn bench_seal(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let sender = DeviceSecret::generate(&mut rng);
    let recipient = DeviceSecret::generate(&mut rng);
    let key = SecretKey::generate(&mut rng);
    let exchange = recipient.public().exchange;
    let sealed = seal::seal(&sender, &exchange, CONTEXT, &key).expect("seals");

    let mut group = c.benchmark_group("keys");
    group.bench_function("seal", |b| {
        b.iter(|| seal::seal(&sender, black_box(&exchange), CONTEXT, &key).expect("seals"))
    });
    group.bench_function("open", |b| {
        b.iter(|| seal::open(&recipient, CONTEXT, black_box(&sealed)).expect("opens"))
    });
    group.finish();
}

/// One key sealed to each recipient in one signed grant envelope, as the replica's
/// grant authoring does (`seal::seal` with `grant_context` per recipient, then sign).
fn grant_envelope(
    founder: &DeviceSecret,
    header: &Header,
    slot: &KeySlot,
    key: &SecretKey,
    recipients: &[DevicePublic],
) -> Envelope {
    let grants = recipients
        .iter()
        .map(|r| Grant {
            recipient: r.id,
            sealed: seal::seal(
                founder,
                &r.exchange,
                &grant_context(&header.clinic, slot, &r.id),
                key,
            )
            .expect("seals"),
        })
        .collect();
    Envelope::sign(founder, header.clone(), Body::Grants(grants))
}

fn bench_grants(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let founder = DeviceSecret::generate(&mut rng);
    let genesis = SignedGenesis::new(&founder, 0, [3; 16]);
    let recipients: Vec<DevicePublic> = (0..RECIPIENTS)
        .map(|_| DeviceSecret::generate(&mut rng).public())
        .collect();
    let key = SecretKey::generate(&mut rng);
    let slot = KeySlot {
        log: LogId::Keys(Category::Clinical),
        epoch: 0,
        key: key_id(&key),
    };
    let header = Header {
        clinic: genesis.clinic_id(),
        log: slot.log,
        author: founder.id(),
        seq: 0,
        prev: None,
        epoch: slot.epoch,
        key: slot.key,
        at_ms: 0,
    };

    let mut group = c.benchmark_group("keys");
    group.throughput(Throughput::Elements(RECIPIENTS as u64));
    group.bench_function("grant_10_recipients", |b| {
        b.iter(|| grant_envelope(&founder, &header, &slot, &key, black_box(&recipients)))
    });
    group.finish();
}

fn bench_envelope(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let author = DeviceSecret::generate(&mut rng);
    let genesis = SignedGenesis::new(&author, 0, [4; 16]);
    let key = SecretKey::generate(&mut rng);
    let header = Header {
        clinic: genesis.clinic_id(),
        log: thread_log(&mut rng),
        author: author.id(),
        seq: 41,
        prev: Some(EnvelopeId([9; 32])),
        epoch: 0,
        key: key_id(&key),
        at_ms: 1_704_067_200_000,
    };
    // A sealed message change is a few hundred bytes.
    let body = Body::Sealed(vec![0x5a; 400]);
    let env = Envelope::sign(&author, header.clone(), body.clone());

    let mut group = c.benchmark_group("envelope");
    group.bench_function("sign", |b| {
        b.iter(|| Envelope::sign(&author, header.clone(), body.clone()))
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(&env).verify().expect("verifies"))
    });
    group.bench_function("id", |b| b.iter(|| black_box(&env).id()));
    group.finish();
}

/// This process's CPU time (user + system) from `/proc/self/stat`, if readable.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime is the 14th field
    // of the line, stime the 15th, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Times whole `handle` calls that revoke one device each in a generated clinic.
fn rotation() {
    let threads = support::env_usize("HUDDLE_BENCH_THREADS", 1_000);
    let messages = support::env_usize("HUDDLE_BENCH_MESSAGES", 1_000);
    let devices = support::env_usize("HUDDLE_BENCH_DEVICES", 50).max(3);
    let revocations = support::env_usize("HUDDLE_BENCH_REVOCATIONS", 5).min(devices - 2);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    // The two authoring devices plus admin readers make `devices`.
    let readers: Vec<DevicePublic> = (0..devices - 2)
        .map(|_| DeviceSecret::generate(&mut rng).public())
        .collect();
    let start = Instant::now();
    let spec = Spec {
        messages,
        threads,
        seed: 21,
    };
    let mut live = support::generate_live(spec, &readers);
    println!(
        "keys: rotation setup: {threads} threads, {messages} messages, {devices} devices \
         ({} envelopes) generated in {:.1} s",
        live.clinic.envelopes.len(),
        start.elapsed().as_secs_f64()
    );
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut authored = 0;
    for reader in readers.iter().take(revocations) {
        live.clock_ms += 1_000;
        let op = Op::RevokeDevice {
            device: reader.id,
            cutoffs: vec![],
        };
        let cpu0 = process_cpu();
        let t0 = Instant::now();
        let results = live
            .founder
            .handle(&mut live.rng, live.clock_ms, Input::Roster(op))
            .expect("the founder may revoke");
        let wall = t0.elapsed();
        let cpu = process_cpu().zip(cpu0).map(|(b, a)| b - a);
        assert!(
            !results
                .notices
                .iter()
                .any(|n| matches!(n, Notice::NotAuthored(_))),
            "rotation authored: {:?}",
            results.notices
        );
        let grants: usize = results
            .authored
            .iter()
            .map(|e| match &e.body {
                Body::Grants(g) => g.len(),
                Body::Sealed(_) => 0,
            })
            .sum();
        println!(
            "keys: rotation: revoke 1 of {devices} devices: {:.1} ms wall, {} CPU; \
             {} envelopes authored, {grants} keys sealed",
            wall.as_secs_f64() * 1e3,
            cpu.map_or("n/a".to_string(), |c| format!("{} ms", c.as_millis())),
            results.authored.len(),
        );
        authored = results.authored.len();
        walls.push(wall);
        if let Some(c) = cpu {
            cpus.push(c);
        }
    }
    walls.sort();
    cpus.sort();
    if !walls.is_empty() {
        println!(
            "keys: rotation after one revocation ({threads} readable threads, {devices} \
             devices): median {:.1} ms wall, max {:.1} ms wall{} over {} revocations, \
             {authored} envelopes each (goal < 1 s CPU)",
            walls[walls.len() / 2].as_secs_f64() * 1e3,
            walls[walls.len() - 1].as_secs_f64() * 1e3,
            cpus.last()
                .map_or(String::new(), |c| format!(", max {} ms CPU", c.as_millis())),
            walls.len(),
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_seal(&mut criterion);
    bench_grants(&mut criterion);
    bench_envelope(&mut criterion);
    criterion.final_summary();
    if !std::env::args().any(|a| a == "--list") {
        rotation();
    }
}
