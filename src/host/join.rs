//! Enrolling a new device with an invitation: find the inviting device (the
//! invitation's addresses, mDNS, or addresses given by hand), run the enrollment
//! handshake, and fetch the clinic's history. Used by `huddle join` and the app.

use anyhow::{Result, anyhow, bail};
use std::time::Duration;

use crate::core::invite::Invitation;
use crate::net::{NetConfig, NetError, Network};
use crate::node::{Node, actor};

/// How long to look for the inviting device.
pub const FIND_INVITER: Duration = Duration::from_secs(60);

/// What a finished enrollment brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub clinic: String,
    pub member: String,
    pub role: String,
    pub envelopes_received: usize,
}

/// Enrolls `node` (a fresh device) with `invite`, remembering where the inviter was
/// found (`extra_peers` are addresses typed by hand). Closes the node when done.
/// Must run inside a tokio runtime.
pub async fn enroll(
    mut node: Node,
    invite: &Invitation,
    extra_peers: &[String],
    config: NetConfig,
) -> Result<Joined> {
    if node.summary().is_some() {
        bail!("this device already belongs to a clinic");
    }
    // Remembered for the next start: where the inviter was found.
    for a in invite.addrs.iter().chain(extra_peers) {
        node.add_peer(a.trim())?;
    }
    let secret = node.network_identity();
    let (handle, outbox, thread) = actor::spawn(node);
    let net = Network::start(handle.clone(), outbox, secret, config).await?;
    let joined = net.join(invite, FIND_INVITER).await;
    net.shutdown().await;
    let status = handle.call(|n| n.status()).await?;
    drop(handle);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .ok();
    let stats = joined.map_err(|e| match e {
        NetError::Timeout(_) => anyhow!(
            "{e} within {} s. Check that Huddle runs on the inviting device. If neither the \
             invitation's addresses ({}) nor LAN discovery reach it, give its address \
             (`--peer HOST:PORT`)",
            FIND_INVITER.as_secs(),
            if invite.addrs.is_empty() {
                "none".to_string()
            } else {
                invite.addrs.join(", ")
            }
        ),
        e => e.into(),
    })?;
    match (status.clinic_name, status.member, status.role) {
        (Some(clinic), Some(member), Some(role)) => Ok(Joined {
            clinic,
            member,
            role,
            envelopes_received: stats.envelopes_received as usize,
        }),
        _ => bail!(
            "enrolled, but the clinic's roster has not arrived yet; start Huddle again to finish syncing"
        ),
    }
}
