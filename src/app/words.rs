//! Errors in the words a clinic's staff read: what happened and what to do next, without
//! file paths, backticks or command lines. The library's errors stay precise (the CLI
//! prints them); the app shows these beside the form they concern.

use crate::core::invite::InviteError;
use crate::core::replica::AuthorError;
use crate::core::roster::RosterError;
use crate::core::thread::ThreadError;
use crate::net::NetError;
use crate::node::NodeError;
use crate::store::StoreError;

/// The error in plain words, with the next step where there is one.
pub fn plain(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        let known = if let Some(n) = cause.downcast_ref::<NodeError>() {
            node(n)
        } else if let Some(s) = cause.downcast_ref::<StoreError>() {
            store(s)
        } else if let Some(i) = cause.downcast_ref::<InviteError>() {
            Some(invite(i))
        } else if let Some(n) = cause.downcast_ref::<NetError>() {
            net(n)
        } else if let Some(r) = cause.downcast_ref::<RosterError>() {
            roster(r)
        } else {
            None
        };
        if let Some(words) = known {
            return words;
        }
    }
    sentence(&format!("{e:#}"))
}

/// A wrong passphrase, with what the next tries cost (`free_left` tries before a wait
/// of `wait_secs`).
pub fn wrong_passphrase(free_left: usize, wait_secs: u64) -> String {
    match free_left {
        0 => format!(
            "That passphrase is wrong. Wait {} before the next try.",
            seconds(wait_secs)
        ),
        1 => "That passphrase is wrong. 1 try left before a 1-second wait.".into(),
        n => format!("That passphrase is wrong. {n} tries left before a 1-second wait."),
    }
}

fn seconds(n: u64) -> String {
    if n == 1 {
        "1 second".into()
    } else {
        format!("{n} seconds")
    }
}

fn node(e: &NodeError) -> Option<String> {
    match e {
        NodeError::Store(s) => store(s),
        NodeError::Invite(i) => Some(invite(i)),
        NodeError::Author(AuthorError::Roster(r)) => roster(r),
        NodeError::UnknownMember(name) => Some(format!(
            "No active member is named {name}. Check the spelling on the Admin screen."
        )),
        NodeError::InvitationOpen { name, .. } => Some(format!(
            "An invitation for {name} is still open (under Open invitations). Give them \
             that one, or cancel it there first."
        )),
        NodeError::AlreadyInClinic => {
            Some("This device already belongs to a clinic: unlock it instead.".into())
        }
        NodeError::Thread(ThreadError::NotYours(_)) => {
            Some("Only its author can edit or retract a message.".into())
        }
        NodeError::Thread(ThreadError::Retracted(_)) => {
            Some("That message was retracted, so it cannot be changed.".into())
        }
        _ => None,
    }
}

fn store(e: &StoreError) -> Option<String> {
    Some(match e {
        StoreError::WrongPassphrase(_) => "That passphrase is wrong. Try again.".into(),
        StoreError::TooManyFailures { wait_secs } => format!(
            "Too many wrong passphrases. Wait {} before the next try.",
            seconds(*wait_secs)
        ),
        StoreError::WeakPassphrase(why) => {
            format!("That passphrase is too easy to guess ({why}). Choose a longer one.")
        }
        StoreError::AlreadyExists(_) => {
            "This device already holds a clinic: unlock it instead.".into()
        }
        StoreError::Changed { .. } => "This device's store was changed outside Huddle, so \
                                       Huddle will not use it. Close Huddle and run huddle \
                                       repair on this computer (or ask your admin to): it \
                                       rebuilds the store from this device's identity file \
                                       and the clinic's other devices, keeping the changed \
                                       copy aside."
            .into(),
        StoreError::Locked(_) => "Huddle is already open on this device (another window or \
                                  huddle serve). Close it, then try again."
            .into(),
        _ => return None,
    })
}

