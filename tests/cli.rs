//! End-to-end tests of the `huddle` command line: every test runs the real binary, one
//! process per command, against data directories in a temporary sandbox (never the OS
//! data directory), with the passphrase in `HUDDLE_PASSPHRASE`.
//!
//! Covered: the README tour across three devices (admin, a scheduler who holds a clinical
//! thread he may not read, a second clinician), persistence across processes, no
//! plaintext at rest or in bundles, bad input of every command, bundle import failures
//! (not a bundle, truncated, another clinic, not enrolled, a tampered envelope),
//! idempotent imports, a store in use, and damaged cache records in the sled store;
//! invitations listed and cancelled, locally and through a running `huddle serve`, and
//! joined by the invitation's addresses or by `--peer` (no mDNS); `huddle tasks`, due
//! dates and times in the computer's time zone (set per process with `TZ`), and help.

mod common;

use std::path::PathBuf;

use common::{BundleFile, Device, PASS, Sandbox, contains, fail_output, path_str, unhex};
use serde_json::{Value, json};

// Distinctive strings, so that finding one on disk can only mean a plaintext leak.
const CLINIC: &str = "Quillfeather Therapy Collective";
const ADMIN: &str = "Dana Okonkwo-Reyes";
const SAM: &str = "Samwise Kettleborough";
const LEE: &str = "Leopold Vantongeren";
const PATIENT: &str = "Zebulon Marchetti";
const CLINICAL_TITLE: &str = "Authorization renewal pending Zorblax";
const CLINICAL_NOTE: &str = "Insurer wants the Quixotic evaluation by Friday";
const TOPIC: &str = "Friday coverage Wexmoor";
const SCHEDULING_TITLE: &str = "Therapist out sick Plumbago";
const TASK_TEXT: &str = "Who can cover the Hollyhock 3pm?";
const URGENT_TEXT: &str = "Waiting room flooded at Brackenfell";
const REPLY_TEXT: &str = "Covered by the Thistledown locum";
/// Far enough ahead never to be refused as past.
const DUE: &str = "2099-12-04";

/// Every user-supplied string the tour writes, and the passphrase.
const SECRETS: &[&str] = &[
    CLINIC,
    ADMIN,
    SAM,
    LEE,
    PATIENT,
    CLINICAL_TITLE,
    CLINICAL_NOTE,
    TOPIC,
    SCHEDULING_TITLE,
    TASK_TEXT,
    URGENT_TEXT,
    REPLY_TEXT,
    PASS,
    // Single distinctive words, in case a string is stored split or re-encoded.
    "Quillfeather",
    "Okonkwo",
    "Kettleborough",
    "Vantongeren",
    "Marchetti",
    "Zorblax",
    "Quixotic",
    "Wexmoor",
    "Plumbago",
    "Hollyhock",
    "Brackenfell",
    "Thistledown",
];

/// A clinic founded on the admin's device: Sam (scheduler) and Lee (clinician) on the
/// roster but without devices; a clinical patient thread with one note; a scheduling
/// topic thread with a task for Sam and an urgent message.
struct Clinic {
    sandbox: Sandbox,
    admin: Device,
    clinical: String,
    scheduling: String,
    note: String,
    task: String,
    urgent: String,
}

/// Checks that `s` (a command's stdout) is exactly one lowercase hex id and returns it.
fn printed_id(s: &str, len: usize) -> String {
    let id = s.trim();
    assert_eq!(id.len(), len, "expected a {len}-digit id, got {s:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{s:?}"
    );
    assert_eq!(s, format!("{id}\n"), "only the id is printed");
    id.to_string()
}

impl Clinic {
    fn found() -> Clinic {
        let sandbox = Sandbox::new();
        let admin = sandbox.device("admin");
        let status = admin.json(&["init", "--clinic", CLINIC, "--name", ADMIN]);
        assert_eq!(status["clinic_name"], CLINIC);
        assert_eq!(status["member"], ADMIN);
        assert_eq!(status["role"], "clinician", "the default role");
        assert_eq!(status["admin"], true);
        assert_eq!(status["clinic_id"].as_str().map(str::len), Some(64));

        let added = admin.ok(&["member", "add", "--name", SAM, "--role", "scheduler"]);
        assert!(
            added.starts_with(&format!("added {SAM} as scheduler (member "))
                && added.contains(&format!("huddle device add --member \"{SAM}\"")),
            "says what it did and what comes next: {added}"
        );
        admin.id(&["member", "add", "--name", LEE, "--role", "clinician"], 32);

        let clinical = printed_id(
            &admin.ok(&[
                "thread",
                "new",
                "--patient",
                PATIENT,
                "--category",
                "clinical",
                "--title",
                CLINICAL_TITLE,
            ]),
            32,
        );
        let scheduling = admin.id(
            &[
                "thread",
                "new",
                "--topic",
                TOPIC,
                "--category",
                "scheduling",
                "--title",
                SCHEDULING_TITLE,
            ],
            32,
        );
        let note = printed_id(&admin.ok(&["post", &clinical, CLINICAL_NOTE]), 16);
        let task = admin.id(
            &[
                "post",
                &scheduling,
                TASK_TEXT,
                "--task",
                "--assignee",
                SAM,
                "--due",
                DUE,
            ],
            16,
        );
        let urgent = admin.id(&["post", &scheduling, URGENT_TEXT, "--urgent"], 16);
        Clinic {
            sandbox,
            admin,
            clinical,
            scheduling,
            note,
            task,
            urgent,
        }
    }

    /// The admin enrolls `device` for `member` with the keys `device key` printed there.
    fn enroll(&self, member: &str, device: &Device) {
        let keys = device.keys();
        let out = self
            .admin
            .ok(&["device", "add", "--member", member, "--key", &keys]);
        let id = device.status()["device"].as_str().unwrap().to_string();
        assert_eq!(
            out,
            format!(
                "enrolled device {id} for {member}; it syncs with the clinic once it meets one \
                 of its devices (`huddle serve` on both, same network)\n"
            ),
            "says what it did"
        );
    }

    /// Exports the admin's bundle to `name` in the sandbox.
    fn export(&self, name: &str) -> (PathBuf, u64) {
        let path = self.sandbox.file(name);
        let count = self.admin.export(&path);
        assert!(count > 0);
        (path, count)
    }
}

/// The README tour up to the point where Sam's and Lee's devices have imported the
/// admin's bundle.
struct Tour {
    clinic: Clinic,
    sam: Device,
    lee: Device,
    bundle: PathBuf,
    exported: u64,
}

impl Tour {
    fn run() -> Tour {
        let clinic = Clinic::found();
        let sam = clinic.sandbox.device("sam");
        let lee = clinic.sandbox.device("lee");
        for device in [&sam, &lee] {
            device.keys();
            assert_eq!(device.status()["clinic_id"], Value::Null);
            assert!(device.ok(&["status"]).contains("not part of a clinic yet"));
        }
        clinic.enroll(SAM, &sam);
        clinic.enroll(LEE, &lee);
        let (bundle, exported) = clinic.export("tour.bundle");
        let clinic_id = clinic.admin.status()["clinic_id"].clone();
        for device in [&sam, &lee] {
            let report = device.import(&bundle);
            assert_eq!(report["joined_clinic"], clinic_id);
            assert_eq!(report["accepted"], exported, "{report}");
            assert_eq!(report["duplicate"], 0);
            assert_eq!(report["waiting"], 0);
        }
        Tour {
            clinic,
            sam,
            lee,
            bundle,
            exported,
        }
    }

    fn admin(&self) -> &Device {
        &self.clinic.admin
    }
}

fn message<'a>(thread: &'a Value, id: &str) -> &'a Value {
    thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("message {id} not in {thread}"))
}

fn bodies(thread: &Value) -> Vec<String> {
    thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body").to_string())
        .collect()
}

/// What every reader of a thread must agree on (everything but per-reader unread flags).
fn shared(thread: &Value) -> Value {
    let mut t = thread.clone();
    for m in t["messages"].as_array_mut().expect("messages") {
        m.as_object_mut().expect("message").remove("unread");
    }
    t
}

// ---- 1. the README tour ----

