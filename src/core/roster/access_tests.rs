//! Unit and property tests of the restriction, emergency and invitation rules.

use proptest::prelude::*;

use super::*;
use crate::core::identity::DeviceSecret;
use crate::core::ids::{DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use crate::core::policy::{Category, Role};
use crate::core::roster::{OpRecord, RosterOp, SignedGenesis, fold};

const HOUR: u64 = 3_600_000;

/// Founder admin Ana (clinician), clinicians Bea and Cam, scheduler Sue; one device each.
struct Cast {
    genesis: SignedGenesis,
    devices: Vec<DeviceId>,
    members: Vec<MemberId>,
    base: Vec<OpRecord>,
}

fn dev(n: u8) -> DeviceSecret {
    DeviceSecret::from_bytes(&[n; 64])
}

fn id(n: usize) -> EnvelopeId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(n as u64).to_be_bytes());
    EnvelopeId(b)
}

fn cast() -> Cast {
    let secrets: Vec<DeviceSecret> = (1..=4).map(dev).collect();
    let genesis = SignedGenesis::new(&secrets[0], 0, [0; 16]);
    let members: Vec<MemberId> = (1..=4).map(|n| MemberId([n; 16])).collect();
    let founder = secrets[0].id();
    let mut ops = vec![Op::Init {
        clinic_name: "Maple".into(),
        member: members[0],
        name: "Ana".into(),
        role: Role::Clinician,
    }];
    for (i, (name, role)) in [
        ("Bea", Role::Clinician),
        ("Cam", Role::Clinician),
        ("Sue", Role::Scheduler),
    ]
    .into_iter()
    .enumerate()
    {
        ops.push(Op::AddMember {
            member: members[i + 1],
            name: name.into(),
            role,
            admin: false,
        });
        ops.push(Op::AddDevice {
            member: members[i + 1],
            device: secrets[i + 1].public(),
        });
    }
    let base = ops
        .into_iter()
        .enumerate()
        .map(|(n, op)| {
            record(
                n,
                founder,
                if n == 0 { vec![] } else { vec![id(n - 1)] },
                op,
            )
        })
        .collect();
    Cast {
        genesis,
        devices: secrets.iter().map(|s| s.id()).collect(),
        members,
        base,
    }
}

fn record(n: usize, author: DeviceId, deps: Vec<EnvelopeId>, op: Op) -> OpRecord {
    OpRecord {
        id: id(n),
        author,
        seq: n as u64,
        op: RosterOp { deps, at_ms: 0, op },
    }
}

fn thread() -> (ThreadId, LogId) {
    let mut t = ThreadId([9; 16]);
    t.0[0] = Category::Clinical.code();
    (
        t,
        LogId::Thread {
            id: t,
            category: Category::Clinical,
        },
    )
}

fn roster(c: &Cast) -> Roster {
    fold(&c.genesis.genesis, &c.base).roster
}

fn restrict(c: &Cast, r: &mut Roster, by: usize, to: &[usize]) -> Result<(), RosterError> {
    r.apply(
        &c.devices[by],
        &Op::RestrictThread {
            thread: thread().0,
            category: Category::Clinical,
            members: to.iter().map(|&i| c.members[i]).collect(),
        },
    )
}

fn emergency(c: &Cast, who: usize, reason: &str, from: u64, until: u64) -> Op {
    Op::EmergencyAccess {
        thread: thread().0,
        category: Category::Clinical,
        member: c.members[who],
        reason: reason.into(),
        from_ms: from,
        until_ms: until,
    }
}

#[test]
fn restriction_narrows_readers_to_participants_who_read_the_category() {
    let c = cast();
    let mut r = roster(&c);
    let (_, log) = thread();
    // Bea (a clinician, not admin) restricts to Ana and Sue: Sue's role cannot read
    // clinical, so readers are Ana and Bea (the restricting member).
    restrict(&c, &mut r, 1, &[0, 3]).unwrap();
    assert!(r.may_read_at(&c.devices[0], &log, 0));
    assert!(r.may_read_at(&c.devices[1], &log, 0));
    assert!(
        !r.may_read_at(&c.devices[2], &log, 0),
        "Cam is not a participant"
    );
    assert!(
        !r.may_read_at(&c.devices[3], &log, 0),
        "a scheduler never reads clinical"
    );
    assert_eq!(r.readers_at(&log, 0).len(), 2);
    // Another thread of the category is untouched.
    let other = LogId::Thread {
        id: ThreadId([8; 16]),
        category: Category::Clinical,
    };
    assert!(r.may_read_at(&c.devices[2], &other, 0));
}

