//! Materialized thread documents: loaded from a sealed snapshot plus the envelopes
//! after it, and kept open. Snapshots and list summaries are caches: a damaged or
//! missing one is rebuilt from the envelopes, so nothing is lost.
//!
//! Both cost time linear in a thread's length, so neither is rewritten on every change:
//! a snapshot is written once [`SNAPSHOT_EVERY`] changes have accumulated since the last
//! one (and for every open document when the node closes), and a changed thread's
//! summary is dropped at once and rebuilt the next time threads are listed.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::core::envelope::{Body, Header};
use crate::core::ids::{DeviceId, LogId, MemberId, ThreadId};
use crate::core::policy::Category;
use crate::core::replica::Replica;
use crate::core::thread::{ChangeAuthor, Priority, TaskStatus, ThreadDoc, ThreadError};
use crate::store::{Sealed, Store};

use super::{NodeError, ThreadSummary};

/// A saved document and, per author, the first chain position it does not include.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    doc: Vec<u8>,
    covered: Vec<(DeviceId, u64)>,
    /// The document rules it was judged under ([`RULES`]).
    rules: u16,
}

/// The document rules of this release. A snapshot judged under other rules is not used:
/// the previous release refused changes these rules admit (a reply's `reply_to`) while
/// counting them as covered, so its documents are rebuilt from the envelopes once.
const RULES: u16 = 2;

/// [`Snapshot`] as the previous release wrote it (rules 1: no `rules` field).
type SnapshotV1 = (Vec<u8>, Vec<(DeviceId, u64)>);

/// Changes a document may hold beyond its stored snapshot; loading replays at most this
/// many envelopes per thread (more only after a crash).
pub const SNAPSHOT_EVERY: usize = 64;

#[derive(Default)]
pub(super) struct Docs {
    open: HashMap<ThreadId, ThreadDoc>,
    /// Changes applied to each open document since its snapshot was written.
    unsaved: HashMap<ThreadId, usize>,
    /// Threads changed by the current command: their stored summaries are stale.
    changed: HashSet<ThreadId>,
    /// Threads with a stored change whose author's member this device's roster does not
    /// know yet (the founder's device, before the roster's first operation is folded):
    /// rebuilt once the roster changes.
    unjudged: HashSet<ThreadId>,
    /// Envelopes met while loading that this device could not open yet.
    locked: Vec<(ThreadId, Header)>,
    /// Summaries rebuilt while listing, stored at the end of the next command (reads
    /// write nothing).
    rebuilt: HashMap<ThreadId, ThreadSummary>,
}

/// A change received in an accepted envelope: what the envelope and its log say.
pub(super) struct Received<'a> {
    pub thread: ThreadId,
    pub category: Category,
    pub author: DeviceId,
    pub at_ms: u64,
    pub change: &'a [u8],
}

/// The member behind a device of the clinic, revoked devices included (the founder's
/// device is in the roster's devices once the clinic is initialized).
fn member_of(replica: &Replica) -> impl Fn(&DeviceId) -> Option<MemberId> + '_ {
    |d| replica.roster().devices.get(d).map(|e| e.member)
}

/// Who made a received change, as `ThreadDoc::apply` needs it: the signed envelope's
/// author device and time, and that device's member in the roster.
fn change_author(replica: &Replica, device: &DeviceId, at_ms: u64) -> Option<ChangeAuthor> {
    Some(ChangeAuthor {
        device: *device,
        member: member_of(replica)(device)?,
        at_ms,
    })
}

/// Chain heads of one log: author → next seq.
fn log_heads(replica: &Replica, log: &LogId) -> BTreeMap<DeviceId, u64> {
    replica
        .heads()
        .iter()
        .filter(|((l, _), _)| l == log)
        .map(|((_, author), h)| (*author, h.seq + 1))
        .collect()
}

impl Docs {
    pub fn get(
        &mut self,
        store: &Store,
        replica: &Replica,
        thread: ThreadId,
    ) -> Result<&mut ThreadDoc, NodeError> {
        if !self.open.contains_key(&thread) {
            let doc = self.load(store, replica, thread, true)?;
            self.open.insert(thread, doc);
        }
        Ok(self.open.get_mut(&thread).expect("inserted above"))
    }

