use super::*;
use crate::core::envelope::Envelope;
use crate::core::replica::key_id;

fn header(author: &DeviceSecret, seq: u64, key: &SecretKey) -> Header {
    Header {
        clinic: ClinicId([7; 32]),
        log: LogId::Audit,
        author: author.id(),
        seq,
        prev: (seq > 0).then_some(EnvelopeId([seq as u8; 32])),
        epoch: 0,
        key: key_id(key),
        at_ms: 1_000,
    }
}

/// The signer as the roster knows it: the member every test entry names.
fn signer(keys: &DevicePublic) -> Option<Signer<'_>> {
    Some(Signer {
        keys,
        member: Some(MemberId([1; 16])),
    })
}

fn sealed(author: &DeviceSecret, admins: &[DevicePublic], event: AuditEvent) -> Envelope {
    let rng = &mut rand::rng();
    let key = entry_key(rng);
    let h = header(author, 0, &key);
    let plain = encode_entry(&AuditEntry {
        member: Some(MemberId([1; 16])),
        event,
    });
    let body = seal_entry(author, rng, &h, &key, admins, &plain).unwrap();
    Envelope::sign(author, h, body)
}

#[test]
fn only_admins_open_an_entry() {
    let rng = &mut rand::rng();
    let (clinician, admin, other) = (
        DeviceSecret::generate(rng),
        DeviceSecret::generate(rng),
        DeviceSecret::generate(rng),
    );
    let thread = ThreadId([1; 16]);
    let env = sealed(
        &clinician,
        &[admin.public()],
        AuditEvent::ThreadViewed { thread },
    );
    let clinic = ClinicId([7; 32]);
    let entry = open_entry(&admin, signer(&clinician.public()), &clinic, &env).unwrap();
    assert_eq!(entry.event, AuditEvent::ThreadViewed { thread });
    // Neither its own author nor another device reads it.
    for reader in [&clinician, &other] {
        assert_eq!(
            open_entry(reader, signer(&clinician.public()), &clinic, &env),
            Err(AuditOpenError::NotForMe)
        );
    }
    // A seal that claims another author does not count.
    assert_eq!(
        open_entry(&admin, signer(&other.public()), &clinic, &env),
        Err(AuditOpenError::UnknownAuthor)
    );
}

#[test]
fn an_entry_moved_to_another_position_does_not_open() {
    let rng = &mut rand::rng();
    let (author, admin) = (DeviceSecret::generate(rng), DeviceSecret::generate(rng));
    let env = sealed(&author, &[admin.public()], AuditEvent::Unlock);
    let mut moved = env.header.clone();
    moved.seq = 5;
    moved.prev = Some(EnvelopeId([5; 32]));
    let forged = Envelope::sign(&author, moved, env.body.clone());
    assert_eq!(
        open_entry(
            &admin,
            signer(&author.public()),
            &ClinicId([7; 32]),
            &forged
        ),
        Err(AuditOpenError::BadSeal)
    );
}

#[test]
fn an_entry_beyond_its_bounds_is_refused() {
    let rng = &mut rand::rng();
    let (author, admin) = (DeviceSecret::generate(rng), DeviceSecret::generate(rng));
    let env = sealed(
        &author,
        &[admin.public()],
        AuditEvent::FailedUnlocks {
            times_ms: vec![1; MAX_FAILED_TIMES + 1],
        },
    );
    assert!(matches!(
        open_entry(&admin, signer(&author.public()), &ClinicId([7; 32]), &env),
        Err(AuditOpenError::Malformed(_))
    ));
}

#[test]
fn roster_operations_map_to_events_with_ids_only() {
    let member = MemberId([2; 16]);
    assert_eq!(
        roster_event(&Op::AddMember {
            member,
            name: "Dr. Sara".into(),
            role: Role::Clinician,
            admin: false
        }),
        Some(AuditEvent::MemberAdded {
            member,
            role: Role::Clinician,
            admin: false
        })
    );
    assert_eq!(
        roster_event(&Op::Init {
            clinic_name: "c".into(),
            member,
            name: "n".into(),
            role: Role::Clinician
        }),
        None
    );
}

