//! The audit trail as rows for `huddle audit --json` and as CSV for `huddle audit --csv`
//! and the app's "Export CSV…" (one writer, so both give the same file). Pure: no I/O.

use super::{AuditRecord, AuditTrail};
use crate::localtime;

/// The CSV header row's columns, in order (times in UTC).
pub const CSV_HEADER: &str = "time_utc,device,member,event,thread,details";

/// One audit entry as `--json` and `--csv` give it (times in UTC).
pub fn audit_row(r: &AuditRecord) -> serde_json::Value {
    serde_json::json!({
        "time": localtime::utc(r.at_ms),
        "at_ms": r.at_ms,
        "device": r.device.to_hex(),
        "seq": r.seq,
        "member": r.member_name.clone()
            .or_else(|| r.member.map(|m| format!("member {}", m.short()))),
        "member_id": r.member.map(|m| m.to_hex()),
        "event": r.event.kind(),
        "thread": r.event.thread().map(|t| t.to_hex()),
        "details": r.event.details(),
    })
}

/// One CSV field, quoted when it holds a comma, quote or line break (RFC 4180); a field
/// a spreadsheet would run as a formula is prefixed with `'`.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The trail as CSV: the header row, then one row per entry, each ending in `\n`.
pub fn audit_csv(trail: &AuditTrail) -> String {
    let mut out = String::with_capacity(64 + trail.records.len() * 160);
    out.push_str(CSV_HEADER);
    out.push('\n');
    for r in &trail.records {
        let row = audit_row(r);
        let fields: Vec<String> = ["time", "device", "member", "event", "thread", "details"]
            .iter()
            .map(|k| csv_field(row[*k].as_str().unwrap_or_default()))
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::audit::AuditEvent;
    use crate::core::ids::DeviceId;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("Lee, RN"), "\"Lee, RN\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("a\nb"), "\"a\nb\"");
    }

    #[test]
    fn the_csv_has_a_header_and_one_line_per_entry() {
        let record = AuditRecord {
            at_ms: 0,
            device: DeviceId([7; 32]),
            seq: 1,
            member: None,
            member_name: Some("Lee, RN".into()),
            event: AuditEvent::Unlock,
        };
        let trail = AuditTrail {
            records: vec![record.clone(), record],
            not_sealed_to_me: 0,
        };
        let csv = audit_csv(&trail);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3, "{csv}");
        assert_eq!(lines[0], CSV_HEADER);
        assert!(lines[1].contains(",\"Lee, RN\",unlock,,"), "{}", lines[1]);
    }
}
