//! Typed identifiers and their normal forms.
//!
//! Values are normalized on the way in so that the same person typed differently
//! (`Ana@Example.com`, `+1 (555) 123-4567`) is the same identifier everywhere.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentifierKind {
    UserId,
    AnonymousId,
    Email,
    Phone,
    DeviceId,
    CrmId,
    /// A social network handle; the network name in lowercase, e.g. `social:twitter`.
    Social(String),
    /// A company-specific kind in lowercase snake case, e.g. `loyalty_card`.
    Custom(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier kind '{0}' is not valid: use lowercase letters, digits and '_' (or social:<network>)")]
    BadKind(String),
    #[error("{kind} is empty")]
    Empty { kind: String },
    #[error("{kind} '{value}' is longer than {MAX_IDENTIFIER_LEN} characters")]
    TooLong { kind: String, value: String },
    #[error("email '{0}' is not an address (expected local@domain)")]
    BadEmail(String),
    #[error("phone '{0}' is not a phone number (expected 5 to 15 digits, optionally with +, spaces, dashes, dots or parentheses)")]
    BadPhone(String),
    #[error("{kind} '{value}' contains control characters")]
    ControlCharacters { kind: String, value: String },
}

pub const MAX_IDENTIFIER_LEN: usize = 256;
const MAX_KIND_LEN: usize = 64;

impl IdentifierKind {
    /// `user_id`, `anonymous_id`, `email`, `phone`, `device_id`, `crm_id`, `social:<network>`,
    /// or a custom kind. Camel-case Segment names (`userId`, `anonymousId`) are accepted too.
    pub fn parse(raw: &str) -> Result<IdentifierKind, IdentifierError> {
        let bad = || IdentifierError::BadKind(raw.to_string());
        let s = raw.trim();
        if s.is_empty() || s.len() > MAX_KIND_LEN {
            return Err(bad());
        }
        // Kinds are case-insensitive: a custom kind spelled like a built-in one (`Phone`)
        // would be stored as a custom kind yet read back as the built-in one.
        let lower = s.to_ascii_lowercase();
        if let Some(network) = lower.strip_prefix("social:") {
            if network.is_empty() || !network.bytes().all(is_kind_byte) {
                return Err(bad());
            }
            return Ok(IdentifierKind::Social(network.to_string()));
        }
        Ok(match lower.as_str() {
            "user_id" | "userid" => IdentifierKind::UserId,
            "anonymous_id" | "anonymousid" => IdentifierKind::AnonymousId,
            "email" => IdentifierKind::Email,
            "phone" => IdentifierKind::Phone,
            "device_id" | "deviceid" => IdentifierKind::DeviceId,
            "crm_id" | "crmid" => IdentifierKind::CrmId,
            other => {
                if !other.bytes().all(is_kind_byte) || other.starts_with("social") {
                    return Err(bad());
                }
                IdentifierKind::Custom(lower)
            }
        })
    }

    /// The kind's name; borrowed for every kind but `social:<network>`.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            IdentifierKind::Social(n) => format!("social:{n}").into(),
            other => other.simple_name().into(),
        }
    }

    fn simple_name(&self) -> &str {
        match self {
            IdentifierKind::UserId => "user_id",
            IdentifierKind::AnonymousId => "anonymous_id",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::DeviceId => "device_id",
            IdentifierKind::CrmId => "crm_id",
            IdentifierKind::Social(_) => "social",
            IdentifierKind::Custom(c) => c,
        }
    }

    /// Brings a raw value to the kind's normal form, or says why it cannot be one.
    pub fn normalize(&self, raw: &str) -> Result<String, IdentifierError> {
        // The kind's name is only needed for an error; building it on every call was a
        // measurable share of import time.
        let kind = || self.as_str().into_owned();
        let v = raw.trim();
        if v.is_empty() {
            return Err(IdentifierError::Empty { kind: kind() });
        }
        if v.len() > MAX_IDENTIFIER_LEN && v.chars().count() > MAX_IDENTIFIER_LEN {
            return Err(IdentifierError::TooLong {
                kind: kind(),
                value: truncate_for_message(v),
            });
        }
        if v.chars().any(char::is_control) {
            return Err(IdentifierError::ControlCharacters {
                kind: kind(),
                value: truncate_for_message(v),
            });
        }
        match self {
            IdentifierKind::Email => normalize_email(v),
            IdentifierKind::Phone => normalize_phone(v),
            IdentifierKind::Social(_) => {
                // Every leading `@` and space goes (`@ @ana` is `ana`): a normal form must
                // not change when normalized again.
                let handle = v
                    .trim_start_matches(|c: char| c == '@' || c.is_whitespace())
                    .to_lowercase();
                if handle.is_empty() {
                    return Err(IdentifierError::Empty { kind: kind() });
                }
                Ok(handle)
            }
            _ => Ok(v.to_string()),
        }
    }
}

