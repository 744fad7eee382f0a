//! Enrollment by one-time invitation. An admin's device makes an [`Invitation`] (a
//! 256-bit secret, an opaque clinic tag, the inviter's device id and addresses) shown as
//! a string. The new device proves it holds the secret in a Noise `XXpsk3` handshake
//! (snow) with the secret as pre-shared key, and sends its device keys inside it; the
//! inviter answers with the clinic's genesis, or a refusal that says why. The joiner
//! accepts the genesis only if it is validly signed and is the clinic the invitation's
//! tag names. Both sides are sans-IO state machines: bytes in, bytes out.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::identity::{DevicePublic, DeviceSecret};
use super::ids::{ClinicId, DeviceId, MemberId};
use super::policy::Role;
use super::roster::SignedGenesis;

const PATTERN: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
const PREFIX: &str = "huddle-invite:";
const MAX_NOISE: usize = 65535;

/// An opaque 8-byte tag derived from a clinic id: safe to show on the LAN (mDNS TXT).
pub fn clinic_tag(clinic: &ClinicId) -> [u8; 8] {
    let d = Sha256::new()
        .chain_update(b"huddle/clinic-tag/v1")
        .chain_update(clinic.0)
        .finalize();
    d[..8].try_into().unwrap_or([0; 8])
}

/// What the invited device is given, as a string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Invitation {
    pub id: [u8; 8],
    pub secret: [u8; 32],
    pub clinic_tag: [u8; 8],
    #[zeroize(skip)]
    pub inviter: DeviceId,
    pub addrs: Vec<String>,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Invitation({}, {} addrs)",
            hex::encode(self.id),
            self.addrs.len()
        )
    }
}

/// What the inviter keeps about an invitation it made.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Issued {
    pub id: [u8; 8],
    pub secret: [u8; 32],
    pub name: String,
    #[zeroize(skip)]
    pub role: Role,
    pub admin: bool,
    pub expires_ms: u64,
    #[zeroize(skip)]
    pub state: IssuedState,
    /// Set for a device invitation: the existing member the new device joins (`name`
    /// is then that member's name, `role` and `admin` theirs when it was issued, and
    /// not applied). Appended: a record of the previous release has no such field and
    /// reads as `None` ([`Issued::decode`]); a previous release reading this record
    /// ignores the trailing field and takes it for an invitation creating a member of
    /// that name, which its roster refuses as a taken name (fails closed).
    #[zeroize(skip)]
    pub for_member: Option<MemberId>,
}

/// [`Issued`] as the previous release stored it.
#[derive(Deserialize)]
struct IssuedV1 {
    id: [u8; 8],
    secret: [u8; 32],
    name: String,
    role: Role,
    admin: bool,
    expires_ms: u64,
    state: IssuedState,
}

/// Where an issued invitation stands. Encoded as one byte, 0 or 1 as the `used: bool`
/// that records made before cancelling existed hold, so those still read.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum IssuedState {
    Open,
    Used,
    Cancelled,
}

/// Why enrollment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    #[error("not a Huddle invitation")]
    Malformed,
    #[error("this invitation is not known to the inviting device")]
    Unknown,
    #[error("this invitation has already been used")]
    Used,
    #[error("this invitation has been cancelled")]
    Cancelled,
    #[error("this invitation has expired")]
    Expired,
    #[error("the invitation secret does not match (wrong or altered invitation)")]
    WrongSecret,
    #[error(
        "a member named `{0}` already exists in this clinic, so this invitation cannot create \
         it; the invitation stays open (an admin can cancel it, or free the name)"
    )]
    NameTaken(String),
    #[error(
        "{0} is no longer a member of this clinic, so this device invitation cannot add a \
         device for them; an admin can restore them and issue a new one"
    )]
    MemberGone(String),
    #[error(
        "the inviting device sent another clinic than the one the invitation names; nothing \
         was joined"
    )]
    WrongClinic,
    #[error("the inviter refused: {0}")]
    Refused(String),
    #[error("enrollment handshake failed: {0}")]
    Handshake(String),
}

impl Invitation {
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode(postcard::to_stdvec(self).unwrap_or_default())
        )
    }

    pub fn parse(text: &str) -> Result<Invitation, InviteError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(InviteError::Malformed)?;
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| InviteError::Malformed)?,
        );
        postcard::from_bytes(&bytes).map_err(|_| InviteError::Malformed)
    }
}

