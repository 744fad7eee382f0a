//! Key distribution costs: sealing a thread key to one device and opening it
//! (`core::seal`, one-way Noise X with X25519 and ChaCha20-Poly1305), and, for context,
//! `Replica::author_grants` sealing one key to 10 recipients in one signed envelope, and
//! signing and verifying a typical message envelope (what every received envelope costs).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use huddle::core::cipher::SecretKey;
use huddle::core::envelope::{Body, Envelope, Header};
use huddle::core::identity::{DevicePublic, DeviceSecret};
use huddle::core::ids::{LogId, ThreadId};
use huddle::core::policy::Category;
use huddle::core::replica::Replica;
use huddle::core::roster::SignedGenesis;
use huddle::core::seal;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Recipients of the `author_grants` benchmark.
const RECIPIENTS: usize = 10;

/// A grant context of the real shape (domain, clinic, log, epoch, recipient).
const CONTEXT: &[u8] = b"huddle/grant/v1 clinic-id-32-bytes-long.. log-18-bytes.... epoch recipient-id-32-bytes-long....";

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

fn bench_grants(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let founder = DeviceSecret::generate(&mut rng);
    let genesis = SignedGenesis::new(&founder, 0, [3; 16]);
    let replica = Replica::new(founder.public(), genesis).expect("valid genesis");
    let recipients: Vec<DevicePublic> = (0..RECIPIENTS)
        .map(|_| DeviceSecret::generate(&mut rng).public())
        .collect();
    let log = thread_log(&mut rng);
    let key = SecretKey::generate(&mut rng);

    let mut group = c.benchmark_group("keys");
    group.throughput(Throughput::Elements(RECIPIENTS as u64));
    group.bench_function("author_grants_10_recipients", |b| {
        b.iter(|| {
            replica
                .author_grants(&founder, log, 0, &key, black_box(&recipients))
                .expect("grants seal")
        })
    });
    group.finish();
}

fn bench_envelope(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let author = DeviceSecret::generate(&mut rng);
    let genesis = SignedGenesis::new(&author, 0, [4; 16]);
    let header = Header {
        clinic: genesis.clinic_id(),
        log: thread_log(&mut rng),
        author: author.id(),
        seq: 41,
        prev: Some(huddle::core::ids::EnvelopeId([9; 32])),
        epoch: 0,
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

criterion_group!(benches, bench_seal, bench_grants, bench_envelope);
criterion_main!(benches);
