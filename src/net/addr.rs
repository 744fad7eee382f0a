//! Peer addresses as people type them (`HOST:PORT`) or as multiaddrs, and the mapping
//! between a libp2p peer id and a Huddle device id (the same ed25519 key).

use libp2p::identity::{PublicKey, ed25519};
use libp2p::{Multiaddr, PeerId};
use std::net::SocketAddr;

use crate::core::ids::DeviceId;

/// `198.18.0.2:47733`, `[::1]:47733` or `/ip4/198.18.0.2/tcp/47733[/p2p/…]`.
pub fn parse(text: &str) -> Result<Multiaddr, String> {
    let t = text.trim();
    if t.starts_with('/') {
        return t
            .parse()
            .map_err(|e| format!("`{t}` is not a valid address: {e}"));
    }
    let sock: SocketAddr = t
        .parse()
        .map_err(|_| format!("`{t}` is not HOST:PORT with an IP address, nor a multiaddr"))?;
    let ip = match sock.ip() {
        std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
        std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
    };
    format!("{ip}/tcp/{}", sock.port())
        .parse()
        .map_err(|e| format!("{e}"))
}

pub fn peer_id(device: &DeviceId) -> Option<PeerId> {
    let key = ed25519::PublicKey::try_from_bytes(&device.0).ok()?;
    Some(PublicKey::from(key).to_peer_id())
}

/// The device behind a peer id (ed25519 keys are inlined in the peer id).
pub fn device(peer: &PeerId) -> Option<DeviceId> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(DeviceId(key.try_into_ed25519().ok()?.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            parse("127.0.0.1:4000").unwrap().to_string(),
            "/ip4/127.0.0.1/tcp/4000"
        );
        assert_eq!(parse("[::1]:5").unwrap().to_string(), "/ip6/::1/tcp/5");
        assert!(parse("/ip4/1.2.3.4/tcp/1").is_ok());
        assert!(parse("clinic-pc:4000").is_err());
    }

    #[test]
    fn peer_and_device_ids_map_both_ways() {
        let kp = libp2p::identity::Keypair::generate_ed25519();
        let peer = kp.public().to_peer_id();
        let dev = device(&peer).unwrap();
        assert_eq!(peer_id(&dev), Some(peer));
    }
}
