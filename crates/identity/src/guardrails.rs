//! Guardrails: what may be linked into one customer.

use omnitrail_model::{Identifier, IdentifierKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Per-kind rules for linking identifiers: how many values of a kind one customer may hold,
/// which values are junk, which kind keys a customer first, and which kinds are weak.
///
/// Kinds are addressed by [`IdentifierKind`]; social networks and custom kinds not listed
/// explicitly fall back to the `social_*` / `custom_*` defaults. A built-in kind removed from
/// `limits` is unlimited, and one removed from `priorities` comes last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guardrails {
    /// Maximum values of a kind per customer. A limit of 0 acts as 1: an identifier always
    /// forms at least its own customer.
    pub limits: BTreeMap<IdentifierKind, usize>,
    /// The limit of each social network not in `limits`.
    pub social_limit: usize,
    /// The limit of each custom kind not in `limits`.
    pub custom_limit: usize,
    /// Priority rank of a kind, lower first: the primary identifier of an event and the
    /// order in which an evidence's identifiers are linked.
    pub priorities: BTreeMap<IdentifierKind, u32>,
    pub social_priority: u32,
    pub custom_priority: u32,
    /// Kinds that are weak evidence of identity (shared devices and browsers).
    pub weak: BTreeSet<IdentifierKind>,
    /// Apply the built-in junk rules (`null`, all zeros, test addresses, …).
    pub builtin_blocklist: bool,
    /// Extra junk values of any kind, compared trimmed and case-insensitively.
    pub blocked_values: BTreeSet<String>,
    /// Extra junk values of one kind, compared trimmed and case-insensitively.
    pub blocked_by_kind: BTreeMap<IdentifierKind, BTreeSet<String>>,
}

impl Default for Guardrails {
    fn default() -> Self {
        use IdentifierKind::*;
        Guardrails {
            limits: BTreeMap::from([
                (UserId, 1),
                (CrmId, 1),
                (Email, 5),
                (Phone, 5),
                (DeviceId, 10),
                (AnonymousId, 100),
            ]),
            social_limit: 3,
            custom_limit: 5,
            priorities: BTreeMap::from([
                (UserId, 10),
                (CrmId, 20),
                (Email, 30),
                (Phone, 40),
                (DeviceId, 70),
                (AnonymousId, 80),
            ]),
            social_priority: 50,
            custom_priority: 60,
            weak: BTreeSet::from([DeviceId, AnonymousId]),
            builtin_blocklist: true,
            blocked_values: BTreeSet::new(),
            blocked_by_kind: BTreeMap::new(),
        }
    }
}

impl Guardrails {
    /// Maximum values of `kind` one customer may hold (at least 1).
    pub fn limit(&self, kind: &IdentifierKind) -> usize {
        let limit = match (self.limits.get(kind), kind) {
            (Some(&n), _) => n,
            (None, IdentifierKind::Social(_)) => self.social_limit,
            (None, IdentifierKind::Custom(_)) => self.custom_limit,
            (None, _) => usize::MAX,
        };
        limit.max(1)
    }

    /// Priority rank of `kind`; lower ranks key and link first.
    pub fn priority(&self, kind: &IdentifierKind) -> u32 {
        match (self.priorities.get(kind), kind) {
            (Some(&p), _) => p,
            (None, IdentifierKind::Social(_)) => self.social_priority,
            (None, IdentifierKind::Custom(_)) => self.custom_priority,
            (None, _) => u32::MAX,
        }
    }

    pub fn is_weak(&self, kind: &IdentifierKind) -> bool {
        self.weak.contains(kind)
    }

    pub fn with_limit(mut self, kind: IdentifierKind, limit: usize) -> Self {
        self.limits.insert(kind, limit);
        self
    }

    pub fn with_priority(mut self, kind: IdentifierKind, rank: u32) -> Self {
        self.priorities.insert(kind, rank);
        self
    }

    pub fn with_weak(mut self, kind: IdentifierKind, weak: bool) -> Self {
        if weak {
            self.weak.insert(kind);
        } else {
            self.weak.remove(&kind);
        }
        self
    }

    /// Adds a junk value for one kind, or for every kind when `kind` is `None`.
    pub fn with_blocked(mut self, kind: Option<IdentifierKind>, value: &str) -> Self {
        let value = normalize_junk(value);
        match kind {
            Some(k) => {
                self.blocked_by_kind.entry(k).or_default().insert(value);
            }
            None => {
                self.blocked_values.insert(value);
            }
        }
        self
    }
}

fn normalize_junk(v: &str) -> String {
    v.trim().to_lowercase()
}

/// Values that never identify a person, whatever their kind (compared case-insensitively).
const JUNK: &[&str] = &[
    "null",
    "undefined",
    "none",
    "nil",
    "nan",
    "0",
    "-1",
    "anonymous",
    "unknown",
    "n/a",
    "na",
    "test",
    "guest",
];

/// Addresses typed into forms to get past them.
const JUNK_EMAILS: &[&str] = &["test@test.com", "test@example.com", "example@example.com"];
const JUNK_EMAIL_LOCALS: &[&str] = &["noreply", "no-reply"];

/// The blocklist compiled once per graph: user entries normalized into hash sets.
#[derive(Clone, Debug, Default)]
pub(crate) struct Blocklist {
    builtin: bool,
    any: HashSet<String>,
    by_kind: HashMap<IdentifierKind, HashSet<String>>,
}

impl Blocklist {
    pub(crate) fn new(g: &Guardrails) -> Blocklist {
        Blocklist {
            builtin: g.builtin_blocklist,
            any: g.blocked_values.iter().map(|v| normalize_junk(v)).collect(),
            by_kind: g
                .blocked_by_kind
                .iter()
                .map(|(k, vs)| (k.clone(), vs.iter().map(|v| normalize_junk(v)).collect()))
                .collect(),
        }
    }

