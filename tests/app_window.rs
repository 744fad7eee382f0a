//! The real app window: `huddle` with no subcommand opens the desktop app (under Xvfb,
//! the X server CI installs), unlocks with `HUDDLE_PASSPHRASE`, shows the clinic and
//! saves a screenshot of itself. With `HUDDLE_UPDATE_SCREENSHOTS=1` the screenshots are
//! copied to `assets/` for the README. Without Xvfb the test says SKIPPED, loudly.

mod common;
mod xvfb;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Device, Sandbox, path_str};
use xvfb::Xvfb;

/// A small clinic as the README shows it: Sam's device (admin) with threads, messages,
/// a task and Lee's replies and read receipts, carried by bundles.
fn demo_clinic(sandbox: &Sandbox) -> Device {
    let sam = sandbox.device("sam");
    let lee = sandbox.device("lee");
    sam.ok(&[
        "init",
        "--clinic",
        "Maple Street Therapy",
        "--name",
        "Sam Kim",
    ]);
    sam.ok(&["member", "add", "--name", "Lee Park", "--role", "clinician"]);
    sam.ok(&["member", "add", "--name", "Ana Ruiz", "--role", "scheduler"]);
    let keys = lee.keys();
    sam.ok(&["device", "add", "--member", "Lee Park", "--key", &keys]);
    let new = |args: &[&str]| {
        let mut all = vec!["thread", "new"];
        all.extend_from_slice(args);
        sam.id(&all, 32)
    };
    let intake = new(&[
        "--patient",
        "J. Doe (MRN 1042)",
        "--category",
        "clinical",
        "--title",
        "Intake follow-up",
    ]);
    let referral = new(&[
        "--patient",
        "R. Diaz (MRN 1077)",
        "--category",
        "clinical",
        "--title",
        "New referral from Dr. Osei",
    ]);
    let schedule = new(&[
        "--topic",
        "Front desk",
        "--category",
        "scheduling",
        "--title",
        "Next week's schedule",
    ]);
    new(&[
        "--topic",
        "Office",
        "--category",
        "operations",
        "--title",
        "Office closed Friday afternoon",
    ]);
    sam.ok(&[
        "post",
        &intake,
        "Intake done; family prefers afternoon sessions.",
    ]);
    sam.ok(&[
        "post",
        &referral,
        "New referral needs follow-up by end of today",
        "--urgent",
    ]);
    sam.ok(&[
        "post",
        &schedule,
        "Client canceled — please confirm reschedule",
    ]);
    let bundle = sandbox.file("sam.huddle");
    sam.export(&bundle);
    lee.import(&bundle);
    // A direct message, before the thread the screenshots open (the newest).
    let direct = lee.id(&["direct", "new", "Sam Kim"], 32);
    lee.ok(&["post", &direct, "Can you cover my 4 pm on Friday?"]);
    lee.ok(&["post", &intake, "Thanks — I'll take the Tuesday 3 pm slot."]);
    lee.ok(&["read", &intake]);
    let due = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(2))
        .unwrap()
        .to_string();
    lee.ok(&[
        "post",
        &intake,
        "Please upload evaluation for billing",
        "--task",
        "--assignee",
        "Sam Kim",
        "--due",
        &due,
    ]);
    let back = sandbox.file("lee.huddle");
    lee.export(&back);
    sam.import(&back);
    sam
}

/// Saves a screenshot of the app on `device`; `view` adds `--screenshot-thread` or
/// `--screenshot-audit`.
fn screenshot(device: &Device, display: &str, png: &Path, view: Option<&str>) {
    let log = png.with_extension("log");
    let mut args = vec![
        "--data-dir".to_string(),
        path_str(&device.dir).to_string(),
        "--no-mdns".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--screenshot".into(),
        path_str(png).to_string(),
    ];
    if let Some(flag) = view {
        args.push(flag.into());
    }
    let mut app = Command::new(env!("CARGO_BIN_EXE_huddle"))
        .args(&args)
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .env("HUDDLE_PASSPHRASE", common::PASS)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env("HUDDLE_LOG", "info,huddle=debug,eframe=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the app");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = app.try_wait().expect("wait for the app") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = app.kill();
            let _ = app.wait();
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the app did not take its screenshot:\n{logged}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "the app failed:\n{logged}");
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png).expect("the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("pixels");
    assert!(
        info.width >= 800 && info.height >= 500,
        "{}x{}",
        info.width,
        info.height
    );
    let first = &pixels[..4];
    assert!(pixels.chunks(4).any(|p| p != first), "the window is blank");
}

#[test]
fn the_app_window_opens_unlocks_and_shows_the_clinic() {
    let Some(x) = Xvfb::start(90) else {
        eprintln!(
            "SKIPPED: no Xvfb (install the `xvfb` package; .ci/run does) — the app window was not tested"
        );
        return;
    };
    let sandbox = Sandbox::new();
    let sam = demo_clinic(&sandbox);
    let main = sandbox.file("main-window.png");
    let thread = sandbox.file("thread.png");
    let audit = sandbox.file("audit-trail.png");
    screenshot(&sam, &x.display, &main, None);
    screenshot(&sam, &x.display, &thread, Some("--screenshot-thread"));
    screenshot(&sam, &x.display, &audit, Some("--screenshot-audit"));
    if std::env::var_os("HUDDLE_UPDATE_SCREENSHOTS").is_some() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        std::fs::copy(&main, assets.join("main-window.png")).unwrap();
        std::fs::copy(&thread, assets.join("thread.png")).unwrap();
        std::fs::copy(&audit, assets.join("audit-trail.png")).unwrap();
    }
}
