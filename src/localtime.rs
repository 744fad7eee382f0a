//! Times as people read them: in the computer's time zone ("2026-11-26 14:05"), in UTC
//! for machines and hovers ("2026-11-26 13:05 UTC"), today's local date, and due dates
//! typed by people (refused when already past). The public functions use the system
//! zone; each has a twin that takes the zone, which the tests use.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

const SHOWN: &str = "%Y-%m-%d %H:%M";

/// A due date that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DueError {
    #[error("`{0}` is not a date (expected YYYY-MM-DD)")]
    Malformed(String),
    #[error("the due date {due} is in the past (today is {today})")]
    Past { due: Date, today: Date },
}

/// `ms` (since the Unix epoch) in the computer's time zone, e.g. "2026-11-26 14:05".
pub fn local(ms: u64) -> String {
    in_zone(ms, &TimeZone::system())
}

/// The time of day of `ms` as people say it, e.g. "2:14 pm"; with the date when it
/// was not today, e.g. "Dec 3, 2:14 pm".
pub fn clock(ms: u64) -> String {
    clock_in(ms, &TimeZone::system())
}

/// [`clock`] in zone `tz`.
pub fn clock_in(ms: u64, tz: &TimeZone) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    let at = Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::MAX)
        .to_zoned(tz.clone());
    let time = at.strftime("%-I:%M %P").to_string();
    if at.date() == today_in(tz) {
        time
    } else {
        format!("{}, {time}", at.strftime("%b %-d"))
    }
}

/// `ms` in UTC, e.g. "2026-11-26 13:05 UTC".
pub fn utc(ms: u64) -> String {
    format!("{} UTC", in_zone(ms, &TimeZone::UTC))
}

/// Today's date in the computer's time zone.
pub fn today() -> Date {
    today_in(&TimeZone::system())
}

/// A due date typed as YYYY-MM-DD, refused if it is before today (local).
pub fn parse_due(s: &str) -> Result<Date, DueError> {
    parse_due_on(s, today())
}

/// A time typed as a date (local midnight) or RFC 3339 (`2026-11-26T14:05:00Z`), as
/// ms since the Unix epoch (`huddle audit --since`, the audit screen's filter).
pub fn since_ms(s: &str) -> Result<u64, SinceError> {
    let s = s.trim();
    let at = if let Ok(date) = s.parse::<Date>() {
        date.to_zoned(TimeZone::system())
            .map_err(|_| SinceError(s.chars().take(40).collect()))?
            .timestamp()
    } else {
        s.parse::<Timestamp>()
            .map_err(|_| SinceError(s.chars().take(40).collect()))?
    };
    Ok(u64::try_from(at.as_millisecond()).unwrap_or(0))
}

/// A time that [`since_ms`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a time: give YYYY-MM-DD or RFC 3339 (2026-11-26T14:05:00Z)")]
pub struct SinceError(String);

/// `ms` in zone `tz`. Times beyond what a clock can show (past the year 9999) are
/// shown as the latest time there is rather than failing.
pub fn in_zone(ms: u64, tz: &TimeZone) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    let at = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX);
    at.to_zoned(tz.clone()).strftime(SHOWN).to_string()
}

/// The local date of `ms` (since the Unix epoch) in the computer's time zone.
pub fn date(ms: u64) -> Date {
    date_in(ms, &TimeZone::system())
}

/// [`date`] in zone `tz`.
pub fn date_in(ms: u64, tz: &TimeZone) -> Date {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::MAX)
        .to_zoned(tz.clone())
        .date()
}

/// Today's date in zone `tz`.
pub fn today_in(tz: &TimeZone) -> Date {
    Zoned::now().with_time_zone(tz.clone()).date()
}

/// A due date typed as YYYY-MM-DD, refused if it is before `today`.
pub fn parse_due_on(s: &str, today: Date) -> Result<Date, DueError> {
    let s = s.trim();
    let due: Date = s
        .parse()
        .map_err(|_| DueError::Malformed(s.chars().take(40).collect()))?;
    if due < today {
        return Err(DueError::Past { due, today });
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    /// 2026-11-26 13:05:00 UTC.
    const MS: u64 = 1_795_698_300_000;

    #[test]
    fn the_clock_says_the_time_of_day_and_the_date_when_not_today() {
        assert_eq!(clock_in(MS, &TimeZone::UTC), "Nov 26, 1:05 pm");
        let now = Timestamp::now().as_millisecond() as u64;
        let today = clock_in(now, &TimeZone::UTC);
        assert!(today.ends_with(" am") || today.ends_with(" pm"), "{today}");
        assert!(!today.contains(','), "{today}");
    }

    #[test]
    fn times_show_in_the_given_zone() {
        let new_york = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(in_zone(MS, &new_york), "2026-11-26 08:05");
        let tokyo = TimeZone::fixed(jiff::tz::offset(9));
        assert_eq!(in_zone(MS, &tokyo), "2026-11-26 22:05");
        assert_eq!(utc(MS), "2026-11-26 13:05 UTC");
        // Summer time in New York is an hour closer to UTC.
        assert_eq!(
            in_zone(MS - 150 * 86_400_000, &new_york),
            "2026-06-29 09:05"
        );
    }

    #[test]
    fn impossible_times_do_not_fail() {
        assert!(in_zone(u64::MAX, &TimeZone::UTC).starts_with("9999-12-"));
    }

    #[test]
    fn today_depends_on_the_zone() {
        let ahead = today_in(&TimeZone::fixed(jiff::tz::offset(14)));
        let behind = today_in(&TimeZone::fixed(jiff::tz::offset(-12)));
        let days = (ahead - behind).get_days();
        assert!(days == 1 || days == 2, "{ahead} vs {behind}");
    }

    #[test]
    fn due_dates_in_the_past_are_refused() {
        let today = date(2026, 11, 26);
        assert_eq!(parse_due_on("2026-11-26", today), Ok(today));
        assert_eq!(parse_due_on(" 2026-12-01 ", today), Ok(date(2026, 12, 1)));
        let err = parse_due_on("2026-11-20", today).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the due date 2026-11-20 is in the past (today is 2026-11-26)"
        );
        for bad in ["tomorrow", "2026-13-01", "26-11-2026", ""] {
            assert!(
                matches!(parse_due_on(bad, today), Err(DueError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
