//! Invitations on the inviting device (issue, look up, redeem once), joining on the new
//! device, and the remembered peer addresses.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;
use zeroize::Zeroizing;

use crate::core::identity::DevicePublic;
use crate::core::ids::DeviceId;
use crate::core::invite::{Invitation, InviteError, Issued, clinic_tag};
use crate::core::policy::Role;
use crate::core::replica::{AuthorError, Replica};
use crate::core::roster::{RosterError, SignedGenesis};
use crate::node::{GENESIS_KEY, INVITER_KEY, Node, NodeError, now_ms};

const LISTEN_KEY: &[u8] = b"listen";
use crate::store::{Sealed, StoreError};

impl Node {
    /// Issues a one-time invitation for a new member's device (admins only).
    pub fn create_invite(
        &mut self,
        name: &str,
        role: Role,
        admin: bool,
        valid_for: Duration,
        addrs: Vec<String>,
    ) -> Result<Invitation, NodeError> {
        let me = self.me()?;
        if !me.admin {
            return Err(AuthorError::Roster(RosterError::NotAdmin).into());
        }
        if name.trim().is_empty() {
            return Err(AuthorError::Roster(RosterError::EmptyName).into());
        }
        if self.replica()?.roster().member_by_name(name).is_some() {
            return Err(
                AuthorError::Roster(RosterError::DuplicateName(name.trim().to_string())).into(),
            );
        }
        let mut rng = rand::rng();
        let mut issued = Issued {
            id: [0; 8],
            secret: [0; 32],
            name: name.trim().to_string(),
            role,
            admin,
            expires_ms: now_ms().saturating_add(valid_for.as_millis() as u64),
            used: false,
        };
        rng.fill_bytes(&mut issued.id);
        rng.fill_bytes(&mut issued.secret);
        self.save_issued(&issued)?;
        self.store.flush()?;
        Ok(Invitation {
            id: issued.id,
            secret: issued.secret,
            clinic_tag: clinic_tag(&self.replica()?.clinic()),
            inviter: self.secret.id(),
            addrs,
        })
    }

    fn save_issued(&self, issued: &Issued) -> Result<(), NodeError> {
        let bytes = Zeroizing::new(postcard::to_stdvec(issued).unwrap_or_default());
        self.store.put_sealed(Sealed::Invites, &issued.id, &bytes)?;
        Ok(())
    }

    fn issued(&self, id: &[u8; 8]) -> Result<Issued, NodeError> {
        let bytes = self
            .store
            .get_sealed(Sealed::Invites, id)?
            .ok_or(InviteError::Unknown)?;
        postcard::from_bytes(&bytes).map_err(|_| {
            StoreError::Corrupt {
                tree: "invites",
                key: hex::encode(id),
                why: "does not decode",
            }
            .into()
        })
    }

    /// The secret of a redeemable invitation (for the handshake's pre-shared key).
    pub fn invite_secret(&self, id: &[u8; 8]) -> Result<Zeroizing<[u8; 32]>, NodeError> {
        let issued = self.issued(id)?;
        issued.check(now_ms())?;
        Ok(Zeroizing::new(issued.secret))
    }

    /// Redeems an invitation for the device that proved it held the secret: marks it
    /// used (durably, first), enrolls the member and device, returns the genesis.
    pub fn redeem_invite(
        &mut self,
        id: &[u8; 8],
        device: DevicePublic,
    ) -> Result<Vec<u8>, NodeError> {
        let mut issued = self.issued(id)?;
        issued.check(now_ms())?;
        issued.used = true;
        self.save_issued(&issued)?;
        self.store.flush()?;
        let member = match self.replica()?.roster().member_by_name(&issued.name) {
            Some(m) => m.name.clone(),
            None => {
                self.add_member(&issued.name, issued.role, issued.admin)?;
                issued.name.clone()
            }
        };
        self.add_device(&member, device)?;
        Ok(self.replica()?.genesis().encode())
    }

    /// Adopts the clinic of a genesis received from the device that enrolled this one.
    pub fn join_clinic(&mut self, genesis: &[u8], inviter: DeviceId) -> Result<(), NodeError> {
        if self.replica.is_some() {
            return Err(NodeError::AlreadyInClinic);
        }
        let genesis = SignedGenesis::decode(genesis)
            .map_err(|_| InviteError::Handshake("bad genesis".into()))?;
        let replica = Replica::new(self.secret.public(), genesis.clone())?;
        self.store
            .put_sealed(Sealed::Secrets, GENESIS_KEY, &genesis.encode())?;
        self.store
            .put_sealed(Sealed::Secrets, INVITER_KEY, &inviter.0)?;
        self.store.flush()?;
        self.replica = Some(replica);
        self.inviter = Some(inviter);
        Ok(())
    }

    /// Whether this device has been admitted to its clinic's roster.
    pub fn enrolled(&self) -> bool {
        self.replica.as_ref().is_some_and(|r| r.enrolled())
    }

    /// Records the addresses `huddle serve` listens on (put into invitations).
    pub fn set_listen_addrs(&mut self, addrs: &[String]) -> Result<(), NodeError> {
        self.store.put_sealed(
            Sealed::Secrets,
            LISTEN_KEY,
            &postcard::to_stdvec(addrs).unwrap_or_default(),
        )?;
        self.store.flush()?;
        Ok(())
    }

    /// The addresses this device last listened on.
    pub fn listen_addrs(&self) -> Vec<String> {
        match self.store.get_sealed(Sealed::Secrets, LISTEN_KEY) {
            Ok(Some(b)) => postcard::from_bytes(&b).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Remembers a peer address to dial.
    pub fn add_peer(&mut self, addr: &str) -> Result<(), NodeError> {
        let key: [u8; 16] = Sha256::digest(addr.as_bytes())[..16]
            .try_into()
            .unwrap_or_default();
        self.store
            .put_sealed(Sealed::Peers, &key, addr.as_bytes())?;
        self.store.flush()?;
        Ok(())
    }

    /// Remembered peer addresses; unreadable entries are skipped with a warning.
    pub fn peers(&self) -> Result<Vec<String>, NodeError> {
        Ok(self
            .store
            .scan_sealed(Sealed::Peers)?
            .into_iter()
            .filter_map(|(_, v)| match v {
                Ok(v) => String::from_utf8(v.to_vec()).ok(),
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            })
            .collect())
    }
}
