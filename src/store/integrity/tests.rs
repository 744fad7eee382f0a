//! The attacker holds the files, not the passphrase: every edit, removal, insertion or
//! rollback of a record in an unsealed tree (made with sled directly, as a tool would)
//! is found at the next open, and the tree is named; envelope records changed leave the
//! store quarantined (read, never written); a chain of envelope records that does not
//! run from its first position to its head is found even where the digests agree.

use std::path::Path;

use super::super::{Store, StoreError, crypt};
use super::*;

const PASS: &[u8] = b"tangerine-lighthouse-4471";

/// The `envelopes` key of position `seq` in chain `chain` (the roster log, author
/// `[chain; 32]`); its first 50 bytes are the chain's key in `heads`.
fn position(chain: u8, seq: u64) -> Vec<u8> {
    let mut k = LogId::Roster.key_bytes().to_vec();
    k.extend([chain; 32]);
    k.extend(seq.to_be_bytes());
    k
}

/// An envelope record as the store writes one: the envelope's id (here `[seq; 32]`), then
/// the envelope (here `tail`).
fn record(seq: u64, tail: &[u8]) -> Vec<u8> {
    let mut v = vec![seq as u8; 32];
    v.extend_from_slice(tail);
    v
}

/// A `heads` record: the head's position and the id of the envelope there.
fn head(seq: u64) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend([seq as u8; 32]);
    v
}

/// The record attacked in each tree, and its value before, after and as edited.
struct Target {
    key: Vec<u8>,
    older: Vec<u8>,
    newer: Vec<u8>,
    edited: Vec<u8>,
}

fn target(tree: Plain) -> Target {
    match tree {
        // The third envelope of chain 1 (its head).
        Plain::Envelopes => Target {
            key: position(1, 2),
            older: record(2, b"older value"),
            newer: record(2, b"newer value"),
            edited: record(2, b"newer valuf"),
        },
        // The head of chain 2, moved from #0 to #1.
        Plain::Heads => Target {
            key: position(2, 0)[..50].to_vec(),
            older: head(0),
            newer: head(1),
            edited: {
                let mut v = head(1);
                v[20] ^= 1;
                v
            },
        },
        _ => Target {
            key: b"target".to_vec(),
            older: b"older value".to_vec(),
            newer: b"newer value".to_vec(),
            edited: b"newer valuf".to_vec(),
        },
    }
}

/// A store with records in every tree, written through it: two chains of envelopes with
/// their heads, and two records in each other tree; then `tree`'s target record, first
/// with its older value, then its newer one (so the disk has seen both, for the rollback).
fn store_with_records(dir: &Path, tree: Plain) -> Store {
    let store = Store::create(dir, PASS).unwrap();
    let put = |tree, key: &[u8], value: &[u8]| {
        store
            .write_plain(&[Change {
                tree,
                key,
                value: Some(value),
            }])
            .unwrap()
    };
    for chain in [1, 2] {
        for seq in 0..2 {
            put(
                Plain::Envelopes,
                &position(chain, seq),
                &record(seq, b"something"),
            );
        }
        put(Plain::Heads, &position(chain, 0)[..50], &head(1));
    }
    for t in [Plain::Pending, Plain::Granted] {
        for k in [b"first".as_slice(), b"second"] {
            put(t, k, b"something");
        }
    }
    let target = target(tree);
    for value in [&target.older, &target.newer] {
        put(tree, &target.key, value);
    }
    if tree == Plain::Envelopes {
        put(Plain::Heads, &position(1, 0)[..50], &head(2));
    }
    store.flush().unwrap();
    store
}

/// Runs `open` until the directory's lock is free: sled lets it go from a background
/// thread shortly after the last handle was dropped.
fn when_unlocked<T, E: std::fmt::Debug>(
    open: impl Fn() -> Result<T, E>,
    locked: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match open() {
            Err(e) if locked(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            other => return other,
        }
    }
}

