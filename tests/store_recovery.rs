//! A store that survives its disk: a full disk refuses writes before sled meets it (and
//! every acknowledged post stays), sled's leftovers are cleaned at open, and a store that
//! a flipped bit, a zeroed block or a truncation makes unreadable is rebuilt from the
//! identity file beside it (automatically, or by `huddle repair`) and refilled by sync,
//! never with a wrong passphrase. Every test drives the real `huddle` binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Device, Sandbox, describe, stderr};
use serde_json::Value;

fn thread_on(device: &Device) -> String {
    device.id(
        &[
            "thread",
            "new",
            "--topic",
            "Rota",
            "--category",
            "operations",
            "--title",
            "Week",
        ],
        32,
    )
}

/// The message bodies of a thread, in order.
fn bodies(device: &Device, thread: &str) -> Vec<String> {
    device.show(thread)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body").to_string())
        .collect()
}

/// The message bodies, or `None` if `show` fails (the thread has not arrived yet).
fn try_bodies(device: &Device, thread: &str) -> Option<Vec<String>> {
    let out = device.run(&["--json", "show", thread]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["messages"]
            .as_array()?
            .iter()
            .filter_map(|m| m["body"].as_str().map(str::to_string))
            .collect(),
    )
}

fn digest(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).expect("file")).to_vec()
}

fn damaged_copies(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("data directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("damaged-"))
        .map(|e| e.path())
        .collect()
}

/// Offset just past the last non-zero byte of sled's `db` file (what was written).
fn written_len(db: &Path) -> usize {
    let bytes = std::fs::read(db).expect("db file");
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Flip one bit at this fraction of the written part.
    Flip(f64),
    /// Zero 4 KiB from this fraction on.
    Zero(f64),
    /// Cut the file at this fraction of the written part.
    Truncate(f64),
}

fn damage(dir: &Path, how: Damage) {
    let db = dir.join("db");
    let mut bytes = std::fs::read(&db).expect("db file");
    let len = written_len(&db);
    let at = |f: f64| ((len as f64 * f) as usize).min(len.saturating_sub(1));
    match how {
        Damage::Flip(f) => bytes[at(f)] ^= 0x08,
        Damage::Zero(f) => {
            let start = at(f);
            let end = (start + 4096).min(bytes.len());
            bytes[start..end].fill(0);
        }
        Damage::Truncate(f) => bytes.truncate(at(f)),
    }
    std::fs::write(&db, bytes).expect("write db");
}

/// Runs `status` and tells whether the store was rebuilt (checking the report if so).
fn status_rebuilds(device: &Device) -> bool {
    let out = device.run(&["--json", "status"]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "status after damage: {}",
        describe(&out)
    );
    assert!(!err.contains("panicked"), "{err}");
    if !err.contains("rebuilt from identity.huddle") {
        return false;
    }
    assert!(err.contains("recovered: this device"), "{err}");
    assert!(
        err.contains("lost: whatever this device had not yet synced"),
        "{err}"
    );
    assert!(err.contains("the damaged store is kept at"), "{err}");
    true
}

#[test]
fn leftover_empty_generating_snapshot_is_cleaned_at_open() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = thread_on(&ana);
    ana.ok(&["post", &thread, "first"]);
    // What sled 0.34.7 leaves when a snapshot write meets a full disk (sled #1527).
    let leftover = ana.dir.join("snap.00000000000FFFFF.generating");
    std::fs::write(&leftover, b"").unwrap();
    assert_eq!(bodies(&ana, &thread), ["first"]);
    assert!(!leftover.exists(), "the leftover is removed at open");
    ana.ok(&["post", &thread, "second"]);
    assert_eq!(bodies(&ana, &thread), ["first", "second"]);
    assert!(damaged_copies(&ana.dir).is_empty(), "nothing was rebuilt");
}

