//! Every bound the network puts on what a peer can make this device spend: connections,
//! streams, frame sizes and time. A LAN stranger may connect; it gets the enrollment
//! protocol and nothing else, one attempt at a time, within these limits. A small clinic
//! has a handful to a few dozen devices, so the limits leave room for that many and
//! little more.

use std::time::Duration;

/// Established connections in all. Two per device of a clinic of 30, plus a few
/// strangers enrolling; beyond this new connections are refused.
pub const MAX_CONNECTIONS: u32 = 64;
/// Connections per peer: two devices dialing each other at once end up with two; a
/// third is never needed.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Incoming connections still in their handshake. Handshakes finish in milliseconds
/// on a LAN; a stranger opening many and never finishing only fills these slots.
pub const MAX_PENDING_INCOMING: u32 = 16;
/// Outgoing connection attempts at once (remembered addresses, mDNS finds, invitations).
pub const MAX_PENDING_OUTGOING: u32 = 32;
/// TCP connect, Noise and Yamux negotiation must finish within this, or the connection
/// is dropped (a peer that stops mid-handshake would otherwise hold its slot forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Yamux streams on one connection, both directions. A well-behaved device uses at most
/// [`MAX_PUSHES_PER_PEER`] pushes, one sync round, one ping and one enrollment each way;
/// a peer that opens more gets its connection closed by Yamux. (Each stream may buffer
/// one 256 KiB receive window, so this also bounds the memory a connection can hold.)
pub const MAX_STREAMS_PER_CONNECTION: usize = 32;
/// Inbound streams per connection still choosing their protocol.
pub const MAX_NEGOTIATING_STREAMS: usize = 8;
/// Inbound `/huddle/sync/1` streams handled at once from one peer: its sync round, its
/// pushes and room for one more; further streams are dropped unread.
pub const MAX_SYNC_STREAMS_PER_PEER: usize = 8;
/// Inbound `/huddle/sync/1` streams handled at once in all.
pub const MAX_SYNC_STREAMS: usize = 64;
/// Pushes in flight to one peer; when all are busy the peer gets the news by a sync
/// round instead.
pub const MAX_PUSHES_PER_PEER: usize = 4;
/// Enrollments handled at once (each peer gets one at a time). Enrolling is something
/// a person does with an invitation in hand, rarely two at once.
pub const MAX_ENROLLING: usize = 4;

/// Largest enrollment frame: one Noise message (at most 65,535 bytes) plus the frame's
/// tag and length. Strangers can make us buffer no more than this per attempt.
pub const MAX_ENROLL_FRAME: usize = 65_535 + 64;
/// A frame is read in pieces of this size, so memory grows only as bytes arrive.
pub const READ_CHUNK: usize = 64 * 1024;
/// Once its length has arrived, a frame must arrive in full within this, and a frame we
/// send must be taken within this: the largest frame (`core::limits::MAX_FRAME`,
/// 3.75 MiB) needs ~1.6 Mbit/s, well below any clinic LAN or Wi-Fi. A peer that stalls
/// or trickles is dropped.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// A sync session in which the peer sends nothing for this long is dropped. The peer
/// may be busy storing our batches; that takes seconds, not a minute.
pub const SYNC_IDLE: Duration = Duration::from_secs(60);
/// A whole enrollment (three messages and two lookups on the node) must finish within
/// this; a stranger cannot hold an enrollment slot longer.
pub const ENROLL_TIMEOUT: Duration = Duration::from_secs(15);
/// Opening a stream (including the protocol negotiation) must finish within this.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A device that is not (yet) enrolled may stay connected this long, to enroll.
pub const ENROLL_GRACE: Duration = Duration::from_secs(30);
/// [`super::Network::shutdown`] waits this long in all for its tasks to end, then
/// abandons them; aborted tasks end at their next await, in microseconds, so this is
/// only for a task stuck on a busy node. Well under the 2 s a stopping service gets.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);
