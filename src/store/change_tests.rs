//! A passphrase change interrupted after each of its steps leaves exactly one passphrase
//! opening both the store and the identity file, and the next open finishes or forgets it.

use super::*;

const OLD: &[u8] = b"tangerine-lighthouse-4471";
const NEW: &[u8] = b"violet harbour 2209 lantern";

/// A store with an identity file, changed up to (and including) `steps` steps, then
/// dropped as a crash would leave it.
fn interrupted(steps: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), OLD).unwrap();
    store.save_identity(b"who I am").unwrap();
    let params = KdfParams::fresh();
    let wrap = crypt::derive(NEW, &params).unwrap();
    if steps >= 1 {
        store.stage_wrapping(&wrap, &params).unwrap();
    }
    if steps >= 2 {
        store.rewrap_identity(&wrap, &params).unwrap();
    }
    drop(store);
    dir
}

/// Opens as `Node::open` does: the identity file first, then the store with its key.
fn unlock(dir: &Path, pass: &[u8]) -> Result<Store, StoreError> {
    let (plain, key, params) = identity_file::open(dir, pass)?;
    assert_eq!(&plain[..], b"who I am");
    Store::open_known(dir, pass, Some((key, params)))
}

fn wrong(r: Result<Store, StoreError>) -> bool {
    matches!(r, Err(StoreError::WrongPassphrase(_)))
}

#[test]
fn a_change_stopped_before_the_identity_file_keeps_the_old_passphrase() {
    let dir = interrupted(1);
    assert!(wrong(unlock(dir.path(), NEW)));
    let store = unlock(dir.path(), OLD).unwrap();
    let staged = store.db.open_tree("meta").unwrap().get(KDF_NEXT).unwrap();
    assert!(staged.is_none(), "the staged wrapping is forgotten");
    drop(store);
    assert!(wrong(Store::open(dir.path(), NEW)));
    assert!(Store::open(dir.path(), OLD).is_ok());
}

#[test]
fn a_change_stopped_after_the_identity_file_is_finished_with_the_new_passphrase() {
    let dir = interrupted(2);
    assert!(wrong(unlock(dir.path(), OLD)));
    let store = unlock(dir.path(), NEW).unwrap();
    assert_eq!(
        store.read_identity().as_deref().map(|v| &v[..]),
        Some(&b"who I am"[..])
    );
    drop(store);
    // Finished: the store alone (no identity file key) opens with the new one only.
    assert!(wrong(Store::open(dir.path(), OLD)));
    assert!(Store::open(dir.path(), NEW).is_ok());
}

#[test]
fn a_finished_change_opens_with_the_new_passphrase_only_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(dir.path(), OLD).unwrap();
    store.save_identity(b"who I am").unwrap();
    store
        .put_sealed(Sealed::Peers, b"p", b"127.0.0.1:1")
        .unwrap();
    assert!(matches!(
        store.change_passphrase(b"password1234"),
        Err(StoreError::WeakPassphrase(_))
    ));
    store.change_passphrase(NEW).unwrap();
    assert_eq!(store.kdf_params().memory_kib, 64 * 1024);
    drop(store);
    assert!(wrong(unlock(dir.path(), OLD)));
    let store = unlock(dir.path(), NEW).unwrap();
    assert_eq!(
        store
            .get_sealed(Sealed::Peers, b"p")
            .unwrap()
            .as_deref()
            .map(|v| &v[..]),
        Some(&b"127.0.0.1:1"[..])
    );
}

#[test]
fn a_store_made_with_the_old_parameters_still_opens_and_a_change_raises_them() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = KdfParams::legacy([7; 16]);
    let wrap = crypt::derive(OLD, &legacy).unwrap();
    drop(Store::create_with(dir.path(), wrap, legacy).unwrap());
    let mut store = Store::open(dir.path(), OLD).unwrap();
    assert_eq!(store.kdf_params(), legacy);
    store.change_passphrase(NEW).unwrap();
    assert_eq!(store.kdf_params().memory_kib, 64 * 1024);
    assert_eq!(store.kdf_params().iterations, 3);
}
