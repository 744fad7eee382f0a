//! Network figures between real nodes over libp2p on 127.0.0.1 (discovery off).
//!
//! 1. **Post-to-visible latency.** A founder and a clinician enrolled by invitation stay
//!    connected. For each sample the founder posts through its node handle (the path the
//!    CLI and app take: author, encrypt, sign, flush, push) and the clinician's node
//!    raises `ThreadChanged` once the pushed envelope is verified, decrypted and applied
//!    (`visible`); a no-op job on the clinician's node afterwards returns once that
//!    receive job has also flushed (`stored`). Interleaved with the posts, a raw tokio TCP
//!    round trip (nodelay) carries the same bytes: the `Push` frame of one post's
//!    envelope, echoed back. Printed: p50/p99 of each and the p99 ratio (goal ≤ 5×).
//! 2. **A new device's first sync.** A clinic of 10⁵ messages in 10³ threads is generated
//!    with the core API and imported by an admin's node. A new device joins with an
//!    invitation (`Network::join`: enrollment, then sync) through a counting TCP relay,
//!    which gives the bytes on the wire (Noise and Yamux framing included). The time runs
//!    until the new device has accepted its last envelope (the admin's grants of the
//!    thread keys arrive by push during the sync). The baseline is the time to decode
//!    those envelopes and verify each one's signature, on one core, in the same run
//!    (goal ≤ 3×).
//! 3. **An in-sync round.** Once both hold the same 10⁵-message history, one more sync
//!    round: payload bytes each way (session statistics) and wire bytes (the relay).
//!
//! `HUDDLE_BENCH_MESSAGES`, `HUDDLE_BENCH_THREADS` and `HUDDLE_BENCH_POSTS` (default
//! 1000 latency samples) change the workload.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use huddle::core::envelope::Envelope;
use huddle::core::ids::{DeviceId, LogId};
use huddle::core::invite::Invitation;
use huddle::core::policy::{Category, Role};
use huddle::core::sync::Message;
use huddle::core::thread::Subject;
use huddle::net::{NetConfig, Network};
use huddle::node::actor::{self, NodeHandle};
use huddle::node::{Node, Watch};
use libp2p::Multiaddr;
use support::Spec;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const PASSPHRASE: &[u8] = b"correct horse battery staple";
const WARM_UP_POSTS: usize = 50;

/// A running device: its node actor and network.
struct Peer {
    handle: NodeHandle,
    net: Network,
    device: DeviceId,
}

impl Peer {
    async fn start(node: Node) -> Peer {
        let secret = node.network_identity();
        let (handle, outbox, _thread) = actor::spawn(node);
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
            ..Default::default()
        };
        let device = secret.id();
        let net = Network::start(handle.clone(), outbox, secret, config)
            .await
            .expect("network starts");
        Peer {
            handle,
            net,
            device,
        }
    }

    /// Every envelope the node holds, by way of a bundle written to `path`.
    async fn envelopes(&self, path: &Path) -> Vec<Vec<u8>> {
        let p = path.to_path_buf();
        self.handle
            .call(move |n| n.export_bundle(&p))
            .await
            .expect("node running")
            .expect("export");
        let file = std::fs::File::open(path).expect("bundle");
        huddle::node::bundle::read(file).expect("read").1
    }

    async fn addr(&self) -> Multiaddr {
        self.net.listen_addrs().await[0].clone()
    }

    async fn invite(&self, name: &str, addr: String) -> Invitation {
        let name = name.to_string();
        self.handle
            .call(move |n| {
                n.create_invite(
                    &name,
                    Role::Clinician,
                    false,
                    Duration::from_secs(3600),
                    vec![addr],
                )
            })
            .await
            .expect("node running")
            .expect("invite")
    }

    async fn join(&self, invite: &Invitation) -> huddle::net::Stats {
        self.net
            .join(invite, Duration::from_secs(30))
            .await
            .expect("join")
    }
}