#[test]
fn wrong_passphrase_never_rebuilds() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = thread_on(&ana);
    ana.ok(&["post", &thread, "kept"]);
    // A healthy store, a wrong passphrase.
    let out = ana.run_with_pass("not-the-passphrase", &["status"]);
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        describe(&out)
    );
    // A damaged store, a wrong passphrase: refused, nothing moved or rebuilt.
    damage(&ana.dir, Damage::Flip(0.5));
    let before = digest(&ana.dir.join("db"));
    let out = ana.run_with_pass("not-the-passphrase", &["status"]);
    let err = common::fail_output(&out, &["status"]);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!err.contains("rebuilt"), "{err}");
    let out = ana.run_with_pass("not-the-passphrase", &["repair"]);
    let err = common::fail_output(&out, &["repair"]);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(damaged_copies(&ana.dir).is_empty());
    assert_eq!(
        digest(&ana.dir.join("db")),
        before,
        "the store is untouched"
    );
    // A damaged identity file is reported as such, and nothing is moved either.
    let id_path = ana.dir.join("identity.huddle");
    let mut id = std::fs::read(&id_path).unwrap();
    let mid = id.len() / 2;
    id[mid] ^= 1;
    std::fs::write(&id_path, &id).unwrap();
    let err = ana.fail(&["status"]);
    assert!(
        err.contains("identity file") && err.contains("damaged"),
        "{err}"
    );
    assert!(
        damaged_copies(&ana.dir).is_empty(),
        "nothing is moved aside"
    );
    assert!(ana.dir.join("db").is_file());
}

#[test]
fn huddle_repair_rebuilds_a_damaged_store() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = thread_on(&ana);
    ana.ok(&["post", &thread, "one"]);
    let status = ana.status();
    let out = ana.ok(&["repair"]);
    assert!(out.contains("nothing to repair"), "{out}");
    assert!(damaged_copies(&ana.dir).is_empty());

    damage(&ana.dir, Damage::Zero(0.3));
    let out = ana.ok(&["repair"]);
    assert!(out.contains("rebuilt from identity.huddle"), "{out}");
    assert!(out.contains("recovered: this device"), "{out}");
    assert!(
        out.contains("clinic Sunrise") && out.contains("member Ana"),
        "{out}"
    );
    assert!(out.contains("salvaged:"), "{out}");
    let copies = damaged_copies(&ana.dir);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].join("db").is_file(), "the damaged store is kept");
    let after = ana.status();
    assert_eq!(after["device"], status["device"]);
    assert_eq!(after["clinic_id"], status["clinic_id"]);
    let out = ana.ok(&["repair"]);
    assert!(out.contains("nothing to repair"), "{out}");
}

/// Waits until `device` shows `want` in `thread` (through its running `serve`).
fn eventually_shows(device: &Device, thread: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if try_bodies(device, thread).is_some_and(|b| b.iter().any(|x| x == want)) {
            return;
        }
        assert!(Instant::now() < deadline, "`{want}` never arrived");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until `device` no longer holds its writes after a rebuild.
fn eventually_resynced(device: &Device) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while device.status()["resyncing"] == true {
        assert!(Instant::now() < deadline, "never resynced");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn flipped_bit_in_store_is_recovered_from_identity_file_and_peer() {
    let sandbox = Sandbox::new();
    let ana = sandbox.device("ana");
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = thread_on(&ana);
    ana.ok(&["post", &thread, "from ana 1"]);
    ana.ok(&["post", &thread, "from ana 2"]);
    let ana_serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let invite = ana.ok(&["invite", "--name", "Bea", "--role", "clinician"]);
    let bea = sandbox.device("bea");
    bea.ok(&["join", invite.trim(), "--no-mdns"]);
    assert_eq!(bodies(&bea, &thread), ["from ana 1", "from ana 2"]);
    let device = bea.status()["device"].clone();

    let damages = [
        Damage::Flip(0.1),
        Damage::Flip(0.5),
        Damage::Flip(0.9),
        Damage::Zero(0.0),
        Damage::Truncate(0.5),
    ];
    let mut rebuilt = 0;
    let damages_shown = damages;
    for (round, how) in damages.into_iter().enumerate() {
        damage(&bea.dir, how);
        if status_rebuilds(&bea) {
            rebuilt += 1;
            // Before a peer sent its history back, writing could reuse a position of
            // its own chain (a fork every peer refuses): it is refused, and says why.
            // (A rebuild that salvaged no roster does not know it is a member yet.)
            let status = bea.status();
            assert_eq!(status["resyncing"], true);
            if status["member"] == "Bea" {
                let err = bea.fail(&["post", &thread, "too early"]);
                assert!(err.contains("synced with another device"), "{err}");
            }
        }
        let status = bea.status();
        assert_eq!(status["device"], device, "{how:?}");
        // Back in sync through the normal sync with Ana (a peer remembered from the join).
        let serving = bea.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
        eventually_shows(&bea, &thread, "from ana 2");
        // A rebuilt store writes again only once a peer sent its own history back.
        eventually_resynced(&bea);
        if round > 0 {
            let earlier = format!("from bea after {:?}", damages_shown[round - 1]);
            assert!(
                bodies(&bea, &thread).contains(&earlier),
                "{how:?}: its own earlier post came back"
            );
        }
        let mine = format!("from bea after {how:?}");
        bea.ok(&["post", &thread, &mine]);
        eventually_shows(&ana, &thread, &mine);
        serving.stop();
        let shown = bodies(&bea, &thread);
        assert!(
            shown.contains(&"from ana 1".to_string()),
            "{how:?}: {shown:?}"
        );
        assert_eq!(bea.status()["member"], "Bea", "round {round}");
    }
    assert!(rebuilt >= 3, "only {rebuilt} of the damages were noticed");
    assert_eq!(damaged_copies(&bea.dir).len(), rebuilt);
    ana_serving.stop();
}

/// A small tmpfs mounted for one test; unmounted on drop (also when the test fails).
struct SmallDisk {
    mount: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (with a loud line) when this process may not mount.
    fn mount(size_mib: u64) -> Option<SmallDisk> {
        let mount = tempfile::TempDir::new().expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(mount.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("SKIPPED: needs root (mounting a small tmpfs to fill the disk failed)");
            return None;
        }
        Some(SmallDisk { mount })
    }

    fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Fills the disk with a file until only `leave` bytes are free.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let filler = self.path().join(format!("filler-{}", rand_suffix()));
        let free = huddle::store::space::free_bytes(self.path()).expect("statvfs");
        let size = free.saturating_sub(leave);
        let file = std::fs::File::create(&filler).expect("filler");
        use std::io::Write;
        let mut w = std::io::BufWriter::new(file);
        let chunk = vec![0x5a; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).expect("filling the disk");
            left -= n as u64;
        }
        w.flush().expect("filler flushed");
        filler
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.mount.path())
            .status();
    }
}

