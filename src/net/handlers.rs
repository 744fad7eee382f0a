//! The network's stream work: incoming `/huddle/sync/1` and `/huddle/enroll/1` streams,
//! each handled in its own task within the bounds of [`super::limits`] (streams beyond
//! them are dropped unread), and live pushes to admitted peers.

use futures::StreamExt;
use libp2p::PeerId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, watch};

use super::limits::*;
use super::status::Authored;
use super::tasks::{Slot, Slots, Tasks};
use super::{
    Admitted, Command, NetError, Progress, SYNC, addr, allowed, enroll, open, session, short, wire,
};
use crate::core::identity::DeviceSecret;
use crate::core::ids::LogId;
use crate::core::sync::Features;
use crate::node::actor::{NodeHandle, Outbox};

/// What stream handlers share.
#[derive(Clone)]
pub(super) struct Handlers {
    pub node: NodeHandle,
    pub commands: mpsc::Sender<Command>,
    pub admitted: Admitted,
    pub progress: Arc<Progress>,
    pub tasks: Tasks,
}

/// Incoming `/huddle/sync/1` streams: admitted devices only, at most
/// [`MAX_SYNC_STREAMS_PER_PEER`] at once from one peer and [`MAX_SYNC_STREAMS`] in all;
/// streams beyond that are dropped unread.
pub(super) async fn accept_sync(mut incoming: libp2p_stream::IncomingStreams, h: Handlers) {
    let slots = Slots::new(MAX_SYNC_STREAMS_PER_PEER, MAX_SYNC_STREAMS);
    while let Some((peer, stream)) = incoming.next().await {
        let Some(slot) = slots.try_take(peer) else {
            tracing::debug!(peer = %short(&peer), "too many sync streams at once: dropping one");
            continue;
        };
        h.tasks.spawn(serve_sync(peer, stream, slot, h.clone()));
    }
}