/// Watches a node: each wake (the first change after a `take`) is stamped on arrival.
fn watch_stamped(node: &mut Node) -> (Watch, mpsc::UnboundedReceiver<Instant>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let watch = node.watch(move || {
        let _ = tx.send(Instant::now());
    });
    (watch, rx)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Summarizes samples as "p50 … µs, p99 … µs" and returns (p50, p99).
fn summary(name: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    println!(
        "net latency: {name:<34} p50 {:>8.1} µs   p99 {:>8.1} µs   ({} samples)",
        us(p50),
        us(p99),
        samples.len()
    );
    (p50, p99)
}

// ---- raw TCP ----

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) {
    w.write_all(&(frame.len() as u32).to_be_bytes())
        .await
        .expect("write");
    w.write_all(frame).await.expect("write");
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> bool {
    let mut len = [0u8; 4];
    if r.read_exact(&mut len).await.is_err() {
        return false;
    }
    buf.resize(u32::from_be_bytes(len) as usize, 0);
    r.read_exact(buf).await.is_ok()
}

/// A TCP echo server for length-prefixed frames; returns a connected client.
async fn echo_pair() -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = Vec::new();
        while read_frame(&mut s, &mut buf).await {
            write_frame(&mut s, &buf).await;
        }
    });
    let client = TcpStream::connect(addr).await.expect("connect");
    client.set_nodelay(true).expect("nodelay");
    client
}

async fn tcp_round_trip(client: &mut TcpStream, frame: &[u8], buf: &mut Vec<u8>) -> Duration {
    let start = Instant::now();
    write_frame(client, frame).await;
    assert!(read_frame(client, buf).await, "echo closed");
    start.elapsed()
}

/// The `Push` frame that carried the founder's newest post to its peer.
async fn last_post_frame(peer: &Peer, dir: &Path) -> Vec<u8> {
    let records = peer.envelopes(&dir.join("founder.huddle")).await;
    let me = peer.device;
    let newest = records
        .into_iter()
        .filter_map(|r| Envelope::decode(&r).ok().map(|e| (e, r)))
        .filter(|(e, _)| e.header.author == me && matches!(e.header.log, LogId::Thread { .. }))
        .max_by_key(|(e, _)| e.header.seq)
        .expect("a post");
    Message::Push(vec![newest.1]).encode()
}

// ---- 1. latency ----