impl Issued {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(postcard::to_stdvec(self).unwrap_or_default())
    }

    /// Reads a record of this release or of the previous one.
    pub fn decode(bytes: &[u8]) -> Result<Issued, postcard::Error> {
        if let Ok(issued) = postcard::from_bytes::<Issued>(bytes) {
            return Ok(issued);
        }
        let mut old: IssuedV1 = postcard::from_bytes(bytes)?;
        let issued = Issued {
            id: old.id,
            secret: old.secret,
            name: std::mem::take(&mut old.name),
            role: old.role,
            admin: old.admin,
            expires_ms: old.expires_ms,
            state: old.state,
            for_member: None,
        };
        old.secret.zeroize();
        Ok(issued)
    }

    /// Whether it may be redeemed at `now_ms`.
    pub fn check(&self, now_ms: u64) -> Result<(), InviteError> {
        match self.state {
            IssuedState::Used => Err(InviteError::Used),
            IssuedState::Cancelled => Err(InviteError::Cancelled),
            IssuedState::Open if now_ms > self.expires_ms => Err(InviteError::Expired),
            IssuedState::Open => Ok(()),
        }
    }
}

/// Checks that `bytes` are a validly signed genesis of the clinic whose tag is `tag`.
pub fn check_genesis(bytes: &[u8], tag: &[u8; 8]) -> Result<SignedGenesis, InviteError> {
    let genesis = SignedGenesis::decode(bytes)
        .map_err(|_| InviteError::Handshake("the clinic genesis does not decode".into()))?;
    genesis
        .verify()
        .map_err(|_| InviteError::Handshake("the clinic genesis is not validly signed".into()))?;
    if clinic_tag(&genesis.clinic_id()) != *tag {
        return Err(InviteError::WrongClinic);
    }
    Ok(genesis)
}

/// Frames of the enrollment exchange.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Frame {
    /// Joiner → inviter: which invitation, and Noise message 1.
    Open { id: [u8; 8], noise: Vec<u8> },
    /// Inviter → joiner: Noise message 2.
    Noise(Vec<u8>),
    /// Joiner → inviter: Noise message 3, carrying the joiner's device keys.
    Keys(Vec<u8>),
    /// Inviter → joiner: the genesis, encrypted with the handshake's transport key.
    Welcome(Vec<u8>),
    /// Either way: why enrollment stopped (plain text, no secrets).
    Refused(String),
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
    pub fn decode(bytes: &[u8]) -> Result<Frame, InviteError> {
        postcard::from_bytes(bytes).map_err(|_| InviteError::Handshake("malformed frame".into()))
    }
}

fn noise_err(e: snow::Error) -> InviteError {
    InviteError::Handshake(e.to_string())
}

fn builder<'a>(
    secret: &'a Zeroizing<[u8; 32]>,
    psk: &'a [u8; 32],
) -> Result<snow::Builder<'a>, InviteError> {
    let params = PATTERN.parse().map_err(noise_err)?;
    snow::Builder::new(params)
        .local_private_key(secret.as_ref())
        .and_then(|b| b.psk(3, psk))
        .and_then(|b| b.prologue(b"huddle/enroll/v1"))
        .map_err(noise_err)
}

/// The new device's side.
pub struct Joiner {
    hs: snow::HandshakeState,
    keys: DevicePublic,
    /// The clinic the invitation names: the genesis received must be this clinic's.
    clinic_tag: [u8; 8],
}

impl Joiner {
    /// Starts the handshake; returns the first frame to send.
    pub fn start(me: &DeviceSecret, invite: &Invitation) -> Result<(Joiner, Frame), InviteError> {
        let secret = me.exchange_secret();
        let mut hs = builder(&secret, &invite.secret)?
            .build_initiator()
            .map_err(noise_err)?;
        let mut buf = vec![0u8; MAX_NOISE];
        let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
        buf.truncate(n);
        Ok((
            Joiner {
                hs,
                keys: me.public(),
                clinic_tag: invite.clinic_tag,
            },
            Frame::Open {
                id: invite.id,
                noise: buf,
            },
        ))
    }

    /// Handles the inviter's Noise reply; returns the frame carrying our keys.
    pub fn on_noise(&mut self, frame: Frame) -> Result<Frame, InviteError> {
        let msg = match frame {
            Frame::Noise(m) => m,
            Frame::Refused(why) => return Err(InviteError::Refused(why)),
            _ => return Err(InviteError::Handshake("unexpected frame".into())),
        };
        let mut buf = vec![0u8; MAX_NOISE];
        self.hs.read_message(&msg, &mut buf).map_err(noise_err)?;
        let payload = postcard::to_stdvec(&self.keys).unwrap_or_default();
        let n = self
            .hs
            .write_message(&payload, &mut buf)
            .map_err(noise_err)?;
        buf.truncate(n);
        Ok(Frame::Keys(buf))
    }

