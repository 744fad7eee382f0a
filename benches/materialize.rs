//! Materializing thread documents from envelopes, against raw Automerge.
//!
//! A generated clinic (2,000 messages across 20 threads from two authoring devices, by
//! default) is received by a third, enrolled device starting from nothing:
//!
//! - `huddle_ingest`: each envelope is decoded from its wire bytes, handed to
//!   `Replica::handle` as `Input::Envelopes` in batches of `BATCH_ENVELOPES` (every
//!   signature verified, clinic, author chain, authority under the roster, the
//!   follow-up grant check that ends every input), decrypted, and its Automerge change
//!   applied to a `ThreadDoc` with the ownership rules checked (`ThreadDoc::apply`) —
//!   the full receive path, minus storage.
//! - `thread_doc_apply`: the same decrypted changes applied with `ThreadDoc::apply`.
//! - `automerge_apply`: the same decrypted changes applied to bare `AutoCommit`
//!   documents, one change at a time as they arrive.
//!
//! After criterion's runs the binary times both paths again with `Instant` and prints
//! one `materialize:` line with µs per envelope and the huddle/raw ratio (goal ≤ 2.0×).
//! `HUDDLE_BENCH_MESSAGES` and `HUDDLE_BENCH_THREADS` change the workload.

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use automerge::{AutoCommit, Change};
use criterion::{Criterion, Throughput};
use huddle::core::envelope::Envelope;
use huddle::core::identity::DeviceSecret;
use huddle::core::ids::{DeviceId, MemberId, ThreadId};
use huddle::core::policy::Category;
use huddle::core::replica::{Ctx, Effect, Input, Replica, Status};
use huddle::core::roster::SignedGenesis;
use huddle::core::sync::BATCH_ENVELOPES;
use huddle::core::thread::{ChangeAuthor, ThreadDoc};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use support::{Clinic, MemLookup, Spec};

/// Repetitions of the `Instant` measurement behind the printed summary line.
const SUMMARY_RUNS: usize = 9;

/// A decrypted thread change, as the replica hands it out, with who made it.
struct ThreadChange {
    thread: ThreadId,
    category: Category,
    author: ChangeAuthor,
    change: Vec<u8>,
}

/// The receiving device and what it receives.
struct Fixture {
    reader: DeviceSecret,
    genesis: SignedGenesis,
    records: Vec<Vec<u8>>,
    changes: Vec<ThreadChange>,
    /// Every device's member, from the receiving replica's final roster.
    members: HashMap<DeviceId, MemberId>,
}

impl Fixture {
    fn new() -> Self {
        let spec = Spec {
            messages: support::env_usize("HUDDLE_BENCH_MESSAGES", 2_000),
            threads: support::env_usize("HUDDLE_BENCH_THREADS", 20),
            seed: 7,
        };
        let reader = DeviceSecret::generate(&mut ChaCha20Rng::seed_from_u64(99));
        let Clinic { genesis, envelopes } = support::generate(spec, &[reader.public()]);
        let records = envelopes.iter().map(Envelope::encode).collect();
        let mut fixture = Fixture {
            reader,
            genesis,
            records,
            changes: Vec::new(),
            members: HashMap::new(),
        };
        let (changes, members) = fixture.collect_changes();
        fixture.changes = changes;
        fixture.members = members;
        assert!(
            fixture.changes.len() >= spec.messages + spec.threads,
            "the reader decrypts every message and thread header"
        );
        fixture
    }

    /// The decrypted changes, in arrival order, from one pass of the receive path, and
    /// every device's member.
    fn collect_changes(&self) -> (Vec<ThreadChange>, HashMap<DeviceId, MemberId>) {
        let mut out = Vec::new();
        let replica = ingest_all(
            &self.reader,
            &self.genesis,
            &self.records,
            |replica, effect| {
                if let Effect::ThreadChange {
                    thread,
                    category,
                    author,
                    at_ms,
                    change,
                } = effect
                {
                    let author = support::change_author(replica, &author, at_ms);
                    out.push(ThreadChange {
                        thread,
                        category,
                        author,
                        change,
                    });
                }
            },
        );
        let members = replica
            .roster()
            .devices
            .iter()
            .map(|(d, e)| (*d, e.member))
            .collect();
        (out, members)
    }
}

/// Decodes and ingests every record into a fresh replica of `reader`; hands every effect
/// except `Accepted` (recorded in the lookup) to `on_effect`; returns the replica.
fn ingest_all(
    reader: &DeviceSecret,
    genesis: &SignedGenesis,
    records: &[Vec<u8>],
    mut on_effect: impl FnMut(&Replica, Effect),
) -> Replica {
    let mut replica = Replica::new(reader.public(), genesis.clone()).expect("valid genesis");
    let mut lookup = MemLookup::default();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let envs: Vec<Envelope> = records
        .iter()
        .map(|r| Envelope::decode(r).expect("well-formed record"))
        .collect();
    // In creation order, in batches of at most BATCH_ENVELOPES, each one input to
    // `handle` (which verifies every signature of the batch, split over threads).
    let mut envs = envs.into_iter().peekable();
    while envs.peek().is_some() {
        let batch: Vec<Envelope> = envs.by_ref().take(BATCH_ENVELOPES).collect();
        let mut ctx = Ctx {
            secret: reader,
            rng: &mut rng,
            now_ms: 0,
            lookup: &lookup,
        };
        let results = replica
            .handle(&mut ctx, Input::Envelopes(batch))
            .expect("envelopes input");
        debug_assert!(
            results
                .statuses
                .iter()
                .all(|s| matches!(s, Ok(Status::Accepted)))
        );
        debug_assert!(results.authored.is_empty(), "nothing left to grant");
        for effect in results.effects {
            match effect {
                Effect::Accepted(env, id) => lookup.record(&env, id),
                other => on_effect(&replica, other),
            }
        }
    }
    replica
}

