//! Roles, thread categories and the read policy that joins them. The policy is clinic
//! data carried in the roster; [`Policy::default`] is only where a new clinic starts.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// What a member does in the clinic. Admin is a separate flag on the member.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub enum Role {
    Clinician,
    /// Front desk.
    Scheduler,
    Billing,
}

/// Who may read a thread is decided by its category.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub enum Category {
    Clinical,
    Scheduling,
    Billing,
    Operations,
    /// A direct conversation among named members: no role reads it by policy, only its
    /// participants do (`core::roster::direct`). Not in [`Category::ALL`] (the categories
    /// a policy and a key log cover). Appended, so earlier encodings still decode; a
    /// device of the previous release cannot decode it and is never sent such a log
    /// (`core::sync::Features`).
    Direct,
}

/// A word that names no role or category.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{text}`: expected one of {expected}")]
pub struct ParseNameError {
    pub kind: &'static str,
    pub text: String,
    pub expected: &'static str,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Clinician, Role::Scheduler, Role::Billing];
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Scheduler => "scheduler",
            Role::Billing => "billing",
        }
    }
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Clinical,
        Category::Scheduling,
        Category::Billing,
        Category::Operations,
    ];
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Clinical => "clinical",
            Category::Scheduling => "scheduling",
            Category::Billing => "billing",
            Category::Operations => "operations",
            Category::Direct => "direct",
        }
    }
    /// A stable one-byte code for storage keys.
    pub fn code(&self) -> u8 {
        match self {
            Category::Clinical => 1,
            Category::Scheduling => 2,
            Category::Billing => 3,
            Category::Operations => 4,
            Category::Direct => 5,
        }
    }
    /// Every category, direct conversations' included.
    const EVERY: [Category; 5] = [
        Category::Clinical,
        Category::Scheduling,
        Category::Billing,
        Category::Operations,
        Category::Direct,
    ];
    pub fn from_code(code: u8) -> Option<Category> {
        Category::EVERY.into_iter().find(|c| c.code() == code)
    }
    /// The category a stored name (`as_str`) spells, direct conversations' included
    /// (which [`FromStr`], for what people type, refuses).
    pub fn from_name(name: &str) -> Option<Category> {
        Category::EVERY.into_iter().find(|c| c.as_str() == name)
    }
    /// Whether this is the category of direct conversations.
    pub fn is_direct(&self) -> bool {
        *self == Category::Direct
    }
}

impl FromStr for Role {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "clinician" => Ok(Role::Clinician),
            "scheduler" | "front-desk" | "frontdesk" => Ok(Role::Scheduler),
            "billing" => Ok(Role::Billing),
            _ => Err(ParseNameError {
                kind: "role",
                text: s.to_string(),
                expected: "clinician, scheduler (front-desk), billing",
            }),
        }
    }
}

impl FromStr for Category {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| ParseNameError {
                kind: "category",
                text: s.to_string(),
                expected: "clinical, scheduling, billing, operations",
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which categories each role may read, and the clinic's safeguard settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Policy {
    pub reads: BTreeMap<Role, BTreeSet<Category>>,
    pub safeguards: Safeguards,
}

/// The clinic's timing rules for locks, leases and emergency access (45 CFR 164.312
/// (a)(2)(ii) and (iii)); admins set them with the rest of the policy.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Safeguards {
    /// A device locks after this many idle minutes (a user may choose fewer).
    pub idle_lock_minutes: u32,
    /// A device out of contact with every other device of the clinic for this many
    /// days locks clinical threads until it reconnects.
    pub offline_lease_days: u32,
    /// How long emergency access to a restricted thread lasts, in minutes.
    pub emergency_minutes: u32,
}

/// A safeguard setting outside what a clinic may choose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be between {min} and {max}")]
pub struct SafeguardRange {
    pub what: &'static str,
    pub min: u32,
    pub max: u32,
}

impl Safeguards {
    /// The idle lock: 1 minute to 4 hours.
    pub const IDLE_LOCK_MINUTES: (u32, u32) = (1, 240);
    /// The offline lease: 1 to 90 days.
    pub const LEASE_DAYS: (u32, u32) = (1, 90);
    /// Emergency access: 5 minutes to 24 hours.
    pub const EMERGENCY_MINUTES: (u32, u32) = (5, 1440);

    /// Whether every setting is within its range (a policy outside them is refused).
    pub fn check(&self) -> Result<(), SafeguardRange> {
        let within = |what, v: u32, (min, max): (u32, u32)| {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(SafeguardRange { what, min, max })
            }
        };
        within(
            "the idle lock (minutes)",
            self.idle_lock_minutes,
            Self::IDLE_LOCK_MINUTES,
        )?;
        within(
            "the offline lease (days)",
            self.offline_lease_days,
            Self::LEASE_DAYS,
        )?;
        within(
            "emergency access (minutes)",
            self.emergency_minutes,
            Self::EMERGENCY_MINUTES,
        )
    }
}

impl Default for Safeguards {
    fn default() -> Self {
        Safeguards {
            idle_lock_minutes: 15,
            offline_lease_days: 7,
            emergency_minutes: 60,
        }
    }
}

impl Default for Policy {
    /// DESIGN.md: a scheduler reads scheduling and operations, never clinical; a
    /// clinician reads clinical, scheduling and operations, never billing; billing reads
    /// billing, scheduling and operations.
    fn default() -> Self {
        use Category::*;
        let reads = [
            (Role::Clinician, vec![Clinical, Scheduling, Operations]),
            (Role::Scheduler, vec![Scheduling, Operations]),
            (Role::Billing, vec![Billing, Scheduling, Operations]),
        ]
        .into_iter()
        .map(|(role, cats)| (role, cats.into_iter().collect()))
        .collect();
        Policy {
            reads,
            safeguards: Safeguards::default(),
        }
    }
}

impl Policy {
    /// Whether `role` reads `category` by policy; never a direct conversation, whatever
    /// a (modified) admin client wrote into the policy.
    pub fn may_read(&self, role: Role, category: Category) -> bool {
        !category.is_direct() && self.reads.get(&role).is_some_and(|c| c.contains(&category))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_keeps_clinical_from_front_desk_and_billing_from_clinicians() {
        let p = Policy::default();
        assert!(!p.may_read(Role::Scheduler, Category::Clinical));
        assert!(!p.may_read(Role::Clinician, Category::Billing));
        assert!(!p.may_read(Role::Billing, Category::Clinical));
        assert!(p.may_read(Role::Clinician, Category::Clinical));
        assert!(p.may_read(Role::Scheduler, Category::Operations));
    }

    #[test]
    fn names_parse_and_codes_round_trip() {
        assert_eq!("Front-Desk".parse::<Role>(), Ok(Role::Scheduler));
        assert!("nurse".parse::<Role>().is_err());
        for c in Category::ALL {
            assert_eq!(Category::from_code(c.code()), Some(c));
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
        }
        assert_eq!(Category::from_code(5), Some(Category::Direct));
        assert!(
            "direct".parse::<Category>().is_err(),
            "no thread is made direct by a flag"
        );
    }

    #[test]
    fn no_policy_lets_a_role_read_direct_conversations() {
        let mut p = Policy::default();
        for set in p.reads.values_mut() {
            set.insert(Category::Direct);
        }
        for r in Role::ALL {
            assert!(!p.may_read(r, Category::Direct));
        }
    }
}