#[test]
fn readme_tour_across_admin_scheduler_and_clinician() {
    let tour = Tour::run();
    let c = &tour.clinic;
    let (admin, sam, lee) = (&c.admin, &tour.sam, &tour.lee);

    // The admin wrote everything, so nothing is unread on the admin's device.
    let admin_sched = admin.thread_entry(&c.scheduling);
    assert_eq!(admin_sched["unread"], 0);
    assert_eq!(admin_sched["messages"], 2);
    assert_eq!(admin_sched["open_tasks"], 1);

    // Lee, a clinician, reads both threads; every message is unread for him.
    let threads = lee.threads();
    assert_eq!(threads.len(), 2, "{threads:?}");
    let clinical = lee.thread_entry(&c.clinical);
    assert_eq!(clinical["readable"], true);
    assert_eq!(clinical["category"], "clinical");
    assert_eq!(
        clinical["subject"],
        json!({"kind": "patient", "label": PATIENT})
    );
    assert_eq!(clinical["title"], CLINICAL_TITLE);
    assert_eq!(clinical["messages"], 1);
    assert_eq!(clinical["unread"], 1);
    assert_eq!(clinical["urgent_unread"], 0);
    let sched = lee.thread_entry(&c.scheduling);
    assert_eq!(sched["readable"], true);
    assert_eq!(sched["category"], "scheduling");
    assert_eq!(sched["subject"], json!({"kind": "topic", "label": TOPIC}));
    assert_eq!(sched["title"], SCHEDULING_TITLE);
    assert_eq!(sched["messages"], 2);
    assert_eq!(sched["unread"], 2);
    assert_eq!(sched["urgent_unread"], 1);
    assert_eq!(sched["open_tasks"], 1);

    let lee_clinical = lee.show(&c.clinical);
    assert_eq!(bodies(&lee_clinical), [CLINICAL_NOTE]);
    let note = message(&lee_clinical, &c.note);
    assert_eq!(note["author"], ADMIN);
    assert_eq!(note["priority"], "normal");
    assert_eq!(note["unread"], true);
    assert_eq!(note["task"], Value::Null);
    assert_eq!(lee_clinical["created_by"], ADMIN);
    let lee_sched = lee.show(&c.scheduling);
    let task = message(&lee_sched, &c.task);
    assert_eq!(task["body"], TASK_TEXT);
    assert_eq!(task["task"]["assignee"], SAM);
    assert_eq!(task["task"]["due"], DUE);
    assert_eq!(task["task"]["status"], "open");
    assert_eq!(task["task"]["done_by"], Value::Null);
    let urgent = message(&lee_sched, &c.urgent);
    assert_eq!(urgent["body"], URGENT_TEXT);
    assert_eq!(urgent["priority"], "urgent");
    // Lee sees exactly what the admin sees.
    assert_eq!(shared(&lee_sched), shared(&admin.show(&c.scheduling)));
    assert_eq!(shared(&lee_clinical), shared(&admin.show(&c.clinical)));
    let text = lee.ok(&["show", &c.scheduling]);
    for needle in [
        TASK_TEXT,
        URGENT_TEXT,
        "URGENT",
        "(unread)",
        &format!("task for {SAM}, due {DUE}: open"),
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }

    // Sam, a scheduler, holds the clinical thread but may not read it.
    let threads = sam.threads();
    assert_eq!(threads.len(), 2, "{threads:?}");
    let locked = sam.thread_entry(&c.clinical);
    assert_eq!(locked["readable"], false);
    assert_eq!(locked["category"], "clinical");
    assert_eq!(locked["subject"], Value::Null);
    assert_eq!(locked["title"], Value::Null);
    assert!(locked["envelopes"].as_u64().unwrap() > 0, "{locked}");
    let sched = sam.thread_entry(&c.scheduling);
    assert_eq!(sched["readable"], true);
    assert_eq!(sched["unread"], 2);
    assert_eq!(sched["urgent_unread"], 1);
    assert_eq!(sched["open_tasks"], 1);
    let text = sam.ok(&["threads"]);
    assert!(text.contains("[locked] clinical thread"), "{text}");
    assert!(text.contains(&format!("topic {TOPIC} — {SCHEDULING_TITLE}")));
    assert!(text.contains("[1 urgent]") && text.contains("[1 open task(s)]"));
    assert!(!text.contains(PATIENT) && !text.contains(CLINICAL_TITLE));
    for cmd in [
        &["show", &c.clinical][..],
        &["read", &c.clinical],
        &["post", &c.clinical, "hello"],
        &["task", "done", &c.clinical, &c.note],
    ] {
        let err = sam.fail(cmd);
        assert!(
            err.contains("this thread is clinical: your role may not read it"),
            "{cmd:?}: {err}"
        );
        assert!(!err.contains(CLINICAL_NOTE) && !err.contains(PATIENT));
    }
    let err = sam.fail(&[
        "thread",
        "new",
        "--patient",
        "X",
        "--category",
        "clinical",
        "--title",
        "t",
    ]);
    assert!(err.contains("may not read clinical threads"), "{err}");
    let sam_sched = sam.show(&c.scheduling);
    assert_eq!(shared(&sam_sched), shared(&admin.show(&c.scheduling)));

    // Sam reads the thread and completes his task, using id prefixes.
    assert_eq!(sam.ok(&["read", &c.scheduling]), "2 marked read\n");
    let sched = sam.thread_entry(&c.scheduling);
    assert_eq!(
        (sched["unread"].clone(), sched["urgent_unread"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(sam.ok(&["read", &c.scheduling]), "0 marked read\n");
    let done = sam.ok(&["task", "done", &c.scheduling[..8], &c.task[..6]]);
    assert_eq!(done, format!("{}\n", c.task));
    assert_eq!(sam.thread_entry(&c.scheduling)["open_tasks"], 0);
    let reply = sam.id(&["post", &c.scheduling[..5], REPLY_TEXT], 16);
    assert_eq!(sam.status()["role"], "scheduler");
    assert!(
        sam.ok(&["status"])
            .starts_with(&format!("{CLINIC}: you are {SAM} (scheduler)\n"))
    );

    // Sam's bundle goes back to the admin.
    let back = c.sandbox.file("back.bundle");
    sam.export(&back);
    let report = admin.import(&back);
    // Sam's device also recorded what he did in its audit trail (see tests/audit.rs).
    let sam_id = sam.status()["device"].as_str().unwrap().to_string();
    let audited = audit_envelopes(&back, Some(&sam_id));
    assert!(audited >= 2, "task done and reply are audited");
    assert_eq!(
        report["accepted"],
        3 + audited,
        "read, task done, reply: {report}"
    );
    assert_eq!(report["waiting"], 0);
    let t = admin.show(&c.scheduling);
    let task = message(&t, &c.task);
    assert_eq!(task["task"]["status"], "done");
    assert_eq!(task["task"]["done_by"], SAM);
    assert!(task["task"]["done_ms"].as_u64().is_some());
    assert_eq!(task["read_by"], json!([SAM]));
    assert_eq!(message(&t, &c.urgent)["read_by"], json!([SAM]));
    let r = message(&t, &reply);
    assert_eq!(r["author"], SAM);
    assert_eq!(r["body"], REPLY_TEXT);
    assert_eq!(r["unread"], true);
    let text = admin.ok(&["show", &c.scheduling]);
    assert!(text.contains(&format!("done by {SAM}")), "{text}");
    assert!(text.contains(&format!("read by: {SAM}")), "{text}");
    let sched = admin.thread_entry(&c.scheduling);
    assert_eq!(sched["messages"], 3);
    assert_eq!(sched["unread"], 1, "Sam's reply is new to the admin");
    assert_eq!(sched["open_tasks"], 0);
    assert_eq!(admin.ok(&["read", &c.scheduling]), "1 marked read\n");
    assert_eq!(admin.thread_entry(&c.scheduling)["unread"], 0);
    let clinical = admin.thread_entry(&c.clinical);
    assert_eq!(
        (clinical["messages"].clone(), clinical["unread"].clone()),
        (json!(1), json!(0))
    );

    // Lee catches up through a new bundle from the admin.
    let (again, _) = c.export("again.bundle");
    lee.import(&again);
    let sched = lee.thread_entry(&c.scheduling);
    assert_eq!(sched["messages"], 3);
    assert_eq!(sched["unread"], 3, "Lee has read nothing yet");
    assert_eq!(sched["open_tasks"], 0);
    assert_eq!(
        shared(&lee.show(&c.scheduling)),
        shared(&admin.show(&c.scheduling))
    );

    // The roster, as every device sees it.
    let members = admin.json(&["members"]);
    let names: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    for name in [ADMIN, SAM, LEE] {
        assert!(names.contains(&name), "{members}");
    }
    for m in members.as_array().unwrap() {
        assert_eq!(m["devices"].as_array().unwrap().len(), 1, "{m}");
        assert_eq!(m["admin"], m["name"] == ADMIN, "{m}");
    }
    assert_eq!(sam.json(&["members"]), members);
    let text = admin.ok(&["members"]);
    assert!(
        text.contains(&format!("{ADMIN} (clinician, admin) · 1 device(s)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{SAM} (scheduler) · 1 device(s)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{LEE} (clinician) · 1 device(s)")),
        "{text}"
    );
}

/// A scheduler's device carries clinical envelopes it cannot read: Lee can join the
/// clinic and read the clinical thread from a bundle that Sam exported.
#[test]
fn scheduler_forwards_clinical_threads_it_cannot_read() {
    let c = Clinic::found();
    let sam = c.sandbox.device("sam");
    let lee = c.sandbox.device("lee");
    c.enroll(SAM, &sam);
    c.enroll(LEE, &lee);
    let (bundle, _) = c.export("admin.bundle");
    sam.import(&bundle);
    let from_sam = c.sandbox.file("from-sam.bundle");
    sam.export(&from_sam);
    let report = lee.import(&from_sam);
    assert!(report["joined_clinic"].is_string(), "{report}");
    assert_eq!(
        shared(&lee.show(&c.clinical)),
        shared(&c.admin.show(&c.clinical))
    );
    assert_eq!(sam.thread_entry(&c.clinical)["readable"], false);
}

// ---- 2. every command is a new process: nothing is lost between them ----

#[test]
fn views_are_complete_and_identical_across_restarts() {
    let tour = Tour::run();
    let c = &tour.clinic;
    let views: &[&[&str]] = &[
        &["threads"],
        &["--json", "threads"],
        &["show", &c.clinical],
        &["--json", "show", &c.clinical],
        &["show", &c.scheduling],
        &["--json", "show", &c.scheduling],
        &["members"],
        &["--json", "status"],
    ];
    let snapshot = |d: &Device| -> Vec<String> {
        views
            .iter()
            .map(|v| without_envelope_count(d.ok(v)))
            .collect()
    };
    let admin_first = snapshot(&c.admin);
    let sam_first = snapshot_sam(&tour.sam, c);
    for round in 0..3 {
        // Commands that must not change any view: re-import, export, nothing to read.
        tour.sam.import(&tour.bundle);
        c.admin
            .export(&c.sandbox.file(&format!("round{round}.bundle")));
        assert_eq!(c.admin.ok(&["read", &c.clinical]), "0 marked read\n");
        assert_eq!(snapshot(&c.admin), admin_first, "admin, round {round}");
        assert_eq!(snapshot_sam(&tour.sam, c), sam_first, "sam, round {round}");
    }
    for text in [&admin_first[2], &admin_first[4]] {
        assert!(
            text.starts_with("patient ") || text.starts_with("topic "),
            "{text}"
        );
    }
    assert!(admin_first[2].contains(CLINICAL_NOTE) && admin_first[2].contains(PATIENT));
    assert!(admin_first[4].contains(TASK_TEXT) && admin_first[4].contains(URGENT_TEXT));

    // A new message shows up after a restart, with everything before it.
    let before = c.admin.show(&c.clinical);
    let id = c.admin.id(&["post", &c.clinical, "Follow-up booked"], 16);
    let after = c.admin.show(&c.clinical);
    assert_eq!(after["messages"][0], before["messages"][0]);
    assert_eq!(message(&after, &id)["body"], "Follow-up booked");
    assert_eq!(c.admin.thread_entry(&c.clinical)["messages"], 2);
}

fn snapshot_sam(sam: &Device, c: &Clinic) -> Vec<String> {
    [
        &["threads"][..],
        &["--json", "threads"],
        &["--json", "show", &c.scheduling],
        &["--json", "status"],
    ]
    .iter()
    .map(|v| without_envelope_count(sam.ok(v)))
    .collect()
}

/// The envelope count of a `--json status` output.
fn c_envelopes(status: &str) -> u64 {
    serde_json::from_str::<Value>(status).unwrap()["envelopes"]
        .as_u64()
        .unwrap()
}

/// A view without the store's envelope count: showing a thread and exporting a bundle
/// are recorded in the audit trail, one envelope each, so the count grows with views.
fn without_envelope_count(view: String) -> String {
    if !view.contains("\"clinic_id\"") {
        return view;
    }
    view.lines()
        .filter(|l| !l.trim_start().starts_with("\"envelopes\":"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Audit envelopes in a bundle (written by `device`, hex, if given): every audited
/// action adds one (see tests/audit.rs).
fn audit_envelopes(bundle: &std::path::Path, device: Option<&str>) -> u64 {
    BundleFile::read(bundle)
        .records
        .iter()
        .filter_map(|r| huddle::core::envelope::Envelope::decode(r).ok())
        .filter(|e| {
            e.header.log == huddle::core::ids::LogId::Audit
                && device.is_none_or(|d| e.header.author.to_hex() == d)
        })
        .count() as u64
}

// ---- 3. no plaintext at rest or in bundles ----

#[test]
fn no_plaintext_in_data_directories_or_bundles() {
    let tour = Tour::run();
    let c = &tour.clinic;
    tour.sam.ok(&["read", &c.scheduling]);
    tour.sam.ok(&["task", "done", &c.scheduling, &c.task]);
    tour.sam.ok(&["post", &c.scheduling, REPLY_TEXT]);
    let back = c.sandbox.file("back.bundle");
    tour.sam.export(&back);
    c.admin.import(&back);
    tour.lee.import(&c.export("final.bundle").0);
    // Views and caches are written by listing and showing.
    for d in [&c.admin, &tour.sam, &tour.lee] {
        d.ok(&["threads"]);
        d.ok(&["show", &c.scheduling]);
    }
    // Positive control: the strings really are in the clinic's data.
    let shown = format!(
        "{}{}{}",
        tour.lee.ok(&["show", &c.clinical]),
        tour.lee.ok(&["show", &c.scheduling]),
        tour.lee.ok(&["status"]),
    );
    for s in [
        PATIENT,
        CLINICAL_TITLE,
        CLINICAL_NOTE,
        TOPIC,
        TASK_TEXT,
        REPLY_TEXT,
        CLINIC,
    ] {
        assert!(shown.contains(s), "`{s}` was never posted");
    }

    let mut files = Vec::new();
    for d in [&c.admin, &tour.sam, &tour.lee] {
        let found = d.files();
        assert!(!found.is_empty(), "{} holds no files", d.dir.display());
        files.extend(found);
    }
    let bundles = ["tour.bundle", "back.bundle", "final.bundle"].map(|b| c.sandbox.file(b));
    files.extend(bundles);
    let mut bytes_checked = 0;
    for file in &files {
        let bytes = std::fs::read(file).expect("read file");
        bytes_checked += bytes.len();
        for s in SECRETS {
            assert!(
                !contains(&bytes, s.as_bytes()),
                "`{s}` is in plaintext in {}",
                file.display()
            );
        }
    }
    assert!(bytes_checked > 10_000, "only {bytes_checked} bytes checked");
}

// ---- 4. bad input ----

#[test]
fn wrong_passphrase_is_refused_and_changes_nothing() {
    let c = Clinic::found();
    let before: Vec<String> = [
        &["--json", "threads"][..],
        &["--json", "show", &c.clinical],
        &["--json", "show", &c.scheduling],
        &["--json", "status"],
    ]
    .iter()
    .map(|a| c.admin.ok(a))
    .collect();
    for args in [
        &["threads"][..],
        &["status"],
        &["show", &c.clinical],
        &["post", &c.clinical, "written with the wrong passphrase"],
        &["member", "add", "--name", "Intruder", "--role", "billing"],
        &["device", "key"],
    ] {
        for pass in ["not the passphrase", "x"] {
            let out = c.admin.run_with_pass(pass, args);
            let err = fail_output(&out, args);
            assert!(err.contains("wrong passphrase"), "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?}");
            // The delay after repeated failures is tested in tests/passphrase.rs.
            let _ = std::fs::remove_file(c.admin.dir.join("unlock-failures"));
        }
    }
    let after: Vec<String> = [
        &["--json", "threads"][..],
        &["--json", "show", &c.clinical],
        &["--json", "show", &c.scheduling],
        &["--json", "status"],
    ]
    .iter()
    .map(|a| c.admin.ok(a))
    .collect();
    // The two `show`s of each listing are recorded in the audit trail; the wrong
    // passphrases wrote nothing.
    let envelopes = |v: &[String]| c_envelopes(&v[3]);
    assert_eq!(envelopes(&after), envelopes(&before) + 2);
    let strip =
        |v: Vec<String>| -> Vec<String> { v.into_iter().map(without_envelope_count).collect() };
    assert_eq!(strip(after), strip(before));
    assert_eq!(c.admin.json(&["members"]).as_array().unwrap().len(), 3);
}

#[test]
fn missing_data_directory_is_reported_and_not_created() {
    let sandbox = Sandbox::new();
    let nowhere = sandbox.device("nowhere");
    let bundle = sandbox.file("some.bundle");
    for args in [
        &["status"][..],
        &["threads"],
        &["members"],
        &["show", "abcd"],
        &["read", "abcd"],
        &["post", "abcd", "hello"],
        &["task", "done", "abcd", "ef01"],
        &[
            "thread",
            "new",
            "--topic",
            "t",
            "--category",
            "operations",
            "--title",
            "t",
        ],
        &["member", "add", "--name", "N", "--role", "billing"],
        &["bundle", "export", path_str(&bundle)],
        &["bundle", "import", path_str(&bundle)],
    ] {
        let err = nowhere.fail(args);
        assert!(err.contains("no Huddle data at"), "{args:?}: {err}");
        assert!(!nowhere.dir.exists(), "{args:?} created the data directory");
    }
    assert!(!bundle.exists());
}

#[test]
fn init_twice_fails_and_short_passphrases_are_refused() {
    let c = Clinic::found();
    let before = c.admin.status();
    let err = c
        .admin
        .fail(&["init", "--clinic", "Another clinic", "--name", "Someone"]);
    assert!(err.contains("already belongs to a clinic"), "{err}");
    assert_eq!(c.admin.status(), before);

    let fresh = c.sandbox.device("fresh");
    for args in [
        &["init", "--clinic", "Small clinic", "--name", "Kim"][..],
        &["device", "key"],
    ] {
        let out = fresh.run_with_pass("short", args);
        let err = fail_output(&out, args);
        assert!(err.contains("at least 12 characters"), "{args:?}: {err}");
        assert!(fresh.fail(&["status"]).contains("no Huddle data at"));
    }
    // A failed attempt leaves nothing in the way of a good one.
    let status = fresh.json(&[
        "init",
        "--clinic",
        "Small clinic",
        "--name",
        "Kim",
        "--role",
        "front-desk",
    ]);
    assert_eq!(status["role"], "scheduler");
    assert_eq!(status["admin"], true);

    let err = c
        .sandbox
        .device("other")
        .fail(&["init", "--clinic", "X", "--name", "Y", "--role", "nurse"]);
    assert!(err.contains("unknown role `nurse`"), "{err}");
}

#[test]
fn devices_without_a_clinic_say_so() {
    let sandbox = Sandbox::new();
    let d = sandbox.device("lonely");
    let first = d.keys();
    assert_eq!(d.keys(), first, "the keys are stable");
    let text = d.ok(&["device", "key"]);
    assert_eq!(text, format!("{first}\n"));
    assert!(d.ok(&["status"]).contains("not part of a clinic yet"));
    let bundle = sandbox.file("x.bundle");
    for args in [
        &["threads"][..],
        &["members"],
        &["show", "abcd"],
        &["bundle", "export", path_str(&bundle)],
        &[
            "thread",
            "new",
            "--topic",
            "t",
            "--category",
            "operations",
            "--title",
            "t",
        ],
    ] {
        let err = d.fail(args);
        assert!(err.contains("not part of a clinic yet"), "{args:?}: {err}");
    }
    assert!(!bundle.exists());
}

#[test]
fn thread_and_message_references() {
    let c = Clinic::found();
    let admin = &c.admin;
    let unknown = "0123456789abcdef0123456789abcdef";
    let unknown = if c.clinical.starts_with("0123") || c.scheduling.starts_with("0123") {
        "fedcba9876543210fedcba9876543210"
    } else {
        unknown
    };
    for thread in [unknown, &unknown[..6], &c.clinical[..3], "", "not-hex"] {
        for args in [
            &["show", thread][..],
            &["read", thread],
            &["post", thread, "hello"],
            &["task", "done", thread, &c.task],
        ] {
            let err = admin.fail(args);
            assert!(err.contains("no thread matches"), "{args:?}: {err}");
        }
    }
    // Four characters are enough, in either case.
    assert_eq!(admin.show(&c.clinical[..4])["id"], c.clinical);
    assert_eq!(admin.show(&c.clinical.to_uppercase())["id"], c.clinical);

    // Message references.
    let err = admin.fail(&["task", "done", &c.scheduling, "ffffffffffffffff0"]);
    assert!(err.contains("no message matches"), "{err}");
    // An empty reference would match every message: never accepted.
    let err = admin.fail(&["task", "done", &c.scheduling, ""]);
    assert!(err.contains("at least 4 characters"), "{err}");
    let err = admin.fail(&["task", "done", &c.scheduling, &c.urgent]);
    assert!(err.contains("has no task"), "{err}");
    // A message of another thread is not found.
    let err = admin.fail(&["task", "done", &c.clinical, &c.task]);
    assert!(err.contains("no message matches"), "{err}");

    // With 17 messages, two share a first hex digit: a one-character prefix would be
    // ambiguous, and prefixes under four characters are refused outright.
    for i in 0..15 {
        admin.ok(&["post", &c.scheduling, &format!("filler {i}")]);
    }
    let ids: Vec<String> = admin.show(&c.scheduling)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 17);
    let shared_digit = ids
        .iter()
        .map(|id| &id[..1])
        .find(|d| ids.iter().filter(|id| id.starts_with(d)).count() > 1)
        .expect("pigeonhole");
    let err = admin.fail(&["task", "done", &c.scheduling, shared_digit]);
    assert!(err.contains("at least 4 characters"), "{err}");
    assert_eq!(admin.thread_entry(&c.scheduling)["open_tasks"], 1);
}

#[test]
fn posting_checks_its_input_and_posts_nothing_on_error() {
    let c = Clinic::found();
    let admin = &c.admin;
    let before = admin.show(&c.scheduling);
    let t = c.scheduling.as_str();

    let err = admin.fail(&["post", t, ""]);
    assert!(err.contains("the message is empty"), "{err}");
    let err = admin.fail(&["post", t, "  \n\t "]);
    assert!(err.contains("the message is empty"), "{err}");

    // Argument errors (exit code 2) name what is missing.
    for (args, needle) in [
        (&["post", t, "x", "--task"][..], "--assignee"),
        (&["post", t, "x", "--task", "--assignee", SAM], "--due"),
        (&["post", t, "x", "--task", "--due", DUE], "--assignee"),
        (&["post", t, "x", "--assignee", SAM, "--due", DUE], "--task"),
        (&["post", t], "<TEXT>"),
    ] {
        let out = admin.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            common::describe(&out)
        );
        let err = common::stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    for due in ["2026-13-01", "2026-02-30", "tomorrow", "04/12/2026", ""] {
        let err = admin.fail(&["post", t, "x", "--task", "--assignee", SAM, "--due", due]);
        assert!(
            err.contains("is not a date (expected YYYY-MM-DD)"),
            "{due}: {err}"
        );
    }
    let err = admin.fail(&[
        "post",
        t,
        "x",
        "--task",
        "--assignee",
        "Nobody",
        "--due",
        DUE,
    ]);
    assert!(err.contains("no active member named `Nobody`"), "{err}");

    // A task in a clinical thread cannot go to a scheduler, who could never read it.
    let clinical_before = admin.show(&c.clinical);
    let err = admin.fail(&[
        "post",
        &c.clinical,
        "x",
        "--task",
        "--assignee",
        SAM,
        "--due",
        DUE,
    ]);
    assert!(
        err.contains("role may not read clinical threads, so the task cannot be theirs"),
        "{err}"
    );
    assert_eq!(
        admin.show(&c.clinical),
        clinical_before,
        "nothing was posted"
    );

    assert_eq!(admin.show(&c.scheduling), before, "nothing was posted");
}

#[test]
fn thread_and_member_arguments_are_checked() {
    let c = Clinic::found();
    let admin = &c.admin;
    let threads = admin.threads();
    let members = admin.json(&["members"]);

    let out = admin.run(&[
        "thread",
        "new",
        "--topic",
        "t",
        "--category",
        "legal",
        "--title",
        "t",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("unknown category `legal`"));
    for args in [
        &["thread", "new", "--category", "clinical", "--title", "t"][..],
        &[
            "thread",
            "new",
            "--topic",
            "a",
            "--patient",
            "b",
            "--category",
            "clinical",
            "--title",
            "t",
        ],
        &["thread", "new", "--topic", "a", "--category", "clinical"],
    ] {
        let out = admin.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    for args in [
        &[
            "thread",
            "new",
            "--topic",
            " ",
            "--category",
            "clinical",
            "--title",
            "t",
        ][..],
        &[
            "thread",
            "new",
            "--patient",
            "P",
            "--category",
            "clinical",
            "--title",
            "",
        ],
    ] {
        let err = admin.fail(args);
        assert!(err.contains("must not be empty"), "{args:?}: {err}");
    }
    // A clinician may not start a billing thread.
    let err = admin.fail(&[
        "thread",
        "new",
        "--topic",
        "Invoice",
        "--category",
        "billing",
        "--title",
        "t",
    ]);
    assert!(err.contains("may not read billing threads"), "{err}");

    let out = admin.run(&["member", "add", "--name", "N", "--role", "nurse"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("unknown role `nurse`"));
    let err = admin.fail(&["member", "add", "--name", SAM, "--role", "billing"]);
    assert!(err.contains("already exists"), "{err}");
    let err = admin.fail(&["member", "add", "--name", "", "--role", "billing"]);
    assert!(err.contains("must not be empty"), "{err}");

    assert_eq!(admin.threads(), threads);
    assert_eq!(admin.json(&["members"]), members);

    // `--admin` and the role are recorded as given.
    admin.id(
        &[
            "member", "add", "--name", "Bea", "--role", "billing", "--admin",
        ],
        32,
    );
    let bea = admin
        .json(&["members"])
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Bea")
        .cloned()
        .unwrap();
    assert_eq!(
        (bea["role"].clone(), bea["admin"].clone()),
        (json!("billing"), json!(true))
    );
}

#[test]
fn only_admins_change_the_roster() {
    let tour = Tour::run();
    let c = &tour.clinic;
    let sam = &tour.sam;
    let members = sam.json(&["members"]);
    let envelopes = sam.status()["envelopes"].clone();
    let err = sam.fail(&[
        "member", "add", "--name", "Mallory", "--role", "billing", "--admin",
    ]);
    assert!(err.contains("only an admin may change the roster"), "{err}");
    let stranger = c.sandbox.device("stranger");
    let keys = stranger.keys();
    let err = sam.fail(&["device", "add", "--member", SAM, "--key", &keys]);
    assert!(err.contains("only an admin may change the roster"), "{err}");
    assert_eq!(sam.json(&["members"]), members);
    assert_eq!(sam.status()["envelopes"], envelopes, "nothing was written");

    // Nothing reaches the admin either.
    let back = c.sandbox.file("back.bundle");
    sam.export(&back);
    let report = c.admin.import(&back);
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(c.admin.json(&["members"]), members);
}

#[test]
fn device_add_checks_the_key_and_the_member() {
    let c = Clinic::found();
    let admin = &c.admin;
    let other = c.sandbox.device("other");
    let keys = other.keys();
    let members = admin.json(&["members"]);

    // Last hex digit changed: the checksum no longer matches.
    let mut garbled = keys.clone();
    let last = garbled.pop().unwrap();
    garbled.push(if last == '0' { '1' } else { '0' });
    let no_prefix = keys.trim_start_matches("huddle-device:").to_string();
    let short = keys[..keys.len() - 2].to_string();
    let mut not_hex = keys.clone();
    not_hex.replace_range(20..21, "z");
    for (key, needle) in [
        (garbled.as_str(), "checksum does not match"),
        (no_prefix.as_str(), "not a Huddle device key"),
        (short.as_str(), "not a Huddle device key"),
        (not_hex.as_str(), "not a Huddle device key"),
        ("", "not a Huddle device key"),
        ("huddle-device:", "not a Huddle device key"),
    ] {
        let out = admin.run(&["device", "add", "--member", LEE, "--key", key]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{key}: {}",
            common::describe(&out)
        );
        let err = common::stderr(&out);
        assert!(err.contains(needle), "{key}: {err}");
    }
    let err = admin.fail(&["device", "add", "--member", "Nobody", "--key", &keys]);
    assert!(err.contains("no active member named `Nobody`"), "{err}");
    assert_eq!(admin.json(&["members"]), members);

    c.enroll(LEE, &other);
    let err = admin.fail(&["device", "add", "--member", SAM, "--key", &keys]);
    assert!(err.contains("already enrolled"), "{err}");
}

// ---- 4. bundle import failures ----

#[test]
fn importing_something_that_is_not_a_good_bundle() {
    let c = Clinic::found();
    let lee = c.sandbox.device("lee");
    c.enroll(LEE, &lee);
    let (good, _) = c.export("good.bundle");
    let bytes = std::fs::read(&good).unwrap();
    let admin_before = c.admin.threads();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "zip.bundle",
            b"PK\x03\x04 a zip file".to_vec(),
            "not a Huddle bundle",
        ),
        ("empty.bundle", Vec::new(), "not a Huddle bundle"),
        (
            "half.bundle",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated or damaged",
        ),
        (
            "short.bundle",
            bytes[..bytes.len() - 1].to_vec(),
            "truncated or damaged",
        ),
        ("magic.bundle", bytes[..20].to_vec(), "truncated or damaged"),
        (
            "long.bundle",
            [&bytes[..], b"x"].concat(),
            "truncated or damaged",
        ),
    ];
    for (name, content, needle) in cases {
        let path = c.sandbox.file(name);
        std::fs::write(&path, content).unwrap();
        for device in [&lee, &c.admin] {
            let err = device.fail(&["bundle", "import", path_str(&path)]);
            assert!(err.contains(needle), "{name}: {err}");
        }
        assert_eq!(lee.status()["clinic_id"], Value::Null, "{name}");
    }
    // A well-formed file whose genesis has been altered.
    let mut file = BundleFile::read(&good);
    let mid = file.genesis.len() / 2;
    file.genesis[mid] ^= 0x01;
    let forged = c.sandbox.file("forged-genesis.bundle");
    file.write(&forged);
    for device in [&lee, &c.admin] {
        let err = device.fail(&["bundle", "import", path_str(&forged)]);
        assert!(err.contains("the bundle's genesis is invalid"), "{err}");
    }
    assert_eq!(lee.status()["clinic_id"], Value::Null);

    let err = lee.fail(&["bundle", "import", path_str(&c.sandbox.file("missing"))]);
    assert!(err.contains("bundle I/O"), "{err}");
    assert_eq!(c.admin.threads(), admin_before);

    // The good bundle still imports after all that.
    lee.import(&good);
    assert_eq!(lee.threads().len(), 2);
}

#[test]
fn a_bundle_from_another_clinic_changes_nothing() {
    let c = Clinic::found();
    let lee = c.sandbox.device("lee");
    c.enroll(LEE, &lee);
    lee.import(&c.export("ours.bundle").0);

    let other = c.sandbox.device("other-admin");
    other.json(&["init", "--clinic", "Elsewhere", "--name", "Olga"]);
    other.id(
        &[
            "thread",
            "new",
            "--topic",
            "Theirs",
            "--category",
            "operations",
            "--title",
            "t",
        ],
        32,
    );
    let theirs = c.sandbox.file("theirs.bundle");
    other.export(&theirs);

    for device in [&lee, &c.admin] {
        let threads = device.json(&["threads"]);
        let status = device.status();
        let err = device.fail(&["bundle", "import", path_str(&theirs)]);
        assert!(err.contains("belongs to another clinic"), "{err}");
        assert_eq!(device.json(&["threads"]), threads);
        assert_eq!(device.status(), status);
    }
}

#[test]
fn a_bundle_that_does_not_enroll_the_device_is_refused() {
    let c = Clinic::found();
    let (bundle, exported) = c.export("admin.bundle");
    let newcomer = c.sandbox.device("newcomer");
    newcomer.keys();
    let err = newcomer.fail(&["bundle", "import", path_str(&bundle)]);
    assert!(err.contains("not enrolled in the bundle's clinic"), "{err}");
    let status = newcomer.status();
    assert_eq!(status["clinic_id"], Value::Null);
    assert_eq!(status["envelopes"], 0);
    assert!(
        newcomer
            .fail(&["threads"])
            .contains("not part of a clinic yet")
    );

    // Once enrolled, the next bundle lets it in.
    c.enroll(LEE, &newcomer);
    let (bundle, now) = c.export("admin2.bundle");
    assert!(now > exported);
    let report = newcomer.import(&bundle);
    assert!(report["joined_clinic"].is_string());
    assert_eq!(newcomer.status()["member"], LEE);
}

#[test]
fn a_tampered_envelope_is_refused_and_the_rest_imported() {
    let c = Clinic::found();
    let lee = c.sandbox.device("lee");
    c.enroll(LEE, &lee);
    lee.import(&c.export("first.bundle").0);

    // Two new messages; the clinical one will be altered in transit.
    let altered = c
        .admin
        .id(&["post", &c.clinical, "Evaluation received"], 16);
    let intact = c.admin.id(&["post", &c.scheduling, "Coverage found"], 16);
    let (good, _) = c.export("second.bundle");
    let mut file = BundleFile::read(&good);
    // Records are ordered by log, author and sequence; the admin is the only author in
    // the clinical thread, so its last record there is the newest message.
    let thread_bytes = unhex(&c.clinical);
    let i = file
        .records
        .iter()
        .rposition(|r| contains(r, &thread_bytes))
        .expect("a clinical envelope");
    let rec = &mut file.records[i];
    let at = rec.len() - 10; // inside the signature
    rec[at] ^= 0x20;
    let tampered = c.sandbox.file("tampered.bundle");
    file.write(&tampered);

    let before = lee.status()["envelopes"].as_u64().unwrap();
    // The admin's audit entries written since the first bundle (two posts, an export)
    // come along.
    let first = c.sandbox.file("first.bundle");
    let audited = audit_envelopes(&good, None) - audit_envelopes(&first, None);
    let out = lee.run(&["bundle", "import", path_str(&tampered)]);
    let err = fail_output(&out, &["bundle", "import"]);
    assert!(
        err.contains("refused: envelope signature does not verify"),
        "{err}"
    );
    assert!(
        err.contains("1 envelope(s) were refused; the valid ones were imported"),
        "{err}"
    );
    let text = common::stdout(&out);
    assert!(
        text.contains(&format!("{} new envelope(s)", 1 + audited)) && text.contains("1 refused"),
        "{text}"
    );
    assert_eq!(
        lee.status()["envelopes"].as_u64().unwrap(),
        before + 1 + audited
    );
    let sched = lee.show(&c.scheduling);
    assert_eq!(message(&sched, &intact)["body"], "Coverage found");
    let clinical = lee.show(&c.clinical);
    assert!(
        clinical["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != altered),
        "the altered message must not be shown"
    );

    // The same bundle untouched brings the missing message.
    let report = lee.import(&good);
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(
        message(&lee.show(&c.clinical), &altered)["body"],
        "Evaluation received"
    );

    // A record that is not an envelope at all is refused by its position.
    let mut file = BundleFile::read(&good);
    file.records.push(b"not an envelope".to_vec());
    let n = file.records.len();
    let junk = c.sandbox.file("junk.bundle");
    file.write(&junk);
    let err = lee.fail(&["bundle", "import", path_str(&junk)]);
    assert!(
        err.contains(&format!("refused: record {n}: malformed envelope")),
        "{err}"
    );
    assert!(
        err.contains("1 envelope(s) were refused; the valid ones were imported"),
        "{err}"
    );
}

// ---- 5. idempotent import ----

#[test]
fn importing_the_same_bundle_twice_is_idempotent() {
    let tour = Tour::run();
    let before = (tour.sam.ok(&["--json", "threads"]), tour.sam.status());
    let out = tour.sam.ok(&["bundle", "import", path_str(&tour.bundle)]);
    assert_eq!(
        out,
        format!(
            "0 new envelope(s), {} already held, 0 waiting for earlier ones, 0 refused\n",
            tour.exported
        )
    );
    let report = tour.sam.import(&tour.bundle);
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["duplicate"], tour.exported);
    assert_eq!(report["joined_clinic"], Value::Null);
    assert_eq!(
        (tour.sam.ok(&["--json", "threads"]), tour.sam.status()),
        before
    );

    // The admin's own bundle holds nothing new for the admin.
    let report = tour.admin().import(&tour.bundle);
    assert_eq!(report["accepted"], 0);
}

// ---- 6. damaged cache records ----

/// Flips one byte of the value at `key` in `tree` of the sled database at `dir`.
fn damage(dir: &std::path::Path, tree: &str, key: &[u8]) {
    let db = sled::open(dir).expect("open the store with sled");
    let t = db.open_tree(tree).unwrap();
    let mut value = t
        .get(key)
        .unwrap()
        .unwrap_or_else(|| panic!("no `{tree}` record for {}", hex::encode(key)))
        .to_vec();
    let mid = value.len() / 2;
    value[mid] ^= 0x01;
    t.insert(key, value).unwrap();
    db.flush().unwrap();
}

#[test]
fn damaged_summaries_and_snapshots_are_rebuilt_from_envelopes() {
    let c = Clinic::found();
    let admin = &c.admin;
    let threads = admin.ok(&["threads"]);
    let threads_json = admin.ok(&["--json", "threads"]);
    let clinical = admin.ok(&["--json", "show", &c.clinical]);
    let scheduling = admin.ok(&["--json", "show", &c.scheduling]);

    damage(&admin.dir, "summaries", &unhex(&c.scheduling));
    damage(&admin.dir, "snapshots", &unhex(&c.clinical));

    // `show` rebuilds the damaged snapshot from the envelopes and says which it was.
    let out = admin.run(&["--json", "show", &c.clinical]);
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_eq!(common::stdout(&out), clinical);
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!(
            "corrupted record in `snapshots` at key {}: does not decrypt; rebuilding from envelopes",
            c.clinical
        )),
        "{err}"
    );
    assert_eq!(admin.ok(&["--json", "show", &c.scheduling]), scheduling);

    // `threads` rebuilds the damaged summary and warns about it.
    let out = admin.run(&["threads"]);
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_eq!(common::stdout(&out), threads);
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: corrupted record in `summaries` at key {}: does not decrypt; \
             rebuilt from the thread's envelopes",
            c.scheduling
        )),
        "{err}"
    );

    // The rebuilt summary was written back: no more warnings when listing.
    let out = admin.run(&["--json", "threads"]);
    assert_eq!(common::stdout(&out), threads_json);
    assert_eq!(common::stderr(&out), "");
    // A write to the thread stores a good snapshot again.
    admin.ok(&["post", &c.clinical, "After the repair"]);
    let out = admin.run(&["show", &c.clinical]);
    assert_eq!(common::stderr(&out), "");
    assert!(common::stdout(&out).contains(CLINICAL_NOTE));
    assert!(common::stdout(&out).contains("After the repair"));
}

/// Listing threads must come from the stored summaries (views.rs: "so that listing 10³
/// threads does not open 10³ documents"), so a damaged snapshot of a thread whose
/// summary is intact is not even read by `threads`.
#[test]
fn listing_threads_uses_the_stored_summaries() {
    let c = Clinic::found();
    c.admin.ok(&["threads"]);
    damage(&c.admin.dir, "snapshots", &unhex(&c.clinical));
    let out = c.admin.run(&["threads"]);
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_eq!(
        common::stderr(&out),
        "",
        "`threads` opened the clinical thread's document although its summary is intact"
    );
}

/// A snapshot rebuilt by `show` should be stored again, as docs.rs promises ("written
/// back ... when the command ends"), not rebuilt and warned about on every `show`.
#[test]
fn a_snapshot_rebuilt_by_show_is_stored_again() {
    let c = Clinic::found();
    damage(&c.admin.dir, "snapshots", &unhex(&c.clinical));
    let first = c.admin.run(&["show", &c.clinical]);
    assert!(common::stderr(&first).contains("corrupted record in `snapshots`"));
    let second = c.admin.run(&["show", &c.clinical]);
    assert!(second.status.success());
    assert_eq!(common::stdout(&second), common::stdout(&first));
    assert_eq!(
        common::stderr(&second),
        "",
        "the damaged snapshot is still there"
    );
}

/// README: "Thread and message ids may be shortened to any unique prefix (4+
/// characters)". Threads enforce the minimum; message references do not.
#[test]
fn message_prefixes_need_four_characters() {
    let c = Clinic::found();
    let err = c.admin.fail(&["task", "done", &c.scheduling, &c.task[..3]]);
    assert!(err.contains(&c.task[..3]), "{err}");
    assert_eq!(c.admin.thread_entry(&c.scheduling)["open_tasks"], 1);
}

#[test]
fn a_data_directory_in_use_is_reported() {
    let c = Clinic::found();
    let db = sled::open(&c.admin.dir).expect("open the store with sled");
    let err = fail_output(
        &c.admin.run_env(&[("HUDDLE_LOCK_WAIT", "0")], &["status"]),
        &["status"],
    );
    assert!(err.contains("is in use by another Huddle process"), "{err}");
    drop(db);
    assert_eq!(c.admin.status()["member"], ADMIN);
}

/// The hex id of an invitation string.
fn invite_id(invite: &str) -> String {
    hex::encode(
        huddle::core::invite::Invitation::parse(invite)
            .expect("an invitation")
            .id,
    )
}

fn listed_invite_ids(device: &Device) -> Vec<String> {
    device
        .json(&["invites"])
        .as_array()
        .expect("invites --json is an array")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn invitations_are_listed_and_cancelled() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    admin.ok(&["init", "--clinic", CLINIC, "--name", ADMIN]);
    admin.ok(&["member", "add", "--name", SAM, "--role", "scheduler"]);
    assert_eq!(admin.json(&["invites"]), json!([]));
    assert!(admin.ok(&["invites"]).contains("No open invitations"));

    let out = admin.run(&[
        "invite",
        "--name",
        LEE,
        "--role",
        "billing",
        "--expires",
        "2h",
    ]);
    assert!(out.status.success(), "{}", common::describe(&out));
    assert!(
        common::stderr(&out).contains("mDNS"),
        "no addresses known: says so"
    );
    let lee = common::stdout(&out).trim().to_string();
    let kim = admin.json(&["invite", "--name", "Kim", "--role", "clinician", "--admin"])["id"]
        .as_str()
        .expect("the invitation")
        .to_string();
    let (lee_id, kim_id) = (invite_id(&lee), invite_id(&kim));

    // Soonest to expire first; no secret in the listing.
    let list = admin.json(&["invites"]);
    assert_eq!(list[0]["id"], lee_id.as_str(), "{list}");
    assert_eq!(list[0]["name"], LEE);
    assert_eq!(list[0]["role"], "billing");
    assert_eq!(list[0]["admin"], false);
    let words = list[0]["expires_in"].as_str().unwrap();
    assert!(
        words == "in 2 hours" || words.starts_with("in 1 hour 59 minute"),
        "{words}"
    );
    assert_eq!(list[1]["id"], kim_id.as_str());
    assert_eq!(
        (&list[1]["role"], &list[1]["admin"]),
        (&json!("clinician"), &json!(true))
    );
    assert!(
        list[1]["expires_in"]
            .as_str()
            .unwrap()
            .starts_with("in 6 days 23 hours"),
        "{list}"
    );
    assert!(list[1]["expires_ms"].as_u64().unwrap() > list[0]["expires_ms"].as_u64().unwrap());
    let secret = huddle::core::invite::Invitation::parse(&lee)
        .unwrap()
        .secret;
    assert!(!list.to_string().contains(&hex::encode(secret)));
    let text = admin.ok(&["invites"]);
    for want in [
        lee_id.as_str(),
        LEE,
        "billing",
        "in 6 days 23 hours",
        "UTC",
        "yes",
        "no",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // Refused when issued: a member of that name exists, or an open invitation for it.
    let err = admin.fail(&["invite", "--name", SAM, "--role", "billing"]);
    assert!(err.contains("already exists"), "{err}");
    let err = admin.fail(&[
        "invite",
        "--name",
        &LEE.to_uppercase(),
        "--role",
        "clinician",
    ]);
    assert!(
        err.contains("open invitation") && err.contains(&lee_id),
        "{err}"
    );

    // Cancel by a prefix: listed no more; cancelling again says why.
    let out = admin.ok(&["invite", "cancel", &lee_id[..6]]);
    assert!(
        out.contains("cancelled invitation") && out.contains(LEE),
        "{out}"
    );
    assert_eq!(listed_invite_ids(&admin), [kim_id.as_str()]);
    let err = admin.fail(&["invite", "cancel", &lee_id]);
    assert!(err.contains("has been cancelled"), "{err}");
    let err = admin.fail(&["invite", "cancel", "abc"]);
    assert!(err.contains("no invitation matches"), "{err}");
    let unknown = if kim_id.starts_with("ffff") {
        "0000"
    } else {
        "ffff"
    };
    let err = admin.fail(&["invite", "cancel", unknown]);
    assert!(err.contains("no invitation matches"), "{err}");
    let v = admin.json(&["invite", "cancel", &kim_id]);
    assert_eq!(v, json!({ "id": kim_id, "name": "Kim", "cancelled": true }));
    assert_eq!(admin.json(&["invites"]), json!([]));
    // The name is free to invite again. Adding a member of that name instead makes the
    // invitation unredeemable, and the admin is told.
    let again = admin.ok(&["invite", "--name", LEE, "--role", "billing"]);
    let out = admin.run(&["member", "add", "--name", LEE, "--role", "clinician"]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let note = common::stderr(&out);
    assert!(
        note.contains("can no longer be redeemed") && note.contains(&invite_id(&again)),
        "{note}"
    );

    // Arguments: `invite --name N --role R` and `invite cancel ID`, never both.
    for bad in [
        &["invite"][..],
        &["invite", "--name", "Ana"],
        &["invite", "--role", "billing"],
        &["invite", "cancel"],
        &[
            "invite", "--name", "Ana", "--role", "billing", "cancel", &kim_id,
        ],
        &["invite", "cancel", &kim_id, "--name", "Ana"],
    ] {
        admin.fail(bad);
    }
    // A device with no clinic has no invitations to list.
    let none = sandbox.device("none");
    none.ok(&["device", "key"]);
    let err = none.fail(&["invites"]);
    assert!(err.contains("not part of a clinic"), "{err}");
}

#[test]
fn invitations_through_a_running_serve_and_joining_by_address_or_peer() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    let thread = clinic_with_a_thread(&admin);
    let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);

    // Through the control socket: the invitation lists the address actually bound
    // (loopback only, as nothing else is listened on).
    let sam_invite = admin.ok(&["invite", "--name", SAM, "--role", "scheduler"]);
    let parsed = huddle::core::invite::Invitation::parse(&sam_invite).unwrap();
    assert_eq!(parsed.addrs.len(), 1, "{:?}", parsed.addrs);
    let port = parsed.addrs[0]
        .strip_prefix("/ip4/127.0.0.1/tcp/")
        .unwrap_or_else(|| panic!("{:?}", parsed.addrs));
    assert_ne!(port, "0");
    assert_eq!(listed_invite_ids(&admin), [invite_id(&sam_invite)]);

    // Joined from the invitation's addresses alone.
    let sam = sandbox.device("sam");
    let out = sam.ok(&["join", sam_invite.trim(), "--no-mdns"]);
    assert!(out.contains(&format!("as {SAM} (scheduler)")), "{out}");
    assert!(sam.threads().iter().any(|t| t["id"] == thread.as_str()));
    assert_eq!(admin.json(&["invites"]), json!([]));

    // Cancelled through the control socket: refused at join, nothing left behind.
    let lee_invite = admin.ok(&["invite", "--name", LEE, "--role", "clinician"]);
    let out = admin.ok(&["invite", "cancel", &invite_id(&lee_invite)]);
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(admin.json(&["invites"]), json!([]));
    let lee = sandbox.device("lee");
    let err = lee.fail(&["join", lee_invite.trim(), "--no-mdns"]);
    assert!(err.contains("cancelled"), "{err}");
    assert!(!lee.dir.exists(), "a failed join leaves nothing behind");
    assert!(serving.logs().contains("cancelled"), "{}", serving.logs());

    // An invitation with no usable address: `join --peer` finds the inviter.
    let kim_invite = admin.ok(&["invite", "--name", "Kim", "--role", "billing"]);
    let mut bare = huddle::core::invite::Invitation::parse(&kim_invite).unwrap();
    bare.addrs.clear();
    let kim = sandbox.device("kim");
    let peer = format!("127.0.0.1:{port}");
    let out = kim.ok(&["join", &bare.encode(), "--no-mdns", "--peer", &peer]);
    assert!(out.contains("as Kim (billing)"), "{out}");
    let members = admin.json(&["members"]);
    let kim_member = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Kim")
        .expect("Kim is a member");
    assert_eq!(kim_member["role"], "billing");
    serving.stop();
}

/// The lifecycle commands through the CLI: `devices`, `device revoke`, `member role`,
/// `member remove`. A stolen laptop (Lee's) is revoked: what the clinic posts afterwards
/// is unreadable on it even when handed over, and its own later posts are refused.
#[test]
fn stolen_laptop_drill_through_the_cli() {
    let tour = Tour::run();
    let c = &tour.clinic;
    let admin = tour.admin();
    let lee = &tour.lee;
    let devices = admin.json(&["devices"]);
    let rows = devices.as_array().expect("a list");
    assert_eq!(rows.len(), 3, "{devices}");
    let lee_device = lee.status()["device"].as_str().unwrap().to_string();
    let lee_row = rows.iter().find(|d| d["device"] == lee_device).unwrap();
    assert_eq!(lee_row["status"], "active");
    assert_eq!(lee_row["member"], LEE);

    // Only an admin may revoke.
    let err = tour.sam.fail(&["device", "revoke", &lee_device[..8]]);
    assert!(err.contains("only an admin may change the roster"), "{err}");
    let err = admin.fail(&["device", "revoke", "zz"]);
    assert!(err.contains("at least 4 characters"), "{err}");

    let out = admin.ok(&["device", "revoke", &lee_device[..8]]);
    assert!(
        out.starts_with(&format!("revoked device {}", &lee_device[..8])),
        "{out}"
    );
    let rows = admin.json(&["devices"]);
    let lee_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == lee_device)
        .unwrap()
        .clone();
    assert_eq!(lee_row["status"], "revoked");
    let err = admin.fail(&["device", "revoke", &lee_device[..8]]);
    assert!(err.contains("revoked"), "{err}");

    // The clinic posts after the revocation; the stolen laptop posts too (it has not
    // heard of its revocation).
    admin.ok(&["post", &c.clinical[..8], "after the theft"]);
    lee.ok(&["post", &c.clinical[..8], "posted by the thief"]);

    let to_lee = c.sandbox.file("to-lee.bundle");
    admin.export(&to_lee);
    lee.import(&to_lee);
    // Once it hears of its revocation, the laptop shows nothing at all.
    let err = lee.fail(&["show", &c.clinical[..8]]);
    assert!(err.contains("not an active member"), "{err}");
    let leaked = lee
        .files()
        .iter()
        .any(|f| std::fs::read(f).is_ok_and(|b| b.windows(15).any(|w| w == b"after the theft")));
    assert!(!leaked, "plaintext on the revoked device's disk");

    let back = c.sandbox.file("from-lee.bundle");
    lee.export(&back);
    let err = admin.fail(&["bundle", "import", back.to_str().unwrap()]);
    assert!(err.contains("may not write"), "{err}");
    let shown = admin.ok(&["show", &c.clinical[..8]]);
    assert!(!shown.contains("posted by the thief"), "{shown}");

    // Roles: a member's role changes, and the list says so.
    let out = admin.ok(&["member", "role", SAM, "billing"]);
    assert_eq!(out, format!("{SAM} is now billing\n"));
    let members = admin.json(&["members"]);
    let sam = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == SAM)
        .unwrap()
        .clone();
    assert_eq!(sam["role"], "billing");

    // Removing a member cuts off every device of theirs.
    admin.ok(&["member", "remove", SAM]);
    let rows = admin.json(&["devices"]);
    let sam_device = tour.sam.status()["device"].as_str().unwrap().to_string();
    let sam_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == sam_device)
        .unwrap()
        .clone();
    assert_eq!(sam_row["status"], "removed");
    let members = admin.json(&["members"]);
    assert!(!members.to_string().contains(SAM));
}

