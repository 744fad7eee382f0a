//! The sync protocol's rules, without I/O. Two peers each run a [`Session`]: they
//! exchange a 32-byte digest of what they hold (per log and author, the chain length);
//! if the digests match they are done, so two peers in sync exchange a few dozen bytes
//! however long the history. Otherwise they exchange the full summaries, and each sends
//! the ranges the other lacks in bounded batches, then `Done`. Envelopes created while
//! connected travel as `Push`.
//!
//! A `Hello` is followed, inside its frame, by the sender's [`Features`]. A device of
//! the previous release reads a value and ignores what follows it (postcard), so it
//! reads a new `Hello` as before; its own `Hello` ends there, which reads as no
//! features. A peer without [`Features::DIRECT`] is never offered a direct
//! conversation's log (it could not decode the log's id): its summary, its ranges and
//! its pushes leave them out.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use super::ids::{ClinicId, DeviceId, LogId};
use super::limits::MAX_ENVELOPE_BYTES;
use super::replica::Head;

pub use super::limits::{BATCH_BYTES, BATCH_ENVELOPES};

/// What a peer's release understands beyond the first sync protocol.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Features(pub u32);

impl Features {
    /// A device of the release before any feature (its `Hello` carries none).
    pub const NONE: Features = Features(0);
    /// Direct conversations' logs (`Category::Direct`).
    pub const DIRECT: Features = Features(1);
    /// What this release understands.
    pub const THIS_RELEASE: Features = Features::DIRECT;

    pub fn has(self, feature: Features) -> bool {
        self.0 & feature.0 == feature.0
    }

    /// Whether a peer with these features may be sent envelopes of `log`.
    pub fn carries(self, log: &LogId) -> bool {
        !log.is_direct() || self.has(Features::DIRECT)
    }
}

/// What a device holds: for each log and author, how many envelopes (next seq).
#[derive(Clone, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub chains: BTreeMap<(LogId, DeviceId), u64>,
}

/// Envelopes `from..to` (by seq) of one author in one log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Range {
    pub log: LogId,
    pub author: DeviceId,
    pub from: u64,
    pub to: u64,
}

impl Summary {
    pub fn from_heads<'a>(
        heads: impl IntoIterator<Item = (&'a (LogId, DeviceId), &'a Head)>,
    ) -> Self {
        Summary {
            chains: heads.into_iter().map(|(k, h)| (*k, h.seq + 1)).collect(),
        }
    }

    /// A digest that two peers compare first; equal digests mean equal summaries.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"huddle/summary/v1");
        for ((log, author), n) in &self.chains {
            h.update(log.key_bytes());
            h.update(author.0);
            h.update(n.to_be_bytes());
        }
        h.finalize().into()
    }

    /// The ranges this side holds that `other` lacks.
    pub fn missing_in(&self, other: &Summary) -> Vec<Range> {
        self.chains
            .iter()
            .filter_map(|((log, author), &mine)| {
                let theirs = other.chains.get(&(*log, *author)).copied().unwrap_or(0);
                (mine > theirs).then_some(Range {
                    log: *log,
                    author: *author,
                    from: theirs,
                    to: mine,
                })
            })
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.chains.values().sum()
    }

    /// The part of this summary a peer with `features` may be offered.
    pub fn for_peer(&self, features: Features) -> Summary {
        Summary {
            chains: self
                .chains
                .iter()
                .filter(|((log, _), _)| features.carries(log))
                .map(|(k, n)| (*k, *n))
                .collect(),
        }
    }
}

/// One frame of the sync protocol.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Message {
    Hello {
        clinic: ClinicId,
        digest: [u8; 32],
        /// Encoded after the message, not in it (module comment).
        #[serde(skip)]
        features: Features,
    },
    Summary(Summary),
    Envelopes(Vec<Vec<u8>>),
    Done,
    /// Envelopes created or received while connected, sent at once.
    Push(Vec<Vec<u8>>),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = postcard::to_stdvec(self).unwrap_or_default();
        if let Message::Hello { features, .. } = self {
            out.extend(postcard::to_stdvec(features).unwrap_or_default());
        }
        out
    }
    pub fn decode(bytes: &[u8]) -> Result<Message, SyncError> {
        let (mut message, rest) = postcard::take_from_bytes::<Message>(bytes)
            .map_err(|e| SyncError::Malformed(e.to_string()))?;
        if let Message::Hello { features, .. } = &mut message {
            // Nothing after it: a device of the previous release.
            *features = postcard::from_bytes(rest).unwrap_or(Features::NONE);
        }
        Ok(message)
    }
}

