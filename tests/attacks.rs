//! Attacks by a modified client of an ENROLLED device: a member of the clinic whose app
//! bypasses every check the replica makes on its own changes and hand-builds envelopes,
//! grants and Automerge changes. Each test names the defense it exercises and what it
//! would have shown without it.

mod sim;
use sim::shuffled;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ROOT, ReadDoc};
use huddle::core::cipher::SecretKey;
use huddle::core::envelope::{Body, Envelope, Header};
use huddle::core::ids::{EnvelopeId, LogId, MemberId, ThreadId};
use huddle::core::policy::{Category, Role};
use huddle::core::replica::{IngestError, KeySlot, Notice, Status, key_id};
use huddle::core::roster::{Op, Roster, RosterOp};
use huddle::core::thread::{MessageView, NewMessage, Priority};
use proptest::prelude::*;
use proptest::sample::Index;
use rand::SeedableRng;
use sim::Network;
use std::collections::{BTreeMap, BTreeSet};

/// Founding admin, a clinician.
const ADMIN: &str = "dana-pc";
/// A second clinician.
const LEE: &str = "lee-laptop";
/// The front desk (scheduler).
const FRONT: &str = "front-desk";
/// The billing office.
const BILLING: &str = "billing-pc";
/// A second device of the second clinician.
const LEE_TABLET: &str = "lee-tablet";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

struct Clinic {
    net: Network,
    dana: MemberId,
    lee: MemberId,
    clinical: LogId,
    scheduling: LogId,
}

/// A clinic in sync: Dana (admin clinician, founder), Lee (clinician, admin if
/// `lee_admin`) with laptop and tablet, Sam at the front desk, Bo in billing; a clinical
/// thread by Dana and a scheduling thread by the front desk.
fn clinic(seed: u64, lee_admin: bool) -> Clinic {
    let mut net = Network::new(seed, ADMIN);
    let dana = net.init_clinic("Maple Street Therapy", "Dana", Role::Clinician);
    let lee = net.add_member(ADMIN, "Lee", Role::Clinician, lee_admin);
    let sam = net.add_member(ADMIN, "Sam", Role::Scheduler, false);
    let bo = net.add_member(ADMIN, "Bo", Role::Billing, false);
    net.add_device(ADMIN, lee, LEE);
    net.add_device(ADMIN, sam, FRONT);
    net.add_device(ADMIN, bo, BILLING);
    net.add_device(ADMIN, lee, LEE_TABLET);
    net.regrant(ADMIN);
    net.sync_all();
    let clinical = net.create_thread(ADMIN, Category::Clinical, "Sara M. - intake");
    let scheduling = net.create_thread(FRONT, Category::Scheduling, "Friday coverage");
    net.sync_all();
    Clinic {
        net,
        dana,
        lee,
        clinical,
        scheduling,
    }
}

fn thread_of(log: &LogId) -> ThreadId {
    log.thread().expect("a thread log")
}

/// Signs `header` + `body` with the secret of device `name` (a modified client).
fn sign_as(net: &mut Network, name: &str, header: Header, body: Body) -> Envelope {
    net.craft(name, |_, s, _| Envelope::sign(s, header, body))
}

/// `env` re-signed by `name` at chain position `seq` after `prev`.
fn rechain(net: &mut Network, name: &str, env: &Envelope, seq: u64, prev: EnvelopeId) -> Envelope {
    let mut header = env.header.clone();
    header.seq = seq;
    header.prev = Some(prev);
    sign_as(net, name, header, env.body.clone())
}

/// A roster operation of device `name` with hand-made `deps`, sealed with its current
/// roster key, bypassing the replica's admin check. Not committed.
fn forge_roster_op(net: &mut Network, name: &str, deps: Vec<EnvelopeId>, op: Op) -> Envelope {
    let at_ms = net.tick();
    let plain = postcard::to_stdvec(&RosterOp { deps, at_ms, op }).expect("serialize");
    let slot = newest_slot(net, name, LogId::Roster);
    net.forge_sealed_at(name, LogId::Roster, Some(slot), &plain, at_ms)
}

/// The newest key `name` holds of `key_log` (a revoked device writes with its old one).
fn newest_slot(net: &Network, name: &str, key_log: LogId) -> KeySlot {
    net.device(name)
        .replica
        .key_slots()
        .into_iter()
        .filter(|s| s.log == key_log)
        .max_by_key(|s| s.epoch)
        .unwrap_or_else(|| panic!("`{name}` holds no key of {key_log:?}"))
}

/// An Automerge change made by device `name` directly on a fork of its own copy of the
/// thread document, with the actor of device `actor_of` (its own, or another's), stating
/// time `at`.
fn forge_change(
    net: &mut Network,
    name: &str,
    actor_of: &str,
    log: &LogId,
    at: u64,
    edit: impl FnOnce(&mut AutoCommit),
) -> Vec<u8> {
    let bytes = net
        .device_mut(name)
        .docs
        .get_mut(&thread_of(log))
        .expect("the forger has the thread")
        .save();
    let actor = net.device(actor_of).id();
    let mut fork = AutoCommit::load(&bytes)
        .expect("load")
        .with_actor(ActorId::from(&actor.0[..]));
    edit(&mut fork);
    let hash = fork
        .commit_with(CommitOptions::default().with_time(at as i64))
        .expect("a non-empty change");
    fork.get_change_by_hash(&hash)
        .expect("committed")
        .raw_bytes()
        .to_vec()
}