    pub(crate) fn blocks(&self, kind: &IdentifierKind, value: &str) -> bool {
        let v = value.trim();
        if self.builtin && builtin_junk(kind, v) {
            return true;
        }
        let per_kind = self.by_kind.get(kind);
        if self.any.is_empty() && per_kind.is_none() {
            return false;
        }
        let lower = v.to_lowercase();
        self.any.contains(&lower) || per_kind.is_some_and(|set| set.contains(&lower))
    }

    pub(crate) fn blocks_identifier(&self, id: &Identifier) -> bool {
        self.blocks(&id.kind, &id.value)
    }
}

/// The built-in junk rules; `v` is already trimmed.
fn builtin_junk(kind: &IdentifierKind, v: &str) -> bool {
    if v.is_empty() || JUNK.iter().any(|j| v.eq_ignore_ascii_case(j)) || all_zeros(v) {
        return true;
    }
    match kind {
        IdentifierKind::Email => {
            JUNK_EMAILS.iter().any(|j| v.eq_ignore_ascii_case(j))
                || v.split_once('@').is_some_and(|(local, _)| {
                    JUNK_EMAIL_LOCALS
                        .iter()
                        .any(|j| local.eq_ignore_ascii_case(j))
                })
        }
        IdentifierKind::Phone => placeholder_phone(v),
        _ => false,
    }
}

/// Only zeros and the separators of UUIDs, MAC addresses and versions: an unset device id.
fn all_zeros(v: &str) -> bool {
    v.bytes().any(|b| b == b'0')
        && v.bytes()
            .all(|b| matches!(b, b'0' | b'-' | b':' | b'.' | b'_'))
}

/// `+10000000000`, `+15555555555`, `+33333333`: one digit repeated, possibly after a
/// one-digit country code.
fn placeholder_phone(v: &str) -> bool {
    let mut digits = v.bytes().filter(u8::is_ascii_digit);
    let (Some(first), Some(second)) = (digits.next(), digits.next()) else {
        return false;
    };
    let (mut like_first, mut like_second) = (second == first, true);
    for d in digits {
        like_first &= d == first;
        like_second &= d == second;
    }
    like_first || like_second
}

#[cfg(test)]
mod tests {
    use super::*;
    use IdentifierKind::*;

    fn blocked(kind: IdentifierKind, v: &str) -> bool {
        Blocklist::new(&Guardrails::default()).blocks(&kind, v)
    }

    #[test]
    fn builtin_junk_values_are_blocked() {
        for v in [
            "",
            " ",
            "NULL",
            "Undefined",
            "n/a",
            "0",
            "-1",
            "Guest",
            "test",
            "nan",
        ] {
            assert!(blocked(AnonymousId, v), "{v:?}");
        }
        assert!(blocked(DeviceId, "00000000-0000-0000-0000-000000000000"));
        assert!(blocked(DeviceId, "00:00:00:00:00:00"));
        assert!(!blocked(DeviceId, "00000000-0000-0000-0000-000000000001"));
        assert!(!blocked(DeviceId, "---"));
        assert!(!blocked(UserId, "ana"));
        assert!(!blocked(UserId, "nana"));
    }

    #[test]
    fn shared_test_addresses_and_placeholder_phones_are_blocked() {
        for v in [
            "test@test.com",
            "test@example.com",
            "example@example.com",
            "noreply@shop.com",
            "no-reply@bank.example",
        ] {
            assert!(blocked(Email, v), "{v}");
        }
        assert!(!blocked(Email, "ana@example.com"));
        assert!(!blocked(Email, "noreplyana@shop.com"));
        for v in ["+10000000000", "+15555555555", "+4444444444", "0000000"] {
            assert!(blocked(Phone, v), "{v}");
        }
        assert!(!blocked(Phone, "+15551234567"));
        assert!(!blocked(Phone, "+1"));
        // The email rules are for emails only.
        assert!(!blocked(UserId, "noreply@shop.com"));
    }

    #[test]
    fn user_entries_extend_the_blocklist_per_kind() {
        let g = Guardrails::default()
            .with_blocked(None, " Demo ")
            .with_blocked(Some(DeviceId), "Emulator");
        let b = Blocklist::new(&g);
        assert!(b.blocks(&UserId, "DEMO"));
        assert!(b.blocks(&DeviceId, "emulator"));
        assert!(!b.blocks(&UserId, "emulator"));
        let off = Guardrails {
            builtin_blocklist: false,
            ..Guardrails::default()
        };
        assert!(!Blocklist::new(&off).blocks(&UserId, "null"));
    }

    #[test]
    fn limits_and_priorities_fall_back_per_class() {
        let g = Guardrails::default();
        assert_eq!(g.limit(&Social("twitter".into())), 3);
        assert_eq!(g.limit(&Custom("loyalty_card".into())), 5);
        assert_eq!(g.limit(&AnonymousId), 100);
        assert!(g.priority(&UserId) < g.priority(&CrmId));
        assert!(g.priority(&Phone) < g.priority(&Social("x".into())));
        assert!(g.priority(&Social("x".into())) < g.priority(&Custom("y".into())));
        assert!(g.priority(&Custom("y".into())) < g.priority(&DeviceId));
        assert!(g.priority(&DeviceId) < g.priority(&AnonymousId));
        assert_eq!(g.clone().with_limit(Email, 0).limit(&Email), 1);
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Guardrails>(&json).unwrap(), g);
    }
}