    /// A brand-new document for a thread this device is creating.
    pub fn edit_new(
        &mut self,
        me: &DeviceId,
        thread: ThreadId,
        f: impl FnOnce(&mut ThreadDoc) -> Result<Vec<u8>, crate::core::thread::ThreadError>,
    ) -> Result<Vec<u8>, NodeError> {
        let doc = self
            .open
            .entry(thread)
            .or_insert_with(|| ThreadDoc::new(me));
        let change = f(doc)?;
        self.mark_changed(thread);
        Ok(change)
    }

    /// Records a change made to an open document.
    pub fn mark_changed(&mut self, thread: ThreadId) {
        self.changed.insert(thread);
        self.rebuilt.remove(&thread);
        *self.unsaved.entry(thread).or_default() += 1;
    }

    /// Applies a received change (already in the store). A change that does not apply
    /// is logged and skipped: one bad change must not stop the rest of a sync. A document
    /// that is not open is not loaded for this: loading reads the change from the store.
    pub fn apply(&mut self, replica: &Replica, received: Received<'_>) -> Result<(), NodeError> {
        let Received {
            thread,
            category,
            author,
            at_ms,
            change,
        } = received;
        self.mark_changed(thread);
        let Some(doc) = self.open.get_mut(&thread) else {
            return Ok(());
        };
        let Some(who) = change_author(replica, &author, at_ms) else {
            tracing::debug!(thread = %thread.short(), "change waits for its author's member");
            self.unjudged.insert(thread);
            return Ok(());
        };
        match doc.apply(category, thread, &who, &member_of(replica), change) {
            Ok(crate::core::thread::Applied::Now { refused, .. }) => {
                for e in refused {
                    tracing::warn!(thread = %thread.short(), "held change not applied: {e}");
                }
            }
            Ok(_) => {}
            Err(ThreadError::QueueFull { .. }) => {
                // Too many changes wait for earlier ones (a long catch-up arrives one
                // author at a time): close the document; loading it again applies
                // everything stored in causal order.
                tracing::debug!(thread = %thread.short(), "too many changes held; document reloads later");
                self.open.remove(&thread);
            }
            Err(e) => tracing::warn!(thread = %thread.short(), "change not applied: {e}"),
        }
        Ok(())
    }

    /// Envelopes met while loading that did not open (to tell the replica).
    pub fn take_locked(&mut self) -> Vec<(ThreadId, Header)> {
        std::mem::take(&mut self.locked)
    }

    /// Rebuilds a document from all its envelopes (a key for older envelopes arrived).
    pub fn rematerialize(
        &mut self,
        store: &Store,
        replica: &Replica,
        thread: ThreadId,
    ) -> Result<(), NodeError> {
        let doc = self.load(store, replica, thread, false)?;
        self.open.insert(thread, doc);
        self.changed.insert(thread);
        self.rebuilt.remove(&thread);
        // The stored snapshot lacks what the new key opened: rewrite it now.
        self.unsaved.insert(thread, SNAPSHOT_EVERY);
        Ok(())
    }

    fn load(
        &mut self,
        store: &Store,
        replica: &Replica,
        thread: ThreadId,
        use_snapshot: bool,
    ) -> Result<ThreadDoc, NodeError> {
        let me = replica.me().id;
        let log = replica
            .thread_log(&thread)
            .ok_or_else(|| NodeError::UnknownThread(thread.to_hex()))?;
        let mut covered: HashMap<DeviceId, u64> = HashMap::new();
        let mut doc = ThreadDoc::new(&me);
        if use_snapshot {
            match store.get_sealed(Sealed::Snapshots, &Store::thread_key(&thread)) {
                Ok(None) => {}
                Ok(Some(bytes)) => match postcard::from_bytes::<Snapshot>(&bytes)
                    .ok()
                    .filter(|s| s.rules == RULES)
                    .and_then(|s| Some((ThreadDoc::load(&s.doc, &me).ok()?, s.covered)))
                {
                    Some((d, c)) => {
                        doc = d;
                        covered = c.into_iter().collect();
                    }
                    None if postcard::from_bytes::<SnapshotV1>(&bytes).is_ok() => {
                        tracing::debug!(thread = %thread.short(), "snapshot of earlier rules; rebuilding from envelopes")
                    }
                    None => {
                        tracing::warn!(thread = %thread.short(), "snapshot unreadable; rebuilding from envelopes")
                    }
                },
                Err(e) => tracing::warn!("{e}; rebuilding from envelopes"),
            }
        }
        let mut replayed = 0;
        let mut changes = Vec::new();
        // Only what the replica accepted: up to each chain's head, never a record past it.
        for (author, next) in log_heads(replica, &log) {
            let author = &author;
            let from = covered.get(author).copied().unwrap_or(0);
            for env in store.chain(&log, author, from..next) {
                let env = match env {
                    Ok(env) => env,
                    Err(e) => {
                        tracing::warn!("{e}");
                        continue;
                    }
                };
                match replica.open_thread_change(&env) {
                    Some(change) => match change_author(replica, author, env.header.at_ms) {
                        Some(who) => changes.push((who, change)),
                        None => {
                            self.unjudged.insert(thread);
                        }
                    },
                    None if matches!(env.body, Body::Sealed(_)) => {
                        self.locked.push((thread, env.header.clone()));
                    }
                    None => {}
                }
                replayed += 1;
            }
        }
        // Envelopes come one author at a time; the batch applies them in causal order.
        if let Some(category) = log_category(replica, &thread) {
            for e in doc.apply_batch(category, thread, &member_of(replica), changes) {
                tracing::warn!(thread = %thread.short(), "change not applied: {e}");
            }
        }
        if replayed > 0 {
            *self.unsaved.entry(thread).or_default() += replayed;
        }
        Ok(doc)
    }

