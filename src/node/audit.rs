//! Recording and reading the audit trail (rules in [`crate::core::audit`]).
//!
//! Recording: every audited action appends one envelope to this device's own chain in
//! [`LogId::Audit`], sealed to the clinic's admin devices. A device that may not write
//! (not enrolled, or a rebuilt store waiting for its history) records nothing; the
//! action itself is never undone because its audit entry could not be written (the
//! failure is logged). Reads stay free of side effects: showing a thread is recorded by
//! [`Node::record_view`], which the CLI's `show` and the app call.
//!
//! Reading: [`Node::audit_trail`] opens every entry sealed to this (admin) device;
//! [`Node::audit_verify`] checks every audit chain held, readable or not.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::audit::{
    self, AuditEntry, AuditEvent, AuditOpenError, Finding, MAX_FAILED_TIMES, StoredRecord,
};
use crate::core::envelope::{Body, Envelope};
use crate::core::ids::{DeviceId, EnvelopeId, LogId, MemberId, ThreadId};
use crate::core::replica::{Effect, IngestError, Input, KeySlot, Results};

use super::{ImportReport, Node, NodeError, ThreadRef, now_ms};

/// Chain conflicts recorded from one input, at most (each needs an envelope signed by
/// the conflicting device, so only a device's own key can make more).
const MAX_CONFLICTS_PER_INPUT: usize = 8;

/// What to list from the trail.
#[derive(Clone, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditFilter {
    /// Only entries written by this member's devices (name, any case).
    pub member: Option<String>,
    /// Only entries about a thread whose id starts with this (hex).
    pub thread: Option<String>,
    /// Only entries written at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
}

/// One entry of the trail as an admin reads it.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub at_ms: u64,
    pub device: DeviceId,
    pub seq: u64,
    pub member: Option<MemberId>,
    /// The member's name (as the roster knows it now).
    pub member_name: Option<String>,
    pub event: AuditEvent,
}

/// The trail this device can read, and how many held entries it cannot.
#[derive(Clone, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditTrail {
    pub records: Vec<AuditRecord>,
    /// Entries written before this device was an admin (not sealed to it).
    pub not_sealed_to_me: usize,
}

/// An audit envelope offered in an input: its author's position and its id.
pub(super) type Offer = Option<(DeviceId, u64, EnvelopeId)>;

