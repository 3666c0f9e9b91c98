//! The subject fallback of threading: for a reply that carries neither In-Reply-To nor
//! References (some mobile clients and web forms), the subject is all there is. Only a subject
//! that says it answers or forwards something is trusted, so two unrelated "Hello"s never
//! share a thread.

use mailroom_providers::mailbox::reading::ParsedMail;

/// Reply and forward markers, in the languages mail clients commonly write them (lower case,
/// without the colon).
const MARKERS: &[&str] = &[
    "re", "fw", "fwd", "aw", "wg", "sv", "vs", "antw", "rif", "r", "tr", "odp", "ynt",
];

/// Strips one leading marker (`Re:`, `RE[2]:`, `Fwd :`) and the spaces after it.
fn strip_marker(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let colon = s.find(':')?;
    let head = s[..colon].trim_end();
    // `Re[2]` / `Re(2)`: a counter some clients add.
    let word = head
        .split(['[', '('])
        .next()
        .unwrap_or(head)
        .to_ascii_lowercase();
    MARKERS
        .contains(&word.as_str())
        .then(|| s[colon + 1..].trim_start())
}

/// The subject without any reply or forward markers, trimmed.
pub fn base_subject(subject: &str) -> &str {
    let mut s = subject.trim();
    while let Some(rest) = strip_marker(s) {
        s = rest;
    }
    s.trim()
}

/// The base subject of a subject that starts with a reply or forward marker; `None` when it
/// has none or nothing is left after them.
pub fn reply_base(subject: &str) -> Option<&str> {
    strip_marker(subject)?;
    let base = base_subject(subject);
    (!base.is_empty()).then_some(base)
}

/// Lower-cased addresses of the sender and the recipients.
pub fn participants(p: &ParsedMail) -> Vec<String> {
    p.from
        .iter()
        .chain(p.to.iter())
        .chain(p.cc.iter())
        .map(|a| a.identifier.to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_stripped_in_any_number_and_case() {
        assert_eq!(
            base_subject("Re: RE[2]: Fwd : Quarterly plan "),
            "Quarterly plan"
        );
        assert_eq!(base_subject("AW: Angebot"), "Angebot");
        assert_eq!(base_subject("Quarterly plan"), "Quarterly plan");
        assert_eq!(
            base_subject("Note: this is not a reply"),
            "Note: this is not a reply"
        );
    }

    #[test]
    fn only_a_marked_subject_falls_back() {
        assert_eq!(reply_base("Re: Hello"), Some("Hello"));
        assert_eq!(reply_base("Hello"), None);
        assert_eq!(reply_base("Re:   "), None);
        assert_eq!(reply_base("Meeting: Tuesday"), None);
    }
}
