//! An X server of a test's own (Xvfb, 1280×800, no TCP), for the tests that open the
//! real app window; stopped when dropped.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Xvfb {
    child: Child,
    /// The display to set as `DISPLAY`, e.g. ":391".
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb on a display chosen from `first` up by this process's id, and waits
    /// for its socket; `None` if Xvfb cannot be run here.
    pub fn start(first: u32) -> Option<Xvfb> {
        let number = first + std::process::id() % 600;
        let child = Command::new("Xvfb")
            .args([
                &format!(":{number}"),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let xvfb = Xvfb {
            child,
            display: format!(":{number}"),
        };
        let socket = format!("/tmp/.X11-unix/X{number}");
        let start = Instant::now();
        while !Path::new(&socket).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Xvfb did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(xvfb)
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
