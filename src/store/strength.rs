//! Passphrase strength for new stores and passphrase changes: at least
//! [`MIN_PASSPHRASE`] characters, not one of the most common passwords (case ignored),
//! nor such a password with digits or punctuation around it, nor digits and punctuation
//! alone, nor one character repeated. The list is `assets/common-passwords.txt`.

use std::collections::HashSet;
use std::sync::OnceLock;

/// The shortest passphrase accepted, in characters.
pub const MIN_PASSPHRASE: usize = 12;

const COMMON: &str = include_str!("../../assets/common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Why `passphrase` is too weak for a store, or `None` when it is acceptable.
pub fn weakness(passphrase: &str) -> Option<&'static str> {
    if passphrase.chars().count() < MIN_PASSPHRASE {
        return Some("it must be at least 12 characters long");
    }
    let lower = passphrase.to_lowercase();
    let core = lower.trim_matches(|c: char| {
        c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace()
    });
    if core.is_empty() {
        return Some("it is only digits and punctuation");
    }
    let mut chars = lower.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Some("it is one character repeated");
    }
    let set = common();
    if set.contains(lower.as_str()) {
        return Some("it is one of the most common passwords");
    }
    if set.contains(core) {
        return Some("it is a common password with digits or punctuation added");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_decorated_passphrases_are_refused() {
        assert!(weakness("short").unwrap().contains("12 characters"));
        assert!(weakness("elevenchars").is_some());
        assert!(weakness("123456789012").is_some());
        assert!(weakness("aaaaaaaaaaaaaa").is_some());
        // Common ones of 12+ characters, whatever the case, bare or decorated.
        let long_common = common()
            .iter()
            .find(|w| w.chars().count() >= 12 && w.chars().all(|c| c.is_ascii_alphabetic()))
            .expect("the list holds long words");
        assert!(weakness(long_common).unwrap().contains("common"));
        assert!(
            weakness(&long_common.to_uppercase())
                .unwrap()
                .contains("common")
        );
        assert!(
            weakness("Password2024!!")
                .unwrap()
                .contains("digits or punctuation")
        );
        assert!(weakness("!!Dragon123456").unwrap().contains("common"));
        assert_eq!(weakness("tangerine-lighthouse-4471"), None);
        assert_eq!(weakness("correct horse battery staple"), None);
    }
}