// ---- commands sharing a data directory (issue #8, finding 5) ----

/// A clinic founded on one device with one scheduling thread; returns the thread id.
fn clinic_with_a_thread(admin: &Device) -> String {
    admin.ok(&["init", "--clinic", CLINIC, "--name", ADMIN]);
    admin.id(
        &[
            "thread",
            "new",
            "--topic",
            TOPIC,
            "--category",
            "scheduling",
            "--title",
            SCHEDULING_TITLE,
        ],
        32,
    )
}

/// The ids of a thread's messages, as `show --json` lists them.
fn message_ids(device: &Device, thread: &str) -> Vec<String> {
    device.show(thread)["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("message id").to_string())
        .collect()
}

/// Waits for a spawned command and requires success; returns its stdout.
fn succeeded(child: std::process::Child, what: &str) -> String {
    let out = child.wait_with_output().expect("wait for huddle");
    assert!(
        out.status.success(),
        "`{what}` failed: {}",
        common::describe(&out)
    );
    common::stdout(&out)
}

/// The id printed by `--json post`.
fn posted_id(stdout: &str) -> String {
    let v: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    v["id"].as_str().expect("an id").to_string()
}

/// Without `huddle serve`, a second command on the same data directory waits for the
/// first instead of failing: two posts, or a post and a listing, started together.
#[test]
fn two_commands_at_once_both_succeed() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    let thread = clinic_with_a_thread(&admin);
    let mut posted = Vec::new();
    for round in 0..4 {
        let first = format!("first of round {round}");
        let a = admin.spawn(&["--json", "post", &thread, &first]);
        if round % 2 == 0 {
            let second = format!("second of round {round}");
            let b = admin.spawn(&["--json", "post", &thread, &second]);
            posted.push(posted_id(&succeeded(a, "post")));
            posted.push(posted_id(&succeeded(b, "post")));
        } else {
            let b = admin.spawn(&["--json", "threads"]);
            posted.push(posted_id(&succeeded(a, "post")));
            let listed: Value = serde_json::from_str(&succeeded(b, "threads")).expect("JSON");
            assert_eq!(listed[0]["id"], thread.as_str(), "{listed}");
        }
    }
    let mut held = message_ids(&admin, &thread);
    held.sort();
    posted.sort();
    assert_eq!(held, posted);
}

