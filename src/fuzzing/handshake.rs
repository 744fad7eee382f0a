//! The `enroll_frame` target: a real enrollment handshake between a [`Joiner`] and an
//! [`Inviter`] with a hostile party in the middle that may replace any frame.

use std::sync::OnceLock;

use super::frames;
use crate::core::identity::DeviceSecret;
use crate::core::invite::{Frame, Invitation, Inviter, Joiner, clinic_tag};
use crate::core::roster::SignedGenesis;

struct Parties {
    joiner: DeviceSecret,
    inviter: DeviceSecret,
    genesis: SignedGenesis,
    invite: Invitation,
}

fn parties() -> &'static Parties {
    static PARTIES: OnceLock<Parties> = OnceLock::new();
    PARTIES.get_or_init(|| {
        let inviter = DeviceSecret::from_bytes(&[6; 64]);
        let genesis = SignedGenesis::new(&inviter, 1_700_000_000_000, [3; 16]);
        let invite = Invitation {
            id: [1; 8],
            secret: [2; 32],
            clinic_tag: clinic_tag(&genesis.clinic_id()),
            inviter: inviter.id(),
            addrs: vec!["/ip4/127.0.0.1/tcp/4000".into()],
        };
        Parties {
            joiner: DeviceSecret::from_bytes(&[5; 64]),
            inviter,
            genesis,
            invite,
        }
    })
}

/// What the hostile party does with one frame in flight.
enum Relay {
    Pass(Frame),
    Replaced(Frame),
    /// Bytes that are no frame: the receiver hangs up.
    Garbage,
}

fn relay(real: Frame, replacement: Option<&[u8]>) -> Relay {
    match replacement {
        None | Some([]) => Relay::Pass(real),
        Some(bytes) => match Frame::decode(bytes) {
            Ok(frame) => {
                let again = Frame::decode(&frame.encode());
                assert_eq!(again.as_ref(), Ok(&frame), "frame round trip");
                Relay::Replaced(frame)
            }
            Err(_) => Relay::Garbage,
        },
    }
}

/// One frame per input frame (see [`frames`]): an empty one lets the real frame through,
/// any other replaces it. Whatever is replaced, the inviter learns no keys but the
/// joiner's and the joiner accepts no genesis but the clinic's.
pub fn enroll_frame(data: &[u8]) {
    let _ = Frame::decode(data);
    let p = parties();
    let mut script = frames(data);
    let mut tampered = false;
    let mut step = |real: Frame, tampered: &mut bool| match relay(real, script.next()) {
        Relay::Pass(f) => Some(f),
        Relay::Replaced(f) => {
            *tampered = true;
            Some(f)
        }
        Relay::Garbage => None,
    };

    let Ok((mut joiner, open)) = Joiner::start(&p.joiner, &p.invite) else {
        panic!("the joiner starts");
    };
    let Some(Frame::Open { id, noise }) = step(open, &mut tampered) else {
        return;
    };
    if id != p.invite.id {
        return;
    }
    let reply = match Inviter::accept(&p.inviter, &p.invite.secret, &noise) {
        Ok((inviter, reply)) => Some((inviter, reply)),
        Err(e) => {
            let _ = joiner.on_noise(Frame::Refused(e.to_string()));
            None
        }
    };
    let Some((mut inviter, reply)) = reply else {
        return;
    };
    let Some(reply) = step(reply, &mut tampered) else {
        return;
    };
    let Ok(keys) = joiner.on_noise(reply) else {
        return;
    };
    let Some(keys) = step(keys, &mut tampered) else {
        return;
    };
    match inviter.on_keys(keys) {
        Ok(learned) => assert_eq!(learned, p.joiner.public(), "inviter learned other keys"),
        Err(_) => return,
    }
    let Ok(welcome) = inviter.welcome(&p.genesis.encode()) else {
        panic!("the inviter seals the genesis");
    };
    let Some(welcome) = step(welcome, &mut tampered) else {
        return;
    };
    match joiner.on_verdict(welcome) {
        Ok(genesis) => assert_eq!(genesis, p.genesis, "joiner accepted another genesis"),
        Err(e) => assert!(tampered, "an untampered handshake failed: {e}"),
    }
}