    /// Handles the verdict; returns the clinic's genesis, checked to be validly signed and
    /// to be the clinic the invitation names ([`InviteError::WrongClinic`] if not).
    pub fn on_verdict(self, frame: Frame) -> Result<SignedGenesis, InviteError> {
        let sealed = match frame {
            Frame::Welcome(s) => s,
            Frame::Refused(why) => return Err(InviteError::Refused(why)),
            _ => return Err(InviteError::Handshake("unexpected frame".into())),
        };
        let mut transport = self.hs.into_transport_mode().map_err(noise_err)?;
        let mut buf = vec![0u8; MAX_NOISE];
        let n = transport
            .read_message(&sealed, &mut buf)
            .map_err(noise_err)?;
        check_genesis(&buf[..n], &self.clinic_tag)
    }
}

/// The inviting device's side, after it has looked up the invitation named in `Open`.
pub struct Inviter {
    hs: snow::HandshakeState,
}

impl Inviter {
    /// Answers `Open` for an invitation whose secret is `psk`.
    pub fn accept(
        me: &DeviceSecret,
        psk: &[u8; 32],
        noise: &[u8],
    ) -> Result<(Inviter, Frame), InviteError> {
        let secret = me.exchange_secret();
        let mut hs = builder(&secret, psk)?
            .build_responder()
            .map_err(noise_err)?;
        let mut buf = vec![0u8; MAX_NOISE];
        hs.read_message(noise, &mut buf).map_err(noise_err)?;
        let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
        buf.truncate(n);
        Ok((Inviter { hs }, Frame::Noise(buf)))
    }

    /// Reads the joiner's keys; fails with `WrongSecret` if it did not hold the secret.
    pub fn on_keys(&mut self, frame: Frame) -> Result<DevicePublic, InviteError> {
        let Frame::Keys(msg) = frame else {
            return Err(InviteError::Handshake("unexpected frame".into()));
        };
        let mut buf = vec![0u8; MAX_NOISE];
        let n = self
            .hs
            .read_message(&msg, &mut buf)
            .map_err(|_| InviteError::WrongSecret)?;
        let keys: DevicePublic = postcard::from_bytes(&buf[..n])
            .map_err(|_| InviteError::Handshake("bad keys".into()))?;
        if self.hs.get_remote_static() != Some(&keys.exchange[..]) {
            return Err(InviteError::Handshake(
                "device keys do not match the handshake".into(),
            ));
        }
        Ok(keys)
    }

