//! Tests of the device-invitation and restoration rules: [`Op::AddInvitedDevice`] adds
//! a device to an existing member once per invitation, cannot change the member's role
//! and is refused to non-admins; [`Op::RestoreMember`] brings a removed member back
//! without their devices, is refused onto a taken name, and loses to a concurrent
//! removal in every arrival order.

use proptest::prelude::*;

use super::*;
use crate::core::identity::DeviceSecret;
use crate::core::roster::fold;

fn dev(n: u8) -> DeviceSecret {
    DeviceSecret::from_bytes(&[n; 64])
}

fn id(n: usize) -> EnvelopeId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(n as u64).to_be_bytes());
    EnvelopeId(b)
}

const ANA: MemberId = MemberId([1; 16]);
const BOB: MemberId = MemberId([2; 16]);
const BEA: MemberId = MemberId([3; 16]);

fn record(n: usize, author: u8, deps: Vec<usize>, op: Op) -> OpRecord {
    OpRecord {
        id: id(n),
        author: dev(author).id(),
        seq: n as u64,
        op: RosterOp {
            deps: deps.into_iter().map(id).collect(),
            at_ms: 0,
            op,
        },
    }
}

/// Ana founds (device 1); Bob is an admin (device 2); Bea a clinician (device 3). All
/// by the founder, in a chain: operation `n` depends on `n - 1`.
fn base() -> (SignedGenesis, Vec<OpRecord>) {
    let genesis = SignedGenesis::new(&dev(1), 0, [0; 16]);
    let ops = vec![
        Op::Init {
            clinic_name: "Maple".into(),
            member: ANA,
            name: "Ana".into(),
            role: Role::Clinician,
        },
        Op::AddMember {
            member: BOB,
            name: "Bob".into(),
            role: Role::Scheduler,
            admin: true,
        },
        Op::AddDevice {
            member: BOB,
            device: dev(2).public(),
        },
        Op::AddMember {
            member: BEA,
            name: "Bea".into(),
            role: Role::Clinician,
            admin: false,
        },
        Op::AddDevice {
            member: BEA,
            device: dev(3).public(),
        },
    ];
    let records = ops
        .into_iter()
        .enumerate()
        .map(|(n, op)| record(n, 1, n.checked_sub(1).into_iter().collect(), op))
        .collect();
    (genesis, records)
}

const LAST: usize = 4;

fn roster() -> Roster {
    let (g, ops) = base();
    fold(&g.genesis, &ops).roster
}

fn device_for(member: MemberId, device: u8, invitation: u8) -> Op {
    Op::AddInvitedDevice {
        member,
        device: dev(device).public(),
        invitation: [invitation; 8],
    }
}

#[test]
fn a_device_invitation_adds_a_device_to_the_member_once_and_keeps_their_role() {
    let mut r = roster();
    let admin = dev(1).id();
    r.apply(
        &admin,
        &Op::RevokeDevice {
            device: dev(3).id(),
            cutoffs: vec![],
        },
    )
    .unwrap();
    r.apply(&admin, &device_for(BEA, 9, 7)).unwrap();
    assert_eq!(
        r.active_member(&dev(9).id())
            .map(|m| (m.id, m.role, m.admin)),
        Some((BEA, Role::Clinician, false))
    );
    assert!(r.invitation_used(&[7; 8]));
    // The same invitation again, for another laptop: refused.
    assert_eq!(
        r.check(&admin, &device_for(BEA, 10, 7)),
        Err(RosterError::InvitationUsed)
    );
    // The stolen laptop cannot be brought back by one.
    assert_eq!(
        r.check(&admin, &device_for(BEA, 3, 8)),
        Err(RosterError::DuplicateDevice)
    );
    // A non-admin may not write one, for herself or anyone.
    assert_eq!(
        r.check(&dev(9).id(), &device_for(BEA, 11, 9)),
        Err(RosterError::NotAdmin)
    );
    assert_eq!(
        r.check(&dev(9).id(), &device_for(ANA, 11, 9)),
        Err(RosterError::NotAdmin)
    );
}

