//! Drives a [`crate::core::sync::Session`] over one libp2p stream. Reading and writing
//! run concurrently, so two peers sending each other large histories never wait on
//! each other's flow-control windows; envelopes are loaded and ingested batch by batch,
//! so memory stays bounded whatever the history. A peer that sends nothing for
//! [`SYNC_IDLE`], or does not take a frame within the frame timeout, ends the session.

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use futures::{AsyncWriteExt, FutureExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

use super::limits::{FRAME_TIMEOUT, SYNC_IDLE};
use super::status::{self, Progress};
use super::{NetError, wire};
use crate::core::sync::{Features, Message, Range, Session, Step};
use crate::node::actor::NodeHandle;

/// What one session moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub envelopes_sent: u64,
    pub envelopes_received: u64,
}

enum Work {
    Send(Message),
    Ranges(Vec<Range>),
}

/// Runs one sync session on `stream` (either side; both start with Hello). `first` is a
/// frame the caller already read from the stream.
pub async fn run<S>(stream: S, node: NodeHandle, first: Option<Vec<u8>>) -> Result<Stats, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    run_tracked(stream, node, first, &Progress::new(), |_| {}).await
}

/// [`run`], counting what arrives against what the peer says it holds in `progress`,
/// and recording a completed round there; `features_seen` learns what the peer's
/// `Hello` said it understands (for the pushes to it).
pub(crate) async fn run_tracked<S>(
    stream: S,
    node: NodeHandle,
    first: Option<Vec<u8>>,
    progress: &Progress,
    features_seen: impl FnOnce(Features) + Send,
) -> Result<Stats, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Taken before the summary: everything counted so far is in it.
    let authored_before = progress.authored_so_far();
    let (clinic, summary) = node
        .call_sync(|n| n.summary())
        .await?
        .ok_or(NetError::NoClinic)?;
    // The peer's summary is compared with ours once; only the counts are kept.
    let mine = summary.clone();
    let mut session = Session::new(clinic, summary);
    let (mut reader, mut writer) = stream.split();
    let sent = Arc::new(AtomicU64::new(0));
    let sent_envs = Arc::new(AtomicU64::new(0));
    let (work_tx, mut work_rx) = mpsc::channel::<Work>(8);
    work_tx
        .send(Work::Send(session.hello()))
        .await
        .map_err(|_| NetError::Closed)?;

    let write_side = {
        let node = node.clone();
        let (sent, sent_envs) = (sent.clone(), sent_envs.clone());
        async move {
            while let Some(work) = work_rx.recv().await {
                match work {
                    Work::Send(m) => send(&mut writer, &m, &sent).await?,
                    Work::Ranges(ranges) => {
                        for mut range in ranges {
                            while range.from < range.to {
                                let r = range;
                                let batch = node.call_sync(move |n| n.load_batch(&r)).await??;
                                if batch.is_empty() {
                                    break;
                                }
                                range.from += batch.len() as u64;
                                sent_envs.fetch_add(batch.len() as u64, Ordering::Relaxed);
                                send(&mut writer, &Message::Envelopes(batch), &sent).await?;
                            }
                        }
                        send(&mut writer, &Message::Done, &sent).await?;
                    }
                }
            }
            let _ = tokio::time::timeout(FRAME_TIMEOUT, writer.close()).await;
            Ok::<_, NetError>(())
        }
    };

    let read_side = async move {
        let mut stats = Stats::default();
        let mut first = first;
        let mut expecting = None;
        let mut features_seen = Some(features_seen);
        while !(session.is_finished() || session.peer_done()) {
            let frame = match first.take() {
                Some(f) => f,
                None => wire::read(&mut reader, wire::MAX_FRAME, SYNC_IDLE)
                    .await?
                    .ok_or(NetError::Closed)?,
            };
            stats.bytes_received += frame.len() as u64 + 4;
            let message = Message::decode(&frame)?;
            let hello = matches!(message, Message::Hello { .. });
            if let Message::Summary(theirs) = &message {
                let lacking = status::lacking(&mine, theirs);
                if lacking > 0 && expecting.is_none() {
                    expecting = Some(progress.expecting(lacking));
                }
            }
            let steps = session.on_message(message)?;
            if hello && let Some(seen) = features_seen.take() {
                seen(session.peer_features());
            }
            for step in steps {
                match step {
                    Step::Send(m) => work_tx
                        .send(Work::Send(m))
                        .await
                        .map_err(|_| NetError::Closed)?,
                    Step::SendRanges(r) => work_tx
                        .send(Work::Ranges(r))
                        .await
                        .map_err(|_| NetError::Closed)?,
                    Step::Ingest(batch) => {
                        stats.envelopes_received += batch.len() as u64;
                        if let Some(e) = &expecting {
                            e.received(batch.len() as u64);
                        }
                        let report = node.call_sync(move |n| n.receive(&batch)).await??;
                        if !report.refused.is_empty() {
                            tracing::warn!(
                                "refused {} envelope(s) from a peer: {}",
                                report.refused.len(),
                                report.refused[0]
                            );
                        }
                    }
                    // Our own `Done` is sent by the writer after the last batch; the
                    // session ends here once the peer's `Done` arrived.
                    Step::Finished => {}
                }
            }
        }
        drop(work_tx);
        // The peer has sent all it holds that this device lacked, its own history
        // included: a rebuilt device may write again.
        node.call_sync(|n| n.synced_with_peer()).await??;
        Ok::<_, NetError>(stats)
    };

    let (w, r) = futures::join!(write_side.boxed(), read_side.boxed());
    w?;
    let mut stats = r?;
    progress.round_done(authored_before);
    stats.bytes_sent = sent.load(Ordering::Relaxed);
    stats.envelopes_sent = sent_envs.load(Ordering::Relaxed);
    Ok(stats)
}

async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    m: &Message,
    sent: &AtomicU64,
) -> Result<(), NetError> {
    let bytes = m.encode();
    sent.fetch_add(bytes.len() as u64 + 4, Ordering::Relaxed);
    wire::write(w, &bytes).await?;
    Ok(())
}

/// Sends envelopes created or received while connected, as one `Push`.
/// Pushes `batch` and waits until the peer has read it and closed the stream (or
/// [`FRAME_TIMEOUT`] passed): for a peer about to be disconnected, which a plain push
/// could lose with the connection.
pub async fn push_and_wait<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    batch: Vec<Vec<u8>>,
) -> Result<(), NetError> {
    push(&mut stream, batch).await?;
    let mut sink = [0u8; 64];
    let drained = async {
        // The peer sends nothing on a push stream: its end closing ends the wait.
        while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    };
    tokio::time::timeout(FRAME_TIMEOUT, drained)
        .await
        .map_err(|_| NetError::Timeout("the peer did not take a push in time"))
}

pub async fn push<S: AsyncWrite + Unpin>(
    mut stream: S,
    batch: Vec<Vec<u8>>,
) -> Result<(), NetError> {
    wire::write(&mut stream, &Message::Push(batch).encode()).await?;
    tokio::time::timeout(FRAME_TIMEOUT, stream.close())
        .await
        .map_err(|_| NetError::Timeout("the peer did not take a push in time"))??;
    Ok(())
}
