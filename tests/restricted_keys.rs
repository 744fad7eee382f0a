//! Restricted threads enforced by their keys, against modified clients: a clinician who
//! is no participant holds the category key, and tries it (and every key it holds) on
//! what is written after the restriction; an emergency reader keeps trying after the
//! window ends; forged grants try to plant a key, or to hand one to a non-reader.

mod sim;

use huddle::core::cipher::SecretKey;
use huddle::core::envelope::{Body, Envelope};
use huddle::core::ids::{LogId, MemberId};
use huddle::core::policy::{Category, Role};
use huddle::core::replica::{KeySlot, Notice, RESTRICTED_EPOCH, Status, key_id};
use huddle::core::roster::Op;
use huddle::core::seal;
use rand::SeedableRng;
use sim::{Network, newest_post, reads};

/// Founding admin, a clinician and participant.
const DANA: &str = "dana-pc";
/// A participating clinician, with two devices.
const LEE: &str = "lee-laptop";
const LEE_TABLET: &str = "lee-tablet";
/// A clinician who is no participant (holds the clinical category key).
const CAM: &str = "cam-pc";
/// The front desk.
const FRONT: &str = "front-desk";

const HOUR_MS: u64 = 60 * 60_000;

struct Clinic {
    net: Network,
    cam: MemberId,
    thread: LogId,
}

/// A clinic in sync with a clinical thread (one post before the restriction), then
/// restricted by Dana to Dana and Lee.
fn restricted_clinic(seed: u64) -> Clinic {
    let mut net = Network::new(seed, DANA);
    let dana = net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let lee = net.add_member(DANA, "Lee", Role::Clinician, false);
    let cam = net.add_member(DANA, "Cam", Role::Clinician, false);
    let sam = net.add_member(DANA, "Sam", Role::Scheduler, false);
    net.add_device(DANA, lee, LEE);
    net.add_device(DANA, lee, LEE_TABLET);
    net.add_device(DANA, cam, CAM);
    net.add_device(DANA, sam, FRONT);
    net.regrant(DANA);
    net.sync_all();
    let thread = net.create_thread(DANA, Category::Clinical, "Behavioral health follow-up");
    net.post(DANA, thread, "Before the restriction", false, None);
    net.sync_all();
    let Some(id) = thread.thread() else {
        panic!("a thread log")
    };
    net.roster_op(
        DANA,
        Op::RestrictThread {
            thread: id,
            category: Category::Clinical,
            members: vec![dana, lee],
        },
    );
    net.sync_all();
    Clinic { net, cam, thread }
}

fn ciphertext(env: &Envelope) -> &[u8] {
    match &env.body {
        Body::Sealed(ct) => ct,
        Body::Grants(_) => panic!("a sealed change"),
    }
}

/// A modified client on `name`: tries every key it holds on `env`, as that key's
/// thread key (derived from a category key, or a restricted thread's own).
fn any_key_opens(net: &Network, name: &str, env: &Envelope) -> bool {
    let replica = &net.device(name).replica;
    replica.key_slots().iter().any(|slot| {
        let mut header = env.header.clone();
        header.epoch = slot.epoch;
        header.key = slot.key;
        if !matches!(slot.log, LogId::Keys(_)) && slot.log != env.header.log {
            return false;
        }
        replica
            .key_for(&header)
            .is_some_and(|k| k.decrypt(&env.header.aad(), ciphertext(env)).is_ok())
    })
}

fn restricted_slots(net: &Network, name: &str, log: &LogId) -> Vec<KeySlot> {
    net.device(name)
        .replica
        .key_slots()
        .into_iter()
        .filter(|s| s.log == *log)
        .collect()
}