/// The messages a device shows for a thread.
fn shown(net: &Network, name: &str, log: &LogId) -> Vec<MessageView> {
    net.device(name)
        .messages(&thread_of(log))
        .unwrap_or_else(|| panic!("`{name}` shows the thread"))
}

/// Brings every device but `except` up to date, including what they author in reply.
fn sync_except(net: &mut Network, except: &[&str]) {
    for _ in 0..8 {
        let before = net.authored().len();
        for name in net.names() {
            if !except.contains(&name.as_str()) {
                net.sync(&name);
            }
        }
        if net.authored().len() == before {
            return;
        }
    }
    panic!("devices kept authoring in response to each other");
}

/// Posts a message by hand on `name`'s copy of the thread, without sealing it; returns
/// the Automerge change and the time it states.
fn draft_post(net: &mut Network, name: &str, log: &LogId, body: &str) -> (Vec<u8>, u64) {
    let at = net.tick();
    let random: [u8; 8] = net.random_bytes();
    let d = net.device(name);
    let msg = NewMessage {
        reply_to: None,
        random,
        author: d.member().map(|m| m.id).unwrap_or_else(|| {
            let roster = d.replica.roster();
            roster.devices[&d.id()].member
        }),
        device: d.id(),
        at_ms: at,
        body: body.into(),
        priority: Priority::Normal,
        task: None,
    };
    let change = net
        .device_mut(name)
        .docs
        .get_mut(&thread_of(log))
        .expect("thread")
        .post(&msg)
        .expect("post")
        .change;
    (change, at)
}

fn roster_of(net: &Network, name: &str) -> Roster {
    net.device(name).replica.roster().clone()
}

