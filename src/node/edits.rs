//! Editing and retracting one's own message (`huddle edit`, `huddle retract`, the app's
//! *Edit* and *Retract*), the change of one message that these and marking a task done
//! share, and finding a message by the id people type. The document
//! rules decide on every device who may change a message; these check it first so that
//! a person trying gets a plain refusal instead of a change nobody accepts.

use super::{Node, NodeError, ThreadRef, now_ms, shown_id};
use crate::core::audit::AuditEvent;
use crate::core::ids::{MemberId, ThreadId};
use crate::core::thread::{ThreadDoc, ThreadError};

/// The full key of the message `typed` names in `doc`: its shown id or a prefix of it
/// of at least 4 characters.
pub(super) fn find_message(doc: &ThreadDoc, typed: &str) -> Result<String, NodeError> {
    let wanted = typed.trim().to_ascii_lowercase();
    if wanted.len() < 4 {
        return Err(NodeError::UnknownMessage(format!(
            "{typed} (give at least 4 characters)"
        )));
    }
    let ids: Vec<String> = doc
        .message_ids()
        .into_iter()
        .filter(|id| id.starts_with(&wanted))
        .collect();
    match ids.as_slice() {
        [id] => Ok(id.clone()),
        [] => Err(NodeError::UnknownMessage(typed.to_string())),
        _ => Err(NodeError::Ambiguous(typed.to_string(), "message")),
    }
}

/// The error naming the message by the id people see, not its full key.
pub(super) fn shown(e: ThreadError) -> ThreadError {
    match e {
        ThreadError::NotYours(key) => ThreadError::NotYours(shown_id(&key).to_string()),
        ThreadError::Retracted(key) => ThreadError::Retracted(shown_id(&key).to_string()),
        other => other,
    }
}

impl Node {
    /// Replaces the text of this member's own `message`; returns its shown id.
    pub fn edit_message<'a>(
        &mut self,
        reference: impl Into<ThreadRef<'a>>,
        message: &str,
        text: &str,
    ) -> Result<String, NodeError> {
        if text.trim().is_empty() {
            return Err(NodeError::Invalid(
                "the new text is empty (to take a message back, retract it)".into(),
            ));
        }
        self.change_message(
            reference.into(),
            message,
            |doc, id, me| doc.edit(id, me, text, now_ms()),
            |thread, message| AuditEvent::MessageEdited { thread, message },
        )
    }

    /// Retracts this member's own `message`; returns its shown id.
    pub fn retract_message<'a>(
        &mut self,
        reference: impl Into<ThreadRef<'a>>,
        message: &str,
    ) -> Result<String, NodeError> {
        self.change_message(
            reference.into(),
            message,
            |doc, id, me| doc.retract(id, me, now_ms()),
            |thread, message| AuditEvent::MessageRetracted { thread, message },
        )
    }

    /// Changes the message `message` names in a readable thread: `change` makes the
    /// document change for the message's full key and this device's member; it is
    /// committed, and `event` recorded in the audit trail. Returns the shown id.
    pub(super) fn change_message(
        &mut self,
        reference: ThreadRef<'_>,
        message: &str,
        change: impl FnOnce(&mut ThreadDoc, &str, &MemberId) -> Result<Vec<u8>, ThreadError>,
        event: impl FnOnce(ThreadId, String) -> AuditEvent,
    ) -> Result<String, NodeError> {
        let out = self.edit_thread(reference, |doc, me| {
            let id = find_message(doc, message)?;
            let change = change(doc, &id, &me.id).map_err(shown)?;
            Ok(Some((change, shown_id(&id).to_string())))
        })?;
        let id = out.ok_or_else(|| NodeError::UnknownMessage(message.to_string()))?;
        self.audit_change(reference, &id, event);
        Ok(id)
    }
}
