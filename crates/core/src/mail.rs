//! Indexed mail: folder roles, folder sync states, where a message came from, and the
//! attachment and header metadata kept beside each message. The addresses on a stored
//! message are [`crate::email::Attendee`]s.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a folder is for (`role` in the Folder and Email objects; the SDK's `FolderRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FolderRole {
    Inbox,
    Sent,
    Archive,
    Drafts,
    Trash,
    Spam,
    All,
    Important,
    Starred,
    Unknown,
}

impl FolderRole {
    pub const ALL_ROLES: [FolderRole; 10] = [
        FolderRole::Inbox,
        FolderRole::Sent,
        FolderRole::Archive,
        FolderRole::Drafts,
        FolderRole::Trash,
        FolderRole::Spam,
        FolderRole::All,
        FolderRole::Important,
        FolderRole::Starred,
        FolderRole::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FolderRole::Inbox => "inbox",
            FolderRole::Sent => "sent",
            FolderRole::Archive => "archive",
            FolderRole::Drafts => "drafts",
            FolderRole::Trash => "trash",
            FolderRole::Spam => "spam",
            FolderRole::All => "all",
            FolderRole::Important => "important",
            FolderRole::Starred => "starred",
            FolderRole::Unknown => "unknown",
        }
    }

    /// The role named `s` (exact, lowercase, as the API and the database spell it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL_ROLES.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where the sync of one folder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderSyncStatus {
    /// Not fetched yet.
    Never,
    /// The initial fetch (or a rebuild) is under way.
    Fetching,
    /// Up to date as of `last_synced_at`.
    Synced,
    Error,
}

impl FolderSyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FolderSyncStatus::Never => "never",
            FolderSyncStatus::Fetching => "fetching",
            FolderSyncStatus::Synced => "synced",
            FolderSyncStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Never, Self::Fetching, Self::Synced, Self::Error]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Who wrote a message (`origin` in the Email object): sent through mailroom's API, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MailOrigin {
    External,
    Unipile,
}

impl MailOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            MailOrigin::External => "external",
            MailOrigin::Unipile => "unipile",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::External, Self::Unipile]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An attachment as the index knows it: metadata only; the bytes are fetched live from the
/// provider (`part` locates it: an IMAP body part number, a Gmail or Graph attachment id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    /// Stable within its message (the API's `attachment_id`).
    pub id: String,
    pub name: String,
    pub size: i64,
    pub mime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
}

/// One header line of a stored message (`headers` with `include_headers=true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_as_the_sdk_spells_them() {
        for r in FolderRole::ALL_ROLES {
            assert_eq!(FolderRole::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(FolderRole::parse("INBOX"), None);
        assert_eq!(FolderRole::parse(""), None);
        for s in [FolderSyncStatus::Never, FolderSyncStatus::Error] {
            assert_eq!(FolderSyncStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(MailOrigin::parse("unipile"), Some(MailOrigin::Unipile));
    }
}

/// `sync_limit` on account creation: how much of the mail already in the mailbox its first
/// sync indexes (mail that arrives after linking is always indexed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncLimit {
    /// The last 30 days.
    #[default]
    Default,
    /// Nothing that is already there (Unipile's `NO_HISTORY_SYNC`).
    NoHistory,
    /// What arrived at or after this time (Unix ms).
    Since(i64),
    /// The newest this many messages of each folder.
    Count(u32),
}

impl SyncLimit {
    /// The stored form (a hosted link keeps the limit until its mailbox is linked).
    pub fn as_stored(self) -> String {
        match self {
            SyncLimit::Default => "default".into(),
            SyncLimit::NoHistory => "none".into(),
            SyncLimit::Since(ms) => format!("since:{ms}"),
            SyncLimit::Count(n) => format!("count:{n}"),
        }
    }

    /// The limit [`SyncLimit::as_stored`] wrote.
    pub fn from_stored(s: &str) -> Option<SyncLimit> {
        match s {
            "default" => Some(SyncLimit::Default),
            "none" => Some(SyncLimit::NoHistory),
            _ => match s.split_once(':')? {
                ("since", ms) => ms.parse().ok().map(SyncLimit::Since),
                ("count", n) => n.parse().ok().map(SyncLimit::Count),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod sync_limit_tests {
    use super::SyncLimit;

    #[test]
    fn stored_limits_read_back() {
        for l in [
            SyncLimit::Default,
            SyncLimit::NoHistory,
            SyncLimit::Since(1_793_491_200_000),
            SyncLimit::Count(500),
        ] {
            assert_eq!(SyncLimit::from_stored(&l.as_stored()), Some(l));
        }
        assert_eq!(SyncLimit::from_stored("count:x"), None);
        assert_eq!(SyncLimit::from_stored(""), None);
    }
}
