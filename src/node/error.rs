//! The errors a node command can end in.

use crate::core::ids::ParseIdError;
use crate::core::replica::{AuthorError, IngestError};
use crate::core::thread::ThreadError;
use crate::store::StoreError;

use super::bundle::BundleError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "this device is not part of a clinic yet (run `huddle init`, or import a bundle after an admin adds this device)"
    )]
    NoClinic,
    #[error("this device already belongs to a clinic")]
    AlreadyInClinic,
    #[error("this device is not an active member of its clinic")]
    NotEnrolled,
    #[error(transparent)]
    Author(#[from] AuthorError),
    #[error(transparent)]
    Thread(#[from] ThreadError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Id(#[from] ParseIdError),
    #[error(transparent)]
    Invite(#[from] crate::core::invite::InviteError),
    #[error("no thread matches `{0}`")]
    UnknownThread(String),
    #[error("`{0}` matches more than one {1}; give more characters")]
    Ambiguous(String, &'static str),
    #[error("no message matches `{0}` in this thread")]
    UnknownMessage(String),
    #[error("a message with id {0} already exists in this thread")]
    MessageExists(String),
    #[error("no active member named `{0}`")]
    UnknownMember(String),
    #[error(
        "an open invitation for `{name}` already exists ({id}); cancel it first with \
         `huddle invite cancel {id}`"
    )]
    InvitationOpen { name: String, id: String },
    #[error("this thread is {0}: your role may not read it")]
    Locked(crate::core::policy::Category),
    #[error(
        "this is a restricted thread and you are not a participant (in an emergency: \
         `huddle emergency open THREAD --reason TEXT`)"
    )]
    Restricted,
    #[error(
        "this is a direct conversation among other members: only they can read it (nobody \
         else can be let in, not even by an admin)"
    )]
    OthersDirect,
    #[error("{name}'s role may not read {category} threads, so the task cannot be theirs")]
    AssigneeCannotRead {
        name: String,
        category: crate::core::policy::Category,
    },
    #[error("your role may not read {0} threads, so you cannot start one")]
    CategoryNotAllowed(crate::core::policy::Category),
    #[error(
        "clinical threads are locked: this device has not synced with the clinic for over {0} days (connect to the clinic network and run `huddle serve`)"
    )]
    LeaseExpired(u32),
    #[error(
        "{0} roster operation{s} this device had {are} not back yet: it writes again once a \
         device of the clinic has sent {them} (run `huddle serve` where the clinic's other \
         devices can be reached)",
        s = if *.0 == 1 { "" } else { "s" },
        are = if *.0 == 1 { "is" } else { "are" },
        them = if *.0 == 1 { "it" } else { "them" },
    )]
    RosterNotBack(usize),
    #[error("{0}")]
    Invalid(String),
}
