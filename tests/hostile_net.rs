//! The network under attack, on 127.0.0.1 with discovery off: a hostile libp2p client
//! (a stranger with a fresh identity, or a device enrolled and then turned hostile)
//! opens many streams, declares huge frames and trickles or stalls, floods enrollment,
//! and opens many connections. The device stays within its memory bound, drops what
//! stalls, handles one enrollment at a time, caps connections, and still shuts down
//! promptly.

mod common;

use common::{PASS, Sandbox};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use huddle::core::identity::DeviceSecret;
use huddle::core::invite::Invitation;
use huddle::core::policy::Role;
use huddle::net::limits::{ENROLL_TIMEOUT, FRAME_TIMEOUT, MAX_CONNECTIONS_PER_PEER, MAX_ENROLLING};
use huddle::net::{ENROLL, NetConfig, Network, SYNC, addr};
use huddle::node::Node;
use huddle::node::actor::{self, NodeHandle};
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, StreamProtocol, noise, tcp, yamux};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::watch;

const MIB: u64 = 1024 * 1024;
/// The largest frame a device accepts to be declared (`core::limits::MAX_FRAME`,
/// 3.75 MiB): a larger declaration is refused before anything is read.
const HUGE: u32 = huddle::core::limits::MAX_FRAME as u32;

