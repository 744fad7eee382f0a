//! `huddle join INVITE [--peer ADDR]…`: a new device enrolls with the invitation
//! ([`huddle::host::enroll`]) and fetches the clinic's history.

use anyhow::Result;
use std::path::Path;

use super::args::NetArgs;
use super::open_node;
use huddle::core::invite::Invitation;
use huddle::host::net_config;

pub fn run(dir: &Path, invite: &str, args: &NetArgs) -> Result<()> {
    let invite = Invitation::parse(invite)?;
    let created = !huddle::store::Store::exists(dir);
    let result = enroll(dir, &invite, args);
    if result.is_err() && created {
        // A failed join leaves nothing behind: the directory was made for it.
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn enroll(dir: &Path, invite: &Invitation, args: &NetArgs) -> Result<()> {
    let node = open_node(dir, true)?;
    let config = net_config(&args.options(), invite.clinic_tag, &[], false)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let joined = runtime.block_on(huddle::host::enroll(node, invite, &args.peers, config))?;
    println!(
        "joined {} as {} ({}); {} envelopes received",
        joined.clinic, joined.member, joined.role, joined.envelopes_received
    );
    println!("run `huddle serve` to stay in sync");
    Ok(())
}