/// The posts' tags, without their padding (for readable failures).
fn short(bodies: &[String]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| b.trim_end_matches('x').to_string())
        .collect()
}

const DISK_FULL: &str = "the disk is almost full";

/// Posts until one is refused with the disk-full error; returns the acknowledged ones.
fn post_until_refused(device: &Device, thread: &str, tag: &str) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for i in 0..400 {
        // Big posts, so that the reserve's edge is reached in a few steps.
        let body = format!("{tag} {i} {}", "x".repeat(16 * 1024));
        let out = device.run(&["post", thread, &body]);
        if out.status.success() {
            acknowledged.push(body);
            continue;
        }
        let err = stderr(&out);
        assert!(
            err.contains(DISK_FULL),
            "refused for another reason: {}",
            describe(&out)
        );
        assert!(err.contains("nothing was saved"), "{err}");
        return acknowledged;
    }
    panic!("400 posts and the disk never filled");
}

#[test]
fn full_disk_keeps_every_acknowledged_post() {
    let Some(disk) = SmallDisk::mount(96) else {
        return;
    };
    let ana = Device {
        dir: disk.path().join("ana"),
    };
    ana.ok(&["init", "--clinic", "Sunrise", "--name", "Ana"]);
    let thread = thread_on(&ana);
    let reserve = huddle::store::space::reserve_for(&ana.dir);
    let filler = disk.fill_leaving(reserve + 1024 * 1024);

    let acknowledged = post_until_refused(&ana, &thread, "cli");
    // Refused before sled met the full disk: everything acknowledged is there.
    let shown = bodies(&ana, &thread);
    assert_eq!(short(&shown), short(&acknowledged));
    assert!(damaged_copies(&ana.dir).is_empty(), "nothing was rebuilt");

    // Space back: posting works again, in the same store.
    std::fs::remove_file(&filler).unwrap();
    ana.ok(&["post", &thread, "after space came back"]);
    assert_eq!(
        bodies(&ana, &thread).last().unwrap(),
        "after space came back"
    );

    // The same through a running `serve`: it refuses, keeps running, recovers when space
    // returns, and stops on SIGTERM.
    let serving = ana.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let filler = disk.fill_leaving(reserve + 1024 * 1024);
    let acknowledged = post_until_refused(&ana, &thread, "serve");
    let shown = bodies(&ana, &thread);
    for body in &acknowledged {
        assert!(shown.contains(body), "an acknowledged post is missing");
    }
    std::fs::remove_file(&filler).unwrap();
    ana.ok(&["post", &thread, "served after space came back"]);
    serving.stop();
    assert_eq!(
        bodies(&ana, &thread).last().unwrap(),
        "served after space came back"
    );
}
