//! Helpers for the end-to-end tests of the `huddle` binary: a [`Sandbox`] is one
//! temporary directory holding several devices' data directories and the bundle files
//! carried between them; a [`Device`] runs `huddle` against its own data directory, with
//! the passphrase in `HUDDLE_PASSPHRASE` and never the OS data directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The passphrase every test device is created with (also searched for on disk).
pub const PASS: &str = "tangerine-lighthouse-4471";

/// One temporary directory for a whole test: devices and bundles live inside it.
pub struct Sandbox {
    root: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            root: TempDir::new().expect("temporary directory"),
        }
    }

    /// A device whose data directory is `<sandbox>/<name>` (created by `huddle` itself).
    pub fn device(&self, name: &str) -> Device {
        Device {
            dir: self.root.path().join(name),
        }
    }

    /// A path for a file (a bundle, say) inside the sandbox.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

/// One device: a data directory that `huddle` runs against.
pub struct Device {
    pub dir: PathBuf,
}

/// The text a process wrote, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

impl Device {
    /// `huddle --data-dir <dir> ARGS` with the given passphrase.
    pub fn run_with_pass(&self, pass: &str, args: &[&str]) -> Output {
        Command::cargo_bin("huddle")
            .expect("the huddle binary")
            .env_remove("HUDDLE_DATA_DIR")
            .env_remove("HUDDLE_LOG")
            .env("HUDDLE_PASSPHRASE", pass)
            .env("NO_COLOR", "1")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run huddle")
    }

    /// `huddle --data-dir <dir> ARGS` with [`PASS`]; success or not.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_pass(PASS, args)
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`huddle {}` failed: {}",
            args.join(" "),
            describe(&out)
        );
        stdout(&out)
    }

    /// Runs and requires failure (exit code 1 or 2, never a crash); returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        fail_output(&self.run(args), args)
    }

    /// Runs with `--json`, requires success and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("`huddle {}` printed no JSON ({e}): {text}", all.join(" ")))
    }

    /// The `id` printed by a command that creates something, checked to be hex.
    pub fn id(&self, args: &[&str], hex_len: usize) -> String {
        let id = self.json(args)["id"]
            .as_str()
            .expect("an `id` field")
            .to_string();
        assert_eq!(id.len(), hex_len, "id `{id}` of `{}`", args.join(" "));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        id
    }

    /// The thread list as JSON.
    pub fn threads(&self) -> Vec<Value> {
        self.json(&["threads"])
            .as_array()
            .expect("threads --json is an array")
            .clone()
    }

    /// One thread's entry of the thread list.
    pub fn thread_entry(&self, thread: &str) -> Value {
        self.threads()
            .into_iter()
            .find(|t| t["id"] == thread)
            .unwrap_or_else(|| panic!("thread {thread} not listed"))
    }

    /// `show THREAD --json`.
    pub fn show(&self, thread: &str) -> Value {
        self.json(&["show", thread])
    }

    pub fn status(&self) -> Value {
        self.json(&["status"])
    }

    /// This device's public keys, as `device add --key` takes them.
    pub fn keys(&self) -> String {
        let v = self.json(&["device", "key"]);
        let keys = v["keys"].as_str().expect("keys").to_string();
        assert!(keys.starts_with("huddle-device:"), "{keys}");
        keys
    }

    pub fn export(&self, bundle: &Path) -> u64 {
        let v = self.json(&["bundle", "export", path_str(bundle)]);
        v["count"].as_u64().expect("count")
    }

    /// Imports a bundle that must import cleanly; returns the import report.
    pub fn import(&self, bundle: &Path) -> Value {
        let v = self.json(&["bundle", "import", path_str(bundle)]);
        assert_eq!(v["refused"], serde_json::json!([]), "{v}");
        v
    }

    /// Every regular file under the data directory, recursively.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.dir, &mut out);
        out
    }
}

impl Device {
    /// `huddle --data-dir <dir> ARGS` without `HUDDLE_PASSPHRASE` and without a terminal
    /// to ask on: what another program of the same OS user (or a thief at the keyboard)
    /// gets, with only the data directory and any session file in it.
    pub fn run_bare(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
            .env_remove("HUDDLE_PASSPHRASE")
            .env_remove("HUDDLE_DATA_DIR")
            .env_remove("HUDDLE_LOG")
            .env("NO_COLOR", "1")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run huddle")
    }

    /// `huddle --data-dir <dir> ARGS` with [`PASS`] and extra environment variables.
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        command.output().expect("run huddle")
    }

    /// Starts `huddle --data-dir <dir> ARGS` with [`PASS`] without waiting for it; its
    /// stdout and stderr are piped (`wait_with_output`).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start huddle")
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"));
        command
            .env_remove("HUDDLE_DATA_DIR")
            .env_remove("HUDDLE_LOG")
            .env_remove("HUDDLE_LOCK_WAIT")
            .env("HUDDLE_PASSPHRASE", PASS)
            .env("NO_COLOR", "1")
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args);
        command
    }
}

