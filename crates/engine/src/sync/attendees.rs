//! People on a new-mail event as Unipile's webhooks give them (`unipile-api.md` §5.4):
//! `{display_name?, identifier, identifier_type: "EMAIL_ADDRESS"}`, the same shape the read
//! API answers. One place for the IMAP and the change-feed syncs.

use mailroom_core::email::Attendee;
use serde_json::{Value, json};

/// One person.
pub(crate) fn one(a: &Attendee) -> Value {
    let mut v = json!({ "identifier": a.identifier, "identifier_type": "EMAIL_ADDRESS" });
    if let Some(name) = &a.display_name {
        v["display_name"] = json!(name);
    }
    v
}

/// `from_attendee`: the person, or null.
pub(crate) fn from(a: Option<&Attendee>) -> Value {
    a.map_or(Value::Null, one)
}

/// A list (`to_attendees`, …).
pub(crate) fn list(all: &[Attendee]) -> Value {
    Value::Array(all.iter().map(one).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attendees_carry_their_identifier_type() {
        let a = Attendee {
            identifier: "bob@example.com".into(),
            display_name: Some("Bob".into()),
        };
        assert_eq!(
            one(&a),
            json!({"display_name": "Bob", "identifier": "bob@example.com", "identifier_type": "EMAIL_ADDRESS"})
        );
        let b = Attendee {
            identifier: "x@example.com".into(),
            display_name: None,
        };
        assert_eq!(
            list(&[b]),
            json!([{"identifier": "x@example.com", "identifier_type": "EMAIL_ADDRESS"}])
        );
        assert_eq!(from(None), Value::Null);
    }
}