fn invite(e: &InviteError) -> String {
    match e {
        InviteError::Malformed => "That is not a Huddle invitation. Copy it again from the \
                                   inviting device: it starts with huddle-invite:"
            .into(),
        InviteError::Unknown => "The inviting device does not know this invitation. Ask the \
                                 admin for a new one."
            .into(),
        InviteError::Used => {
            "This invitation has already been used. Ask the admin for a new one.".into()
        }
        InviteError::Cancelled => {
            "This invitation was cancelled. Ask the admin for a new one.".into()
        }
        InviteError::Expired => "This invitation has expired. Ask the admin for a new one.".into(),
        InviteError::WrongSecret => "This invitation does not match the one the admin issued \
                                     (a character may be missing). Copy it again."
            .into(),
        InviteError::NameTaken(name) => format!(
            "A member named {name} already exists in the clinic. The admin can cancel this \
             invitation, or add a device for {name} instead."
        ),
        InviteError::MemberGone(name) => format!(
            "{name} is no longer a member of the clinic, so this invitation cannot add a \
             device for them. The admin can restore {name} and issue a new one."
        ),
        InviteError::WrongClinic => "The device that answered belongs to another clinic. \
                                     Nothing was joined: check the address and try again."
            .into(),
        InviteError::Refused(why) => {
            format!(
                "The inviting device refused: {}. Ask the admin.",
                sentence(why)
            )
        }
        InviteError::Handshake(_) => "The connection to the inviting device failed. Try \
                                      again; if it keeps failing, ask for a new invitation."
            .into(),
    }
}

fn net(e: &NetError) -> Option<String> {
    match e {
        NetError::Invite(i) => Some(invite(i)),
        _ => None,
    }
}

fn roster(e: &RosterError) -> Option<String> {
    Some(match e {
        RosterError::DuplicateName(name) => format!(
            "A member named {name} already exists. Choose another name, or use Add a device \
             beside {name} to replace a lost one."
        ),
        RosterError::EmptyName => "Write a name.".into(),
        RosterError::NotAdmin => "Only the clinic's admins can do this.".into(),
        RosterError::LastAdmin => "The clinic must keep an admin with a working device. \
                                   Make someone else an admin first."
            .into(),
        _ => return None,
    })
}

/// A library message as a sentence: no backticks, a capital first letter, a full stop.
fn sentence(text: &str) -> String {
    let text = text.replace('`', "");
    let mut chars = text.trim().chars();
    let Some(first) = chars.next() else {
        return "Something went wrong.".into();
    };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?', ':']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_plain_sentences_without_paths_or_backticks() {
        let e = anyhow::Error::from(NodeError::Store(StoreError::WrongPassphrase(
            "/home/sam/.local/share/huddle".into(),
        )));
        assert_eq!(plain(&e), "That passphrase is wrong. Try again.");
        let e = anyhow::Error::from(NodeError::Author(AuthorError::Roster(
            RosterError::DuplicateName("Lee P.".into()),
        )));
        assert!(plain(&e).starts_with("A member named Lee P. already exists."));
        let e = anyhow::Error::from(InviteError::Malformed).context("joining failed");
        assert!(plain(&e).starts_with("That is not a Huddle invitation."));
        let e = anyhow::Error::from(NodeError::InvitationOpen {
            name: "Lee P.".into(),
            id: "b226a93b8b6ea393".into(),
        });
        assert!(plain(&e).starts_with("An invitation for Lee P. is still open"));
        assert!(
            !plain(&e).contains("huddle"),
            "no command line: {}",
            plain(&e)
        );
        let e = anyhow::anyhow!("no thread matches `3f2a`");
        assert_eq!(plain(&e), "No thread matches 3f2a.");
    }

    #[test]
    fn a_wrong_passphrase_says_what_the_next_tries_cost() {
        assert_eq!(
            wrong_passphrase(2, 0),
            "That passphrase is wrong. 2 tries left before a 1-second wait."
        );
        assert_eq!(
            wrong_passphrase(0, 4),
            "That passphrase is wrong. Wait 4 seconds before the next try."
        );
    }
}