#[test]
fn an_excluded_member_cannot_restrict_their_way_back_in() {
    let c = cast();
    let mut r = roster(&c);
    restrict(&c, &mut r, 1, &[0]).unwrap();
    assert_eq!(
        restrict(&c, &mut r, 2, &[2]),
        Err(RosterError::NotParticipant)
    );
    // A scheduler may not restrict a clinical thread at all.
    let mut fresh = roster(&c);
    assert_eq!(
        restrict(&c, &mut fresh, 3, &[0]),
        Err(RosterError::MayNotReadCategory)
    );
    // The admin may change the list.
    restrict(&c, &mut r, 0, &[0, 2]).unwrap();
    assert!(r.may_read_at(&c.devices[2], &thread().1, 0));
}

#[test]
fn emergency_access_is_a_reader_only_inside_its_window() {
    let c = cast();
    let mut r = roster(&c);
    let (t, log) = thread();
    restrict(&c, &mut r, 0, &[0, 1]).unwrap();
    r.apply(
        &c.devices[2],
        &emergency(&c, 2, "patient unresponsive", 10, 10 + HOUR),
    )
    .unwrap();
    assert!(!r.may_read_at(&c.devices[2], &log, 9));
    assert!(r.may_read_at(&c.devices[2], &log, 10));
    assert!(r.may_read_at(&c.devices[2], &log, 10 + HOUR - 1));
    assert!(!r.may_read_at(&c.devices[2], &log, 10 + HOUR), "expired");
    assert_eq!(r.active_emergencies(&t, 20).len(), 1);
    assert_eq!(r.active_emergencies(&t, 10 + HOUR).len(), 0);
    assert_eq!(r.emergency_grants()[0].reason, "patient unresponsive");
}

#[test]
fn emergency_access_refuses_what_the_rules_forbid() {
    let c = cast();
    let mut r = roster(&c);
    // Not restricted yet.
    assert_eq!(
        r.apply(&c.devices[2], &emergency(&c, 2, "why", 0, HOUR)),
        Err(RosterError::NotRestricted)
    );
    restrict(&c, &mut r, 0, &[0, 1]).unwrap();
    let cases = [
        (2, emergency(&c, 2, "   ", 0, HOUR), RosterError::BadReason),
        (
            2,
            emergency(&c, 2, &"x".repeat(1025), 0, HOUR),
            RosterError::BadReason,
        ),
        (
            2,
            emergency(&c, 2, "why", 0, HOUR + 1),
            RosterError::BadWindow,
        ),
        (2, emergency(&c, 2, "why", 5, 5), RosterError::BadWindow),
        (
            2,
            emergency(&c, 1, "for Bea", 0, HOUR),
            RosterError::NotYourself,
        ),
        (
            1,
            emergency(&c, 1, "why", 0, HOUR),
            RosterError::AlreadyParticipant,
        ),
        (
            3,
            emergency(&c, 3, "why", 0, HOUR),
            RosterError::MayNotReadCategory,
        ),
    ];
    for (author, op, want) in cases {
        assert_eq!(r.apply(&c.devices[author], &op), Err(want));
    }
    // At most two overlapping grants per member.
    r.apply(&c.devices[2], &emergency(&c, 2, "one", 0, HOUR))
        .unwrap();
    r.apply(&c.devices[2], &emergency(&c, 2, "two", 1, HOUR))
        .unwrap();
    assert_eq!(
        r.apply(&c.devices[2], &emergency(&c, 2, "three", 2, HOUR)),
        Err(RosterError::TooManyEmergencies)
    );
    r.apply(&c.devices[2], &emergency(&c, 2, "later", HOUR, 2 * HOUR))
        .unwrap();
}