fn raw_db(dir: &Path) -> sled::Db {
    when_unlocked(|| sled::open(dir), |e| matches!(e, sled::Error::Io(_))).unwrap()
}

fn open_store(dir: &Path, pass: &[u8]) -> Result<Store, StoreError> {
    when_unlocked(
        || Store::open(dir, pass),
        |e| matches!(e, StoreError::Locked(_)),
    )
}

/// Changes `tree` with sled directly, outside Huddle.
fn tamper(dir: &Path, tree: Plain, edit: impl FnOnce(&sled::Tree)) {
    let db = raw_db(dir);
    edit(&db.open_tree(tree.name()).unwrap());
    db.flush().unwrap();
}

/// The tree found changed at open: an error, except for envelope records, which open
/// the store quarantined (see `Checked::ChangedOutside`).
fn modified_tree(dir: &Path) -> Option<&'static str> {
    match open_store(dir, PASS) {
        Err(StoreError::Modified { tree, .. }) => Some(tree),
        Err(e) => panic!("another error: {e}"),
        Ok(store) if store.envelopes_modified() => Some(Plain::Envelopes.name()),
        Ok(_) => None,
    }
}

#[derive(Clone, Copy, Debug)]
enum Attack {
    Edit,
    Remove,
    Insert,
    Rollback,
}

fn attack(tree: Plain, how: Attack) {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), tree));
    assert_eq!(modified_tree(dir.path()), None, "untouched, it opens");
    let target = target(tree);
    tamper(dir.path(), tree, |t| {
        match how {
            Attack::Edit => t.insert(&target.key, target.edited.as_slice()),
            Attack::Remove => t.remove(&target.key),
            Attack::Insert => t.insert(b"planted", b"something".as_slice()),
            Attack::Rollback => t.insert(&target.key, target.older.as_slice()),
        }
        .unwrap();
    });
    assert_eq!(
        modified_tree(dir.path()),
        Some(tree.name()),
        "{how:?} of {tree:?}"
    );
    // It is still found the next time (nothing was rewritten to hide it).
    assert_eq!(modified_tree(dir.path()), Some(tree.name()));
}

fn every_attack(tree: Plain) {
    for how in [
        Attack::Edit,
        Attack::Remove,
        Attack::Insert,
        Attack::Rollback,
    ] {
        attack(tree, how);
    }
}

#[test]
fn changed_envelopes_are_found_at_open() {
    every_attack(Plain::Envelopes);
}

#[test]
fn changed_pending_records_are_found_at_open() {
    every_attack(Plain::Pending);
}

#[test]
fn changed_heads_are_found_at_open() {
    every_attack(Plain::Heads);
}

#[test]
fn changed_grants_are_found_at_open() {
    every_attack(Plain::Granted);
}

#[test]
fn a_record_moved_to_another_key_or_tree_is_found() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), Plain::Heads));
    tamper(dir.path(), Plain::Heads, |t| {
        let v = t.remove(&target(Plain::Heads).key).unwrap().unwrap();
        t.insert(b"moved", v).unwrap();
    });
    assert_eq!(modified_tree(dir.path()), Some("heads"));

    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), Plain::Granted));
    let db = raw_db(dir.path());
    let v = db.open_tree("granted").unwrap().remove(b"target").unwrap();
    db.open_tree("pending")
        .unwrap()
        .insert(b"target", v.unwrap())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    assert_eq!(modified_tree(dir.path()), Some("pending"));
}

