//! Identifiers: 22 characters of URL-safe base64 over 16 random bytes, as Unipile issues them.
//! URL-safe matters because the official SDK puts ids into paths without encoding them.
//!
//! Ids that travel between crates are newtypes ([`AccountId`], [`TrackingId`], [`MessageId`])
//! so one cannot be passed where another is meant. The string ids deref to `str`, so the store's
//! `&str` parameters take them as they are.

use std::fmt;
use std::ops::Deref;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// A fresh random id (128 bits of entropy).
pub fn new_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// Whether `s` could be an id we issued (used to reject garbage early with a 404).
pub fn looks_like_id(s: &str) -> bool {
    s.len() == 22
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                Self(new_id())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id! {
    /// A linked mailbox (`account_id`).
    AccountId
}

string_id! {
    /// One send in the outbox (`tracking_id`).
    TrackingId
}

/// An RFC 5322 Message-ID, kept without its angle brackets. [`MessageId::parse`] is the one
/// place that accepts a Message-ID from outside (the API's `reply_to`, a provider's header):
/// brackets and surrounding space are optional there; every provider gets it in the form its
/// protocol wants ([`MessageId::bracketed`] for headers and searches).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// `<id@host>`, `id@host` or either with surrounding space. `None` when it cannot be a
    /// Message-ID: empty, no `@`, or whitespace, quotes, backslashes, brackets or control
    /// characters inside (they would break a header or a search query).
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        let t = t.strip_prefix('<').unwrap_or(t);
        let t = t.strip_suffix('>').unwrap_or(t);
        let ok = !t.is_empty()
            && t.len() <= 998
            && t.contains('@')
            && !t.starts_with('@')
            && !t.ends_with('@')
            && !t.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '<' | '>')
            });
        ok.then(|| Self(t.to_owned()))
    }

    /// Without brackets: `id@host`.
    pub fn bare(&self) -> &str {
        &self.0
    }

    /// As headers carry it: `<id@host>`.
    pub fn bracketed(&self) -> String {
        format!("<{}>", self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_url_safe_chars_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert!(looks_like_id(&a), "{a}");
        assert_ne!(a, b);
        assert!(!looks_like_id("short"));
        assert!(!looks_like_id("abcdefghijklmnopqrst/+"));
    }

    #[test]
    fn newtype_ids_compare_and_deref_as_strings() {
        let id = AccountId::generate();
        assert!(looks_like_id(&id));
        let s: String = id.clone().into();
        assert_eq!(id, s);
        assert_eq!(id, s.as_str());
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
        let back: AccountId = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn message_ids_parse_with_or_without_brackets() {
        let a = MessageId::parse("<abc.1@example.com>").unwrap();
        let b = MessageId::parse("  abc.1@example.com ").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.bare(), "abc.1@example.com");
        assert_eq!(a.bracketed(), "<abc.1@example.com>");
        assert_eq!(a.to_string(), "<abc.1@example.com>");
        for bad in [
            "",
            "<>",
            "no-at-sign",
            "a b@example.com",
            "a\"b@example.com",
            "a\\b@example.com",
            "<a@b><c@d>",
            "a@b\r\nBcc: x@y",
            "@example.com",
        ] {
            assert!(MessageId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
