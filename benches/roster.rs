//! Roster flood (issue 16, finding 4): 100 members' devices offer 1,000 roster
//! operations each (10⁵ in all) to an admin's replica; then the admin writes one
//! legitimate operation.
//!
//! Measured, for two kinds of junk:
//! - `inert`: admin operations by devices that are no admin's (`AddMember` of made-up
//!   members) — what finding 4 reproduced;
//! - `members-own`: thread restrictions of made-up clinical thread ids by clinicians
//!   (allowed, so they are folded: the worst a non-admin can make the fold carry).
//!
//! Lines printed: the ingest time per operation within the per-device quota
//! (`core::limits::MAX_MEMBER_ROSTER_OPS`) and past it (refused at ingest); then the
//! admin operation's `Replica::handle` wall time and the peak heap growth during it
//! (a counting global allocator). Goals: < 50 ms and < 64 MiB.
//! `HUDDLE_BENCH_FLOOD_DEVICES` and `HUDDLE_BENCH_FLOOD_OPS` change the workload.

mod support;

#[path = "../tests/alloc/mod.rs"]
mod alloc;

use std::time::Instant;

use huddle::core::envelope::{Body, Envelope, Header};
use huddle::core::identity::DeviceSecret;
use huddle::core::ids::{LogId, MemberId, ThreadId};
use huddle::core::policy::{Category, Role};
use huddle::core::replica::{IngestError, Input};
use huddle::core::roster::{Op, RosterOp, SignedGenesis};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use support::{Author, env_usize};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

const START_MS: u64 = 1_700_000_000_000;

#[derive(Clone, Copy, PartialEq)]
enum Junk {
    Inert,
    MembersOwn,
}

fn member_id(n: usize) -> MemberId {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&(n as u64 + 1).to_be_bytes());
    MemberId(m)
}