/// A loop of posts keeps the store busy; `huddle serve` started meanwhile announces
/// itself, gets the store as soon as the post in flight ends, and the posts carry on
/// through it. Every post is kept.
#[test]
fn serve_wins_the_store_from_a_busy_poster() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    let thread = clinic_with_a_thread(&admin);
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let wait_for_posts = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "the poster is stuck");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::scope(|s| {
        let poster = s.spawn(|| {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let text = format!("busy {}", ids.len());
                let out = admin.run(&["--json", "post", &thread, &text]);
                assert!(out.status.success(), "{}", common::describe(&out));
                ids.push(posted_id(&common::stdout(&out)));
                done.fetch_add(1, Ordering::SeqCst);
            }
            ids
        });
        // Whatever fails below, the poster stops (the scope waits for it).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop_poster = StopOnDrop(&stop);
        wait_for_posts(2);
        let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
        // A generous limit, to detect a serve kept from the store (it was, 64 times).
        serving.wait_until_serving(Duration::from_secs(30));
        let before = done.load(Ordering::SeqCst);
        wait_for_posts(before + 3);
        stop.store(true, Ordering::SeqCst);
        let mut posted = poster.join().expect("the poster");
        serving.stop();
        let mut held = message_ids(&admin, &thread);
        held.sort();
        posted.sort();
        assert_eq!(held, posted);
    });
}

