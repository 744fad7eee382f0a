//! From a parsed command line to the node's typed operation ([`Op`]): the one place
//! where the CLI's words become the node's request. Decisions that must be made before
//! the request leaves this process are made here: a post's message id (so that a lost
//! answer can be checked), file paths made absolute (a running node has its own working
//! directory), durations in milliseconds.

use anyhow::{Context, Result, bail};

use super::args::{
    AuditArgs, AuditCommand, BundleCommand, Command, DeviceCommand, DirectCommand,
    EmergencyCommand, InviteArgs, InviteCommand, MemberCommand, PeerCommand, PolicyCommand,
    TaskCommand, ThreadCommand,
};
use huddle::core::thread::{MESSAGE_RANDOM_BYTES, Subject};
use huddle::node::{AuditFilter, Op, SafeguardChange, TaskRequest};

/// The operation `command` asks of the node. The commands that are not node operations
/// (`serve`, `join`, `repair`, `unlock`, `lock`, `passphrase`) are run before this.
pub fn plan(command: &Command) -> Result<Op> {
    Ok(match command {
        Command::Init { clinic, name, role } => Op::Init {
            clinic: clinic.clone(),
            name: name.clone(),
            role: *role,
        },
        Command::Thread(ThreadCommand::New(t)) => Op::NewThread {
            subject: match (&t.patient, &t.topic) {
                (Some(p), _) => Subject::Patient(p.clone()),
                (_, Some(tp)) => Subject::Topic(tp.clone()),
                _ => bail!("give --patient LABEL or --topic LABEL"),
            },
            category: t.category,
            title: t.title.clone(),
        },
        Command::Direct(DirectCommand::New { names }) => Op::NewDirect {
            names: names.clone(),
        },
        Command::Thread(ThreadCommand::Restrict { thread, to }) => Op::Restrict {
            thread: thread.clone(),
            to: to.clone(),
        },
        Command::Thread(ThreadCommand::Unrestrict { thread }) => Op::Unrestrict {
            thread: thread.clone(),
        },
        Command::Emergency(EmergencyCommand::Open { thread, reason }) => Op::OpenEmergency {
            thread: thread.clone(),
            reason: reason.clone(),
        },
        Command::Emergency(EmergencyCommand::List) => Op::Emergencies,
        Command::Post {
            thread,
            text,
            urgent,
            task,
            assignee,
            due,
            reply_to,
            id,
        } => Op::Post {
            reply_to: reply_to.clone(),
            thread: thread.clone(),
            text: text.clone(),
            urgent: *urgent,
            task: match (task, assignee, due) {
                (true, Some(a), Some(d)) => Some(TaskRequest {
                    assignee: a.clone(),
                    due: d.clone(),
                }),
                (true, _, _) => bail!("--task needs --assignee NAME and --due DATE"),
                _ => None,
            },
            id: Some(match id {
                Some(hex_id) => message_id(hex_id)?,
                None => huddle::node::random_message_id(),
            }),
        },
        Command::Threads => Op::Threads,
        Command::Show { thread } => Op::Show {
            thread: thread.clone(),
        },
        Command::Read { thread } => Op::Read {
            thread: thread.clone(),
        },
        Command::Tasks { mine } => Op::Tasks { mine: *mine },
        Command::Edit {
            thread,
            message,
            text,
        } => Op::Edit {
            thread: thread.clone(),
            message: message.clone(),
            text: text.clone(),
        },
        Command::Retract { thread, message } => Op::Retract {
            thread: thread.clone(),
            message: message.clone(),
        },
        Command::Task(TaskCommand::Done { thread, message }) => Op::CompleteTask {
            thread: thread.clone(),
            message: message.clone(),
        },
        Command::Member(MemberCommand::Add { name, role, admin }) => Op::AddMember {
            name: name.clone(),
            role: *role,
            admin: *admin,
        },
        Command::Member(MemberCommand::Remove { name }) => Op::RemoveMember { name: name.clone() },
        Command::Member(MemberCommand::Restore { name }) => {
            Op::RestoreMember { name: name.clone() }
        }
        Command::Device(DeviceCommand::Invite {
            member,
            replace,
            expires,
        }) => Op::InviteDevice {
            member: member.clone(),
            replace: replace.clone(),
            valid_for_ms: u64::try_from(std::time::Duration::from(*expires).as_millis())
                .unwrap_or(u64::MAX),
        },
        Command::Member(MemberCommand::Role {
            name,
            role,
            admin,
            no_admin,
        }) => Op::ChangeRole {
            name: name.clone(),
            role: *role,
            admin: match (admin, no_admin) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        },
        Command::Members { removed: false } => Op::Members,
        Command::Members { removed: true } => Op::RemovedMembers,
        Command::Devices => Op::Devices,
        Command::Device(DeviceCommand::Key) => Op::DeviceKey,
        Command::Device(DeviceCommand::Add { member, key }) => Op::AddDevice {
            member: member.clone(),
            key: *key,
        },
        Command::Device(DeviceCommand::Revoke { device, member }) => match (device, member) {
            (Some(d), _) => Op::RevokeDevice { device: d.clone() },
            (None, Some(name)) => Op::RevokeMemberDevices {
                member: name.clone(),
            },
            (None, None) => bail!("name a device, or a member with --member"),
        },
        Command::Bundle(BundleCommand::Export { file }) => Op::ExportBundle {
            path: absolute(file)?,
        },
        Command::Bundle(BundleCommand::Import { file }) => Op::ImportBundle {
            path: absolute(file)?,
        },
        Command::Status => Op::Status,
        Command::Invite(InviteArgs {
            action: Some(InviteCommand::Cancel { id }),
            ..
        }) => Op::CancelInvite { id: id.clone() },
        Command::Invite(InviteArgs {
            action: None,
            name,
            role,
            admin,
            expires,
        }) => {
            let (Some(name), Some(role)) = (name, role) else {
                bail!("give --name NAME and --role ROLE");
            };
            let valid: std::time::Duration = (*expires).into();
            Op::Invite {
                name: name.clone(),
                role: *role,
                admin: *admin,
                valid_for_ms: u64::try_from(valid.as_millis()).unwrap_or(u64::MAX),
            }
        }
        Command::Invites => Op::Invites,
        Command::Policy { action: None } => Op::Policy,
        Command::Policy {
            action:
                Some(PolicyCommand::Set {
                    idle_lock,
                    lease_days,
                    emergency_minutes,
                }),
        } => Op::SetSafeguards(SafeguardChange {
            idle_lock_minutes: *idle_lock,
            offline_lease_days: *lease_days,
            emergency_minutes: *emergency_minutes,
        }),
        Command::Audit(AuditArgs {
            action: Some(AuditCommand::Verify),
            ..
        }) => Op::VerifyAudit,
        Command::Audit(args) => Op::Audit(AuditFilter {
            member: args.member.clone(),
            thread: args.thread.clone(),
            since_ms: args.since,
        }),
        Command::Peer(PeerCommand::Add { addr }) => {
            huddle::net::addr::parse(addr).map_err(anyhow::Error::msg)?;
            Op::AddPeer {
                addr: addr.trim().to_string(),
            }
        }
        Command::Serve(_)
        | Command::Join { .. }
        | Command::Repair
        | Command::Unlock
        | Command::Lock
        | Command::Passphrase(_) => {
            bail!(
                "`serve`, `join`, `repair`, `unlock`, `lock` and `passphrase` are not node \
                 operations"
            )
        }
    })
}

