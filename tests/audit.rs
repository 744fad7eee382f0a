//! The audit trail (45 CFR 164.312(b)) through the `huddle` binary: a clinician's
//! device records what its member does, sealed to the admin devices; an admin reads
//! the whole clinic's trail after a sync (ids only, never patient text), filtered and as
//! CSV or JSON; a clinician cannot read it though its device holds and relays it; and
//! `audit verify` names an entry edited, removed or reordered on disk, and a device's
//! chain truncated (a restored old copy) as seen from the admin's copy.

mod common;

use common::{Device, Sandbox, path_str, unhex};
use serde_json::Value;

const CLINIC: &str = "Maple Street Therapy";
const ADMIN: &str = "Ada";
/// A name with a comma, so CSV must quote it.
const LEE: &str = "Lee, RN";
const PATIENT: &str = "Pat Quimby";
const TITLE: &str = "Intake after relapse";
const BODY: &str = "Started sertraline 50mg today";

struct Clinic {
    sandbox: Sandbox,
    admin: Device,
    lee: Device,
    thread: String,
}

/// Ada founds the clinic, enrolls Lee (a clinician) and opens a clinical thread; Lee's
/// device imports Ada's bundle.
/// A new clinical thread on `admin`: its id.
fn clinical_thread(admin: &Device) -> String {
    admin.json(&[
        "thread",
        "new",
        "--patient",
        PATIENT,
        "--category",
        "clinical",
        "--title",
        TITLE,
    ])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn clinic() -> Clinic {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    admin.ok(&["init", "--clinic", CLINIC, "--name", ADMIN]);
    admin.ok(&["member", "add", "--name", LEE, "--role", "clinician"]);
    let lee = sandbox.device("lee");
    let keys = lee.keys();
    admin.ok(&["device", "add", "--member", LEE, "--key", &keys]);
    let thread = clinical_thread(&admin);
    carry(&sandbox, &admin, &lee);
    Clinic {
        sandbox,
        admin,
        lee,
        thread,
    }
}

/// Carries everything `from` holds to `to` by bundle; returns the import report (an
/// import that refuses some envelopes exits non-zero, and still reports).
fn carry(sandbox: &Sandbox, from: &Device, to: &Device) -> Value {
    let bundle = sandbox.file("carry.bundle");
    let _ = std::fs::remove_file(&bundle);
    from.export(&bundle);
    let out = to.run(&["--json", "bundle", "import", path_str(&bundle)]);
    serde_json::from_str(&common::stdout(&out)).expect("an import report")
}

fn device_id(device: &Device) -> String {
    device.status()["device"].as_str().unwrap().to_string()
}

fn entries(admin: &Device, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    admin.json(&all)["entries"].as_array().unwrap().clone()
}

fn events_of(entries: &[Value], device: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["device"] == device)
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// Lee shows the thread, posts to it and shows it again; the admin imports Lee's bundle.
fn lee_works(c: &Clinic) -> String {
    c.lee.ok(&["show", &c.thread]);
    let post = c.lee.json(&["post", &c.thread, BODY])["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.lee.ok(&["show", &c.thread]);
    let report = carry(&c.sandbox, &c.lee, &c.admin);
    assert_eq!(report["refused"], serde_json::json!([]), "{report}");
    post
}

#[test]
fn an_admin_reads_a_clinicians_trail_with_ids_only() {
    let c = clinic();
    let post = lee_works(&c);
    let lee_id = device_id(&c.lee);
    let all = entries(&c.admin, &[]);
    assert_eq!(
        events_of(&all, &lee_id),
        ["thread-viewed", "post", "thread-viewed"],
        "{all:?}"
    );
    let posted = all.iter().find(|e| e["event"] == "post").unwrap();
    assert_eq!(posted["thread"], c.thread.as_str());
    assert_eq!(posted["member"], LEE);
    assert!(posted["details"].as_str().unwrap().contains(&post));
    assert!(posted["time"].as_str().unwrap().ends_with("UTC"));
    // The admin's own actions are there too: the roster changes it made.
    let admin_id = device_id(&c.admin);
    let mine = events_of(&all, &admin_id);
    assert!(
        mine.starts_with(&["member-added".to_string(), "device-added".to_string()]),
        "{mine:?}"
    );
    // Oldest first.
    let times: Vec<u64> = all.iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // No patient text in any form of the trail.
    for out in [
        c.admin.ok(&["audit"]),
        c.admin.ok(&["audit", "--csv"]),
        c.admin.ok(&["--json", "audit"]),
    ] {
        for secret in [PATIENT, TITLE, BODY] {
            assert!(!out.contains(secret), "`{secret}` in the trail: {out}");
        }
    }
    let text = c.admin.ok(&["audit"]);
    assert!(
        text.contains("thread-viewed") && text.contains(LEE),
        "{text}"
    );
}

#[test]
fn a_clinician_holds_the_trail_but_cannot_read_it() {
    let c = clinic();
    lee_works(&c);
    // Lee's device is refused, in plain words.
    let err = c.lee.fail(&["audit"]);
    assert!(err.contains("admin"), "{err}");
    // Yet it holds the admin's entries (it relays them blind) and checks their chains.
    carry(&c.sandbox, &c.admin, &c.lee);
    let verified = c.lee.ok(&["audit", "verify"]);
    assert!(verified.contains("intact"), "{verified}");
    let bundle = c.sandbox.file("from-lee.bundle");
    c.lee.export(&bundle);
    // What it carries on says nothing either: the audit envelopes are sealed.
    let bytes = std::fs::read(&bundle).unwrap();
    for secret in ["thread-viewed", LEE] {
        assert!(!common::contains(&bytes, secret.as_bytes()), "{secret}");
    }

    // Revoking Lee's device is audited, with the key rotations it causes (the clinical
    // key and the roster key lose a reader).
    let lee_id = device_id(&c.lee);
    c.admin.ok(&["device", "revoke", &lee_id]);
    let admin_id = device_id(&c.admin);
    let mine = events_of(&entries(&c.admin, &[]), &admin_id);
    assert!(mine.contains(&"device-revoked".to_string()), "{mine:?}");
    assert!(mine.contains(&"key-rotated".to_string()), "{mine:?}");
}

#[test]
fn filters_and_formats() {
    let c = clinic();
    lee_works(&c);
    let lee_id = device_id(&c.lee);
    let all = entries(&c.admin, &[]);
    // --member: only Lee's devices' entries; any case.
    let lee_only = entries(&c.admin, &["--member", "lee, rn"]);
    assert_eq!(lee_only.len(), 3, "{lee_only:?}");
    assert!(lee_only.iter().all(|e| e["device"] == lee_id.as_str()));
    let err = c.admin.fail(&["audit", "--member", "Nobody"]);
    assert!(err.contains("Nobody"), "{err}");
    // --thread: by a prefix of the thread id.
    let on_thread = entries(&c.admin, &["--thread", &c.thread[..8]]);
    assert_eq!(on_thread.len(), 3, "{on_thread:?}");
    assert!(on_thread.iter().all(|e| e["thread"] == c.thread.as_str()));
    // --since: a date (local midnight) or RFC 3339.
    assert!(entries(&c.admin, &["--since", "2999-01-01"]).is_empty());
    assert_eq!(
        entries(&c.admin, &["--since", "2020-01-01T00:00:00Z"]).len(),
        all.len()
    );
    let last = all.last().unwrap()["at_ms"].as_u64().unwrap();
    let at = jiff::Timestamp::from_millisecond(last as i64).unwrap();
    let since = entries(&c.admin, &["--since", &at.to_string()]);
    assert!(!since.is_empty() && since.len() < all.len(), "{since:?}");
    let err = c.admin.fail(&["audit", "--since", "last tuesday"]);
    assert!(err.contains("RFC 3339"), "{err}");
    // CSV: a header row, one row per entry, the comma in Lee's name quoted.
    let csv = c.admin.ok(&["audit", "--csv", "--member", LEE]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "time_utc,device,member,event,thread,details");
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(&format!(",{lee_id},\"{LEE}\","))),
        "{csv}"
    );
    assert!(
        lines[2].contains(",post,") && lines[2].contains(&c.thread),
        "{csv}"
    );
}

