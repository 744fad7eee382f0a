//! Rendering what the node returned for an operation, in this process: plain text for
//! people, JSON with `--json` ([`super::output`] holds the formats). The operation is
//! at hand too, for results that only say "done" (a removal, a role change). An answer
//! that reports a problem (envelopes refused by an import, findings of `audit verify`)
//! is printed, then returned as the command's error.

use anyhow::{Result, bail};

use super::output::{self, Out};
use huddle::host::control::protocol::{Answer, LockedNetwork};
use huddle::node::{Op, OpResult};

/// How to print: `--json`, and `huddle audit --csv`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub json: bool,
    pub csv: bool,
}

/// Prints `result` of `op` into `o`; fails (after printing) where the command must.
pub fn result(o: &mut Out, op: &Op, result: &OpResult, style: Style) -> Result<()> {
    let json = style.json;
    match (op, result) {
        (Op::Threads, OpResult::Threads { threads, problems }) => {
            for p in problems {
                o.stderr.push_str(&format!("warning: {p}\n"));
            }
            output::threads(o, threads, json)
        }
        (_, OpResult::Status(s)) => output::status(o, s, json),
        (_, OpResult::ThreadCreated(id)) => output::id(o, &id.to_hex(), json),
        (_, OpResult::Message(id)) => output::id(o, id, json),
        (_, OpResult::Thread(detail)) => output::thread(o, detail, json),
        (Op::Tasks { mine }, OpResult::Tasks(tasks)) => output::tasks(o, tasks, *mine, json),
        (_, OpResult::MarkedRead(n)) => output::count(o, "marked read", *n, json),
        (
            Op::AddMember { name, role, admin },
            OpResult::MemberAdded {
                member,
                stranded_invites,
            },
        ) => {
            // An open invitation for this name can no longer be redeemed: say so.
            for i in stranded_invites {
                o.stderr.push_str(&format!(
                    "note: invitation {} for `{}` can no longer be redeemed (that name is \
                     taken now); withdraw it with `huddle invite cancel {}`\n",
                    i.id, i.name, i.id
                ));
            }
            if json {
                return output::id(o, member, json);
            }
            let admin = if *admin { " and admin" } else { "" };
            o.stdout.push_str(&format!(
                "added {name} as {role}{admin} (member {}). To enroll their device, run \
                 `huddle device key` on it, then here: huddle device add --member \"{name}\" \
                 --key KEYS\n",
                &member[..8.min(member.len())]
            ));
            Ok(())
        }
        (Op::RemovedMembers, OpResult::Members(members)) => {
            output::removed_members(o, members, json)
        }
        (_, OpResult::Members(members)) => output::members(o, members, json),
        (_, OpResult::Devices(devices)) => output::devices(o, devices, json),
        (_, OpResult::DeviceKey(key)) => output::device_key(o, key, json),
        (Op::AddDevice { member, .. }, OpResult::DeviceAdded(id)) => {
            if json {
                return output::id(o, &id.to_hex(), json);
            }
            o.stdout.push_str(&format!(
                "enrolled device {} for {member}; it syncs with the clinic once it meets one of \
                 its devices (`huddle serve` on both, same network)\n",
                id.to_hex()
            ));
            Ok(())
        }
        (_, OpResult::Revoked(ids)) => {
            if json {
                let ids: Vec<String> = ids.iter().map(|d| d.to_hex()).collect();
                return output::json(o, &serde_json::json!({ "revoked": ids }));
            }
            for d in ids {
                o.stdout.push_str(&format!(
                    "revoked device {}: disconnected, its later envelopes refused, keys rotated\n",
                    d.short()
                ));
            }
            Ok(())
        }
        (_, OpResult::Exported(n)) => output::count(o, "envelopes exported", *n as usize, json),
        (_, OpResult::Imported(report)) => {
            output::import(o, report, json)?;
            if !report.refused.is_empty() {
                bail!(
                    "{} envelope(s) were refused; the valid ones were imported",
                    report.refused.len()
                );
            }
            Ok(())
        }
        (
            _,
            OpResult::Invitation {
                text,
                no_addresses,
                expires_ms,
            },
        ) => invitation(o, text, *no_addresses, *expires_ms, json),
        (
            Op::InviteDevice { member, .. },
            OpResult::DeviceInvitation {
                text,
                no_addresses,
                expires_ms,
                revoked,
            },
        ) => {
            if let Some(d) = revoked {
                o.stderr.push_str(&format!(
                    "revoked device {} of {member}: it is cut off, and keys rotate\n",
                    d.short()
                ));
            }
            o.stderr.push_str(&format!(
                "a new device for {member}: they keep their history and role\n"
            ));
            invitation(o, text, *no_addresses, *expires_ms, json)
        }
        (_, OpResult::Invites { invites, now_ms }) => output::invites(o, invites, *now_ms, json),
        (_, OpResult::InviteCancelled(i)) => output::invite_cancelled(o, i, json),
        (_, OpResult::Policy(p)) => output::policy(o, p, json),
        (_, OpResult::Emergencies(list)) => output::emergencies(o, list, json),
        (_, OpResult::Audit(trail)) => output::audit_trail(o, trail, json, style.csv),
        (
            _,
            OpResult::AuditVerified {
                findings,
                envelopes_modified,
            },
        ) => {
            output::audit_findings(o, findings, json)?;
            let modified = match envelopes_modified {
                true => {
                    "; the store's envelope records were changed outside Huddle \
                     (`huddle repair` rebuilds them from the peers)"
                }
                false => "",
            };
            if !findings.is_empty() {
                bail!(
                    "the audit trail has {} finding(s){modified}",
                    findings.len()
                );
            }
            if *envelopes_modified {
                bail!("no audit entry is changed{modified}");
            }
            Ok(())
        }
        (Op::Unrestrict { thread }, OpResult::Done) => {
            if json {
                return output::json(o, &serde_json::json!({ "unrestricted": thread }));
            }
            o.stdout
                .push_str(&format!("thread {thread} is no longer restricted\n"));
            Ok(())
        }
        (Op::Restrict { thread, to }, OpResult::Done) => {
            if json {
                return output::json(o, &serde_json::json!({ "restricted": thread, "to": to }));
            }
            o.stdout.push_str(&format!(
                "thread {thread} restricted to {}\n",
                to.join(", ")
            ));
            Ok(())
        }
        (Op::RemoveMember { name }, OpResult::Done) => {
            o.stdout.push_str(&format!(
                "removed {name}: their devices are cut off and keys rotated\n"
            ));
            Ok(())
        }
        (Op::RestoreMember { name }, OpResult::Done) => {
            o.stdout.push_str(&format!(
                "restored {name}, with no device: issue one with \
                 `huddle device invite --member '{name}'`\n"
            ));
            Ok(())
        }
        (Op::ChangeRole { name, role, .. }, OpResult::Done) => {
            o.stdout.push_str(&format!("{name} is now {role}\n"));
            Ok(())
        }
        (Op::AddPeer { addr }, OpResult::Done) => output::id(o, addr, json),
        (_, OpResult::Done) => Ok(()),
        (op, other) => bail!("the node answered {op:?} with {other:?}"),
    }
}

