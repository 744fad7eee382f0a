//! The clinic's safeguard settings (idle lock, offline lease, emergency access time):
//! read by every device from the roster's policy, changed by an admin.

use crate::core::policy::Safeguards;
use crate::core::roster::Op;
use crate::node::{Node, NodeError};

impl Node {
    /// The clinic's safeguard settings.
    pub fn safeguards(&self) -> Result<Safeguards, NodeError> {
        Ok(self.replica()?.roster().policy.safeguards)
    }

    /// Sets the clinic's safeguard settings (admins only; each within its range).
    pub fn set_safeguards(&mut self, safeguards: Safeguards) -> Result<(), NodeError> {
        safeguards
            .check()
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let mut policy = self.replica()?.roster().policy.clone();
        if policy.safeguards == safeguards {
            return Ok(());
        }
        policy.safeguards = safeguards;
        self.roster_op(Op::SetPolicy {
            policy,
            cutoffs: Vec::new(),
        })
    }
}
