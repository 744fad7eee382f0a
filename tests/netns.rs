//! Separate `huddle serve` processes on separate hosts: network namespaces joined by a
//! bridge (198.18.0.0/24, a range reserved for such tests), so mDNS multicast is real
//! and never leaves through the machine's own interface. Covers discovery by mDNS
//! alone (no address given anywhere), a partition: link down, posts on both sides,
//! link up, both sides converge with nothing lost; and joining with mDNS off, by the
//! invitation's addresses (every interface's, not loopback) or by `--peer`.
//!
//! Needs root and iproute2. Without them each test prints that it was SKIPPED.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const PASS: &str = "netns test passphrase";
const BIN: &str = env!("CARGO_BIN_EXE_huddle");

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Why namespaces cannot be used here, if they cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("not running as root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

macro_rules! require_netns {
    ($name:expr) => {
        if let Some(why) = unavailable() {
            eprintln!(
                "\n*** SKIPPED {}: {why}; network-namespace tests need root and iproute2 ***\n",
                $name
            );
            return;
        }
    };
}

/// A bridge in its own namespace and hosts plugged into it; removed on drop.
struct Lan {
    tag: String,
    hosts: Vec<String>,
}

impl Lan {
    fn new(n: usize) -> Lan {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n_lan = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("hd{}x{n_lan}", std::process::id() % 100_000);
        let lan = Lan {
            tag: tag.clone(),
            hosts: (0..n).map(|i| format!("{tag}h{i}")).collect(),
        };
        let sw = lan.switch();
        sh(&["ip", "netns", "add", &sw]).unwrap();
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]).unwrap();
        sh(&["ip", "-n", &sw, "link", "set", "br0", "up"]).unwrap();
        for (i, h) in lan.hosts.iter().enumerate() {
            sh(&["ip", "netns", "add", h]).unwrap();
            let port = format!("p{i}");
            sh(&[
                "ip", "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", h,
            ])
            .unwrap();
            sh(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"]).unwrap();
            sh(&[
                "ip",
                "-n",
                h,
                "addr",
                "add",
                &format!("{}/24", lan.ip(i)),
                "dev",
                "eth0",
            ])
            .unwrap();
            sh(&["ip", "-n", h, "link", "set", "eth0", "up"]).unwrap();
            sh(&["ip", "-n", h, "link", "set", "lo", "up"]).unwrap();
        }
        lan
    }

    fn switch(&self) -> String {
        format!("{}sw", self.tag)
    }

    fn ip(&self, i: usize) -> String {
        format!("198.18.0.{}", i + 1)
    }

    /// Takes host `i`'s link down or up (a partition).
    fn link(&self, i: usize, up: bool) {
        sh(&[
            "ip",
            "-n",
            &self.switch(),
            "link",
            "set",
            &format!("p{i}"),
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in self.hosts.iter().chain(std::iter::once(&self.switch())) {
            let _ = sh(&["ip", "netns", "del", h]);
        }
    }
}

/// One device: its data directory and, while serving, its process in a namespace.
struct Device {
    dir: PathBuf,
    serve: Option<Child>,
    log: PathBuf,
}

impl Device {
    fn new(root: &Path, name: &str) -> Device {
        Device {
            dir: root.join(name),
            serve: None,
            log: root.join(format!("{name}.log")),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env("HUDDLE_PASSPHRASE", PASS)
            .env_remove("HUDDLE_DATA_DIR")
            .env_remove("HUDDLE_NO_MDNS")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `huddle join INVITE` inside namespace `ns`.
    fn join(&self, ns: &str, invite: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, BIN, "--data-dir"])
            .arg(&self.dir)
            .args(["join", invite, "--mdns-interface", "eth0"])
            .env("HUDDLE_PASSPHRASE", PASS)
            .env_remove("HUDDLE_NO_MDNS")
            .output()
            .unwrap()
    }

    /// `huddle join INVITE EXTRA…` inside namespace `ns`, with mDNS off.
    fn join_without_mdns(&self, ns: &str, invite: &str, extra: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, BIN, "--data-dir"])
            .arg(&self.dir)
            .args(["join", invite, "--no-mdns"])
            .args(extra)
            .env("HUDDLE_PASSPHRASE", PASS)
            .env_remove("HUDDLE_NO_MDNS")
            .output()
            .unwrap()
    }

    /// `huddle serve` inside namespace `ns`, discovery on its `eth0` only.
    fn serve(&mut self, ns: &str, ip: &str) {
        self.serve_with(ns, ip, &[]);
    }

    fn serve_with(&mut self, ns: &str, ip: &str, extra: &[&str]) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, BIN, "--data-dir"])
            .arg(&self.dir)
            .args([
                "serve",
                "--listen",
                &format!("{ip}:47733"),
                "--mdns-interface",
                "eth0",
            ])
            .args(extra)
            .env("HUDDLE_PASSPHRASE", PASS)
            .env("HUDDLE_LOG", "info,libp2p=warn")
            .env_remove("HUDDLE_NO_MDNS")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.serve = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        // The control socket comes first (serve claims the data directory), then the
        // node opens and logs "serving;".
        while !self.logs().contains("serving;") {
            assert!(
                Instant::now() < deadline,
                "serve did not start: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops `serve` with SIGTERM and checks it shut down cleanly.
    fn stop(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "serve exited with {status}: {}",
                self.logs()
            );
        }
    }

    fn eventually_shows(&self, thread: &str, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self
                .run(&["show", thread])
                .stdout
                .windows(text.len())
                .any(|w| w == text.as_bytes())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} never showed {text:?}; log:\n{}",
                self.dir,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A clinic of `n` devices enrolled by bundle (no network addresses involved), with one