/// A fake node on the control socket: takes one request and returns it (typed JSON:
/// version, proof, command); before the connection closes, the socket is gone
/// (commands open the store then).
struct FakeNode {
    socket: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
}

impl FakeNode {
    fn bind(device: &Device) -> FakeNode {
        let socket = device.dir.join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        FakeNode {
            socket,
            listener: Some(listener),
        }
    }

    /// Reads one forwarded request, then stops listening; the connection stays open.
    fn take_command(mut self) -> (std::os::unix::net::UnixStream, Value) {
        use std::io::Read;
        let listener = self.listener.take().expect("listening");
        let (mut conn, _) = listener.accept().expect("a command connects");
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).expect("the request");
        let request: Value = serde_json::from_slice(&raw).expect("a JSON request");
        (conn, request)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The message id a post chose for itself, as its forwarded request carries it.
fn chosen_id(request: &Value) -> String {
    let post = &request["command"]["Run"]["Post"];
    let bytes: Vec<u8> = post["id"]
        .as_array()
        .unwrap_or_else(|| panic!("no id in {request}"))
        .iter()
        .map(|b| b.as_u64().expect("a byte") as u8)
        .collect();
    assert_eq!(bytes.len(), 8, "{request}");
    assert!(
        request.get("args").is_none(),
        "the request is typed, not argv: {request}"
    );
    hex::encode(bytes)
}

/// A node that takes a post and hangs up without answering: the command checks and says
/// whether the post was stored (it knows the id it chose), instead of "malformed: EOF".
/// A post under an id already used is refused and overwrites nothing.
#[test]
fn cut_off_answer_says_whether_the_post_was_stored() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    let thread = clinic_with_a_thread(&admin);