async fn latency(tmp: &Path, posts: usize) {
    let mut founder = Node::create(&tmp.join("a"), PASSPHRASE).expect("store");
    founder
        .init_clinic("Maple Street Therapy", "Dana", Role::Clinician)
        .expect("clinic");
    let thread = founder
        .new_thread(
            Subject::Patient("Client 0042".into()),
            Category::Clinical,
            "Intake",
        )
        .expect("thread");
    let founder = Peer::start(founder).await;

    let mut lee = Node::create(&tmp.join("b"), PASSPHRASE).expect("store");
    let (lee_watch, mut changed) = watch_stamped(&mut lee);
    let lee = Peer::start(lee).await;
    let invite = founder
        .invite("Lee", founder.addr().await.to_string())
        .await;
    lee.join(&invite).await;

    let t = thread.to_hex();
    let post = |i: usize| {
        let (t, body) = (
            t.clone(),
            format!("Session note {i}: progress on goals 2 and 3."),
        );
        let h = founder.handle.clone();
        async move {
            h.call(move |n| n.post(&t, &body, false, None))
                .await
                .expect("node running")
                .expect("post");
        }
    };
    // Warm up, and wait until the clinician reads what was posted so far.
    for i in 0..WARM_UP_POSTS {
        post(i).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = t.clone();
        let n = lee
            .handle
            .call(move |n| n.thread(&t).map(|d| d.messages.len()).unwrap_or(0))
            .await
            .expect("node running");
        if n == WARM_UP_POSTS {
            break;
        }
        assert!(Instant::now() < deadline, "warm-up posts never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lee_watch.take();
    while changed.try_recv().is_ok() {}

    let frame = last_post_frame(&founder, tmp).await;
    let mut client = echo_pair().await;
    let mut buf = Vec::new();
    let (mut acked, mut visible, mut stored, mut after_ack, mut tcp) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..posts {
        tcp.push(tcp_round_trip(&mut client, &frame, &mut buf).await);
        let start = Instant::now();
        post(WARM_UP_POSTS + i).await;
        let ack = start.elapsed();
        let seen = tokio::time::timeout(Duration::from_secs(10), changed.recv())
            .await
            .expect("the post became visible")
            .expect("events flow");
        lee.handle.call(|_| ()).await.expect("node running");
        stored.push(start.elapsed());
        acked.push(ack);
        visible.push(seen - start);
        after_ack.push((seen - start).saturating_sub(ack));
        // Re-armed for the next post: the wake came with the first change of this one.
        lee_watch.take();
        while changed.try_recv().is_ok() {}
    }
    println!(
        "net latency: push frame of one post {} bytes (raw TCP echoes the same bytes)",
        frame.len()
    );
    let (_, tcp_p99) = summary("raw TCP round trip", &mut tcp);
    summary("post acknowledged (author's flush)", &mut acked);
    let (_, leg_p99) = summary("acknowledged → visible on peer", &mut after_ack);
    let (_, visible_p99) = summary("post → visible on peer", &mut visible);
    summary("post → stored on peer (its flush)", &mut stored);
    println!(
        "net latency: ratio p99 post→visible / raw TCP round trip = {:.1}× (goal ≤ 5×)",
        visible_p99.as_secs_f64() / tcp_p99.as_secs_f64()
    );
    println!(
        "net latency: ratio p99 acknowledged→visible (push, verify, decrypt, apply) / raw TCP \
         round trip = {:.1}×",
        leg_p99.as_secs_f64() / tcp_p99.as_secs_f64()
    );
    let stats = lee
        .net
        .sync_with(founder.net.peer_id())
        .await
        .expect("sync");
    println!(
        "net latency: after the run, one sync round: {} bytes sent, {} received, {} envelopes",
        stats.bytes_sent,
        stats.bytes_received,
        stats.envelopes_received + stats.envelopes_sent
    );
    founder.net.shutdown().await;
    lee.net.shutdown().await;
}

// ---- 2 and 3. a new device's first sync; an in-sync round ----

/// A TCP relay to `target` that counts the bytes it carries each way.
#[derive(Clone, Default)]
struct Counted {
    to_target: Arc<AtomicU64>,
    from_target: Arc<AtomicU64>,
}

impl Counted {
    fn total(&self) -> u64 {
        self.to_target.load(Ordering::Relaxed) + self.from_target.load(Ordering::Relaxed)
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    n: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(k) => {
                n.fetch_add(k as u64, Ordering::Relaxed);
                if to.write_all(&buf[..k]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn relay(target: SocketAddr) -> (SocketAddr, Counted) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counted = Counted::default();
    let c = counted.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = TcpStream::connect(target).await.expect("relay target");
            inbound.set_nodelay(true).expect("nodelay");
            outbound.set_nodelay(true).expect("nodelay");
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::spawn(pipe(ir, ow, c.to_target.clone()));
            tokio::spawn(pipe(or, iw, c.from_target.clone()));
        }
    });
    (addr, counted)
}

fn socket_addr(addr: &Multiaddr) -> SocketAddr {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::from((ip.expect("ip4"), port.expect("tcp port")))
}

/// Decodes every envelope and verifies each one's signature: the baseline.
fn verify_all(records: &[Vec<u8>]) -> Duration {
    let start = Instant::now();
    for r in records {
        let env = Envelope::decode(r).expect("decodes");
        env.verify().expect("signature");
    }
    start.elapsed()
}

async fn first_sync(tmp: &Path, spec: Spec) {
    let mut admin = Node::create(&tmp.join("admin"), PASSPHRASE).expect("store");
    let start = Instant::now();
    let clinic = support::generate(spec, &[admin.device()]);
    let bundle = tmp.join("clinic.huddle");
    support::write_bundle(&clinic, &bundle);
    drop(clinic);
    let report = admin.import_bundle(&bundle).expect("import");
    assert!(report.refused.is_empty(), "refused: {:?}", report.refused);
    println!(
        "net sync setup: {} messages in {} threads generated and imported by the admin's node \
         ({} envelopes) in {:.1} s",
        spec.messages,
        spec.threads,
        report.accepted,
        start.elapsed().as_secs_f64()
    );
    let admin = Peer::start(admin).await;

    let mut newbie = Node::create(&tmp.join("newbie"), PASSPHRASE).expect("store");
    let (newbie_watch, mut accepted) = watch_stamped(&mut newbie);
    let newbie = Peer::start(newbie).await;
    let (relay_addr, wire) = relay(socket_addr(&admin.addr().await)).await;
    let invite = admin
        .invite("Robin", format!("/ip4/127.0.0.1/tcp/{}", relay_addr.port()))
        .await;

    let start = Instant::now();
    let stats = newbie.join(&invite).await;
    let joined = start.elapsed();
    // Everything is in once the newbie holds as many envelopes as the admin.
    let mut count = 0usize;
    let mut last = start;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // Taken as soon as a wake comes: the time of the take is the time of arrival.
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), accepted.recv()).await
        {
            let took = newbie_watch.take().accepted as usize;
            if took > 0 {
                count += took;
                last = Instant::now();
            }
            continue;
        }
        let held = admin
            .handle
            .call(|n| n.status().envelopes)
            .await
            .expect("node running");
        if count == held {
            break;
        }
        assert!(Instant::now() < deadline, "sync stalled at {count}/{held}");
    }
    let took = last - start;
    let wire_bytes = wire.total();

    let (threads, problems) = newbie
        .handle
        .call(|n| n.threads())
        .await
        .expect("node running")
        .expect("threads");
    assert!(problems.is_empty(), "problems: {problems:?}");
    assert_eq!(threads.len(), spec.threads);
    assert!(threads.iter().all(|t| t.readable), "every thread readable");
    assert_eq!(
        threads.iter().map(|t| t.messages).sum::<usize>(),
        spec.messages
    );

    let records = newbie.envelopes(&tmp.join("newbie.huddle")).await;
    let baseline = verify_all(&records);
    let mib = 1024.0 * 1024.0;
    println!(
        "net sync: new device received {count} envelopes in {:.2} s ({:.0} µs/envelope; \
         join returned after {:.2} s)",
        took.as_secs_f64(),
        us(took) / count as f64,
        joined.as_secs_f64()
    );
    println!(
        "net sync: bytes on the wire {:.1} MiB ({} to the admin, {} from it); \
         sync session payload {:.1} MiB received",
        wire_bytes as f64 / mib,
        wire.to_target.load(Ordering::Relaxed),
        wire.from_target.load(Ordering::Relaxed),
        stats.bytes_received as f64 / mib
    );
    println!(
        "net sync: decode + verify every signature of the same {} envelopes: {:.2} s \
         ({:.1} µs/envelope); ratio {:.2}× (goal ≤ 3×)",
        records.len(),
        baseline.as_secs_f64(),
        us(baseline) / records.len() as f64,
        took.as_secs_f64() / baseline.as_secs_f64()
    );

    // 3. Two peers in sync, with this whole history.
    let before = wire.total();
    let round = newbie
        .net
        .sync_with(admin.net.peer_id())
        .await
        .expect("sync");
    // Let the relay finish counting the stream's closing frames.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(round.envelopes_received + round.envelopes_sent, 0);
    println!(
        "net in-sync round ({count} envelopes held): payload {} bytes sent + {} received; \
         {} bytes on the wire (goal < 1 KB)",
        round.bytes_sent,
        round.bytes_received,
        wire.total() - before
    );
    admin.net.shutdown().await;
    newbie.net.shutdown().await;
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("net: bench");
        return;
    }
    let posts = support::env_usize("HUDDLE_BENCH_POSTS", 1000);
    let spec = Spec {
        messages: support::env_usize("HUDDLE_BENCH_MESSAGES", 100_000),
        threads: support::env_usize("HUDDLE_BENCH_THREADS", 1_000),
        seed: 13,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = TempDir::new().expect("temp dir");
    runtime.block_on(latency(&tmp.path().join("latency"), posts));
    runtime.block_on(first_sync(&tmp.path().join("sync"), spec));
}