/// A sync session that cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error("peer belongs to another clinic")]
    WrongClinic,
    #[error("malformed sync message: {0}")]
    Malformed(String),
    #[error("unexpected sync message: {0}")]
    Unexpected(&'static str),
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Send(Message),
    /// Load these ranges from storage and send them as `Envelopes` batches, then `Done`.
    SendRanges(Vec<Range>),
    /// Ingest these envelopes (each is validated by the replica like any other).
    Ingest(Vec<Vec<u8>>),
    /// Both sides have sent everything: the session is over.
    Finished,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Greeting,
    Exchanging,
    Finished,
}

/// One side of a sync session.
pub struct Session {
    clinic: ClinicId,
    mine: Summary,
    /// The digest this side's `Hello` carried (of all it holds).
    greeted: [u8; 32],
    /// What the peer's `Hello` said it understands.
    peer: Features,
    phase: Phase,
    sent_done: bool,
    got_done: bool,
}

impl Session {
    pub fn new(clinic: ClinicId, mine: Summary) -> Self {
        Session {
            clinic,
            greeted: mine.digest(),
            mine,
            peer: Features::NONE,
            phase: Phase::Greeting,
            sent_done: false,
            got_done: false,
        }
    }

    /// The first message of either side.
    pub fn hello(&self) -> Message {
        Message::Hello {
            clinic: self.clinic,
            digest: self.greeted,
            features: Features::THIS_RELEASE,
        }
    }

