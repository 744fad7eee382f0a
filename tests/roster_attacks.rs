//! Roster operations written by a modified client of an enrolled member, replayed
//! against every device of a simulated clinic: a restriction takeover by a
//! non-participant racing a restriction with stale dependencies and a ground envelope
//! id, a scheduler restricting a clinical thread under another category, a flood of
//! inert operations, and emergency windows booked ahead (issue 16, findings 1, 4, 5, 7).

mod sim;

use huddle::core::envelope::Envelope;
use huddle::core::ids::{EnvelopeId, LogId, MemberId, ThreadId};
use huddle::core::limits::{MAX_MEMBER_ROSTER_OPS, MAX_ROSTER_CLOCK_AHEAD_MS};
use huddle::core::policy::{Category, Role};
use huddle::core::replica::{IngestError, Input, Notice, Status};
use huddle::core::roster::{MAX_EMERGENCIES_PER_DAY, Op, RosterError, RosterOp};
use sim::Network;

const DANA: &str = "dana-pc";
const LEE: &str = "lee-laptop";
const CAM: &str = "cam-pc";
const FRONT: &str = "front-desk";
const MINUTE_MS: u64 = 60_000;

struct Clinic {
    net: Network,
    dana: MemberId,
    lee: MemberId,
    cam: MemberId,
    sam: MemberId,
    log: LogId,
    thread: ThreadId,
}

/// Dana (founding admin, clinician), Lee and Cam (clinicians), Sam (scheduler), in sync,
/// with one clinical thread.
fn clinic(seed: u64) -> Clinic {
    let mut net = Network::new(seed, DANA);
    let dana = net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let lee = net.add_member(DANA, "Lee", Role::Clinician, false);
    let cam = net.add_member(DANA, "Cam", Role::Clinician, false);
    let sam = net.add_member(DANA, "Sam", Role::Scheduler, false);
    net.add_device(DANA, lee, LEE);
    net.add_device(DANA, cam, CAM);
    net.add_device(DANA, sam, FRONT);
    net.regrant(DANA);
    net.sync_all();
    let log = net.create_thread(DANA, Category::Clinical, "Behavioral health follow-up");
    net.post(DANA, log, "Before any restriction", false, None);
    net.sync_all();
    let Some(thread) = log.thread() else {
        panic!("a thread log")
    };
    Clinic {
        net,
        dana,
        lee,
        cam,
        sam,
        log,
        thread,
    }
}

/// A modified client's roster operation: `op` by `name`, citing `deps`, stated at `at`.
fn forge_op(net: &mut Network, name: &str, deps: Vec<EnvelopeId>, at: u64, op: Op) -> Envelope {
    let plain = postcard::to_stdvec(&RosterOp {
        deps,
        at_ms: at,
        op,
    })
    .expect("encode");
    net.forge_sealed_at(name, LogId::Roster, None, &plain, at)
}

fn rejected(notices: &[Notice], id: EnvelopeId) -> Option<RosterError> {
    notices.iter().find_map(|n| match n {
        Notice::RosterRejected(i, e) if *i == id => Some(e.clone()),
        _ => None,
    })
}

fn reads(net: &Network, name: &str, log: &LogId, text: &str) -> bool {
    let Some(thread) = log.thread() else {
        return false;
    };
    net.device(name)
        .messages(&thread)
        .is_some_and(|m| m.iter().any(|m| m.body == text))
}

/// Cam, no participant, races a restriction: it cites the roster heads from before the
/// restriction (so it is concurrent) and grinds its envelope id below the real one.
fn race_restriction(c: &mut Clinic, restrictor: &str, participants: Vec<MemberId>) -> Envelope {
    let stale = c.net.device(CAM).replica.roster_heads().to_vec();
    let real = c.net.roster_op(
        restrictor,
        Op::RestrictThread {
            thread: c.thread,
            category: Category::Clinical,
            members: participants,
        },
    );
    let mut forged = None;
    for _ in 0..256 {
        let at = c.net.tick();
        let env = forge_op(
            &mut c.net,
            CAM,
            stale.clone(),
            at,
            Op::RestrictThread {
                thread: c.thread,
                category: Category::Clinical,
                members: vec![c.cam],
            },
        );
        if env.id() < real.id() {
            forged = Some(env);
            break;
        }
    }
    let forged = forged.expect("an id below the real restriction's within 256 tries");
    c.net.commit(CAM, forged.clone());
    c.net.sync_all();
    forged
}