    /// The roster changed: documents missing changes whose author was unknown are closed,
    /// to be rebuilt from the store when next used. Returns them.
    pub fn roster_changed(&mut self) -> Vec<ThreadId> {
        let threads: Vec<ThreadId> = self.unjudged.drain().collect();
        for thread in &threads {
            self.open.remove(thread);
            self.changed.insert(*thread);
            self.rebuilt.remove(thread);
        }
        threads
    }

    /// Ends a command: drops the stored summaries of the threads it changed and writes
    /// the snapshots that are due (every open one with `all`).
    pub fn save_dirty(
        &mut self,
        store: &Store,
        replica: &Replica,
        all: bool,
    ) -> Result<(), NodeError> {
        for thread in std::mem::take(&mut self.changed) {
            self.rebuilt.remove(&thread);
            store.remove_sealed(Sealed::Summaries, &Store::thread_key(&thread))?;
        }
        for (thread, summary) in std::mem::take(&mut self.rebuilt) {
            // JSON, not postcard: the summary's `Subject` is an adjacently tagged enum,
            // which postcard can write but not read back.
            store.put_sealed(
                Sealed::Summaries,
                &Store::thread_key(&thread),
                &serde_json::to_vec(&summary).unwrap_or_default(),
            )?;
        }
        let due: Vec<ThreadId> = self
            .unsaved
            .iter()
            .filter(|(_, n)| all || **n >= SNAPSHOT_EVERY)
            .map(|(t, _)| *t)
            .collect();
        for thread in due {
            self.unsaved.remove(&thread);
            let Some(log) = replica.thread_log(&thread) else {
                continue;
            };
            let Some(doc) = self.open.get_mut(&thread) else {
                continue;
            };
            let covered = if doc.has_missing_deps()
                || self.unjudged.contains(&thread)
                || replica.is_locked(&thread)
            {
                Vec::new()
            } else {
                log_heads(replica, &log).into_iter().collect()
            };
            let snap = Snapshot {
                doc: doc.save(),
                covered,
                rules: RULES,
            };
            store.put_sealed(
                Sealed::Snapshots,
                &Store::thread_key(&thread),
                &postcard::to_stdvec(&snap).unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    /// One summary per thread held, most recent first; unreadable threads last. Returns
    /// problems met (damaged summaries are rebuilt from the documents). Writes nothing:
    /// rebuilt summaries are kept until the next [`Docs::save_dirty`].
    pub fn summaries(
        &mut self,
        store: &Store,
        replica: &Replica,
        me: Option<(MemberId, &str)>,
    ) -> Result<(Vec<ThreadSummary>, Vec<String>), NodeError> {
        let mut counts: HashMap<LogId, u64> = HashMap::new();
        for ((log, _), head) in replica.heads() {
            *counts.entry(*log).or_default() += head.seq + 1;
        }
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for (thread, category) in replica.threads() {
            let log = LogId::Thread {
                id: thread,
                category,
            };
            let envelopes = counts.get(&log).copied().unwrap_or(0);
            if !replica.has_key(&log) {
                out.push(locked(&thread, &log, envelopes));
                continue;
            }
            let key = Store::thread_key(&thread);
            let stored = match store.get_sealed(Sealed::Summaries, &key) {
                Ok(Some(b)) => match serde_json::from_slice::<ThreadSummary>(&b) {
                    // One written before envelopes that it does not count (a crash
                    // between storing them and dropping it) is stale.
                    Ok(s) if s.envelopes == envelopes => Some(s),
                    Ok(_) => None,
                    Err(_) => {
                        problems.push(format!("thread {} summary does not decode; rebuilt from the thread's envelopes", thread.short()));
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    problems.push(format!("{e}; rebuilt from the thread's envelopes"));
                    None
                }
            };
            let cached = self
                .rebuilt
                .get(&thread)
                .filter(|s| s.envelopes == envelopes)
                .cloned();
            let mut summary = match stored.or(cached) {
                Some(s) => s,
                None => {
                    let s = summarize(self.get(store, replica, thread)?, &log, me, envelopes);
                    self.rebuilt.insert(thread, s.clone());
                    s
                }
            };
            summary.thread = thread;
            out.push(summary);
        }
        out.sort_by_key(|s| std::cmp::Reverse((s.readable, s.last_ms)));
        Ok((out, problems))
    }
}

fn log_category(replica: &Replica, thread: &ThreadId) -> Option<Category> {
    replica.thread_log(thread)?.category()
}

fn locked(thread: &ThreadId, log: &LogId, envelopes: u64) -> ThreadSummary {
    match log {
        LogId::Thread { category, .. } => locked_summary(*thread, *category, envelopes),
        _ => ThreadSummary {
            category: String::new(),
            ..locked_summary(*thread, Category::Operations, envelopes)
        },
    }
}

/// What a thread this device may not show looks like: its category and size only.
pub(super) fn locked_summary(
    thread: ThreadId,
    category: Category,
    envelopes: u64,
) -> ThreadSummary {
    let thread = &thread;
    let category = category.to_string();
    ThreadSummary {
        thread: *thread,
        mentions_unread: 0,
        id: thread.to_hex(),
        category,
        readable: false,
        subject: None,
        title: None,
        messages: 0,
        unread: 0,
        urgent_unread: 0,
        open_tasks: 0,
        last_ms: None,
        envelopes,
    }
}

/// Whether `body` mentions `name` as `@Name` (case-insensitive, the whole name).
pub fn mentions(body: &str, name: &str) -> bool {
    let tag = format!("@{}", name.to_lowercase());
    let body = body.to_lowercase();
    body.match_indices(&tag).any(|(at, _)| {
        // The name ends there: not a prefix of a longer word.
        !body[at + tag.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric())
    })
}

fn summarize(
    doc: &ThreadDoc,
    log: &LogId,
    me: Option<(MemberId, &str)>,
    envelopes: u64,
) -> ThreadSummary {
    let member = me.map(|(id, _)| id);
    let thread = log.thread().unwrap_or(ThreadId([0; 16]));
    let Some(meta) = doc.meta() else {
        return locked(&thread, log, envelopes);
    };
    let messages = doc.messages().unwrap_or_default();
    let unread: Vec<_> = messages
        .iter()
        .filter(|m| member.is_some_and(|me| m.author != me && !m.read_by.contains(&me)))
        .collect();
    ThreadSummary {
        thread,
        mentions_unread: unread
            .iter()
            .filter(|m| me.is_some_and(|(_, name)| mentions(&m.body, name)))
            .count(),
        id: thread.to_hex(),
        category: meta.category.to_string(),
        readable: true,
        subject: Some(meta.subject),
        title: Some(meta.title),
        messages: messages.len(),
        unread: unread.len(),
        urgent_unread: unread
            .iter()
            .filter(|m| m.priority == Priority::Urgent)
            .count(),
        open_tasks: messages
            .iter()
            .filter(|m| {
                m.task
                    .as_ref()
                    .is_some_and(|t| t.status == TaskStatus::Open)
            })
            .count(),
        last_ms: messages
            .iter()
            .map(|m| m.at_ms)
            .max()
            .or(Some(meta.created_ms)),
        envelopes,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::core::policy::{Category, Role};
    use crate::core::sync::Range;
    use crate::core::thread::Subject;
    use crate::node::Node;

    const PASS: &[u8] = b"a passphrase long enough";

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }

    /// A new clinic at `dir` with one operations thread.
    fn clinic_with_thread(dir: &Path) -> (Node, crate::core::ids::ThreadId) {
        let mut node = Node::create(dir, PASS).unwrap();
        node.init_clinic("Maple", "Sam K.", Role::Clinician)
            .unwrap();
        let thread = node
            .new_thread(Subject::Topic("Rota".into()), Category::Operations, "Week")
            .unwrap();
        (node, thread)
    }

    /// A validly signed envelope of this device's chain that its replica never accepted
    /// (written by a copy of it), put in its store past the chain's head while the node
    /// is open (so the open's check did not see it): the document, the sync and every
    /// read stop at the head the replica accepted.
    #[test]
    fn a_record_past_a_chains_head_never_reaches_a_document_or_a_peer() {
        let root = tempfile::tempdir().unwrap();
        let (dir, copy) = (root.path().join("a"), root.path().join("b"));
        let (mut node, thread) = clinic_with_thread(&dir);
        node.post(thread, "accepted", false, None).unwrap();
        drop(node);
        copy_dir(&dir, &copy);
        let mut other = Node::open(&copy, PASS).unwrap();
        other
            .post(thread, "never accepted there", false, None)
            .unwrap();
        let me = other.device().id;
        let log = other.thread_log(thread.into()).unwrap();
        let next = other.replica().unwrap().heads()[&(log, me)].seq + 1;
        let planted = other
            .store
            .chain(&log, &me, next - 1..next)
            .next()
            .unwrap()
            .unwrap();
        drop(other);

        let node = Node::open(&dir, PASS).unwrap();
        assert_eq!(
            node.replica().unwrap().heads()[&(log, me)].seq + 1,
            next - 1
        );
        node.store.plant_record(&planted);
        let bodies: Vec<String> = node
            .thread(thread)
            .unwrap()
            .messages
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(bodies, ["accepted"]);
        let sent = node
            .load_batch(&Range {
                log,
                author: me,
                from: 0,
                to: u64::MAX,
            })
            .unwrap();
        assert_eq!(sent.len() as u64, next - 1, "the sync stops at the head");
    }

    /// A snapshot written under the previous release's rules may lack a change those
    /// rules refused (a reply) while counting it as covered: it is not used, and the
    /// document is rebuilt from the envelopes. One under this release's rules is used.
    #[test]
    fn a_snapshot_of_earlier_rules_is_rebuilt_from_the_envelopes() {
        use super::{RULES, Snapshot, SnapshotV1};
        use crate::store::{Sealed, Store};
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a");
        let (mut node, thread) = clinic_with_thread(&dir);
        node.post(thread, "first", false, None).unwrap();
        drop(node);
        let key = Store::thread_key(&thread);
        let node = Node::open(&dir, PASS).unwrap();
        let stored = |node: &Node| -> Snapshot {
            let bytes = node.store.get_sealed(Sealed::Snapshots, &key).unwrap();
            postcard::from_bytes(&bytes.expect("a snapshot")).unwrap()
        };
        let older = stored(&node);
        drop(node);
        let mut node = Node::open(&dir, PASS).unwrap();
        let first = node.thread(thread).unwrap().messages[0].id.clone();
        node.post_reply_with_id(thread, &first, "a reply", false, None, [9; 8])
            .unwrap();
        drop(node);
        let node = Node::open(&dir, PASS).unwrap();
        let now = stored(&node);
        let bodies = |node: &Node| -> Vec<String> {
            node.thread(thread)
                .unwrap()
                .messages
                .into_iter()
                .map(|m| m.body)
                .collect()
        };
        // What the previous release would leave: the older document, the newer heads.
        let stale: SnapshotV1 = (older.doc.clone(), now.covered.clone());
        let put = |node: &Node, bytes: Vec<u8>| {
            node.store
                .put_sealed(Sealed::Snapshots, &key, &bytes)
                .unwrap();
        };
        put(&node, postcard::to_stdvec(&stale).unwrap());
        drop(node);
        let node = Node::open(&dir, PASS).unwrap();
        assert_eq!(
            bodies(&node),
            ["first", "a reply"],
            "rebuilt from the envelopes"
        );
        drop(node);
        // The same stale document under this release's rules is trusted as it says
        // (written by a node that has not opened the document, so it stays).
        let node = Node::open(&dir, PASS).unwrap();
        let trusted = Snapshot {
            doc: older.doc,
            covered: now.covered,
            rules: RULES,
        };
        put(&node, postcard::to_stdvec(&trusted).unwrap());
        drop(node);
        let node = Node::open(&dir, PASS).unwrap();
        assert_eq!(bodies(&node), ["first"], "a current snapshot is used");
    }
}