/// scheduling thread.
fn clinic(root: &Path, n: usize) -> (Vec<Device>, String) {
    let devices: Vec<Device> = (0..n)
        .map(|i| Device::new(root, &format!("d{i}")))
        .collect();
    devices[0].ok(&["init", "--clinic", "Maple Street Therapy", "--name", "Dana"]);
    for (i, d) in devices.iter().enumerate().skip(1) {
        let name = format!("Staff {i}");
        devices[0].ok(&["member", "add", "--name", &name, "--role", "scheduler"]);
        let key = d.ok(&["device", "key"]);
        devices[0].ok(&["device", "add", "--member", &name, "--key", &key]);
    }
    let thread = devices[0].ok(&[
        "thread",
        "new",
        "--topic",
        "Coverage",
        "--category",
        "scheduling",
        "--title",
        "Friday",
    ]);
    let bundle = root.join("enroll.bundle");
    devices[0].ok(&["bundle", "export", bundle.to_str().unwrap()]);
    for d in devices.iter().skip(1) {
        d.ok(&["bundle", "import", bundle.to_str().unwrap()]);
    }
    (devices, thread)
}

#[test]
fn devices_find_each_other_by_mdns_alone_and_stay_in_sync() {
    require_netns!("devices_find_each_other_by_mdns_alone_and_stay_in_sync");
    let root = TempDir::new().unwrap();
    let lan = Lan::new(3);
    let (mut devices, thread) = clinic(root.path(), 3);
    for (i, d) in devices.iter_mut().enumerate() {
        d.serve(&lan.hosts[i], &lan.ip(i));
    }
    devices[1].ok(&["post", &thread, "found you by mDNS"]);
    devices[0].eventually_shows(&thread, "found you by mDNS", Duration::from_secs(30));
    devices[2].eventually_shows(&thread, "found you by mDNS", Duration::from_secs(30));
    devices[2].ok(&["post", &thread, "and back"]);
    devices[1].eventually_shows(&thread, "and back", Duration::from_secs(30));
    assert!(
        devices[0].logs().contains("peer connected"),
        "{}",
        devices[0].logs()
    );
    for d in &mut devices {
        d.stop();
    }
}

