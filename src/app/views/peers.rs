//! Clinic and sync status in words: the line in the top bar ("3 devices connected · up
//! to date", "offline · 12 changes waiting to sync", "syncing 4,200 of 104,010" with a
//! progress bar) and the devices screen (connected peers, member, device, last seen).

use egui::{RichText, Ui};

use crate::app::state::AppState;
use crate::localtime;
use crate::net::SyncProgress;

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

/// The sync state in words.
pub fn sync_words(connected: usize, p: &SyncProgress) -> String {
    if p.syncing && p.expected > 0 {
        return format!(
            "syncing {} of {}",
            thousands(p.received.min(p.expected)),
            thousands(p.expected)
        );
    }
    let devices = match connected {
        0 => {
            return match p.waiting {
                0 => "offline".to_string(),
                1 => "offline · 1 change waiting to sync".to_string(),
                n => format!("offline · {} changes waiting to sync", thousands(n)),
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

pub fn sync_line(ui: &mut Ui, state: &AppState) {
    let p = &state.progress;
    let words = sync_words(state.peers.len(), p);
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
    ui.label(sync_words(state.peers.len(), &state.progress));
    ui.add_space(8.0);
    let devices = &state.snapshot.devices;
    egui::Grid::new("peers")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            ui.label(RichText::new("Member").strong());
            ui.label(RichText::new("Device").strong());
            ui.label(RichText::new("Connection").strong());
            ui.label(RichText::new("Last seen").strong());
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
                let seen = connected
                    .and_then(|p| p.last_sync_ms)
                    .or(d.last_seen_ms)
                    .map(localtime::local)
                    .unwrap_or_else(|| "never".into());
                ui.label(seen);
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
        let mut p = SyncProgress::default();
        assert_eq!(sync_words(0, &p), "offline");
        p.waiting = 12;
        assert_eq!(sync_words(0, &p), "offline · 12 changes waiting to sync");
        p.waiting = 0;
        assert_eq!(sync_words(3, &p), "3 devices connected · up to date");
        p.syncing = true;
        p.received = 4_200;
        p.expected = 104_010;
        assert_eq!(sync_words(1, &p), "syncing 4,200 of 104,010");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
