//! A send request, validated: every field checked (addresses, header injection, sizes)
//! before anything is stored. Errors name the field.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::decode::RawSend;
use crate::error::{Error, err};
use mailroom_core::ErrorKind;
use mailroom_core::email::Attendee;
use mailroom_core::time_fmt::parse_ms;
use mailroom_engine::compose::{MimeError, guard};
use mailroom_engine::send::SendInput;
use mailroom_engine::tracking::TrackingOptions;

/// `tracking_options`: `{opens?, links?, label?, custom_domain?}` (booleans, a label of at most
/// 255 characters, a host name). `None` when neither opens nor links are asked for.
fn tracking_options(v: &Value, public_url: &url::Url) -> Result<Option<TrackingOptions>, Error> {
    let Some(o) = v.as_object() else {
        return Err(invalid("tracking_options must be an object"));
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["opens", "links", "label", "custom_domain"].contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "tracking_options.{k} is unknown (opens, links, label, custom_domain)"
        )));
    }
    let flag = |name: &str| match o.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!(
            "tracking_options.{name} must be true or false"
        ))),
    };
    let text = |name: &str| match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 255 && !s.chars().any(char::is_control) => {
            Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
        }
        Some(_) => Err(invalid(format!(
            "tracking_options.{name} must be a string of at most 255 characters"
        ))),
    };
    let (opens, links, label) = (flag("opens")?, flag("links")?, text("label")?);
    let custom_domain = text("custom_domain")?.map(|d| d.to_ascii_lowercase());
    let base = match &custom_domain {
        None => public_url.clone(),
        Some(d) => {
            let host_like = d.contains('.')
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            host_like
                .then(|| url::Url::parse(&format!("https://{d}/")).ok())
                .flatten()
                .ok_or_else(|| {
                    invalid(format!(
                        "tracking_options.custom_domain must be a host name like track.example.com, got `{d}`"
                    ))
                })?
        }
    };
    if !opens && !links {
        return Ok(None);
    }
    let mut base = base;
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    Ok(Some(TrackingOptions {
        opens,
        links,
        label,
        custom_domain,
        base,
    }))
}

/// A parsed send: what the engine's send use case takes, and the tracking options as given
/// (part of the request's identity).
#[derive(Debug)]
pub struct SendRequest {
    pub input: SendInput,
    pub tracking_options: Option<Value>,
}

pub fn mime_error(e: MimeError) -> Error {
    Error(mailroom_engine::send::mime_error(e))
}

fn invalid(msg: impl Into<String>) -> Error {
    err(ErrorKind::InvalidParameters, msg)
}

fn text(raw: &RawSend, name: &str) -> Result<Option<String>, Error> {
    match raw.fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(invalid(format!("{name} must be a string"))),
    }
}

fn attendees(raw: &RawSend, name: &str) -> Result<Vec<Attendee>, Error> {
    let list = match raw.fields.get(name) {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(invalid(format!(
                "{name} must be an array of {{identifier, display_name?}}"
            )));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let field = format!("{name}[{i}]");
        let attendee = match item {
            Value::String(s) => Attendee {
                identifier: s.trim().to_owned(),
                display_name: None,
            },
            Value::Object(o) => {
                let identifier = match o.get("identifier") {
                    Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
                    _ => {
                        return Err(invalid(format!(
                            "{field}.identifier must be an email address"
                        )));
                    }
                };
                let display_name = match o.get("display_name") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().is_empty() => None,
                    Some(Value::String(s)) => Some(s.trim().to_owned()),
                    Some(_) => {
                        return Err(invalid(format!("{field}.display_name must be a string")));
                    }
                };
                Attendee {
                    identifier,
                    display_name,
                }
            }
            _ => {
                return Err(invalid(format!(
                    "{field} must be {{identifier, display_name?}}"
                )));
            }
        };
        guard::check_address(&field, &attendee).map_err(mime_error)?;
        out.push(attendee);
    }
    Ok(out)
}