    /// Seals the genesis for the joiner.
    pub fn welcome(self, genesis: &[u8]) -> Result<Frame, InviteError> {
        let mut transport = self.hs.into_transport_mode().map_err(noise_err)?;
        let mut buf = vec![0u8; MAX_NOISE];
        let n = transport
            .write_message(genesis, &mut buf)
            .map_err(noise_err)?;
        buf.truncate(n);
        Ok(Frame::Welcome(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn invite(secret: [u8; 32], clinic_tag: [u8; 8]) -> Invitation {
        Invitation {
            id: [1; 8],
            secret,
            clinic_tag,
            inviter: DeviceId([3; 32]),
            addrs: vec!["127.0.0.1:4000".into()],
        }
    }

    /// Runs the handshake for `invite` against an inviter holding `psk` that welcomes
    /// with `genesis`; returns the joiner's verdict.
    fn enroll(
        invite: &Invitation,
        psk: [u8; 32],
        genesis: &[u8],
        rng: &mut rand_chacha::ChaCha20Rng,
    ) -> Result<SignedGenesis, InviteError> {
        let (admin, newbie) = (DeviceSecret::generate(rng), DeviceSecret::generate(rng));
        let (mut j, open) = Joiner::start(&newbie, invite)?;
        let Frame::Open { noise, .. } = open else {
            panic!("open")
        };
        let (mut inv, reply) = Inviter::accept(&admin, &psk, &noise)?;
        let keys = inv.on_keys(j.on_noise(reply)?)?;
        assert_eq!(keys, newbie.public());
        j.on_verdict(inv.welcome(genesis)?)
    }

    #[test]
    fn invitation_strings_round_trip() {
        let i = invite([9; 32], [2; 8]);
        assert_eq!(Invitation::parse(&i.encode()), Ok(i.clone()));
        assert_eq!(
            Invitation::parse("huddle-invite:@@@"),
            Err(InviteError::Malformed)
        );
        assert_eq!(
            Invitation::parse(&i.encode()[1..]),
            Err(InviteError::Malformed)
        );
    }

    #[test]
    fn the_right_secret_enrolls_and_a_wrong_one_fails() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let founder = DeviceSecret::generate(&mut rng);
        let genesis = SignedGenesis::new(&founder, 1, [5; 16]);
        let tag = clinic_tag(&genesis.clinic_id());
        assert_eq!(
            enroll(&invite([7; 32], tag), [7; 32], &genesis.encode(), &mut rng),
            Ok(genesis.clone())
        );
        assert_eq!(
            enroll(&invite([6; 32], tag), [7; 32], &genesis.encode(), &mut rng),
            Err(InviteError::WrongSecret)
        );
    }

    #[test]
    fn a_welcome_with_another_clinics_genesis_is_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let ours = SignedGenesis::new(&DeviceSecret::generate(&mut rng), 1, [1; 16]);
        let theirs = SignedGenesis::new(&DeviceSecret::generate(&mut rng), 1, [2; 16]);
        let invite = invite([7; 32], clinic_tag(&ours.clinic_id()));
        assert_eq!(
            enroll(&invite, [7; 32], &theirs.encode(), &mut rng),
            Err(InviteError::WrongClinic)
        );
        // A genesis whose signature does not hold, and bytes that are no genesis.
        let mut forged = ours.clone();
        forged.genesis.created_ms += 1;
        let err = enroll(&invite, [7; 32], &forged.encode(), &mut rng).unwrap_err();
        assert!(matches!(err, InviteError::Handshake(_)), "{err}");
        let err = enroll(&invite, [7; 32], b"genesis", &mut rng).unwrap_err();
        assert!(matches!(err, InviteError::Handshake(_)), "{err}");
        assert_eq!(enroll(&invite, [7; 32], &ours.encode(), &mut rng), Ok(ours));
    }

    #[test]
    fn records_of_the_previous_release_still_read_and_new_ones_fail_closed_there() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct V1 {
            id: [u8; 8],
            secret: [u8; 32],
            name: String,
            role: Role,
            admin: bool,
            expires_ms: u64,
            state: IssuedState,
        }
        let v1 = V1 {
            id: [1; 8],
            secret: [2; 32],
            name: "Ann".into(),
            role: Role::Clinician,
            admin: false,
            expires_ms: 9,
            state: IssuedState::Open,
        };
        let old = Issued::decode(&postcard::to_stdvec(&v1).unwrap()).unwrap();
        assert_eq!((old.name.as_str(), old.for_member), ("Ann", None));
        assert_eq!(old.secret, [2; 32]);
        let mut device = old.clone();
        device.for_member = Some(MemberId([5; 16]));
        let bytes = device.encode();
        assert!(Issued::decode(&bytes).unwrap() == device);
        // The previous release reads a member invitation for a name that exists.
        let seen_by_v1: V1 = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(seen_by_v1, v1);
        let v1_bytes = postcard::to_stdvec(&v1).unwrap();
        assert!(Issued::decode(&v1_bytes[..v1_bytes.len() - 2]).is_err());
    }

    #[test]
    fn used_cancelled_and_expired_invitations_are_refused() {
        let mut issued = Issued {
            id: [1; 8],
            secret: [0; 32],
            name: "N".into(),
            role: Role::Clinician,
            admin: false,
            expires_ms: 100,
            state: IssuedState::Open,
            for_member: None,
        };
        assert_eq!(issued.check(50), Ok(()));
        assert_eq!(issued.check(101), Err(InviteError::Expired));
        issued.state = IssuedState::Used;
        assert_eq!(issued.check(50), Err(InviteError::Used));
        issued.state = IssuedState::Cancelled;
        assert_eq!(issued.check(50), Err(InviteError::Cancelled));
    }

    /// Records written when the state was a `used: bool` still read, with the same meaning.
    #[test]
    fn records_from_before_cancelling_still_read() {
        #[derive(Serialize)]
        struct Before {
            id: [u8; 8],
            secret: [u8; 32],
            name: String,
            role: Role,
            admin: bool,
            expires_ms: u64,
            used: bool,
        }
        for (used, state) in [(false, IssuedState::Open), (true, IssuedState::Used)] {
            let bytes = postcard::to_stdvec(&Before {
                id: [1; 8],
                secret: [2; 32],
                name: "Lee".into(),
                role: Role::Billing,
                admin: true,
                expires_ms: 7,
                used,
            })
            .unwrap();
            let issued = Issued::decode(&bytes).unwrap();
            assert_eq!(issued.state, state);
            assert_eq!(
                (issued.role, issued.admin, issued.expires_ms),
                (Role::Billing, true, 7)
            );
        }
    }
}
