//! The network: a libp2p swarm on tokio (TCP, Noise, Yamux; the device's ed25519 key is
//! its libp2p identity) carrying two stream protocols, `/huddle/sync/1` and
//! `/huddle/enroll/1`. Net moves bytes and never decides policy: who may connect, what
//! an envelope means and what to store are the node's (and so the core's) answers.
//!
//! One task owns the swarm and takes [`Command`]s over a bounded channel; incoming
//! streams, sync sessions and pushes run in their own tasks through a stream
//! [`libp2p_stream::Control`], all owned by the network ([`tasks::Tasks`]) so that
//! shutting down ends them. Known addresses are redialed with backoff; mDNS finds
//! devices of the same clinic on the LAN.
//!
//! Every resource a peer can make us spend is bounded ([`limits`]): connections (by
//! libp2p's connection limits), streams per connection (Yamux), streams handled at once
//! (per peer and in all), frame sizes, and time. A stranger (a peer not admitted) gets
//! the enrollment protocol only, one attempt at a time, and is disconnected after
//! [`limits::ENROLL_GRACE`] unless it enrolled.

pub mod addr;
mod discovery;
mod enroll;
mod handlers;
pub mod limits;
pub mod session;
mod status;
mod tasks;
mod wire;

use futures::StreamExt;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Transport, noise, ping, tcp, yamux};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

use crate::core::identity::DeviceSecret;
use crate::core::invite::{Invitation, InviteError};
use crate::core::roster::SignedGenesis;
use crate::core::sync::SyncError;
use crate::node::NodeError;
use crate::node::actor::{NodeHandle, Outbox, Stopped};
use handlers::{Handlers, accept_enroll, accept_sync, push_loop};
use limits::*;
use tasks::Tasks;

pub use session::Stats;
pub use status::{PeerView, SyncProgress};
use status::{Peers, Progress};

pub const SYNC: StreamProtocol = StreamProtocol::new("/huddle/sync/1");
pub const ENROLL: StreamProtocol = StreamProtocol::new("/huddle/enroll/1");

/// Connected peers run a sync round this often, to catch anything a push missed.
const RESYNC_EVERY: Duration = Duration::from_secs(20);
/// First and longest wait between redials of a remembered address.
const REDIAL_MIN: Duration = Duration::from_secs(1);
const REDIAL_MAX: Duration = Duration::from_secs(60);
/// Connections with no stream for this long close; the periodic resync keeps peers busy.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A joining device dials the inviter's addresses again this often until it connects
/// (the inviter may start serving after `join` does).
const REDIAL_INVITER: Duration = Duration::from_secs(3);
const COMMANDS: usize = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("network I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Invite(#[from] InviteError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error("the peer closed the stream")]
    Closed,
    #[error("this device is not part of a clinic")]
    NoClinic,
    #[error("transport: {0}")]
    Transport(String),
    #[error("could not open a stream to the peer: {0}")]
    OpenStream(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: libp2p::connection_limits::Behaviour,
    stream: libp2p_stream::Behaviour,
    ping: ping::Behaviour,
}

fn connection_limits() -> libp2p::connection_limits::ConnectionLimits {
    libp2p::connection_limits::ConnectionLimits::default()
        .with_max_established(Some(MAX_CONNECTIONS))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
        .with_max_pending_outgoing(Some(MAX_PENDING_OUTGOING))
}

/// How the network runs.
#[derive(Clone, Debug, Default)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    /// Addresses to dial and keep dialing.
    pub peers: Vec<Multiaddr>,
    /// LAN discovery, with the clinic tag to look for.
    pub mdns: Option<MdnsConfig>,
}

#[derive(Clone, Debug)]
pub struct MdnsConfig {
    pub tag: [u8; 8],
    /// Only this network interface.
    pub interface: Option<String>,
    /// Advertise this device (off while joining).
    pub advertise: bool,
}