    // Hung up before doing anything: NOT stored, and a failure.
    let fake = FakeNode::bind(&admin);
    let child = admin.spawn(&["post", &thread, "Lost in transit Quorlax"]);
    let (conn, request) = fake.take_command();
    let lost = chosen_id(&request);
    drop(conn);
    let out = child.wait_with_output().expect("wait");
    let err = fail_output(&out, &["post"]);
    assert!(err.contains("the post was NOT stored"), "{err}");
    assert!(!err.contains("malformed"), "{err}");
    assert_eq!(common::stdout(&out), "");
    assert!(!message_ids(&admin, &thread).contains(&lost));

    // Carried out (the fake posts under the chosen id itself), then hung up: stored.
    let fake = FakeNode::bind(&admin);
    let child = admin.spawn(&["post", &thread, "Arrived after all Quorlax"]);
    let (conn, request) = fake.take_command();
    let id = chosen_id(&request);
    assert_ne!(id, lost, "ids are chosen at random");
    let args: Vec<String> = [
        "--data-dir",
        path_str(&admin.dir),
        "post",
        &thread,
        "Arrived after all Quorlax",
        "--id",
        &id,
    ]
    .map(String::from)
    .to_vec();
    let huddle = |args: &[String]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
            .env_remove("HUDDLE_DATA_DIR")
            .env("HUDDLE_PASSPHRASE", PASS)
            .args(args)
            .output()
            .expect("run huddle")
    };
    let carried = huddle(&args);
    assert!(carried.status.success(), "{}", common::describe(&carried));
    assert_eq!(common::stdout(&carried).trim(), id);
    drop(conn);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", common::describe(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains(&format!("the post was stored (id {id})")),
        "{err}"
    );
    assert_eq!(common::stdout(&out).trim(), id);

    // The same id again: refused, the stored message unchanged.
    let mut again = args.clone();
    let text = again
        .iter_mut()
        .find(|a| a.as_str() == "Arrived after all Quorlax")
        .expect("the text");
    *text = "An overwrite attempt".into();
    let err = fail_output(&huddle(&again), &["post", "--id"]);
    assert!(err.contains("already exists"), "{err}");
    let shown = admin.show(&thread);
    let with_id: Vec<&Value> = shown["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["id"] == id.as_str())
        .collect();
    assert_eq!(with_id.len(), 1, "{shown}");
    assert_eq!(with_id[0]["body"], "Arrived after all Quorlax");
}

