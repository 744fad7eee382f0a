//! Clinic and sync status in words: the line in the top bar ("3 devices connected · up
//! to date", "offline · 12 changes waiting to sync", "syncing 4,200 of 104,010" with a
//! progress bar) and the devices screen (connected peers, member, device, last seen).

use egui::{RichText, Ui};

use crate::app::state::AppState;
use crate::localtime;
use crate::net::SyncProgress;
use crate::node::Seen;

/// 104010 → "104,010".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the sync line knows besides the progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncContext {
    /// Clinic devices connected now.
    pub connected: usize,
    /// This is the clinic's only active device: there is nobody to sync with yet.
    pub alone: bool,
}

/// The sync state in words that are true: "only this device so far", "3 devices
/// connected · up to date", "offline since 2:14 pm · 12 changes will sync when a device
/// of the clinic is reachable", "syncing 4,200 of 104,010". Only changes to threads
/// count (messages, tasks, read markers), not the device's own bookkeeping.
pub fn sync_words(c: SyncContext, p: &SyncProgress) -> String {
    if p.syncing && p.expected > 0 {
        return format!(
            "syncing {} of {}",
            thousands(p.received.min(p.expected)),
            thousands(p.expected)
        );
    }
    let devices = match c.connected {
        0 if c.alone => return "only this device so far".to_string(),
        0 => {
            let offline = match p.last_synced_ms {
                Some(ms) => format!("offline since {}", localtime::clock(ms)),
                None => "offline".to_string(),
            };
            return match p.waiting {
                0 => offline,
                1 => format!(
                    "{offline} · 1 change will sync when a device of the clinic is reachable"
                ),
                n => format!(
                    "{offline} · {} changes will sync when a device of the clinic is reachable",
                    thousands(n)
                ),
            };
        }
        1 => "1 device connected".to_string(),
        n => format!("{n} devices connected"),
    };
    if p.syncing {
        format!("{devices} · syncing")
    } else {
        format!("{devices} · up to date")
    }
}

/// The sync line's context from what the app knows.
pub fn context(state: &AppState) -> SyncContext {
    let active = state
        .snapshot
        .devices
        .iter()
        .filter(|d| d.status == "active")
        .count();
    SyncContext {
        connected: state.peers.len(),
        alone: active == 1,
    }
}

/// The sync line's words and warning, and how wide they are drawn.
pub fn sync_line_width(ui: &Ui, state: &AppState) -> f32 {
    let font = egui::TextStyle::Body.resolve(ui.style());
    let mut text = sync_words(context(state), &state.progress);
    if let Some(w) = state.snapshot.status.as_ref().and_then(safeguard_words) {
        text.push_str(w);
    }
    let bar = if state.progress.syncing { 130.0 } else { 0.0 };
    ui.painter()
        .layout_no_wrap(text, font, egui::Color32::WHITE)
        .size()
        .x
        + bar
        + 24.0
}

pub fn sync_line(ui: &mut Ui, state: &AppState) {
    let p = &state.progress;
    let words = sync_words(context(state), p);
    if p.syncing && p.expected > 0 {
        let fraction = p.received as f32 / p.expected as f32;
        ui.add(egui::ProgressBar::new(fraction.min(1.0)).desired_width(120.0));
    }
    ui.label(words);
    if let Some(warning) = state.snapshot.status.as_ref().and_then(safeguard_words) {
        ui.label(RichText::new(warning).color(ui.visuals().warn_fg_color));
    }
}

/// What the device's safeguards hold back right now, in words (or nothing).
pub fn safeguard_words(s: &crate::node::Status) -> Option<&'static str> {
    if s.lease_expired {
        Some("clinical threads locked: not synced with the clinic for too long — connect to sync")
    } else if s.resyncing {
        Some("store restored: writing resumes after the first sync with a clinic device")
    } else {
        None
    }
}

pub fn show(ui: &mut Ui, state: &AppState) {
    ui.heading("Devices");
    ui.label(sync_words(context(state), &state.progress));
    ui.add_space(8.0);
    let devices = &state.snapshot.devices;
    egui::Grid::new("peers")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            ui.label(RichText::new("Member").strong());
            ui.label(RichText::new("Device").strong());
            ui.label(RichText::new("Connection").strong());
            ui.label(RichText::new("Presence").strong());
            ui.end_row();
            for d in devices.iter().filter(|d| d.status == "active") {
                let connected = state.peers.iter().find(|p| p.device.to_hex() == d.device);
                ui.label(format!("{} ({})", d.member, d.role));
                ui.label(if d.this_device {
                    format!("{} (this device)", short(&d.device))
                } else {
                    short(&d.device)
                });
                ui.label(match (d.this_device, connected) {
                    (true, _) => "—".to_string(),
                    (false, Some(_)) => "connected".to_string(),
                    (false, None) => "not connected".to_string(),
                });
                ui.label(match (d.this_device, connected) {
                    (true, _) => "this device".to_string(),
                    (false, Some(_)) => Seen::Online.to_string(),
                    (false, None) => d.seen.to_string(),
                });
                ui.end_row();
            }
        });
}

fn short(hex: &str) -> String {
    hex.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_state_in_words() {
        let at = |connected| SyncContext {
            connected,
            alone: false,
        };
        let mut p = SyncProgress::default();
        let alone = SyncContext {
            connected: 0,
            alone: true,
        };
        assert_eq!(sync_words(alone, &p), "only this device so far");
        p.waiting_bookkeeping = 3;
        assert_eq!(
            sync_words(at(0), &p),
            "offline",
            "bookkeeping is not a change"
        );
        p.waiting = 12;
        assert_eq!(
            sync_words(at(0), &p),
            "offline · 12 changes will sync when a device of the clinic is reachable"
        );
        p.last_synced_ms = Some(crate::node::now_ms());
        assert!(sync_words(at(0), &p).starts_with("offline since "));
        assert!(sync_words(at(0), &p).contains(" · 12 changes will sync"));
        p.waiting = 0;
        assert_eq!(sync_words(at(3), &p), "3 devices connected · up to date");
        p.syncing = true;
        p.received = 4_200;
        p.expected = 104_010;
        assert_eq!(sync_words(at(1), &p), "syncing 4,200 of 104,010");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
