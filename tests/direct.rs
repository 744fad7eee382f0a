//! Direct conversations against modified clients and admins: only the participants'
//! devices are given the keys; an admin, a clinician holding every category key and the
//! front desk relay the conversation blind; nobody can restrict, lift or break glass
//! their way in; a non-participant's envelopes are refused; a removed participant loses
//! the conversation at the next post; envelopes that arrive before the start wait.

mod sim;

use huddle::core::cipher::SecretKey;
use huddle::core::envelope::{Body, Envelope};
use huddle::core::ids::{LogId, MemberId};
use huddle::core::policy::{Category, Role};
use huddle::core::replica::{IngestError, KeySlot, RESTRICTED_EPOCH, Status, key_id};
use huddle::core::roster::{Op, RosterError};
use huddle::core::thread::derive_thread_id;
use rand::SeedableRng;
use sim::{Network, newest_post, reads};

/// Founding admin (a clinician).
const DANA: &str = "dana-pc";
/// A clinician who starts the conversation.
const LEE: &str = "lee-laptop";
/// The front desk, the other participant.
const FRONT: &str = "front-desk";
/// A clinician who is no participant.
const CAM: &str = "cam-pc";

struct Clinic {
    net: Network,
    members: [MemberId; 4],
    direct: LogId,
}

/// Lee (a clinician) writes to Sam at the front desk; Dana (admin) and Cam do not take
/// part. Everyone syncs.
fn clinic(seed: u64) -> Clinic {
    let mut net = Network::new(seed, DANA);
    let dana = net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let lee = net.add_member(DANA, "Lee", Role::Clinician, false);
    let sam = net.add_member(DANA, "Sam", Role::Scheduler, false);
    let cam = net.add_member(DANA, "Cam", Role::Clinician, false);
    net.add_device(DANA, lee, LEE);
    net.add_device(DANA, sam, FRONT);
    net.add_device(DANA, cam, CAM);
    net.regrant(DANA);
    net.sync_all();
    // Every category key a clinician holds, so that Cam's modified client has them all.
    let clinical = net.create_thread(DANA, Category::Clinical, "Intake");
    net.post(DANA, clinical, "Before", false, None);
    net.sync_all();
    let direct = net.start_direct(LEE, &[sam]);
    net.post(
        LEE,
        direct,
        "Can you move my 3 pm to Thursday?",
        false,
        None,
    );
    net.sync_all();
    Clinic {
        net,
        members: [dana, lee, sam, cam],
        direct,
    }
}

/// How `who`'s roster judges `op` by `who`'s device now (nothing is applied).
fn judged(net: &Network, who: &str, op: &Op) -> Result<(), RosterError> {
    let device = net.device(who);
    device.replica.roster().check(&device.id(), op)
}

/// A modified client on `name`: tries every key it holds on `env`.
fn any_key_opens(net: &Network, name: &str, env: &Envelope) -> bool {
    let Body::Sealed(ct) = &env.body else {
        panic!("a sealed change")
    };
    let replica = &net.device(name).replica;
    replica.key_slots().iter().any(|slot| {
        let mut header = env.header.clone();
        header.epoch = slot.epoch;
        header.key = slot.key;
        replica.key_for(&header).is_some_and(|k| {
            k.decrypt(&env.header.aad(), ct).is_ok() || k.decrypt(&header.aad(), ct).is_ok()
        })
    })
}

#[test]
fn only_the_participants_read_it_and_the_admin_relays_it_blind() {
    let Clinic { net, direct, .. } = clinic(1);
    let post = newest_post(&net, &direct);
    assert_ne!(
        post.header.epoch & RESTRICTED_EPOCH,
        0,
        "sealed with a key of its own"
    );
    // The front desk reads it, though no scheduler reads clinical or any other thread
    // a clinician writes: no role reads direct conversations, participants do.
    assert!(reads(
        &net,
        FRONT,
        &direct,
        "Can you move my 3 pm to Thursday?"
    ));
    assert!(reads(
        &net,
        LEE,
        &direct,
        "Can you move my 3 pm to Thursday?"
    ));
    for outsider in [DANA, CAM] {
        assert!(!reads(
            &net,
            outsider,
            &direct,
            "Can you move my 3 pm to Thursday?"
        ));
        assert!(
            !any_key_opens(&net, outsider, &post),
            "{outsider}'s keys open nothing"
        );
        assert!(
            net.device(outsider).store.contains(&post.id()),
            "{outsider} relays it"
        );
        let me = net.device(outsider).id();
        for env in net.device(outsider).store.log(&direct) {
            if let Body::Grants(grants) = &env.body {
                assert!(
                    grants.iter().all(|g| g.recipient != me),
                    "no grant to {outsider}"
                );
            }
        }
    }
}

#[test]
fn nobody_restricts_lifts_or_breaks_glass_their_way_in_not_even_an_admin() {
    let Clinic {
        mut net,
        members: [dana, _, _, cam],
        direct,
    } = clinic(2);
    let thread = direct.thread().expect("a thread");
    let now = net.now_ms();
    let attempts = [
        (
            DANA,
            Op::RestrictThread {
                thread,
                category: Category::Direct,
                members: vec![dana],
            },
        ),
        (
            DANA,
            Op::UnrestrictThread {
                thread,
                category: Category::Direct,
            },
        ),
        (
            CAM,
            Op::EmergencyAccess {
                thread,
                category: Category::Direct,
                member: cam,
                reason: "covering for Lee".into(),
                from_ms: now,
                until_ms: now + 60_000,
            },
        ),
    ];
    for (who, op) in attempts {
        assert_eq!(
            judged(&net, who, &op),
            Err(RosterError::DirectFixed),
            "{op:?}"
        );
        assert!(net.try_roster_op(who, op).is_err());
    }
    // The same, naming another category for the id: the id's first byte says direct.
    let disguised = Op::RestrictThread {
        thread,
        category: Category::Clinical,
        members: vec![dana],
    };
    assert_eq!(
        judged(&net, DANA, &disguised),
        Err(RosterError::WrongCategory)
    );
    net.sync_all();
    assert!(!reads(
        &net,
        DANA,
        &direct,
        "Can you move my 3 pm to Thursday?"
    ));
    assert!(!reads(
        &net,
        CAM,
        &direct,
        "Can you move my 3 pm to Thursday?"
    ));
}