/// The object id of a map at `key` in `obj`.
fn map_at(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> automerge::ObjId {
    doc.get(obj, key)
        .expect("read")
        .unwrap_or_else(|| panic!("no `{key}`"))
        .1
}

// ---------------------------------------------------------------------------------------
// 1. Key injection
// ---------------------------------------------------------------------------------------

/// Without the writer check on key logs (only a category's readers write its key log),
/// the front desk's planted key would be accepted by the clinicians: at epoch 1 it would
/// become the clinical key after the next rotation (a fresh epoch finds a key already
/// held, so nobody mints one), and at epoch 0 with a smaller fingerprint it could win
/// `writing_slot` at once: clinical posts would be sealed with a key the scheduler holds.
/// Without the future-epoch rule for roster grants (they count only if their author may
/// still read the roster at that epoch), a device planting a roster key before its
/// revocation would read and write the roster after it.
#[test]
fn attack_key_injection() {
    let mut c = clinic(101, false);
    let net = &mut c.net;
    let readers = net
        .device(ADMIN)
        .replica
        .roster()
        .readers(Category::Clinical);
    assert!(readers.iter().all(|d| d.id != net.device(FRONT).id()));
    let clinical_keys = LogId::Keys(Category::Clinical);

    // Epoch 1 (the next rotation's) and epoch 0 with a new key id, chained.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let k1 = SecretKey::generate(&mut rng);
    let k0 = SecretKey::generate(&mut rng);
    let slot1 = KeySlot {
        log: clinical_keys,
        epoch: 1,
        key: key_id(&k1),
    };
    let slot0 = KeySlot {
        log: clinical_keys,
        epoch: 0,
        key: key_id(&k0),
    };
    let g1 = net.forge_grants(FRONT, slot1, &k1, &readers);
    let g0 = net.forge_grants(FRONT, slot0, &k0, &readers);
    let g0 = rechain(net, FRONT, &g0, 1, g1.id());
    for to in [ADMIN, LEE] {
        for g in [&g1, &g0] {
            let r = net.deliver(to, g.clone()).result;
            assert!(
                matches!(
                    r,
                    Ok(Status::WaitingForAuthor | Status::WaitingForPredecessor)
                        | Err(IngestError::NotAllowed { .. })
                ),
                "`{to}` took the scheduler's clinical grant: {r:?}"
            );
            assert!(!net.device(to).store.contains(&g.id()));
        }
    }
    let forged = [slot0, slot1];
    let holds_forged = |net: &Network| {
        net.devices()
            .any(|d| d.replica.key_slots().iter().any(|s| forged.contains(s)))
    };
    assert!(!holds_forged(net), "a device holds the planted key");

    // Later clinical posts are sealed with a key the scheduler does not hold, before
    // and after a rotation of the clinical key to epoch 1.
    let check_posts = |net: &mut Network, body: &str| {
        net.post(ADMIN, c.clinical, body, false, None);
        net.sync_all();
        let env = net.device(ADMIN).store.newest(&c.clinical).expect("a post");
        let slot = KeySlot::of(&env.header);
        assert!(!forged.contains(&slot), "post sealed with the planted key");
        for name in [ADMIN, LEE] {
            assert_eq!(
                net.device(name).replica.writing_slot(&c.clinical),
                Some(slot)
            );
            assert!(net.device(name).replica.open_thread_change(&env).is_some());
        }
        assert!(net.device(FRONT).replica.key_for(&env.header).is_none());
        assert!(net.device(FRONT).replica.open_thread_change(&env).is_none());
        assert!(
            shown(net, ADMIN, &c.clinical)
                .iter()
                .any(|m| m.body == body)
        );
        assert!(
            net.device(FRONT)
                .messages(&thread_of(&c.clinical))
                .is_none()
        );
    };
    check_posts(net, "before rotation");
    // The tablet is revoked: the clinical key log moves to epoch 1, where the planted
    // key waits.
    let tablet = net.device(LEE_TABLET).id();
    net.roster_op(
        ADMIN,
        Op::RevokeDevice {
            device: tablet,
            cutoffs: vec![],
        },
    );
    sync_except(net, &[LEE_TABLET]);
    assert_eq!(net.device(ADMIN).replica.roster().epoch(&clinical_keys), 1);
    // The held grants are re-delivered after the rotation: still not taken.
    for to in [ADMIN, LEE] {
        for g in [&g1, &g0] {
            let r = net.deliver(to, g.clone()).result;
            assert!(
                !matches!(r, Ok(Status::Accepted | Status::Duplicate)),
                "`{to}`: {r:?}"
            );
        }
    }
    check_posts(net, "after rotation");
    assert!(!holds_forged(net), "a device holds the planted key");

    // The same trick on the roster log: the scheduler (who may write the roster) plants
    // a roster key for the next roster epoch, sealed to everyone, then is revoked.
    let roster_epoch = net.device(ADMIN).replica.roster().epoch(&LogId::Roster);
    let kr = SecretKey::generate(&mut rng);
    let slot_r = KeySlot {
        log: LogId::Roster,
        epoch: roster_epoch + 1,
        key: key_id(&kr),
    };
    let everyone = net.device(ADMIN).replica.roster().all_devices();
    let gr = net.forge_grants(FRONT, slot_r, &kr, &everyone);
    let gr = net.commit(FRONT, gr);
    sync_except(net, &[LEE_TABLET]);
    for name in [ADMIN, LEE, BILLING] {
        assert!(net.device(name).store.contains(&gr.id()));
        assert!(
            net.device(name).replica.key(&slot_r).is_none(),
            "on `{name}`"
        );
    }
    let front = net.device(FRONT).id();
    net.roster_op(
        ADMIN,
        Op::RevokeDevice {
            device: front,
            cutoffs: vec![],
        },
    );
    sync_except(net, &[LEE_TABLET, FRONT]);
    let roster = roster_of(net, ADMIN);
    assert_eq!(roster.epoch(&LogId::Roster), roster_epoch + 1);
    for name in [ADMIN, LEE, BILLING] {
        let d = net.device(name);
        assert_eq!(
            d.replica.roster(),
            &roster,
            "`{name}` split from the roster"
        );
        assert!(
            d.replica.key(&slot_r).is_none(),
            "`{name}` took the planted key"
        );
        let w = d
            .replica
            .writing_slot(&LogId::Roster)
            .expect("a roster key");
        assert_eq!(w.epoch, roster_epoch + 1);
        assert_ne!(w, slot_r);
    }
    // An op of the scheduler sealed with its planted key at the new epoch never counts.
    let plain = postcard::to_stdvec(&RosterOp {
        deps: net.device(ADMIN).replica.roster_heads().to_vec(),
        at_ms: net.tick(),
        op: Op::AddMember {
            member: MemberId([9; 16]),
            name: "Mallory".into(),
            role: Role::Clinician,
            admin: true,
        },
    })
    .expect("serialize");
    let head = net.device(FRONT).store.heads()[&(LogId::Roster, front)];
    let mut header = net.craft(FRONT, |r, _, _| r.next_header(LogId::Roster, &slot_r, 0));
    header.seq = head.seq + 1;
    header.prev = Some(head.id);
    header.at_ms = net.tick();
    let ct = kr.encrypt(&mut rng, &header.aad(), &plain);
    let op_env = sign_as(net, FRONT, header, Body::Sealed(ct));
    for name in [ADMIN, LEE, BILLING] {
        let r = net.deliver(name, op_env.clone()).result;
        assert!(
            matches!(r, Err(IngestError::NotAllowed { .. })),
            "`{name}`: {r:?}"
        );
        assert_eq!(net.device(name).replica.roster(), &roster);
    }
    // A roster change after the revocation is readable by all but the scheduler.
    let kim_env = net.roster_op(
        ADMIN,
        Op::AddMember {
            member: MemberId([8; 16]),
            name: "Kim".into(),
            role: Role::Clinician,
            admin: false,
        },
    );
    sync_except(net, &[LEE_TABLET, FRONT]);
    let roster = roster_of(net, ADMIN);
    assert!(roster.member_by_name("Kim").is_some());
    for name in [LEE, BILLING] {
        assert_eq!(roster_of(net, name), roster);
    }
    assert!(net.device(FRONT).replica.key_for(&kim_env.header).is_none());
}

// ---------------------------------------------------------------------------------------
// 2. Forged authorship inside a thread document
// ---------------------------------------------------------------------------------------

/// Without the thread rules (`thread/rules.rs`), each of these changes — by a reader of
/// the thread, so its envelope is valid and accepted — would apply: Dana's message would
/// show Lee's words, Lee as author, another time, the thread would claim another
/// category, Dana would have "read" what she has not, and a message would appear under
/// Dana's name. The control at the end shows the same machinery makes changes that do
/// apply when they touch only what their author owns.
#[test]
fn attack_forged_author() {
    let mut c = clinic(202, false);
    let net = &mut c.net;
    let log = c.clinical;
    let from_dana = net.post(
        ADMIN,
        log,
        "Sara's authorization renews on the 3rd",
        false,
        None,
    );
    let from_lee = net.post(LEE, log, "I'll call her insurer", false, None);
    net.sync_all();
    let honest = [ADMIN, LEE_TABLET];
    let before: BTreeMap<&str, Vec<MessageView>> =
        honest.iter().map(|n| (*n, shown(net, n, &log))).collect();
    assert_eq!(before[ADMIN].len(), 2);
    let lee_hex = c.lee.to_hex();
    let dana_hex = c.dana.to_hex();

    type Edit = Box<dyn FnOnce(&mut AutoCommit)>;
    let m = from_dana.clone();
    let body: Edit = Box::new(move |d| {
        let msgs = map_at(d, &ROOT, "messages");
        let msg = map_at(d, &msgs, &m);
        d.put(&msg, "body", "Authorization denied").expect("put");
    });
    let m = from_dana.clone();
    let lh = lee_hex.clone();
    let author: Edit = Box::new(move |d| {
        let msgs = map_at(d, &ROOT, "messages");
        let msg = map_at(d, &msgs, &m);
        d.put(&msg, "author", lh.as_str()).expect("put");
    });
    let m = from_dana.clone();
    let time: Edit = Box::new(move |d| {
        let msgs = map_at(d, &ROOT, "messages");
        let msg = map_at(d, &msgs, &m);
        d.put(&msg, "at_ms", 1_i64).expect("put");
    });
    let category: Edit = Box::new(|d| {
        let meta = map_at(d, &ROOT, "meta");
        d.put(&meta, "category", "scheduling").expect("put");
    });
    let m = from_lee.clone();
    let read: Edit = Box::new(move |d| {
        let reads = map_at(d, &ROOT, "reads");
        d.put(&reads, format!("{dana_hex}:{m}"), 1_700_000_000_000_i64)
            .expect("put");
    });
    let m = from_dana.clone();
    let retract: Edit = Box::new(move |d| {
        let msgs = map_at(d, &ROOT, "messages");
        d.delete(&msgs, m.as_str()).expect("delete");
    });
    let attempts: Vec<(&str, &str, Edit)> = vec![
        ("someone else's body", LEE, body),
        ("author stamp", LEE, author),
        ("time stamp", LEE, time),
        ("thread category", LEE, category),
        ("someone else's read marker", LEE, read),
        ("retract someone else's message", LEE, retract),
    ];
    for (what, actor, edit) in attempts {
        let at = net.tick();
        let change = forge_change(net, LEE, actor, &log, at, edit);
        let env = net.forge_sealed_at(LEE, log, None, &change, at);
        let refusals: Vec<usize> = honest
            .iter()
            .map(|n| net.device(n).doc_errors.len())
            .collect();
        let env = net.commit(LEE, env);
        net.sync_all();
        for (name, refused_before) in honest.into_iter().zip(refusals) {
            let d = net.device(name);
            assert_eq!(
                d.doc_errors.len(),
                refused_before + 1,
                "`{name}` did not refuse the forged {what}"
            );
            assert!(d.store.contains(&env.id()), "`{name}` stores the envelope");
            assert_eq!(
                shown(net, name, &log),
                before[name],
                "`{name}` applied a forged {what}"
            );
            assert_eq!(
                d.meta(&thread_of(&log)).map(|m| m.category),
                Some(Category::Clinical)
            );
        }
    }
    // A message planted under Dana's member key and device stamp, with Dana's actor,
    // in Lee's envelope.
    let at = net.tick();
    let dana_device = net.device(ADMIN).id().to_hex();
    let key = format!("{}.{}", hex::encode([0xab; 8]), c.dana.to_hex());
    let dh = c.dana.to_hex();
    let change = forge_change(net, LEE, ADMIN, &log, at, move |d| {
        let msgs = map_at(d, &ROOT, "messages");
        let m = d
            .put_object(&msgs, key.as_str(), automerge::ObjType::Map)
            .expect("put");
        d.put(&m, "author", dh.as_str()).expect("put");
        d.put(&m, "device", dana_device.as_str()).expect("put");
        d.put(&m, "at_ms", at as i64).expect("put");
        d.put(&m, "body", "Discharge Sara today").expect("put");
        d.put(&m, "priority", "urgent").expect("put");
    });
    let env = net.forge_sealed_at(LEE, log, None, &change, at);
    let env = net.commit(LEE, env);
    net.sync_all();
    for name in honest {
        assert!(net.device(name).store.contains(&env.id()));
        assert_eq!(shown(net, name, &log), before[name], "on `{name}`");
        assert!(!net.device(name).doc_errors.is_empty());
    }

    // Control: Lee edits Lee's own message the same way; it applies everywhere, and the
    // chain of Lee's envelopes is intact (later honest posts go through).
    let at = net.tick();
    let m = from_lee.clone();
    let change = forge_change(net, LEE, LEE, &log, at, move |d| {
        let msgs = map_at(d, &ROOT, "messages");
        let msg = map_at(d, &msgs, &m);
        d.put(&msg, "body", "I called her insurer").expect("put");
    });
    let env = net.forge_sealed_at(LEE, log, None, &change, at);
    net.commit(LEE, env);
    net.sync_all();
    net.post(LEE, log, "Approved through June", false, None);
    net.sync_all();
    for name in honest {
        let now = shown(net, name, &log);
        assert_eq!(now.len(), 3, "on `{name}`");
        let mine = now
            .iter()
            .find(|m| m.id == from_lee)
            .expect("Lee's message");
        assert_eq!(mine.body, "I called her insurer", "control on `{name}`");
        let dana = now
            .iter()
            .find(|m| m.id == from_dana)
            .expect("Dana's message");
        let was = before[name]
            .iter()
            .find(|m| m.id == from_dana)
            .expect("was shown");
        assert_eq!(dana, was, "Dana's message changed on `{name}`");
    }
}

// ---------------------------------------------------------------------------------------
// 3. Sync poisoning
// ---------------------------------------------------------------------------------------

/// Without per-envelope verification inside a batch (or with "verify the batch, accept
/// all if most pass"), the altered envelope would be stored and forwarded, or the
/// envelopes after it — whose `prev` names an envelope never accepted — would be
/// accepted and break the chain.
#[test]
fn attack_sync_poison() {
    let mut c = clinic(303, false);
    let net = &mut c.net;
    let log = c.scheduling;
    let before = net.authored().len();
    for i in 0..5 {
        net.post(FRONT, log, &format!("slot {i}"), false, None);
    }
    let run: Vec<Envelope> = net.authored()[before..]
        .iter()
        .filter(|e| e.header.log == log)
        .cloned()
        .collect();
    assert_eq!(run.len(), 5);
    // Two kinds of bad third envelope: altered body (id changes), and the right
    // header and body signed by another device's key (id may stay the same).
    let mut altered = run[2].clone();
    if let Body::Sealed(ct) = &mut altered.body {
        ct[20] ^= 1;
    }
    let missigned = sign_as(net, BILLING, run[2].header.clone(), run[2].body.clone());
    assert!(altered.verify().is_err() && missigned.verify().is_err());
    for (to, bad) in [(ADMIN, altered), (LEE, missigned)] {
        let mut batch = run.clone();
        batch[2] = bad.clone();
        let statuses = net.deliver_batch(to, batch);
        assert_eq!(statuses[0], Ok(Status::Accepted), "on `{to}`");
        assert_eq!(statuses[1], Ok(Status::Accepted), "on `{to}`");
        assert_eq!(statuses[2], Err(IngestError::BadSignature), "on `{to}`");
        for s in &statuses[3..] {
            assert_eq!(s, &Ok(Status::WaitingForPredecessor), "on `{to}`");
        }
        let d = net.device(to);
        for e in &run[2..] {
            assert!(
                !d.store.contains(&e.id()),
                "`{to}` accepted past the bad one"
            );
        }
        assert!(d.store.in_accept_order().all(|e| e.verify().is_ok()));
        let shown_now = shown(net, to, &log);
        assert!(
            !shown_now
                .iter()
                .any(|m| m.body == "slot 2" || m.body == "slot 3")
        );
        // The genuine envelope arrives: the rest of the run follows.
        let r = net.deliver(to, run[2].clone()).result;
        assert_eq!(r, Ok(Status::Accepted));
        let d = net.device(to);
        for e in &run {
            assert!(d.store.contains(&e.id()), "on `{to}`");
        }
        assert!(d.store.in_accept_order().all(|e| e.verify().is_ok()));
        let bodies: BTreeSet<String> = shown(net, to, &log).into_iter().map(|m| m.body).collect();
        for i in 0..5 {
            assert!(bodies.contains(&format!("slot {i}")), "on `{to}`");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. Backdated roster operations
// ---------------------------------------------------------------------------------------

fn admins(roster: &Roster) -> BTreeSet<MemberId> {
    roster
        .members
        .values()
        .filter(|m| m.admin && !m.removed)
        .filter(|m| {
            roster
                .devices
                .values()
                .any(|d| d.member == m.id && !d.revoked)
        })
        .map(|m| m.id)
        .collect()
}

/// Without causal authority plus "removal wins", an op whose deps point before its
/// author's demotion would be judged against a roster in which the author was still an
/// admin, and apply: the demoted admin could remove the one who demoted it, re-promote
/// itself or add an admin of its own, on every device (whatever its envelope id, so id
/// tie-breaking is no defense either).
#[test]
fn attack_backdated_roster_op() {
    let mut c = clinic(404, true);
    let net = &mut c.net;
    let deps_admin_era = net.device(LEE).replica.roster_heads().to_vec();
    net.roster_op(
        ADMIN,
        Op::ChangeRole {
            member: c.lee,
            role: Role::Clinician,
            admin: false,
            cutoffs: vec![],
        },
    );
    net.sync_all();
    let roster = roster_of(net, ADMIN);
    assert_eq!(admins(&roster), BTreeSet::from([c.dana]));
    for name in net.names() {
        net.device_mut(&name).take_notices();
    }
    let attempts = [
        Op::ChangeRole {
            member: c.dana,
            role: Role::Clinician,
            admin: false,
            cutoffs: vec![],
        },
        Op::RemoveMember {
            member: c.dana,
            cutoffs: vec![],
        },
        Op::ChangeRole {
            member: c.lee,
            role: Role::Clinician,
            admin: true,
            cutoffs: vec![],
        },
        Op::AddMember {
            member: MemberId([7; 16]),
            name: "Mallory".into(),
            role: Role::Clinician,
            admin: true,
        },
    ];
    for deps in [deps_admin_era.clone(), vec![]] {
        for op in attempts.clone() {
            let env = forge_roster_op(net, LEE, deps.clone(), op.clone());
            let env = net.commit(LEE, env);
            net.sync_all();
            for name in net.names() {
                let d = net.device_mut(&name);
                assert!(d.store.contains(&env.id()), "`{name}` stores it");
                assert_eq!(d.replica.roster(), &roster, "`{name}` applied {op:?}");
                let notices = d.take_notices();
                assert!(
                    notices
                        .iter()
                        .any(|n| matches!(n, Notice::RosterRejected(id, _) if *id == env.id())),
                    "`{name}` did not reject {op:?}: {notices:?}"
                );
            }
        }
    }
    // The demotion stands: later admin operations by Dana still work, Lee's do not.
    let kim = net.add_member(ADMIN, "Kim", Role::Clinician, false);
    net.sync_all();
    for d in net.devices() {
        assert!(d.replica.roster().members.contains_key(&kim));
        assert_eq!(admins(d.replica.roster()), BTreeSet::from([c.dana]));
    }
}

/// Two admins demote each other while partitioned. Without a deterministic fold
/// (removal wins, ties by seniority), devices that saw the demotions in different
/// orders would disagree on who is admin — or both demotions would apply and leave the
/// clinic with no admin at all.
#[test]
fn admins_demoting_each_other_converge_and_keep_an_admin() {
    let mut c = clinic(405, true);
    let net = &mut c.net;
    let p = net.authored().len();
    net.roster_op(
        ADMIN,
        Op::ChangeRole {
            member: c.lee,
            role: Role::Clinician,
            admin: false,
            cutoffs: vec![],
        },
    );
    let q = net.authored().len();
    net.roster_op(
        LEE,
        Op::ChangeRole {
            member: c.dana,
            role: Role::Clinician,
            admin: false,
            cutoffs: vec![],
        },
    );
    let r = net.authored().len();
    net.sync_all();
    let all = net.authored().to_vec();
    let roster = roster_of(net, ADMIN);
    for d in net.devices() {
        assert_eq!(d.replica.roster(), &roster, "`{}` diverged", d.name);
    }
    assert!(!admins(&roster).is_empty(), "no admin left");

    // Every device, on a blank replay, in either order of the two demotions.
    let (a, b) = (&all[p..q], &all[q..r]);
    for first_a in [true, false] {
        let mut twin = net.blank_twin();
        let (x, y) = if first_a { (a, b) } else { (b, a) };
        for name in twin.names() {
            let order = all[..p]
                .iter()
                .chain(x)
                .chain(y)
                .chain(&all[r..])
                .cloned()
                .collect::<Vec<_>>();
            for env in order {
                let res = twin.deliver(&name, env).result;
                assert!(res.is_ok(), "`{name}`: {res:?}");
            }
            assert_eq!(
                twin.device(&name).replica.roster(),
                &roster,
                "`{name}` (demotion of Lee first: {first_a})"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5. Revoked and narrowed devices
// ---------------------------------------------------------------------------------------

/// Without cutoffs, a revoked device would keep writing (its new envelopes accepted);
/// without epochs, later posts would be sealed with a key it holds; without honouring
/// envelopes before the cutoff, revoking a device would erase what it wrote while it
/// was trusted. The same for a member narrowed from clinician to scheduler.
#[test]
fn attack_revoked_device_after_cutoff() {
    let mut c = clinic(505, false);
    let net = &mut c.net;
    let log = c.clinical;
    net.post(LEE_TABLET, log, "Sara's intake form is signed", false, None);
    net.sync_all();
    let tablet_before: Vec<Envelope> = net
        .device(ADMIN)
        .store
        .log(&log)
        .into_iter()
        .filter(|e| e.header.author == net.device(LEE_TABLET).id())
        .cloned()
        .collect();
    assert!(!tablet_before.is_empty());
    let tablet = net.device(LEE_TABLET).id();
    let clinical_keys = LogId::Keys(Category::Clinical);
    net.roster_op(
        ADMIN,
        Op::RevokeDevice {
            device: tablet,
            cutoffs: vec![],
        },
    );
    sync_except(net, &[LEE_TABLET]);
    let roster = roster_of(net, ADMIN);
    assert_eq!(roster.epoch(&clinical_keys), 1);
    assert_eq!(roster.epoch(&LogId::Roster), 1);
    for name in [ADMIN, LEE, FRONT, BILLING] {
        let d = net.device(name);
        assert_eq!(d.replica.roster(), &roster);
        assert_eq!(
            d.replica.writing_slot(&LogId::Roster).map(|s| s.epoch),
            Some(1)
        );
    }
    for name in [ADMIN, LEE] {
        let w = net.device(name).replica.writing_slot(&log).expect("a key");
        assert_eq!(w.epoch, 1, "on `{name}`");
    }
    // A post after the revocation.
    net.post(ADMIN, log, "Sara moves to Thursdays", false, None);
    sync_except(net, &[LEE_TABLET]);
    let after = net.device(ADMIN).store.newest(&log).expect("post");
    assert_eq!(after.header.epoch, 1);
    // The revoked device now receives everything (as a relay might hand it over): it
    // learns no new key and cannot read the post.
    net.device_mut(LEE_TABLET).replica.set_follow_up(false);
    net.device_mut(LEE_TABLET).quiet = true;
    for env in net.authored().to_vec() {
        net.deliver(LEE_TABLET, env);
    }
    let t = net.device(LEE_TABLET);
    assert!(
        t.replica.key_slots().iter().all(|s| s.epoch == 0),
        "the revoked device holds {:?}",
        t.replica.key_slots()
    );
    assert!(t.replica.open_thread_change(&after).is_none());
    assert!(
        !t.messages(&thread_of(&log))
            .unwrap_or_default()
            .iter()
            .any(|m| m.body == "Sara moves to Thursdays")
    );

    // Its new envelopes are refused everywhere: a post, a roster op, a key grant.
    let (change, at) = draft_post(net, LEE_TABLET, &log, "Cancel all of Sara's visits");
    let old = newest_slot(net, LEE_TABLET, clinical_keys);
    let post = net.forge_sealed_at(LEE_TABLET, log, Some(old), &change, at);
    let op = forge_roster_op(
        net,
        LEE_TABLET,
        vec![],
        Op::RevokeDevice {
            device: net.device(ADMIN).id(),
            cutoffs: vec![],
        },
    );
    let k = SecretKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(5));
    let slot = KeySlot {
        log: clinical_keys,
        epoch: 1,
        key: key_id(&k),
    };
    let readers = roster.readers(Category::Clinical);
    let grant = net.forge_grants(LEE_TABLET, slot, &k, &readers);
    for name in [ADMIN, LEE, FRONT, BILLING] {
        for env in [&post, &op, &grant] {
            let r = net.deliver(name, env.clone()).result;
            assert!(
                matches!(r, Err(IngestError::NotAllowed { .. })),
                "`{name}` on {:?}: {r:?}",
                env.header.log
            );
        }
        assert_eq!(net.device(name).replica.roster(), &roster);
    }
    // Its earlier envelopes still count, even for a device that learns of the
    // revocation before them.
    let mut twin = net.blank_twin();
    let (late, early): (Vec<Envelope>, Vec<Envelope>) = net
        .authored()
        .iter()
        .cloned()
        .partition(|e| tablet_before.iter().any(|t| t.id() == e.id()));
    for env in early.into_iter().chain(late) {
        let r = twin.deliver(ADMIN, env).result;
        assert!(r.is_ok(), "{r:?}");
    }
    for e in &tablet_before {
        assert!(twin.device(ADMIN).store.contains(&e.id()));
    }
    for name in [ADMIN, LEE] {
        assert!(
            shown(net, name, &log)
                .iter()
                .any(|m| m.body == "Sara's intake form is signed")
        );
    }
    assert!(
        shown(&twin, ADMIN, &log)
            .iter()
            .any(|m| m.body == "Sara's intake form is signed")
    );

    // Lee's laptop wrote this thread while a clinician (so the narrowing records a
    // cutoff for it; in a log a narrowed device never wrote, its envelopes are held as
    // "not yet allowed" instead, never accepted).
    net.post(LEE, log, "Noted", false, None);
    sync_except(net, &[LEE_TABLET]);
    // Narrowed: Lee becomes a scheduler. Lee's laptop gets everything, yet cannot read
    // clinical posts made after the change, and its clinical envelopes are refused.
    net.roster_op(
        ADMIN,
        Op::ChangeRole {
            member: c.lee,
            role: Role::Scheduler,
            admin: false,
            cutoffs: vec![],
        },
    );
    sync_except(net, &[LEE_TABLET]);
    let roster = roster_of(net, ADMIN);
    assert_eq!(roster.epoch(&clinical_keys), 2);
    net.post(ADMIN, log, "Sara's new diagnosis code", false, None);
    sync_except(net, &[LEE_TABLET]);
    let secret_post = net.device(ADMIN).store.newest(&log).expect("post");
    assert_eq!(secret_post.header.epoch, 2);
    let l = net.device(LEE);
    assert!(l.replica.key_for(&secret_post.header).is_none());
    assert!(l.replica.open_thread_change(&secret_post).is_none());
    assert!(
        l.replica
            .key_slots()
            .iter()
            .all(|s| s.log != clinical_keys || s.epoch < 2)
    );
    assert!(
        !l.messages(&thread_of(&log))
            .unwrap_or_default()
            .iter()
            .any(|m| m.body == "Sara's new diagnosis code")
    );
    let (change, at) = draft_post(net, LEE, &log, "Sara is discharged");
    let slot = newest_slot(net, LEE, clinical_keys);
    let post = net.forge_sealed_at(LEE, log, Some(slot), &change, at);
    for name in [ADMIN, FRONT, BILLING] {
        let r = net.deliver(name, post.clone()).result;
        assert!(
            matches!(r, Err(IngestError::NotAllowed { .. })),
            "`{name}`: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. A hostile device among honest traffic, in random delivery orders
// ---------------------------------------------------------------------------------------

/// Honest traffic and a hostile device's attempts (Lee's laptop, a clinician): a
/// rewrite of Dana's message (valid envelope, refused change), a roster op although not
/// an admin, a billing key grant although not a billing reader, and an altered copy of
/// its own envelope. Returns the network after in-order delivery, every envelope
/// (honest and hostile, creation order) and the forged message bodies.
fn hostile_history(seed: u64) -> (Network, Vec<Envelope>, Vec<&'static str>) {
    let mut c = clinic(seed, false);
    let net = &mut c.net;
    let log = c.clinical;
    let mut extra = Vec::new();
    let from_dana = net.post(ADMIN, log, "Sara's plan of care", false, None);
    net.post(FRONT, c.scheduling, "Room 2 is free Friday", false, None);
    net.sync_all();
    let at = net.tick();
    let change = forge_change(net, LEE, LEE, &log, at, move |d| {
        let msgs = map_at(d, &ROOT, "messages");
        let msg = map_at(d, &msgs, &from_dana);
        d.put(&msg, "body", "FORGED plan").expect("put");
    });
    let env = net.forge_sealed_at(LEE, log, None, &change, at);
    net.commit(LEE, env);
    net.post(LEE, log, "Lee's honest note", false, None);
    let deps = net.device(LEE).replica.roster_heads().to_vec();
    let op = forge_roster_op(
        net,
        LEE,
        deps,
        Op::AddMember {
            member: MemberId([7; 16]),
            name: "FORGED admin".into(),
            role: Role::Billing,
            admin: true,
        },
    );
    net.commit(LEE, op);
    let k = SecretKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed));
    let slot = KeySlot {
        log: LogId::Keys(Category::Billing),
        epoch: 0,
        key: key_id(&k),
    };
    let readers = net.device(ADMIN).replica.roster().all_devices();
    extra.push(net.forge_grants(LEE, slot, &k, &readers));
    let (change, at) = draft_post(net, LEE, &log, "FORGED altered");
    let mut altered = net.forge_sealed_at(LEE, log, None, &change, at);
    altered.header.at_ms += 1;
    extra.push(altered);
    net.post(ADMIN, log, "Dana's follow-up", false, None);
    net.post(BILLING, c.scheduling, "Invoices sent", false, None);
    net.sync_all();
    let mut all = net.authored().to_vec();
    all.extend(extra);
    (c.net, all, vec!["FORGED plan", "FORGED altered"])
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(8) })]

    /// Without the defenses above, some delivery order would let a forgery through on
    /// some device: a rewritten message, a "FORGED admin" member, a billing key held by
    /// a clinician, or devices disagreeing on what a thread shows.
    #[test]
    fn hostile_device_never_changes_what_honest_devices_show(
        picks in prop::collection::vec(any::<Index>(), 1..64),
    ) {
        let (net, all, forged) = hostile_history(606);
        let roster = roster_of(&net, ADMIN);
        prop_assert!(roster.member_by_name("FORGED admin").is_none());
        let mut twin = net.blank_twin();
        for name in [ADMIN, LEE_TABLET, FRONT, BILLING] {
            for env in shuffled(&all, &picks) {
                twin.deliver(name, env);
            }
            // A second round, as the next sync would offer what is still missing.
            for env in all.clone() {
                twin.deliver(name, env);
            }
            let d = twin.device(name);
            prop_assert_eq!(d.replica.roster(), &roster, "roster on `{}`", name);
            prop_assert!(d.store.in_accept_order().all(|e| e.verify().is_ok()));
            // At most the hostile grant waits (its author never becomes a billing reader).
            prop_assert!(d.replica.pending_count() <= 1, "`{}` holds {}", name, d.replica.pending_count());
            prop_assert!(d.replica.threads().len() >= 2, "`{}` replayed no threads", name);
            prop_assert!(
                !d.replica.key_slots().iter().any(|s| s.log == LogId::Keys(Category::Billing)
                    && name != BILLING),
                "`{}` holds a billing key", name
            );
            for (thread, _) in d.replica.threads() {
                let here = d.messages(&thread);
                let there = net.device(name).messages(&thread);
                prop_assert_eq!(&here, &there, "thread {:?} on `{}`", thread, name);
                for m in here.unwrap_or_default() {
                    prop_assert!(!forged.contains(&m.body.as_str()), "`{}` shows {}", name, m.body);
                }
            }
        }
        // The honest devices of the in-order run agree with each other too.
        for name in [LEE_TABLET] {
            for (thread, _) in net.device(name).replica.threads() {
                prop_assert_eq!(net.device(name).messages(&thread), net.device(ADMIN).messages(&thread));
            }
        }
    }
}

/// An admin's modified client sets the idle lock, the offline lease and emergency access
/// outside their ranges (e.g. an idle lock of 0 minutes, a lease of 10 years): its own
/// node would refuse it, so the client forges the operation. Every device stores it and
/// rejects it: the safeguards stay as they were.
#[test]
fn attack_admin_switches_safeguards_off() {
    let mut c = clinic(406, true);
    let net = &mut c.net;
    let before = roster_of(net, ADMIN);
    for name in net.names() {
        net.device_mut(&name).take_notices();
    }
    let mut policy = before.policy.clone();
    for (idle, lease, emergency) in [(0, 7, 60), (15, 3650, 60), (15, 7, 0), (15, 7, 100_000)] {
        policy.safeguards.idle_lock_minutes = idle;
        policy.safeguards.offline_lease_days = lease;
        policy.safeguards.emergency_minutes = emergency;
        let deps = net.device(LEE).replica.roster_heads().to_vec();
        let op = Op::SetPolicy {
            policy: policy.clone(),
            cutoffs: vec![],
        };
        let env = forge_roster_op(net, LEE, deps, op);
        let env = net.commit(LEE, env);
        net.sync_all();
        for name in net.names() {
            let d = net.device_mut(&name);
            assert!(d.store.contains(&env.id()), "`{name}` stores it");
            assert_eq!(
                d.replica.roster().policy.safeguards,
                before.policy.safeguards,
                "`{name}` applied safeguards {idle}/{lease}/{emergency}"
            );
            let notices = d.take_notices();
            assert!(
                notices
                    .iter()
                    .any(|n| matches!(n, Notice::RosterRejected(id, _) if *id == env.id())),
                "`{name}` did not reject it: {notices:?}"
            );
        }
    }
}