#[test]
fn a_shorter_policy_shortens_the_longest_emergency() {
    let c = cast();
    let mut r = roster(&c);
    restrict(&c, &mut r, 0, &[0]).unwrap();
    let mut policy = r.policy.clone();
    policy.safeguards.emergency_minutes = 5;
    r.apply(
        &c.devices[0],
        &Op::SetPolicy {
            policy,
            cutoffs: vec![],
        },
    )
    .unwrap();
    assert_eq!(
        r.apply(&c.devices[2], &emergency(&c, 2, "why", 0, 5 * 60_000 + 1)),
        Err(RosterError::BadWindow)
    );
    r.apply(&c.devices[2], &emergency(&c, 2, "why", 0, 5 * 60_000))
        .unwrap();
}

fn invited(c: &Cast, n: usize, name: &str, invitation: [u8; 8]) -> OpRecord {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&(n as u64).to_be_bytes());
    record(
        n,
        c.devices[0],
        vec![id(c.base.len() - 1)],
        Op::AddInvitedMember {
            member: MemberId(m),
            name: name.into(),
            role: Role::Clinician,
            admin: false,
            invitation,
        },
    )
}

proptest! {
    /// Two enrollments with one invitation: exactly one takes effect, the same one
    /// whatever order the operations arrive in.
    #[test]
    fn a_second_use_of_an_invitation_is_refused_in_any_arrival_order(
        a in 100usize..200, b in 200usize..300, swap in any::<bool>(), same in any::<bool>(),
    ) {
        let c = cast();
        let other = if same { [7; 8] } else { [8; 8] };
        let first = invited(&c, a, "Dee", [7; 8]);
        let second = invited(&c, b, "Eve", other);
        let mut ops = c.base.clone();
        if swap { ops.extend([second.clone(), first.clone()]) } else { ops.extend([first.clone(), second.clone()]) }
        ops.reverse();
        let folded = fold(&c.genesis.genesis, &ops);
        let names: Vec<&str> = folded.roster.members.values().map(|m| m.name.as_str()).collect();
        let both = names.contains(&"Dee") && names.contains(&"Eve");
        prop_assert_eq!(both, !same);
        prop_assert!(names.contains(&"Dee") || names.contains(&"Eve"));
        prop_assert!(folded.roster.invitation_used(&[7; 8]));
        if same {
            prop_assert!(folded.rejected.iter().any(|(_, e)| *e == RosterError::InvitationUsed));
        }
        let mut reordered = ops.clone();
        reordered.rotate_left(3);
        prop_assert_eq!(fold(&c.genesis.genesis, &reordered).roster, folded.roster);
    }
}

/// A restriction of the test thread by cast member `by`, citing `deps`.
fn restriction(c: &Cast, n: usize, by: usize, deps: Vec<EnvelopeId>, to: &[usize]) -> OpRecord {
    record(
        n,
        c.devices[by],
        deps,
        Op::RestrictThread {
            thread: thread().0,
            category: Category::Clinical,
            members: to.iter().map(|&i| c.members[i]).collect(),
        },
    )
}

/// `ops` reversed, then rotated left by `rotate` (modulo their number): another arrival
/// order.
fn reversed_and_rotated(ops: &[OpRecord], rotate: usize) -> Vec<OpRecord> {
    let mut reordered = ops.to_vec();
    reordered.reverse();
    let len = reordered.len();
    reordered.rotate_left(rotate % len);
    reordered
}

