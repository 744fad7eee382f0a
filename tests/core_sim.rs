//! Many simulated devices driving the sans-IO core in one process, in random orders:
//! convergence under shuffled, duplicated and dropped deliveries; blind store-and-forward
//! by a device that cannot read what it carries; tamper, fork, replay and wrong-clinic
//! detection; roster rules (non-admin operations have no effect, the fold ignores arrival
//! order); and a device enrolled late that catches up on exactly what its role allows.

mod sim;

use huddle::core::envelope::{Body, Envelope};
use huddle::core::identity::{DevicePublic, DeviceSecret};
use huddle::core::ids::{DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use huddle::core::policy::{Category, Policy, Role};
use huddle::core::replica::{AuthorError, Effect, IngestError, KeySlot, Notice, Status};
use huddle::core::roster::{
    self, Folded, Op, OpRecord, Roster, RosterError, RosterOp, SignedGenesis,
};
use huddle::core::thread::{MessageView, ThreadMeta};
use proptest::prelude::*;
use proptest::sample::Index;
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use sim::{Device, Network, shuffled};
use std::collections::{BTreeMap, BTreeSet};

/// Founding admin, a clinician.
const ADMIN: &str = "dana-pc";
/// A second clinician, not an admin.
const LEE: &str = "lee-laptop";
/// The front desk (scheduler).
const FRONT: &str = "front-desk";
/// The billing office.
const BILLING: &str = "billing-pc";
/// A second device of the second clinician.
const LEE_TABLET: &str = "lee-tablet";
/// A second front-desk device.
const FRONT_2: &str = "front-desk-2";

// ---------------------------------------------------------------------------------------
// Scenario helpers
// ---------------------------------------------------------------------------------------

/// `cases` random cases (or `PROPTEST_CASES` if set, for longer runs); failures are
/// reported, not written to a regressions file.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

/// A clinic in sync on every device, with one thread per category.
struct Clinic {
    net: Network,
    lee: MemberId,
    sam: MemberId,
    bo: MemberId,
    /// One thread per category, each created by a device that may read it.
    threads: Vec<LogId>,
    /// Roster operations every device must report as rejected, once.
    rejected: Vec<(EnvelopeId, RosterError)>,
}

/// Founds a clinic of `devices` (4 to 6) devices: admin clinician, clinician, scheduler,
/// billing, then optionally a clinician's tablet and a second front-desk device.
fn clinic(seed: u64, devices: usize) -> Clinic {
    let mut net = Network::new(seed, ADMIN);
    net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let lee = net.add_member(ADMIN, "Lee", Role::Clinician, false);
    let sam = net.add_member(ADMIN, "Sam", Role::Scheduler, false);
    let bo = net.add_member(ADMIN, "Bo", Role::Billing, false);
    net.add_device(ADMIN, lee, LEE);
    net.add_device(ADMIN, sam, FRONT);
    net.add_device(ADMIN, bo, BILLING);
    if devices >= 5 {
        net.add_device(ADMIN, lee, LEE_TABLET);
    }
    if devices >= 6 {
        net.add_device(ADMIN, sam, FRONT_2);
    }
    net.regrant(ADMIN);
    net.sync_all();
    let threads = one_thread_per_category(&mut net);
    Clinic {
        net,
        lee,
        sam,
        bo,
        threads,
        rejected: vec![],
    }
}

/// Like [`clinic`] with six devices, but Lee is an admin too, and the two admins edit the
/// roster without seeing each other's edits: Lee adds his tablet and Dana a second
/// front-desk device, and each adds a member named Kim, which only one of them can keep.
fn clinic_with_two_admins(seed: u64) -> Clinic {
    let mut net = Network::new(seed, ADMIN);
    net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let lee = net.add_member(ADMIN, "Lee", Role::Clinician, true);
    let sam = net.add_member(ADMIN, "Sam", Role::Scheduler, false);
    let bo = net.add_member(ADMIN, "Bo", Role::Billing, false);
    net.add_device(ADMIN, lee, LEE);
    net.add_device(ADMIN, sam, FRONT);
    net.add_device(ADMIN, bo, BILLING);
    net.regrant(ADMIN);
    net.sync_all();
    net.add_device(LEE, lee, LEE_TABLET);
    let kim_by_lee = add_member_op(&mut net, LEE, "Kim", Role::Clinician);
    net.add_device(ADMIN, sam, FRONT_2);
    let kim_by_dana = add_member_op(&mut net, ADMIN, "Kim", Role::Billing);
    net.sync_all();
    // The founder seals the roster key to both new devices.
    net.regrant(ADMIN);
    net.sync_all();
    let members = &net.device(ADMIN).replica.roster().members;
    let (kept, lost) = if members.contains_key(&kim_by_lee.0) {
        (kim_by_lee, kim_by_dana)
    } else {
        (kim_by_dana, kim_by_lee)
    };
    assert!(members.contains_key(&kept.0) && !members.contains_key(&lost.0));
    let threads = one_thread_per_category(&mut net);
    Clinic {
        net,
        lee,
        sam,
        bo,
        threads,
        rejected: vec![(lost.1, RosterError::DuplicateName("Kim".into()))],
    }
}

/// Adds a member by hand so that the caller learns the operation's envelope id.
fn add_member_op(net: &mut Network, admin: &str, name: &str, role: Role) -> (MemberId, EnvelopeId) {
    let member = MemberId(net.random_bytes());
    let op = Op::AddMember {
        member,
        name: name.into(),
        role,
        admin: false,
    };
    (member, net.roster_op(admin, op).id())
}

/// Creates a thread in each category, each by a device that may read it; syncs all.
fn one_thread_per_category(net: &mut Network) -> Vec<LogId> {
    let threads = vec![
        net.create_thread(ADMIN, Category::Clinical, "Sara M. - authorization renewal"),
        net.create_thread(FRONT, Category::Scheduling, "Friday coverage"),
        net.create_thread(BILLING, Category::Billing, "Upload evaluation for billing"),
        net.create_thread(LEE, Category::Operations, "Printer on the 2nd floor"),
    ];
    net.sync_all();
    threads
}

fn thread_of(log: &LogId) -> ThreadId {
    log.thread().expect("a thread log")
}

fn category_of(log: &LogId) -> Category {
    match log {
        LogId::Thread { category, .. } => *category,
        _ => panic!("not a thread log"),
    }
}

/// Devices that, in their own view, may read the thread and have materialized it.
fn writers_of(net: &Network, log: &LogId) -> Vec<String> {
    net.devices()
        .filter(|d| d.may_read(category_of(log)) && d.meta(&thread_of(log)).is_some())
        .map(|d| d.name.clone())
        .collect()
}

/// `schedule` with extra copies of some of `pool`'s items inserted at chosen places.
fn with_duplicates<T: Clone>(mut schedule: Vec<T>, pool: &[T], dups: &[(Index, Index)]) -> Vec<T> {
    if pool.is_empty() {
        return schedule;
    }
    for (which, at) in dups {
        let item = pool[which.index(pool.len())].clone();
        let at = at.index(schedule.len() + 1);
        schedule.insert(at, item);
    }
    schedule
}

/// Splits a delivery order into what arrives and what is lost for now: the positions
/// `lost` marks (used cyclically, shifted by `offset` so each device loses others).
fn split_lost<T>(order: Vec<T>, lost: &[bool], offset: usize) -> (Vec<T>, Vec<T>) {
    let mut arrived = Vec::new();
    let mut dropped = Vec::new();
    for (i, item) in order.into_iter().enumerate() {
        if !lost.is_empty() && lost[(i + offset) % lost.len()] {
            dropped.push(item);
        } else {
            arrived.push(item);
        }
    }
    (arrived, dropped)
}

/// Delivers envelopes one by one; every one must be accepted, held or a duplicate.
fn deliver_all(net: &mut Network, to: &str, envelopes: Vec<Envelope>) -> Result<(), TestCaseError> {
    for env in envelopes {
        let id = env.id();
        let result = net.deliver(to, env).result;
        prop_assert!(
            result.is_ok(),
            "delivering {:?} to `{}` was refused: {:?}",
            id,
            to,
            result
        );
    }
    Ok(())
}

fn ids(envelopes: &[Envelope]) -> BTreeSet<EnvelopeId> {
    envelopes.iter().map(Envelope::id).collect()
}

/// What every reader of a thread must agree on.
fn thread_view(
    device: &Device,
    thread: &ThreadId,
) -> (Option<ThreadMeta>, Option<Vec<MessageView>>) {
    (device.meta(thread), device.messages(thread))
}

/// The device whose view of a thread is the reference: the first that may read it.
fn first_reader<'a>(net: &'a Network, log: &LogId) -> &'a Device {
    net.devices()
        .find(|d| d.may_read(category_of(log)))
        .expect("every category has a reader")
}