fn run(kind: Junk, devices: usize, per_device: usize) {
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let founder_secret = DeviceSecret::generate(&mut rng);
    let genesis = SignedGenesis::new(&founder_secret, START_MS, [16; 16]);
    let mut admin = Author::new(founder_secret, MemberId([0; 16]), &genesis);
    let mut now = START_MS;
    let mut step = |admin: &mut Author, rng: &mut ChaCha20Rng, input: Input| {
        now += 1_000;
        admin
            .handle(rng, now, input)
            .unwrap_or_else(|e| panic!("the admin's input: {e}"))
    };
    step(
        &mut admin,
        &mut rng,
        Input::Roster(Op::Init {
            clinic_name: "Maple Street Therapy".into(),
            member: MemberId([0; 16]),
            name: "Dana".into(),
            role: Role::Clinician,
        }),
    );
    let secrets: Vec<DeviceSecret> = (0..devices)
        .map(|_| DeviceSecret::generate(&mut rng))
        .collect();
    for (i, s) in secrets.iter().enumerate() {
        let role = if kind == Junk::MembersOwn || i % 2 == 0 {
            Role::Clinician
        } else {
            Role::Scheduler
        };
        for op in [
            Op::AddMember {
                member: member_id(i),
                name: format!("Member {i}"),
                role,
                admin: false,
            },
            Op::AddDevice {
                member: member_id(i),
                device: s.public(),
            },
        ] {
            step(&mut admin, &mut rng, Input::Roster(op));
        }
    }
    let slot = admin
        .replica
        .writing_slot(&LogId::Roster)
        .expect("the roster key");
    let key = admin.replica.key(&slot).expect("held").clone();
    let heads = admin.replica.roster_heads().to_vec();
    let clinic = genesis.clinic_id();

    // Each device's chain of junk, in order.
    let t = Instant::now();
    let mut chains: Vec<Vec<Envelope>> = Vec::with_capacity(devices);
    for (d, s) in secrets.iter().enumerate() {
        let mut prev = None;
        let mut chain = Vec::with_capacity(per_device);
        for n in 0..per_device {
            let op = match kind {
                Junk::Inert => Op::AddMember {
                    member: member_id(1_000_000 + d * per_device + n),
                    name: format!("junk {d}/{n}"),
                    role: Role::Billing,
                    admin: true,
                },
                Junk::MembersOwn => {
                    let mut id = [0u8; 16];
                    rng.fill_bytes(&mut id);
                    id[0] = Category::Clinical.code();
                    Op::RestrictThread {
                        thread: ThreadId(id),
                        category: Category::Clinical,
                        members: vec![member_id(d)],
                    }
                }
            };
            let at_ms = START_MS + n as u64;
            let plain = postcard::to_stdvec(&RosterOp {
                deps: heads.clone(),
                at_ms,
                op,
            })
            .expect("encode");
            let header = Header {
                clinic,
                log: LogId::Roster,
                author: s.id(),
                seq: n as u64,
                prev,
                epoch: slot.epoch,
                key: slot.key,
                at_ms,
            };
            let ct = key.encrypt(&mut rng, &header.aad(), &plain);
            let env = Envelope::sign(s, header, Body::Sealed(ct));
            prev = Some(env.id());
            chain.push(env);
        }
        chains.push(chain);
    }
    let built = t.elapsed();
    let quota = huddle::core::limits::MAX_MEMBER_ROSTER_OPS.min(per_device);
    let (within, past): (Vec<Envelope>, Vec<Envelope>) = {
        let mut within = Vec::new();
        let mut past = Vec::new();
        for chain in chains {
            let mut chain = chain.into_iter();
            within.extend(chain.by_ref().take(quota));
            past.extend(chain);
        }
        (within, past)
    };
    let name = match kind {
        Junk::Inert => "inert",
        Junk::MembersOwn => "members-own",
    };
    let offered = within.len() + past.len();

    let t = Instant::now();
    for batch in within.chunks(256) {
        step(&mut admin, &mut rng, Input::Envelopes(batch.to_vec()));
    }
    let accepted_time = t.elapsed();
    let t = Instant::now();
    let mut refused = 0;
    for batch in past.chunks(256) {
        let out = step(&mut admin, &mut rng, Input::Envelopes(batch.to_vec()));
        refused += out
            .statuses
            .iter()
            .filter(|s| matches!(s, Err(IngestError::RosterQuota(_))))
            .count();
    }
    let refused_time = t.elapsed();
    assert_eq!(
        refused,
        past.len(),
        "every operation past the quota is refused"
    );

    let (out, peak) = alloc::measure(|| {
        let t = Instant::now();
        let out = step(
            &mut admin,
            &mut rng,
            Input::Roster(Op::AddMember {
                member: member_id(999_999),
                name: "Rae".into(),
                role: Role::Clinician,
                admin: false,
            }),
        );
        (out, t.elapsed())
    });
    let (_, admin_time) = out;
    assert!(admin.replica.roster().member_by_name("Rae").is_some());
    let restricted = admin.replica.roster().restricted.len();
    assert_eq!(admin.replica.roster_waiting(), 0, "nothing held back");
    println!(
        "roster flood ({name}): {offered} operations from {devices} devices (built in {:.1} s); \
         {} within the quota ingested at {:.1} µs each; {} past it refused at {:.1} µs each; \
         then one admin operation: {:.2} ms, peak heap +{:.2} MiB ({restricted} threads restricted)",
        built.as_secs_f64(),
        within.len(),
        accepted_time.as_secs_f64() * 1e6 / within.len().max(1) as f64,
        past.len(),
        refused_time.as_secs_f64() * 1e6 / past.len().max(1) as f64,
        admin_time.as_secs_f64() * 1e3,
        peak as f64 / (1024.0 * 1024.0),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let devices = env_usize("HUDDLE_BENCH_FLOOD_DEVICES", 100);
    let per_device = env_usize("HUDDLE_BENCH_FLOOD_OPS", 1_000);
    run(Junk::Inert, devices, per_device);
    run(Junk::MembersOwn, devices, per_device);
}
