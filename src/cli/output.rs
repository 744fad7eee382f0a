//! Printing results for people (plain text) or scripts (`--json`).

use anyhow::Result;
use serde::Serialize;

use crate::core::identity::DevicePublic;
use crate::core::thread::{Priority, Subject, TaskStatus};
use crate::node::{ImportReport, MemberView, Status, ThreadDetail, ThreadSummary};

fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
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

fn subject(s: &Subject) -> String {
    match s {
        Subject::Patient(l) => format!("patient {l}"),
        Subject::Topic(l) => format!("topic {l}"),
    }
}

pub fn id(id: &str, as_json: bool) -> Result<()> {
    if as_json {
        return json(&serde_json::json!({ "id": id }));
    }
    println!("{id}");
    Ok(())
}

pub fn count(what: &str, n: usize, as_json: bool) -> Result<()> {
    if as_json {
        return json(&serde_json::json!({ "count": n }));
    }
    println!("{n} {what}");
    Ok(())
}

pub fn threads(threads: &[ThreadSummary], as_json: bool) -> Result<()> {
    if as_json {
        return json(threads);
    }
    if threads.is_empty() {
        println!("No threads yet. Start one with `huddle thread new`.");
        return Ok(());
    }
    println!(
        "{:<10} {:<11} {:>6} {:>5}  SUBJECT — TITLE",
        "THREAD", "CATEGORY", "UNREAD", "MSGS"
    );
    for t in threads {
        let short = &t.id[..8.min(t.id.len())];
        match (&t.subject, &t.title) {
            (Some(s), Some(title)) if t.readable => {
                let mut flags = String::new();
                if t.urgent_unread > 0 {
                    flags.push_str(&format!("  [{} urgent]", t.urgent_unread));
                }
                if t.open_tasks > 0 {
                    flags.push_str(&format!("  [{} open task(s)]", t.open_tasks));
                }
                println!(
                    "{short:<10} {:<11} {:>6} {:>5}  {} — {title}{flags}",
                    t.category,
                    t.unread,
                    t.messages,
                    subject(s)
                );
            }
            _ => println!(
                "{short:<10} {:<11} {:>6} {:>5}  [locked] {} thread ({} envelopes held; your role may not read it)",
                t.category, "-", "-", t.category, t.envelopes
            ),
        }
    }
    Ok(())
}

pub fn thread(t: &ThreadDetail, as_json: bool) -> Result<()> {
    if as_json {
        return json(t);
    }
    println!("{} — {}  [{}]", subject(&t.subject), t.title, t.category);
    println!(
        "thread {} · started by {} · {}",
        t.id,
        t.created_by,
        when(t.created_ms)
    );
    for m in &t.messages {
        let urgent = if m.priority == Priority::Urgent {
            "  URGENT"
        } else {
            ""
        };
        let unread = if m.unread { "  (unread)" } else { "" };
        println!();
        println!(
            "[{}] {} · {}{urgent}{unread}",
            m.id,
            when(m.at_ms),
            m.author
        );
        for line in m.body.lines() {
            println!("  {line}");
        }
        if let Some(task) = &m.task {
            let status = match (task.status, &task.done_by) {
                (TaskStatus::Done, Some(by)) => format!("done by {by}"),
                (TaskStatus::Done, None) => "done".into(),
                (TaskStatus::Open, _) => "open".into(),
            };
            println!("  task for {}, due {}: {status}", task.assignee, task.due);
        }
        if !m.read_by.is_empty() {
            println!("  read by: {}", m.read_by.join(", "));
        }
    }
    if t.messages.is_empty() {
        println!("\nNo messages yet.");
    }
    Ok(())
}

pub fn members(members: &[MemberView], as_json: bool) -> Result<()> {
    if as_json {
        return json(members);
    }
    for m in members {
        let admin = if m.admin { ", admin" } else { "" };
        println!(
            "{} ({}{admin}) · {} device(s)",
            m.name,
            m.role,
            m.devices.len()
        );
    }
    Ok(())
}

pub fn device_key(key: &DevicePublic, as_json: bool) -> Result<()> {
    if as_json {
        return json(&serde_json::json!({ "device": key.id.to_hex(), "keys": key.to_string() }));
    }
    println!("{key}");
    Ok(())
}

pub fn status(s: &Status, as_json: bool) -> Result<()> {
    if as_json {
        return json(s);
    }
    match (&s.clinic_name, &s.member) {
        (Some(clinic), Some(member)) => {
            let admin = if s.admin { ", admin" } else { "" };
            println!(
                "{clinic}: you are {member} ({}{admin})",
                s.role.as_deref().unwrap_or("?")
            );
        }
        (_, _) if s.clinic_id.is_some() => println!("clinic joined; waiting for the roster"),
        _ => println!("not part of a clinic yet"),
    }
    println!(
        "device {} · {} envelopes held · {} waiting",
        &s.device[..16],
        s.envelopes,
        s.pending
    );
    Ok(())
}

pub fn import(r: &ImportReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(r);
    }
    if let Some(c) = &r.joined_clinic {
        println!("joined clinic {}", &c[..16.min(c.len())]);
    }
    println!(
        "{} new envelope(s), {} already held, {} waiting for earlier ones, {} refused",
        r.accepted,
        r.duplicate,
        r.waiting,
        r.refused.len()
    );
    for why in &r.refused {
        eprintln!("refused: {why}");
    }
    for n in &r.notices {
        eprintln!("notice: {n}");
    }
    Ok(())
}
