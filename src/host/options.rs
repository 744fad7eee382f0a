//! Network options of a running node, as plain data: where to listen, which peers to
//! dial, and LAN discovery. The CLI fills them from its flags, the app from its launch
//! options; [`net_config`] turns them (plus remembered peers) into the network's
//! configuration.

use anyhow::Result;

use crate::net::{MdnsConfig, NetConfig, addr};

/// Default TCP port, so that clinics can note one address per device.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/47733";

/// How a node meets its peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// Address to listen on, `HOST:PORT` or a multiaddr (default: [`DEFAULT_LISTEN`]
    /// for a node that others dial).
    pub listen: Option<String>,
    /// Peers to dial (remembered and redialed with backoff).
    pub peers: Vec<String>,
    /// LAN discovery (mDNS) off.
    pub no_mdns: bool,
    /// Only this network interface for mDNS.
    pub mdns_interface: Option<String>,
}

/// The network configuration for `options` plus remembered peers; `advertise` for a
/// node that others dial (it listens by default and announces itself by mDNS).
pub fn net_config(
    options: &NetOptions,
    tag: [u8; 8],
    remembered: &[String],
    advertise: bool,
) -> Result<NetConfig> {
    let listen = match &options.listen {
        Some(a) => vec![addr::parse(a).map_err(anyhow::Error::msg)?],
        None if advertise => vec![DEFAULT_LISTEN.parse()?],
        None => Vec::new(),
    };
    let mut peers = Vec::new();
    for p in options.peers.iter().chain(remembered) {
        peers.push(addr::parse(p).map_err(anyhow::Error::msg)?);
    }
    let mdns = (!options.no_mdns).then(|| MdnsConfig {
        tag,
        interface: options.mdns_interface.clone(),
        advertise,
    });
    Ok(NetConfig {
        listen,
        peers,
        mdns,
    })
}