async fn serve_sync(peer: PeerId, mut stream: libp2p::Stream, _slot: Slot, h: Handlers) {
    let Handlers {
        node,
        commands,
        admitted,
        progress,
        ..
    } = h;
    let known = admitted.contains(&peer);
    if !known && !allowed(&node, &peer).await {
        tracing::warn!(peer = %short(&peer), "refused sync from a device that is not enrolled in this clinic; disconnecting");
        let _ = commands.send(Command::Disconnect(peer)).await;
        return;
    }
    admitted.admit(peer);
    // Whoever opens a stream speaks first: Hello or Push, at once.
    let first = match wire::read(&mut stream, wire::MAX_FRAME, FRAME_TIMEOUT).await {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(peer = %short(&peer), "incoming sync stream dropped: {e}");
            return;
        }
    };
    let result = match crate::core::sync::Message::decode(&first) {
        Ok(crate::core::sync::Message::Push(batch)) => node
            .call_sync(move |n| match addr::device(&peer) {
                Some(from) => n.receive_push(&batch, from),
                None => n.receive(&batch),
            })
            .await
            .map(|_| ())
            .map_err(NetError::from),
        Ok(_) => match session::run_tracked(stream, node, Some(first), &progress, |f| {
            admitted.set_features(peer, f)
        })
        .await
        {
            Ok(s) => {
                admitted.synced(peer);
                if s.envelopes_received > 0 {
                    let _ = commands.send(Command::SyncOthers(peer)).await;
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        tracing::debug!(peer = %short(&peer), "incoming sync failed: {e}");
    }
}

/// Incoming `/huddle/enroll/1` streams: anyone may try, the invitation decides. One
/// attempt at a time per peer and [`MAX_ENROLLING`] in all; further streams are dropped
/// unread.
pub(super) async fn accept_enroll(
    mut incoming: libp2p_stream::IncomingStreams,
    h: Handlers,
    secret: Arc<DeviceSecret>,
) {
    let slots = Slots::new(1, MAX_ENROLLING);
    while let Some((peer, stream)) = incoming.next().await {
        let Some(slot) = slots.try_take(peer) else {
            tracing::debug!(peer = %short(&peer), "an enrollment is already under way: dropping another");
            continue;
        };
        let Some(device) = addr::device(&peer) else {
            continue;
        };
        let (node, secret, admitted) = (h.node.clone(), secret.clone(), h.admitted.clone());
        h.tasks.spawn(async move {
            match enroll::serve(stream, node, &secret, device, slot).await {
                Ok(()) => {
                    tracing::info!(peer = %short(&peer), "enrolled a new device by invitation");
                    admitted.admit(peer);
                }
                Err(e) => tracing::warn!(peer = %short(&peer), "enrollment refused: {e}"),
            }
        });
    }
}

/// Pushes the node's live envelopes at once to every admitted peer but the one each came
/// from, at most [`MAX_PUSHES_PER_PEER`] at once per peer; a peer whose pushes are all
/// busy gets a sync round instead.
pub(super) async fn push_loop(
    mut outbox: Outbox,
    control: libp2p_stream::Control,
    h: Handlers,
    mut stop: watch::Receiver<bool>,
) -> Outbox {
    let Handlers {
        admitted,
        commands,
        tasks,
        progress,
        ..
    } = h;
    let slots = Slots::new(MAX_PUSHES_PER_PEER, usize::MAX);
    loop {
        let crate::node::actor::Batch {
            envelopes: batch,
            cut_off,
        } = tokio::select! {
            _ = stop.changed() => return outbox,
            b = outbox.recv() => match b { Some(b) => b, None => return outbox },
        };
        // Revoked or removed devices: no more pushes, and their connections close now
        // (every later connection is refused by the roster check). Each is first told,
        // with this batch's roster envelopes only (the operation that cut it off), so
        // that it can say it was removed; the push is bounded by the open and frame
        // timeouts, and the connection closes whatever comes of it.
        // Each envelope's header read once (they were authored or accepted here).
        let shapes: Vec<Option<Shape>> = batch.iter().map(|o| Shape::of(&o.envelope)).collect();
        let roster: Vec<Vec<u8>> = batch
            .iter()
            .zip(&shapes)
            .filter(|(_, s)| s.is_some_and(|s| s.log == LogId::Roster))
            .map(|(o, _)| o.envelope.clone())
            .collect();
        for peer in cut_off.iter().filter_map(addr::peer_id) {
            let was_admitted = admitted.remove(&peer);
            tracing::warn!(peer = %short(&peer), "device revoked or removed: disconnecting");
            let (control, commands, roster) = (control.clone(), commands.clone(), roster.clone());
            tasks.spawn(async move {
                if was_admitted && !roster.is_empty() {
                    let told = match open(&control, peer, SYNC).await {
                        Ok(stream) => session::push_and_wait(stream, roster).await,
                        Err(e) => Err(e),
                    };
                    match told {
                        Ok(()) => tracing::debug!(peer = %short(&peer), "removal delivered"),
                        Err(e) => {
                            tracing::debug!(peer = %short(&peer), "removal not delivered: {e}")
                        }
                    }
                }
                let _ = commands.send(Command::Disconnect(peer)).await;
            });
        }
        // Envelopes authored here carry no `not_to`; once every chunk of this batch
        // reached one peer, that peer holds them all.
        let own = batch
            .iter()
            .zip(&shapes)
            .filter(|(o, _)| o.not_to.is_none())
            .fold(Authored::default(), |mut n, (_, s)| {
                match s.is_some_and(|s| s.is_thread_change()) {
                    true => n.changes += 1,
                    false => n.bookkeeping += 1,
                }
                n
            });
        let own_upto = if own.is_empty() {
            None
        } else {
            Some(progress.authored(own))
        };
        // A direct conversation's envelopes go only to peers that said they understand
        // them; a peer not heard from yet gets them by a sync round instead.
        let any_direct = shapes.iter().flatten().any(|s| s.log.is_direct());
        for peer in admitted.admitted() {
            let device = addr::device(&peer);
            let features = admitted.features(&peer);
            if features.is_none() && any_direct {
                let _ = commands.try_send(Command::SyncWith(peer));
            }
            let features = features.unwrap_or(Features::NONE);
            let envelopes = batch
                .iter()
                .zip(&shapes)
                .filter(|(_, s)| s.is_none_or(|s| features.carries(&s.log)))
                .map(|(o, _)| o)
                .filter(|o| o.not_to.is_none_or(|d| Some(d) != device))
                .map(|o| o.envelope.clone());
            let chunks: Vec<Vec<Vec<u8>>> = crate::core::sync::batches(envelopes).collect();
            let left = Arc::new(AtomicUsize::new(chunks.len()));
            for chunk in chunks {
                let Some(slot) = slots.try_take(peer) else {
                    let _ = commands.try_send(Command::SyncWith(peer));
                    break;
                };
                let (control, progress, left) = (control.clone(), progress.clone(), left.clone());
                tasks.spawn(async move {
                    let _slot = slot;
                    let pushed = match open(&control, peer, SYNC).await {
                        Ok(stream) => session::push(stream, chunk).await,
                        Err(e) => Err(e),
                    };
                    match pushed {
                        Err(e) => tracing::debug!(peer = %short(&peer), "push failed: {e}"),
                        Ok(()) => {
                            if left.fetch_sub(1, Ordering::AcqRel) == 1
                                && let Some(upto) = own_upto
                            {
                                progress.delivered(upto);
                            }
                        }
                    }
                });
            }
        }
    }
}

/// What the push loop needs of an envelope's encoding: its log, and whether it carries a
/// sealed change.
#[derive(Clone, Copy)]
struct Shape {
    log: LogId,
    sealed: bool,
}

impl Shape {
    fn of(envelope: &[u8]) -> Option<Shape> {
        let e = crate::core::envelope::Envelope::decode(envelope).ok()?;
        Some(Shape {
            log: e.header.log,
            sealed: matches!(e.body, crate::core::envelope::Body::Sealed(_)),
        })
    }

    /// A change to a thread (a sealed Automerge change in a thread's log), as opposed to
    /// the device's bookkeeping (audit entries, key grants, roster operations).
    fn is_thread_change(&self) -> bool {
        self.log.thread().is_some() && self.sealed
    }
}