/// A `huddle serve` running on a device's data directory, its log in the sandbox. Stopped
/// with SIGTERM by [`Serving::stop`] (which checks a clean exit) or on drop.
pub struct Serving {
    child: Option<std::process::Child>,
    pub log: PathBuf,
}

impl Device {
    /// Starts `huddle serve ARGS` and waits until its control socket is open.
    pub fn serve(&self, args: &[&str]) -> Serving {
        let log = self.dir.with_extension("serve.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
            .env_remove("HUDDLE_DATA_DIR")
            .env_remove("HUDDLE_NO_MDNS")
            .env("HUDDLE_LOG", "info,libp2p=warn")
            .env("HUDDLE_PASSPHRASE", PASS)
            .env("NO_COLOR", "1")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("serve")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("serve log"))
            .spawn()
            .expect("start huddle serve");
        let serving = Serving {
            child: Some(child),
            log,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.dir.join("control.sock").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not start: {}",
                serving.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        serving
    }
}

impl Serving {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Waits (at most `limit`) until its log says it is serving: its node is open.
    pub fn wait_until_serving(&self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.logs().contains("serving;") {
            assert!(
                std::time::Instant::now() < deadline,
                "serve is not serving: {}",
                self.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it with SIGTERM and requires a clean exit.
    pub fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "serve exited with {status:?}: {}",
            self.logs()
        );
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Requires a failed run (exit code 1 or 2, never a crash); returns stderr.
pub fn fail_output(out: &Output, args: &[&str]) -> String {
    assert!(
        matches!(out.status.code(), Some(1) | Some(2)),
        "`huddle {}` should have failed cleanly: {}",
        args.join(" "),
        describe(out)
    );
    let err = stderr(out);
    assert!(
        !err.contains("panicked"),
        "`huddle {}` panicked: {err}",
        args.join(" ")
    );
    err
}

impl Device {
    /// Starts `huddle serve` on loopback without mDNS, dialing the serve on `port`.
    pub fn serve_dialing(&self, port: &str) -> Serving {
        let peer = format!("127.0.0.1:{port}");
        self.serve(&["--no-mdns", "--listen", "127.0.0.1:0", "--peer", &peer])
    }
}

/// The TCP port of an invitation's first address (to dial the inviter's serve).
pub fn invitation_port(invite: &str) -> String {
    huddle::core::invite::Invitation::parse(invite)
        .expect("an invitation")
        .addrs[0]
        .rsplit('/')
        .next()
        .expect("a port")
        .to_string()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

// ---- the bundle file format (src/node/bundle.rs), to damage bundles on purpose ----

const MAGIC: &[u8] = b"HUDDLE-BUNDLE-1\n";

/// A bundle taken apart: the genesis record and the envelope records.
pub struct BundleFile {
    pub genesis: Vec<u8>,
    pub records: Vec<Vec<u8>>,
}

impl BundleFile {
    /// Parses a bundle: magic line, u32 BE length-prefixed records (genesis first),
    /// `u32::MAX`, u64 BE record count, SHA-256 of everything before the trailer.
    pub fn read(path: &Path) -> BundleFile {
        let bytes = std::fs::read(path).expect("read bundle");
        assert!(bytes.starts_with(MAGIC), "not a bundle");
        let mut at = MAGIC.len();
        let mut records = Vec::new();
        loop {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
            at += 4;
            if len == u32::MAX {
                break;
            }
            records.push(bytes[at..at + len as usize].to_vec());
            at += len as usize;
        }
        let count = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(count as usize, records.len());
        let digest = &bytes[at + 8..];
        assert_eq!(
            digest,
            &Sha256::digest(&bytes[..at - 4])[..],
            "bundle digest"
        );
        let genesis = records.remove(0);
        BundleFile { genesis, records }
    }

    /// Writes the bundle with a freshly computed trailer.
    pub fn write(&self, path: &Path) {
        let mut out = MAGIC.to_vec();
        for rec in std::iter::once(&self.genesis).chain(&self.records) {
            out.extend_from_slice(&(rec.len() as u32).to_be_bytes());
            out.extend_from_slice(rec);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&u32::MAX.to_be_bytes());
        out.extend_from_slice(&(self.records.len() as u64 + 1).to_be_bytes());
        out.extend_from_slice(&digest);
        std::fs::write(path, out).expect("write bundle");
    }
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The raw bytes of a hex id (as the store uses them for sled keys).
pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("`{s}` is not hex: {e}"))
}
