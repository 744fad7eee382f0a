//! The safeguards of the app's screens: the audit trail for admins (a page of it,
//! `audit verify`, and a CSV export written as `huddle audit --csv` writes it, itself
//! audited), and the passphrase change.
//!
//! Changing the passphrase: the store can be open once, and only opening it checks the
//! current passphrase (with the rate limit and the record of failed unlocks that every
//! unlock has). So the bridge locks (the node stops, its keys leave memory), opens the
//! store with the current passphrase, re-wraps its key with the new one, and unlocks
//! with the new one — the claim on the data directory held throughout, so no other node
//! or command takes it meanwhile. A wrong current passphrase leaves the app locked, as
//! a failed unlock does: someone at an unlocked screen who does not know the passphrase
//! cannot change it, nor try guesses for free.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use zeroize::Zeroizing;

use super::Worker;
use crate::app::message::{AuditPage, AuditQuery, Phase, Update};
use crate::host::claim::Claim;
use crate::node::audit_csv::audit_csv;
use crate::node::{AuditFilter, AuditTrail, Node, Op, OpResult};
use crate::store::{Store, StoreError};

/// Audit entries one page shows at most (the newest); the export holds them all.
pub const MAX_AUDIT_ROWS: usize = 500;
/// Longest filter text accepted (a member's name, a thread id, a time).
pub const MAX_FILTER_CHARS: usize = 128;
/// How long the passphrase change waits for a command that holds the store.
const STORE_WAIT: Duration = Duration::from_secs(15);

/// The node's filter for `query`, read as `huddle audit` reads its options.
pub fn audit_filter(query: &AuditQuery) -> Result<AuditFilter> {
    let given = |s: &str| -> Result<Option<String>> {
        let s = s.trim();
        if s.chars().count() > MAX_FILTER_CHARS {
            bail!("a filter may be at most {MAX_FILTER_CHARS} characters");
        }
        Ok((!s.is_empty()).then(|| s.to_string()))
    };
    let since_ms = match given(&query.since)? {
        Some(s) => Some(crate::localtime::since_ms(&s)?),
        None => None,
    };
    Ok(AuditFilter {
        member: given(&query.member)?,
        thread: given(&query.thread)?,
        since_ms,
    })
}

impl Worker {
    /// The filtered trail, read on the node thread.
    async fn read_trail(&self, query: &AuditQuery) -> Result<AuditTrail> {
        match self.execute(Op::Audit(audit_filter(query)?)).await? {
            OpResult::Audit(trail) => Ok(trail),
            other => bail!("the node answered the trail with {other:?}"),
        }
    }

    /// Sends a page of the trail: the newest [`MAX_AUDIT_ROWS`] entries first.
    pub(super) async fn audit_page(&mut self, query: AuditQuery) -> Result<()> {
        let trail = self.read_trail(&query).await?;
        let total = trail.records.len();
        let rows = trail
            .records
            .into_iter()
            .rev()
            .take(MAX_AUDIT_ROWS)
            .collect();
        self.out.send(Update::Audit(Box::new(AuditPage {
            query,
            rows,
            total,
            not_sealed_to_me: trail.not_sealed_to_me,
        })));
        Ok(())
    }

    pub(super) async fn verify_audit(&mut self) -> Result<()> {
        let OpResult::AuditVerified { findings, .. } = self.execute(Op::VerifyAudit).await? else {
            bail!("the node answered the check with something else");
        };
        self.out.send(Update::Verified(
            findings.iter().map(|f| f.to_string()).collect(),
        ));
        Ok(())
    }

