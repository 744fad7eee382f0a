//! Authoring this device's envelopes: sealed changes at the log's current epoch (a key
//! is minted when this device holds none for it), roster operations with the cutoffs
//! they record, and the follow-up every input ends with: rotate the keys the roster
//! says are due, and grant held keys to readers that lack them. A restricted thread's
//! own keys are picked, minted and handed on by `restricted`.

use rand::CryptoRng;

use crate::core::audit;
use crate::core::cipher::SecretKey;
use crate::core::envelope::{Body, Envelope, Grant};
use crate::core::identity::DevicePublic;
use crate::core::ids::{DeviceId, LogId};
use crate::core::policy::Category;
use crate::core::roster::{Cutoff, Op, RosterOp};
use crate::core::seal::{self, SealError};

use super::keyring::{KeySlot, grant_context, key_id};
use super::{AuthorError, Ctx, Lookup, Notice, Replica, Results, next_header};

/// Follow-up passes after one input (each grants everything then missing; a second
/// pass only covers keys minted by the first).
const FOLLOW_UP_PASSES: usize = 3;

impl Replica {
    /// An envelope sealing `plain` into `log` with its current key.
    pub(super) fn author_sealed<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        log: LogId,
        plain: &[u8],
        at_ms: u64,
        out: &mut Results,
    ) -> Result<Envelope, AuthorError> {
        let roster = self.roster.roster();
        let founding = log == LogId::Roster && roster.clinic_name.is_none();
        if !founding && !roster.may_read(&self.me.id, &log) {
            return Err(AuthorError::NotAllowed);
        }
        if log == LogId::Audit {
            return self.author_audit(ctx, plain, at_ms);
        }
        let slot = match self.restricted_writing_slot(ctx, &log, out)? {
            Some(slot) => slot,
            None => {
                let key_log = log.key_log();
                let epoch = self.roster.roster().epoch(&log);
                match self.keys.writing_slot(&key_log, epoch) {
                    Some(slot) => slot,
                    None => self.mint(ctx, key_log, epoch, out)?,
                }
            }
        };
        let header = next_header(self, log, &slot, at_ms);
        let key = self
            .keys
            .thread_key(&header)
            .ok_or(AuthorError::NotAllowed)?;
        let ct = key.encrypt(ctx.rng, &header.aad(), plain);
        Ok(Envelope::sign(ctx.secret, header, Body::Sealed(ct)))
    }

    /// An audit entry: sealed with a fresh key of its own, granted inside the envelope
    /// to the clinic's admin devices of now (no key log, no epoch; see `core::audit`).
    fn author_audit<R: CryptoRng, L: Lookup>(
        &self,
        ctx: &mut Ctx<'_, R, L>,
        plain: &[u8],
        at_ms: u64,
    ) -> Result<Envelope, AuthorError> {
        let key = audit::entry_key(ctx.rng);
        let slot = KeySlot {
            log: LogId::Audit,
            epoch: 0,
            key: key_id(&key),
        };
        let header = next_header(self, LogId::Audit, &slot, at_ms);
        let admins = audit::admin_devices(self.roster.roster());
        let body = audit::seal_entry(ctx.secret, ctx.rng, &header, &key, &admins, plain)?;
        Ok(Envelope::sign(ctx.secret, header, body))
    }

    /// Mints a new key for `key_log` at `epoch`, grants it to the log's readers (and to
    /// this device), and ingests that grant.
    fn mint<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        key_log: LogId,
        epoch: u32,
        out: &mut Results,
    ) -> Result<KeySlot, AuthorError> {
        let key = SecretKey::generate(ctx.rng);
        let slot = KeySlot {
            log: key_log,
            epoch,
            key: key_id(&key),
        };
        let mut readers = self.roster.roster().readers_of(&key_log);
        if !readers.iter().any(|d| d.id == self.me.id) {
            readers.push(self.me);
        }
        let env = self.author_grants(ctx, &slot, &key, &readers)?;
        self.commit_own(ctx, env, out)?;
        Ok(slot)
    }

    /// Seals `key` (of `slot`) to each of `recipients` in one envelope.
    pub(super) fn author_grants<R: CryptoRng, L: Lookup>(
        &self,
        ctx: &mut Ctx<'_, R, L>,
        slot: &KeySlot,
        key: &SecretKey,
        recipients: &[DevicePublic],
    ) -> Result<Envelope, AuthorError> {
        let grants = recipients
            .iter()
            .map(|r| {
                let context = grant_context(&self.clinic, slot, &r.id);
                Ok(Grant {
                    recipient: r.id,
                    sealed: seal::seal(ctx.secret, &r.exchange, &context, key)?,
                })
            })
            .collect::<Result<Vec<_>, SealError>>()?;
        let header = next_header(self, slot.log, slot, ctx.now_ms);
        Ok(Envelope::sign(ctx.secret, header, Body::Grants(grants)))
    }

    /// A roster operation by this device, checked against the roster, with the
    /// cutoffs of every device whose access it may take away.
    pub(super) fn author_roster_op<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        mut op: Op,
        out: &mut Results,
    ) -> Result<Envelope, AuthorError> {
        let roster = self.roster.roster();
        let affected = affected_devices(roster, &op);
        let cutoffs: Vec<Cutoff> = self
            .heads
            .iter()
            .filter(|((_, author), _)| affected.contains(author))
            .map(|((log, author), head)| Cutoff {
                device: *author,
                log: *log,
                next: head.seq + 1,
            })
            .collect();
        if let Op::ChangeRole { cutoffs: c, .. }
        | Op::RemoveMember { cutoffs: c, .. }
        | Op::RevokeDevice { cutoffs: c, .. }
        | Op::SetPolicy { cutoffs: c, .. } = &mut op
        {
            *c = cutoffs;
            c.sort_by_key(|c| (c.device, c.log));
        }
        // An emergency window starts when its request is written (the fold checks it).
        if let Op::EmergencyAccess {
            from_ms, until_ms, ..
        } = &mut op
        {
            let length = until_ms.saturating_sub(*from_ms);
            *from_ms = ctx.now_ms;
            *until_ms = ctx.now_ms.saturating_add(length);
        }
        roster.check(&self.me.id, &op)?;
        let plain = postcard::to_stdvec(&RosterOp {
            deps: self.roster.heads().to_vec(),
            at_ms: ctx.now_ms,
            op,
        })
        .unwrap_or_default();
        self.author_sealed(ctx, LogId::Roster, &plain, ctx.now_ms, out)
    }

    /// Grants each key it holds to its recipients, one envelope per key; a failure is a
    /// notice. Returns whether it authored anything.
    pub(super) fn grant_each<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        work: Vec<(KeySlot, Vec<DevicePublic>)>,
        out: &mut Results,
    ) -> bool {
        let mut did = false;
        for (slot, recipients) in work {
            let Some(key) = self.keys.get(&slot).cloned() else {
                continue;
            };
            let result = self
                .author_grants(ctx, &slot, &key, &recipients)
                .and_then(|env| self.commit_own(ctx, env, out));
            match result {
                Ok(()) => did = true,
                Err(e) => out.notices.push(Notice::NotAuthored(e)),
            }
        }
        did
    }

    /// Rotates due keys and grants missing ones (enrolled devices only). Failures are
    /// notices: the input itself has been carried out.
    pub(super) fn follow_up<R: CryptoRng, L: Lookup>(
        &mut self,
        ctx: &mut Ctx<'_, R, L>,
        out: &mut Results,
    ) {
        for _ in 0..FOLLOW_UP_PASSES {
            if !self.enrolled() {
                return;
            }
            let mut did = false;
            for key_log in self.rotations_due() {
                let epoch = self.roster.roster().epoch(&key_log);
                match self.mint(ctx, key_log, epoch, out) {
                    Ok(_) => did = true,
                    Err(e) => out.notices.push(Notice::NotAuthored(e)),
                }
            }
            let missing = self.keys.missing_grants(self.roster.roster(), &self.me.id);
            did |= self.grant_each(ctx, missing, out);
            did |= self.hand_on_restricted_keys(ctx, out);
            if !did {
                return;
            }
        }
    }

    /// Key logs this device reads, holds a key of, and whose roster epoch has moved past
    /// the newest key it holds: it mints the next key (the first to learn of a change
    /// does; concurrent mints converge, see `Keyring::writing_slot`).
    fn rotations_due(&self) -> Vec<LogId> {
        let roster = self.roster.roster();
        std::iter::once(LogId::Roster)
            .chain(Category::ALL.into_iter().map(LogId::Keys))
            .filter(|log| roster.may_read(&self.me.id, log))
            .filter(|log| {
                self.keys
                    .newest_epoch(log)
                    .is_some_and(|e| e < roster.epoch(log))
            })
            .collect()
    }
}

/// Devices whose access `op` may take away.
fn affected_devices(roster: &crate::core::roster::Roster, op: &Op) -> Vec<DeviceId> {
    let of_member = |m| {
        roster
            .devices
            .values()
            .filter(move |d| d.member == m)
            .map(|d| d.public.id)
    };
    match op {
        Op::RevokeDevice { device, .. } => vec![*device],
        Op::RemoveMember { member, .. } | Op::ChangeRole { member, .. } => {
            of_member(*member).collect()
        }
        Op::SetPolicy { policy, .. } => roster
            .devices
            .values()
            .filter(|d| {
                roster.members.get(&d.member).is_some_and(|m| {
                    Category::ALL
                        .into_iter()
                        .any(|c| roster.policy.may_read(m.role, c) && !policy.may_read(m.role, c))
                })
            })
            .map(|d| d.public.id)
            .collect(),
        _ => Vec::new(),
    }
}