impl SendRequest {
    /// `public_url` is where the tracking URLs point unless `tracking_options.custom_domain`
    /// names another host.
    pub fn parse(raw: &RawSend, public_url: &url::Url) -> Result<Self, Error> {
        let account_id = text(raw, "account_id")?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err(ErrorKind::MissingParameters, "account_id is required"))?;
        // With a draft, what the request leaves out comes from the draft (the engine checks
        // that there are recipients and a body in the end).
        let draft_id = text(raw, "draft_id")?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let to = attendees(raw, "to")?;
        let cc = attendees(raw, "cc")?;
        let bcc = attendees(raw, "bcc")?;
        if to.is_empty() && draft_id.is_none() {
            return Err(err(
                ErrorKind::MissingParameters,
                "to must name at least one recipient",
            ));
        }
        let count = to.len() + cc.len() + bcc.len();
        if count > 500 {
            return Err(invalid(format!(
                "{count} recipients; at most 500 per email"
            )));
        }
        let (from_identifier, from_name) = match raw.fields.get("from") {
            None | Some(Value::Null) => (None, None),
            Some(Value::Object(o)) => {
                let id = o
                    .get("identifier")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty());
                let name = o
                    .get("display_name")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty());
                let probe = Attendee {
                    identifier: id.unwrap_or("probe@example.com").to_owned(),
                    display_name: name.map(str::to_owned),
                };
                guard::check_address("from", &probe).map_err(mime_error)?;
                (id.map(str::to_owned), name.map(str::to_owned))
            }
            Some(_) => return Err(invalid("from must be {identifier?, display_name?}")),
        };
        let subject = text(raw, "subject")?.unwrap_or_default();
        guard::check_header_value("subject", &subject).map_err(mime_error)?;
        if subject.len() > 998 {
            return Err(invalid("subject is longer than 998 bytes"));
        }
        let body = match (text(raw, "body")?, &draft_id) {
            (Some(b), _) => b,
            (None, Some(_)) => String::new(),
            (None, None) => return Err(err(ErrorKind::MissingParameters, "body is required")),
        };
        let reply_to = text(raw, "reply_to")?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if let Some(r) = &reply_to {
            guard::check_header_value("reply_to", r).map_err(mime_error)?;
        }
        let custom_headers = match raw.fields.get("custom_headers") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(items)) => {
                let mut out = vec![];
                for (i, h) in items.iter().enumerate() {
                    let name = h.get("name").and_then(Value::as_str);
                    let value = h.get("value").and_then(Value::as_str);
                    let (Some(name), Some(value)) = (name, value) else {
                        return Err(invalid(format!(
                            "custom_headers[{i}] must be {{name, value}} strings"
                        )));
                    };
                    guard::check_custom_header(i, name, value).map_err(mime_error)?;
                    out.push((name.to_owned(), value.to_owned()));
                }
                out
            }
            Some(_) => return Err(invalid("custom_headers must be an array of {name, value}")),
        };
        let tracking = match raw.fields.get("tracking_options") {
            None | Some(Value::Null) => None,
            Some(t) => tracking_options(t, public_url)?,
        };
        for (i, a) in raw.attachments.iter().enumerate() {
            if a.filename.trim().is_empty()
                || a.filename
                    .chars()
                    .any(|c| c.is_control() || c == '/' || c == '\\')
            {
                return Err(invalid(format!(
                    "attachments[{i}] has an invalid file name"
                )));
            }
            if let Some(cid) = &a.cid {
                guard::check_cid(&format!("attachments[{i}].cid"), cid).map_err(mime_error)?;
            }
            if let Some(ct) = &a.content_type
                && (ct.chars().any(|c| c.is_control()) || !ct.contains('/'))
            {
                return Err(invalid(format!(
                    "attachments[{i}].content_type is not a MIME type"
                )));
            }
        }
        let send_at =
            match text(raw, "send_at")? {
                None => None,
                Some(s) => Some(parse_ms(&s).ok_or_else(|| {
                    invalid(format!("send_at must be an RFC 3339 date, got `{s}`"))
                })?),
            };
        Ok(SendRequest {
            input: SendInput {
                account_id: account_id.trim().to_owned(),
                to,
                cc,
                bcc,
                from_identifier,
                from_name,
                subject,
                body,
                attachments: raw.attachments.clone(),
                reply_to,
                custom_headers,
                send_at,
                draft_id,
                tracking,
            },
            tracking_options: raw
                .fields
                .get("tracking_options")
                .filter(|v| !v.is_null())
                .cloned(),
        })
    }

    /// A fingerprint of what was asked (not of its encoding): the same send through
    /// multipart or JSON, with any boundary, hashes the same.
    pub fn fingerprint(&self) -> Vec<u8> {
        let i = &self.input;
        let att: Vec<Value> = i
            .attachments
            .iter()
            .map(|a| {
                json!({"filename": a.filename, "content_type": a.content_type, "cid": a.cid,
                       "sha256": base64_sha(&a.content)})
            })
            .collect();
        let canonical = json!({
            "account_id": i.account_id,
            "to": i.to, "cc": i.cc, "bcc": i.bcc,
            "from": [i.from_identifier, i.from_name],
            "subject": i.subject, "body": i.body, "reply_to": i.reply_to,
            "custom_headers": i.custom_headers, "send_at": i.send_at, "attachments": att,
            "tracking_options": self.tracking_options, "draft_id": i.draft_id,
        });
        Sha256::digest(canonical.to_string().as_bytes()).to_vec()
    }
}

fn base64_sha(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}