/// The audit envelopes of an input, by position in the batch.
pub(super) fn offers(input: &Input) -> Vec<Offer> {
    match input {
        Input::Envelopes(batch) => batch
            .iter()
            .map(|e| {
                (e.header.log == LogId::Audit).then(|| (e.header.author, e.header.seq, e.id()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Node {
    /// Appends `event` to this device's audit chain (sealed to the admin devices).
    pub fn audit(&mut self, event: AuditEvent) -> Result<(), NodeError> {
        let member = self.writer()?.id;
        let plain = audit::encode_entry(&AuditEntry {
            member: Some(member),
            event,
        });
        let input = Input::Seal {
            log: LogId::Audit,
            plain,
            at_ms: now_ms(),
        };
        // An audit entry's own follow-ups (a rotation it triggered) are not audited
        // again, so recording never recurses.
        self.run_once(input, &mut ImportReport::default(), &[])
            .map(|_| ())
    }

    /// Records `event` if this device may write now; a failure is logged, never
    /// returned (the audited action has happened).
    pub(super) fn audit_quietly(&mut self, event: AuditEvent) {
        if self.writer().is_err() {
            return;
        }
        let kind = event.kind();
        if let Err(e) = self.audit(event) {
            tracing::warn!("audit entry `{kind}` not recorded: {e}");
        }
    }

    /// Records an unlock of this device's store (the app's and `serve`'s unlock).
    pub fn audit_unlock(&mut self) {
        self.audit_quietly(AuditEvent::Unlock);
    }

    /// Records a lock: the app's lock button or idle lock, serve's idle lock, or
    /// `huddle lock` (which needs no proof; it only takes access away).
    pub fn audit_lock(&mut self) {
        self.audit_quietly(AuditEvent::Locked);
    }

    /// Records wrong passphrases tried at `times` (ms), at the next successful unlock.
    /// The most recent [`MAX_FAILED_TIMES`] times are kept; the count covers them only.
    pub fn audit_failed_unlocks(&mut self, times: &[u64]) {
        if times.is_empty() {
            return;
        }
        let from = times.len().saturating_sub(MAX_FAILED_TIMES);
        self.audit_quietly(AuditEvent::FailedUnlocks {
            times_ms: times[from..].to_vec(),
        });
    }

    /// Records that a thread's messages were shown to this device's member.
    pub fn record_view<'a>(
        &mut self,
        reference: impl Into<ThreadRef<'a>>,
    ) -> Result<(), NodeError> {
        let (thread, _) = self.readable_thread(reference.into())?;
        self.audit_quietly(AuditEvent::ThreadViewed { thread });
        Ok(())
    }

    /// Records a bundle export of `envelopes` envelopes.
    pub fn record_export(&mut self, envelopes: u64) {
        self.audit_quietly(AuditEvent::Exported { envelopes });
    }

    /// Records `event` of message `message` in the thread `reference` names.
    pub(super) fn audit_change(
        &mut self,
        reference: ThreadRef<'_>,
        message: &str,
        event: impl FnOnce(ThreadId, String) -> AuditEvent,
    ) {
        let Ok((thread, _)) = self.readable_thread(reference) else {
            return;
        };
        self.audit_quietly(event(thread, message.to_string()));
    }

    /// What an input's results call for in the trail: keys this device minted past
    /// epoch 0 (rotations), and — on an admin device — audit envelopes of another
    /// device refused because they conflict with its chain as held here.
    pub(super) fn audit_follow_ups(&self, offers: &[Offer], results: &Results) -> Vec<AuditEvent> {
        let mut events = Vec::new();
        let minted: BTreeSet<KeySlot> = results
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::Key { slot, .. } => Some(*slot),
                _ => None,
            })
            .collect();
        for env in &results.authored {
            let slot = KeySlot::of(&env.header);
            if matches!(env.body, Body::Grants(_)) && slot.epoch > 0 && minted.contains(&slot) {
                events.push(AuditEvent::KeyRotated {
                    log: slot.log,
                    epoch: slot.epoch,
                });
            }
        }
        if !self.me().is_ok_and(|m| m.admin) {
            return events;
        }
        let conflicts = offers
            .iter()
            .zip(&results.statuses)
            .filter_map(|(offer, status)| match (offer, status) {
                (
                    Some((device, seq, offered)),
                    Err(IngestError::Equivocation { .. } | IngestError::BrokenChain),
                ) => Some(AuditEvent::ChainConflict {
                    device: *device,
                    seq: *seq,
                    held: self
                        .store
                        .envelope_id_at(&LogId::Audit, device, *seq)
                        .ok()
                        .flatten(),
                    offered: *offered,
                }),
                _ => None,
            })
            .take(MAX_CONFLICTS_PER_INPUT);
        // Once a chain diverged at #k, every later entry of it conflicts too, and every
        // later sync offers them again: record a device's conflict only at a position
        // before any recorded for it (an older copy restored again goes further back).
        let mut first: BTreeMap<DeviceId, AuditEvent> = BTreeMap::new();
        for event in conflicts {
            if let AuditEvent::ChainConflict { device, seq, .. } = &event {
                let earlier = first.get(device).is_some_and(
                    |e| matches!(e, AuditEvent::ChainConflict { seq: s, .. } if s <= seq),
                );
                if !earlier {
                    first.insert(*device, event);
                }
            }
        }
        if first.is_empty() {
            return events;
        }
        let known = self.recorded_conflicts();
        for (device, event) in first {
            let AuditEvent::ChainConflict { seq, .. } = &event else {
                continue;
            };
            if known.get(&device).is_none_or(|k| seq < k) {
                events.push(event);
            }
        }
        events
    }

    /// Per device, the earliest chain conflict this device has recorded in its chain.
    fn recorded_conflicts(&self) -> BTreeMap<DeviceId, u64> {
        let me = self.secret.id();
        let mut known = BTreeMap::new();
        let next = self.replica.as_ref().map_or(0, |r| {
            r.heads().get(&(LogId::Audit, me)).map_or(0, |h| h.seq + 1)
        });
        let recorded = self
            .store
            .chain(&LogId::Audit, &me, 0..next)
            .filter_map(Result::ok)
            .filter_map(|env| self.open_audit(&env).ok());
        for entry in recorded {
            if let AuditEvent::ChainConflict { device, seq, .. } = entry.event {
                let k = known.entry(device).or_insert(seq);
                *k = (*k).min(seq);
            }
        }
        known
    }

    fn open_audit(&self, env: &Envelope) -> Result<AuditEntry, AuditOpenError> {
        let replica = self.replica.as_ref().ok_or(AuditOpenError::UnknownAuthor)?;
        let roster = replica.roster();
        let author = roster
            .devices
            .get(&env.header.author)
            .map(|d| &d.public)
            .or_else(|| (roster.founder.id == env.header.author).then_some(&roster.founder));
        let signer = author.map(|keys| audit::Signer {
            keys,
            member: roster.member_of(&keys.id),
        });
        audit::open_entry(&self.secret, signer, &replica.clinic(), env)
    }

    /// This device's member, if an admin: the trail is theirs to read.
    fn audit_reader(&self) -> Result<(), NodeError> {
        if self.me()?.admin {
            Ok(())
        } else {
            Err(NodeError::Invalid(
                "the audit trail is sealed to admin devices: this device's member is not an admin"
                    .into(),
            ))
        }
    }

    /// Every audit entry this admin device can open that `filter` selects, oldest first.
    pub fn audit_trail(&self, filter: &AuditFilter) -> Result<AuditTrail, NodeError> {
        self.audit_reader()?;
        let roster = self.replica()?.roster();
        let member = match &filter.member {
            None => None,
            Some(name) => Some(
                roster
                    .members
                    .values()
                    .find(|m| m.name.eq_ignore_ascii_case(name.trim()))
                    .map(|m| m.id)
                    .ok_or_else(|| NodeError::UnknownMember(name.clone()))?,
            ),
        };
        let thread = filter
            .thread
            .as_ref()
            .map(|t| t.trim().to_ascii_lowercase());
        let mut trail = AuditTrail::default();
        for env in self.store.envelopes(Some(&LogId::Audit)) {
            let env = match env {
                Ok(env) => env,
                Err(e) => {
                    tracing::warn!("{e} (run `huddle audit verify`)");
                    continue;
                }
            };
            let entry = match self.open_audit(&env) {
                Ok(entry) => entry,
                Err(AuditOpenError::NotForMe) => {
                    trail.not_sealed_to_me += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(
                        "audit entry #{} of device {} does not open: {e}",
                        env.header.seq,
                        env.header.author.short()
                    );
                    continue;
                }
            };
            let h = &env.header;
            let keep = member.is_none_or(|m| entry.member == Some(m))
                && filter.since_ms.is_none_or(|s| h.at_ms >= s)
                && thread.as_ref().is_none_or(|t| {
                    entry
                        .event
                        .thread()
                        .is_some_and(|id| id.to_hex().starts_with(t))
                });
            if keep {
                trail.records.push(AuditRecord {
                    at_ms: h.at_ms,
                    device: h.author,
                    seq: h.seq,
                    member: entry.member,
                    member_name: entry
                        .member
                        .and_then(|m| roster.members.get(&m))
                        .map(|m| m.name.clone()),
                    event: entry.event,
                });
            }
        }
        trail.records.sort_by_key(|r| (r.at_ms, r.device, r.seq));
        Ok(trail)
    }

    /// Checks every audit chain this device holds (see [`audit::check_chain`]); an admin
    /// also opens every entry sealed to it and reports the chain conflicts recorded by
    /// admin devices. Findings are sorted by device and position.
    ///
    /// A quarantined node (its envelope records changed outside Huddle) checks the chains
    /// alone: a device id is its ed25519 key, so signatures, ids, positions and links need
    /// no roster, and no roster is folded from such a store.
    pub fn audit_verify(&self) -> Result<Vec<Finding>, NodeError> {
        if !self.store.envelopes_modified() {
            self.replica()?;
        }
        let mut chains: BTreeMap<DeviceId, Vec<StoredRecord>> = BTreeMap::new();
        let mut opened: Vec<(DeviceId, u64, Result<AuditEntry, AuditOpenError>)> = Vec::new();
        let admin = self.me().is_ok_and(|m| m.admin);
        for record in self.store.envelope_records(&LogId::Audit) {
            let (author, at, env) = record?;
            let entry = env.ok().map(|env| {
                if admin {
                    opened.push((author, env.header.seq, self.open_audit(&env)));
                }
                (env.header.seq, env.id(), env.header.prev)
            });
            chains
                .entry(author)
                .or_default()
                .push(StoredRecord { at, entry });
        }
        let heads: BTreeMap<DeviceId, u64> = self
            .store
            .heads()?
            .into_iter()
            .filter(|((log, _), _)| *log == LogId::Audit)
            .map(|((_, author), head)| (author, head.seq))
            .collect();
        for author in heads.keys() {
            chains.entry(*author).or_default();
        }
        let mut findings: Vec<Finding> = chains
            .iter()
            .flat_map(|(device, records)| {
                audit::check_chain(*device, records, heads.get(device).copied())
            })
            .collect();
        let mut rewritten = BTreeSet::new();
        for (witness, seq, entry) in opened {
            match entry {
                Ok(AuditEntry {
                    event: AuditEvent::ChainConflict { device, seq, .. },
                    ..
                }) => {
                    if rewritten.insert((device, seq)) {
                        findings.push(Finding::Rewritten {
                            device,
                            seq,
                            witness,
                        });
                    }
                }
                Ok(_) | Err(AuditOpenError::NotForMe) => {}
                Err(AuditOpenError::Misattributed) => findings.push(Finding::Misattributed {
                    device: witness,
                    seq,
                }),
                Err(_) => findings.push(Finding::Unreadable {
                    device: witness,
                    seq,
                }),
            }
        }
        findings.sort_by_key(|f| format!("{f}"));
        Ok(findings)
    }
}
