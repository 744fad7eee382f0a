//! Opening and closing the app's node: founding a clinic, joining one, unlocking with
//! the passphrase (Argon2 runs here, never on the UI thread), and starting the
//! [`Host`] that syncs and answers the control socket.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use super::{Running, Worker};
use crate::app::message::{Phase, Update};
use crate::core::invite::{Invitation, clinic_tag};
use crate::core::policy::Role;
use crate::host::claim::Claim;
use crate::host::{Host, net_config};
use crate::node::Node;
use crate::store::Store;

impl Worker {
    pub(super) async fn found(
        &mut self,
        clinic: &str,
        name: &str,
        role: Role,
        passphrase: Zeroizing<String>,
    ) -> Result<()> {
        let dir = self.dir().to_path_buf();
        if Store::exists(&dir) {
            bail!("{} already holds a Huddle device", dir.display());
        }
        self.out.send(Update::Phase(Phase::Working(
            "Creating your clinic…".into(),
        )));
        let (clinic, name) = (clinic.to_string(), name.to_string());
        let created = tokio::task::spawn_blocking(move || {
            create_fresh(&dir, &passphrase, |node| {
                Ok(node.init_clinic(&clinic, &name, role)?)
            })
        })
        .await?;
        match created {
            Ok(node) => self.start(node).await,
            Err(e) => {
                self.out.send(Update::Phase(Phase::FirstRun));
                Err(e)
            }
        }
    }

    /// Creates this device, starts its node and joins on the running network, so that
    /// the first sync shows its progress and the clinic opens as soon as the roster is
    /// in ([`Worker::refresh`]); [`Worker::joined`] finishes.
    pub(super) async fn join(
        &mut self,
        invite: &str,
        peers: &[String],
        passphrase: Zeroizing<String>,
    ) -> Result<()> {
        let invite = Invitation::parse(invite.trim())?;
        for p in peers {
            crate::net::addr::parse(p).map_err(anyhow::Error::msg)?;
        }
        let dir = self.dir().to_path_buf();
        if Store::exists(&dir) {
            bail!("{} already holds a Huddle device", dir.display());
        }
        self.out.send(Update::Phase(Phase::Working(
            "Looking for the inviting device…".into(),
        )));
        let addrs: Vec<String> = invite.addrs.iter().chain(peers).cloned().collect();
        let created = tokio::task::spawn_blocking(move || {
            create_fresh(&dir, &passphrase, |node| {
                // Remembered for the next start: where the inviter was found.
                for a in &addrs {
                    node.add_peer(a.trim())?;
                }
                Ok(())
            })
        })
        .await?;
        let started = match created {
            Ok(node) => self.start_host(node, None, invite.clinic_tag).await,
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            self.abandon_join().await;
            return Err(e);
        }
        if let Some(running) = &self.host {
            let net = running.host.network().clone();
            self.joining = Some(tokio::spawn(async move {
                net.join(&invite, crate::host::FIND_INVITER).await
            }));
        }
        Ok(())
    }

    /// The join's enrollment and first sync ended.
    pub(super) async fn joined(&mut self, result: Result<crate::net::Stats, crate::net::NetError>) {
        match result {
            Ok(_) => {
                self.shown_open = false;
                self.refresh(true).await;
            }
            Err(e) => {
                self.abandon_join().await;
                let words = match &e {
                    crate::net::NetError::Invite(_) => {
                        crate::app::words::plain(&anyhow::Error::from(e))
                    }
                    _ => "The inviting device could not be reached. Check that Huddle is \
                          open on it; where the network blocks discovery, give its address \
                          (HOST:PORT) below."
                        .to_string(),
                };
                self.out.send(Update::FormError {
                    form: crate::app::message::Form::Join,
                    text: words,
                });
            }
        }
    }

    /// A failed join leaves nothing behind: the directory was made for it.
    async fn abandon_join(&mut self) {
        self.stop().await;
        let _ = std::fs::remove_dir_all(self.dir());
        self.out.send(Update::Phase(Phase::FirstRun));
    }

    /// Locks: every unlock session of the control socket ends, the lock is audited,
    /// the node is closed (keys and documents leave memory) and the network goes on
    /// blind; the views forget what they showed.
    pub(super) async fn lock(&mut self) -> Result<()> {
        self.open_thread = None;
        if let Some(running) = self.host.as_mut() {
            running.host.lock().await;
            running.locked = true;
        }
        self.out.send(Update::Phase(Phase::Locked));
        Ok(())
    }

    /// Opens the locked node again: it takes in what arrived while it synced blind.
    async fn unlock_blind(&mut self, passphrase: Zeroizing<String>) -> Result<()> {
        let Some(running) = self.host.as_mut() else {
            return Ok(());
        };
        self.out
            .send(Update::Phase(Phase::Working("Unlocking…".into())));
        let node = running.host.node().clone();
        let notify = running.changed.clone();
        let unlocked = tokio::task::spawn_blocking(move || {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            node.unlock_blocking(move |dir| {
                let mut node = Node::open(dir, passphrase.as_bytes())?;
                node.audit_unlock();
                let _ = tx.send(node.watch(move || notify.notify_one()));
                Ok(node)
            })?;
            rx.try_recv().context("the unlocked node is not watched")
        })
        .await?;
        match unlocked {
            Ok(watch) => {
                running.watch = watch;
                running.locked = false;
                self.shown_open = false;
                self.refresh(true).await;
                Ok(())
            }
            Err(e) => {
                self.out.send(Update::Phase(Phase::Locked));
                Err(e)
            }
        }
    }