    /// What the peer said it understands (nothing until its `Hello` arrived).
    pub fn peer_features(&self) -> Features {
        self.peer
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The peer has sent everything it will send in this session.
    pub fn peer_done(&self) -> bool {
        self.got_done
    }

    /// The driver has sent every range and the closing `Done`.
    pub fn sent_all(&mut self) -> Vec<Step> {
        self.sent_done = true;
        self.maybe_finish()
    }

    fn maybe_finish(&mut self) -> Vec<Step> {
        if self.sent_done && self.got_done {
            self.phase = Phase::Finished;
            vec![Step::Finished]
        } else {
            Vec::new()
        }
    }

    pub fn on_message(&mut self, msg: Message) -> Result<Vec<Step>, SyncError> {
        match (self.phase, msg) {
            (
                Phase::Greeting,
                Message::Hello {
                    clinic,
                    digest,
                    features,
                },
            ) => {
                if clinic != self.clinic {
                    return Err(SyncError::WrongClinic);
                }
                self.peer = features;
                // Both sides compare the same two digests, so both finish or neither.
                if digest == self.greeted {
                    self.phase = Phase::Finished;
                    return Ok(vec![Step::Finished]);
                }
                self.mine = self.mine.for_peer(features);
                self.phase = Phase::Exchanging;
                Ok(vec![Step::Send(Message::Summary(self.mine.clone()))])
            }
            (Phase::Exchanging, Message::Summary(theirs)) => {
                Ok(vec![Step::SendRanges(self.mine.missing_in(&theirs))])
            }
            (Phase::Exchanging, Message::Envelopes(batch)) => Ok(vec![Step::Ingest(batch)]),
            (Phase::Exchanging, Message::Done) => {
                self.got_done = true;
                Ok(self.maybe_finish())
            }
            (_, Message::Push(batch)) => Ok(vec![Step::Ingest(batch)]),
            (Phase::Greeting, _) => Err(SyncError::Unexpected("expected Hello")),
            (Phase::Exchanging, Message::Hello { .. }) => {
                Err(SyncError::Unexpected("second Hello"))
            }
            (Phase::Finished, _) => Err(SyncError::Unexpected("message after the session ended")),
        }
    }
}

/// Whether a batch of `count` envelopes and `bytes` bytes has room for one more of
/// `next` bytes: a batch closes before it would pass [`BATCH_BYTES`] or
/// [`BATCH_ENVELOPES`], and an empty batch takes any envelope (none is larger than
/// [`MAX_ENVELOPE_BYTES`], which fits a batch).
pub fn batch_has_room(count: usize, bytes: usize, next: usize) -> bool {
    count == 0 || (count < BATCH_ENVELOPES && bytes + next <= BATCH_BYTES)
}

/// Splits envelopes into batches bounded by count and bytes. Envelopes over
/// [`MAX_ENVELOPE_BYTES`] (no peer would accept them) are left out.
pub fn batches(envelopes: impl IntoIterator<Item = Vec<u8>>) -> impl Iterator<Item = Vec<Vec<u8>>> {
    let mut iter = envelopes
        .into_iter()
        .filter(|e| e.len() <= MAX_ENVELOPE_BYTES)
        .peekable();
    std::iter::from_fn(move || {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = iter.peek() {
            if !batch_has_room(batch.len(), bytes, next.len()) {
                break;
            }
            let Some(env) = iter.next() else { break };
            bytes += env.len();
            batch.push(env);
        }
        (!batch.is_empty()).then_some(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::{EnvelopeId, ThreadId};
    use crate::core::policy::Category;
    use proptest::prelude::*;

    fn summary(chains: &[(u8, u8, u64)]) -> Summary {
        Summary {
            chains: chains
                .iter()
                .map(|(t, a, n)| {
                    let log = if *t == 0 {
                        LogId::Roster
                    } else {
                        LogId::Thread {
                            id: ThreadId([*t; 16]),
                            category: Category::Clinical,
                        }
                    };
                    ((log, DeviceId([*a; 32])), *n)
                })
                .collect(),
        }
    }

    #[test]
    fn in_sync_peers_finish_after_hello_with_few_bytes() {
        let chains: Vec<(u8, u8, u64)> = (0..200).map(|i| (i as u8, (i % 7) as u8, 500)).collect();
        let mut a = Session::new(ClinicId([1; 32]), summary(&chains));
        let b = Session::new(ClinicId([1; 32]), summary(&chains));
        let hello = b.hello();
        assert!(hello.encode().len() < 100);
        assert_eq!(a.on_message(hello).unwrap(), vec![Step::Finished]);
        assert!(a.is_finished());
    }

    #[test]
    fn other_clinic_and_out_of_order_messages_are_refused() {
        let mut a = Session::new(ClinicId([1; 32]), Summary::default());
        let b = Session::new(ClinicId([2; 32]), Summary::default());
        assert_eq!(a.on_message(b.hello()), Err(SyncError::WrongClinic));
        let mut c = Session::new(ClinicId([1; 32]), Summary::default());
        assert!(c.on_message(Message::Done).is_err());
        assert!(Message::decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn batches_close_before_their_limits_and_keep_every_envelope() {
        let sizes = [
            10_000,
            MAX_ENVELOPE_BYTES,
            1,
            MAX_ENVELOPE_BYTES - 7,
            200_000,
        ];
        let envs: Vec<Vec<u8>> = (0..1000)
            .map(|i| vec![0u8; sizes[i % sizes.len()]])
            .collect();
        let total: usize = envs.iter().map(|e| e.len()).sum();
        let mut seen = 0;
        for b in batches(envs) {
            assert!(!b.is_empty() && b.len() <= BATCH_ENVELOPES);
            let bytes: usize = b.iter().map(|e| e.len()).sum();
            assert!(bytes <= BATCH_BYTES, "batch of {bytes} bytes");
            assert!(Message::Envelopes(b).encode().len() <= crate::core::limits::MAX_FRAME);
            seen += bytes;
        }
        assert_eq!(seen, total);
        let many_small: Vec<Vec<u8>> = (0..1000).map(|_| vec![1u8; 3]).collect();
        assert!(batches(many_small).all(|b| b.len() <= BATCH_ENVELOPES));
        let oversized = vec![vec![0u8; MAX_ENVELOPE_BYTES + 1], vec![1u8; 5]];
        assert_eq!(
            batches(oversized).collect::<Vec<_>>(),
            vec![vec![vec![1u8; 5]]]
        );
        let _ = EnvelopeId([0; 32]);
    }

    #[test]
    fn a_new_hello_reads_in_the_previous_release_and_an_old_one_as_no_features() {
        let hello = Session::new(ClinicId([1; 32]), Summary::default()).hello();
        let bytes = hello.encode();
        // The previous release decodes with `postcard::from_bytes` (it stops after the
        // value); the message type is the same but for the skipped field.
        let old: Message = postcard::from_bytes(&bytes).expect("the previous release reads it");
        assert!(matches!(old, Message::Hello { clinic, .. } if clinic == ClinicId([1; 32])));
        assert!(matches!(
            Message::decode(&bytes),
            Ok(Message::Hello { features, .. }) if features == Features::THIS_RELEASE
        ));
        let from_old = postcard::to_stdvec(&old).expect("encode");
        assert!(from_old.len() < bytes.len());
        assert!(matches!(
            Message::decode(&from_old),
            Ok(Message::Hello { features, .. }) if features == Features::NONE
        ));
    }

    #[test]
    fn a_hello_with_a_garbage_tail_reads_as_no_features() {
        // A modified peer's tail that is no features word: the Hello still reads, and
        // claims nothing (features grant nothing anyway: they only say what to send).
        let mut bytes = Session::new(ClinicId([1; 32]), Summary::default())
            .hello()
            .encode();
        let plain = bytes.len() - 1;
        bytes.truncate(plain);
        bytes.extend([0xff; 9]);
        assert!(matches!(
            Message::decode(&bytes),
            Ok(Message::Hello { features, .. }) if features == Features::NONE
        ));
    }

    #[test]
    fn a_peer_without_direct_conversations_is_never_offered_one() {
        let direct = LogId::Thread {
            id: ThreadId([5; 16]),
            category: Category::Direct,
        };
        let mut mine = summary(&[(0, 1, 3), (7, 1, 2)]);
        mine.chains.insert((direct, DeviceId([1; 32])), 4);
        let hello_from = |features| Message::Hello {
            clinic: ClinicId([1; 32]),
            digest: Summary::default().digest(),
            features,
        };
        for (features, offered) in [(Features::NONE, false), (Features::DIRECT, true)] {
            let mut s = Session::new(ClinicId([1; 32]), mine.clone());
            let steps = s.on_message(hello_from(features)).unwrap();
            let [Step::Send(Message::Summary(sent))] = steps.as_slice() else {
                panic!("a summary: {steps:?}")
            };
            assert_eq!(sent.chains.keys().any(|(l, _)| l.is_direct()), offered);
            assert_eq!(sent.chains.len(), if offered { 3 } else { 2 });
            let steps = s.on_message(Message::Summary(Summary::default())).unwrap();
            let [Step::SendRanges(ranges)] = steps.as_slice() else {
                panic!("ranges: {steps:?}")
            };
            assert_eq!(ranges.iter().any(|r| r.log.is_direct()), offered);
            assert_eq!(s.peer_features(), features);
        }
        // Two peers in step finish at Hello whatever either understands.
        let mut a = Session::new(ClinicId([1; 32]), mine.clone());
        let b = Session::new(ClinicId([1; 32]), mine.clone());
        let Message::Hello { digest, .. } = b.hello() else {
            panic!("a hello")
        };
        let old_hello = Message::Hello {
            clinic: ClinicId([1; 32]),
            digest,
            features: Features::NONE,
        };
        assert_eq!(a.on_message(old_hello).unwrap(), vec![Step::Finished]);
    }

    proptest! {
        /// After a session, each side has sent exactly what the other lacked.
        #[test]
        fn ranges_cover_exactly_the_difference(
            a in proptest::collection::vec((0u8..5, 0u8..4, 0u64..20), 0..12),
            b in proptest::collection::vec((0u8..5, 0u8..4, 0u64..20), 0..12),
        ) {
            let (sa, sb) = (summary(&a), summary(&b));
            let mut merged = sb.clone();
            for r in sa.missing_in(&sb) {
                prop_assert_eq!(merged.chains.get(&(r.log, r.author)).copied().unwrap_or(0), r.from);
                merged.chains.insert((r.log, r.author), r.to);
            }
            for (k, n) in &sa.chains {
                prop_assert!(merged.chains.get(k).copied().unwrap_or(0) >= *n);
            }
            prop_assert_eq!(sa.digest() == sb.digest(), sa == sb);
        }
    }
}
