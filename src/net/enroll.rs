//! The enrollment protocol `/huddle/enroll/1` over a libp2p stream: the frames of
//! [`crate::core::invite`], with the invitation looked up and redeemed on the node.
//! Frames are at most [`MAX_ENROLL_FRAME`] and the whole exchange must finish within
//! [`ENROLL_TIMEOUT`], on either side.

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::limits::{ENROLL_TIMEOUT, FRAME_TIMEOUT, MAX_ENROLL_FRAME};
use super::tasks::Slot;
use super::{NetError, wire};
use crate::core::identity::DeviceSecret;
use crate::core::ids::DeviceId;
use crate::core::invite::{Frame, Invitation, InviteError, Inviter, Joiner};
use crate::core::roster::SignedGenesis;
use crate::node::actor::NodeHandle;

async fn send<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> Result<(), NetError> {
    wire::write(w, &f.encode()).await?;
    Ok(())
}

async fn recv<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, NetError> {
    let bytes = read(r).await?.ok_or(NetError::Closed)?;
    Ok(Frame::decode(&bytes)?)
}

async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, NetError> {
    Ok(wire::read(r, MAX_ENROLL_FRAME, ENROLL_TIMEOUT).await?)
}

/// Inviter side. `peer` is the device the libp2p handshake authenticated; it must be
/// the device whose keys come inside the enrollment handshake. `slot` is this attempt's
/// place among the enrollments under way; it is freed once the verdict is decided, so the
/// peer may try again as soon as it has the verdict.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    node: NodeHandle,
    secret: &DeviceSecret,
    peer: DeviceId,
    slot: Slot,
) -> Result<(), NetError> {
    let decided = tokio::time::timeout(ENROLL_TIMEOUT, decide(&mut stream, node, secret, peer))
        .await
        .map_err(|_| NetError::Timeout("enrollment did not finish in time"));
    drop(slot);
    let outcome = match decided?? {
        Ok(welcome) => send(&mut stream, &welcome).await,
        Err((refused, e)) => {
            send(&mut stream, &Frame::Refused(refused)).await?;
            Err(e)
        }
    };
    let _ = tokio::time::timeout(FRAME_TIMEOUT, stream.close()).await;
    outcome
}

/// A refusal: the reason told to the peer, and the error.
type Refusal = (String, NetError);

/// Runs the exchange up to the verdict: the welcome to send, or why not.
async fn decide<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    node: NodeHandle,
    secret: &DeviceSecret,
    peer: DeviceId,
) -> Result<Result<Frame, Refusal>, NetError> {
    fn refuse(e: impl Into<NetError> + ToString) -> Result<Frame, Refusal> {
        Err((e.to_string(), e.into()))
    }
    let Frame::Open { id, noise } = recv(stream).await? else {
        return Err(InviteError::Handshake("expected Open".into()).into());
    };
    let psk = match node.call(move |n| n.invite_secret(&id)).await? {
        Ok(psk) => psk,
        Err(e) => return Ok(refuse(e)),
    };
    let (mut inviter, reply) = Inviter::accept(secret, &psk, &noise)?;
    send(stream, &reply).await?;
    let keys = match inviter.on_keys(recv(stream).await?) {
        Ok(k) if k.id == peer => k,
        Ok(_) => {
            return Ok(refuse(InviteError::Handshake(
                "device keys do not match the connection".into(),
            )));
        }
        Err(e) => return Ok(refuse(e)),
    };
    match node.call(move |n| n.redeem_invite(&id, keys)).await? {
        Ok(genesis) => Ok(Ok(inviter.welcome(&genesis)?)),
        Err(e) => Ok(refuse(e)),
    }
}

/// Joiner side: returns the clinic's genesis, checked to be the clinic the invitation
/// names.
pub async fn join<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    secret: &DeviceSecret,
    invite: &Invitation,
) -> Result<SignedGenesis, NetError> {
    tokio::time::timeout(ENROLL_TIMEOUT, join_within(stream, secret, invite))
        .await
        .map_err(|_| NetError::Timeout("enrollment did not finish in time"))?
}

async fn join_within<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    secret: &DeviceSecret,
    invite: &Invitation,
) -> Result<SignedGenesis, NetError> {
    let (mut joiner, open) = Joiner::start(secret, invite)?;
    // Until the inviter has this device's keys it decides nothing, so a connection lost
    // before then (one the inviter was closing after an earlier attempt) is `Closed`:
    // the caller reaches the inviter again and retries.
    let early = |e: NetError| match e {
        NetError::Io(_) => NetError::Closed,
        other => other,
    };
    send(&mut stream, &open).await.map_err(early)?;
    let keys = joiner.on_noise(recv(&mut stream).await.map_err(early)?)?;
    send(&mut stream, &keys).await?;
    let verdict = match read(&mut stream).await? {
        Some(bytes) => Frame::decode(&bytes)?,
        None => {
            return Err(InviteError::Refused(
                "the inviting device closed the connection (wrong or altered invitation?)".into(),
            )
            .into());
        }
    };
    Ok(joiner.on_verdict(verdict)?)
}
