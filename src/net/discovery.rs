//! LAN discovery with mdns-sd: advertise `_huddle._tcp.local.` and browse for devices of
//! the same clinic. TXT records carry only an opaque clinic tag and the peer id — no
//! clinic, staff or patient name. Found addresses go to the network as dial requests.

use libp2p::{Multiaddr, PeerId};
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

pub const SERVICE: &str = "_huddle._tcp.local.";

/// A running advertisement and browser; stopped when dropped.
pub struct Discovery {
    daemon: ServiceDaemon,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

/// Starts discovery. `advertise_port` is `None` for a device that only looks (joining).
pub fn start(
    tag: [u8; 8],
    me: PeerId,
    advertise_port: Option<u16>,
    interface: Option<&str>,
    found: mpsc::Sender<(PeerId, Multiaddr)>,
) -> Result<Discovery, mdns_sd::Error> {
    let daemon = ServiceDaemon::new()?;
    if let Some(name) = interface {
        daemon.disable_interface(IfKind::All)?;
        daemon.enable_interface(IfKind::Name(name.to_string()))?;
    }
    let tag_hex = hex::encode(tag);
    if let Some(port) = advertise_port {
        let peer = me.to_string();
        let instance = format!("huddle-{}", &peer[peer.len().saturating_sub(12)..]);
        let host = format!("{instance}.local.");
        let props = [("t", tag_hex.as_str()), ("p", peer.as_str())];
        let info =
            ServiceInfo::new(SERVICE, &instance, &host, "", port, &props[..])?.enable_addr_auto();
        daemon.register(info)?;
    }
    let events = daemon.browse(SERVICE)?;
    tokio::spawn(async move {
        while let Ok(event) = events.recv_async().await {
            let ServiceEvent::ServiceResolved(s) = event else {
                continue;
            };
            if s.get_property_val_str("t") != Some(tag_hex.as_str()) {
                continue;
            }
            let Some(peer) = s
                .get_property_val_str("p")
                .and_then(|p| p.parse::<PeerId>().ok())
            else {
                continue;
            };
            if peer == me {
                continue;
            }
            for ip in s.get_addresses_v4() {
                if let Ok(addr) = format!("/ip4/{ip}/tcp/{}", s.get_port()).parse::<Multiaddr>() {
                    tracing::debug!(%peer, %addr, "found by mDNS");
                    if found.send((peer, addr)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(Discovery { daemon })
}