/// A hostile libp2p client: its own swarm (default Yamux, no limits of its own), which
/// dials the target and counts the connections it has open.
struct Hostile {
    control: libp2p_stream::Control,
    target: PeerId,
    connections: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Connects `dials` times to `target` at `addr`, and waits for the first connection.
    async fn connect(key: Keypair, target: PeerId, addr: Multiaddr, dials: usize) -> Hostile {
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let control = swarm.behaviour().new_control();
        let dial = move || {
            DialOpts::peer_id(target)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::Always)
                .build()
        };
        for _ in 0..dials {
            swarm.dial(dial()).unwrap();
        }
        let (tx, mut connections) = watch::channel(0usize);
        let task = tokio::spawn(async move {
            let (mut open, mut dialing) = (0usize, true);
            // Cut off, it comes back at once.
            let mut redial = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { .. } => {
                            open += 1;
                            dialing = false;
                        }
                        SwarmEvent::ConnectionClosed { .. } => open = open.saturating_sub(1),
                        SwarmEvent::OutgoingConnectionError { .. } => {
                            dialing = false;
                            continue;
                        }
                        _ => continue,
                    },
                    _ = redial.tick() => {
                        if open == 0 && !dialing {
                            dialing = swarm.dial(dial()).is_ok();
                        }
                        continue;
                    }
                }
                tx.send_replace(open);
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connections.wait_for(|n| *n > 0))
            .await
            .expect("the hostile client connects")
            .unwrap();
        Hostile {
            control,
            target,
            connections,
            task,
        }
    }

    async fn stranger(target: PeerId, addr: Multiaddr) -> Hostile {
        Hostile::connect(Keypair::generate_ed25519(), target, addr, 1).await
    }

    async fn open(&self, protocol: StreamProtocol) -> Option<libp2p::Stream> {
        let mut control = self.control.clone();
        tokio::time::timeout(
            Duration::from_secs(5),
            control.open_stream(self.target, protocol),
        )
        .await
        .ok()?
        .ok()
    }

    /// Opens a stream, declares a frame of `declared` bytes and sends `sent` of them.
    async fn stall(
        &self,
        protocol: StreamProtocol,
        declared: u32,
        sent: usize,
    ) -> Option<libp2p::Stream> {
        let mut s = self.open(protocol).await?;
        s.write_all(&declared.to_be_bytes()).await.ok()?;
        s.write_all(&vec![0x5a; sent]).await.ok()?;
        s.flush().await.ok()?;
        Some(s)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the device ended the stream (end of stream or reset) within `within`.
async fn ended_within(s: &mut libp2p::Stream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A refusal message (enrollment says why); the end comes next.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Whether a stream that starts a small frame is dropped by the device (possibly before
/// the frame could even be written).
async fn dropped(h: &Hostile, protocol: StreamProtocol) -> bool {
    match h.stall(protocol, 1000, 10).await {
        None => true,
        Some(mut s) => ended_within(&mut s, Duration::from_secs(3)).await,
    }
}

/// A device's network in this process.
struct Device {
    handle: NodeHandle,
    net: Network,
    secret: Arc<DeviceSecret>,
    thread: std::thread::JoinHandle<huddle::node::actor::Held>,
}

impl Device {
    async fn start(node: Node) -> Device {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("HUDDLE_LOG"))
            .with_test_writer()
            .try_init();
        let secret = node.network_identity();
        let (handle, outbox, thread) = actor::spawn(node);
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..Default::default()
        };
        let net = Network::start(handle.clone(), outbox, secret.clone(), config)
            .await
            .unwrap();
        Device {
            handle,
            net,
            secret,
            thread,
        }
    }

    async fn founder(dir: &TempDir) -> Device {
        let mut node = Node::create(dir.path(), PASS.as_bytes()).unwrap();
        node.init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
            .unwrap();
        Device::start(node).await
    }

    async fn addr(&self) -> Multiaddr {
        self.net.listen_addrs().await[0].clone()
    }

    async fn invite(&self, name: &str) -> Invitation {
        let (name, addrs) = (name.to_string(), vec![self.addr().await.to_string()]);
        self.handle
            .call(move |n| {
                n.create_invite(
                    &name,
                    Role::Clinician,
                    false,
                    Duration::from_secs(600),
                    addrs,
                )
            })
            .await
            .unwrap()
            .unwrap()
    }

    /// A device enrolled with the founder, whose keys then serve a hostile client.
    async fn turncoat(founder: &Device, dir: &TempDir) -> Keypair {
        let invite = founder.invite("Lee").await;
        let joiner = Device::start(Node::create(dir.path(), PASS.as_bytes()).unwrap()).await;
        joiner
            .net
            .join(&invite, Duration::from_secs(10))
            .await
            .unwrap();
        let mut seed = joiner.secret.to_bytes();
        let key = Keypair::ed25519_from_bytes(&mut seed[..32]).unwrap();
        joiner.net.shutdown().await;
        key
    }
}

/// The resident memory of a process, from /proc.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `huddle serve` on 127.0.0.1 (no discovery), with its address and peer id.
struct Served {
    child: std::process::Child,
    addr: Multiaddr,
    peer: PeerId,
    _sandbox: Sandbox,
}

impl Served {
    fn start() -> Served {
        let sandbox = Sandbox::new();
        let device = sandbox.device("front-desk");
        device.ok(&["init", "--clinic", "Maple Street Therapy", "--name", "Dana"]);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
            .env_remove("HUDDLE_DATA_DIR")
            .env("HUDDLE_NO_MDNS", "1")
            .env("HUDDLE_LOG", "warn")
            .env("HUDDLE_PASSPHRASE", PASS)
            .arg("--data-dir")
            .arg(&device.dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-mdns"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start huddle serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !device.dir.join("control.sock").exists() {
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The invitation names the device and the address it listens on.
        let invite = device.ok(&["invite", "--name", "Sam", "--role", "scheduler"]);
        let invite = Invitation::parse(invite.trim()).unwrap();
        Served {
            child,
            addr: invite.addrs[0].parse().unwrap(),
            peer: addr::peer_id(&invite.inviter).unwrap(),
            _sandbox: sandbox,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM; the exit status and how long the process took to exit (or `None`).
    fn terminate(&mut self, within: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let asked = Instant::now();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        while asked.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, asked.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's resident memory until stopped; gives back the peak.
struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssPeak { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

/// One attacking stream after another on `protocol` until `until`: declare a frame of
/// `declared` bytes, then trickle 16 KiB every 20 ms. Returns the bytes the device took.
async fn trickle(h: Arc<Hostile>, protocol: StreamProtocol, declared: u32, until: Instant) -> u64 {
    let chunk = vec![0x5a; 16 * 1024];
    let mut taken = 0;
    while Instant::now() < until {
        let Some(mut s) = h.stall(protocol.clone(), declared, 0).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_secs(1), s.write_all(&chunk)).await {
                Ok(Ok(())) => taken += chunk.len() as u64,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    taken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_stranger_many_streams_stays_under_memory_bound() {
    let served = Served::start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss(served.pid());
    assert!(before > 0, "VmRSS readable");
    let sampler = RssPeak::start(served.pid());

    let stranger = Arc::new(Hostile::stranger(served.peer, served.addr.clone()).await);
    let mut taken = 0;
    // First 192 streams at once: largest frames on both protocols, and enrollment frames
    // just under the enrollment limit. Then 24 enrollment streams only (few enough that
    // the connection stays up): the device reads one attempt at a time.
    for (streams, protocols) in [(192, &[ENROLL, SYNC, ENROLL][..]), (24, &[ENROLL][..])] {
        let until = Instant::now() + Duration::from_secs(5);
        let mut attacks = tokio::task::JoinSet::new();
        for i in 0..streams {
            let protocol = protocols[i % protocols.len()].clone();
            let declared = if i % 3 == 2 { 60_000 } else { HUGE };
            attacks.spawn(trickle(stranger.clone(), protocol, declared, until));
        }
        while let Some(t) = attacks.join_next().await {
            taken += t.unwrap();
        }
    }
    drop(stranger);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = sampler.finish();
    let after = rss(served.pid());
    eprintln!(
        "serve VmRSS: before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB; the device took {} KiB of attack",
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        after as f64 / MIB as f64,
        taken / 1024,
    );
    assert!(
        peak < before + 64 * MIB,
        "peak {peak} over before {before} + 64 MiB"
    );
    assert!(
        after < before + 16 * MIB,
        "after {after} did not come back near before {before}"
    );
    // Still serving: an honest stranger still reaches enrollment.
    let again = Hostile::stranger(served.peer, served.addr.clone()).await;
    let mut s = again.stall(ENROLL, 100, 10).await.expect("enrollment open");
    assert!(!ended_within(&mut s, Duration::from_millis(500)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_stalled_frame_times_out() {
    let (dir, lee_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let founder = Device::founder(&dir).await;
    let addr = founder.addr().await;
    let target = founder.net.peer_id();
    let stranger = Hostile::stranger(target, addr.clone()).await;
    let turncoat = Device::turncoat(&founder, &lee_dir).await;
    let turncoat = Hostile::connect(turncoat, target, addr, 1).await;

    let started = Instant::now();
    // A stranger stalls mid-enrollment; an enrolled device stalls mid-sync-frame and
    // starts a sync frame it never begins.
    let mut enrolling = stranger.stall(ENROLL, 1000, 10).await.unwrap();
    let mut syncing = turncoat.stall(SYNC, HUGE, 10).await.unwrap();
    let mut silent = turncoat.open(SYNC).await.unwrap();
    let generous = Duration::from_secs(10);
    let (a, b, c) = tokio::join!(
        ended_within(&mut enrolling, ENROLL_TIMEOUT + generous),
        ended_within(&mut syncing, FRAME_TIMEOUT + generous),
        ended_within(&mut silent, FRAME_TIMEOUT + generous),
    );
    assert!(a, "a stalled enrollment is dropped");
    assert!(b, "a stalled sync frame is dropped");
    assert!(c, "a sync stream that never speaks is dropped");
    assert!(
        started.elapsed() >= ENROLL_TIMEOUT.min(FRAME_TIMEOUT) - Duration::from_secs(1),
        "dropped by the timeout, not refused at once"
    );
    // The enrolled device is still connected and admitted: only its streams ended.
    assert_eq!(*turncoat.connections.borrow(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_enrollment_flood_one_attempt_at_a_time() {
    let dir = TempDir::new().unwrap();
    let founder = Device::founder(&dir).await;
    let (addr, target) = (founder.addr().await, founder.net.peer_id());

    let first = Hostile::stranger(target, addr.clone()).await;
    let mut held = first.stall(ENROLL, 1000, 10).await.unwrap();
    for _ in 0..10 {
        assert!(
            dropped(&first, ENROLL).await,
            "a second attempt at once is dropped"
        );
    }
    assert!(
        !ended_within(&mut held, Duration::from_millis(500)).await,
        "the first attempt is still being handled"
    );

    // Other strangers fill the remaining enrollment slots; the next one is refused.
    let mut others = Vec::new();
    for _ in 1..MAX_ENROLLING {
        let h = Hostile::stranger(target, addr.clone()).await;
        let s = h.stall(ENROLL, 1000, 10).await.unwrap();
        others.push((h, s));
    }
    let late = Hostile::stranger(target, addr.clone()).await;
    assert!(
        dropped(&late, ENROLL).await,
        "past the global cap, an enrollment is dropped"
    );
    for (_, s) in &mut others {
        assert!(!ended_within(s, Duration::from_millis(200)).await);
    }

    // When the first attempt ends, its slot is free again.
    held.close().await.ok();
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut next = late.stall(ENROLL, 1000, 10).await.unwrap();
    assert!(
        !ended_within(&mut next, Duration::from_millis(500)).await,
        "a freed slot takes the next attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_many_connections_from_one_stranger_are_capped() {
    let dir = TempDir::new().unwrap();
    let founder = Device::founder(&dir).await;
    let (addr, target) = (founder.addr().await, founder.net.peer_id());
    let stranger = Hostile::connect(Keypair::generate_ed25519(), target, addr, 12).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = *stranger.connections.borrow();
    assert!(
        (1..=MAX_CONNECTIONS_PER_PEER as usize).contains(&open),
        "{open} connections from one stranger"
    );
}

#[test]
fn shutdown_within_two_seconds_with_hostile_peers_connected() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `huddle serve` on SIGTERM.
    let mut served = Served::start();
    let _attackers = runtime.block_on(async {
        let mut attackers = Vec::new();
        for _ in 0..MAX_ENROLLING + 2 {
            let h = Hostile::stranger(served.peer, served.addr.clone()).await;
            let s = h.stall(ENROLL, 1000, 10).await;
            attackers.push((h, s));
        }
        attackers
    });
    let (status, took) = served
        .terminate(Duration::from_secs(10))
        .expect("serve exits after SIGTERM");
    eprintln!("serve exited {took:?} after SIGTERM, with hostile peers connected");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A network in this process: shutdown ends every task, and the node's thread ends
    // (no task is left holding the node).
    runtime.block_on(async {
        let (dir, lee_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let founder = Device::founder(&dir).await;
        let (addr, target) = (founder.addr().await, founder.net.peer_id());
        let turncoat = Device::turncoat(&founder, &lee_dir).await;
        let turncoat = Hostile::connect(turncoat, target, addr.clone(), 1).await;
        let stranger = Hostile::stranger(target, addr).await;
        let mut stalled = Vec::new();
        for _ in 0..4 {
            stalled.extend(turncoat.stall(SYNC, HUGE, 10).await);
        }
        stalled.extend(stranger.stall(ENROLL, 1000, 10).await);
        assert!(stalled.len() >= 5, "the hostile streams are open");
        // The node takes the streams up asynchronously: wait until it holds them.
        let deadline = Instant::now() + Duration::from_secs(10);
        while founder.net.tasks_running() < 5 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            founder.net.tasks_running() >= 5,
            "the stalled streams are being handled"
        );

        let Device {
            handle,
            net,
            thread,
            ..
        } = founder;
        let started = Instant::now();
        net.stop().await;
        drop(net);
        drop(handle);
        let joined = tokio::task::spawn_blocking(move || {
            let _ = thread.join();
        });
        tokio::time::timeout(Duration::from_secs(2), joined)
            .await
            .expect("the node thread ends once the network is stopped")
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        drop(stalled);
    });
}
