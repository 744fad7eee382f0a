//! Peer addresses as people type them (`HOST:PORT`) or as multiaddrs, the addresses an
//! invitation lists, and the mapping between a libp2p peer id and a Huddle device id (the
//! same ed25519 key).

use libp2p::identity::{PublicKey, ed25519};
use libp2p::multiaddr::Protocol;
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

/// The addresses an invitation lists, from every address the node listens on (one per
/// interface when it listens on 0.0.0.0): IPv4 first, then IPv6, then link-local IPv4,
/// in the order reported; loopback only when there is nothing else (another device
/// cannot dial it). Unspecified addresses (0.0.0.0, ::) and IPv6 link-local ones (which
/// need an interface to dial) are left out. No duplicates.
pub fn for_invitation(listening: &[Multiaddr]) -> Vec<String> {
    const LOOPBACK: u8 = 3;
    let rank = |a: &Multiaddr| match a.iter().next() {
        Some(Protocol::Ip4(ip)) if ip.is_unspecified() => None,
        Some(Protocol::Ip4(ip)) if ip.is_loopback() => Some(LOOPBACK),
        Some(Protocol::Ip4(ip)) if ip.is_link_local() => Some(2),
        Some(Protocol::Ip4(_)) => Some(0),
        Some(Protocol::Ip6(ip)) if ip.is_unspecified() || ip.is_unicast_link_local() => None,
        Some(Protocol::Ip6(ip)) if ip.is_loopback() => Some(LOOPBACK),
        _ => Some(1),
    };
    let mut ranked: Vec<(u8, String)> = Vec::new();
    for a in listening {
        if let Some(r) = rank(a)
            && !ranked.iter().any(|(_, s)| *s == a.to_string())
        {
            ranked.push((r, a.to_string()));
        }
    }
    ranked.sort_by_key(|(r, _)| *r);
    if ranked.iter().any(|(r, _)| *r < LOOPBACK) {
        ranked.retain(|(r, _)| *r < LOOPBACK);
    }
    ranked.into_iter().map(|(_, a)| a).collect()
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

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn invitations_list_other_interfaces_before_loopback_and_loopback_only_alone() {
        // As libp2p reports a 0.0.0.0 listener: loopback first, often.
        let listening = addrs(&[
            "/ip4/127.0.0.1/tcp/47733",
            "/ip6/::1/tcp/47733",
            "/ip6/fe80::1/tcp/47733",
            "/ip6/fd00::2/tcp/47733",
            "/ip4/169.254.3.4/tcp/47733",
            "/ip4/192.0.2.2/tcp/47733",
            "/ip4/10.1.2.3/tcp/47733",
            "/ip4/192.0.2.2/tcp/47733",
            "/ip4/0.0.0.0/tcp/47733",
        ]);
        assert_eq!(
            for_invitation(&listening),
            [
                "/ip4/192.0.2.2/tcp/47733",
                "/ip4/10.1.2.3/tcp/47733",
                "/ip6/fd00::2/tcp/47733",
                "/ip4/169.254.3.4/tcp/47733",
            ]
        );
        assert_eq!(
            for_invitation(&addrs(&["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1"])),
            ["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1"]
        );
        assert_eq!(
            for_invitation(&addrs(&["/ip4/127.0.0.1/tcp/1", "/ip4/198.18.0.1/tcp/1"])),
            ["/ip4/198.18.0.1/tcp/1"]
        );
        assert!(for_invitation(&addrs(&["/ip4/0.0.0.0/tcp/1"])).is_empty());
        assert!(for_invitation(&[]).is_empty());
        // Every listed address is one `join` can dial.
        for a in for_invitation(&listening) {
            assert!(parse(&a).is_ok(), "{a}");
        }
    }

    #[test]
    fn peer_and_device_ids_map_both_ways() {
        let kp = libp2p::identity::Keypair::generate_ed25519();
        let peer = kp.public().to_peer_id();
        let dev = device(&peer).unwrap();
        assert_eq!(peer_id(&dev), Some(peer));
    }
}