    /// Unlocks, and words a wrong passphrase with what the next tries cost (the store
    /// counts failures in the data directory, so the CLI's tries count too).
    pub(super) async fn unlock_counted(&mut self, passphrase: Zeroizing<String>) -> Result<()> {
        let result = self.unlock(passphrase).await;
        if let Err(e) = &result
            && e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<crate::store::StoreError>(),
                    Some(crate::store::StoreError::WrongPassphrase(_))
                ) || matches!(
                    c.downcast_ref::<crate::node::NodeError>(),
                    Some(crate::node::NodeError::Store(
                        crate::store::StoreError::WrongPassphrase(_)
                    ))
                )
            })
        {
            let (free_left, wait) = crate::store::unlock_limit::outlook(self.dir());
            bail!(crate::app::words::wrong_passphrase(free_left, wait));
        }
        result
    }

    pub(super) async fn unlock(&mut self, passphrase: Zeroizing<String>) -> Result<()> {
        if self.host.as_ref().is_some_and(|r| r.locked) {
            return self.unlock_blind(passphrase).await;
        }
        if self.host.is_some() {
            return Ok(());
        }
        self.out
            .send(Update::Phase(Phase::Working("Unlocking…".into())));
        let dir = self.dir().to_path_buf();
        let opened = tokio::task::spawn_blocking(move || -> Result<(Claim, Node)> {
            let claim = Claim::take(&dir)?;
            let node = claim
                .open_node(passphrase.as_bytes(), || false)?
                .context("stopped while waiting for the store")?;
            Ok((claim, node))
        })
        .await?;
        match opened {
            Ok((claim, mut node)) => {
                node.audit_unlock();
                self.start_claimed(claim, node).await
            }
            Err(e) => {
                self.out.send(Update::Phase(Phase::Locked));
                Err(e)
            }
        }
    }

    /// Starts a node opened without a claim (just created).
    async fn start(&mut self, node: Node) -> Result<()> {
        self.start_claimed(Claim::take(self.dir())?, node).await
    }

    pub(super) async fn start_claimed(&mut self, claim: Claim, node: Node) -> Result<()> {
        let Some((clinic, _)) = node.summary() else {
            self.out.send(Update::Phase(Phase::FirstRun));
            bail!("this device has no clinic yet: found one or join with an invitation");
        };
        self.start_host(node, Some(claim), clinic_tag(&clinic))
            .await?;
        self.shown_open = false;
        self.refresh(true).await;
        Ok(())
    }

    /// Starts the host on `node`: the network (LAN discovery under `tag`), the control
    /// socket, and the watches the views are rebuilt from.
    async fn start_host(
        &mut self,
        mut node: Node,
        claim: Option<Claim>,
        tag: [u8; 8],
    ) -> Result<()> {
        let claim = match claim {
            Some(c) => c,
            None => Claim::take(self.dir())?,
        };
        for p in &self.config.net.peers {
            node.add_peer(p)?;
        }
        let config = net_config(&self.config.net, tag, &node.peers()?, true)?;
        let changed = Arc::new(Notify::new());
        let notify = changed.clone();
        let watch = node.watch(move || notify.notify_one());
        let host = Host::start(self.dir(), claim, node, config).await?;
        self.peers = Some(host.network().peers());
        self.progress = Some(host.network().sync_progress());
        self.host = Some(Running {
            host,
            changed,
            watch,
            locked: false,
        });
        Ok(())
    }
}

/// Creates a new data directory (owner-only) with its device key, and runs `setup` on
/// the new node; a failure removes what was created.
fn create_fresh(
    dir: &Path,
    passphrase: &str,
    setup: impl FnOnce(&mut Node) -> Result<()>,
) -> Result<Node> {
    let fresh = !dir.exists();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let made = crate::store::dir::restrict(dir)
        .with_context(|| format!("restricting {}", dir.display()))
        .and_then(|()| Ok(Node::create(dir, passphrase.as_bytes())?))
        .and_then(|mut node| setup(&mut node).map(|()| node));
    if made.is_err() && fresh {
        let _ = std::fs::remove_dir_all(dir);
    }
    made
}

/// Resolves when the join in progress ends; `None` when no join is in progress (or its
/// task was cancelled).
pub(super) async fn join_finished(
    join: Option<&mut tokio::task::JoinHandle<Result<crate::net::Stats, crate::net::NetError>>>,
) -> Option<Result<crate::net::Stats, crate::net::NetError>> {
    match join {
        Some(handle) => handle.await.ok(),
        None => std::future::pending().await,
    }
}
