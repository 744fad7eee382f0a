//! Devices over real libp2p on 127.0.0.1, in one process (discovery off): enrollment by
//! invitation, live push, blind store-and-forward through a scheduler's device, and
//! refusal of strangers, other clinics and reused invitations.

use huddle::core::invite::Invitation;
use huddle::core::policy::{Category, Role};
use huddle::core::thread::Subject;
use huddle::net::{NetConfig, Network};
use huddle::node::Node;
use huddle::node::actor::{self, NodeHandle};
use libp2p::Multiaddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const PASS: &[u8] = b"test passphrase";

struct Device {
    handle: NodeHandle,
    net: Network,
    dir: std::path::PathBuf,
}

impl Device {
    async fn start(dir: &Path, node: Node) -> Device {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("HUDDLE_LOG"))
            .with_test_writer()
            .try_init();
        let secret = node.network_identity();
        let (handle, outbox, _thread) = actor::spawn(node);
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..Default::default()
        };
        let net = Network::start(handle.clone(), outbox, secret, config)
            .await
            .unwrap();
        Device {
            handle,
            net,
            dir: dir.to_path_buf(),
        }
    }

    async fn founder(dir: &Path) -> Device {
        let mut node = Node::create(dir, PASS).unwrap();
        node.init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
            .unwrap();
        Device::start(dir, node).await
    }

    async fn addr(&self) -> Multiaddr {
        self.net.listen_addrs().await[0].clone()
    }

    async fn invite(&self, name: &str, role: Role, admin: bool) -> Invitation {
        let addr = self.addr().await.to_string();
        let (name, addr) = (name.to_string(), vec![addr]);
        self.handle
            .call(move |n| n.create_invite(&name, role, admin, Duration::from_secs(600), addr))
            .await
            .unwrap()
            .unwrap()
    }

    async fn join(dir: &Path, invite: &Invitation) -> Result<Device, String> {
        let node = Node::create(dir, PASS).unwrap();
        let d = Device::start(dir, node).await;
        d.net
            .join(invite, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        Ok(d)
    }

    async fn post(&self, thread: &str, text: &str) {
        let (t, x) = (thread.to_string(), text.to_string());
        self.handle
            .call(move |n| n.post(&t, &x, false, None))
            .await
            .unwrap()
            .unwrap();
    }

    async fn bodies(&self, thread: &str) -> Result<Vec<String>, String> {
        let t = thread.to_string();
        let detail = self
            .handle
            .call(move |n| n.thread(&t))
            .await
            .unwrap()
            .map_err(|e| e.to_string())?;
        Ok(detail.messages.into_iter().map(|m| m.body).collect())
    }

    async fn eventually_reads(&self, thread: &str, body: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self
                .bodies(thread)
                .await
                .is_ok_and(|b| b.iter().any(|x| x == body))
            {
                return;
            }
            assert!(Instant::now() < deadline, "{body:?} never arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn connect(&self, other: &Device) {
        self.net.dial_once(other.addr().await).await;
        let peer = other.net.peer_id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.net.connected().await.contains(&peer) {
            assert!(Instant::now() < deadline, "no connection");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn raw_bytes_contain(dir: &Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinicians_meet_only_through_the_front_desk_which_cannot_read() {
    let tmp = TempDir::new().unwrap();
    let founder = Device::founder(&tmp.path().join("dana")).await;
    // The front desk is an admin scheduler; it enrolls the second clinician.
    let sam = Device::join(
        &tmp.path().join("sam"),
        &founder.invite("Sam", Role::Scheduler, true).await,
    )
    .await
    .unwrap();
    let thread = founder
        .handle
        .call(|n| {
            n.new_thread(
                Subject::Patient("Sara M.".into()),
                Category::Clinical,
                "Authorization renewal",
            )
        })
        .await
        .unwrap()
        .unwrap()
        .to_hex();
    founder.post(&thread, "first clinical note").await;
    // Live push: Sam holds the new envelopes at once but cannot read them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = thread.clone();
        let held = sam
            .handle
            .call(move |n| n.resolve_thread(&t).is_ok())
            .await
            .unwrap();
        if held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "push never reached the front desk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    founder.net.disconnect(sam.net.peer_id()).await;
    let sam_shares = sam.net.connected().await;

    let lee = Device::join(
        &tmp.path().join("lee"),
        &sam.invite("Lee", Role::Clinician, false).await,
    )
    .await
    .unwrap();
    assert!(
        lee.bodies(&thread).await.is_err(),
        "no clinical key yet: the founder has not seen Lee"
    );
    founder.post(&thread, "second clinical note").await;

    // The founder meets the front desk again: it learns of Lee, seals the thread key
    // for Lee's device, and its new post travels along.
    founder.connect(&sam).await;
    lee.eventually_reads(&thread, "second clinical note").await;
    lee.eventually_reads(&thread, "first clinical note").await;
    assert!(!lee.net.connected().await.contains(&founder.net.peer_id()));
    assert!(!founder.net.connected().await.contains(&lee.net.peer_id()));
    let _ = sam_shares;

    // Lee posts; it reaches the founder through Sam.
    lee.post(&thread, "reply from Lee").await;
    founder.eventually_reads(&thread, "reply from Lee").await;
    let err = sam.bodies(&thread).await.unwrap_err();
    assert!(err.contains("may not read"), "{err}");
    assert!(!raw_bytes_contain(&sam.dir, "clinical note"));
    assert!(!raw_bytes_contain(&sam.dir, "Sara M."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_other_clinics_and_reused_invitations_are_refused() {
    let tmp = TempDir::new().unwrap();
    let founder = Device::founder(&tmp.path().join("a")).await;
    let invite = founder.invite("Lee", Role::Clinician, false).await;
    let lee = Device::join(&tmp.path().join("lee"), &invite)
        .await
        .unwrap();

    // The same invitation again, from another device: refused on both sides.
    let err = Device::join(&tmp.path().join("again"), &invite)
        .await
        .err()
        .unwrap();
    assert!(err.contains("already been used"), "{err}");

    // A wrong secret.
    let mut forged = founder.invite("Kim", Role::Clinician, false).await;
    forged.secret[0] ^= 1;
    let err = Device::join(&tmp.path().join("forged"), &forged)
        .await
        .err()
        .unwrap();
    assert!(
        err.contains("secret does not match") || err.contains("refused"),
        "{err}"
    );

    // A stranger (no clinic) and a device of another clinic get no data.
    let stranger = Device::start(
        &tmp.path().join("s"),
        Node::create(&tmp.path().join("s"), PASS).unwrap(),
    )
    .await;
    let other = Device::founder(&tmp.path().join("other")).await;
    for outsider in [&stranger, &other] {
        outsider.net.dial_once(founder.addr().await).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(outsider.net.sync_with(founder.net.peer_id()).await.is_err());
        assert!(
            !founder
                .net
                .connected()
                .await
                .contains(&outsider.net.peer_id())
                || {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    !founder
                        .net
                        .connected()
                        .await
                        .contains(&outsider.net.peer_id())
                }
        );
    }
    let count = stranger
        .handle
        .call(|n| n.status().envelopes)
        .await
        .unwrap();
    assert_eq!(count, 0);
    let _ = lee;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_in_sync_exchange_under_a_kilobyte_per_round() {
    let tmp = TempDir::new().unwrap();
    let founder = Device::founder(&tmp.path().join("a")).await;
    let thread = founder
        .handle
        .call(|n| {
            n.new_thread(
                Subject::Topic("Coverage".into()),
                Category::Scheduling,
                "Friday",
            )
        })
        .await
        .unwrap()
        .unwrap()
        .to_hex();
    for i in 0..200 {
        founder.post(&thread, &format!("message {i}")).await;
    }
    let lee = Device::join(
        &tmp.path().join("lee"),
        &founder.invite("Lee", Role::Clinician, false).await,
    )
    .await
    .unwrap();
    lee.eventually_reads(&thread, "message 199").await;
    let first = lee.net.sync_with(founder.net.peer_id()).await.unwrap();
    let round = lee.net.sync_with(founder.net.peer_id()).await.unwrap();
    assert_eq!(
        round.envelopes_received + round.envelopes_sent,
        0,
        "{first:?} then {round:?}"
    );
    assert!(round.bytes_sent + round.bytes_received < 1024, "{round:?}");
}
