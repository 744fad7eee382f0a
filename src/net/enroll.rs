//! The enrollment protocol `/huddle/enroll/1` over a libp2p stream: the frames of
//! [`crate::core::invite`], with the invitation looked up and redeemed on the node.

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};

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
    let bytes = wire::read(r).await?.ok_or(NetError::Closed)?;
    Ok(Frame::decode(&bytes)?)
}

/// Inviter side. `peer` is the device the libp2p handshake authenticated; it must be
/// the device whose keys come inside the enrollment handshake.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    node: NodeHandle,
    secret: &DeviceSecret,
    peer: DeviceId,
) -> Result<(), NetError> {
    let Frame::Open { id, noise } = recv(&mut stream).await? else {
        return Err(InviteError::Handshake("expected Open".into()).into());
    };
    let psk = match node.call(move |n| n.invite_secret(&id)).await? {
        Ok(psk) => psk,
        Err(e) => {
            send(&mut stream, &Frame::Refused(e.to_string())).await?;
            return Err(e.into());
        }
    };
    let (mut inviter, reply) = Inviter::accept(secret, &psk, &noise)?;
    send(&mut stream, &reply).await?;
    let keys = match inviter.on_keys(recv(&mut stream).await?) {
        Ok(k) if k.id == peer => k,
        Ok(_) => {
            let e = InviteError::Handshake("device keys do not match the connection".into());
            send(&mut stream, &Frame::Refused(e.to_string())).await?;
            return Err(e.into());
        }
        Err(e) => {
            send(&mut stream, &Frame::Refused(e.to_string())).await?;
            return Err(e.into());
        }
    };
    match node.call(move |n| n.redeem_invite(&id, keys)).await? {
        Ok(genesis) => send(&mut stream, &inviter.welcome(&genesis)?).await?,
        Err(e) => {
            send(&mut stream, &Frame::Refused(e.to_string())).await?;
            return Err(e.into());
        }
    }
    stream.close().await.ok();
    Ok(())
}

/// Joiner side: returns the clinic's genesis, checked to be the clinic the invitation
/// names.
pub async fn join<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    secret: &DeviceSecret,
    invite: &Invitation,
) -> Result<SignedGenesis, NetError> {
    let (mut joiner, open) = Joiner::start(secret, invite)?;
    send(&mut stream, &open).await?;
    let keys = joiner.on_noise(recv(&mut stream).await?)?;
    send(&mut stream, &keys).await?;
    let verdict = match wire::read(&mut stream).await? {
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