proptest! {
    /// Restrictions of one thread written concurrently by members (each citing some
    /// prefix of what came before, with any ids): the same participants on every
    /// arrival order, and a member never lets themself in past a list they had not seen.
    #[test]
    fn concurrent_restrictions_merge_alike_in_any_order(
        specs in proptest::collection::vec((1usize..3, 0usize..4, proptest::collection::vec(0usize..3, 1..3)), 1..6),
        ids in proptest::collection::vec(1000usize..100_000, 6),
        rotate in 0usize..12,
    ) {
        let c = cast();
        let mut ops = c.base.clone();
        let last_base = id(c.base.len() - 1);
        let mut written: Vec<EnvelopeId> = Vec::new();
        for (k, (by, seen, to)) in specs.iter().enumerate() {
            // Cites the base and the first `seen` restrictions written so far.
            let mut deps = vec![last_base];
            deps.extend(written.iter().take(*seen).copied());
            let n = ids[k] * 8 + k;
            let mut r = restriction(&c, n, *by, deps, to);
            // Chain positions follow the order of writing (the base took 0..7).
            r.seq = 100 + k as u64;
            ops.push(r);
            written.push(id(n));
        }
        let folded = fold(&c.genesis.genesis, &ops);
        prop_assert_eq!(&fold(&c.genesis.genesis, &reversed_and_rotated(&ops, rotate)).roster, &folded.roster);
        // Whoever is a participant now was named by every latest list.
        if let Some(r) = folded.roster.restriction(&thread().0) {
            for m in &r.members {
                prop_assert!(c.members.contains(m));
            }
        }
    }
}

proptest! {
    /// A direct conversation started by Bea with Sue, beside an admin's restriction of
    /// it, a clinician's break-glass and Bea's own second start of the same id (each
    /// with any envelope id, in any arrival order): the same roster on every order, the
    /// first start's participants kept, and every attempt to get in refused.
    #[test]
    fn a_direct_conversation_is_fixed_whatever_arrives_first(
        ids in proptest::collection::vec(1000usize..100_000, 4),
        rotate in 0usize..16,
    ) {
        let c = cast();
        let bea = DeviceSecret::from_bytes(&[2; 64]);
        let nonce = [3u8; 16];
        let direct = crate::core::thread::derive_thread_id(Category::Direct, &bea.id(), &nonce);
        let last_base = id(c.base.len() - 1);
        let mut start = record(ids[0] * 8, c.devices[1], vec![last_base], Op::StartDirect {
            thread: direct,
            nonce,
            members: vec![c.members[3]],
        });
        start.seq = 100;
        let mut again = record(ids[1] * 8 + 1, c.devices[1], vec![id(ids[0] * 8)], Op::StartDirect {
            thread: direct,
            nonce,
            members: vec![c.members[2], c.members[0]],
        });
        again.seq = 101;
        let takeover = record(ids[2] * 8 + 2, c.devices[0], vec![id(ids[0] * 8)], Op::RestrictThread {
            thread: direct,
            category: Category::Direct,
            members: vec![c.members[0]],
        });
        let mut glass = record(ids[3] * 8 + 3, c.devices[2], vec![id(ids[0] * 8)], Op::EmergencyAccess {
            thread: direct,
            category: Category::Direct,
            member: c.members[2],
            reason: "covering".into(),
            from_ms: 0,
            until_ms: HOUR,
        });
        glass.seq = 200;
        let mut ops = c.base.clone();
        ops.extend([start, again, takeover, glass]);
        let folded = fold(&c.genesis.genesis, &ops);
        prop_assert_eq!(&fold(&c.genesis.genesis, &reversed_and_rotated(&ops, rotate)).roster, &folded.roster);
        let r = folded.roster.direct(&direct).expect("started");
        prop_assert_eq!(
            r.members.iter().copied().collect::<Vec<_>>(),
            {
                let mut m = vec![c.members[1], c.members[3]];
                m.sort();
                m
            }
        );
        let errors: Vec<&RosterError> = folded.rejected.iter().map(|(_, e)| e).collect();
        prop_assert!(errors.contains(&&RosterError::DirectStarted));
        prop_assert_eq!(errors.iter().filter(|e| ***e == RosterError::DirectFixed).count(), 2);
        let log = LogId::Thread { id: direct, category: Category::Direct };
        prop_assert!(folded.roster.may_read(&c.devices[3], &log));
        prop_assert!(!folded.roster.may_read(&c.devices[0], &log), "not the admin");
        prop_assert!(!folded.roster.may_read_at(&c.devices[2], &log, 10), "no break-glass");
        prop_assert!(folded.roster.restriction(&direct).is_none());
    }
}