/// The sled key of entry `seq` of `device`'s audit chain.
fn audit_key(device: &str, seq: u64) -> Vec<u8> {
    let mut key = vec![3u8];
    key.extend([0u8; 17]);
    key.extend(unhex(device));
    key.extend(seq.to_be_bytes());
    key
}

/// Changes the admin's store with sled while no `huddle` has it open.
fn with_envelopes(device: &Device, f: impl FnOnce(&sled::Tree)) {
    let db = sled::open(&device.dir).expect("open the store with sled");
    let tree = db.open_tree("envelopes").unwrap();
    f(&tree);
    db.flush().unwrap();
}

fn verify_fails(device: &Device) -> String {
    let out = device.run(&["audit", "verify"]);
    assert!(!out.status.success(), "{}", common::describe(&out));
    common::stdout(&out)
}

#[test]
fn verify_names_an_entry_edited_removed_or_reordered_on_disk() {
    let c = clinic();
    lee_works(&c);
    let lee = device_id(&c.lee);
    let short = &lee[..8];
    assert!(c.admin.ok(&["audit", "verify"]).contains("intact"));
    let (k0, k1) = (audit_key(&lee, 0), audit_key(&lee, 1));
    let mut original = Vec::new();
    with_envelopes(&c.admin, |t| {
        original = vec![t.get(&k0).unwrap().unwrap(), t.get(&k1).unwrap().unwrap()];
    });
    let restore = |dev: &Device| {
        with_envelopes(dev, |t| {
            t.insert(&k0, original[0].clone()).unwrap();
            t.insert(&k1, original[1].clone()).unwrap();
        })
    };

    // Edited: one byte of entry #1 changed.
    with_envelopes(&c.admin, |t| {
        let mut v = original[1].to_vec();
        let at = v.len() - 80;
        v[at] ^= 0x01;
        t.insert(&k1, v).unwrap();
    });
    let out = verify_fails(&c.admin);
    assert!(
        out.contains(&format!("device {short}…: entry #1 was edited")),
        "{out}"
    );
    restore(&c.admin);
    assert!(c.admin.ok(&["audit", "verify"]).contains("intact"));

    // Removed: entry #1 deleted.
    with_envelopes(&c.admin, |t| {
        t.remove(&k1).unwrap();
    });
    let out = verify_fails(&c.admin);
    assert!(
        out.contains(&format!("device {short}…: entry #1 is missing")),
        "{out}"
    );
    restore(&c.admin);

    // Reordered: entries #0 and #1 swapped.
    with_envelopes(&c.admin, |t| {
        t.insert(&k0, original[1].clone()).unwrap();
        t.insert(&k1, original[0].clone()).unwrap();
    });
    let out = verify_fails(&c.admin);
    assert!(
        out.contains(&format!(
            "device {short}…: entry #1 is out of order (stored at #0)"
        )),
        "{out}"
    );
    restore(&c.admin);
    assert!(c.admin.ok(&["audit", "verify"]).contains("intact"));
    // The trail still lists every entry.
    assert_eq!(events_of(&entries(&c.admin, &[]), &lee).len(), 3);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_truncated_chain_is_detected_from_the_admins_copy() {
    let c = clinic();
    // Lee's device writes its first entries (the last one: the export that carried the
    // others); a copy of its data directory is kept at that point.
    lee_works(&c);
    let lee = device_id(&c.lee);
    let kept = events_of(&entries(&c.admin, &[]), &lee).len() + 1;
    let old = c.sandbox.file("lee-old");
    copy_dir(&c.lee.dir, &old);
    // It writes two more, which reach the admin.
    c.lee.ok(&["show", &c.thread]);
    c.lee.ok(&["show", &c.thread]);
    carry(&c.sandbox, &c.lee, &c.admin);
    let held = events_of(&entries(&c.admin, &[]), &lee).len();
    assert_eq!(held, kept + 2);
    assert!(c.admin.ok(&["audit", "verify"]).contains("intact"));

    // The old copy is restored (erasing those two) and the device goes on: its new
    // entry conflicts with the one the admin holds at that position.
    std::fs::remove_dir_all(&c.lee.dir).unwrap();
    copy_dir(&old, &c.lee.dir);
    c.lee.ok(&["show", &c.thread]);
    let report = carry(&c.sandbox, &c.lee, &c.admin);
    let refused = report["refused"].to_string();
    assert!(
        refused.contains("forked chain"),
        "the fork is refused: {report}"
    );
    let out = verify_fails(&c.admin);
    assert!(
        out.contains(&format!(
            "device {}…'s audit chain was truncated or rewritten at #{kept}",
            &lee[..8]
        )),
        "{out}"
    );
    // Recorded once, however often the device offers it again.
    carry(&c.sandbox, &c.lee, &c.admin);
    let conflicts: Vec<Value> = entries(&c.admin, &[])
        .into_iter()
        .filter(|e| e["event"] == "chain-conflict")
        .collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    // The admin's copy keeps the history the device tried to erase.
    assert_eq!(events_of(&entries(&c.admin, &[]), &lee).len(), held);
}

/// Waits (at most 30 s) until `admin`'s trail holds `want` entries of `member`.
fn eventually_audited(admin: &Device, member: &str, want: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events: Vec<String> = entries(admin, &["--member", member])
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_string())
            .collect();
        if want.iter().all(|w| events.iter().any(|e| e == w)) {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{member}'s trail lacks {want:?}: {events:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_trail_reaches_a_serving_admin_over_the_network() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    admin.ok(&["init", "--clinic", CLINIC, "--name", ADMIN]);
    let thread = clinical_thread(&admin);
    let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    serving.wait_until_serving(std::time::Duration::from_secs(20));
    let invite = admin.ok(&["invite", "--name", LEE, "--role", "clinician"]);
    let port = common::invitation_port(&invite);
    let lee = sandbox.device("lee");
    lee.ok(&["join", invite.trim(), "--no-mdns"]);
    lee.ok(&["show", &thread]);
    lee.ok(&["post", &thread, BODY]);
    let lee_serving = lee.serve_dialing(&port);
    let events = eventually_audited(&admin, LEE, &["unlock", "thread-viewed", "post"]);
    assert!(!events.is_empty());
    // The admin's own serve unlock and invitation are in its trail.
    let mine = eventually_audited(&admin, ADMIN, &["unlock", "invite-issued", "invite-used"]);
    assert!(mine.contains(&"member-added".to_string()), "{mine:?}");
    let out = admin.ok(&["audit"]);
    for secret in [PATIENT, TITLE, BODY] {
        assert!(!out.contains(secret), "{out}");
    }
    // Through the clinician's running serve, the trail is refused all the same.
    let err = lee.fail(&["audit"]);
    assert!(err.contains("admin"), "{err}");
    lee_serving.stop();
    serving.stop();
}

/// A modified client of Lee's device writes an audit entry that names the admin's
/// member ("emergency access by Ada") and hands it over in a bundle. Every envelope
/// check passes (Lee's device signed it at the next position of its own audit chain,
/// sealed to the admin), so only the rule that an entry speaks for its signing device's
/// member keeps it out: without it, the admin's trail and `--member Ada` listed the
/// forged access under Ada's name.
#[test]
fn attack_audit_impersonation() {
    use huddle::core::audit::{AuditEntry, AuditEvent, encode_entry, entry_key, seal_entry};
    use huddle::core::envelope::{Envelope, Header};
    use huddle::core::identity::DevicePublic;
    use huddle::core::ids::{LogId, MemberId, ThreadId};

    let c = clinic();
    lee_works(&c);
    let lee = device_id(&c.lee);
    let members = c.admin.json(&["members"]);
    let ada: MemberId = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == ADMIN)
        .and_then(|m| m["id"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    let admin_keys: DevicePublic = c.admin.keys().parse().unwrap();
    // Lee's device: its secret (the passphrase is known to this client) and the head
    // of its audit chain, read from its own bundle.
    let secret = huddle::node::Node::open(&c.lee.dir, common::PASS.as_bytes())
        .unwrap()
        .network_identity();
    let bundle = c.sandbox.file("lee.bundle");
    c.lee.export(&bundle);
    c.admin.import(&bundle);
    let (genesis, records) =
        huddle::node::bundle::read(std::fs::File::open(&bundle).unwrap()).unwrap();
    let head = records
        .iter()
        .filter_map(|r| Envelope::decode(r).ok())
        .filter(|e| e.header.log == LogId::Audit && e.header.author.to_hex() == lee)
        .max_by_key(|e| e.header.seq)
        .unwrap();
    let rng = &mut rand::rng();
    let key = entry_key(rng);
    let header = Header {
        seq: head.header.seq + 1,
        prev: Some(head.id()),
        key: huddle::core::replica::key_id(&key),
        at_ms: head.header.at_ms + 1,
        ..head.header.clone()
    };
    let thread: ThreadId = c.thread.parse().unwrap();
    let forged = AuditEntry {
        member: Some(ada),
        event: AuditEvent::EmergencyAccess {
            thread,
            reason: "opened by Ada".into(),
        },
    };
    let body = seal_entry(
        &secret,
        rng,
        &header,
        &key,
        &[admin_keys],
        &encode_entry(&forged),
    )
    .unwrap();
    let env = Envelope::sign(&secret, header, body);
    let planted = c.sandbox.file("planted.bundle");
    let mut writer =
        huddle::node::bundle::Writer::new(std::fs::File::create(&planted).unwrap(), &genesis)
            .unwrap();
    writer.record(&env.encode()).unwrap();
    writer.finish().unwrap();
    // The envelope itself is valid: the import takes it (it is Lee's to write).
    let report = c.admin.import(&planted);
    assert_eq!(report["accepted"], 1, "{report}");

    let trail = entries(&c.admin, &[]);
    assert!(
        !trail.iter().any(|e| e["event"] == "emergency-access"),
        "the forged entry is not in the trail: {trail:?}"
    );
    let adas = entries(&c.admin, &["--member", ADMIN]);
    assert!(
        !adas.iter().any(|e| e["device"] == lee.as_str()),
        "nothing Lee's device wrote is listed as Ada's: {adas:?}"
    );
    let out = verify_fails(&c.admin);
    assert!(
        out.contains(&format!(
            "device {}…: entry #{} names another member than its device's",
            &lee[..8],
            head.header.seq + 1
        )),
        "{out}"
    );
}
