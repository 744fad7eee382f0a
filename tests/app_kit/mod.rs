//! Driving the real desktop app in tests: an egui_kittest harness around `HuddleApp`
//! with a real node (in-process bridge, temp data directory, loopback only, no mDNS),
//! found through accessible labels as a screen reader would.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use huddle::app::bridge::BridgeConfig;
use huddle::app::notify::RecordingNotifier;
use huddle::app::{AppOptions, HuddleApp};
use huddle::host::NetOptions;

pub const PASS: &str = "correct horse battery staple";
/// A window wide enough for the list and the thread side by side.
pub const WIDE: [f32; 2] = [1200.0, 800.0];
/// Longest wait for the node or the network in a test (a hang fails, slowness does not);
/// `HUDDLE_APP_WAIT` (seconds) raises it for the benchmark's large stores.
fn wait_limit() -> Duration {
    let secs = std::env::var("HUDDLE_APP_WAIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

pub struct App {
    pub harness: Harness<'static, HuddleApp>,
    pub notifier: RecordingNotifier,
}

pub fn net(peers: &[String]) -> NetOptions {
    NetOptions {
        listen: Some("127.0.0.1:0".into()),
        peers: peers.to_vec(),
        no_mdns: true,
        mdns_interface: None,
    }
}

/// The app on `dir` at `size`, locking after `idle`.
pub fn open_app(dir: &Path, net: NetOptions, idle: Duration, size: [f32; 2]) -> App {
    let notifier = RecordingNotifier::default();
    let recorder = notifier.clone();
    let dir = dir.to_path_buf();
    let harness = Harness::builder().with_size(size).build_eframe(move |cc| {
        HuddleApp::new(
            &cc.egui_ctx,
            AppOptions {
                bridge: BridgeConfig { dir, net },
                idle_lock: idle,
                notifier: Some(Box::new(recorder)),
                passphrase: None,
                screenshot: None,
            },
        )
        .expect("the app starts")
    });
    App { harness, notifier }
}

impl App {
    /// Steps frames until `done` holds (the bridge answers on its own thread).
    pub fn wait_for(&mut self, what: &str, done: impl Fn(&Harness<'static, HuddleApp>) -> bool) {
        let start = Instant::now();
        loop {
            self.harness.step();
            if done(&self.harness) {
                return;
            }
            if start.elapsed() > wait_limit() {
                panic!("timed out waiting for {what}; {}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the app shows, for a failing test's message: phase, toasts, labels.
    pub fn describe(&self) -> String {
        let app = self.harness.state();
        let toasts: Vec<&str> = app.state.toasts.iter().map(|t| t.text.as_str()).collect();
        let mut shown = Vec::new();
        for node in self.harness.root().children_recursive() {
            let n = node.accesskit_node();
            if let Some(text) = n.label().or_else(|| n.value()).filter(|t| !t.is_empty()) {
                shown.push(format!("{:?} {text:?}", n.role()));
            }
        }
        shown.dedup();
        format!(
            "phase {:?}; toasts {toasts:?}; screen:\n  {}",
            app.state.phase,
            shown.join("\n  ")
        )
    }

    /// Steps both apps until `done` holds for `self`.
    pub fn wait_with(&mut self, other: &mut App, what: &str, done: impl Fn(&App) -> bool) {
        let start = Instant::now();
        loop {
            self.harness.step();
            other.harness.step();
            if done(self) {
                return;
            }
            if start.elapsed() > wait_limit() {
                panic!("timed out waiting for {what}; {}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_label(&mut self, label: &str) {
        self.wait_for(label, |h| {
            h.query_all_by_label_contains(label).next().is_some()
        });
    }

    pub fn has(&self, label: &str) -> bool {
        self.harness
            .query_all_by_label_contains(label)
            .next()
            .is_some()
    }

    /// Clicks the control named `label` (the first, if a heading shares its name).
    pub fn click(&mut self, label: &str) {
        self.wait_label(label);
        let nodes: Vec<_> = self.harness.query_all_by_label(label).collect();
        let control = nodes
            .iter()
            .find(|n| n.accesskit_node().role() != egui::accesskit::Role::Label)
            .or(nodes.first())
            .unwrap_or_else(|| panic!("no control named {label:?}"));
        control.click();
        self.harness.step();
        self.harness.step();
    }

    /// Types into the text field named `label`.
    pub fn fill(&mut self, label: &str, text: &str) {
        self.wait_label(label);
        self.harness.get_by_label(label).focus();
        self.harness.step();
        self.harness.get_by_label(label).type_text(text);
        self.harness.step();
        self.harness.step();
    }

    /// Picks `option` in the combo box named `label`.
    pub fn choose(&mut self, label: &str, option: &str) {
        self.click(label);
        self.wait_label(option);
        let items: Vec<_> = self
            .harness
            .query_all_by_label(option)
            .filter(|n| n.accesskit_node().role() != egui::accesskit::Role::Label)
            .collect();
        // The popup's items come last in the tree.
        items.last().expect("option shown").click();
        self.harness.step();
        self.harness.step();
    }

    /// First run: founds a clinic as `name` (`role`).
    pub fn found(&mut self, clinic: &str, name: &str, role: &str) {
        self.wait_label("Found a clinic");
        self.fill("Clinic name", clinic);
        self.fill("Your name", name);
        if role != "clinician" {
            self.choose("Your role", role);
        }
        self.fill("Passphrase", PASS);
        self.fill("Repeat passphrase", PASS);
        self.click("Create clinic");
        self.wait_label("Lock");
    }

    pub fn new_thread(&mut self, patient: &str, title: &str, category: &str) {
        self.click("New thread");
        self.fill("Patient", patient);
        self.fill("Title", title);
        self.choose("Category", category);
        self.click("Create thread");
        self.wait_label(title);
    }

    pub fn post(&mut self, text: &str) {
        self.fill("Message", text);
        self.click("Send");
    }

    /// Admin screen: adds a member and returns the invitation the app shows.
    pub fn invite(&mut self, name: &str, role: &str) -> String {
        self.click("Admin");
        self.fill("Member name", name);
        if role != "clinician" {
            self.choose("Role", role);
        }
        self.click("Add member and invite");
        self.wait_for("the invitation", |h| {
            h.query_by_label("Invitation text")
                .and_then(|n| n.value())
                .is_some_and(|v| v.starts_with("huddle"))
        });
        let text = self
            .harness
            .get_by_label("Invitation text")
            .value()
            .expect("invitation text");
        self.click("Done");
        self.click("Threads");
        text
    }

    /// First run: joins with `invite`.
    pub fn join(&mut self, invite: &str) {
        self.click("Join with an invitation");
        self.fill("Invitation", invite);
        self.fill("Passphrase", PASS);
        self.fill("Repeat passphrase", PASS);
        self.click("Join clinic");
        self.wait_label("Lock");
    }

    pub fn stop(self) {
        drop(self.harness);
    }
}

/// Sam founds the clinic and starts a clinical thread about a patient; Lee's device
/// joins with an invitation from Sam's admin screen (loopback libp2p).
pub fn clinic_with_lee(dir: &std::path::Path, lee_role: &str) -> (App, App) {
    let mut sam = open_app(&dir.join("sam"), net(&[]), Duration::from_secs(900), WIDE);
    sam.found("Maple Therapy", "Sam K.", "clinician");
    sam.new_thread("Jane Doe", "Intake follow-up", "clinical");
    let invite = sam.invite("Lee P.", lee_role);
    let mut lee = open_app(&dir.join("lee"), net(&[]), Duration::from_secs(900), WIDE);
    lee.wait_label("Join with an invitation");
    // Sam's app keeps running (stepped) while Lee's joins.
    lee.click("Join with an invitation");
    lee.fill("Invitation", &invite);
    lee.fill("Passphrase", PASS);
    lee.fill("Repeat passphrase", PASS);
    lee.click("Join clinic");
    lee.wait_with(&mut sam, "Lee's app to open", |a| a.has("Lock"));
    (sam, lee)
}
