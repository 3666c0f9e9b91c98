//! The Gmail discovery document (`contracts/gmail.v1.json`, from the PyPI wheel
//! `google-api-python-client`) and a checker of JSON values against its `schemas`.
//!
//! The fake reads each method's accepted OAuth scopes and the send upload limit from the
//! document; the contract tests run [`check`] over the fake's answers.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::Value;

/// The discovery document, as committed.
pub const GMAIL_DISCOVERY_JSON: &str = include_str!("../../../contracts/gmail.v1.json");

struct Discovery {
    doc: Value,
    /// Method id (`gmail.users.messages.send`) → accepted scopes.
    scopes: HashMap<String, Vec<String>>,
}

fn discovery() -> &'static Discovery {
    static D: OnceLock<Discovery> = OnceLock::new();
    D.get_or_init(|| {
        let doc: Value =
            serde_json::from_str(GMAIL_DISCOVERY_JSON).expect("gmail.v1.json is valid JSON");
        let mut scopes = HashMap::new();
        collect_methods(&doc, &mut |id, m| {
            let s = m["scopes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            scopes.insert(id.to_owned(), s);
        });
        Discovery { doc, scopes }
    })
}

fn collect_methods(node: &Value, f: &mut dyn FnMut(&str, &Value)) {
    if let Some(methods) = node["methods"].as_object() {
        for m in methods.values() {
            if let Some(id) = m["id"].as_str() {
                f(id, m);
            }
        }
    }
    if let Some(resources) = node["resources"].as_object() {
        for r in resources.values() {
            collect_methods(r, f);
        }
    }
}

/// The parsed discovery document.
pub fn document() -> &'static Value {
    &discovery().doc
}

/// The document's `revision` (e.g. `20261005`).
pub fn revision() -> &'static str {
    document()["revision"].as_str().unwrap_or("")
}

/// Scopes that allow the method `id` (e.g. `gmail.users.messages.send`); empty if unknown.
pub fn method_scopes(id: &str) -> &'static [String] {
    discovery().scopes.get(id).map(Vec::as_slice).unwrap_or(&[])
}