/// The full receive path: validate, decrypt, apply to thread documents.
fn huddle_materialize(f: &Fixture) -> HashMap<ThreadId, ThreadDoc> {
    let me = f.reader.id();
    let mut docs: HashMap<ThreadId, ThreadDoc> = HashMap::new();
    ingest_all(&f.reader, &f.genesis, &f.records, |replica, effect| {
        if let Effect::ThreadChange {
            thread,
            category,
            author,
            at_ms,
            change,
        } = effect
        {
            let author = support::change_author(replica, &author, at_ms);
            docs.entry(thread)
                .or_insert_with(|| ThreadDoc::new(&me))
                .apply(
                    category,
                    thread,
                    &author,
                    &support::member_of(replica),
                    &change,
                )
                .expect("change applies");
        }
    });
    docs
}

/// The receive path without the Automerge apply: validate and decrypt only.
fn huddle_ingest_only(f: &Fixture) -> usize {
    let mut changes = 0;
    ingest_all(&f.reader, &f.genesis, &f.records, |_, effect| {
        if let Effect::ThreadChange { change, .. } = effect {
            changes += black_box(change).len();
        }
    });
    changes
}

/// The decrypted changes applied through `ThreadDoc::apply`.
fn thread_doc_apply(f: &Fixture) -> HashMap<ThreadId, ThreadDoc> {
    let me = f.reader.id();
    let member_of = |d: &DeviceId| f.members.get(d).copied();
    let mut docs: HashMap<ThreadId, ThreadDoc> = HashMap::new();
    for c in &f.changes {
        docs.entry(c.thread)
            .or_insert_with(|| ThreadDoc::new(&me))
            .apply(c.category, c.thread, &c.author, &member_of, &c.change)
            .expect("change applies");
    }
    docs
}

/// The decrypted changes applied to bare Automerge documents.
fn automerge_apply(f: &Fixture) -> HashMap<ThreadId, AutoCommit> {
    let mut docs: HashMap<ThreadId, AutoCommit> = HashMap::new();
    for c in &f.changes {
        let change = Change::from_bytes(c.change.clone()).expect("change decodes");
        docs.entry(c.thread)
            .or_default()
            .apply_changes([change])
            .expect("change applies");
    }
    docs
}

fn bench(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("materialize");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(f.records.len() as u64));
    group.bench_function("huddle_ingest", |b| b.iter(|| huddle_materialize(f)));
    group.throughput(Throughput::Elements(f.changes.len() as u64));
    group.bench_function("thread_doc_apply", |b| b.iter(|| thread_doc_apply(f)));
    group.bench_function("automerge_apply", |b| b.iter(|| automerge_apply(f)));
    group.finish();
}

/// The wall time of one call of `work`.
fn time<T>(work: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    black_box(work());
    start.elapsed()
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    values[values.len() / 2]
}

fn micros_per(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e6 / n as f64
}

/// Prints the summary line: huddle and raw Automerge per envelope, and their ratio.
/// The paths alternate within each repetition so that load from other processes
/// affects both alike; the ratio is the median of the per-repetition ratios.
fn report(f: &Fixture) {
    let mut huddle = Vec::new();
    let mut ingest = Vec::new();
    let mut doc = Vec::new();
    let mut raw = Vec::new();
    let mut ratio = Vec::new();
    for _ in 0..SUMMARY_RUNS {
        let h = time(|| huddle_materialize(f));
        let r = time(|| automerge_apply(f));
        ingest.push(time(|| huddle_ingest_only(f)));
        doc.push(time(|| thread_doc_apply(f)));
        ratio.push(h.as_secs_f64() / r.as_secs_f64());
        huddle.push(h);
        raw.push(r);
    }
    let (envs, changes) = (f.records.len(), f.changes.len());
    println!(
        "materialize: {envs} envelopes ({changes} thread changes), huddle {:.1} µs/env, \
         raw automerge {:.1} µs/env, ratio {:.2} (goal ≤ 2.0)",
        micros_per(median(huddle), envs),
        micros_per(median(raw), changes),
        median(ratio),
    );
    println!(
        "materialize: of which ingest without apply (decode, verify, chain, decrypt) \
         {:.1} µs/env; ThreadDoc::apply {:.1} µs/change; medians of {SUMMARY_RUNS} runs",
        micros_per(median(ingest), envs),
        micros_per(median(doc), changes),
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let fixture = Fixture::new();
    bench(&mut criterion, &fixture);
    criterion.final_summary();
    if !std::env::args().any(|a| a == "--list") {
        report(&fixture);
    }
}