#[test]
fn attack_restriction_takeover() {
    // Restricted by an admin: the racing restriction has no effect at all.
    let mut c = clinic(16_01);
    let (dana, lee) = (c.dana, c.lee);
    race_restriction(&mut c, DANA, vec![dana, lee]);
    for name in [DANA, LEE, CAM, FRONT] {
        let r = c.net.device(name).replica.roster();
        let list = r.restriction(&c.thread).expect("restricted");
        assert_eq!(
            list.members.iter().copied().collect::<Vec<_>>(),
            {
                let mut v = vec![dana, lee];
                v.sort();
                v
            },
            "{name} keeps the admin's list"
        );
    }
    c.net
        .post(DANA, c.log, "After the restriction", false, None);
    c.net.sync_all();
    assert!(reads(&c.net, LEE, &c.log, "After the restriction"));
    assert!(!reads(&c.net, CAM, &c.log, "After the restriction"));

    // Restricted by a member (Lee, no admin): the race can only close the thread (only
    // members both lists name stay), never let Cam in; an admin then sets the list.
    let mut c = clinic(16_02);
    let (dana, lee, cam) = (c.dana, c.lee, c.cam);
    race_restriction(&mut c, LEE, vec![dana, lee]);
    for name in [DANA, LEE, CAM, FRONT] {
        let r = c.net.device(name).replica.roster();
        let list = r.restriction(&c.thread).expect("restricted");
        assert!(
            !list.members.contains(&cam),
            "{name}: Cam never becomes a participant"
        );
        assert!(
            list.members.is_empty(),
            "{name}: the concurrent lists merge"
        );
    }
    assert!(
        c.net
            .try_roster_op(
                CAM,
                Op::RestrictThread {
                    thread: c.thread,
                    category: Category::Clinical,
                    members: vec![cam],
                },
            )
            .is_err(),
        "and Cam may not change the list now"
    );
    c.net.roster_op(
        DANA,
        Op::RestrictThread {
            thread: c.thread,
            category: Category::Clinical,
            members: vec![dana, lee],
        },
    );
    c.net.sync_all();
    c.net.post(LEE, c.log, "Back in", false, None);
    c.net.sync_all();
    assert!(reads(&c.net, DANA, &c.log, "Back in"));
    assert!(!reads(&c.net, CAM, &c.log, "Back in"));
    let cam_slots = c.net.device(CAM).replica.key_slots();
    assert!(
        cam_slots.iter().all(|s| !s.is_restricted()),
        "no restricted key ever reached Cam"
    );
}

#[test]
fn attack_restrict_wrong_category() {
    let mut c = clinic(16_05);
    let sam = c.sam;
    // Sam's modified client restricts the clinical thread's id under `scheduling`.
    let at = c.net.tick();
    let heads = c.net.device(FRONT).replica.roster_heads().to_vec();
    let forged = forge_op(
        &mut c.net,
        FRONT,
        heads,
        at,
        Op::RestrictThread {
            thread: c.thread,
            category: Category::Scheduling,
            members: vec![sam],
        },
    );
    c.net.commit(FRONT, forged.clone());
    c.net.sync_all();
    let notices = c.net.device_mut(DANA).take_notices();
    assert_eq!(
        rejected(&notices, forged.id()),
        Some(RosterError::WrongCategory)
    );
    for name in [DANA, LEE, CAM, FRONT] {
        assert!(
            c.net
                .device(name)
                .replica
                .roster()
                .restriction(&c.thread)
                .is_none(),
            "{name}: not restricted"
        );
    }
    c.net.post(DANA, c.log, "Still ours", false, None);
    c.net.sync_all();
    assert!(reads(&c.net, LEE, &c.log, "Still ours"));
    assert!(reads(&c.net, CAM, &c.log, "Still ours"));

    // An admin lifts a restriction; a member's forged lift has no effect.
    let (dana, lee) = (c.dana, c.lee);
    c.net.roster_op(
        DANA,
        Op::RestrictThread {
            thread: c.thread,
            category: Category::Clinical,
            members: vec![dana, lee],
        },
    );
    c.net.sync_all();
    let at = c.net.tick();
    let heads = c.net.device(CAM).replica.roster_heads().to_vec();
    let lift = forge_op(
        &mut c.net,
        CAM,
        heads,
        at,
        Op::UnrestrictThread {
            thread: c.thread,
            category: Category::Clinical,
        },
    );
    c.net.commit(CAM, lift.clone());
    c.net.sync_all();
    assert!(
        c.net
            .device(DANA)
            .replica
            .roster()
            .restriction(&c.thread)
            .is_some(),
        "a member cannot lift"
    );
    c.net.roster_op(
        DANA,
        Op::UnrestrictThread {
            thread: c.thread,
            category: Category::Clinical,
        },
    );
    c.net.sync_all();
    for name in [DANA, LEE, CAM] {
        assert!(
            c.net
                .device(name)
                .replica
                .roster()
                .restriction(&c.thread)
                .is_none(),
            "{name}: lifted"
        );
    }
    c.net.post(DANA, c.log, "Open again", false, None);
    c.net.sync_all();
    assert!(reads(&c.net, CAM, &c.log, "Open again"));
}

