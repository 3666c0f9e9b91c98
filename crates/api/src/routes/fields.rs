//! Reading fields out of a JSON object body with precise errors: a missing field is
//! `errors/missing_parameters`, a wrong one `errors/invalid_parameters`, each naming it.

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::error::{Error, err};
use mailroom_core::ErrorKind;
use mailroom_core::mail::SyncLimit;
use mailroom_core::send_limits::SendLimitSettings;
use mailroom_core::time_fmt::parse_ms;

pub struct Fields<'a>(pub &'a Map<String, Value>);

fn missing(name: &str) -> Error {
    err(ErrorKind::MissingParameters, format!("{name} is required"))
}

fn invalid(name: &str, what: &str) -> Error {
    err(
        ErrorKind::InvalidParameters,
        format!("{name} must be {what}"),
    )
}

/// No control characters: they would let a value smuggle protocol commands.
fn clean(name: &str, s: &str) -> Result<(), Error> {
    if s.chars().any(|c| c.is_control()) {
        Err(invalid(name, "free of control characters (CR, LF, NUL, …)"))
    } else {
        Ok(())
    }
}

impl Fields<'_> {
    pub fn str_opt(&self, name: &str) -> Result<Option<String>, Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(invalid(name, "a non-empty string"))
            }
            Some(Value::String(s)) => {
                clean(name, s)?;
                Ok(Some(s.trim().to_owned()))
            }
            Some(_) => Err(invalid(name, "a string")),
        }
    }

    pub fn str_req(&self, name: &str) -> Result<String, Error> {
        self.str_opt(name)?.ok_or_else(|| missing(name))
    }

    /// A secret is taken verbatim (spaces are significant in passwords).
    pub fn secret_opt(&self, name: &str) -> Result<Option<SecretString>, Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(invalid(name, "a non-empty string")),
            Some(Value::String(s)) => {
                clean(name, s)?;
                Ok(Some(SecretString::from(s.clone())))
            }
            Some(_) => Err(invalid(name, "a string")),
        }
    }

    pub fn secret_req(&self, name: &str) -> Result<SecretString, Error> {
        self.secret_opt(name)?.ok_or_else(|| missing(name))
    }

    /// A TCP port, as a JSON number or a numeric string.
    pub fn port_opt(&self, name: &str) -> Result<Option<u16>, Error> {
        let what = "an integer from 1 to 65535";
        let n = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match n {
            Some(n @ 1..=65535) => Ok(Some(n as u16)),
            _ => Err(invalid(name, what)),
        }
    }

    pub fn port_req(&self, name: &str) -> Result<u16, Error> {
        self.port_opt(name)?.ok_or_else(|| missing(name))
    }

    /// A host name or IP literal.
    pub fn host_opt(&self, name: &str) -> Result<Option<String>, Error> {
        let Some(h) = self.str_opt(name)? else {
            return Ok(None);
        };
        let ok = h.len() <= 253
            && h.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
        if ok {
            Ok(Some(h))
        } else {
            Err(invalid(name, "a host name or IP address"))
        }
    }

    pub fn host_req(&self, name: &str) -> Result<String, Error> {
        self.host_opt(name)?.ok_or_else(|| missing(name))
    }
}

/// `sync_limit`: `"NO_HISTORY_SYNC"` (Unipile's one value), an RFC 3339 date, a message count
/// per folder, or Unipile's hosted form `{"MAILING": <one of those>}`; absent: the last 30 days.
pub fn sync_limit(v: Option<&Value>) -> Result<SyncLimit, Error> {
    let bad = || {
        err(
            ErrorKind::InvalidParameters,
            "sync_limit must be \"NO_HISTORY_SYNC\", an RFC 3339 date (index mail that arrived \
             since then), a whole number of messages per folder, or {\"MAILING\": one of those}",
        )
    };
    match v {
        None | Some(Value::Null) => Ok(SyncLimit::Default),
        Some(Value::String(s)) if s == "NO_HISTORY_SYNC" => Ok(SyncLimit::NoHistory),
        Some(Value::String(s)) => parse_ms(s.trim()).map(SyncLimit::Since).ok_or_else(bad),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(SyncLimit::Count)
            .ok_or_else(bad),
        Some(Value::Object(o)) if o.len() == 1 && o.contains_key("MAILING") => {
            match o.get("MAILING") {
                Some(Value::Object(_)) => Err(bad()),
                inner => sync_limit(inner),
            }
        }
        Some(_) => Err(bad()),
    }
}

/// `send_limits` of a new account (`POST /accounts`, hosted links): `{per_minute, per_day,
/// recipients_per_day}`, each `null` or left out (the provider's default), 0 (no limit) or a
/// whole number; absent: the provider's defaults.
pub fn send_limits(v: Option<&Value>) -> Result<SendLimitSettings, Error> {
    match v {
        None | Some(Value::Null) => Ok(SendLimitSettings::default()),
        Some(v) => {
            Ok(mailroom_engine::send_limits::parse_change(v)?
                .applied_to(SendLimitSettings::default()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sync_limits_parse_every_accepted_form() {
        let p = |v: serde_json::Value| sync_limit(Some(&v)).map_err(|_| ());
        assert_eq!(sync_limit(None).ok(), Some(SyncLimit::Default));
        assert_eq!(p(json!(null)), Ok(SyncLimit::Default));
        assert_eq!(p(json!("NO_HISTORY_SYNC")), Ok(SyncLimit::NoHistory));
        assert_eq!(
            p(json!({"MAILING": "NO_HISTORY_SYNC"})),
            Ok(SyncLimit::NoHistory)
        );
        assert_eq!(
            p(json!("2026-11-01T00:00:00Z")),
            Ok(SyncLimit::Since(1_793_491_200_000))
        );
        assert_eq!(p(json!(500)), Ok(SyncLimit::Count(500)));
        for bad in [
            json!("yesterday"),
            json!(-1),
            json!(1.5),
            json!(true),
            json!([]),
            json!({"MESSAGING": 1}),
            json!({"MAILING": {"MAILING": 1}}),
        ] {
            assert_eq!(p(bad.clone()), Err(()), "{bad}");
        }
    }
}
