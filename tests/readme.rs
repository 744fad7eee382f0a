//! README's shell blocks, run exactly as README shows them, so that they cannot rot: the
//! tour (one shell, two data directories, a bundle carried over) and, after it in the
//! same shell, the LAN block (serve in the background, invite, join, a post synced).
//!
//! The blocks are read from README.md at test time, not copied here. They run with
//! `huddle` on PATH, in a temporary directory, with `HUDDLE_NO_MDNS=1`. The LAN block
//! listens on 0.0.0.0, so it runs in a network namespace of its own with only loopback
//! up (needs root and iproute2; without them the test says SKIPPED).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_huddle");
const LIMIT: Duration = Duration::from_secs(180);

/// The first ```sh block after the heading that starts with `heading`.
fn block(readme: &str, heading: &str) -> String {
    let at = readme
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"));
    let rest = &readme[at..];
    let open = rest.find("```sh\n").expect("a sh block after the heading") + 6;
    let close = rest[open..].find("```\n").expect("the block ends") + open;
    rest[open..close].to_string()
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// Runs `script` with bash (`set -e`: the first failing command stops it) in `dir`,
/// `prefix` before bash (e.g. `ip netns exec NS`); returns stdout, panicking with both
/// streams on failure or after [`LIMIT`].
fn run(dir: &Path, prefix: &[&str], script: &str) -> String {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend(["bash", "-c"]);
    let full = format!("set -e\n{script}");
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .arg(&full)
        .current_dir(dir)
        .env("PATH", path)
        .env("HUDDLE_NO_MDNS", "1")
        .env_remove("HUDDLE_PASSPHRASE")
        .env_remove("HUDDLE_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            // The whole group: bash and any serve it left in the background.
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (reader.join().unwrap(), err_reader.join().unwrap());
    match status {
        Some(s) if s.success() => stdout,
        other => panic!(
            "README's commands failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            other.map_or("timed out".to_string(), |s| s.to_string())
        ),
    }
}

/// Why a network namespace cannot be made here, if it cannot.
fn no_netns() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

/// A network namespace with only loopback, removed on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("hdreadme{}", std::process::id());
        let ok = |args: &[&str]| {
            let s = Command::new("ip").args(args).status().unwrap();
            assert!(s.success(), "ip {args:?}");
        };
        ok(&["netns", "add", &name]);
        let ns = Netns(name);
        ok(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn the_tour_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[], &block(&readme(), "## A tour"));
    // The last command: the admin's view after Sam's bundle came back.
    assert!(out.contains("Who can cover the 3pm?"), "{out}");
    assert!(out.contains("done by Sam K."), "{out}");
    assert!(out.contains("read by: ") && out.contains("Sam K."), "{out}");
    // Sam's direct message reached the admin, listed apart from the threads.
    assert!(
        out.contains("PARTICIPANTS") && out.contains("Dana R., Sam K."),
        "{out}"
    );
}

#[test]
fn the_lan_block_runs_as_written_after_the_tour() {
    if let Some(why) = no_netns() {
        eprintln!(
            "\n*** SKIPPED the_lan_block_runs_as_written_after_the_tour: {why}; README's LAN \
             block listens on 0.0.0.0 and runs only in a network namespace ***\n"
        );
        return;
    }
    let readme = readme();
    let script = format!(
        "{}\n{}",
        block(&readme, "## A tour"),
        block(&readme, "## On the LAN")
    );
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::new();
    let out = run(dir.path(), &["ip", "netns", "exec", &ns.0], &script);
    assert!(
        out.contains("huddle-invite:"),
        "the invitation is echoed: {out}"
    );
    // Kim's laptop lists the clinic's threads and shows the admin's post.
    assert!(out.contains("Therapist out sick"), "{out}");
    assert!(out.contains("Kim covers the 3pm"), "{out}");
}