fn chain(ids: &[(u64, u64)]) -> Vec<StoredRecord> {
    // (position, entry seq): entry `s` has id [s+1] and links to [s].
    ids.iter()
        .map(|&(at, seq)| StoredRecord {
            at,
            entry: Some((
                seq,
                EnvelopeId([seq as u8 + 1; 32]),
                (seq > 0).then_some(EnvelopeId([seq as u8; 32])),
            )),
        })
        .collect()
}

#[test]
fn an_intact_chain_has_no_findings() {
    let d = DeviceId([3; 32]);
    assert!(check_chain(d, &chain(&[(0, 0), (1, 1), (2, 2)]), Some(2)).is_empty());
}

#[test]
fn edits_removals_reorders_and_truncations_are_named() {
    let d = DeviceId([3; 32]);
    let mut edited = chain(&[(0, 0), (1, 1), (2, 2)]);
    edited[1].entry = None;
    assert_eq!(
        check_chain(d, &edited, Some(2)),
        vec![Finding::Edited { device: d, seq: 1 }]
    );
    assert_eq!(
        check_chain(d, &chain(&[(0, 0), (2, 2)]), Some(2)),
        vec![Finding::Missing { device: d, seq: 1 }]
    );
    assert_eq!(
        check_chain(d, &chain(&[(0, 0), (1, 2), (2, 1)]), Some(2)),
        vec![
            Finding::OutOfOrder {
                device: d,
                seq: 2,
                at: 1
            },
            Finding::OutOfOrder {
                device: d,
                seq: 1,
                at: 2
            }
        ]
    );
    // The tail cut off, though the store's head says it was there.
    assert_eq!(
        check_chain(d, &chain(&[(0, 0)]), Some(1)),
        vec![Finding::Missing { device: d, seq: 1 }]
    );
    // An entry whose link names another predecessor.
    let mut relinked = chain(&[(0, 0), (1, 1)]);
    relinked[1].entry = Some((1, EnvelopeId([9; 32]), Some(EnvelopeId([8; 32]))));
    assert_eq!(
        check_chain(d, &relinked, Some(1)),
        vec![Finding::BrokenLink { device: d, seq: 1 }]
    );
}

#[test]
fn an_absurd_head_is_walked_only_so_far() {
    let d = DeviceId([3; 32]);
    let findings = check_chain(d, &chain(&[(0, 0)]), Some(u64::MAX));
    assert_eq!(findings.len(), MAX_MISSING_REPORTED);
}

#[test]
fn an_entry_naming_another_member_than_its_device_is_refused() {
    let rng = &mut rand::rng();
    let (clinician, admin) = (DeviceSecret::generate(rng), DeviceSecret::generate(rng));
    let thread = ThreadId([1; 16]);
    // The entry names member [1; 16]; the roster says the clinician's device is [2; 16]'s.
    let env = sealed(
        &clinician,
        &[admin.public()],
        AuditEvent::EmergencyAccess {
            thread,
            reason: "as someone else".into(),
        },
    );
    let keys = clinician.public();
    let signer = Signer {
        keys: &keys,
        member: Some(MemberId([2; 16])),
    };
    assert_eq!(
        open_entry(&admin, Some(signer), &ClinicId([7; 32]), &env),
        Err(AuditOpenError::Misattributed)
    );
    let unnamed = Signer {
        keys: &keys,
        member: None,
    };
    assert_eq!(
        open_entry(&admin, Some(unnamed), &ClinicId([7; 32]), &env),
        Err(AuditOpenError::Misattributed)
    );
}

#[test]
fn details_name_members_where_a_name_is_known() {
    let lee = MemberId([0x1e; 16]);
    let gone = MemberId([0x90; 16]);
    let name = |m: &MemberId| (*m == lee).then(|| "Lee P.".to_string());
    let added = AuditEvent::MemberAdded {
        member: lee,
        role: crate::core::policy::Role::Clinician,
        admin: false,
    };
    assert_eq!(added.details_naming(&name), "Lee P. as clinician");
    assert_eq!(
        added.details(),
        format!("member {} as clinician", lee.short())
    );
    let removed = AuditEvent::MemberRemoved { member: gone };
    assert_eq!(
        removed.details_naming(&name),
        format!("member {}", gone.short()),
        "an unknown member keeps the id"
    );
}