#[test]
fn a_partition_heals_and_both_sides_converge() {
    require_netns!("a_partition_heals_and_both_sides_converge");
    let root = TempDir::new().unwrap();
    let lan = Lan::new(2);
    let (mut devices, thread) = clinic(root.path(), 2);
    for (i, d) in devices.iter_mut().enumerate() {
        d.serve(&lan.hosts[i], &lan.ip(i));
    }
    devices[0].ok(&["post", &thread, "before the split"]);
    devices[1].eventually_shows(&thread, "before the split", Duration::from_secs(30));

    lan.link(1, false);
    devices[0].ok(&["post", &thread, "front desk side"]);
    devices[1].ok(&["post", &thread, "back office side"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !String::from_utf8_lossy(&devices[1].run(&["show", &thread]).stdout)
            .contains("front desk side")
    );

    lan.link(1, true);
    devices[0].eventually_shows(&thread, "back office side", Duration::from_secs(90));
    devices[1].eventually_shows(&thread, "front desk side", Duration::from_secs(90));
    // Restarted, both still hold everything.
    for d in &mut devices {
        d.stop();
    }
    for d in &devices {
        let shown = d.ok(&["show", &thread]);
        for text in ["before the split", "front desk side", "back office side"] {
            assert!(
                shown.contains(text),
                "{text:?} missing after restart:\n{shown}"
            );
        }
    }
}

#[test]
fn a_clinic_forms_from_invitations_alone_and_refuses_strangers() {
    require_netns!("a_clinic_forms_from_invitations_alone_and_refuses_strangers");
    let root = TempDir::new().unwrap();
    let lan = Lan::new(5);
    let mut admin = Device::new(root.path(), "admin");
    admin.ok(&["init", "--clinic", "Maple Street Therapy", "--name", "Dana"]);
    admin.serve(&lan.hosts[0], &lan.ip(0));
    let thread = admin.ok(&[
        "thread",
        "new",
        "--topic",
        "Coverage",
        "--category",
        "scheduling",
        "--title",
        "Friday",
    ]);

    let mut joined = Vec::new();
    for (i, (name, role)) in [("Sam", "scheduler"), ("Lee", "clinician")]
        .into_iter()
        .enumerate()
    {
        let invite = admin.ok(&["invite", "--name", name, "--role", role, "--expires", "10m"]);
        assert!(invite.starts_with("huddle-invite:"), "{invite}");
        let mut d = Device::new(root.path(), name);
        let out = d.join(&lan.hosts[i + 1], &invite);
        assert!(
            out.status.success(),
            "join: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("as {name} ({role})")));
        // The same invitation a second time fails, on both sides.
        let again = Device::new(root.path(), &format!("{name}-again"));
        let out = again.join(&lan.hosts[3], &invite);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("already been used"));
        assert!(!again.dir.exists(), "a failed join leaves nothing behind");
        d.serve(&lan.hosts[i + 1], &lan.ip(i + 1));
        joined.push(d);
    }
    assert!(
        admin.logs().contains("already been used"),
        "{}",
        admin.logs()
    );

    joined[1].ok(&["post", &thread, "Lee can cover 3pm"]);
    admin.eventually_shows(&thread, "Lee can cover 3pm", Duration::from_secs(30));
    joined[0].eventually_shows(&thread, "Lee can cover 3pm", Duration::from_secs(30));

    // A device of another clinic dials the admin by address: refused and logged.
    let mut stranger = Device::new(root.path(), "stranger");
    stranger.ok(&["init", "--clinic", "Elsewhere", "--name", "Eve"]);
    let admin_addr = format!("{}:47733", lan.ip(0));
    stranger.serve_with(&lan.hosts[4], &lan.ip(4), &["--peer", &admin_addr]);
    let peer = stranger
        .logs()
        .lines()
        .find_map(|l| l.split("/p2p/").nth(1).map(|p| p.trim().to_string()))
        .expect("the stranger logs its peer id");
    let short = &peer[peer.len() - 8..];
    let refused = |log: &str| {
        log.lines()
            .any(|l| l.contains("not enrolled in this clinic") && l.contains(short))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !refused(&admin.logs()) {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}\nstranger:\n{}",
            admin.logs(),
            stranger.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let held = stranger.ok(&["threads", "--json"]);
    assert!(
        !held.contains("Coverage") && !held.contains(&thread),
        "{held}"
    );
    for d in joined.iter_mut().chain([&mut admin, &mut stranger]) {
        d.stop();
    }
}

/// Security review finding: an invitation listed only the first address the node saw
/// (127.0.0.1), so joining from another host without mDNS waited 60 s and failed. The
/// inviting host here listens on 0.0.0.0 and has two interfaces besides loopback (its
/// LAN link and one the joiners cannot reach); mDNS is off everywhere.
#[test]
fn an_invitation_lists_every_interface_and_joins_without_mdns() {
    require_netns!("an_invitation_lists_every_interface_and_joins_without_mdns");
    let root = TempDir::new().unwrap();
    let lan = Lan::new(3);
    // A second interface on the inviting host, with an address no other host can reach
    // (a veth pair whose both ends stay in that host's namespace).
    let h0 = lan.hosts[0].as_str();
    for cmd in [
        &[
            "ip", "-n", h0, "link", "add", "side0", "type", "veth", "peer", "name", "side1",
        ][..],
        &[
            "ip",
            "-n",
            h0,
            "addr",
            "add",
            "203.0.113.7/24",
            "dev",
            "side0",
        ],
        &["ip", "-n", h0, "link", "set", "side0", "up"],
        &["ip", "-n", h0, "link", "set", "side1", "up"],
    ] {
        sh(cmd).unwrap();
    }
    let mut admin = Device::new(root.path(), "admin");
    admin.ok(&["init", "--clinic", "Maple Street Therapy", "--name", "Dana"]);
    admin.serve_with(&lan.hosts[0], "0.0.0.0", &["--no-mdns"]);

    let invite = admin.ok(&["invite", "--name", "Sam", "--role", "scheduler"]);
    let addrs = huddle::core::invite::Invitation::parse(&invite)
        .unwrap()
        .addrs
        .clone();
    let lan_addr = format!("/ip4/{}/tcp/47733", lan.ip(0));
    assert!(addrs.contains(&lan_addr), "{addrs:?}");
    assert!(
        addrs.contains(&"/ip4/203.0.113.7/tcp/47733".to_string()),
        "{addrs:?}"
    );
    assert!(!addrs.iter().any(|a| a.contains("127.0.0.1")), "{addrs:?}");

    let sam = Device::new(root.path(), "Sam");
    let started = Instant::now();
    let out = sam.join_without_mdns(&lan.hosts[1], &invite, &[]);
    assert!(
        out.status.success(),
        "join: {}\nadmin log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        admin.logs()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("as Sam (scheduler)"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "joined only after {:?}",
        started.elapsed()
    );

    // No address in the invitation at all: `--peer` reaches the inviter.
    let mut bare = huddle::core::invite::Invitation::parse(&admin.ok(&[
        "invite",
        "--name",
        "Lee",
        "--role",
        "clinician",
    ]))
    .unwrap();
    bare.addrs.clear();
    let lee = Device::new(root.path(), "Lee");
    let peer = format!("{}:47733", lan.ip(0));
    let out = lee.join_without_mdns(&lan.hosts[2], &bare.encode(), &["--peer", &peer]);
    assert!(
        out.status.success(),
        "join --peer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("as Lee (clinician)"));
    admin.stop();
}
