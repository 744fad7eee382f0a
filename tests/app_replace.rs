//! A lost laptop replaced from the Admin screen, and a member removed and restored
//! there (issue #17): the practice manager clicks *Replace lost device*, confirms, and
//! the stolen laptop's app learns it was revoked while the invitation for the new one
//! is shown; a third app joins with it as the same member. *Remove* asks first, and
//! *Restore* brings the member back with no device.

mod app_kit;

use std::time::Duration;

use app_kit::{PASS, WIDE, clinic_with_lee, net, open_app};
use egui_kittest::kittest::Queryable;
use huddle::app::message::Phase;

#[test]
fn a_lost_laptop_is_replaced_and_a_member_removed_and_restored_from_the_admin_screen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sam, mut lee) = clinic_with_lee(dir.path(), "clinician");
    let old = lee
        .harness
        .state()
        .state
        .snapshot
        .status
        .as_ref()
        .expect("status")
        .device
        .clone();
    let short: String = old.chars().take(8).collect();

    sam.click("Admin");
    sam.wait_label(&format!("Replace lost device {short}"));
    sam.click(&format!("Replace lost device {short}"));
    // Nothing happens before the confirmation.
    assert!(sam.harness.state().state.invitation.is_none());
    sam.click(&format!("Revoke {short} and invite a new device"));
    sam.wait_for("the device invitation", |h| {
        h.query_by_label("Invitation text")
            .and_then(|n| n.value())
            .is_some_and(|v| v.starts_with("huddle-invite:"))
    });
    assert!(
        sam.has("Invitation for a new device of Lee P."),
        "{}",
        sam.describe()
    );
    assert!(
        sam.has("They keep their threads, tasks and role."),
        "the panel says what the new device keeps"
    );
    assert!(
        sam.has("a new device of Lee P. (clinician)"),
        "listed as a device invitation"
    );
    let invite = sam
        .harness
        .get_by_label("Invitation text")
        .value()
        .expect("text");
    // The stolen laptop's app is told it was cut off.
    lee.wait_with(&mut sam, "the old laptop to learn it was revoked", |a| {
        a.harness.state().state.phase == Phase::Removed
    });
    lee.stop();

    let mut new = open_app(
        &dir.path().join("new"),
        net(&[]),
        Duration::from_secs(900),
        WIDE,
    );
    new.wait_label("Join with an invitation");
    new.click("Join with an invitation");
    new.fill("Invitation", &invite);
    new.fill("Passphrase", PASS);
    new.fill("Repeat passphrase", PASS);
    new.click("Join clinic");
    new.wait_with(&mut sam, "the new laptop to open", |a| a.has("Lock"));
    let status = new
        .harness
        .state()
        .state
        .snapshot
        .status
        .clone()
        .expect("status");
    assert_eq!(status.member.as_deref(), Some("Lee P."));
    assert_eq!(status.role.as_deref(), Some("clinician"));
    new.wait_label("Intake follow-up");
    new.stop();

    // Removed after a confirmation, then restored with no device.
    sam.click("Done");
    sam.click("Remove Lee P.");
    assert!(sam.has("Lee P."), "not removed before the confirmation");
    sam.click("Confirm removing Lee P.");
    sam.wait_label("Restore Lee P.");
    assert!(!sam.has("Add a device for Lee P."), "{}", sam.describe());
    // A post, then a refresh without the admin lists: the removed stay listed.
    sam.click("Threads");
    sam.click("Intake follow-up");
    sam.post("Lee is away until spring");
    sam.wait_label("Lee is away until spring");
    sam.wait_for("a refresh without the admin lists", |h| {
        !h.state().state.snapshot.full
    });
    sam.click("Admin");
    assert!(sam.has("Restore Lee P."), "{}", sam.describe());
    sam.click("Restore Lee P.");
    sam.wait_label("Add a device for Lee P.");
    let devices = sam.harness.state().state.snapshot.devices.clone();
    assert!(
        devices
            .iter()
            .filter(|d| d.member == "Lee P.")
            .all(|d| d.status == "revoked"),
        "{devices:?}"
    );
    assert!(!sam.has("Restore Lee P."));
    sam.stop();
}
