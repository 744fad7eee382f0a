//! Devices over real libp2p on 127.0.0.1, in one process (discovery off): enrollment by
//! invitation, live push, blind store-and-forward through a scheduler's device, and
//! refusal of strangers, other clinics and reused, cancelled, re-roled or mismatched
//! invitations.

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

/// Listening on loopback only, no peers, no mDNS.
fn loopback() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        ..Default::default()
    }
}

impl Device {
    async fn start(dir: &Path, node: Node) -> Device {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("HUDDLE_LOG"))
            .with_test_writer()
            .try_init();
        let secret = node.network_identity();
        let (handle, outbox, _thread) = actor::spawn(node);
        let config = loopback();
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

    /// A device with no clinic yet, its network started.
    async fn blank(dir: &Path) -> Device {
        Device::start(dir, Node::create(dir, PASS).unwrap()).await
    }

    /// Tries to join with `invite`; the device is kept either way, to look at.
    async fn try_join(&self, invite: &Invitation) -> Result<(), String> {
        self.net
            .join(invite, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn new_thread(&self, category: Category, title: &str) -> String {
        let title = title.to_string();
        self.handle
            .call(move |n| n.new_thread(Subject::Topic(title.clone()), category, &title))
            .await
            .unwrap()
            .unwrap()
            .to_hex()
    }

    async fn members(&self) -> Vec<huddle::node::MemberView> {
        self.handle.call(|n| n.members()).await.unwrap().unwrap()
    }

    async fn open_invites(&self) -> Vec<String> {
        self.handle
            .call(|n| n.invites())
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect()
    }

    async fn status(&self) -> huddle::node::Status {
        self.handle.call(|n| n.status()).await.unwrap()
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

/// Security review finding: an invitation redeemed for a name that already existed
/// attached the new device to that member, ignoring the invitation's role. Here an
/// invitation issued for billing is redeemed after a clinician of the same name was
/// added: the redemption is refused, no device is added to anyone, the device reads
/// nothing, and the invitation stays open (not consumed) until it is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_invite_rerole() {
    let tmp = TempDir::new().unwrap();
    let founder = Device::founder(&tmp.path().join("dana")).await;
    let thread = founder
        .new_thread(Category::Clinical, "Authorization renewal")
        .await;
    founder.post(&thread, "clinical note").await;
    let invite = founder.invite("Lee", Role::Billing, false).await;
    founder
        .handle
        .call(|n| n.add_member("lee", Role::Clinician, false))
        .await
        .unwrap()
        .unwrap();

    let attacker = Device::blank(&tmp.path().join("mallory")).await;
    let joined = attacker.try_join(&invite).await;
    // Whatever the join reported: a device attached to the clinician would be sealed the
    // clinical key by the founder within moments. Watch it read nothing.
    for _ in 0..30 {
        assert!(
            attacker.bodies(&thread).await.is_err(),
            "a billing invitation yielded a device that reads clinical threads"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = joined.unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("stays open"), "{err}");

    // Nothing was joined, nothing is held.
    let status = attacker.status().await;
    assert_eq!((status.clinic_id, status.envelopes), (None, 0));
    assert!(attacker.net.sync_with(founder.net.peer_id()).await.is_err());
    // The clinician lee has no device; the only device in the clinic is the founder's.
    let members = founder.members().await;
    let lee = members.iter().find(|m| m.name == "lee").unwrap();
    assert_eq!((lee.role.as_str(), lee.devices.len()), ("clinician", 0));
    assert_eq!(members.iter().map(|m| m.devices.len()).sum::<usize>(), 1);

    // Not consumed: still listed, and refused the same way again.
    assert_eq!(founder.open_invites().await, [hex::encode(invite.id)]);
    let err = attacker.try_join(&invite).await.unwrap_err();
    assert!(err.contains("already exists"), "{err}");

    // Cancelled, it is refused like a used one and listed no more.
    let id = hex::encode(invite.id);
    let cancelled = founder
        .handle
        .call(move |n| n.cancel_invite(&id[..6]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cancelled.name.as_str(), cancelled.role.as_str()),
        ("Lee", "billing")
    );
    assert!(founder.open_invites().await.is_empty());
    let err = attacker.try_join(&invite).await.unwrap_err();
    assert!(err.contains("cancelled"), "{err}");
    assert_eq!(attacker.status().await.clinic_id, None);
}

/// Redeeming creates the member the invitation names, with its role and admin flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_creates_its_own_member_with_its_role() {
    let tmp = TempDir::new().unwrap();
    let founder = Device::founder(&tmp.path().join("dana")).await;
    let clinical = founder.new_thread(Category::Clinical, "Evaluation").await;
    founder.post(&clinical, "clinical note").await;
    let scheduling = founder.new_thread(Category::Scheduling, "Coverage").await;
    founder.post(&scheduling, "who covers 3pm?").await;

    let bo = Device::join(
        &tmp.path().join("bo"),
        &founder.invite("Bo", Role::Billing, false).await,
    )
    .await
    .unwrap();
    let status = bo.status().await;
    assert_eq!(
        (
            status.member.as_deref(),
            status.role.as_deref(),
            status.admin
        ),
        (Some("Bo"), Some("billing"), false)
    );
    bo.eventually_reads(&scheduling, "who covers 3pm?").await;
    let err = bo.bodies(&clinical).await.unwrap_err();
    assert!(err.contains("may not read"), "{err}");

    let ann = Device::join(
        &tmp.path().join("ann"),
        &founder.invite("Ann", Role::Scheduler, true).await,
    )
    .await
    .unwrap();
    let status = ann.status().await;
    assert_eq!(
        (status.role.as_deref(), status.admin),
        (Some("scheduler"), true)
    );
    let members = founder.members().await;
    for (name, role, admin) in [("Bo", "billing", false), ("Ann", "scheduler", true)] {
        let m = members.iter().find(|m| m.name == name).unwrap();
        assert_eq!(
            (m.role.as_str(), m.admin, m.devices.len()),
            (role, admin, 1)
        );
    }
    // A name that exists is refused at issue time, as is a second open invitation for
    // one name.
    let err = founder
        .handle
        .call(|n| {
            n.create_invite(
                "bo",
                Role::Clinician,
                false,
                Duration::from_secs(60),
                vec![],
            )
        })
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    founder.invite("Kim", Role::Clinician, false).await;
    let err = founder
        .handle
        .call(|n| n.create_invite("Kim", Role::Billing, false, Duration::from_secs(60), vec![]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("open invitation"), "{err}");
}

/// The genesis in the welcome must be the clinic the invitation's tag names: an
/// invitation whose tag says clinic A, answered with clinic B's genesis, joins nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_with_another_clinics_genesis_is_refused() {
    let tmp = TempDir::new().unwrap();
    let a = Device::founder(&tmp.path().join("a")).await;
    let b = Device::founder(&tmp.path().join("b")).await;
    let tag_a = a.invite("Lee", Role::Clinician, false).await.clinic_tag;
    let mut invite = b.invite("Lee", Role::Clinician, false).await;
    assert_ne!(invite.clinic_tag, tag_a);
    invite.clinic_tag = tag_a;

    let joiner = Device::blank(&tmp.path().join("lee")).await;
    let err = joiner.try_join(&invite).await.unwrap_err();
    assert!(err.contains("another clinic"), "{err}");
    let status = joiner.status().await;
    assert_eq!((status.clinic_id, status.envelopes), (None, 0));
    assert!(joiner.handle.call(|n| n.summary().is_none()).await.unwrap());
    // Nothing of B is trusted either: B's device may not sync with it.
    assert!(joiner.net.sync_with(b.net.peer_id()).await.is_err());
}

/// An invitation lists every address the network listens on: other interfaces before
/// (and instead of) loopback, loopback only when nothing else is there. A device joins
/// from those addresses alone (no mDNS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_list_the_addresses_the_network_listens_on() {
    use huddle::net::addr;
    let tmp = TempDir::new().unwrap();
    let loopback = Device::founder(&tmp.path().join("lo")).await;
    let port = |a: &str| a.rsplit('/').next().unwrap().to_string();
    let listed = addr::for_invitation(&loopback.net.listen_addrs().await);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].starts_with("/ip4/127.0.0.1/tcp/"), "{listed:?}");