/// Checks that `twin` (fed in some random order) ended where `reference` (fed in
/// creation order) did: the same envelopes, roster and grants everywhere, nothing held
/// back, and every thread readable by exactly the devices the policy allows, all showing
/// the same header and messages, including every message posted.
fn assert_converged(
    clinic: &Clinic,
    twin: &mut Network,
    posted: &BTreeMap<ThreadId, BTreeSet<String>>,
) -> Result<(), TestCaseError> {
    let (reference, threads) = (&clinic.net, &clinic.threads);
    let all = ids(reference.authored());
    let roster = reference.device(ADMIN).replica.roster().clone();
    for d in twin.devices() {
        let name = &d.name;
        prop_assert_eq!(
            d.replica.pending_count(),
            0,
            "`{}` holds envelopes back",
            name
        );
        prop_assert!(
            d.store.ids() == all,
            "`{}` accepted another envelope set",
            name
        );
        prop_assert_eq!(
            d.replica.roster(),
            &roster,
            "`{}` folded another roster",
            name
        );
        prop_assert!(d.doc_errors.is_empty(), "`{}`: {:?}", name, d.doc_errors);
        prop_assert_eq!(
            d.replica.missing_grants(),
            vec![],
            "`{}` sees ungranted keys",
            name
        );
    }
    let mut expected_notices: Vec<String> = clinic
        .rejected
        .iter()
        .map(|(id, e)| Notice::RosterRejected(*id, e.clone()).to_string())
        .collect();
    expected_notices.sort();
    for name in twin.names() {
        let notices = twin.device_mut(&name).take_notices();
        let mut notices: Vec<String> = notices.iter().map(Notice::to_string).collect();
        notices.sort();
        prop_assert_eq!(&notices, &expected_notices, "notices of `{}`", name);
    }
    for log in threads {
        let thread = thread_of(log);
        let expected = thread_view(first_reader(reference, log), &thread);
        prop_assert!(
            expected.0.is_some(),
            "reference lacks the header of {:?}",
            thread
        );
        let shown: BTreeSet<String> = expected.1.iter().flatten().map(|m| m.id.clone()).collect();
        prop_assert_eq!(
            &shown,
            &posted[&thread],
            "reference lost messages of {:?}",
            thread
        );
        for name in twin.names() {
            let d = twin.device_mut(&name);
            if d.may_read(category_of(log)) {
                prop_assert!(
                    d.replica.has_key(log),
                    "`{}` lacks the key of {:?}",
                    name,
                    log
                );
                prop_assert_eq!(&thread_view(d, &thread), &expected, "`{}` diverged", name);
                let gaps = d
                    .docs
                    .get_mut(&thread)
                    .is_some_and(|doc| doc.has_missing_deps());
                prop_assert!(!gaps, "`{}` waits for changes of {:?}", name, log);
            } else {
                prop_assert!(
                    !d.replica.has_key(log),
                    "`{}` holds the key of {:?}",
                    name,
                    log
                );
                prop_assert!(
                    d.doc(&thread).is_none(),
                    "`{}` materialized {:?}",
                    name,
                    log
                );
                prop_assert_eq!(d.changes_seen.get(&thread), None);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. Convergence
// ---------------------------------------------------------------------------------------

/// One step of clinic activity; indexes pick the thread, the writing device among that
/// thread's readers, and the message among the writer's tasks.
#[derive(Clone, Debug)]
enum Action {
    Post {
        thread: Index,
        writer: Index,
        urgent: bool,
        task: bool,
    },
    CompleteTask {
        thread: Index,
        writer: Index,
        message: Index,
    },
    MarkRead {
        thread: Index,
        writer: Index,
    },
    /// Every device catches up on everything authored so far.
    Gossip,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), any::<bool>(), any::<bool>()).prop_map(
            |(thread, writer, urgent, task)| Action::Post { thread, writer, urgent, task }
        ),
        2 => (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(
            |(thread, writer, message)| Action::CompleteTask { thread, writer, message }
        ),
        2 => (any::<Index>(), any::<Index>())
            .prop_map(|(thread, writer)| Action::MarkRead { thread, writer }),
        1 => Just(Action::Gossip),
    ]
}

/// Plays `actions` on a clinic (devices act on what they have seen so far, so edits are
/// concurrent between gossips), then syncs everyone. Returns the ids posted per thread.
fn play(c: &mut Clinic, actions: &[Action]) -> BTreeMap<ThreadId, BTreeSet<String>> {
    let mut posted: BTreeMap<ThreadId, BTreeSet<String>> = c
        .threads
        .iter()
        .map(|l| (thread_of(l), BTreeSet::new()))
        .collect();
    let assignees = [c.lee, c.sam, c.bo];
    for (n, action) in actions.iter().enumerate() {
        let (thread, writer) = match action {
            Action::Gossip => {
                c.net.sync_all();
                continue;
            }
            Action::Post { thread, writer, .. }
            | Action::CompleteTask { thread, writer, .. }
            | Action::MarkRead { thread, writer } => (thread, writer),
        };
        let log = *thread.get(&c.threads);
        let writer = writer.get(&writers_of(&c.net, &log)).clone();
        match action {
            Action::Post { urgent, task, .. } => {
                let body = format!("note {n} from {writer}");
                let task_for = task.then_some(assignees[n % assignees.len()]);
                let id = c.net.post(&writer, log, &body, *urgent, task_for);
                posted.entry(thread_of(&log)).or_default().insert(id);
            }
            Action::CompleteTask { message, .. } => {
                let messages = c.net.device(&writer).messages(&thread_of(&log));
                let tasks: Vec<String> = messages
                    .into_iter()
                    .flatten()
                    .filter(|m| m.task.is_some())
                    .map(|m| m.id)
                    .collect();
                if !tasks.is_empty() {
                    let done =
                        c.net
                            .complete_task(&writer, log, &tasks[message.index(tasks.len())]);
                    assert!(done, "a listed task can be completed");
                }
            }
            Action::MarkRead { .. } => {
                c.net.mark_read(&writer, log);
            }
            Action::Gossip => unreachable!("handled above"),
        }
    }
    c.net.sync_all();
    posted
}

proptest! {
    #![proptest_config(config(24))]

    /// Every device, fed every envelope in its own random order with random duplicates,
    /// ends exactly where in-order delivery ends.
    #[test]
    fn shuffled_duplicated_delivery_converges(
        seed in any::<u64>(),
        devices in 4usize..=6,
        actions in prop::collection::vec(action(), 6..20),
        orders in prop::collection::vec(prop::collection::vec(any::<Index>(), 48), 6),
        dups in prop::collection::vec((any::<Index>(), any::<Index>()), 0..24),
    ) {
        let mut c = clinic(seed, devices);
        let posted = play(&mut c, &actions);
        let all = c.net.authored().to_vec();
        let mut twin = c.net.blank_twin();
        for (d, name) in twin.names().iter().enumerate() {
            let schedule = with_duplicates(shuffled(&all, &orders[d]), &all, &dups);
            deliver_all(&mut twin, name, schedule)?;
        }
        assert_converged(&c, &mut twin, &posted)?;
    }

    /// Some deliveries are lost at first and resent later in another random order; the
    /// end state is the same as if nothing had been lost.
    #[test]
    fn dropped_then_resent_delivery_converges(
        seed in any::<u64>(),
        devices in 4usize..=6,
        actions in prop::collection::vec(action(), 6..20),
        first in prop::collection::vec(prop::collection::vec(any::<Index>(), 48), 6),
        lost in prop::collection::vec(prop::bool::weighted(0.3), 48),
        second in prop::collection::vec(prop::collection::vec(any::<Index>(), 48), 6),
    ) {
        let mut c = clinic(seed, devices);
        let posted = play(&mut c, &actions);
        let all = c.net.authored().to_vec();
        let mut twin = c.net.blank_twin();
        for (d, name) in twin.names().iter().enumerate() {
            let (arrived, dropped) = split_lost(shuffled(&all, &first[d]), &lost, d);
            deliver_all(&mut twin, name, arrived)?;
            prop_assert!(twin.device(name).doc_errors.is_empty());
            deliver_all(&mut twin, name, shuffled(&dropped, &second[d]))?;
        }
        assert_converged(&c, &mut twin, &posted)?;
    }

    /// Restarting devices at random moments of a random-order delivery (the replica is
    /// rebuilt from what the device persisted) changes nothing about where they end.
    #[test]
    fn restarts_during_delivery_change_nothing(
        seed in any::<u64>(),
        two_admins in any::<bool>(),
        actions in prop::collection::vec(action(), 4..12),
        orders in prop::collection::vec(prop::collection::vec(any::<Index>(), 48), 6),
        restarts in prop::collection::vec(any::<Index>(), 1..4),
    ) {
        let mut c = if two_admins { clinic_with_two_admins(seed) } else { clinic(seed, 5) };
        let posted = play(&mut c, &actions);
        let all = c.net.authored().to_vec();
        let mut twin = c.net.blank_twin();
        for (d, name) in twin.names().iter().enumerate() {
            let schedule = shuffled(&all, &orders[d]);
            let restart_at: BTreeSet<usize> =
                restarts.iter().map(|i| i.index(schedule.len() + 1)).collect();
            for (i, env) in schedule.into_iter().enumerate() {
                if restart_at.contains(&i) {
                    twin.restart(name);
                }
                deliver_all(&mut twin, name, vec![env])?;
            }
            if restart_at.contains(&all.len()) {
                twin.restart(name);
            }
        }
        assert_converged(&c, &mut twin, &posted)?;
    }

    /// Concurrent roster edits by two admins (one of them conflicting) fold to the same
    /// roster on every device, whatever the delivery order, and every device reports the
    /// losing operation exactly once.
    #[test]
    fn concurrent_admins_converge_in_any_order(
        seed in any::<u64>(),
        actions in prop::collection::vec(action(), 4..12),
        orders in prop::collection::vec(prop::collection::vec(any::<Index>(), 48), 6),
        dups in prop::collection::vec((any::<Index>(), any::<Index>()), 0..12),
    ) {
        let mut c = clinic_with_two_admins(seed);
        let posted = play(&mut c, &actions);
        let all = c.net.authored().to_vec();
        let mut twin = c.net.blank_twin();
        for (d, name) in twin.names().iter().enumerate() {
            let schedule = with_duplicates(shuffled(&all, &orders[d]), &all, &dups);
            deliver_all(&mut twin, name, schedule)?;
        }
        assert_converged(&c, &mut twin, &posted)?;
    }
}

// ---------------------------------------------------------------------------------------
// 2. Blind store-and-forward
// ---------------------------------------------------------------------------------------

const KIM: &str = "kim-laptop";

proptest! {
    #![proptest_config(config(8))]

    /// The front desk accepts and stores a clinical thread without ever holding its key;
    /// a clinician who never talked to the thread's author reads it from the front
    /// desk's store alone, delivered as wire bytes in any order.
    #[test]
    fn front_desk_forwards_clinical_threads_it_cannot_read(
        order in prop::collection::vec(any::<Index>(), 64),
    ) {
        let mut net = Network::new(11, ADMIN);
        net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
        let lee = net.add_member(ADMIN, "Lee", Role::Clinician, false);
        let sam = net.add_member(ADMIN, "Sam", Role::Scheduler, false);
        let kim = net.add_member(ADMIN, "Kim", Role::Clinician, false);
        net.add_device(ADMIN, lee, LEE);
        net.add_device(ADMIN, sam, FRONT);
        net.add_device(ADMIN, kim, KIM);
        net.regrant(ADMIN);
        for name in [ADMIN, LEE, FRONT] {
            net.sync(name); // Kim's laptop stays offline.
        }
        let log = net.create_thread(LEE, Category::Clinical, "Sara M. - session notes");
        let secret_text = "Sara M. reports improved sleep since the dose change";
        let task = net.post(LEE, log, secret_text, true, Some(kim));
        net.post(LEE, log, "Evaluation uploaded", false, None);
        prop_assert!(net.complete_task(LEE, log, &task));
        let thread = thread_of(&log);

        // The thread's envelopes and the clinical key's grants.
        let carried: Vec<Envelope> = net
            .authored()
            .iter()
            .filter(|e| e.header.log == log || e.header.log == LogId::Keys(Category::Clinical))
            .cloned()
            .collect();
        prop_assert!(carried.len() >= 5);
        for env in carried {
            let d = net.deliver(FRONT, env);
            prop_assert_eq!(d.result, Ok(Status::Accepted));
            let unlocked = d.effects.iter().any(|e| {
                matches!(
                    e,
                    Effect::ThreadChange { .. } | Effect::ThreadUnlocked { .. } | Effect::Key { .. }
                )
            });
            prop_assert!(!unlocked, "the front desk learned something: {:?}", d.effects);
        }
        let front = net.device(FRONT);
        prop_assert!(!front.replica.has_key(&log));
        prop_assert_eq!(front.replica.thread_log(&thread), Some(log));
        prop_assert!(front.doc(&thread).is_none());
        prop_assert!(front.changes_seen.is_empty());
        let export: Vec<Vec<u8>> = front.store.in_accept_order().map(Envelope::encode).collect();
        for bytes in &export {
            let leaked = bytes.windows(secret_text.len()).any(|w| w == secret_text.as_bytes());
            prop_assert!(!leaked, "plaintext in a stored envelope");
        }

        prop_assert_eq!(net.device(KIM).store.len(), 0);
        for bytes in shuffled(&export, &order) {
            let d = net.deliver_bytes(KIM, &bytes).expect("stored envelopes decode");
            prop_assert!(d.result.is_ok(), "{:?}", d.result);
        }
        let kim_device = net.device(KIM);
        prop_assert_eq!(kim_device.replica.pending_count(), 0);
        prop_assert!(kim_device.replica.has_key(&log));
        prop_assert!(kim_device.messages(&thread).is_some());
        prop_assert_eq!(kim_device.messages(&thread), net.device(LEE).messages(&thread));
        prop_assert_eq!(kim_device.meta(&thread), net.device(LEE).meta(&thread));
        prop_assert!(kim_device.store.ids().is_subset(&net.device(FRONT).store.ids()));
    }
}

// ---------------------------------------------------------------------------------------
// 3. Tampering, forks, replays, other clinics
// ---------------------------------------------------------------------------------------

/// A small clinic in sync: admin and Lee (clinicians), the front desk; a clinical and a
/// scheduling thread with a few posts.
fn small_clinic(seed: u64) -> (Network, Vec<LogId>) {
    let mut net = Network::new(seed, ADMIN);
    net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let lee = net.add_member(ADMIN, "Lee", Role::Clinician, false);
    let sam = net.add_member(ADMIN, "Sam", Role::Scheduler, false);
    net.add_device(ADMIN, lee, LEE);
    net.add_device(ADMIN, sam, FRONT);
    net.regrant(ADMIN);
    net.sync_all();
    let clinical = net.create_thread(ADMIN, Category::Clinical, "Sara M.");
    let scheduling = net.create_thread(FRONT, Category::Scheduling, "Coverage");
    net.sync_all();
    net.post(LEE, clinical, "referral received", false, Some(lee));
    net.post(FRONT, scheduling, "who covers 3pm?", true, Some(sam));
    net.post(ADMIN, clinical, "follow up by end of today", true, None);
    net.sync_all();
    (net, vec![clinical, scheduling])
}

/// Everything observable about a device's state.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    heads: Vec<(LogId, DeviceId, u64, EnvelopeId)>,
    pending: usize,
    roster: Roster,
    roster_heads: Vec<EnvelopeId>,
    roster_waiting: usize,
    keys: Vec<(LogId, bool)>,
    missing_grants: Vec<(KeySlot, Vec<DevicePublic>)>,
    stored: BTreeSet<EnvelopeId>,
    docs: Vec<(ThreadId, Option<Vec<MessageView>>)>,
}

fn fingerprint(d: &Device, logs: &[LogId]) -> Fingerprint {
    let mut heads: Vec<_> = d
        .replica
        .heads()
        .iter()
        .map(|((log, author), h)| (*log, *author, h.seq, h.id))
        .collect();
    heads.sort();
    let mut logs = logs.to_vec();
    logs.push(LogId::Roster);
    Fingerprint {
        heads,
        pending: d.replica.pending_count(),
        roster: d.replica.roster().clone(),
        roster_heads: d.replica.roster_heads().to_vec(),
        roster_waiting: d.replica.roster_waiting(),
        keys: logs.iter().map(|l| (*l, d.replica.has_key(l))).collect(),
        missing_grants: d.replica.missing_grants(),
        stored: d.store.ids(),
        docs: d.docs.keys().map(|t| (*t, d.messages(t))).collect(),
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Flipping any bit of an encoded envelope is caught (by the decoder, the clinic
    /// check or the signature) and leaves the receiver exactly as it was, whether or not
    /// it already held the original; the original is still accepted afterwards.
    #[test]
    fn flipped_bits_are_refused_without_side_effects(
        target in any::<Index>(),
        pos in any::<Index>(),
        bit in 0u8..8,
        already_held in any::<bool>(),
        receiver in prop::sample::select(vec![LEE, FRONT]),
    ) {
        let (net, logs) = small_clinic(3);
        let all = net.authored();
        let t = target.index(all.len());
        let mut twin = net.blank_twin();
        let held = if already_held { all } else { &all[..t] };
        for env in held {
            prop_assert_eq!(twin.deliver(receiver, env.clone()).result, Ok(Status::Accepted));
        }
        twin.device_mut(receiver).take_notices();
        let before = fingerprint(twin.device(receiver), &logs);

        let mut bytes = all[t].encode();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(decoded) = Envelope::decode(&bytes)
            && decoded != all[t]
        {
            let d = twin.deliver(receiver, decoded);
            let caught = matches!(
                d.result,
                Err(IngestError::BadSignature
                    | IngestError::BrokenChain
                    | IngestError::WrongClinic
                    | IngestError::MalformedLog
                    | IngestError::WrongBody(_)
                    | IngestError::NotAllowed { .. })
            );
            prop_assert!(caught, "byte {} bit {} of envelope {}: {:?}", i, bit, t, d.result);
            prop_assert!(d.effects.is_empty(), "{:?}", d.effects);
        }
        prop_assert_eq!(&fingerprint(twin.device(receiver), &logs), &before);
        prop_assert_eq!(twin.device_mut(receiver).take_notices(), vec![]);

        let expected = if already_held { Status::Duplicate } else { Status::Accepted };
        prop_assert_eq!(twin.deliver(receiver, all[t].clone()).result, Ok(expected));
    }
}

#[test]
fn envelopes_of_another_clinic_are_refused() {
    let (mut net, logs) = small_clinic(3);
    let (other, _) = small_clinic(4);
    assert_ne!(net.genesis.clinic_id(), other.genesis.clinic_id());
    let before = fingerprint(net.device(LEE), &logs);
    for env in other.authored() {
        let d = net.deliver(LEE, env.clone());
        assert_eq!(d.result, Err(IngestError::WrongClinic));
        assert!(d.effects.is_empty());
    }
    assert_eq!(fingerprint(net.device(LEE), &logs), before);
}

#[test]
fn a_second_envelope_at_the_same_chain_position_is_equivocation() {
    let (mut net, logs) = small_clinic(5);
    let clinical = logs[0];
    let lee_public = net.device(LEE).public();
    // Two different grant envelopes by the admin at the same (log, author, seq).
    let slot = net
        .device(ADMIN)
        .replica
        .writing_slot(&clinical)
        .expect("admin holds the clinical key");
    let key = net.device(ADMIN).replica.key(&slot).expect("held").clone();
    let a = net.forge_grants(ADMIN, slot, &key, &[lee_public]);
    let mut b = net.forge_grants(ADMIN, slot, &key, &[lee_public]);
    b.header.at_ms = a.header.at_ms;
    let b = net.craft(ADMIN, |_, s, _| {
        Envelope::sign(s, b.header.clone(), b.body.clone())
    });
    assert_eq!(a.header, b.header);
    assert_ne!(a.id(), b.id());
    let forked = Err(IngestError::Equivocation {
        author: net.device(ADMIN).id(),
        seq: a.header.seq,
    });

    // A device that took one fork refuses the other, in either order, unchanged.
    net.commit(ADMIN, a.clone());
    assert_eq!(net.deliver(ADMIN, b.clone()).result, forked);
    assert_eq!(net.deliver(LEE, b.clone()).result, Ok(Status::Accepted));
    let before = fingerprint(net.device(LEE), &logs);
    let d = net.deliver(LEE, a.clone());
    assert_eq!(d.result, forked);
    assert!(d.effects.is_empty());
    assert_eq!(fingerprint(net.device(LEE), &logs), before);

    // A device that holds both forks back (their predecessor is missing) keeps exactly
    // one once the predecessor arrives, and reports the other.
    let mut twin = net.blank_twin();
    let predecessor = a.header.prev.expect("the admin wrote to this log before");
    let held: Vec<Envelope> = net
        .authored()
        .iter()
        .filter(|e| e.id() != predecessor && e.id() != a.id())
        .cloned()
        .collect();
    for env in held {
        assert!(twin.deliver(FRONT, env).result.is_ok());
    }
    twin.device_mut(FRONT).take_notices();
    for fork in [&a, &b] {
        let result = twin.deliver(FRONT, fork.clone()).result;
        assert_eq!(result, Ok(Status::WaitingForPredecessor));
    }
    let pred = net
        .authored()
        .iter()
        .find(|e| e.id() == predecessor)
        .expect("authored")
        .clone();
    assert_eq!(twin.deliver(FRONT, pred).result, Ok(Status::Accepted));
    let front = twin.device_mut(FRONT);
    assert_eq!(front.replica.pending_count(), 0);
    assert_eq!(
        [a.id(), b.id()]
            .iter()
            .filter(|id| front.store.contains(id))
            .count(),
        1
    );
    let refused = if front.store.contains(&a.id()) {
        b.id()
    } else {
        a.id()
    };
    let notices = front.take_notices();
    assert!(
        notices.iter().any(|n| matches!(
            n,
            Notice::Refused(id, IngestError::Equivocation { .. }) if *id == refused
        )),
        "{notices:?}"
    );
}

#[test]
fn redelivered_envelopes_are_duplicates_without_effects() {
    let (mut net, logs) = small_clinic(6);
    for name in net.names() {
        let before = fingerprint(net.device(&name), &logs);
        for env in net.authored().to_vec() {
            let d = net.deliver(&name, env);
            assert_eq!(d.result, Ok(Status::Duplicate), "on `{name}`");
            assert!(d.effects.is_empty(), "on `{name}`: {:?}", d.effects);
        }
        assert_eq!(fingerprint(net.device(&name), &logs), before, "on `{name}`");
        assert_eq!(net.device_mut(&name).take_notices(), vec![]);
    }
}

// ---------------------------------------------------------------------------------------
// 4. Roster rules
// ---------------------------------------------------------------------------------------

/// Encrypts `op` as a roster operation of device `name`, bypassing the replica's own
/// admin check, and commits it on that device.
fn forge_roster_op(net: &mut Network, name: &str, op: Op) -> Envelope {
    let at_ms = net.tick();
    let plain = postcard::to_stdvec(&RosterOp {
        deps: net.device(name).replica.roster_heads().to_vec(),
        at_ms,
        op,
    })
    .expect("serialize");
    let env = net.forge_sealed(name, LogId::Roster, None, &plain);
    net.commit(name, env)
}

#[test]
fn roster_operations_by_a_non_admin_have_no_effect_anywhere() {
    let mut c = clinic(21, 4);
    let net = &mut c.net;
    let dana = net.device(ADMIN).member().expect("admin is a member").id;
    let stranger = DeviceSecret::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(99));
    let mut lax = Policy::default();
    lax.reads
        .entry(Role::Billing)
        .or_default()
        .insert(Category::Clinical);
    let attempts = [
        Op::AddMember {
            member: MemberId([7; 16]),
            name: "Mallory".into(),
            role: Role::Clinician,
            admin: true,
        },
        Op::AddDevice {
            member: c.bo,
            device: stranger.public(),
        },
        Op::ChangeRole {
            member: c.bo,
            role: Role::Clinician,
            admin: true,
            cutoffs: vec![],
        },
        Op::RemoveMember {
            member: dana,
            cutoffs: vec![],
        },
        Op::RevokeDevice {
            device: net.device(ADMIN).id(),
            cutoffs: vec![],
        },
        Op::SetPolicy {
            policy: lax,
            cutoffs: vec![],
        },
    ];
    for name in net.names() {
        net.device_mut(&name).take_notices();
    }
    let roster = net.device(ADMIN).replica.roster().clone();
    for op in attempts {
        let refused = net.try_roster_op(BILLING, op.clone()).err();
        assert_eq!(refused, Some(AuthorError::Roster(RosterError::NotAdmin)));
        let forged = forge_roster_op(net, BILLING, op);
        net.sync_all();
        for name in net.names() {
            let d = net.device_mut(&name);
            assert!(
                d.store.contains(&forged.id()),
                "`{name}` stores the envelope"
            );
            assert_eq!(
                d.replica.roster(),
                &roster,
                "`{name}` applied a non-admin op"
            );
            assert_eq!(
                d.take_notices(),
                vec![Notice::RosterRejected(forged.id(), RosterError::NotAdmin)],
                "on `{name}`"
            );
        }
    }
    // Nobody became a reader of anything: no key is owed to anyone.
    assert_eq!(net.device(ADMIN).replica.missing_grants(), vec![]);
    assert_eq!(net.device(BILLING).replica.missing_grants(), vec![]);
    // The rejected operations do not block later admin operations.
    let kim = net.add_member(ADMIN, "Kim", Role::Clinician, false);
    net.sync_all();
    for d in net.devices() {
        assert!(
            d.replica.roster().members.contains_key(&kim),
            "on `{}`",
            d.name
        );
        assert_eq!(d.replica.roster().members.len(), roster.members.len() + 1);
    }
}

/// A roster operation to generate: who authors it and what it does, over a small cast
/// of members and devices so that operations collide.
#[derive(Clone, Debug)]
struct OpSpec {
    author: usize,
    op: OpKind,
    deps: Vec<Index>,
    dangling_dep: bool,
}

#[derive(Clone, Debug)]
enum OpKind {
    AddMember {
        member: usize,
        name: usize,
        role: Role,
        admin: bool,
    },
    AddDevice {
        member: usize,
        device: usize,
    },
    ChangeRole {
        member: usize,
        role: Role,
        admin: bool,
    },
    RemoveMember {
        member: usize,
    },
    RevokeDevice {
        device: usize,
    },
    SetPolicy {
        scheduler_reads_clinical: bool,
    },
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn op_spec() -> impl Strategy<Value = OpSpec> {
    let kind = prop_oneof![
        (0..4usize, 0..3usize, role(), any::<bool>()).prop_map(|(member, name, role, admin)| {
            OpKind::AddMember {
                member,
                name,
                role,
                admin,
            }
        }),
        // Any device but the stranger (3), who stays unenrolled.
        (0..4usize, prop::sample::select(vec![0usize, 1, 2, 4]))
            .prop_map(|(member, device)| OpKind::AddDevice { member, device }),
        (0..4usize, role(), any::<bool>()).prop_map(|(member, role, admin)| OpKind::ChangeRole {
            member,
            role,
            admin
        }),
        (0..4usize).prop_map(|member| OpKind::RemoveMember { member }),
        (0..5usize).prop_map(|device| OpKind::RevokeDevice { device }),
        any::<bool>().prop_map(|s| OpKind::SetPolicy {
            scheduler_reads_clinical: s
        }),
    ];
    (
        0..4usize,
        kind,
        prop::collection::vec(any::<Index>(), 1..3),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(author, op, deps, dangling_dep)| OpSpec {
            author,
            op,
            deps,
            dangling_dep,
        })
}

/// A fabricated envelope id for the `n`th operation.
fn op_id(n: usize) -> EnvelopeId {
    EnvelopeId(Sha256::digest(n.to_le_bytes()).into())
}

/// The cast of the fold test: devices 0 founder, 1 second admin, 2 plain member,
/// 3 never enrolled, 4 spare; members 0 founder, 1 second admin, 2 plain, 3 not added.
struct Cast {
    genesis: SignedGenesis,
    devices: Vec<DevicePublic>,
    members: Vec<MemberId>,
}

fn cast() -> Cast {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(42);
    let secrets: Vec<DeviceSecret> = (0..5).map(|_| DeviceSecret::generate(&mut rng)).collect();
    Cast {
        genesis: SignedGenesis::new(&secrets[0], 1, [3; 16]),
        devices: secrets.iter().map(DeviceSecret::public).collect(),
        members: (0..4u8).map(|i| MemberId([i + 1; 16])).collect(),
    }
}

/// A founder-built base (Init, a second admin with a device, a plain member with a
/// device) followed by the generated operations, each depending on earlier ones.
fn op_records(cast: &Cast, specs: &[OpSpec]) -> Vec<OpRecord> {
    let (d, m) = (&cast.devices, &cast.members);
    let founder = d[0].id;
    let base = [
        Op::Init {
            clinic_name: "Maple".into(),
            member: m[0],
            name: "Dana".into(),
            role: Role::Clinician,
        },
        Op::AddMember {
            member: m[1],
            name: "Ari".into(),
            role: Role::Clinician,
            admin: true,
        },
        Op::AddDevice {
            member: m[1],
            device: d[1],
        },
        Op::AddMember {
            member: m[2],
            name: "Sam".into(),
            role: Role::Scheduler,
            admin: false,
        },
        Op::AddDevice {
            member: m[2],
            device: d[2],
        },
    ];
    let mut records: Vec<OpRecord> = Vec::new();
    for (n, op) in base.into_iter().enumerate() {
        let deps = if n == 0 { vec![] } else { vec![op_id(n - 1)] };
        records.push(OpRecord {
            id: op_id(n),
            author: founder,
            seq: n as u64,
            op: RosterOp {
                deps,
                at_ms: n as u64,
                op,
            },
        });
    }
    let names = ["Dana", "Ari", "Kim"];
    for spec in specs {
        let n = records.len();
        let op = match spec.op {
            OpKind::AddMember {
                member,
                name,
                role,
                admin,
            } => Op::AddMember {
                member: m[member],
                name: names[name].into(),
                role,
                admin,
            },
            OpKind::AddDevice { member, device } => Op::AddDevice {
                member: m[member],
                device: d[device],
            },
            OpKind::ChangeRole {
                member,
                role,
                admin,
            } => Op::ChangeRole {
                member: m[member],
                role,
                admin,
                cutoffs: vec![],
            },
            OpKind::RemoveMember { member } => Op::RemoveMember {
                member: m[member],
                cutoffs: vec![],
            },
            OpKind::RevokeDevice { device } => Op::RevokeDevice {
                device: d[device].id,
                cutoffs: vec![],
            },
            OpKind::SetPolicy {
                scheduler_reads_clinical,
            } => {
                let mut policy = Policy::default();
                if scheduler_reads_clinical {
                    policy
                        .reads
                        .entry(Role::Scheduler)
                        .or_default()
                        .insert(Category::Clinical);
                }
                Op::SetPolicy {
                    policy,
                    cutoffs: vec![],
                }
            }
        };
        let mut deps: Vec<EnvelopeId> = spec.deps.iter().map(|i| records[i.index(n)].id).collect();
        if spec.dangling_dep {
            deps.push(op_id(10_000 + n));
        }
        let author = d[spec.author].id;
        // An author's chain position: how many operations it wrote before.
        let seq = records.iter().filter(|r| r.author == author).count() as u64;
        records.push(OpRecord {
            id: op_id(n),
            author,
            seq,
            op: RosterOp {
                deps,
                at_ms: n as u64,
                op,
            },
        });
    }
    records
}

fn same_fold(a: &Folded, b: &Folded) -> bool {
    a.roster == b.roster && a.rejected == b.rejected && a.waiting == b.waiting && a.heads == b.heads
}

proptest! {
    #![proptest_config(config(64))]

    /// Folding the same operations in any order, with duplicates, gives the same roster,
    /// the same rejections, the same waiting set and the same heads; an unenrolled
    /// device's operations are always rejected.
    #[test]
    fn roster_fold_ignores_arrival_order(
        specs in prop::collection::vec(op_spec(), 0..14),
        order in prop::collection::vec(any::<Index>(), 24),
        dups in prop::collection::vec((any::<Index>(), any::<Index>()), 0..6),
    ) {
        let cast = cast();
        let records = op_records(&cast, &specs);
        let in_order = roster::fold(&cast.genesis.genesis, &records);
        let reordered = with_duplicates(shuffled(&records, &order), &records, &dups);
        let shuffled_fold = roster::fold(&cast.genesis.genesis, &reordered);
        prop_assert!(
            same_fold(&in_order, &shuffled_fold),
            "{:#?}\nvs\n{:#?}", in_order, shuffled_fold
        );
        let mut backwards = records.clone();
        backwards.reverse();
        prop_assert!(same_fold(&in_order, &roster::fold(&cast.genesis.genesis, &backwards)));

        let stranger = cast.devices[3].id;
        let rejected: BTreeSet<EnvelopeId> = in_order.rejected.iter().map(|(id, _)| *id).collect();
        let waiting: BTreeSet<EnvelopeId> = in_order.waiting.iter().copied().collect();
        // A stranger's admin operations are inert (left out of the fold); anything else
        // it wrote is rejected.
        prop_assert!(!in_order.potential_admins.contains(&stranger));
        for r in records.iter().filter(|r| r.author == stranger && !waiting.contains(&r.id)) {
            let inert = roster::candidates_inert(r, &in_order.potential_admins);
            prop_assert!(inert || rejected.contains(&r.id), "a stranger's op was applied");
        }
        // The founder-built base is never undone by ordering.
        prop_assert_eq!(in_order.roster.clinic_name.as_deref(), Some("Maple"));
    }
}

// ---------------------------------------------------------------------------------------
// 5. A device enrolled late
// ---------------------------------------------------------------------------------------

const LATE: &str = "late-laptop";

/// The devices that authored grant envelopes sealing some key to `recipient`.
fn granters_to(net: &Network, recipient: &str, key_log: LogId) -> BTreeSet<String> {
    let to = net.device(recipient).id();
    net.authored()
        .iter()
        .filter(|e| e.header.log == key_log)
        .filter(|e| matches!(&e.body, Body::Grants(g) if g.iter().any(|g| g.recipient == to)))
        .map(|e| {
            let author = net.devices().find(|d| d.id() == e.header.author);
            author.expect("authored in this network").name.clone()
        })
        .collect()
}

/// `n` posts spread over every thread and its readers, every other one a task, with
/// some tasks completed and threads marked read along the way; all devices in sync.
fn busy_history(c: &mut Clinic, n: usize) -> BTreeMap<ThreadId, BTreeSet<String>> {
    let mut posted: BTreeMap<ThreadId, BTreeSet<String>> = BTreeMap::new();
    for i in 0..n {
        let log = c.threads[i % c.threads.len()];
        let writers = writers_of(&c.net, &log);
        let writer = writers[i / c.threads.len() % writers.len()].clone();
        let task_for = (i % 2 == 0).then_some(c.sam);
        let id = c
            .net
            .post(&writer, log, &format!("history {i}"), i % 5 == 0, task_for);
        posted
            .entry(thread_of(&log))
            .or_default()
            .insert(id.clone());
        if i % 6 == 0 {
            assert!(c.net.complete_task(&writer, log, &id));
        }
        if i % 7 == 3 {
            c.net.mark_read(&writer, log);
        }
        c.net.sync_all();
    }
    posted
}

proptest! {
    #![proptest_config(config(8))]

    /// A device added after much history gets its keys from devices that hold them
    /// (the admin has no billing key, so the billing device must grant that one) and
    /// then reads the full history of every thread its role allows, and nothing else.
    #[test]
    fn late_device_reads_the_history_its_role_allows(
        member in 0usize..3,
        order in prop::collection::vec(any::<Index>(), 64),
    ) {
        let mut c = clinic(31, 4);
        let posted = busy_history(&mut c, 24);
        let member = [c.lee, c.sam, c.bo][member];
        let old = c.net.names();
        c.net.add_device(ADMIN, member, LATE);
        for name in &old {
            c.net.sync(name);
        }
        // Every old device grants what it holds and the late device lacks.
        for name in &old {
            c.net.regrant(name);
            for other in &old {
                c.net.sync(other);
            }
        }
        for name in &old {
            prop_assert_eq!(c.net.device(name).replica.missing_grants(), vec![]);
        }
        // The admin (a clinician) has no billing key: Bo's device must have sealed it.
        // Every holder grants what it holds as soon as it learns of the new device.
        prop_assert!(granters_to(&c.net, LATE, LogId::Roster).contains(ADMIN));
        let billing = granters_to(&c.net, LATE, LogId::Keys(Category::Billing));
        if member == c.bo {
            prop_assert_eq!(billing, BTreeSet::from([BILLING.to_string()]));
        } else {
            prop_assert!(billing.is_empty(), "{:?}", billing);
        }

        let all = c.net.authored().to_vec();
        deliver_all(&mut c.net, LATE, shuffled(&all, &order))?;
        let late = c.net.device(LATE);
        prop_assert_eq!(late.replica.pending_count(), 0);
        prop_assert!(late.replica.enrolled());
        prop_assert!(late.replica.has_key(&LogId::Roster));
        // It holds everything, plus the grants it authored itself on the way.
        prop_assert!(ids(&all).is_subset(&late.store.ids()));
        for log in &c.threads {
            let thread = thread_of(log);
            if late.may_read(category_of(log)) {
                prop_assert!(late.replica.has_key(log), "no key for {:?}", log);
                let reference = thread_view(first_reader(&c.net, log), &thread);
                prop_assert_eq!(thread_view(late, &thread), reference);
                let shown: BTreeSet<String> =
                    late.messages(&thread).into_iter().flatten().map(|m| m.id).collect();
                prop_assert_eq!(&shown, &posted[&thread]);
            } else {
                prop_assert!(!late.replica.has_key(log), "key for {:?}", log);
                prop_assert!(late.doc(&thread).is_none());
                prop_assert!(!late.changes_seen.contains_key(&thread));
            }
        }

        // And it takes part: what it posts reaches every reader.
        let readable = *c.threads.iter().find(|l| late.may_read(category_of(l))).expect("some");
        let id = c.net.post(LATE, readable, "hello from the new laptop", false, None);
        c.net.sync_all();
        for d in c.net.devices().filter(|d| d.may_read(category_of(&readable))) {
            let shown = d.messages(&thread_of(&readable)).unwrap_or_default();
            prop_assert!(shown.iter().any(|m| m.id == id), "`{}` misses the post", d.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Regressions: bugs the simulation found in the core (fixed)
// ---------------------------------------------------------------------------------------

/// A clinic where the founder makes Ari a second admin, and Ari's laptop enrolls Kim's
/// device and grants it the keys Ari holds; nothing has been delivered to Kim yet.
fn enrolled_by_second_admin(seed: u64) -> Network {
    let mut net = Network::new(seed, ADMIN);
    net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let ari = net.add_member(ADMIN, "Ari", Role::Clinician, true);
    net.add_device(ADMIN, ari, "ari-laptop");
    net.regrant(ADMIN);
    net.sync("ari-laptop");
    let kim = net.add_member("ari-laptop", "Kim", Role::Clinician, false);
    net.add_device("ari-laptop", kim, KIM);
    net.regrant("ari-laptop");
    net
}

/// A device enrolled by an admin other than the founder receives the roster key from
/// that admin. Delivered in creation order, that admin's envelopes are held back (the
/// device cannot read the roster yet, so it does not know the admin), and the grant that
/// finally unlocks the roster is itself held: nothing drains the held envelopes, so the
/// device stays stuck even though it holds every envelope of the clinic.
#[test]
fn device_enrolled_by_a_second_admin_is_not_left_waiting() {
    let mut net = enrolled_by_second_admin(8);
    // Everything, in creation order; then everything again, as a later full sync would.
    for _ in 0..2 {
        for env in net.authored().to_vec() {
            assert!(net.deliver(KIM, env).result.is_ok());
        }
    }
    let device = net.device(KIM);
    assert!(
        device.replica.has_key(&LogId::Roster),
        "the roster key arrived"
    );
    assert_eq!(
        device.replica.pending_count(),
        0,
        "held envelopes were not drained"
    );
    assert!(device.replica.enrolled());
}

/// The same clinic as above, where Ari's roster grant reaches Kim's device before the
/// roster envelope that would confirm it. The replica keeps the key it opened from that
/// held grant only in memory (`roster_key_candidates`); `Replica::restore` cannot get it
/// back and a re-delivered held envelope is never parked again, so after a restart the
/// device never obtains the roster key. Without the restart the same delivery works.
#[test]
fn roster_key_from_a_held_grant_survives_a_restart() {
    for restart in [false, true] {
        let mut net = enrolled_by_second_admin(9);
        let all = net.authored().to_vec();
        let (grant, rest) = all.split_last().expect("Ari's grant is the last envelope");
        let result = net.deliver(KIM, grant.clone()).result;
        assert_eq!(result, Ok(Status::WaitingForPredecessor));
        if restart {
            net.restart(KIM);
        }
        for env in rest {
            assert!(net.deliver(KIM, env.clone()).result.is_ok());
        }
        let device = net.device(KIM);
        assert!(
            device.replica.has_key(&LogId::Roster),
            "no roster key (restart: {restart})"
        );
        assert_eq!(device.replica.pending_count(), 0, "restart: {restart}");
        assert!(device.replica.enrolled(), "restart: {restart}");
    }
}

// ---------------------------------------------------------------------------------------
// 6. Rotation
// ---------------------------------------------------------------------------------------

/// A revocation reaches two clinicians while they are apart: each mints the next
/// clinical key on its own. Once they meet, both hold both keys and write with the same
/// one, and the revoked tablet holds neither.
#[test]
fn concurrent_rotations_converge_on_one_writing_key() {
    let mut c = clinic(41, 5);
    let net = &mut c.net;
    let clinical = c.threads[0];
    let tablet = net.device(LEE_TABLET).id();
    net.roster_op(
        ADMIN,
        Op::RevokeDevice {
            device: tablet,
            cutoffs: vec![],
        },
    );
    // Dana's device (the admin) rotated at once; Lee's laptop learns of the revocation
    // alone, without Dana's new key, and rotates too.
    let dana_slot = net
        .device(ADMIN)
        .replica
        .writing_slot(&clinical)
        .expect("rotated");
    assert_eq!(dana_slot.epoch, 1);
    let to_lee: Vec<Envelope> = net
        .authored()
        .iter()
        .filter(|e| e.header.log == LogId::Roster)
        .cloned()
        .collect();
    for env in to_lee {
        let _ = net.deliver(LEE, env);
    }
    let lee_slot = net
        .device(LEE)
        .replica
        .writing_slot(&clinical)
        .expect("rotated");
    assert_eq!(lee_slot.epoch, 1);
    assert_ne!(lee_slot.key, dana_slot.key, "two keys minted concurrently");

    net.sync_all();
    let expected = dana_slot.key.min(lee_slot.key);
    for name in [ADMIN, LEE] {
        let d = net.device(name);
        let slots: Vec<KeySlot> = d
            .replica
            .key_slots()
            .into_iter()
            .filter(|s| s.log == LogId::Keys(Category::Clinical) && s.epoch == 1)
            .collect();
        assert_eq!(slots.len(), 2, "`{name}` keeps both keys");
        assert_eq!(
            d.replica.writing_slot(&clinical).map(|s| s.key),
            Some(expected)
        );
    }
    let t = net.device(LEE_TABLET);
    assert!(
        t.replica.key_slots().iter().all(|s| s.epoch == 0),
        "the revoked tablet got a new key"
    );
    // A post after the change is read by the clinicians, not by the tablet.
    let id = net.post(LEE, clinical, "after the rotation", false, None);
    net.sync_all();
    let shown = |d: &Device| {
        d.messages(&thread_of(&clinical))
            .into_iter()
            .flatten()
            .any(|m| m.id == id)
    };
    assert!(shown(net.device(ADMIN)));
    assert!(!shown(net.device(LEE_TABLET)));
}