/// Every OAuth scope the document declares.
pub fn known_scopes() -> Vec<String> {
    document()["auth"]["oauth2"]["scopes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// `mediaUpload.maxSize` of a method (`gmail.users.messages.send` → 36,700,160).
pub fn media_max_size(id: &str) -> Option<usize> {
    let mut found = None;
    collect_methods(document(), &mut |mid, m| {
        if mid == id {
            found = m["mediaUpload"]["maxSize"]
                .as_str()
                .and_then(|s| s.parse().ok());
        }
    });
    found
}

/// Checks `value` against the schema named `schema` (`Message`, `Profile`, …). Returns one
/// line per problem: a field the schema does not declare, a JSON type other than the declared
/// one, an `int64`/`uint64` string that is not a number, a `byte` string that is not base64,
/// an integer outside its `int32`/`uint32` range, or a `null`.
pub fn check(schema: &str, value: &Value) -> Vec<String> {
    let mut problems = vec![];
    match document()["schemas"].get(schema) {
        Some(def) => check_value(def, value, schema, &mut problems),
        None => problems.push(format!("no schema named {schema}")),
    }
    problems
}

fn resolve(def: &Value) -> Option<&'static Value> {
    let name = def.get("$ref")?.as_str()?;
    document()["schemas"].get(name)
}

fn check_value(def: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let def: &Value = match def.get("$ref") {
        Some(_) => match resolve(def) {
            Some(d) => d,
            None => {
                problems.push(format!("{path}: unresolvable {}", def["$ref"]));
                return;
            }
        },
        None => def,
    };
    if value.is_null() {
        problems.push(format!("{path}: null (Google omits absent fields)"));
        return;
    }
    let ty = def["type"].as_str().unwrap_or("any");
    let format = def["format"].as_str();
    match ty {
        "string" => match value.as_str() {
            None => problems.push(format!("{path}: expected a string, got {value}")),
            Some(s) => {
                match format {
                    Some("int64") if s.parse::<i64>().is_err() => {
                        problems.push(format!("{path}: int64 string {s:?} is not a number"))
                    }
                    Some("uint64") if s.parse::<u64>().is_err() => {
                        problems.push(format!("{path}: uint64 string {s:?} is not a number"))
                    }
                    Some("byte") if !is_base64(s) => {
                        problems.push(format!("{path}: byte string is not base64"))
                    }
                    _ => {}
                }
                if let Some(allowed) = def["enum"].as_array()
                    && !allowed.iter().any(|a| a.as_str() == Some(s))
                {
                    problems.push(format!(
                        "{path}: {s:?} is not one of {def_enum}",
                        def_enum = def["enum"]
                    ));
                }
            }
        },
        "integer" => {
            let ok = match format {
                Some("int32") => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                Some("uint32") => value.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
                _ => value.is_i64() || value.is_u64(),
            };
            if !ok {
                problems.push(format!(
                    "{path}: expected an integer ({}), got {value}",
                    format.unwrap_or("integer")
                ));
            }
        }
        "number" => {
            if !value.is_number() {
                problems.push(format!("{path}: expected a number, got {value}"));
            }
        }
        "boolean" => {
            if !value.is_boolean() {
                problems.push(format!("{path}: expected a boolean, got {value}"));
            }
        }
        "array" => match value.as_array() {
            None => problems.push(format!("{path}: expected an array, got {value}")),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_value(&def["items"], item, &format!("{path}[{i}]"), problems);
                }
            }
        },
        "object" => match value.as_object() {
            None => problems.push(format!("{path}: expected an object, got {value}")),
            Some(obj) => {
                for (k, v) in obj {
                    let sub = format!("{path}.{k}");
                    if let Some(p) = def["properties"].get(k) {
                        check_value(p, v, &sub, problems);
                    } else if let Some(ap) = def.get("additionalProperties") {
                        check_value(ap, v, &sub, problems);
                    } else {
                        problems.push(format!("{sub}: not declared in the schema"));
                    }
                }
            }
        },
        "any" => {}
        other => problems.push(format!("{path}: unknown schema type {other}")),
    }
}

fn is_base64(s: &str) -> bool {
    use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
    URL_SAFE_PAD_INDIFFERENT.decode(s).is_ok() || STANDARD_PAD_INDIFFERENT.decode(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_document_is_the_committed_revision() {
        assert_eq!(revision(), "20261005");
        assert_eq!(
            media_max_size("gmail.users.messages.send"),
            Some(36_700_160)
        );
        assert!(
            method_scopes("gmail.users.messages.send")
                .iter()
                .any(|s| s.ends_with("/gmail.send"))
        );
        assert!(
            !method_scopes("gmail.users.getProfile")
                .iter()
                .any(|s| s.ends_with("/gmail.send"))
        );
    }

    #[test]
    fn the_checker_finds_undeclared_fields_and_wrong_types() {
        assert!(
            check(
                "Profile",
                &json!({"emailAddress": "a@b.c", "historyId": "12"})
            )
            .is_empty()
        );
        let p = check(
            "Message",
            &json!({"id": 5, "threadId": "t", "historyId": 12, "sizeEstimate": "9",
                    "labelIds": "SENT", "bogus": true, "internalDate": "x",
                    "payload": {"headers": [{"name": "A", "value": "b", "extra": 1}]}}),
        );
        let text = p.join("\n");
        for needle in [
            "Message.id: expected a string",
            "Message.historyId: expected a string",
            "Message.sizeEstimate: expected an integer",
            "Message.labelIds: expected an array",
            "Message.bogus: not declared",
            "Message.internalDate: int64 string",
            "Message.payload.headers[0].extra: not declared",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(p.len(), 7, "{text}");
    }
}