    // All interfaces: wait until each has been reported.
    let dir = tmp.path().join("all");
    let mut node = Node::create(&dir, PASS).unwrap();
    node.init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
        .unwrap();
    let secret = node.network_identity();
    let (handle, outbox, _thread) = actor::spawn(node);
    let config = NetConfig {
        listen: vec!["/ip4/0.0.0.0/tcp/0".parse().unwrap()],
        ..Default::default()
    };
    let net = Network::start(handle.clone(), outbox, secret, config)
        .await
        .unwrap();
    net.listen_addrs().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listening = net.listen_updates().borrow().clone();
    let listed = addr::for_invitation(&listening);
    let reported: Vec<String> = listening.iter().map(|a| a.to_string()).collect();
    let others: Vec<&String> = reported
        .iter()
        .filter(|a| a.starts_with("/ip4/") && !a.starts_with("/ip4/127."))
        .collect();
    if others.is_empty() {
        assert!(
            listed
                .iter()
                .all(|a| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/")),
            "{listed:?}"
        );
    } else {
        assert!(
            !listed.iter().any(|a| a.starts_with("/ip4/127.")),
            "{listed:?}"
        );
        assert!(listed[0].starts_with("/ip4/"), "{listed:?}");
        for a in others {
            assert!(listed.contains(a), "{a} missing from {listed:?}");
        }
    }
    assert!(listed.iter().all(|a| port(a) == port(&reported[0])));

    let dana = Device { handle, net, dir };
    let invite = dana
        .handle
        .call(move |n| {
            n.create_invite(
                "Lee",
                Role::Clinician,
                false,
                Duration::from_secs(60),
                listed,
            )
        })
        .await
        .unwrap()
        .unwrap();
    Device::join(&tmp.path().join("lee"), &invite)
        .await
        .unwrap();
}

/// A stolen laptop, over real libp2p on loopback: the admin revokes Lee's laptop while
/// it is connected. It is disconnected at once, refused when it dials again, gets
/// nothing posted afterwards (and could not read it: the clinical key rotated), and its
/// own later posts are refused by the clinic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stolen_laptop_drill() {
    let tmp = TempDir::new().unwrap();
    let founder = Device::founder(&tmp.path().join("dana")).await;
    let thread = founder
        .new_thread(Category::Clinical, "Sara M. - session notes")
        .await;
    founder.post(&thread, "before the theft").await;
    let lee = Device::join(
        &tmp.path().join("lee"),
        &founder.invite("Lee", Role::Clinician, false).await,
    )
    .await
    .unwrap();
    lee.eventually_reads(&thread, "before the theft").await;
    let lee_device = lee.status().await.device;

