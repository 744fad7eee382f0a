//! `huddle direct new` through the CLI, three devices carried by bundles: a clinician
//! writes to the front desk, the admin's device relays the conversation blind, lists
//! nothing of it, cannot open it and cannot let itself in.

mod common;

use common::{Device, Sandbox};

/// Dana (admin) founds the clinic; Lee P. (clinician) and Sam K. (front desk) each get
/// a device.
fn clinic(sandbox: &Sandbox) -> (Device, Device, Device) {
    let (admin, lee, sam) = (
        sandbox.device("admin"),
        sandbox.device("lee"),
        sandbox.device("sam"),
    );
    admin.ok(&["init", "--clinic", "Maple Therapy", "--name", "Dana R."]);
    admin.ok(&["member", "add", "--name", "Lee P.", "--role", "clinician"]);
    admin.ok(&["member", "add", "--name", "Sam K.", "--role", "scheduler"]);
    admin.ok(&["device", "add", "--member", "Lee P.", "--key", &lee.keys()]);
    admin.ok(&["device", "add", "--member", "Sam K.", "--key", &sam.keys()]);
    (admin, lee, sam)
}

#[test]
fn a_direct_message_reaches_only_its_participants_through_a_blind_admin() {
    let sandbox = Sandbox::new();
    let (admin, lee, sam) = clinic(&sandbox);
    let carry = |from: &Device, to: &Device, name: &str| {
        let bundle = sandbox.file(name);
        from.export(&bundle);
        to.import(&bundle);
    };
    carry(&admin, &lee, "roster-lee.bundle");
    carry(&admin, &sam, "roster-sam.bundle");

    let direct = lee.id(&["direct", "new", "Sam K."], 32);
    lee.ok(&["post", &direct, "Can you move my 3 pm to Thursday?"]);
    assert_eq!(
        lee.id(&["direct", "new", "sam k."], 32),
        direct,
        "the same people keep one conversation"
    );
    // Lee's device reaches Sam's only through the admin's.
    carry(&lee, &admin, "lee-to-admin.bundle");
    carry(&admin, &sam, "admin-to-sam.bundle");

    let listed = sam.ok(&["threads"]);
    assert!(listed.contains("DIRECT"), "{listed}");
    assert!(listed.contains("Lee P., Sam K."), "{listed}");
    let shown = sam.ok(&["show", &direct]);
    assert!(
        shown.contains("Can you move my 3 pm to Thursday?"),
        "{shown}"
    );
    assert!(shown.contains("Direct message — Lee P., Sam K."), "{shown}");
    assert_eq!(sam.show(&direct)["category"], "direct");
    let first = sam.show(&direct)["messages"][0]["id"]
        .as_str()
        .expect("a message id")
        .to_string();
    sam.ok(&["post", &direct, "Done, Thursday 3 pm", "--reply-to", &first]);

    // The admin holds the envelopes and nothing else: no listing, no reading, no way in.
    assert!(
        admin.threads().iter().all(|t| t["id"] != direct.as_str()),
        "{:?}",
        admin.threads()
    );
    let refused = admin.fail(&["show", &direct]);
    assert!(
        refused.contains("direct conversation among other members"),
        "{refused}"
    );
    let refused = admin.fail(&["thread", "restrict", &direct, "--to", "Dana R."]);
    assert!(refused.contains("participants are fixed"), "{refused}");
    let refused = admin.fail(&["emergency", "open", &direct, "--reason", "audit"]);
    assert!(refused.contains("participants are fixed"), "{refused}");
    let refused = admin.fail(&["post", &direct, "Admin here"]);
    assert!(
        refused.contains("direct conversation among other members"),
        "{refused}"
    );
    // The start is audited like any thread's events, in words.
    let trail = admin.ok(&["audit"]);
    assert!(trail.contains("direct-started"), "{trail}");

    // No flag makes an ordinary thread direct.
    let refused = admin.fail(&[
        "thread",
        "new",
        "--topic",
        "Side channel",
        "--category",
        "direct",
        "--title",
        "x",
    ]);
    assert!(refused.contains("unknown category"), "{refused}");
    // And one needs somebody to write to.
    let refused = lee.fail(&["direct", "new", "Lee P."]);
    assert!(refused.contains("at least one other member"), "{refused}");
}