#[test]
fn writes_removals_and_reopens_keep_the_digests_right() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), Plain::Pending));
    let store = open_store(dir.path(), PASS).unwrap();
    let change = |tree, key: &'static [u8], value| Change { tree, key, value };
    store
        .write_plain(&[change(Plain::Pending, b"target", None)])
        .unwrap();
    // Removing what is not there changes nothing.
    store
        .write_plain(&[change(Plain::Pending, b"never", None)])
        .unwrap();
    let (key, value, head) = (position(1, 2), record(2, b"1"), head(2));
    store
        .write_plain(&[
            Change {
                tree: Plain::Envelopes,
                key: &key,
                value: Some(&value),
            },
            Change {
                tree: Plain::Heads,
                key: &key[..50],
                value: Some(&head),
            },
        ])
        .unwrap();
    store.flush().unwrap();
    drop(store);
    assert_eq!(modified_tree(dir.path()), None);
    let store = open_store(dir.path(), PASS).unwrap();
    let on_disk = Digests::compute(&store.db, &store.mac).unwrap();
    assert_eq!(*store.digests.lock().unwrap(), on_disk);
    store.check_integrity().unwrap();
    // A change made while the store is open is found by the check too.
    store.granted.insert(b"planted", b"").unwrap();
    assert!(matches!(
        store.check_integrity(),
        Err(StoreError::Modified {
            tree: "granted",
            ..
        })
    ));
}

#[test]
fn a_removed_digest_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), Plain::Granted));
    let db = raw_db(dir.path());
    db.open_tree("meta").unwrap().remove(RECORD).unwrap();
    db.flush().unwrap();
    drop(db);
    assert_eq!(modified_tree(dir.path()), Some("meta"));
}

/// Makes `dir` look like a store made before digests were kept.
fn make_legacy(dir: &Path) {
    let store = open_store(dir, PASS).unwrap();
    let unmarked = crypt::seal(
        &store.wrap_key,
        "meta",
        b"wrapped-key",
        store.data_key.as_bytes(),
    );
    store.meta.insert("wrapped-key", unmarked).unwrap();
    store.meta.remove(RECORD).unwrap();
    store.flush().unwrap();
}

#[test]
fn an_older_store_is_upgraded_at_open_and_protected_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), Plain::Heads));
    make_legacy(dir.path());
    let target = target(Plain::Heads);
    // Opens (and is upgraded), with its records as they were.
    let store = open_store(dir.path(), PASS).unwrap();
    assert!(store.meta.get(RECORD).unwrap().is_some());
    assert_eq!(
        store.heads.get(&target.key).unwrap().as_deref(),
        Some(target.newer.as_slice())
    );
    drop(store);
    assert_eq!(modified_tree(dir.path()), None);
    tamper(dir.path(), Plain::Heads, |t| {
        t.insert(&target.key, target.older.as_slice()).unwrap();
    });
    assert_eq!(modified_tree(dir.path()), Some("heads"));
    // Removing the digest record now does not pass for an older store either.
    let db = raw_db(dir.path());
    db.open_tree("meta").unwrap().remove(RECORD).unwrap();
    db.flush().unwrap();
    drop(db);
    assert_eq!(modified_tree(dir.path()), Some("meta"));
}

#[test]
fn a_wrong_passphrase_learns_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), Plain::Heads));
    let target = target(Plain::Heads);
    tamper(dir.path(), Plain::Heads, |t| {
        t.insert(&target.key, target.older.as_slice()).unwrap();
    });
    assert!(matches!(
        open_store(dir.path(), b"not the passphrase at all"),
        Err(StoreError::WrongPassphrase(_))
    ));
    assert_eq!(modified_tree(dir.path()), Some("heads"));
}

/// A record written (`Some`) or removed: `heads` for a 50-byte key, else `envelopes`.
type Write = (Vec<u8>, Option<Vec<u8>>);

/// The chain gap the open found, if the store opened quarantined for one.
fn gap_at_open(dir: &Path) -> Option<ChainGap> {
    match open_store(dir, PASS).unwrap().changed_outside() {
        Some(ChangedOutside::Chain(gap)) => Some(gap.clone()),
        Some(other) => panic!("changed otherwise: {other}"),
        None => None,
    }
}