/// `huddle status` of a locked node: what it may say without keys.
pub fn locked(o: &mut Out, answer: &Answer, json: bool) -> Result<()> {
    let Answer::Locked {
        network,
        inbox,
        serve,
    } = answer
    else {
        bail!("not a locked node's status");
    };
    let network_word = match network {
        LockedNetwork::Blind => "blind",
        LockedNetwork::Stopped => "stopped",
    };
    if json {
        let status = serde_json::json!({ "locked": true, "network": network_word, "inbox": inbox });
        o.stdout.push_str(&format!("{status}\n"));
        return Ok(());
    }
    let who = if *serve {
        "huddle serve is locked (idle, or `huddle lock`): it holds no keys and syncs blind \
         (it stores and forwards envelopes it cannot read); run `huddle unlock`"
    } else {
        "the desktop app is locked: unlock it in its window"
    };
    match network {
        LockedNetwork::Blind => {
            o.stdout.push_str(&format!(
                "{who}\n{inbox} envelope(s) received while locked wait for the unlock\n"
            ));
        }
        LockedNetwork::Stopped => o
            .stdout
            .push_str("huddle serve is locked and not syncing; run `huddle unlock`\n"),
    }
    Ok(())
}

/// An invitation's text on stdout; its validity and reachability on stderr.
fn invitation(
    o: &mut Out,
    text: &str,
    no_addresses: bool,
    expires_ms: u64,
    json: bool,
) -> Result<()> {
    if expires_ms > 0 {
        let now = huddle::node::now_ms();
        o.stderr.push_str(&format!(
            "valid until {} ({}), once, on one device\n",
            output::when(expires_ms),
            output::expires_in(now, expires_ms)
        ));
    }
    if no_addresses {
        o.stderr.push_str(
            "note: no addresses known yet; the new device will look for this one by \
             mDNS (run `huddle serve`)\n",
        );
    }
    output::id(o, text, json)
}
