//! Providers' sending quotas: the published limits an account starts with, and how long a
//! mailbox whose quota ran out stays closed when the provider does not say. The numbers and
//! their sources are in `docs/sending.md` ("Send limits").

use std::time::Duration;

use mailroom_core::send_limits::SendLimits;

use crate::provider::Provider;

/// Consumer Gmail (`gmail.com`, `googlemail.com`): 500 messages a day (rolling 24 hours).
pub const GMAIL_CONSUMER: SendLimits = SendLimits {
    per_minute: None,
    per_day: Some(500),
    recipients_per_day: None,
};

/// Google Workspace: 2,000 messages a day (rolling 24 hours); recipients held to 2,000 a
/// day, the lowest of Google's recipient caps (10,000 in total, 3,000 external, 2,000 unique
/// external): mailroom cannot tell external from internal addresses, and an integrator's mail
/// mostly goes outside the sender's domain.
pub const GOOGLE_WORKSPACE: SendLimits = SendLimits {
    per_minute: None,
    per_day: Some(2_000),
    recipients_per_day: Some(2_000),
};

/// Outlook.com: 30 messages a minute (as Exchange Online, which hosts it), 300 messages and
/// 5,000 recipients a day.
pub const OUTLOOK_CONSUMER: SendLimits = SendLimits {
    per_minute: Some(30),
    per_day: Some(300),
    recipients_per_day: Some(5_000),
};

/// Microsoft 365 (Exchange Online): 30 messages a minute and 10,000 recipients a day.
pub const MICROSOFT_365: SendLimits = SendLimits {
    per_minute: Some(30),
    per_day: None,
    recipients_per_day: Some(10_000),
};

/// How long the account's sends pause after a quota answer that names no time. Gmail and
/// Outlook keep a mailbox closed "up to 24 hours" after its daily quota; trying again after an
/// hour finds out sooner when it reopened (another refusal pauses it again).
pub const DEFAULT_QUOTA_PAUSE: Duration = Duration::from_secs(3600);

/// Graph's `MailboxConcurrency` throttle without a `Retry-After`: a short pause.
pub const CONCURRENCY_PAUSE: Duration = Duration::from_secs(30);

impl Provider {
    /// The provider's published sending limits for the mailbox at `address`. Google and
    /// Microsoft publish different quotas for consumer and business mailboxes; the address's
    /// domain tells them apart (consumer domains below), since neither API reports the plan.
    pub fn default_send_limits(self, address: &str) -> SendLimits {
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        match self {
            Provider::Gmail if matches!(domain.as_str(), "gmail.com" | "googlemail.com") => {
                GMAIL_CONSUMER
            }
            Provider::Gmail => GOOGLE_WORKSPACE,
            Provider::Graph if is_outlook_consumer(&domain) => OUTLOOK_CONSUMER,
            Provider::Graph => MICROSOFT_365,
            // An IMAP/SMTP server's limits are its operator's; none unless the account sets them.
            Provider::Imap => SendLimits::default(),
        }
    }
}

/// Microsoft's consumer domains (Outlook.com, Hotmail, Live, MSN), in any country form
/// (`hotmail.co.uk`, `live.fr`).
fn is_outlook_consumer(domain: &str) -> bool {
    let first = domain.split('.').next().unwrap_or("");
    matches!(first, "outlook" | "hotmail" | "live" | "msn" | "passport") && domain.contains('.')
}

/// The time a provider's words name (`Retry after 2026-12-02T05:00:00.000Z`), as a wait from
/// the wall clock; `None` if they name none.
pub(crate) fn retry_after_in_words(words: &str) -> Option<Duration> {
    let at = words
        .split_whitespace()
        .find_map(|w| mailroom_core::time_fmt::parse_ms(w.trim_end_matches([',', '.', ')'])))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    Some(Duration::from_millis((at - now).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_provider_and_the_kind_of_mailbox() {
        for (provider, address, want) in [
            (Provider::Gmail, "a@gmail.com", GMAIL_CONSUMER),
            (Provider::Gmail, "a@GoogleMail.com", GMAIL_CONSUMER),
            (Provider::Gmail, "a@acme.io", GOOGLE_WORKSPACE),
            (Provider::Graph, "a@hotmail.co.uk", OUTLOOK_CONSUMER),
            (Provider::Graph, "a@outlook.com", OUTLOOK_CONSUMER),
            (Provider::Graph, "a@acme.io", MICROSOFT_365),
            (Provider::Imap, "a@gmail.com", SendLimits::default()),
        ] {
            assert_eq!(provider.default_send_limits(address), want, "{address}");
        }
    }

    #[test]
    fn a_stated_time_becomes_a_wait() {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 7_200_000;
        let words = format!(
            "User-rate limit exceeded.  Retry after {} (Mail sending)",
            mailroom_core::time_fmt::format_ms(at)
        );
        let wait = retry_after_in_words(&words).unwrap();
        assert!(wait > Duration::from_secs(7_100) && wait <= Duration::from_secs(7_200));
        assert_eq!(retry_after_in_words("Rate Limit Exceeded"), None);
    }
}
