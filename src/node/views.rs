//! What the node shows: plain structs with names resolved, for the CLI (text or JSON)
//! and later the app.

use serde::{Deserialize, Serialize};

use crate::core::ids::ThreadId;
use crate::core::thread::{Priority, Subject, TaskStatus};

/// Stored summaries do not keep their thread (the key does): filled in when listed.
fn no_thread() -> ThreadId {
    ThreadId([0; 16])
}

/// One line of the thread list. Stored sealed in the summaries tree so that listing
/// 10³ threads does not open 10³ documents.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// The thread (typed); `id` is the same as hex, for listings.
    #[serde(skip, default = "no_thread")]
    pub thread: ThreadId,
    pub id: String,
    pub category: String,
    /// False when this device's role may not read the thread: only its category and
    /// size are known.
    pub readable: bool,
    pub subject: Option<Subject>,
    pub title: Option<String>,
    pub messages: usize,
    pub unread: usize,
    pub urgent_unread: usize,
    /// Unread messages that mention this device's member (`@Name`).
    #[serde(default)]
    pub mentions_unread: usize,
    pub open_tasks: usize,
    pub last_ms: Option<u64>,
    /// Envelopes held for this thread (readable or not).
    pub envelopes: u64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TaskDetail {
    pub assignee: String,
    pub due: String,
    pub status: TaskStatus,
    pub done_by: Option<String>,
    pub done_ms: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MessageDetail {
    pub id: String,
    pub author: String,
    /// The author's role now (a removed member's is empty).
    pub author_role: String,
    /// The author's device (short id).
    pub author_device: String,
    pub at_ms: u64,
    pub body: String,
    pub priority: Priority,
    pub task: Option<TaskDetail>,
    pub read_by: Vec<String>,
    pub unread: bool,
    /// The author changed the text after posting. A serve of the previous release sends
    /// neither field: false.
    #[serde(default)]
    pub edited: bool,
    /// The author retracted it (the text is empty).
    #[serde(default)]
    pub retracted: bool,
    /// The message it answers, quoted. A serve of the previous release sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<QuoteDetail>,
    /// How many messages of the thread answer it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replies: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The message a reply answers, as the reply shows it. The quote is read from the
/// original now, never copied into the reply: an edit shows in the quote, and a
/// retraction takes the quoted text away too.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct QuoteDetail {
    /// The original's shown id.
    pub id: String,
    /// Its author's name (empty when the original is not in this thread).
    pub author: String,
    /// The start of its text on one line (empty when retracted or not here).
    pub quote: String,
    pub retracted: bool,
}

/// Most characters of an original that a reply quotes.
pub const QUOTE_CHARS: usize = 120;

/// The start of `body` on one line, at most [`QUOTE_CHARS`] characters (an ellipsis
/// when cut).
pub fn quote_of(body: &str) -> String {
    // Joined word by word, and only until it is too long: a long body is not copied.
    let mut line = String::new();
    for word in body.split_whitespace() {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        if line.chars().count() > QUOTE_CHARS {
            let cut: String = line.chars().take(QUOTE_CHARS - 1).collect();
            return format!("{}…", cut.trim_end());
        }
    }
    line
}

/// "1 reply", "3 replies"; nothing for none.
pub fn replies_words(n: usize) -> Option<String> {
    match n {
        0 => None,
        1 => Some("1 reply".to_string()),
        n => Some(format!("{n} replies")),
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ThreadDetail {
    /// The thread (typed); `id` is the same as hex. Not serialized: a detail that
    /// crossed the control socket names its thread by `id` only.
    #[serde(skip, default = "no_thread")]
    pub thread: ThreadId,
    pub id: String,
    pub category: String,
    pub subject: Subject,
    pub title: String,
    pub created_by: String,
    pub created_ms: u64,
    /// Emergency grants active now, announced to everyone who reads the thread.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emergencies: Vec<super::EmergencyView>,
    /// The participants' names if the thread is restricted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restricted_to: Vec<String>,
    pub messages: Vec<MessageDetail>,
}

/// One device of the clinic, for `huddle devices`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeviceView {
    pub device: String,
    pub member: String,
    pub role: String,
    /// `active`, `revoked` or `removed` (its member was removed).
    pub status: String,
    /// Online now, or the day it was last seen: never more precise (who is at work
    /// when is not the clinic's business to record here). A serve of the previous
    /// release sends `last_seen_ms` instead: read as never seen.
    #[serde(default)]
    pub seen: Seen,
    pub this_device: bool,
}

/// Marks online the active devices `connected` names (device ids, hex): the running
/// node's authenticated connections.
pub fn mark_online(devices: &mut [DeviceView], connected: &[String]) {
    for d in devices.iter_mut() {
        if d.status == "active" && !d.this_device && connected.contains(&d.device) {
            d.seen = Seen::Online;
        }
    }
}

/// Whether a device is online, or when it was last seen, to the day. "Online" comes
/// from a connection of the running node (never from what a device says about itself);
/// the day from the newest time the device stated on an envelope this device holds,
/// which a modified client can set, so a day after today reads as today.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    Online,
    Today,
    Yesterday,
    /// An earlier day, YYYY-MM-DD (local).
    On(String),
    #[default]
    Never,
}

impl Seen {
    /// The local day of the newest envelope time `ms`, against today's.
    pub fn from_day(ms: Option<u64>) -> Seen {
        let tz = jiff::tz::TimeZone::system();
        Seen::from_day_in(ms, crate::localtime::today_in(&tz), &tz)
    }

    /// [`Seen::from_day`] against `today`, in zone `tz`.
    pub fn from_day_in(ms: Option<u64>, today: jiff::civil::Date, tz: &jiff::tz::TimeZone) -> Seen {
        let Some(ms) = ms else {
            return Seen::Never;
        };
        let day = crate::localtime::date_in(ms, tz);
        if day >= today {
            Seen::Today
        } else if today.yesterday().is_ok_and(|y| y == day) {
            Seen::Yesterday
        } else {
            Seen::On(day.to_string())
        }
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Online => f.write_str("online"),
            Seen::Today => f.write_str("last seen today"),
            Seen::Yesterday => f.write_str("last seen yesterday"),
            Seen::On(day) => write!(f, "last seen {day}"),
            Seen::Never => f.write_str("never seen"),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MemberView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub admin: bool,
    pub devices: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Status {
    pub clinic_id: Option<String>,
    pub clinic_name: Option<String>,
    pub device: String,
    pub member: Option<String>,
    pub role: Option<String>,
    pub admin: bool,
    pub envelopes: usize,
    pub pending: usize,
    /// The store was rebuilt and this device writes nothing until a peer has synced it.
    pub resyncing: bool,
    /// Out of contact with the clinic for longer than its lease: clinical threads locked.
    pub lease_expired: bool,
    /// The store's envelope records were changed outside Huddle (what was found, in
    /// words): nothing runs but `status`, `audit verify` and `repair`. New in this
    /// release, like `roster_missing`; a JSON reader of the previous one ignores both.
    pub changed: Option<String>,
    /// Roster operations this device had folded (its identity file recorded them) that
    /// its roster does not hold yet: it writes nothing until they are back.
    pub roster_missing: usize,
}

/// What importing a bundle did.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct ImportReport {
    pub accepted: usize,
    pub duplicate: usize,
    pub waiting: usize,
    pub refused: Vec<String>,
    pub notices: Vec<String>,
    pub joined_clinic: Option<String>,
}

/// An open invitation this device issued (never its secret).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct InviteView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub admin: bool,
    pub expires_ms: u64,
    /// A device invitation for the existing member `name` (a previous release's serve
    /// sends none: a member invitation).
    #[serde(default)]
    pub device: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use jiff::tz::TimeZone;

    #[test]
    fn presence_is_never_more_precise_than_the_day() {
        let utc = TimeZone::UTC;
        let today = date(2026, 12, 7);
        // 2026-12-07 08:30 UTC, 2026-12-06 23:59, 2026-11-30 12:00, 2027-01-01 (a
        // device that states a future time).
        let at = |ms: u64| Seen::from_day_in(Some(ms), today, &utc);
        assert_eq!(at(1_796_632_200_000), Seen::Today);
        assert_eq!(at(1_796_601_540_000), Seen::Yesterday);
        assert_eq!(at(1_796_040_000_000), Seen::On("2026-11-30".into()));
        assert_eq!(at(1_798_761_600_000), Seen::Today);
        assert_eq!(Seen::from_day_in(None, today, &utc), Seen::Never);
        assert_eq!(Seen::Yesterday.to_string(), "last seen yesterday");
        assert_eq!(
            serde_json::to_value(Seen::On("2026-11-30".into())).unwrap(),
            serde_json::json!({"on": "2026-11-30"})
        );
    }

    #[test]
    fn only_active_connected_devices_other_than_this_one_are_online() {
        let device = |id: &str, status: &str, this_device: bool| DeviceView {
            device: id.into(),
            member: "Lee P.".into(),
            role: "clinician".into(),
            status: status.into(),
            seen: Seen::Never,
            this_device,
        };
        let mut all = vec![
            device("aa", "active", false),
            device("bb", "revoked", false),
            device("cc", "active", true),
            device("dd", "active", false),
        ];
        mark_online(&mut all, &["aa".into(), "bb".into(), "cc".into()]);
        let seen: Vec<&Seen> = all.iter().map(|d| &d.seen).collect();
        assert_eq!(
            seen,
            [&Seen::Online, &Seen::Never, &Seen::Never, &Seen::Never]
        );
    }

    #[test]
    fn a_device_view_of_the_previous_release_still_reads() {
        let old = serde_json::json!({
            "device": "aa", "member": "Lee P.", "role": "clinician", "status": "active",
            "last_seen_ms": 1_796_632_200_000_u64, "this_device": false
        });
        let read: DeviceView = serde_json::from_value(old).expect("decodes");
        assert_eq!(read.seen, Seen::Never);
    }
}
