//! Printing results for people (plain text) or scripts (`--json`).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use huddle::core::audit::Finding;
use huddle::core::identity::DevicePublic;
use huddle::core::thread::{Priority, Subject, TaskStatus};
use huddle::localtime;
use huddle::node::audit_csv::{audit_csv, audit_row};
use huddle::node::{
    AuditTrail, DeviceView, ImportReport, InviteView, MemberView, Status, TaskView, ThreadDetail,
    ThreadSummary,
};

/// What a command prints: collected, so a running `huddle serve` can answer for it.
#[derive(Default, Debug, Serialize, Deserialize)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
}

macro_rules! say {
    ($o:expr) => { $o.stdout.push('\n') };
    ($o:expr, $($t:tt)*) => {{ $o.stdout.push_str(&format!($($t)*)); $o.stdout.push('\n'); }};
}
macro_rules! warn {
    ($o:expr, $($t:tt)*) => {{ $o.stderr.push_str(&format!($($t)*)); $o.stderr.push('\n'); }};
}

pub fn json<T: Serialize + ?Sized>(o: &mut Out, value: &T) -> Result<()> {
    say!(o, "{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `2026-11-25 14:03 UTC`.
pub fn when(ms: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "?".into())
}

/// How long until `at_ms`, in words, to the two largest units: `in 23 hours 59 minutes`,
/// `in 6 days 1 hour`, `in under a minute`.
pub fn expires_in(now_ms: u64, at_ms: u64) -> String {
    let minutes = at_ms.saturating_sub(now_ms) / 60_000;
    if minutes == 0 {
        return "in under a minute".into();
    }
    let unit = |n: u64, what: &str| {
        if n == 1 {
            format!("1 {what}")
        } else {
            format!("{n} {what}s")
        }
    };
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let words = match (days, hours) {
        (0, 0) => unit(mins, "minute"),
        (0, h) if mins == 0 => unit(h, "hour"),
        (0, h) => format!("{} {}", unit(h, "hour"), unit(mins, "minute")),
        (d, 0) => unit(d, "day"),
        (d, h) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    };
    format!("in {words}")
}

fn subject(s: &Subject) -> String {
    match s {
        Subject::Patient(l) => format!("patient {l}"),
        Subject::Topic(l) => format!("topic {l}"),
    }
}

pub fn id(o: &mut Out, id: &str, as_json: bool) -> Result<()> {
    if as_json {
        return json(o, &serde_json::json!({ "id": id }));
    }
    say!(o, "{id}");
    Ok(())
}

pub fn count(o: &mut Out, what: &str, n: usize, as_json: bool) -> Result<()> {
    if as_json {
        return json(o, &serde_json::json!({ "count": n }));
    }
    say!(o, "{n} {what}");
    Ok(())
}

pub fn threads(o: &mut Out, threads: &[ThreadSummary], as_json: bool) -> Result<()> {
    if as_json {
        return json(o, threads);
    }
    if threads.is_empty() {
        say!(
            o,
            "No threads yet. Start one with `huddle thread new`, or write to someone with `huddle direct new NAME`."
        );
        return Ok(());
    }
    let (direct, others): (Vec<&ThreadSummary>, Vec<&ThreadSummary>) =
        threads.iter().partition(|t| t.category == "direct");
    if !others.is_empty() {
        say!(
            o,
            "{:<10} {:<11} {:>6} {:>5}  SUBJECT — TITLE",
            "THREAD",
            "CATEGORY",
            "UNREAD",
            "MSGS"
        );
        for t in others {
            thread_row(o, t)?;
        }
    }
    if !direct.is_empty() {
        if threads.len() > direct.len() {
            say!(o);
        }
        say!(
            o,
            "{:<10} {:>6} {:>5}  PARTICIPANTS",
            "DIRECT",
            "UNREAD",
            "MSGS"
        );
        for t in direct {
            let short = &t.id[..8.min(t.id.len())];
            match &t.title {
                Some(people) if t.readable => say!(
                    o,
                    "{short:<10} {:>6} {:>5}  {people}{}",
                    t.unread,
                    t.messages,
                    flags(t)
                ),
                _ => say!(
                    o,
                    "{short:<10} {:>6} {:>5}  [not here yet] ({} envelopes held; its key comes with the next sync)",
                    "-",
                    "-",
                    t.envelopes
                ),
            }
        }
    }
    Ok(())
}

/// "  [2 urgent]  [1 open task(s)]", or nothing.
fn flags(t: &ThreadSummary) -> String {
    let mut flags = String::new();
    if t.urgent_unread > 0 {
        flags.push_str(&format!("  [{} urgent]", t.urgent_unread));
    }
    if t.open_tasks > 0 {
        flags.push_str(&format!("  [{} open task(s)]", t.open_tasks));
    }
    flags
}

fn thread_row(o: &mut Out, t: &ThreadSummary) -> Result<()> {
    let short = &t.id[..8.min(t.id.len())];
    match (&t.subject, &t.title) {
        (Some(s), Some(title)) if t.readable => say!(
            o,
            "{short:<10} {:<11} {:>6} {:>5}  {} — {title}{}",
            t.category,
            t.unread,
            t.messages,
            subject(s),
            flags(t)
        ),
        (None, Some(label)) if label == huddle::node::RESTRICTED_LABEL => say!(
            o,
            "{short:<10} {:<11} {:>6} {:>5}  [locked] {label} ({} envelopes held)",
            t.category,
            "-",
            "-",
            t.envelopes
        ),
        _ => say!(
            o,
            "{short:<10} {:<11} {:>6} {:>5}  [locked] {} thread ({} envelopes held; your role may not read it)",
            t.category,
            "-",
            "-",
            t.category,
            t.envelopes
        ),
    }
    Ok(())
}

pub fn thread(o: &mut Out, t: &ThreadDetail, as_json: bool) -> Result<()> {
    if as_json {
        return json(o, t);
    }
    let direct = t.category == "direct";
    match direct {
        true => say!(o, "Direct message — {}", t.restricted_to.join(", ")),
        false => say!(o, "{} — {}  [{}]", subject(&t.subject), t.title, t.category),
    }
    say!(
        o,
        "{} {} · started by {} · {}",
        if direct { "conversation" } else { "thread" },
        t.id,
        t.created_by,
        localtime::local(t.created_ms)
    );
    if direct {
        say!(o, "only its participants can read it");
    } else if !t.restricted_to.is_empty() {
        say!(o, "restricted to {}", t.restricted_to.join(", "));
    }
    for e in &t.emergencies {
        say!(
            o,
            "Emergency access by {} until {}: {}",
            e.member,
            localtime::local(e.until_ms),
            e.reason
        );
    }
    for m in &t.messages {
        let urgent = if m.priority == Priority::Urgent {
            "  URGENT"
        } else {
            ""
        };
        let unread = if m.unread { "  (unread)" } else { "" };
        let edited = if m.edited { "  (edited)" } else { "" };
        say!(o);
        say!(
            o,
            "[{}] {} · {}{urgent}{unread}{edited}",
            m.id,
            localtime::local(m.at_ms),
            m.author
        );
        if let Some(q) = &m.reply_to {
            match (q.author.as_str(), q.retracted) {
                ("", _) => say!(o, "  > in reply to [{}], not on this device", q.id),
                (who, true) => say!(o, "  > in reply to {who} [{}]: message retracted", q.id),
                (who, false) => say!(o, "  > in reply to {who} [{}]: {}", q.id, q.quote),
            }
        }
        if m.retracted {
            say!(o, "  (message retracted)");
        }
        for line in m.body.lines() {
            say!(o, "  {line}");
        }
        if let Some(task) = &m.task {
            let status = match (task.status, &task.done_by) {
                (TaskStatus::Done, Some(by)) => format!("done by {by}"),
                (TaskStatus::Done, None) => "done".into(),
                (TaskStatus::Open, _) => "open".into(),
            };
            say!(
                o,
                "  task for {}, due {}: {status}",
                task.assignee,
                task.due
            );
        }
        if let Some(replies) = huddle::node::replies_words(m.replies) {
            say!(o, "  {replies}");
        }
        if !m.read_by.is_empty() {
            say!(o, "  read by: {}", m.read_by.join(", "));
        }
    }
    if t.messages.is_empty() {
        say!(o, "\nNo messages yet.");
    }
    Ok(())
}

/// `huddle tasks`: one line per task, open first, soonest due first.
pub fn tasks(o: &mut Out, tasks: &[TaskView], mine: bool, as_json: bool) -> Result<()> {
    if as_json {
        return json(o, tasks);
    }
    if tasks.is_empty() {
        let whose = if mine { "assigned to you " } else { "" };
        say!(o, "No tasks {whose}in the threads you may read.");
        return Ok(());
    }
    for t in tasks {
        let status = match (t.status, &t.done_by) {
            (TaskStatus::Done, Some(by)) => format!("done by {by}"),
            (TaskStatus::Done, None) => "done".into(),
            (TaskStatus::Open, _) if t.overdue => "OVERDUE".into(),
            (TaskStatus::Open, _) => "open".into(),
        };
        let first_line = t.text.lines().next().unwrap_or_default();
        say!(
            o,
            "due {} · {status} · for {} · {} [{}] · message {}",
            t.due,
            t.assignee,
            t.thread_title,
            t.thread.short(),
            t.message_id
        );
        say!(o, "  {first_line}");
    }
    Ok(())
}

pub fn policy(o: &mut Out, p: &huddle::core::policy::Policy, as_json: bool) -> Result<()> {
    use huddle::core::policy::{Category, Role};
    if as_json {
        return json(o, p);
    }
    for role in Role::ALL {
        let reads: Vec<&str> = Category::ALL
            .into_iter()
            .filter(|c| p.may_read(role, *c))
            .map(|c| c.as_str())
            .collect();
        say!(o, "{role} reads: {}", reads.join(", "));
    }
    let s = &p.safeguards;
    say!(o, "idle lock: {} minutes", s.idle_lock_minutes);
    say!(o, "offline lease: {} days", s.offline_lease_days);
    say!(o, "emergency access: {} minutes", s.emergency_minutes);
    Ok(())
}

pub fn members(o: &mut Out, members: &[MemberView], as_json: bool) -> Result<()> {
    if as_json {
        return json(o, members);
    }
    for m in members {
        let admin = if m.admin { ", admin" } else { "" };
        say!(
            o,
            "{} ({}{admin}) · {} device(s)",
            m.name,
            m.role,
            m.devices.len()
        );
    }
    Ok(())
}

/// `huddle members --removed`: one line per removed member.
pub fn removed_members(o: &mut Out, members: &[MemberView], as_json: bool) -> Result<()> {
    if as_json {
        return json(o, members);
    }
    if members.is_empty() {
        say!(o, "No removed members.");
        return Ok(());
    }
    for m in members {
        let admin = if m.admin { ", admin" } else { "" };
        say!(o, "{} ({}{admin}) · removed", m.name, m.role);
    }
    say!(
        o,
        "(`huddle member restore NAME` brings one back, with no device.)"
    );
    Ok(())
}

/// `huddle devices`: one line per device.
pub fn devices(o: &mut Out, devices: &[DeviceView], as_json: bool) -> Result<()> {
    if as_json {
        return json(o, devices);
    }
    for d in devices {
        let me = if d.this_device { " (this device)" } else { "" };
        say!(
            o,
            "{} · {} ({}) · {} · {}{me}",
            &d.device[..8],
            d.member,
            d.role,
            d.status,
            d.seen
        );
    }
    Ok(())
}

fn invite_json(i: &InviteView, now_ms: u64) -> serde_json::Value {
    serde_json::json!({
        "id": i.id,
        "name": i.name,
        "role": i.role,
        "admin": i.admin,
        "expires_ms": i.expires_ms,
        "expires": when(i.expires_ms),
        "expires_in": expires_in(now_ms, i.expires_ms),
        "device": i.device,
    })
}

pub fn invites(o: &mut Out, list: &[InviteView], now_ms: u64, as_json: bool) -> Result<()> {
    if as_json {
        let all: Vec<_> = list.iter().map(|i| invite_json(i, now_ms)).collect();
        return json(o, &all);
    }
    if list.is_empty() {
        say!(
            o,
            "No open invitations. Issue one with `huddle invite --name NAME --role ROLE`."
        );
        return Ok(());
    }
    let named = |i: &InviteView| {
        if i.device {
            format!("{} (new device)", i.name)
        } else {
            i.name.clone()
        }
    };
    let width = list
        .iter()
        .map(|i| named(i).chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    say!(
        o,
        "{:<16}  {:<width$}  {:<9}  {:<5}  EXPIRES",
        "ID",
        "NAME",
        "ROLE",
        "ADMIN"
    );
    for i in list {
        say!(
            o,
            "{:<16}  {:<width$}  {:<9}  {:<5}  {} ({})",
            i.id,
            named(i),
            i.role,
            if i.admin { "yes" } else { "no" },
            expires_in(now_ms, i.expires_ms),
            when(i.expires_ms)
        );
    }
    Ok(())
}

pub fn invite_cancelled(o: &mut Out, i: &InviteView, as_json: bool) -> Result<()> {
    if as_json {
        return json(
            o,
            &serde_json::json!({ "id": i.id, "name": i.name, "cancelled": true }),
        );
    }
    let admin = if i.admin { ", admin" } else { "" };
    say!(
        o,
        "cancelled invitation {} for {} ({}{admin})",
        i.id,
        i.name,
        i.role
    );
    Ok(())
}

pub fn device_key(o: &mut Out, key: &DevicePublic, as_json: bool) -> Result<()> {
    if as_json {
        return json(
            o,
            &serde_json::json!({ "device": key.id.to_hex(), "keys": key.to_string() }),
        );
    }
    say!(o, "{key}");
    Ok(())
}

pub fn status(o: &mut Out, s: &Status, as_json: bool) -> Result<()> {
    if as_json {
        return json(o, s);
    }
    if let Some(changed) = &s.changed {
        say!(o, "{changed}");
        say!(o, "device {}", &s.device[..16]);
        return Ok(());
    }
    match (&s.clinic_name, &s.member) {
        (Some(clinic), Some(member)) => {
            let admin = if s.admin { ", admin" } else { "" };
            say!(
                o,
                "{clinic}: you are {member} ({}{admin})",
                s.role.as_deref().unwrap_or("?")
            );
        }
        (_, _) if s.clinic_id.is_some() => say!(o, "clinic joined; waiting for the roster"),
        _ => say!(o, "not part of a clinic yet"),
    }
    say!(
        o,
        "device {} · {} envelopes held · {} waiting",
        &s.device[..16],
        s.envelopes,
        s.pending
    );
    if s.roster_missing > 0 {
        let n = s.roster_missing;
        let (ops, are) = if n == 1 {
            ("operation", "is")
        } else {
            ("operations", "are")
        };
        say!(
            o,
            "{n} roster {ops} this device had {are} not back yet: it writes nothing until a device of the clinic has sent them (run `huddle serve`)"
        );
    } else if s.resyncing {
        say!(
            o,
            "the store was rebuilt: this device writes again after it has synced with another device (run `huddle serve`)"
        );
    }
    if s.lease_expired {
        say!(
            o,
            "clinical threads are locked: this device has been out of contact with the clinic for longer than its offline lease (connect and run `huddle serve`)"
        );
    }
    Ok(())
}

pub fn import(o: &mut Out, r: &ImportReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(o, r);
    }
    if let Some(c) = &r.joined_clinic {
        say!(o, "joined clinic {}", &c[..16.min(c.len())]);
    }
    say!(
        o,
        "{} new envelope(s), {} already held, {} waiting for earlier ones, {} refused",
        r.accepted,
        r.duplicate,
        r.waiting,
        r.refused.len()
    );
    for why in &r.refused {
        warn!(o, "refused: {why}");
    }
    for n in &r.notices {
        warn!(o, "notice: {n}");
    }
    Ok(())
}

// ---- the audit trail ----

pub fn audit_trail(o: &mut Out, trail: &AuditTrail, as_json: bool, csv: bool) -> Result<()> {
    if as_json {
        let rows: Vec<_> = trail.records.iter().map(audit_row).collect();
        return json(
            o,
            &serde_json::json!({ "entries": rows, "not_sealed_to_me": trail.not_sealed_to_me }),
        );
    }
    if csv {
        o.stdout.push_str(&audit_csv(trail));
        return Ok(());
    }
    if trail.records.is_empty() {
        say!(o, "no audit entries");
    }
    for r in &trail.records {
        let member = r
            .member_name
            .clone()
            .or_else(|| r.member.map(|m| format!("member {}", m.short())))
            .unwrap_or_else(|| "?".into());
        let thread = r
            .event
            .thread()
            .map(|t| format!(" thread {}", t.short()))
            .unwrap_or_default();
        let details = r.event.details();
        let details = if details.is_empty() {
            String::new()
        } else {
            format!(" ({details})")
        };
        say!(
            o,
            "{}  {}  device {}  {}{thread}{details}",
            localtime::local(r.at_ms),
            member,
            r.device.short(),
            r.event.kind()
        );
    }
    if trail.not_sealed_to_me > 0 {
        warn!(
            o,
            "{} older entries were written before this device was an admin and are not readable here",
            trail.not_sealed_to_me
        );
    }
    Ok(())
}

pub fn audit_findings(o: &mut Out, findings: &[Finding], as_json: bool) -> Result<()> {
    if as_json {
        let rows: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
        return json(
            o,
            &serde_json::json!({ "findings": rows, "ok": findings.is_empty() }),
        );
    }
    if findings.is_empty() {
        say!(o, "every audit chain held is intact");
    }
    for f in findings {
        say!(o, "{f}");
    }
    Ok(())
}

/// Emergency accesses, one a line (or JSON).
pub fn emergencies(o: &mut Out, list: &[huddle::node::EmergencyView], as_json: bool) -> Result<()> {
    if as_json {
        return json(o, list);
    }
    for e in list {
        let state = if e.active { "active" } else { "ended" };
        say!(
            o,
            "{:.8}  {}  {} → {} ({state}): {}",
            e.thread,
            e.member,
            localtime::local(e.from_ms),
            localtime::local(e.until_ms),
            e.reason
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::expires_in;

    #[test]
    fn expiry_reads_in_words() {
        const MIN: u64 = 60_000;
        let now = 1_000_000;
        assert_eq!(expires_in(now, now + 59_999), "in under a minute");
        assert_eq!(expires_in(now, now - 5), "in under a minute");
        assert_eq!(expires_in(now, now + MIN), "in 1 minute");
        assert_eq!(expires_in(now, now + 42 * MIN), "in 42 minutes");
        assert_eq!(expires_in(now, now + 120 * MIN), "in 2 hours");
        assert_eq!(
            expires_in(now, now + 24 * 60 * MIN - 1),
            "in 23 hours 59 minutes"
        );
        assert_eq!(expires_in(now, now + 7 * 24 * 60 * MIN), "in 7 days");
        assert_eq!(
            expires_in(now, now + 25 * 60 * MIN + 5 * MIN),
            "in 1 day 1 hour"
        );
    }
}