#[test]
fn a_non_participant_with_the_category_key_cannot_open_posts_after_the_restriction() {
    let Clinic {
        mut net, thread, ..
    } = restricted_clinic(1);
    net.post(DANA, thread, "Plan discussed with the patient", false, None);
    net.sync_all();
    let post = newest_post(&net, &thread);
    assert_ne!(
        post.header.epoch & RESTRICTED_EPOCH,
        0,
        "sealed with the thread's own key"
    );

    // Participants (every device of them) read it; what was written before stays
    // readable to the category's readers.
    for name in [DANA, LEE, LEE_TABLET] {
        assert!(
            reads(&net, name, &thread, "Plan discussed with the patient"),
            "{name}"
        );
    }
    assert!(reads(&net, CAM, &thread, "Before the restriction"));

    // Cam holds the clinical category key but no key of the thread: neither its
    // replica nor a modified client trying the category-derived key opens the post.
    let cam = &net.device(CAM).replica;
    let category_slot = cam.writing_slot(&thread).expect("Cam reads clinical");
    assert!(matches!(category_slot.log, LogId::Keys(Category::Clinical)));
    assert!(restricted_slots(&net, CAM, &thread).is_empty());
    assert!(cam.key_for(&post.header).is_none());
    let mut as_category = post.header.clone();
    as_category.epoch = category_slot.epoch;
    as_category.key = category_slot.key;
    let derived = cam.key_for(&as_category).expect("the category-derived key");
    assert!(
        derived
            .decrypt(&post.header.aad(), ciphertext(&post))
            .is_err()
    );
    assert!(
        derived
            .decrypt(&as_category.aad(), ciphertext(&post))
            .is_err()
    );
    assert!(!any_key_opens(&net, CAM, &post));
    assert!(!any_key_opens(&net, FRONT, &post));
    assert!(!reads(
        &net,
        CAM,
        &thread,
        "Plan discussed with the patient"
    ));
    // Cam's store holds the post and the grants (relayed), none sealed to Cam.
    assert!(net.device(CAM).store.contains(&post.id()));
    for env in net.device(CAM).store.log(&thread) {
        if let Body::Grants(grants) = &env.body {
            let cam_id = net.device(CAM).id();
            assert!(grants.iter().all(|g| g.recipient != cam_id));
        }
    }
}

#[test]
fn an_emergency_reader_reads_during_the_window_and_not_what_is_written_after() {
    let Clinic {
        mut net,
        cam,
        thread,
    } = restricted_clinic(2);
    net.post(DANA, thread, "Written before the emergency", false, None);
    net.sync_all();
    let from_ms = net.now_ms();
    net.roster_op(
        CAM,
        Op::EmergencyAccess {
            thread: thread.thread().expect("a thread"),
            category: Category::Clinical,
            member: cam,
            reason: "Patient unresponsive, on call tonight".into(),
            from_ms,
            until_ms: from_ms + HOUR_MS,
        },
    );
    // Delivered by the participants' devices without anyone posting.
    net.sync_all();
    assert!(!restricted_slots(&net, CAM, &thread).is_empty());
    assert!(reads(&net, CAM, &thread, "Written before the emergency"));
    net.post(LEE, thread, "Written during the emergency", false, None);
    net.sync_all();
    assert!(reads(&net, CAM, &thread, "Written during the emergency"));
    let during = newest_post(&net, &thread);
    assert!(net.device(CAM).replica.key_for(&during.header).is_some());

    // The window ends (the clock injected two hours on): the next post rotates the key
    // to the participants only.
    net.advance_clock(2 * HOUR_MS);
    net.post(DANA, thread, "Written after the emergency", false, None);
    net.sync_all();
    let after = newest_post(&net, &thread);
    assert_ne!(KeySlot::of(&after.header), KeySlot::of(&during.header));
    assert!(
        after.header.epoch > during.header.epoch,
        "a newer generation"
    );
    assert!(net.device(CAM).replica.key_for(&after.header).is_none());
    assert!(!any_key_opens(&net, CAM, &after));
    assert!(!reads(&net, CAM, &thread, "Written after the emergency"));
    for name in [DANA, LEE, LEE_TABLET] {
        assert!(
            reads(&net, name, &thread, "Written after the emergency"),
            "{name}"
        );
    }
    // What Cam was allowed stays readable to it.
    assert!(reads(&net, CAM, &thread, "Written during the emergency"));
}

#[test]
fn a_key_planted_by_a_non_participant_is_never_used() {
    let Clinic {
        mut net, thread, ..
    } = restricted_clinic(3);
    // Cam's modified client mints a key of a high generation and grants it to the
    // participants and itself, hoping they write with it.
    let planted = SecretKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(7));
    let slot = KeySlot {
        log: thread,
        epoch: RESTRICTED_EPOCH | 1000,
        key: key_id(&planted),
    };
    let recipients: Vec<_> = [DANA, LEE, LEE_TABLET, CAM]
        .iter()
        .map(|n| net.device(n).public())
        .collect();
    let forged = net.forge_grants(CAM, slot, &planted, &recipients);
    net.commit(CAM, forged.clone());
    net.device_mut(DANA).take_notices();
    let delivery = net.deliver(DANA, forged.clone());
    assert_eq!(
        delivery.result,
        Ok(Status::Accepted),
        "relayed, not counted"
    );
    assert!(
        net.device_mut(DANA)
            .take_notices()
            .contains(&Notice::RestrictedGrantHeld(forged.id()))
    );
    net.sync_all();
    for name in [DANA, LEE, LEE_TABLET] {
        assert!(net.device(name).replica.key(&slot).is_none(), "{name}");
    }
    net.post(LEE, thread, "Not for Cam", false, None);
    net.sync_all();
    let post = newest_post(&net, &thread);
    assert_ne!(KeySlot::of(&post.header), slot);
    assert!(!any_key_opens(&net, CAM, &post));
    // The planted key itself opens nothing written since.
    let mut header = post.header.clone();
    header.epoch = slot.epoch;
    header.key = slot.key;
    assert!(net.device(CAM).replica.key_for(&header).is_none());
}