enum Command {
    Dial(Multiaddr),
    DialOnce(Multiaddr),
    /// Dials one peer at any of these addresses (concurrently; the first that answers
    /// as that peer wins), unless already connected or dialing.
    DialPeer(PeerId, Vec<Multiaddr>),
    Disconnect(PeerId),
    /// Run a sync round with this peer (a push to it could not be sent).
    SyncWith(PeerId),
    /// A session with this peer brought news: sync with the other peers now.
    SyncOthers(PeerId),
    Connected(oneshot::Sender<Vec<PeerId>>),
}

/// Peers admitted to data exchange (enrolled devices of the clinic), and the connected
/// ones shown to people.
type Admitted = Arc<Peers>;

/// A running network.
pub struct Network {
    local: PeerId,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    listening: watch::Receiver<Vec<Multiaddr>>,
    admitted: Admitted,
    progress: Arc<Progress>,
    node: NodeHandle,
    /// This device's keys (its libp2p identity), for enrolling with an invitation.
    secret: Arc<DeviceSecret>,
    stop: watch::Sender<bool>,
    /// Stream handlers, sync rounds, pushes and accept loops.
    tasks: Tasks,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pusher: Mutex<Option<tokio::task::JoinHandle<Outbox>>>,
}

struct Redial {
    next: Instant,
    wait: Duration,
    peer: Option<PeerId>,
}