fn is_kind_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

fn truncate_for_message(v: &str) -> String {
    let mut s: String = v.chars().take(40).collect();
    if v.chars().count() > 40 {
        s.push('…');
    }
    s
}

fn normalize_email(v: &str) -> Result<String, IdentifierError> {
    let lower = v.to_lowercase();
    let ok = match lower.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !lower.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(lower)
    } else {
        Err(IdentifierError::BadEmail(v.to_string()))
    }
}

/// Keeps a leading `+` and the digits; separators people type are dropped.
/// `+1 (555) 123-4567` becomes `+15551234567`; `00` before a country code becomes `+`.
fn normalize_phone(v: &str) -> Result<String, IdentifierError> {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            '+' if i == 0 => out.push('+'),
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return Err(IdentifierError::BadPhone(v.to_string())),
        }
    }
    if let Some(rest) = out.strip_prefix("00") {
        out = format!("+{rest}");
    }
    let digits = out.trim_start_matches('+').len();
    if !(5..=15).contains(&digits) {
        return Err(IdentifierError::BadPhone(v.to_string()));
    }
    Ok(out)
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifierKind::Social(n) => write!(f, "social:{n}"),
            other => f.write_str(other.simple_name()),
        }
    }
}

impl Serialize for IdentifierKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IdentifierKind::Social(_) => s.serialize_str(&self.as_str()),
            other => s.serialize_str(other.simple_name()),
        }
    }
}