/// A store held by a process that does not answer on the control socket (a serve whose
/// socket was deleted): a command waits as long as told, says once that it waits, then
/// fails naming what holds the store.
#[test]
fn waiting_command_times_out_with_a_clear_message() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    clinic_with_a_thread(&admin);
    let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    serving.wait_until_serving(std::time::Duration::from_secs(30));
    std::fs::remove_file(admin.dir.join("control.sock")).expect("remove the socket");

    let started = std::time::Instant::now();
    let out = admin.run_env(&[("HUDDLE_LOCK_WAIT", "1.5")], &["threads"]);
    let waited = started.elapsed();
    let err = fail_output(&out, &["threads"]);
    assert!(
        waited >= std::time::Duration::from_millis(1500),
        "{waited:?}"
    );
    assert_eq!(
        err.matches("waiting for another huddle command using")
            .count(),
        1,
        "{err}"
    );
    assert!(err.contains("is in use by another Huddle process"), "{err}");
    assert!(err.contains("HUDDLE_LOCK_WAIT"), "{err}");
    if std::path::Path::new("/proc/locks").exists() {
        let holder = format!("pid {}, huddle serve", serving.pid());
        assert!(err.contains(&holder), "{err}");
    }
    serving.stop();
    // Free again: the command works at once.
    assert_eq!(admin.threads().len(), 1);
}