impl Network {
    /// Starts the swarm, the stream handlers and (if configured) discovery.
    pub async fn start(
        node: NodeHandle,
        outbox: Outbox,
        secret: Arc<DeviceSecret>,
        config: NetConfig,
    ) -> Result<Network, NetError> {
        let mut seed = secret.to_bytes();
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut seed[..32])
            .map_err(|e| NetError::Transport(e.to_string()))?;
        let local = keypair.public().to_peer_id();
        let noise = noise::Config::new(&keypair).map_err(|e| NetError::Transport(e.to_string()))?;
        // Setting a stream limit selects Yamux 0.12 inside libp2p-yamux (0.13 has no
        // such setting); both speak the same protocol.
        let mut yamux = yamux::Config::default();
        yamux.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
        let transport = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
            .upgrade(libp2p::core::upgrade::Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux)
            .timeout(HANDSHAKE_TIMEOUT);
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|_| transport)
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_behaviour(|_| Behaviour {
                limits: libp2p::connection_limits::Behaviour::new(connection_limits()),
                stream: libp2p_stream::Behaviour::new(),
                ping: ping::Behaviour::default(),
            })
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_swarm_config(|c| {
                c.with_idle_connection_timeout(IDLE_TIMEOUT)
                    .with_max_negotiating_inbound_streams(MAX_NEGOTIATING_STREAMS)
            })
            .build();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Transport(format!("cannot listen on {addr}: {e}")))?;
        }
        let mut control = swarm.behaviour().stream.new_control();
        let (commands, command_rx) = mpsc::channel(COMMANDS);
        let (listen_tx, listening) = watch::channel(Vec::new());
        let (stop, stop_rx) = watch::channel(false);
        let admitted: Admitted = Arc::new(Peers::new());
        let backlog = node.call(|n| n.sync_backlog()).await.unwrap_or_default();
        let progress = Arc::new(Progress::resume(backlog));
        let tasks = Tasks::new();
        tasks.spawn(status::record_backlog(
            progress.watch(),
            node.clone(),
            stop_rx.clone(),
        ));

        let sync_in = control
            .accept(SYNC)
            .map_err(|e| NetError::Transport(e.to_string()))?;
        let enroll_in = control
            .accept(ENROLL)
            .map_err(|e| NetError::Transport(e.to_string()))?;
        let handlers = Handlers {
            node: node.clone(),
            commands: commands.clone(),
            admitted: admitted.clone(),
            progress: progress.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(accept_sync(sync_in, handlers.clone()));
        tasks.spawn(accept_enroll(enroll_in, handlers.clone(), secret.clone()));
        let pusher = tokio::spawn(push_loop(
            outbox,
            control.clone(),
            handlers.clone(),
            stop_rx.clone(),
        ));

        let (found_tx, found_rx) = mpsc::channel(COMMANDS);
        let state = SwarmLoop {
            swarm,
            node: node.clone(),
            control: control.clone(),
            commands: command_rx,
            self_commands: commands.clone(),
            listen_tx,
            admitted: admitted.clone(),
            progress: progress.clone(),
            redial: config
                .peers
                .iter()
                .map(|a| {
                    (
                        a.clone(),
                        Redial {
                            next: Instant::now(),
                            wait: REDIAL_MIN,
                            peer: None,
                        },
                    )
                })
                .collect(),
            mdns: config.mdns.clone(),
            discovery: None,
            found_tx,
            found_rx,
            local,
            syncing: Arc::default(),
            strangers: HashMap::new(),
            tasks: tasks.clone(),
        };
        let task = tokio::spawn(state.run(stop_rx));
        Ok(Network {
            local,
            commands,
            control,
            listening,
            admitted,
            progress,
            node,
            secret,
            stop,
            tasks,
            task: Mutex::new(Some(task)),
            pusher: Mutex::new(Some(pusher)),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.local
    }

    /// The addresses the swarm listens on, once it does (waits up to 5 s).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let mut rx = self.listening.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|a| !a.is_empty())).await;
        rx.borrow().clone()
    }

    /// The addresses the swarm listens on, as they change (one per interface when
    /// listening on 0.0.0.0; interfaces come and go).
    pub fn listen_updates(&self) -> watch::Receiver<Vec<Multiaddr>> {
        self.listening.clone()
    }

    /// The admitted devices connected now, updated as they connect, leave and finish
    /// sync rounds.
    pub fn peers(&self) -> watch::Receiver<Vec<PeerView>> {
        self.admitted.watch()
    }

    /// How sync is going: a run of rounds that bring envelopes (received of expected),
    /// and the envelopes authored here that no peer has taken yet.
    pub fn sync_progress(&self) -> watch::Receiver<SyncProgress> {
        self.progress.watch()
    }

    /// Dials `addr` now and keeps redialing it with backoff.
    pub async fn dial(&self, addr: Multiaddr) {
        let _ = self.commands.send(Command::Dial(addr)).await;
    }

    /// Dials `addr` once.
    pub async fn dial_once(&self, addr: Multiaddr) {
        let _ = self.commands.send(Command::DialOnce(addr)).await;
    }

    /// Closes every connection to `peer`.
    pub async fn disconnect(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Disconnect(peer)).await;
    }

    /// Joins the clinic of `invite`: finds the inviter (at every address the invitation
    /// lists, by mDNS if configured, or at configured peers), enrolls with the
    /// invitation, adopts the clinic if it is the one the invitation names, and syncs
    /// once. On failure nothing of the clinic is kept.
    pub async fn join(&self, invite: &Invitation, timeout: Duration) -> Result<Stats, NetError> {
        let inviter = addr::peer_id(&invite.inviter).ok_or(InviteError::Malformed)?;
        let device = invite.inviter;
        self.node.call(move |n| n.expect_inviter(device)).await?;
        let joined = self.join_inviter(inviter, invite, timeout).await;
        if joined.is_err() {
            // The node may have stopped; the join's own error is the one to report.
            let _ = self.node.call(|n| n.forget_inviter()).await;
        }
        joined
    }

    async fn join_inviter(
        &self,
        inviter: PeerId,
        invite: &Invitation,
        timeout: Duration,
    ) -> Result<Stats, NetError> {
        let addrs: Vec<Multiaddr> = invite
            .addrs
            .iter()
            .filter_map(|a| addr::parse(a).ok())
            .collect();
        let deadline = Instant::now() + timeout;
        // A connection that is closing (e.g. the inviter just turned down an earlier
        // attempt, or a stream this device opened before it had a clinic) cannot open
        // the enrollment stream, or loses it before the inviter read a word (`Closed`:
        // nothing was decided; a verdict that never comes is a refusal, not `Closed`):
        // reach the inviter again and retry, until the deadline.
        let genesis = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            self.reach(inviter, addrs.clone(), left).await?;
            match self.enroll(inviter, invite).await {
                Err(NetError::OpenStream(_) | NetError::Closed) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other?,
            }
        };
        let (tag, device) = (invite.clinic_tag, invite.inviter);
        self.node
            .call(move |n| n.join_clinic(&genesis, &tag, device))
            .await??;
        self.sync_with(inviter).await
    }

    /// Dials `peer` at all of `addrs` at once, again every [`REDIAL_INVITER`], until it
    /// is connected (by these addresses or any other way) or `timeout` has passed.
    async fn reach(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        timeout: Duration,
    ) -> Result<(), NetError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !addrs.is_empty() {
                let _ = self
                    .commands
                    .send(Command::DialPeer(peer, addrs.clone()))
                    .await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self
                .wait_for_connection(peer, left.min(REDIAL_INVITER))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NetError::Timeout(
                    "the inviting device could not be reached",
                ));
            }
        }
    }

    /// Peers currently connected and admitted.
    pub async fn connected(&self) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Connected(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Waits until `peer` has a connection (admitted or not), up to `timeout`.
    pub async fn wait_for_connection(
        &self,
        peer: PeerId,
        timeout: Duration,
    ) -> Result<(), NetError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (tx, rx) = oneshot::channel();
            if self.commands.send(Command::Connected(tx)).await.is_ok()
                && rx.await.unwrap_or_default().contains(&peer)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(NetError::Timeout("no connection to the peer"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs one sync round with `peer` now.
    pub async fn sync_with(&self, peer: PeerId) -> Result<Stats, NetError> {
        let stream = open(&self.control, peer, SYNC).await?;
        let admitted = self.admitted.clone();
        let seen = move |f| admitted.set_features(peer, f);
        let stats =
            session::run_tracked(stream, self.node.clone(), None, &self.progress, seen).await?;
        self.admitted.synced(peer);
        Ok(stats)
    }

    /// Enrolls this device with the inviter `peer`; returns the clinic's genesis, checked
    /// to be the clinic the invitation names.
    pub async fn enroll(
        &self,
        peer: PeerId,
        invite: &Invitation,
    ) -> Result<SignedGenesis, NetError> {
        let stream = open(&self.control, peer, ENROLL).await?;
        let genesis = enroll::join(stream, &self.secret, invite).await?;
        self.admitted.admit(peer);
        Ok(genesis)
    }

    /// Stops the swarm and its tasks; gives back the node's outbox for a later start.
    pub async fn shutdown(self) -> Option<Outbox> {
        self.stop().await
    }

    /// Stops the swarm (closing every connection) and ends every task the network
    /// started, within about [`SHUTDOWN_WAIT`] whatever peers do; gives back the node's
    /// outbox the first time. For a network shared between tasks.
    pub async fn stop(&self) -> Option<Outbox> {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        // The sync counts as they are now, for the next start (the recorder task may be
        // cut off below, mid-write).
        let backlog = self.progress.watch().borrow().backlog();
        let record = self.node.call(move |n| n.record_sync_backlog(backlog));
        if let Ok(Ok(Err(e))) = tokio::time::timeout_at(deadline, record).await {
            tracing::debug!("sync counts not recorded: {e}");
        }
        let _ = self.stop.send(true);
        self.tasks.shutdown(deadline).await;
        let task = locked(&self.task).take();
        if let Some(mut task) = task
            && tokio::time::timeout_at(deadline, &mut task).await.is_err()
        {
            tracing::warn!("the network did not stop in time; abandoning it");
            task.abort();
        }
        let mut pusher = locked(&self.pusher).take()?;
        match tokio::time::timeout_at(deadline, &mut pusher).await {
            Ok(outbox) => outbox.ok(),
            Err(_) => {
                pusher.abort();
                None
            }
        }
    }

    /// Tasks the network runs now (stream handlers, sync rounds, pushes, accept loops).
    pub fn tasks_running(&self) -> usize {
        self.tasks.running()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.tasks.abort();
        if let Some(task) = locked(&self.task).take() {
            task.abort();
        }
        if let Some(pusher) = locked(&self.pusher).take() {
            pusher.abort();
        }
    }
}

/// Opens a stream to `peer`, within [`OPEN_TIMEOUT`].
async fn open(
    control: &libp2p_stream::Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> Result<libp2p::Stream, NetError> {
    match tokio::time::timeout(OPEN_TIMEOUT, control.clone().open_stream(peer, protocol)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(NetError::OpenStream(e.to_string())),
        Err(_) => Err(NetError::OpenStream("timed out".into())),
    }
}

struct SwarmLoop {
    swarm: libp2p::Swarm<Behaviour>,
    node: NodeHandle,
    control: libp2p_stream::Control,
    commands: mpsc::Receiver<Command>,
    self_commands: mpsc::Sender<Command>,
    listen_tx: watch::Sender<Vec<Multiaddr>>,
    admitted: Admitted,
    progress: Arc<Progress>,
    redial: HashMap<Multiaddr, Redial>,
    mdns: Option<MdnsConfig>,
    discovery: Option<discovery::Discovery>,
    found_tx: mpsc::Sender<(PeerId, Multiaddr)>,
    found_rx: mpsc::Receiver<(PeerId, Multiaddr)>,
    local: PeerId,
    syncing: Arc<Mutex<HashSet<PeerId>>>,
    /// Connected peers not admitted, and when their grace to enroll ends.
    strangers: HashMap<PeerId, Instant>,
    tasks: Tasks,
}

/// A poisoned lock only means another task panicked mid-update of a peer set; the set
/// itself is still usable.
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    s[s.len().saturating_sub(8)..].to_string()
}

impl SwarmLoop {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut redial = tokio::time::interval(REDIAL_MIN);
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        if self.mdns.as_ref().is_some_and(|m| !m.advertise) {
            self.start_discovery(None);
        }
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                event = self.swarm.select_next_some() => self.on_event(event).await,
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                Some((peer, addr)) = self.found_rx.recv() => {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
                _ = redial.tick() => {
                    self.redial();
                    self.cut_off_strangers().await;
                }
                _ = resync.tick() => {
                    for peer in self.admitted.admitted() {
                        self.start_sync(peer);
                    }
                }
            }
        }
        tracing::info!("network stopped");
    }

    fn start_discovery(&mut self, port: Option<u16>) {
        let Some(m) = &self.mdns else { return };
        match discovery::start(
            m.tag,
            self.local,
            port,
            m.interface.as_deref(),
            self.found_tx.clone(),
        ) {
            Ok(d) => self.discovery = Some(d),
            Err(e) => tracing::warn!("mDNS discovery unavailable: {e}"),
        }
    }

    fn redial(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        for (addr, r) in self.redial.iter_mut() {
            let connected = r.peer.is_some_and(|p| self.swarm.is_connected(&p));
            if !connected && r.next <= now {
                due.push(addr.clone());
                r.next = now + r.wait;
                r.wait = (r.wait * 2).min(REDIAL_MAX);
            }
        }
        for addr in due {
            tracing::debug!("dialing {addr}");
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!("dial {addr}: {e}");
            }
        }
    }

    /// Disconnects strangers whose grace to enroll has run out, unless they enrolled.
    async fn cut_off_strangers(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .strangers
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.strangers.remove(&peer);
            let admitted = self.admitted.contains(&peer);
            if !admitted && !allowed(&self.node, &peer).await && self.swarm.is_connected(&peer) {
                tracing::warn!(peer = %short(&peer), "disconnecting a device that did not enroll");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn start_sync(&self, peer: PeerId) {
        if !locked(&self.syncing).insert(peer) {
            return;
        }
        let (node, control, syncing, commands) = (
            self.node.clone(),
            self.control.clone(),
            self.syncing.clone(),
            self.self_commands.clone(),
        );
        let (admitted, progress) = (self.admitted.clone(), self.progress.clone());
        self.tasks.spawn(async move {
            // A device still joining has nothing to offer and may not ask yet.
            if node.call_sync(|n| n.summary().is_none()).await.unwrap_or(true) {
                locked(&syncing).remove(&peer);
                return;
            }
            let result = match open(&control, peer, SYNC).await {
                Ok(stream) => {
                    let seen = |f| admitted.set_features(peer, f);
                    session::run_tracked(stream, node, None, &progress, seen).await
                }
                Err(e) => Err(e),
            };
            locked(&syncing).remove(&peer);
            match result {
                Ok(s) => {
                    admitted.synced(peer);
                    tracing::debug!(peer = %short(&peer), sent = s.bytes_sent, received = s.bytes_received, envelopes_in = s.envelopes_received, "sync round done");
                    if s.envelopes_received > 0 {
                        let _ = commands.send(Command::SyncOthers(peer)).await;
                    }
                }
                Err(e) => tracing::debug!(peer = %short(&peer), "sync round failed: {e}"),
            }
        });
    }

    async fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!("listening on {address}/p2p/{}", self.local);
                let port = address.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                    _ => None,
                });
                self.listen_tx.send_modify(|a| a.push(address));
                if self.discovery.is_none() && self.mdns.as_ref().is_some_and(|m| m.advertise) {
                    self.start_discovery(port);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!("no longer listening on {address}");
                self.listen_tx.send_modify(|a| a.retain(|x| *x != address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if endpoint.is_dialer() {
                    let remote = endpoint.get_remote_address().clone();
                    if let Some(r) = self
                        .redial
                        .iter_mut()
                        .find(|(a, _)| remote.to_string().starts_with(&a.to_string()))
                        .map(|(_, r)| r)
                    {
                        r.peer = Some(peer_id);
                        r.wait = REDIAL_MIN;
                    }
                }
                if num_established.get() > 1 {
                    return;
                }
                self.admitted
                    .connected(peer_id, endpoint.get_remote_address().to_string());
                if allowed(&self.node, &peer_id).await {
                    tracing::info!(peer = %short(&peer_id), "peer connected");
                    self.admitted.admit(peer_id);
                    if endpoint.is_dialer() {
                        self.start_sync(peer_id);
                    }
                } else {
                    tracing::warn!(peer = %short(&peer_id), "connection from a device that is not enrolled in this clinic: it gets no data");
                    self.strangers
                        .entry(peer_id)
                        .or_insert_with(|| Instant::now() + ENROLL_GRACE);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.strangers.remove(&peer_id);
                if self.admitted.disconnected(&peer_id) {
                    tracing::info!(peer = %short(&peer_id), "peer left");
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection refused or failed: {error}")
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                tracing::debug!("dial failed: {error}")
            }
            _ => {}
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial(addr) => {
                self.redial.entry(addr.clone()).or_insert(Redial {
                    next: Instant::now() + REDIAL_MIN,
                    wait: REDIAL_MIN,
                    peer: None,
                });
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!("cannot dial {addr}: {e}");
                }
            }
            Command::DialOnce(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!("cannot dial {addr}: {e}");
                }
            }
            Command::DialPeer(peer, addrs) => {
                let opts = DialOpts::peer_id(peer).addresses(addrs).build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!(peer = %short(&peer), "not dialing: {e}");
                }
            }
            Command::Disconnect(peer) => {
                self.admitted.remove(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::SyncWith(peer) => {
                if self.admitted.contains(&peer) {
                    self.start_sync(peer);
                }
            }
            Command::SyncOthers(from) => {
                for peer in self.admitted.admitted().into_iter().filter(|p| *p != from) {
                    self.start_sync(peer);
                }
            }
            Command::Connected(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
        }
    }
}

/// Whether the node admits `peer` to data exchange.
async fn allowed(node: &NodeHandle, peer: &PeerId) -> bool {
    let Some(device) = addr::device(peer) else {
        return false;
    };
    node.call_sync(move |n| n.peer_allowed(&device))
        .await
        .unwrap_or(false)
}