#[test]
fn a_key_granted_to_a_non_reader_is_refused_there_and_rotated_away() {
    let Clinic {
        mut net, thread, ..
    } = restricted_clinic(4);
    net.post(DANA, thread, "First restricted post", false, None);
    net.sync_all();
    let first = newest_post(&net, &thread);
    let leaked = KeySlot::of(&first.header);
    // Lee's modified client grants the thread's current key to Cam.
    let key = net
        .device(LEE)
        .replica
        .key(&leaked)
        .cloned()
        .expect("Lee holds the key");
    let cam_public = net.device(CAM).public();
    let forged = net.forge_grants(LEE, leaked, &key, &[cam_public]);
    net.commit(LEE, forged.clone());
    net.device_mut(CAM).take_notices();
    net.sync_all();
    // Cam's (honest) replica does not take it: Cam may not read the thread.
    assert!(net.device(CAM).replica.key(&leaked).is_none());
    assert!(
        net.device_mut(CAM)
            .take_notices()
            .contains(&Notice::RestrictedGrantHeld(forged.id()))
    );
    // A modified client on Cam opens its copy anyway...
    let Body::Grants(grants) = &forged.body else {
        panic!("grants")
    };
    let clinic = net.device(CAM).replica.clinic();
    let context = huddle::core::replica::grant_context(&clinic, &leaked, &cam_public.id);
    let (stolen, _) =
        seal::open(&net.device(CAM).secret, &context, &grants[0].sealed).expect("sealed to Cam");
    assert_eq!(key_id(&stolen), leaked.key);
    // ...but every device now counts Cam as a holder, so the next post rotates.
    net.post(DANA, thread, "After the leak", false, None);
    net.sync_all();
    let after = newest_post(&net, &thread);
    assert_ne!(KeySlot::of(&after.header), leaked);
    let mut header = after.header.clone();
    header.epoch = leaked.epoch;
    header.key = leaked.key;
    let with_stolen = net
        .device(LEE)
        .replica
        .key_for(&header)
        .expect("the leaked key, derived as its thread key");
    assert!(
        with_stolen
            .decrypt(&after.header.aad(), ciphertext(&after))
            .is_err()
    );
    assert!(reads(&net, LEE_TABLET, &thread, "After the leak"));
}

#[test]
fn a_non_participant_cannot_post_through_its_replica() {
    let Clinic {
        mut net, thread, ..
    } = restricted_clinic(5);
    let result = net.handle(
        CAM,
        huddle::core::replica::Input::Seal {
            log: thread,
            plain: b"not a change".to_vec(),
            at_ms: 1,
        },
    );
    assert!(matches!(
        result,
        Err(huddle::core::replica::AuthorError::NotAllowed)
    ));
}

#[test]
fn a_writer_that_missed_the_hand_on_still_rotates_after_the_window() {
    let Clinic {
        mut net,
        cam,
        thread,
    } = restricted_clinic(6);
    net.post(DANA, thread, "Before the emergency", false, None);
    net.sync_all();
    let from_ms = net.now_ms();
    let opened = net.roster_op(
        CAM,
        Op::EmergencyAccess {
            thread: thread.thread().expect("a thread"),
            category: Category::Clinical,
            member: cam,
            reason: "Covering tonight".into(),
            from_ms,
            until_ms: from_ms + HOUR_MS,
        },
    );
    // Only Dana learns of it in time and hands the key to Cam.
    let handed = net.deliver(DANA, opened.clone()).authored;
    assert!(!handed.is_empty(), "Dana hands the thread's key on");
    for env in handed {
        net.deliver(CAM, env);
    }
    assert!(reads(&net, CAM, &thread, "Before the emergency"));
    // Lee learns of the grant only after the window, and never sees Dana's hand-on:
    // its record of the key's holders lacks Cam, yet it does not write with that key.
    net.advance_clock(2 * HOUR_MS);
    net.deliver(LEE, opened);
    net.post(LEE, thread, "After the window, from Lee", false, None);
    let post = newest_post(&net, &thread);
    net.sync(CAM);
    assert!(net.device(CAM).replica.key_for(&post.header).is_none());
    assert!(!any_key_opens(&net, CAM, &post));
    assert!(!reads(&net, CAM, &thread, "After the window, from Lee"));
}