#[test]
fn a_conversation_is_started_once_by_the_device_its_id_derives_from() {
    let Clinic {
        mut net,
        members: [dana, _, _, cam],
        direct,
    } = clinic(3);
    let thread = direct.thread().expect("a thread");
    assert!(
        net.device(CAM).meta(&thread).is_none(),
        "Cam reads no header"
    );
    // Cam restates the start of Lee's conversation from its own device, with itself in
    // the list: whatever nonce it states, the id does not derive from Cam's device.
    let hijack = Op::StartDirect {
        thread,
        nonce: [7; 16],
        members: vec![cam, dana],
    };
    assert_eq!(
        judged(&net, CAM, &hijack),
        Err(RosterError::NotDirectStarter)
    );
    // A start of Cam's own is fine, once: a second one of the same id is refused.
    let own = derive_thread_id(Category::Direct, &net.device(CAM).id(), &[7; 16]);
    let start = Op::StartDirect {
        thread: own,
        nonce: [7; 16],
        members: vec![dana],
    };
    net.roster_op(CAM, start.clone());
    assert_eq!(judged(&net, CAM, &start), Err(RosterError::DirectStarted));
    // Nor can a conversation hold only its starter.
    let alone = Op::StartDirect {
        thread: derive_thread_id(Category::Direct, &net.device(CAM).id(), &[8; 16]),
        nonce: [8; 16],
        members: vec![cam],
    };
    assert_eq!(
        judged(&net, CAM, &alone),
        Err(RosterError::BadDirectParticipants)
    );
}

#[test]
fn a_non_participant_cannot_write_into_it() {
    let Clinic {
        mut net, direct, ..
    } = clinic(4);
    // Cam's modified client mints a key of the conversation's own kind, grants it to
    // the participants and itself, and seals a message with it: every participant
    // refuses both for good, and so does the admin's relay.
    let key = SecretKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(4));
    let slot = KeySlot {
        log: direct,
        epoch: RESTRICTED_EPOCH | 9,
        key: key_id(&key),
    };
    let to: Vec<_> = [LEE, FRONT, CAM].map(|n| net.device(n).public()).to_vec();
    let grant = net.forge_grants(CAM, slot, &key, &to);
    let at = net.tick();
    let sealed = net.craft(CAM, |r, s, rng| {
        // At the same chain position: the grant is refused, so nothing holds it.
        let header = r.next_header(direct, &slot, at);
        let ct = key.encrypt(rng, &header.aad(), b"not a real change");
        Envelope::sign(s, header, Body::Sealed(ct))
    });
    for to in [LEE, FRONT, DANA] {
        for env in [&grant, &sealed] {
            let got = net.deliver(to, env.clone()).result;
            assert!(
                matches!(got, Err(IngestError::NotAllowed { .. })),
                "{to} took or held Cam's envelope: {got:?}"
            );
        }
    }
}

#[test]
fn a_removed_participant_loses_it_at_the_next_post() {
    let Clinic {
        mut net,
        members: [_, _, sam, _],
        direct,
    } = clinic(5);
    net.roster_op(
        DANA,
        Op::RemoveMember {
            member: sam,
            cutoffs: vec![],
        },
    );
    net.sync_all();
    net.post(
        LEE,
        direct,
        "Sam has left; this is for nobody else",
        false,
        None,
    );
    net.sync_all();
    let post = newest_post(&net, &direct);
    assert!(!any_key_opens(&net, FRONT, &post));
    assert!(reads(
        &net,
        LEE,
        &direct,
        "Sam has left; this is for nobody else"
    ));
    // What Sam read before stays: a device keeps what it could once read.
    assert!(reads(
        &net,
        FRONT,
        &direct,
        "Can you move my 3 pm to Thursday?"
    ));
}

#[test]
fn its_envelopes_wait_for_the_start_and_then_open() {
    let mut net = Network::new(6, DANA);
    net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let sam = net.add_member(DANA, "Sam", Role::Scheduler, false);
    net.add_device(DANA, sam, FRONT);
    net.regrant(DANA);
    net.sync_all();
    let before = net.authored().len();
    let direct = net.start_direct(DANA, &[sam]);
    net.post(DANA, direct, "Welcome aboard", false, None);
    let mut made: Vec<Envelope> = net.authored()[before..].to_vec();
    // The conversation's own envelopes first, the roster operation last.
    made.sort_by_key(|e| e.header.log == LogId::Roster);
    let statuses = net.deliver_batch(FRONT, made[..made.len() - 1].to_vec());
    assert!(
        statuses.iter().all(|s| matches!(
            s,
            Ok(Status::WaitingForAuthor | Status::WaitingForPredecessor)
        )),
        "{statuses:?}"
    );
    let last = made.last().cloned().expect("the start");
    assert_eq!(last.header.log, LogId::Roster);
    // The start comes in one input (a member's roster operations are folded at its
    // end): what waited for it is taken in at once, with no further sync.
    net.deliver(FRONT, last);
    assert!(reads(&net, FRONT, &direct, "Welcome aboard"));
}