/// A message id as `--id` gives it: 16 lowercase hex characters.
fn message_id(hex_id: &str) -> Result<[u8; MESSAGE_RANDOM_BYTES]> {
    let mut random = [0u8; MESSAGE_RANDOM_BYTES];
    match hex::decode_to_slice(hex_id, &mut random) {
        Ok(()) if !hex_id.bytes().any(|b| b.is_ascii_uppercase()) => Ok(random),
        _ => bail!(
            "`{hex_id}` is not a message id ({} hex characters)",
            2 * MESSAGE_RANDOM_BYTES
        ),
    }
}

/// `path` as the node must read it: absolute, from this command's working directory.
fn absolute(path: &std::path::Path) -> Result<std::path::PathBuf> {
    std::path::absolute(path).with_context(|| format!("reading the path {}", path.display()))
}

/// Whether a command needs a data directory that may not exist yet.
pub fn creates(op: &Op) -> bool {
    matches!(op, Op::Init { .. } | Op::DeviceKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn planned(args: &[&str]) -> Op {
        let cli = super::super::args::Cli::try_parse_from(
            std::iter::once("huddle").chain(args.iter().copied()),
        )
        .unwrap();
        plan(&cli.command).unwrap()
    }

    #[test]
    fn a_post_carries_an_id_chosen_here_and_paths_are_absolute() {
        let Op::Post { id: Some(a), .. } = planned(&["post", "3fa8", "hello"]) else {
            panic!("a post");
        };
        let Op::Post { id: Some(b), .. } = planned(&["post", "3fa8", "hello"]) else {
            panic!("a post");
        };
        assert_ne!(a, b, "each post chooses its own id");
        let Op::Post {
            id: Some(given), ..
        } = planned(&["post", "3fa8", "hello", "--id", "00112233445566ff"])
        else {
            panic!("a post");
        };
        assert_eq!(hex::encode(given), "00112233445566ff");
        let Op::ExportBundle { path } = planned(&["bundle", "export", "out.bundle"]) else {
            panic!("an export");
        };
        assert!(
            path.is_absolute() && path.ends_with("out.bundle"),
            "{path:?}"
        );
    }

    #[test]
    fn text_that_looks_like_a_flag_is_text() {
        let Op::Post { text, .. } = planned(&["post", "3fa8", "--", "--urgent"]) else {
            panic!("a post");
        };
        assert_eq!(text, "--urgent");
    }
}