#[test]
fn a_refused_device_invitation_does_not_spend_it() {
    let mut r = roster();
    let admin = dev(1).id();
    r.apply(
        &admin,
        &Op::RemoveMember {
            member: BEA,
            cutoffs: vec![],
        },
    )
    .unwrap();
    assert_eq!(
        r.apply(&admin, &device_for(BEA, 9, 7)),
        Err(RosterError::UnknownMember)
    );
    assert!(!r.invitation_used(&[7; 8]));
    assert!(!r.devices.contains_key(&dev(9).id()));
}

#[test]
fn a_restored_member_comes_back_without_devices_and_not_onto_a_taken_name() {
    let mut r = roster();
    let admin = dev(1).id();
    assert_eq!(
        r.check(&admin, &Op::RestoreMember { member: BEA }),
        Err(RosterError::NotRemoved)
    );
    r.apply(
        &admin,
        &Op::RemoveMember {
            member: BEA,
            cutoffs: vec![],
        },
    )
    .unwrap();
    assert_eq!(
        r.check(&dev(2).id(), &Op::RestoreMember { member: BEA }),
        Ok(())
    );
    assert_eq!(
        r.check(&dev(3).id(), &Op::RestoreMember { member: BEA }),
        Err(RosterError::NotAdmin)
    );
    let mut taken = r.clone();
    taken
        .apply(
            &admin,
            &Op::AddMember {
                member: MemberId([9; 16]),
                name: "bea".into(),
                role: Role::Billing,
                admin: false,
            },
        )
        .unwrap();
    assert_eq!(
        taken.check(&admin, &Op::RestoreMember { member: BEA }),
        Err(RosterError::DuplicateName("bea".into()))
    );
    r.apply(&admin, &Op::RestoreMember { member: BEA }).unwrap();
    assert_eq!(
        r.member_by_name("Bea").map(|m| m.role),
        Some(Role::Clinician)
    );
    assert!(
        r.active_member(&dev(3).id()).is_none(),
        "the old device stays out"
    );
    assert!(r.devices[&dev(3).id()].revoked);
    assert!(
        r.readers(Category::Clinical)
            .iter()
            .all(|d| d.id != dev(3).id())
    );
}

#[test]
fn an_admin_s_replacement_device_acts_as_admin_after_it() {
    let (g, mut ops) = base();
    ops.push(record(
        5,
        1,
        vec![LAST],
        Op::RevokeDevice {
            device: dev(2).id(),
            cutoffs: vec![],
        },
    ));
    ops.push(record(6, 1, vec![5], device_for(BOB, 12, 1)));
    ops.push(record(
        7,
        12,
        vec![6],
        Op::AddMember {
            member: MemberId([8; 16]),
            name: "Kim".into(),
            role: Role::Billing,
            admin: false,
        },
    ));
    let folded = fold(&g.genesis, &ops);
    assert!(folded.rejected.is_empty(), "{:?}", folded.rejected);
    assert!(folded.roster.member_by_name("Kim").is_some());
    assert_eq!(
        folded.roster.active_member(&dev(12).id()).map(|m| m.id),
        Some(BOB)
    );
}

proptest! {
    /// Ana and Bob remove Bea concurrently; Ana restores her having seen only her own
    /// removal: Bob's removal wins, in any arrival order. Seen both, the restore holds.
    #[test]
    fn a_removal_concurrent_with_a_restore_wins_in_any_order(
        seen_both in any::<bool>(), rotate in 0usize..9, reverse in any::<bool>(),
    ) {
        let (g, mut ops) = base();
        let remove = Op::RemoveMember { member: BEA, cutoffs: vec![] };
        ops.push(record(5, 1, vec![LAST], remove.clone()));
        ops.push(record(6, 2, vec![LAST], remove));
        let deps = if seen_both { vec![5, 6] } else { vec![5] };
        ops.push(record(7, 1, deps, Op::RestoreMember { member: BEA }));
        if reverse {
            ops.reverse();
        }
        let n = ops.len();
        ops.rotate_left(rotate % n);
        let folded = fold(&g.genesis, &ops);
        let bea = &folded.roster.members[&BEA];
        prop_assert_eq!(bea.removed, !seen_both);
        let refused = folded.rejected.iter().any(|(i, e)| *i == id(7) && *e == RosterError::RemovalConcurrent);
        prop_assert_eq!(refused, !seen_both);
    }
}