    /// Writes the filtered trail as CSV to a new owner-only file at `path`, records the
    /// export in the trail, and shows the page again (the export entry on it).
    pub(super) async fn export_audit(&mut self, query: AuditQuery, path: PathBuf) -> Result<()> {
        if !path.is_absolute() {
            bail!("give the export file's full path (e.g. /home/you/audit.csv)");
        }
        let trail = self.read_trail(&query).await?;
        let rows = trail.records.len();
        let csv = audit_csv(&trail);
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_new(&target, csv.as_bytes())).await??;
        self.execute(Op::RecordAuditExport {
            entries: rows as u64,
        })
        .await?;
        self.out.send(Update::Done(format!(
            "Exported {rows} audit entries to {}",
            path.display()
        )));
        self.audit_page(query).await
    }

    /// Changes the passphrase: lock, re-wrap, unlock with the new one (module docs).
    pub(super) async fn change_passphrase(
        &mut self,
        current: Zeroizing<String>,
        new: Zeroizing<String>,
    ) -> Result<()> {
        if self.host.is_none() {
            bail!("Huddle is locked: unlock it first");
        }
        if let Some(why) = crate::store::strength::weakness(&new) {
            bail!("the new passphrase is too weak: {why}. Nothing was changed");
        }
        if *new == *current {
            bail!("the new passphrase is the current one. Nothing was changed");
        }
        self.out.send(Update::Phase(Phase::Working(
            "Changing the passphrase…".into(),
        )));
        self.stop().await;
        let dir = self.dir().to_path_buf();
        let reopened = tokio::task::spawn_blocking(move || rewrap(&dir, &current, &new)).await?;
        match reopened {
            Ok((claim, mut node)) => {
                node.audit_unlock();
                self.start_claimed(claim, node).await?;
                self.out.send(Update::Done(
                    "Passphrase changed: the old one no longer opens this device".into(),
                ));
                Ok(())
            }
            Err(e) => {
                self.out.send(Update::Phase(Phase::Locked));
                Err(e)
            }
        }
    }
}

/// Re-wraps the store in `dir` with `new` after opening it with `current`, and opens
/// the node with `new`; the claim is held from before the store opens.
fn rewrap(dir: &Path, current: &str, new: &str) -> Result<(Claim, Node)> {
    let claim = Claim::take(dir)?;
    let started = Instant::now();
    let mut store = loop {
        match Store::open(dir, current.as_bytes()) {
            Err(StoreError::Locked(_)) if started.elapsed() < STORE_WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(StoreError::WrongPassphrase(_)) => {
                return Err(anyhow!(
                    "That current passphrase is wrong: nothing was changed, and Huddle locked \
                     itself. Unlock with the passphrase you use now."
                ));
            }
            opened => break opened?,
        }
    };
    store.change_passphrase(new.as_bytes())?;
    drop(store);
    let node = claim
        .open_node(new.as_bytes(), || false)
        .context("the passphrase was changed, but reopening failed: unlock with the new one")?
        .context("stopped while reopening")?;
    Ok((claim, node))
}

/// Writes `bytes` to a file that must not exist yet, readable by its owner only.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (the export never replaces a file)",
                path.display()
            )
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(member: &str, thread: &str, since: &str) -> AuditQuery {
        AuditQuery {
            member: member.into(),
            thread: thread.into(),
            since: since.into(),
        }
    }

    #[test]
    fn filters_are_read_as_huddle_audit_reads_them_and_bounded() {
        let none = audit_filter(&query(" ", "", "")).unwrap();
        assert!(none.member.is_none() && none.thread.is_none() && none.since_ms.is_none());
        let some = audit_filter(&query("  Lee P. ", "01b4", "2026-11-26T14:05:00Z")).unwrap();
        assert_eq!(some.member.as_deref(), Some("Lee P."));
        assert_eq!(some.thread.as_deref(), Some("01b4"));
        assert_eq!(some.since_ms, Some(1_795_701_900_000));
        assert!(audit_filter(&query("", "", "last tuesday")).is_err());
        let long = "x".repeat(MAX_FILTER_CHARS + 1);
        assert!(audit_filter(&query(&long, "", "")).is_err());
    }

    #[test]
    fn an_export_never_replaces_a_file_and_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.csv");
        write_new(&path, b"a,b\n").unwrap();
        assert!(write_new(&path, b"other\n").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"a,b\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
