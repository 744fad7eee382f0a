//! Opening a store that holds 10⁵ messages in 10³ threads and listing its threads
//! (goal: under 300 ms), and the peak heap used while doing it.
//!
//! Setup, not timed by criterion: a clinic is generated in memory with the core API and
//! written as a bundle file; its roster enrolls (as an admin clinician) the device of a real
//! `Node` created in a temporary directory, which then imports the bundle once. The
//! import time is printed, since it is itself a figure of interest.
//!
//! Timed: `Node::open` + `Node::threads` (`open_and_list`), `Node::open` alone
//! (`open_only`, mostly Argon2id: 19 MiB, t = 2), `Node::open` of a store holding only a
//! device identity (`open_empty_store`, Argon2id plus sled's fixed cost), and
//! `Node::threads` on a node already open (`list_only`), and the check of the unsealed
//! trees' digests that every open makes (`integrity_check`). The file cache is warm.
//!
//! Peak memory is measured with a counting global allocator: the peak of live heap
//! bytes during one open+list (and one open alone), relative to the live bytes before.
//!
//! `HUDDLE_BENCH_MESSAGES` (default 100000) and `HUDDLE_BENCH_THREADS` (default 1000)
//! make the store smaller while developing.

#[path = "../tests/alloc/mod.rs"]
mod alloc;
mod support;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use huddle::node::Node;
use support::Spec;
use tempfile::TempDir;

const PASSPHRASE: &[u8] = b"correct horse battery staple";

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

const MIB: f64 = 1024.0 * 1024.0;

/// Peak heap growth (MiB) while running `work`, and what stays allocated after it.
fn heap_growth<T>(work: impl FnOnce() -> T) -> (f64, f64) {
    let before = alloc::live();
    let ((), peak) = alloc::measure(|| drop(black_box(work())));
    let after = alloc::live().saturating_sub(before);
    (peak as f64 / MIB, after as f64 / MIB)
}

/// Two data directories: a clinic with the generated history, and a bare identity.
struct Fixture {
    _tmp: TempDir,
    full: PathBuf,
    empty: PathBuf,
    threads: usize,
}

impl Fixture {
    fn new() -> Self {
        let spec = Spec {
            messages: support::env_usize("HUDDLE_BENCH_MESSAGES", 100_000),
            threads: support::env_usize("HUDDLE_BENCH_THREADS", 1_000),
            seed: 11,
        };
        let tmp = TempDir::new().expect("temp dir");
        let full = tmp.path().join("full");
        let empty = tmp.path().join("empty");
        drop(Node::create(&empty, PASSPHRASE).expect("empty store"));
        let mut node = Node::create(&full, PASSPHRASE).expect("store");

        let start = Instant::now();
        let clinic = support::generate(spec, &[node.device()]);
        let bundle = tmp.path().join("clinic.huddle");
        support::write_bundle(&clinic, &bundle);
        let envelopes = clinic.envelopes.len();
        drop(clinic);
        println!(
            "store_open setup: generated {} messages in {} threads ({envelopes} envelopes, \
             {:.1} MiB bundle) in {:.1} s",
            spec.messages,
            spec.threads,
            std::fs::metadata(&bundle).map_or(0, |m| m.len()) as f64 / MIB,
            start.elapsed().as_secs_f64()
        );

        let start = Instant::now();
        let report = node.import_bundle(&bundle).expect("import");
        let took = start.elapsed();
        assert!(report.refused.is_empty(), "refused: {:?}", report.refused);
        assert_eq!(report.accepted + report.duplicate, envelopes);
        println!(
            "store_open setup: import_bundle of {envelopes} envelopes took {:.1} s \
             ({:.0} µs/envelope, one flush); accepted {}, notices {}",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / envelopes as f64,
            report.accepted,
            report.notices.len()
        );
        drop(node);

        let fixture = Fixture {
            _tmp: tmp,
            full,
            empty,
            threads: spec.threads,
        };
        fixture.check_listing(spec.messages);
        fixture
    }

    /// The first listing after import: every thread readable, every message counted.
    fn check_listing(&self, messages: usize) {
        let start = Instant::now();
        let node = self.open();
        let (list, problems) = node.threads().expect("threads");
        println!(
            "store_open setup: first open+list after import {:.0} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        assert!(problems.is_empty(), "problems: {problems:?}");
        assert_eq!(list.len(), self.threads);
        assert!(list.iter().all(|s| s.readable));
        assert_eq!(list.iter().map(|s| s.messages).sum::<usize>(), messages);
    }

    fn open(&self) -> Node {
        Node::open(&self.full, PASSPHRASE).expect("open")
    }

    /// Opens the store and lists its threads; the node is dropped (unlocking sled).
    fn open_and_list(&self) -> usize {
        let node = self.open();
        node.threads().expect("threads").0.len()
    }
}

fn bench(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("store_open");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    // Each iteration also drops the node it opened: sled holds a lock on the directory,
    // so only one node may be open at a time.
    group.bench_function("open_and_list", |b| b.iter(|| f.open_and_list()));
    group.bench_function("open_only", |b| b.iter(|| f.open()));
    group.bench_function("open_empty_store", |b| {
        b.iter(|| Node::open(&f.empty, PASSPHRASE).expect("open"))
    });
    // What checking the unsealed trees' digests adds to every open.
    let store = huddle::store::Store::open(&f.full, PASSPHRASE).expect("store");
    println!(
        "store_open integrity: {} envelopes in the store",
        store.envelope_count()
    );
    group.bench_function("integrity_check", |b| {
        b.iter(|| store.check_integrity().expect("intact"))
    });
    drop(store);
    let node = f.open();
    group.bench_function("list_only", |b| {
        b.iter(|| node.threads().expect("threads").0.len())
    });
    drop(node);
    group.finish();
}

/// Prints peak heap growth for open+list and open alone.
fn report_memory(f: &Fixture) {
    let (peak, kept) = heap_growth(|| f.open_and_list());
    println!(
        "store_open memory: open+list peak heap {peak:.1} MiB (still held after drop: {kept:.1} MiB)"
    );
    let (peak, _) = heap_growth(|| f.open());
    println!("store_open memory: open alone peak heap {peak:.1} MiB");
    let (peak, _) = heap_growth(|| Node::open(&f.empty, PASSPHRASE).expect("open"));
    println!("store_open memory: open of an empty store peak heap {peak:.1} MiB");
}

fn main() {
    // Arguments are checked before the (long) setup.
    let mut criterion = Criterion::default().configure_from_args();
    let listing = std::env::args().any(|a| a == "--list");
    let fixture = (!listing).then(Fixture::new);
    if let Some(f) = &fixture {
        report_memory(f);
        bench(&mut criterion, f);
    }
    criterion.final_summary();
}