impl<'de> Deserialize<'de> for IdentifierKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IdentifierKind::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One typed identifier in normal form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identifier {
    pub kind: IdentifierKind,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: IdentifierKind, raw_value: &str) -> Result<Identifier, IdentifierError> {
        let value = kind.normalize(raw_value)?;
        Ok(Identifier { kind, value })
    }

    /// Parses `kind:value` (e.g. `email:ana@example.com`, `social:twitter:@ana`).
    pub fn parse_qualified(text: &str) -> Result<Identifier, IdentifierError> {
        let (kind, value) = if let Some(rest) = text.strip_prefix("social:") {
            let (network, value) = rest
                .split_once(':')
                .ok_or_else(|| IdentifierError::BadKind(text.to_string()))?;
            (IdentifierKind::parse(&format!("social:{network}"))?, value)
        } else {
            let (kind, value) = text
                .split_once(':')
                .ok_or_else(|| IdentifierError::BadKind(text.to_string()))?;
            (IdentifierKind::parse(kind)?, value)
        };
        Identifier::new(kind, value)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by fuzzing): a kind spelt like a built-in one in other case was a
    /// custom kind that read back as the built-in one, changing the event on a round trip.
    #[test]
    fn kinds_are_case_insensitive() {
        for (raw, want) in [
            ("Phone", IdentifierKind::Phone),
            ("EMAIL", IdentifierKind::Email),
            ("UserId", IdentifierKind::UserId),
            ("userid", IdentifierKind::UserId),
            ("Social:Twitter", IdentifierKind::Social("twitter".into())),
            (
                "Loyalty_Card",
                IdentifierKind::Custom("loyalty_card".into()),
            ),
        ] {
            let kind = IdentifierKind::parse(raw).unwrap();
            assert_eq!(kind, want, "{raw}");
            assert_eq!(
                IdentifierKind::parse(&kind.as_str()).unwrap(),
                kind,
                "{raw}"
            );
        }
        assert!(IdentifierKind::parse("Socialite").is_err());
    }

    /// Regression (found by fuzzing): `@ na_b` normalized to ` na_b`, which normalized
    /// again to `na_b`; normal forms must be fixed points.
    #[test]
    fn normalizing_twice_changes_nothing() {
        let twitter = IdentifierKind::Social("twitter".into());
        for raw in ["@ na_b", "@@Na_B ", "na_b", " @  na_b", "@ @na_b"] {
            let once = twitter.normalize(raw).unwrap();
            assert_eq!(once, "na_b", "{raw:?}");
            assert_eq!(twitter.normalize(&once).unwrap(), once);
        }
        assert!(twitter.normalize("@ ").is_err());
        for (kind, raw) in [
            (IdentifierKind::Email, " Ana@Example.com "),
            (IdentifierKind::Phone, "+1 (555) 123-4567"),
            (IdentifierKind::Custom("card".into()), " x 1 "),
        ] {
            let once = kind.normalize(raw).unwrap();
            assert_eq!(kind.normalize(&once).unwrap(), once, "{raw:?}");
        }
    }

    #[test]
    fn phone_as_the_agent_hears_it_matches_the_stored_form() {
        let a = Identifier::new(IdentifierKind::Phone, "+1 (555) 123-4567").unwrap();
        let b = Identifier::new(IdentifierKind::Phone, "+15551234567").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.value, "+15551234567");
        assert_eq!(
            Identifier::new(IdentifierKind::Phone, "0044 20 7946 0958")
                .unwrap()
                .value,
            "+442079460958"
        );
        assert!(Identifier::new(IdentifierKind::Phone, "12").is_err());
        assert!(Identifier::new(IdentifierKind::Phone, "call me").is_err());
    }

    #[test]
    fn emails_and_handles_are_case_insensitive() {
        assert_eq!(
            Identifier::new(IdentifierKind::Email, " Ana@Example.COM ")
                .unwrap()
                .value,
            "ana@example.com"
        );
        assert!(Identifier::new(IdentifierKind::Email, "ana.example.com").is_err());
        let h = Identifier::parse_qualified("social:twitter:@AnaB").unwrap();
        assert_eq!(h.kind, IdentifierKind::Social("twitter".into()));
        assert_eq!(h.value, "anab");
        assert_eq!(h.to_string(), "social:twitter:anab");
    }

    #[test]
    fn kinds_parse_and_print() {
        for k in [
            "user_id",
            "anonymous_id",
            "email",
            "phone",
            "device_id",
            "crm_id",
        ] {
            assert_eq!(IdentifierKind::parse(k).unwrap().as_str(), k);
        }
        assert_eq!(
            IdentifierKind::parse("userId").unwrap(),
            IdentifierKind::UserId
        );
        assert_eq!(
            IdentifierKind::parse("Loyalty_Card").unwrap(),
            IdentifierKind::Custom("loyalty_card".into())
        );
        assert!(IdentifierKind::parse("bad kind").is_err());
        assert!(IdentifierKind::parse("social:").is_err());
    }

    #[test]
    fn rejects_empty_and_control_characters() {
        assert!(matches!(
            Identifier::new(IdentifierKind::UserId, "  "),
            Err(IdentifierError::Empty { .. })
        ));
        assert!(matches!(
            Identifier::new(IdentifierKind::UserId, "a\u{0}b"),
            Err(IdentifierError::ControlCharacters { .. })
        ));
        let long = "x".repeat(300);
        assert!(matches!(
            Identifier::new(IdentifierKind::UserId, &long),
            Err(IdentifierError::TooLong { .. })
        ));
    }
}
