//! The attacker holds the files, not the passphrase: every edit, removal, insertion or
//! rollback of a record in an unsealed tree (made with sled directly, as a tool would)
//! is found at the next open, and the tree is named.

use std::path::Path;

use super::super::{Store, StoreError, crypt};
use super::*;

const PASS: &[u8] = b"tangerine-lighthouse-4471";

/// A record of each tree, written through the store; `key`'s value in `tree` is first
/// `old`, then `new` (so the disk has seen `old`, for the rollback).
fn store_with_records(dir: &Path, tree: Plain, key: &[u8], old: &[u8], new: &[u8]) {
    let store = Store::create(dir, PASS).unwrap();
    for t in Plain::ALL {
        for k in [b"first".as_slice(), b"second"] {
            store
                .write_plain(&[Change {
                    tree: t,
                    key: k,
                    value: Some(b"something"),
                }])
                .unwrap();
        }
    }
    for value in [old, new] {
        store
            .write_plain(&[Change {
                tree,
                key,
                value: Some(value),
            }])
            .unwrap();
    }
    store.flush().unwrap();
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
/// with the change noted (each envelope proves itself; see `Checked::EnvelopesChanged`).
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
    store_with_records(dir.path(), tree, b"target", b"older value", b"newer value");
    assert_eq!(modified_tree(dir.path()), None, "untouched, it opens");
    tamper(dir.path(), tree, |t| {
        match how {
            Attack::Edit => t.insert(b"target", b"newer valuf".as_slice()),
            Attack::Remove => t.remove(b"target"),
            Attack::Insert => t.insert(b"planted", b"something".as_slice()),
            Attack::Rollback => t.insert(b"target", b"older value".as_slice()),
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
    store_with_records(dir.path(), Plain::Heads, b"target", b"a", b"b");
    tamper(dir.path(), Plain::Heads, |t| {
        let v = t.remove(b"target").unwrap().unwrap();
        t.insert(b"moved", v).unwrap();
    });
    assert_eq!(modified_tree(dir.path()), Some("heads"));

    let dir = tempfile::tempdir().unwrap();
    store_with_records(dir.path(), Plain::Granted, b"target", b"", b"");
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
    store_with_records(dir.path(), Plain::Pending, b"gone", b"x", b"y");
    let store = open_store(dir.path(), PASS).unwrap();
    let change = |tree, key: &'static [u8], value| Change { tree, key, value };
    store
        .write_plain(&[change(Plain::Pending, b"gone", None)])
        .unwrap();
    // Removing what is not there changes nothing.
    store
        .write_plain(&[change(Plain::Pending, b"never", None)])
        .unwrap();
    store
        .write_plain(&[
            change(Plain::Envelopes, b"e", Some(b"1")),
            change(Plain::Heads, b"h", Some(b"1")),
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
    store_with_records(dir.path(), Plain::Granted, b"target", b"", b"");
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
    store_with_records(dir.path(), Plain::Heads, b"target", b"a", b"b");
    make_legacy(dir.path());
    // Opens (and is upgraded), with its records as they were.
    let store = open_store(dir.path(), PASS).unwrap();
    assert!(store.meta.get(RECORD).unwrap().is_some());
    assert_eq!(
        store.heads.get(b"target").unwrap().as_deref(),
        Some(&b"b"[..])
    );
    drop(store);
    assert_eq!(modified_tree(dir.path()), None);
    tamper(dir.path(), Plain::Heads, |t| {
        t.insert(b"target", b"a".as_slice()).unwrap();
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
    store_with_records(dir.path(), Plain::Heads, b"target", b"a", b"b");
    tamper(dir.path(), Plain::Heads, |t| {
        t.insert(b"target", b"a".as_slice()).unwrap();
    });
    assert!(matches!(
        open_store(dir.path(), b"not the passphrase at all"),
        Err(StoreError::WrongPassphrase(_))
    ));
    assert_eq!(modified_tree(dir.path()), Some("heads"));
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
