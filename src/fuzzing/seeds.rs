//! Seed inputs for each fuzz target, built from a real clinic (see `clinic`) so the
//! fuzzer starts from valid structure. Written to `fuzz/seeds/<target>/` by the ignored
//! test `write_fuzz_seeds` in `tests/fuzz_regressions.rs`.

use super::{clinic, join_frames};
use crate::core::envelope::Envelope;
use crate::core::identity::DeviceSecret;
use crate::core::ids::{ClinicId, DeviceId};
use crate::core::invite::{Frame, Invitation, Issued, IssuedState};
use crate::core::policy::Role;
use crate::core::replica::KeySlot;
use crate::core::sync::{Message, Summary};
use crate::node::ThreadSummary;
use crate::node::bundle;

/// Every seed: target, file name, bytes.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_string(), bytes));
    };
    let history = clinic::history();
    let encoded: Vec<Vec<u8>> = history.iter().map(Envelope::encode).collect();
    for (i, env) in history.iter().enumerate().take(12) {
        add("envelope", &format!("history-{i:02}"), env.encode());
    }

    let mut theirs = Summary::default();
    for env in history {
        let h = &env.header;
        theirs.chains.insert((h.log, h.author), h.seq + 1);
    }
    let sync = [
        Message::Hello {
            clinic: ClinicId([1; 32]),
            digest: [0; 32],
            features: crate::core::sync::Features::THIS_RELEASE,
        },
        Message::Summary(theirs),
        Message::Envelopes(encoded.iter().take(3).cloned().collect()),
        Message::Done,
        Message::Push(encoded.iter().skip(3).take(2).cloned().collect()),
    ]
    .map(|m| m.encode());
    add(
        "sync_message",
        "session",
        join_frames(sync.iter().map(Vec::as_slice)),
    );
    for (i, m) in sync.iter().enumerate() {
        add(
            "sync_message",
            &format!("message-{i}"),
            join_frames([&m[..]]),
        );
    }

    let pass: [&[u8]; 4] = [&[], &[], &[], &[]];
    add("enroll_frame", "honest", join_frames(pass));
    let refused = Frame::Refused("no".into()).encode();
    let welcome = Frame::Welcome(vec![0; 80]).encode();
    add(
        "enroll_frame",
        "refused",
        join_frames([&[][..], &refused[..]]),
    );
    add(
        "enroll_frame",
        "bad-welcome",
        join_frames([&[][..], &[], &[], &welcome[..]]),
    );

    let genesis = clinic::genesis();
    let invite = Invitation {
        id: [1; 8],
        secret: [2; 32],
        clinic_tag: [3; 8],
        inviter: DeviceId([4; 32]),
        addrs: vec!["/ip4/127.0.0.1/tcp/4000".into()],
    };
    add("invitation", "invite", invite.encode().into_bytes());
    let keys = DeviceSecret::from_bytes(&[8; 64]).public();
    add("invitation", "device-keys", keys.to_string().into_bytes());

    if let Ok(mut w) = bundle::Writer::new(Vec::new(), &genesis.encode()) {
        for env in encoded.iter().take(4) {
            let _ = w.record(env);
        }
        if let Ok((bytes, _)) = w.finish() {
            add("bundle", "export", bytes);
        }
    }

    let env = &history[0];
    let slot = KeySlot::of(&env.header);
    let record = |tree: u8, parts: &[&[u8]]| {
        let mut v = vec![tree];
        parts.iter().for_each(|p| v.extend_from_slice(p));
        v
    };
    let h = &env.header;
    add(
        "store_records",
        "envelope",
        record(0, &[&env.id().0, &env.encode()]),
    );
    add(
        "store_records",
        "head",
        record(
            1,
            &[
                &h.log.key_bytes(),
                &h.author.0,
                &h.seq.to_be_bytes(),
                &env.id().0,
            ],
        ),
    );
    add(
        "store_records",
        "key",
        record(2, &[&slot.to_bytes(), &[5; 32]]),
    );
    add(
        "store_records",
        "granted",
        record(3, &[&slot.to_bytes(), &h.author.0]),
    );
    let snapshot = postcard::to_stdvec(&(clinic::saved_doc(), vec![(h.author, 3u64)]));
    if let Ok(s) = snapshot {
        add("store_records", "snapshot", record(4, &[&s]));
    }
    add("store_records", "doc", record(4, &[clinic::saved_doc()]));
    let summary = ThreadSummary {
        thread: crate::core::ids::ThreadId([0; 16]),
        mentions_unread: 0,
        id: "00".into(),
        category: "clinical".into(),
        readable: true,
        subject: None,
        title: Some("Follow-up".into()),
        messages: 2,
        unread: 1,
        urgent_unread: 0,
        open_tasks: 1,
        last_ms: Some(5),
        envelopes: 3,
    };
    if let Ok(json) = serde_json::to_vec(&summary) {
        add("store_records", "summary", record(5, &[&json]));
    }
    let issued = Issued {
        id: [1; 8],
        secret: [2; 32],
        name: "Bo".into(),
        role: Role::Scheduler,
        admin: false,
        expires_ms: 9,
        state: IssuedState::Open,
        for_member: None,
    };
    if let Ok(bytes) = postcard::to_stdvec(&issued) {
        add("store_records", "invite", record(6, &[&bytes]));
    }
    add("store_records", "genesis", record(7, &[&genesis.encode()]));

    for (name, change) in clinic::seeds() {
        add("thread_change", name, change);
    }

    control_seeds(&mut add);
    out
}

/// Requests and replies of the control socket, one of each common shape.
fn control_seeds(add: &mut impl FnMut(&'static str, &str, Vec<u8>)) {
    use crate::host::control::protocol::{
        Answer, Command, Reply, Request, VERSION, WireProof, encode_reply, encode_request,
    };
    use crate::node::{Op, OpResult, TaskRequest};
    let requests = [
        ("status", Command::Run(Op::Status), WireProof::None),
        (
            "post",
            Command::Run(Op::Post {
                thread: "3fa8".into(),
                text: "Who can cover the 3pm?".into(),
                urgent: true,
                task: Some(TaskRequest {
                    assignee: "Sam K.".into(),
                    due: "2026-12-24".into(),
                }),
                id: Some([7; 8]),
                reply_to: Some("0011".into()),
            }),
            WireProof::Token("ab".repeat(32)),
        ),
        (
            "unlock",
            Command::Unlock,
            WireProof::Passphrase("front desk passphrase".into()),
        ),
        ("lock", Command::Lock, WireProof::None),
    ];
    for (name, command, proof) in requests {
        let request = Request {
            version: VERSION,
            proof,
            command,
        };
        add(
            "control_request",
            &format!("request-{name}"),
            encode_request(&request).to_vec(),
        );
    }
    let reply = Reply::new(Answer::Done(OpResult::Message("0011223344556677".into())));
    add(
        "control_request",
        "reply-posted",
        encode_reply(&reply).to_vec(),
    );
}
