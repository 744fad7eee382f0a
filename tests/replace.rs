//! Replacing a lost laptop and bringing a member back, through the `huddle` binary and
//! a running `huddle serve`: `huddle device invite --member NAME --replace DEVICE`
//! revokes the stolen laptop as it prints the invitation, the new laptop joins as the
//! same member (role and history kept: it reads what was written before), the
//! invitation works once, and `huddle member restore NAME` brings a removed member back
//! with none of their old devices. Each refusal plays someone who should not get in: a
//! non-admin issuing a device invitation, a second laptop reusing it, the ordinary
//! invitation claiming an existing name, a restore onto a name taken meanwhile.

mod common;

use common::{Device, Sandbox};
use serde_json::Value;

const ANN: &str = "Ann";
const NOTE: &str = "Intake done, plan reviewed with the family";
const OWN_NOTE: &str = "Called the school counsellor";

fn devices_of(admin: &Device, member: &str) -> Vec<Value> {
    admin
        .json(&["devices"])
        .as_array()
        .expect("a list")
        .iter()
        .filter(|d| d["member"] == member)
        .cloned()
        .collect()
}

fn status_of(devices: &[Value], device: &str) -> String {
    devices
        .iter()
        .find(|d| d["device"] == device)
        .and_then(|d| d["status"].as_str())
        .unwrap_or("absent")
        .to_string()
}

fn bodies(device: &Device, thread: &str) -> Vec<String> {
    device.show(thread)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                m["author"].as_str().unwrap_or("?"),
                m["body"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn a_stolen_laptop_is_replaced_and_a_removed_member_restored() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    admin.ok(&["init", "--clinic", "Maple Street Therapy", "--name", "Ada"]);
    let thread = admin.json(&[
        "thread",
        "new",
        "--patient",
        "Pat Quimby",
        "--category",
        "clinical",
        "--title",
        "Intake",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    admin.ok(&["post", &thread, NOTE]);
    let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    serving.wait_until_serving(std::time::Duration::from_secs(20));

    // Ann joins on her first laptop and writes in the thread.
    let invite = admin.ok(&["invite", "--name", ANN, "--role", "clinician"]);
    let laptop = sandbox.device("laptop");
    laptop.ok(&["join", invite.trim(), "--no-mdns"]);
    laptop.ok(&["post", &thread, OWN_NOTE]);
    let bundle = sandbox.file("ann.bundle");
    laptop.export(&bundle);
    admin.import(&bundle);
    let old = laptop.status()["device"].as_str().unwrap().to_string();

    // Ann's laptop (a non-admin) cannot issue a device invitation, for herself or anyone.
    let err = laptop.fail(&["device", "invite", "--member", ANN]);
    assert!(err.contains("admin"), "{err}");
    // The ordinary invitation keeps refusing a name that exists.
    let err = admin.fail(&["invite", "--name", ANN, "--role", "billing"]);
    assert!(err.contains("already exists"), "{err}");

    // The laptop is stolen: the admin revokes it and invites its replacement at once.
    let out = admin.run(&["device", "invite", "--member", ANN, "--replace", &old[..8]]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let said = common::stderr(&out);
    assert!(
        said.contains(&format!("revoked device {}", &old[..8])),
        "{said}"
    );
    let replacement = common::stdout(&out);
    assert_eq!(status_of(&devices_of(&admin, ANN), &old), "revoked");
    let listed = admin.json(&["invites"]);
    assert_eq!(listed[0]["name"], ANN, "{listed}");
    assert_eq!(listed[0]["device"], true, "{listed}");
    // An open device invitation for Ann is not issued twice.
    let err = admin.fail(&["device", "invite", "--member", ANN]);
    assert!(err.contains("open invitation"), "{err}");

    let new = sandbox.device("new-laptop");
    let out = new.ok(&["join", replacement.trim(), "--no-mdns"]);
    assert!(out.contains("as Ann (clinician)"), "{out}");
    let status = new.status();
    assert_eq!(
        (status["member"].as_str(), status["role"].as_str()),
        (Some(ANN), Some("clinician"))
    );
    assert_eq!(
        status["admin"], false,
        "the invitation cannot make her an admin"
    );
    // Her history comes with her: what was written before the replacement, hers too.
    let seen = bodies(&new, &thread);
    assert!(seen.contains(&format!("Ada: {NOTE}")), "{seen:?}");
    assert!(seen.contains(&format!("{ANN}: {OWN_NOTE}")), "{seen:?}");
    let members = admin.json(&["members"]);
    let anns: Vec<&Value> = members
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == ANN)
        .collect();
    assert_eq!(anns.len(), 1, "still one member Ann: {members}");
    assert_eq!(admin.json(&["invites"]), serde_json::json!([]));

    // The invitation worked once: a second laptop with the same string is refused.
    let thief = sandbox.device("thief");
    let err = thief.fail(&["join", replacement.trim(), "--no-mdns"]);
    assert!(err.contains("already been used"), "{err}");
    assert!(!thief.dir.exists(), "a refused join leaves nothing behind");

    // Removed, then restored: Ann comes back with no device; the old ones stay out.
    admin.ok(&["member", "remove", ANN]);
    let err = admin.fail(&["device", "invite", "--member", ANN]);
    assert!(err.contains(ANN), "{err}");
    let removed = admin.ok(&["members", "--removed"]);
    assert!(
        removed.contains(&format!("{ANN} (clinician) · removed")),
        "{removed}"
    );
    assert_eq!(admin.json(&["members", "--removed"])[0]["name"], ANN);
    let out = admin.ok(&["member", "restore", ANN]);
    assert!(out.contains("restored Ann, with no device"), "{out}");
    let devices = devices_of(&admin, ANN);
    let new_id = new.status()["device"].as_str().unwrap().to_string();
    assert_eq!(status_of(&devices, &new_id), "revoked", "{devices:?}");
    assert!(
        devices.iter().all(|d| d["status"] == "revoked"),
        "{devices:?}"
    );
    let err = admin.fail(&["member", "restore", ANN]);
    assert!(err.contains("already"), "{err}");
    assert!(
        admin
            .ok(&["members", "--removed"])
            .contains("No removed members.")
    );
    // Removing a member withdraws the device invitation waiting for them: it leaves the
    // list, and the laptop it was for cannot join even after she is restored.
    let pending = admin.ok(&["device", "invite", "--member", ANN]);
    admin.ok(&["member", "remove", ANN]);
    assert_eq!(admin.json(&["invites"]), serde_json::json!([]));
    admin.ok(&["member", "restore", ANN]);
    let late = sandbox.device("late-laptop");
    let err = late.fail(&["join", pending.trim(), "--no-mdns"]);
    assert!(err.contains("cancelled"), "{err}");
    // A device invitation for the restored member works again.
    let again = admin.ok(&["device", "invite", "--member", ANN]);
    let third = sandbox.device("third");
    let out = third.ok(&["join", again.trim(), "--no-mdns"]);
    assert!(out.contains("as Ann (clinician)"), "{out}");

    // A restore onto a name taken meanwhile is refused.
    admin.ok(&["member", "remove", ANN]);
    admin.ok(&["member", "add", "--name", ANN, "--role", "billing"]);
    let err = admin.fail(&["member", "restore", ANN]);
    assert!(err.contains("already"), "{err}");
    serving.stop();
}
