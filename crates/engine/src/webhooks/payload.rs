//! The body of a delivery: the stored event's payload as `unipile-api.md` §5.4 gives it, with
//! the webhook's name (`webhook_name`, email events), its rename map (`data`: field `key` is
//! sent as `name`) and its format (`json`, or `form`: urlencoded top-level fields, values that
//! are not strings as JSON text).

use serde_json::{Map, Value};

use mailroom_store::webhooks::Webhook;
use mailroom_store::{Store, StoreError, index};

/// Adds the bodies (`body`: the HTML, or the text when there is none; `body_plain`),
/// `is_complete` and the replied-to message's id (`in_reply_to.id`, when it is indexed) to the
/// new-email events (`mail_received`, `mail_sent`) among `events` (a
/// run's, all of workspace `workspace_id`) from the index, in one read: an event stores the
/// headers only, so a large message is not copied into the event log. `is_complete` is false
/// when the message is no longer indexed (its bodies are then empty).
pub async fn complete_emails(
    store: &Store,
    workspace_id: &str,
    events: &mut [(&str, &mut Value)],
) -> Result<(), StoreError> {
    let wanted = |kind: &str, payload: &Value| -> Option<String> {
        if kind != "mail_received" && kind != "mail_sent" {
            return None;
        }
        let fields = payload.as_object()?;
        if fields.contains_key("body") {
            return None;
        }
        fields.get("email_id")?.as_str().map(str::to_owned)
    };
    let ids: Vec<String> = events
        .iter()
        .filter_map(|(kind, payload)| wanted(kind, payload))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let bodies = index::bodies(store, workspace_id, &refs).await?;
    for (kind, payload) in events.iter_mut() {
        let Some(id) = wanted(kind, payload) else {
            continue;
        };
        let found = bodies.get(&id).cloned();
        let parent_id = found.as_ref().and_then(|b| b.parent_id.clone());
        let (html, text, complete) = match found {
            Some(b) => {
                let text = b.text.unwrap_or_default();
                (b.html.unwrap_or_else(|| text.clone()), text, true)
            }
            None => (String::new(), String::new(), false),
        };
        if let Some(fields) = payload.as_object_mut() {
            if let (Some(parent_id), Some(Value::Object(reply))) =
                (parent_id, fields.get_mut("in_reply_to"))
            {
                reply.insert("id".into(), Value::String(parent_id));
            }
            fields.insert("body".into(), Value::String(html));
            fields.insert("body_plain".into(), Value::String(text));
            fields.insert("is_complete".into(), Value::Bool(complete));
        }
    }
    Ok(())
}

/// A rendered body and its Content-Type.
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// The body of `payload` (an event of `kind`) for `webhook`; `None` for a `notify_url` call,
/// which gets the payload as it is.
pub fn render(webhook: Option<&Webhook>, kind: &str, payload: Value) -> Body {
    let Some(w) = webhook else {
        return json_body(&payload);
    };
    let mut payload = payload;
    if let Value::Object(fields) = &mut payload {
        // The account-status payload is `{"AccountStatus": {…}}` exactly; the others are flat
        // and name the webhook they were sent for.
        if kind != "account_status"
            && let Some(name) = &w.name
        {
            fields.insert("webhook_name".into(), Value::String(name.clone()));
        }
        rename(fields, w);
    }
    match w.format.as_str() {
        "form" => form_body(&payload),
        _ => json_body(&payload),
    }
}

/// Applies the rename map to the top-level fields (absent fields are left absent; fields
/// the map does not name are kept: the map renames, it does not select).
fn rename(fields: &mut Map<String, Value>, w: &Webhook) {
    let mut moved = Vec::new();
    for r in &w.data {
        if let Some(v) = fields.remove(&r.key) {
            moved.push((r.name.clone(), v));
        }
    }
    for (name, v) in moved {
        fields.insert(name, v);
    }
}

fn json_body(payload: &Value) -> Body {
    Body {
        content_type: "application/json",
        bytes: serde_json::to_vec(payload).expect("a JSON value serializes"),
    }
}

fn form_body(payload: &Value) -> Body {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    match payload {
        Value::Object(fields) => {
            for (k, v) in fields {
                match v {
                    Value::String(s) => form.append_pair(k, s),
                    Value::Null => form.append_pair(k, ""),
                    other => form.append_pair(k, &other.to_string()),
                };
            }
        }
        other => {
            form.append_pair("payload", &other.to_string());
        }
    }
    Body {
        content_type: "application/x-www-form-urlencoded",
        bytes: form.finish().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_store::webhooks::Rename;
    use serde_json::json;

    fn hook(format: &str, data: Vec<Rename>) -> Webhook {
        Webhook {
            id: "w".into(),
            workspace_id: "ws".into(),
            name: Some("hook".into()),
            source: "email".into(),
            request_url: "https://example.com/".into(),
            format: format.into(),
            events: vec!["mail_received".into()],
            account_ids: vec![],
            headers: vec![],
            data,
            enabled: true,
            secret: vec![],
            old_secret: None,
            old_secret_until: None,
            disabled_reason: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn renames_and_names_the_webhook() {
        let w = hook(
            "json",
            vec![Rename {
                name: "mail".into(),
                key: "email_id".into(),
            }],
        );
        let b = render(
            Some(&w),
            "mail_received",
            json!({"email_id": "e1", "subject": "s"}),
        );
        let v: Value = serde_json::from_slice(&b.bytes).unwrap();
        assert_eq!(
            v,
            json!({"mail": "e1", "subject": "s", "webhook_name": "hook"})
        );
        assert_eq!(b.content_type, "application/json");
    }

    #[test]
    fn account_status_stays_as_unipile_sends_it() {
        let w = hook("json", vec![]);
        let p =
            json!({"AccountStatus": {"account_id": "a", "account_type": "MAIL", "message": "OK"}});
        let b = render(Some(&w), "account_status", p.clone());
        assert_eq!(serde_json::from_slice::<Value>(&b.bytes).unwrap(), p);
    }

    #[test]
    fn form_bodies_are_urlencoded() {
        let w = hook("form", vec![]);
        let b = render(
            Some(&w),
            "mail_received",
            json!({"subject": "a b&c", "to_attendees": [{"identifier": "x"}]}),
        );
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(&b.bytes).into_owned().collect();
        assert!(pairs.contains(&("subject".into(), "a b&c".into())));
        assert!(pairs.contains(&("to_attendees".into(), r#"[{"identifier":"x"}]"#.into())));
        assert!(pairs.contains(&("webhook_name".into(), "hook".into())));
        assert_eq!(b.content_type, "application/x-www-form-urlencoded");
    }
}