/// `huddle serve` stopped while it waits for the store: it exits cleanly, and the
/// command that queued on its socket meanwhile is declined, not lost: it carries on by
/// itself once the store is free.
#[test]
fn a_serve_stopped_while_waiting_declines_what_queued() {
    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    let thread = clinic_with_a_thread(&admin);
    let db = sled::open(&admin.dir).expect("hold the store with sled");
    let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let poster = admin.spawn(&["--json", "post", &thread, "Queued behind a serve"]);
    // The post is queued on the socket (a generous pause, then the serve stops).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let logs = serving.logs();
    serving.stop();
    assert!(!logs.contains("serving;"), "{logs}");
    assert!(!admin.dir.join("control.sock").exists());
    drop(db);
    let id = posted_id(&succeeded(poster, "post"));
    assert_eq!(message_ids(&admin, &thread), [id]);
}

/// A local client that connects to the control socket and never sends a command does
/// not keep `serve` from stopping: its request must arrive within 10 s, and a stop
/// abandons answers still running after 1 s.
#[test]
fn a_silent_control_client_does_not_hold_up_a_stopping_serve() {
    use std::time::{Duration, Instant};

    let sandbox = Sandbox::new();
    let admin = sandbox.device("admin");
    clinic_with_a_thread(&admin);
    let serving = admin.serve(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    serving.wait_until_serving(Duration::from_secs(20));
    let silent = std::os::unix::net::UnixStream::connect(admin.dir.join("control.sock"))
        .expect("connect to the control socket");
    std::thread::sleep(Duration::from_millis(300));

    let pid = serving.pid();
    let stopped = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Exited (a zombie until reaped, or gone) within 3 s.
    let exited = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    };
    while !exited() {
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "serve is still running {:?} after SIGTERM with a silent control client: {}",
            stopped.elapsed(),
            serving.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    serving.stop();
    drop(silent);
}

/// Today's date in a zone given as a POSIX TZ string, as a process run with `TZ=zone`
/// sees it.
fn today_in(posix_tz: &str) -> String {
    let tz = jiff::tz::TimeZone::posix(posix_tz).unwrap();
    huddle::localtime::today_in(&tz).to_string()
}

/// Two zones 26 hours apart: a date that is today in the first is already past in the
/// second, whatever the time of day.
const WEST: &str = "<-12>12";
const EAST: &str = "<+14>-14";

#[test]
fn tasks_list_open_first_soonest_due_first_with_overdue_marked() {
    let c = Clinic::found();
    let admin = &c.admin;
    // Posted where it is still today; listed where that day is over: overdue.
    let due_today_west = today_in(WEST);
    let late = admin.run_env(
        &[("TZ", WEST)],
        &[
            "--json",
            "post",
            &c.clinical,
            "Send the Quixotic evaluation",
            "--task",
            "--assignee",
            ADMIN,
            "--due",
            &due_today_west,
        ],
    );
    assert!(late.status.success(), "{}", common::describe(&late));
    let late: Value = serde_json::from_slice(&late.stdout).unwrap();
    let late = late["id"].as_str().unwrap().to_string();
    let later = admin.id(
        &[
            "post",
            &c.scheduling,
            "Confirm the Plumbago reschedule",
            "--task",
            "--assignee",
            ADMIN,
            "--due",
            "2099-01-01",
        ],
        16,
    );
    let done = admin.id(
        &[
            "post",
            &c.scheduling,
            "Done already",
            "--task",
            "--assignee",
            ADMIN,
            "--due",
            "2099-01-02",
        ],
        16,
    );
    admin.ok(&["task", "done", &c.scheduling, &done]);

    let list = |env: &[(&str, &str)], args: &[&str]| -> Vec<Value> {
        let mut all = vec!["--json", "tasks"];
        all.extend_from_slice(args);
        let out = admin.run_env(env, &all);
        assert!(out.status.success(), "{}", common::describe(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = list(&[("TZ", EAST)], &[]);
    let order: Vec<&str> = all
        .iter()
        .map(|t| t["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [late.as_str(), &later, &c.task, &done], "{all:#?}");
    assert_eq!(all[0]["overdue"], true, "past in the east");
    assert_eq!(all[0]["thread"], c.clinical.as_str());
    assert_eq!(all[0]["thread_title"], CLINICAL_TITLE);
    assert_eq!(all[0]["text"], "Send the Quixotic evaluation");
    assert_eq!(all[0]["status"], "open");
    assert_eq!(all[1]["overdue"], false);
    assert_eq!(all[2]["assignee"], SAM);
    assert_eq!(all[2]["due"], DUE);
    assert_eq!(all[3]["status"], "done");
    assert_eq!(all[3]["done_by"], ADMIN);
    assert_eq!(all[3]["overdue"], false, "a done task is never overdue");
    let west = list(&[("TZ", WEST)], &[]);
    assert_eq!(west[0]["overdue"], false, "still today in the west");

    let mine = list(&[("TZ", EAST)], &["--mine"]);
    let mine: Vec<&str> = mine
        .iter()
        .map(|t| t["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        mine,
        [late.as_str(), &later, &done],
        "Sam's task is not mine"
    );

    let out = admin.run_env(&[("TZ", EAST)], &["tasks", "--mine"]);
    let text = common::stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("OVERDUE") && first.contains(CLINICAL_TITLE) && first.contains(&late),
        "{text}"
    );
    assert!(text.contains(&format!("done by {ADMIN}")), "{text}");
    assert!(!text.contains(TASK_TEXT), "{text}");

    // An empty list says so in words.
    let fresh = Sandbox::new().device("solo");
    fresh.ok(&["init", "--clinic", CLINIC, "--name", ADMIN]);
    assert_eq!(
        fresh.ok(&["tasks", "--mine"]),
        "No tasks assigned to you in the threads you may read.\n"
    );
}

#[test]
fn a_due_date_in_the_past_is_refused() {
    let c = Clinic::found();
    let before = c.admin.show(&c.scheduling);
    let yesterday = (jiff::Zoned::now().date() - jiff::ToSpan::days(1)).to_string();
    let today_east = today_in(EAST);
    // Yesterday anywhere, and a day that is already over in the east.
    for (tz, due) in [("UTC", yesterday.as_str()), (EAST, &today_in(WEST))] {
        let out = c.admin.run_env(
            &[("TZ", tz)],
            &[
                "post",
                &c.scheduling,
                "x",
                "--task",
                "--assignee",
                SAM,
                "--due",
                due,
            ],
        );
        let err = fail_output(&out, &["post"]);
        assert!(
            err.contains(&format!("the due date {due} is in the past")),
            "{due}: {err}"
        );
    }
    assert_eq!(c.admin.show(&c.scheduling), before, "nothing was posted");
    let out = c.admin.run_env(
        &[("TZ", EAST)],
        &[
            "post",
            &c.scheduling,
            "x",
            "--task",
            "--assignee",
            SAM,
            "--due",
            &today_east,
        ],
    );
    assert!(
        out.status.success(),
        "today is fine: {}",
        common::describe(&out)
    );
}

#[test]
fn show_prints_local_times_and_json_keeps_utc_milliseconds() {
    let c = Clinic::found();
    let json = c.admin.show(&c.scheduling);
    let at_ms = json["messages"][0]["at_ms"].as_u64().unwrap();
    for zone in [WEST, EAST, "UTC0"] {
        let out = c.admin.run_env(&[("TZ", zone)], &["show", &c.scheduling]);
        let text = common::stdout(&out);
        let tz = jiff::tz::TimeZone::posix(zone).unwrap();
        let local = huddle::localtime::in_zone(at_ms, &tz);
        assert!(
            text.contains(&format!("] {local} · {ADMIN}")),
            "{zone}: {text}"
        );
        assert!(!text.contains("UTC"), "{text}");
    }
    let west = huddle::localtime::in_zone(at_ms, &jiff::tz::TimeZone::posix(WEST).unwrap());
    let east = huddle::localtime::in_zone(at_ms, &jiff::tz::TimeZone::posix(EAST).unwrap());
    assert_ne!(west, east, "the zone matters");
    let out = c
        .admin
        .run_env(&[("TZ", EAST)], &["--json", "show", &c.scheduling]);
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again, json, "JSON does not depend on the time zone");
}

/// (That every argument of every command is described is a unit test of the binary:
/// `cli::tests::every_argument_is_described`.)
#[test]
fn help_lists_roles_and_categories() {
    let sandbox = Sandbox::new();
    let device = sandbox.device("help");
    for args in [
        &["--help"][..],
        &["member", "add", "--help"],
        &["thread", "new", "--help"],
    ] {
        let help = device.ok(args);
        for word in [
            "clinician",
            "scheduler",
            "front desk",
            "billing",
            "clinical",
            "scheduling",
            "operations",
        ] {
            assert!(help.contains(word), "{args:?}: {word} missing from\n{help}");
        }
    }
    let help = device.ok(&["tasks", "--help"]);
    assert!(help.contains("Only tasks assigned to you"), "{help}");
}
