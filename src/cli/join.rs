//! `huddle join INVITE [--peer ADDR]…`: a new device finds the inviting device (the
//! invitation's addresses, mDNS, or addresses given with `--peer`), enrolls with the
//! invitation and fetches the clinic's history.

use anyhow::{Result, anyhow, bail};
use std::path::Path;
use std::time::Duration;

use super::{NetArgs, open_node, serve::net_config};
use crate::core::invite::Invitation;
use crate::net::{NetError, Network};
use crate::node::actor;

/// How long to look for the inviting device.
const FIND_INVITER: Duration = Duration::from_secs(60);

pub fn run(dir: &Path, invite: &str, args: &NetArgs) -> Result<()> {
    let invite = Invitation::parse(invite)?;
    let created = !crate::store::Store::exists(dir);
    let result = enroll(dir, &invite, args);
    if result.is_err() && created {
        // A failed join leaves nothing behind: the directory was made for it.
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn enroll(dir: &Path, invite: &Invitation, args: &NetArgs) -> Result<()> {
    let mut node = open_node(dir, true)?;
    if node.summary().is_some() {
        bail!("this device already belongs to a clinic");
    }
    let config = net_config(args, invite.clinic_tag, &[], false)?;
    // Remembered for `huddle serve` afterwards: where the inviter was found.
    for a in invite.addrs.iter().chain(&args.peers) {
        node.add_peer(a.trim())?;
    }
    let secret = node.network_identity();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (handle, outbox, thread) = actor::spawn(node);
        let net = Network::start(handle.clone(), outbox, secret, config).await?;
        let joined = net.join(invite, FIND_INVITER).await;
        net.shutdown().await;
        let status = handle.call(|n| n.status()).await?;
        drop(handle);
        tokio::task::spawn_blocking(move || thread.join()).await.ok();
        let stats = joined.map_err(|e| match e {
            NetError::Timeout(_) => anyhow!(
                "{e} within {} s. Check that `huddle serve` runs on it. If neither the \
                 invitation's addresses ({}) nor mDNS reach it, give its address: \
                 `huddle join INVITE --peer HOST:PORT`",
                FIND_INVITER.as_secs(),
                if invite.addrs.is_empty() { "none".to_string() } else { invite.addrs.join(", ") }
            ),
            e => e.into(),
        })?;
        match (status.clinic_name, status.member, status.role) {
            (Some(clinic), Some(member), Some(role)) => {
                println!("joined {clinic} as {member} ({role}); {} envelopes received", stats.envelopes_received);
                println!("run `huddle serve` to stay in sync");
                Ok(())
            }
            _ => bail!("enrolled, but the clinic's roster has not arrived yet; run `huddle serve` to finish syncing"),
        }
    })
}