    let revoked = {
        let prefix = lee_device[..8].to_string();
        founder
            .handle
            .call(move |n| n.revoke_device(&prefix))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(revoked.to_hex(), lee_device);
    // Disconnected at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while founder.net.connected().await.contains(&lee.net.peer_id()) {
        assert!(
            Instant::now() < deadline,
            "the revoked device is still connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let devices = founder.handle.call(|n| n.devices()).await.unwrap().unwrap();
    let lee_row = devices.iter().find(|d| d.device == lee_device).unwrap();
    assert_eq!(lee_row.status, "revoked");

    // The laptop was told before it was cut off: it knows it was removed and refuses
    // to post (a modified client that posts anyway is refused by the clinic:
    // attacks.rs, attack_revoked_device_after_cutoff).
    let deadline = Instant::now() + Duration::from_secs(5);
    while lee.status().await.member.is_some() {
        assert!(
            Instant::now() < deadline,
            "the laptop was never told it was removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = thread.clone();
    let refused = lee
        .handle
        .call(move |n| n.post(&t, "posted by the thief", false, None).err())
        .await
        .unwrap();
    assert!(
        matches!(refused, Some(huddle::node::NodeError::NotEnrolled)),
        "{refused:?}"
    );
    founder.post(&thread, "after the theft").await;
    // Refused when it dials again: no sync, nothing exchanged.
    lee.net.dial_once(founder.addr().await).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(lee.net.sync_with(founder.net.peer_id()).await.is_err());
    let bodies = lee.bodies(&thread).await.unwrap_or_default();
    assert!(!bodies.iter().any(|b| b == "after the theft"), "{bodies:?}");
    let bodies = founder.bodies(&thread).await.unwrap();
    assert!(
        !bodies.iter().any(|b| b == "posted by the thief"),
        "{bodies:?}"
    );

    // Even handed over by other means (a bundle), the new post is unreadable to the
    // revoked device, and its own post is refused by the clinic.
    let to_lee = tmp.path().join("to-lee.bundle");
    let to_founder = tmp.path().join("to-founder.bundle");
    let p = to_lee.clone();
    founder
        .handle
        .call(move |n| n.export_bundle(&p))
        .await
        .unwrap()
        .unwrap();
    let p = to_lee.clone();
    lee.handle
        .call(move |n| n.import_bundle(&p))
        .await
        .unwrap()
        .unwrap();
    let bodies = lee.bodies(&thread).await.unwrap_or_default();
    assert!(!bodies.iter().any(|b| b == "after the theft"), "{bodies:?}");
    assert!(!raw_bytes_contain(&lee.dir, "after the theft"));
    let _ = to_founder;
    let bodies = founder.bodies(&thread).await.unwrap();
    assert!(
        !bodies.iter().any(|b| b == "posted by the thief"),
        "{bodies:?}"
    );
}

/// Waits until `rx` holds a value for which `done` is true (15 s at most).
async fn watch_until<T: Clone + std::fmt::Debug>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    what: &str,
    done: impl FnMut(&T) -> bool,
) -> T {
    let found = match tokio::time::timeout(Duration::from_secs(15), rx.wait_for(done)).await {
        Ok(Ok(v)) => Some(v.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| panic!("{what}: never happened; last value {:?}", *rx.borrow()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_sync_progress_are_watchable() {
    let tmp = TempDir::new().unwrap();
    let founder = Device::founder(&tmp.path().join("a")).await;
    let thread = founder.new_thread(Category::Scheduling, "Coverage").await;
    for i in 0..60 {
        founder.post(&thread, &format!("message {i}")).await;
    }
    let lee = Device::join(
        &tmp.path().join("lee"),
        &founder.invite("Lee", Role::Clinician, false).await,
    )
    .await
    .unwrap();
    let founder_device = huddle::net::addr::device(&founder.net.peer_id()).unwrap();
    let lee_device = huddle::net::addr::device(&lee.net.peer_id()).unwrap();

    // The join's first round brought the history: everything the founder said it held.
    let mut progress = lee.net.sync_progress();
    let done = watch_until(&mut progress, "first sync counted", |p| {
        !p.syncing && p.expected > 0 && p.received >= p.expected
    })
    .await;
    assert!(done.expected > 60, "{done:?}");
    assert_eq!(done.received, done.expected, "{done:?}");
    assert!(done.last_synced_ms.is_some(), "{done:?}");
    lee.eventually_reads(&thread, "message 59").await;

    // Each side lists the other, with when they last synced.
    let mut lee_peers = lee.net.peers();
    let seen = watch_until(&mut lee_peers, "lee lists the founder", |p| {
        p.len() == 1 && p[0].last_sync_ms.is_some()
    })
    .await;
    assert_eq!(seen[0].device, founder_device);
    assert!(
        seen[0]
            .addr
            .as_deref()
            .is_some_and(|a| a.contains("127.0.0.1"))
    );
    let mut founder_peers = founder.net.peers();
    let seen = watch_until(&mut founder_peers, "the founder lists lee", |p| {
        p.iter()
            .any(|v| v.device == lee_device && v.last_sync_ms.is_some())
    })
    .await;
    assert_eq!(seen.len(), 1);

    // A device of another clinic connects and asks for a sync round: it is never
    // listed, and what its summary claims counts for nothing.
    let stranger = Device::founder(&tmp.path().join("stranger")).await;
    for i in 0..5 {
        stranger
            .post(
                &stranger.new_thread(Category::Operations, "x").await,
                &format!("{i}"),
            )
            .await;
    }
    let counts = |p: &huddle::net::SyncProgress| (p.received, p.expected);
    let founder_progress = counts(&founder.net.sync_progress().borrow());
    stranger.net.dial_once(founder.addr().await).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !founder
        .net
        .connected()
        .await
        .contains(&stranger.net.peer_id())
    {
        assert!(Instant::now() < deadline, "the stranger never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stranger.net.sync_with(founder.net.peer_id()).await.is_err());
    let listed: Vec<_> = founder
        .net
        .peers()
        .borrow()
        .iter()
        .map(|p| p.device)
        .collect();
    assert_eq!(listed, [lee_device], "only the admitted device");
    assert_eq!(
        counts(&founder.net.sync_progress().borrow()),
        founder_progress
    );
    stranger.net.shutdown().await;

    // A post reaches the founder by push: nothing waits.
    lee.post(&thread, "from lee").await;
    founder.eventually_reads(&thread, "from lee").await;
    watch_until(&mut progress, "the push counted as delivered", |p| {
        p.waiting == 0
    })
    .await;

    // The founder stops: it leaves the list, and new posts wait.
    founder.net.shutdown().await;
    watch_until(&mut lee_peers, "the founder leaves the list", |p| {
        p.is_empty()
    })
    .await;
    lee.post(&thread, "offline one").await;
    lee.post(&thread, "offline two").await;
    // The two posts are the changes waiting; the audit entries they wrote are the
    // device's bookkeeping, counted apart.
    let offline = watch_until(&mut progress, "two changes waiting", |p| {
        p.waiting_bookkeeping >= 2
    })
    .await;
    assert_eq!(offline.waiting, 2, "{offline:?}");
    assert_eq!(offline.waiting_bookkeeping, 2, "{offline:?}");
    assert!(!offline.syncing);

    // Lee's network stops and starts again (the app or serve restarted): the counts
    // and the time of the last sync are where they were, not "up to date".
    let Device { handle, net, .. } = lee;
    let outbox = net.shutdown().await.expect("the outbox back");
    let secret = handle.call(|n| n.network_identity()).await.unwrap();
    let config = loopback();
    let again = Network::start(handle.clone(), outbox, secret, config)
        .await
        .unwrap();
    let resumed = *again.sync_progress().borrow();
    assert_eq!(
        (
            resumed.waiting,
            resumed.waiting_bookkeeping,
            resumed.last_synced_ms
        ),
        (2, 2, offline.last_synced_ms),
        "{resumed:?}"
    );
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_travels_live_through_an_admin_who_cannot_read_it() {
    let tmp = TempDir::new().unwrap();
    let dana = Device::founder(&tmp.path().join("dana")).await;
    let sam = Device::join(
        &tmp.path().join("sam"),
        &dana.invite("Sam", Role::Scheduler, false).await,
    )
    .await
    .unwrap();
    let lee = Device::join(
        &tmp.path().join("lee"),
        &dana.invite("Lee", Role::Clinician, false).await,
    )
    .await
    .unwrap();
    // Each joined through Dana's device, which relays what they say to each other.
    let lee_sees_sam = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if lee.members().await.iter().any(|m| m.name == "Sam") {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(lee_sees_sam, "Lee's roster names Sam");
    let direct = lee
        .handle
        .call(|n| n.new_direct(&["Sam".to_string()]))
        .await
        .unwrap()
        .unwrap()
        .to_hex();
    lee.post(&direct, "Can you move my 3 pm to Thursday?").await;
    sam.eventually_reads(&direct, "Can you move my 3 pm to Thursday?")
        .await;
    sam.post(&direct, "Moved: Thursday 3 pm").await;
    lee.eventually_reads(&direct, "Moved: Thursday 3 pm").await;

    // Dana's device carried both, and reads neither.
    let err = dana.bodies(&direct).await.unwrap_err();
    assert!(
        err.contains("direct conversation among other members"),
        "{err}"
    );
    assert!(!raw_bytes_contain(&dana.dir, "3 pm"));
    let listed = dana.handle.call(|n| n.threads()).await.unwrap().unwrap().0;
    assert!(listed.iter().all(|t| t.id != direct), "not in Dana's list");
}