#[test]
fn a_chain_that_does_not_run_from_its_first_position_to_its_head_is_found() {
    // Written through the store (digests agree): the chain check alone finds each.
    let chain = Some((LogId::Roster, crate::core::ids::DeviceId([1; 32])));
    let cases: [(&str, Vec<Write>, GapKind); 5] = [
        (
            "a record past the head",
            vec![(position(1, 2), Some(record(2, b"planted")))],
            GapKind::PastHead(2),
        ),
        (
            "a removed first position",
            vec![(position(1, 0), None)],
            GapKind::Missing(0),
        ),
        (
            "a head past the records",
            vec![(position(1, 0)[..50].to_vec(), Some(head(4)))],
            GapKind::Missing(2),
        ),
        (
            "another envelope at the head",
            vec![(position(1, 1), Some(record(7, b"other")))],
            GapKind::NotTheHead(1),
        ),
        (
            "a chain without a head",
            vec![(position(1, 0)[..50].to_vec(), None)],
            GapKind::NoHead,
        ),
    ];
    for (what, writes, kind) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_records(dir.path(), Plain::Pending);
        for (key, value) in &writes {
            let tree = if key.len() == 50 {
                Plain::Heads
            } else {
                Plain::Envelopes
            };
            store
                .write_plain(&[Change {
                    tree,
                    key,
                    value: value.as_deref(),
                }])
                .unwrap();
        }
        store.flush().unwrap();
        drop(store);
        let gap = gap_at_open(dir.path()).unwrap_or_else(|| panic!("{what}: not found"));
        assert_eq!(gap.chain, chain, "{what}");
        assert_eq!(gap.what, kind, "{what}");
    }
}

#[test]
fn an_older_store_with_a_broken_chain_is_quarantined_not_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), Plain::Envelopes));
    make_legacy(dir.path());
    // Before digests were kept, only the chain check can tell a removed record.
    tamper(dir.path(), Plain::Envelopes, |t| {
        t.remove(position(1, 1)).unwrap();
    });
    let gap = gap_at_open(dir.path()).expect("found");
    assert_eq!(gap.what, GapKind::Missing(1));
    assert_eq!(
        gap.to_string(),
        format!(
            "lack #1 of device {}…'s chain in the roster log",
            crate::core::ids::DeviceId([1; 32]).short()
        )
    );
    // Nothing was written: no digests were stored for what it holds now.
    let db = raw_db(dir.path());
    assert!(db.open_tree("meta").unwrap().get(RECORD).unwrap().is_none());
}

#[test]
fn a_quarantined_store_reads_and_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_records(dir.path(), Plain::Envelopes));
    tamper(dir.path(), Plain::Envelopes, |t| {
        t.remove(position(2, 1)).unwrap();
    });
    let store = open_store(dir.path(), PASS).unwrap();
    assert_eq!(store.changed_outside(), Some(&ChangedOutside::Records));
    let refused = |r: Result<(), StoreError>| {
        let e = r.expect_err("refused");
        assert!(matches!(e, StoreError::Changed { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("changed outside Huddle"), "{text}");
        assert!(text.contains("Run `huddle repair`"), "{text}");
    };
    refused(store.write_plain(&[Change {
        tree: Plain::Pending,
        key: b"new",
        value: Some(b"x"),
    }]));
    refused(store.write_plain(&[Change {
        tree: Plain::Granted,
        key: b"first",
        value: None,
    }]));
    refused(store.put_sealed(super::super::Sealed::Peers, b"p", b"x"));
    refused(store.remove_sealed(super::super::Sealed::Peers, b"p"));
    refused(store.save_identity(b"anything"));
    assert!(!crate::store::identity_file::exists(dir.path()));
    // Reads go on.
    assert_eq!(store.envelope_count(), 4);
    assert!(store.granted.get(b"first").unwrap().is_some());
}

#[test]
fn hmac_sha256_matches_rfc_4231() {
    // RFC 4231, test case 2.
    let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
    assert_eq!(
        hex::encode(tag),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