#[test]
fn attack_roster_flood() {
    let mut c = clinic(16_04);
    let mut accepted = 0;
    let mut refused = 0;
    let mut last_ok = None;
    for n in 0..MAX_MEMBER_ROSTER_OPS + 8 {
        let at = c.net.tick();
        let heads = c.net.device(FRONT).replica.roster_heads().to_vec();
        let junk = forge_op(
            &mut c.net,
            FRONT,
            heads,
            at,
            Op::AddMember {
                member: MemberId([n as u8; 16]),
                name: format!("junk {n}"),
                role: Role::Billing,
                admin: true,
            },
        );
        match c.net.deliver(FRONT, junk.clone()).result {
            Ok(Status::Accepted) => {
                accepted += 1;
                last_ok = Some(junk.clone());
                let at_dana = c.net.deliver(DANA, junk).result;
                assert_eq!(at_dana, Ok(Status::Accepted));
            }
            other => {
                assert_eq!(
                    other,
                    Err(IngestError::RosterQuota(c.net.device(FRONT).id()))
                );
                // Its peers refuse it the same way, at ingest.
                assert_eq!(
                    c.net.deliver(DANA, junk).result,
                    Err(IngestError::RosterQuota(c.net.device(FRONT).id()))
                );
                refused += 1;
            }
        }
    }
    assert_eq!((accepted, refused), (MAX_MEMBER_ROSTER_OPS, 8));
    let notices = c.net.device_mut(DANA).take_notices();
    let last = last_ok.expect("some accepted");
    assert_eq!(rejected(&notices, last.id()), Some(RosterError::NotAdmin));
    assert_eq!(c.net.device(DANA).replica.roster().members.len(), 4);
    assert!(
        !c.net
            .device(DANA)
            .replica
            .roster_heads()
            .contains(&last.id()),
        "inert operations are not heads: nothing follows them"
    );
    // One junk operation waiting for a dependency that never comes changes nothing.
    let (dana, lee) = (c.dana, c.lee);
    c.net.roster_op(
        DANA,
        Op::RestrictThread {
            thread: c.thread,
            category: Category::Clinical,
            members: vec![dana, lee],
        },
    );
    c.net.sync_all();
    assert!(
        c.net
            .device(LEE)
            .replica
            .roster()
            .restriction(&c.thread)
            .is_some(),
        "the admin's operation applies everywhere"
    );
    assert_eq!(c.net.device(LEE).replica.roster_waiting(), 0);
}

#[test]
fn attack_prebooked_emergency() {
    let mut c = clinic(16_07);
    let (dana, lee, cam) = (c.dana, c.lee, c.cam);
    c.net.roster_op(
        DANA,
        Op::RestrictThread {
            thread: c.thread,
            category: Category::Clinical,
            members: vec![dana, lee],
        },
    );
    c.net.sync_all();
    let emergency = |from: u64, minutes: u64| Op::EmergencyAccess {
        thread: c.thread,
        category: Category::Clinical,
        member: cam,
        reason: "patient in crisis, therapist unreachable".into(),
        from_ms: from,
        until_ms: from + minutes * MINUTE_MS,
    };
    let now = c.net.tick();
    let heads = c.net.device(CAM).replica.roster_heads().to_vec();
    // A window that starts tomorrow, written today: refused everywhere.
    let ahead = forge_op(
        &mut c.net,
        CAM,
        heads.clone(),
        now,
        emergency(now + 86_400_000, 60),
    );
    c.net.commit(CAM, ahead.clone());
    c.net.sync_all();
    let notices = c.net.device_mut(DANA).take_notices();
    assert_eq!(
        rejected(&notices, ahead.id()),
        Some(RosterError::WindowNotNow)
    );
    // Written "tomorrow" (stated time and window agree): held until the clock gets there.
    let tomorrow = now + 86_400_000;
    let booked = forge_op(&mut c.net, CAM, heads, tomorrow, emergency(tomorrow, 60));
    c.net.deliver(CAM, booked.clone());
    c.net.deliver(DANA, booked.clone());
    assert!(
        c.net
            .device(DANA)
            .replica
            .roster()
            .emergency_grants()
            .is_empty(),
        "a roster operation stamped ahead of the clock is held"
    );
    assert!(c.net.device(DANA).replica.roster_waiting() > 0);
    c.net
        .advance_clock(86_400_000 - MAX_ROSTER_CLOCK_AHEAD_MS / 2);
    // The next input the device handles (any: here a resume) takes it in.
    c.net.handle(DANA, Input::Resume).expect("resume");
    assert_eq!(
        c.net.device(DANA).replica.roster().emergency_grants().len(),
        1,
        "taken in once the clock is within the allowed drift"
    );
    // At most MAX_EMERGENCIES_PER_DAY a day (of stated start), whatever their windows:
    // from 01:00 UTC of the next day, one an hour.
    let day = 86_400_000;
    let t = c.net.now_ms();
    c.net.advance_clock(day - t % day + 60 * MINUTE_MS);
    let mut results = Vec::new();
    for _ in 0..MAX_EMERGENCIES_PER_DAY + 1 {
        let at = c.net.tick();
        let heads = c.net.device(CAM).replica.roster_heads().to_vec();
        let env = forge_op(&mut c.net, CAM, heads, at, emergency(at, 1));
        c.net.commit(CAM, env.clone());
        c.net.sync_all();
        let notices = c.net.device_mut(DANA).take_notices();
        results.push(rejected(&notices, env.id()));
        c.net.advance_clock(61 * MINUTE_MS);
    }
    let mut expected = vec![None; MAX_EMERGENCIES_PER_DAY];
    expected.push(Some(RosterError::TooManyEmergenciesToday));
    assert_eq!(results, expected);
}
