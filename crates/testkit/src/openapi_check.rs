//! Checks a real event payload against the schema the OpenAPI document gives its kind
//! (`webhooks` / `components.schemas`, `mailroom_api::webhook_events`): every required field
//! present, no field the schema does not name, each value of the named type (nested objects
//! and arrays included). Tests call it on what a receiver got or the event log holds, so a
//! payload and its documentation cannot drift apart unnoticed.

use serde_json::Value;

/// The document mailroom serves (the same as `GET /openapi.json`).
pub fn document() -> Value {
    let app = mailroom_api::openapi::base();
    serde_json::to_value(&app).expect("the OpenAPI document serializes")
}

/// Panics (with the path of the first mismatch) unless `payload`, a delivered body of an
/// event of `kind`, matches its schema.
pub fn assert_delivered(kind: &str, payload: &Value) {
    if let Err(e) = check(kind, payload, false) {
        panic!("a delivered `{kind}` does not match its OpenAPI schema: {e}\n{payload:#}");
    }
}

/// The same for a payload as the event log stores it: `mail_received` and `mail_sent` get
/// their bodies (`body`, `body_plain`, `is_complete`) at delivery, so those may be missing.
pub fn assert_stored(kind: &str, payload: &Value) {
    if let Err(e) = check(kind, payload, true) {
        panic!("a stored `{kind}` does not match its OpenAPI schema: {e}\n{payload:#}");
    }
}

fn check(kind: &str, payload: &Value, stored: bool) -> Result<(), String> {
    let name = mailroom_api::webhook_events::schema_of_kind(kind)
        .ok_or_else(|| format!("no schema for event kind `{kind}`"))?;
    let doc = document();
    if !doc["webhooks"][kind]["post"].is_object() {
        return Err(format!("`{kind}` is not in the document's webhooks"));
    }
    let mut schema = doc["components"]["schemas"][name].clone();
    if stored
        && (kind == "mail_received" || kind == "mail_sent")
        && let Some(req) = schema["required"].as_array_mut()
    {
        req.retain(|r| !matches!(r.as_str(), Some("body" | "body_plain" | "is_complete")));
    }
    matches(&doc, &schema, payload, "$")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn matches(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let errors: Vec<String> = options
                .iter()
                .filter_map(|o| matches(doc, o, v, at).err())
                .collect();
            return if errors.len() < options.len() {
                Ok(())
            } else {
                Err(format!(
                    "{at}: none of {key} matches ({})",
                    errors.join("; ")
                ))
            };
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            matches(doc, s, v, at)?;
        }
    }
    let actual = type_name(v);
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !allowed.is_empty()
        && !allowed
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"))
    {
        return Err(format!("{at}: a {actual}, the schema says {allowed:?}"));
    }
    match v {
        Value::Object(fields) => {
            let props = schema["properties"].as_object();
            if let Some(req) = schema["required"].as_array() {
                for r in req.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(r) {
                        return Err(format!("{at}: required `{r}` missing"));
                    }
                }
            }
            if let Some(props) = props {
                for (k, fv) in fields {
                    let Some(p) = props.get(k) else {
                        return Err(format!("{at}: `{k}` is not in the schema"));
                    };
                    matches(doc, p, fv, &format!("{at}.{k}"))?;
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, iv) in items.iter().enumerate() {
                    matches(doc, item, iv, &format!("{at}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_unknown_and_typed_fields_are_checked() {
        let ok =
            json!({"AccountStatus": {"account_id": "a", "account_type": "MAIL", "message": "OK"}});
        assert_delivered("account_status", &ok);
        let missing = json!({"AccountStatus": {"account_id": "a", "message": "OK"}});
        assert!(
            check("account_status", &missing, false)
                .unwrap_err()
                .contains("account_type")
        );
        let extra = json!({"AccountStatus": {"account_id": "a", "account_type": "MAIL", "message": "OK", "x": 1}});
        assert!(
            check("account_status", &extra, false)
                .unwrap_err()
                .contains("`x`")
        );
        let typed =
            json!({"AccountStatus": {"account_id": 5, "account_type": "MAIL", "message": "OK"}});
        assert!(check("account_status", &typed, false).is_err());
        assert!(check("no_such_kind", &ok, false).is_err());
    }
}
