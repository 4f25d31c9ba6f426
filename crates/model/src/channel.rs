//! Channels: the known ones of the design plus custom values.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Where a touchpoint happened.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    Web,
    MobileApp,
    Email,
    Sms,
    Chat,
    Chatbot,
    Phone,
    Ivr,
    Social,
    Store,
    Push,
    Mail,
    Other,
    /// A company-specific channel, normalized to lowercase snake case.
    Custom(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("empty channel")]
    Empty,
    #[error("channel '{0}' is longer than {MAX_CHANNEL_LEN} characters")]
    TooLong(String),
    #[error("channel '{0}' has characters other than letters, digits, '_', '-', '.' and spaces")]
    BadCharacters(String),
}

pub const MAX_CHANNEL_LEN: usize = 64;

impl Channel {
    /// The known channels, in the order the design lists them.
    pub const KNOWN: [Channel; 13] = [
        Channel::Web,
        Channel::MobileApp,
        Channel::Email,
        Channel::Sms,
        Channel::Chat,
        Channel::Chatbot,
        Channel::Phone,
        Channel::Ivr,
        Channel::Social,
        Channel::Store,
        Channel::Push,
        Channel::Mail,
        Channel::Other,
    ];

    /// Reads a channel name: case-insensitive, with common spellings of the known channels
    /// (`e-mail`, `app`, `telephone`, `call center`, ...). Anything else that is a plain word
    /// becomes a custom channel in lowercase snake case.
    pub fn parse(raw: &str) -> Result<Channel, ChannelError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ChannelError::Empty);
        }
        if trimmed.chars().count() > MAX_CHANNEL_LEN {
            return Err(ChannelError::TooLong(trimmed.to_string()));
        }
        if !trimmed
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
        {
            return Err(ChannelError::BadCharacters(trimmed.to_string()));
        }
        let norm: String = trimmed
            .chars()
            .map(|c| match c {
                ' ' | '-' | '.' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect::<String>()
            .to_lowercase();
        Ok(match norm.as_str() {
            "web" | "website" | "internet" | "online" | "browser" => Channel::Web,
            "mobile_app" | "app" | "mobile" | "ios_app" | "android_app" => Channel::MobileApp,
            "email" | "e_mail" => Channel::Email,
            "sms" | "text" | "text_message" => Channel::Sms,
            "chat" | "live_chat" | "livechat" => Channel::Chat,
            "chatbot" | "bot" | "virtual_agent" => Channel::Chatbot,
            "phone" | "telephone" | "call" | "call_center" | "callcenter" | "voice" => {
                Channel::Phone
            }
            "ivr" => Channel::Ivr,
            "social" | "social_media" => Channel::Social,
            "store" | "retail" | "shop" | "in_store" | "branch" => Channel::Store,
            "push" | "push_notification" => Channel::Push,
            "mail" | "post" | "letter" | "postal_mail" => Channel::Mail,
            "other" | "unknown" => Channel::Other,
            _ => Channel::Custom(norm),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Channel::Web => "web",
            Channel::MobileApp => "mobile_app",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Chat => "chat",
            Channel::Chatbot => "chatbot",
            Channel::Phone => "phone",
            Channel::Ivr => "ivr",
            Channel::Social => "social",
            Channel::Store => "store",
            Channel::Push => "push",
            Channel::Mail => "mail",
            Channel::Other => "other",
            Channel::Custom(s) => s,
        }
    }

    /// Channels where a person of the company serves the customer.
    pub fn is_assisted(&self) -> bool {
        matches!(self, Channel::Chat | Channel::Phone | Channel::Store)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Channel::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_round_trip() {
        for c in Channel::KNOWN {
            assert_eq!(Channel::parse(c.as_str()).unwrap(), c);
        }
    }

    #[test]
    fn spellings_and_custom_values() {
        assert_eq!(Channel::parse(" E-Mail ").unwrap(), Channel::Email);
        assert_eq!(Channel::parse("Call Center").unwrap(), Channel::Phone);
        assert_eq!(Channel::parse("Internet").unwrap(), Channel::Web);
        assert_eq!(
            Channel::parse("Desk").unwrap(),
            Channel::Custom("desk".into())
        );
        assert_eq!(Channel::parse("8").unwrap(), Channel::Custom("8".into()));
        assert_eq!(Channel::parse(""), Err(ChannelError::Empty));
        assert!(matches!(
            Channel::parse("web<script>"),
            Err(ChannelError::BadCharacters(_))
        ));
    }
}
