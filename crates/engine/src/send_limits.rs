//! The send-limit use cases of the API: an account's limits and usage (`GET /accounts/{id}`),
//! and changing its own settings (`PATCH /accounts/{id}`). The outbox applies them
//! ([`crate::outbox::limits`]).

use mailroom_core::send_limits::{LimitSetting, SendLimitSettings, SendLimits};
use mailroom_core::{ApiError, ErrorKind};
use mailroom_store::accounts::Account;
use mailroom_store::audit::{self, Action, NewEntry, Origin};
use mailroom_store::send_limits;
use mailroom_store::tx::Db;

use crate::Engine;
use crate::outbox::limits::{self, DAY_MS, MINUTE_MS};

/// An account's limits and what counts against them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendLimitStatus {
    /// The limits in force.
    pub effective: SendLimits,
    /// The provider's defaults.
    pub defaults: SendLimits,
    /// The account's own settings over the defaults.
    pub settings: SendLimitSettings,
    pub usage: SendUsage,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendUsage {
    /// Messages sent in the last minute, and in the last 24 hours.
    pub last_minute: u64,
    pub last_day: u64,
    /// Envelope recipients of the messages sent in the last 24 hours.
    pub recipients_last_day: u64,
    /// Sends held for the window (or the pause).
    pub held: u64,
    /// Until when a provider's quota answer paused the sends (only while it does).
    pub paused_until: Option<i64>,
    pub pause_reason: Option<String>,
}

/// Each limit a request changes: `None` leaves it as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendLimitsChange {
    pub per_minute: Option<LimitSetting>,
    pub per_day: Option<LimitSetting>,
    pub recipients_per_day: Option<LimitSetting>,
}

impl SendLimitsChange {
    pub fn applied_to(&self, s: SendLimitSettings) -> SendLimitSettings {
        SendLimitSettings {
            per_minute: self.per_minute.unwrap_or(s.per_minute),
            per_day: self.per_day.unwrap_or(s.per_day),
            recipients_per_day: self.recipients_per_day.unwrap_or(s.recipients_per_day),
        }
    }
}

fn store_error(e: mailroom_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store error on send limits");
    ApiError::unexpected("an internal error occurred; it has been logged")
}

/// The account's limits and usage.
pub async fn status(engine: &Engine, account: &Account) -> Result<SendLimitStatus, ApiError> {
    let now = engine.clock.now_ms();
    let l = engine
        .outbox
        .limits_of(Db::Pool(&engine.store), account)
        .await
        .map_err(store_error)?;
    let usage = limits::usage(&engine.store, &account.id, now)
        .await
        .map_err(store_error)?;
    let in_last = |window: i64| usage.sent.iter().filter(move |c| c.at > now - window);
    let paused = l.own.paused_until.filter(|p| *p > now);
    Ok(SendLimitStatus {
        effective: l.effective,
        defaults: l.defaults,
        settings: l.own.settings,
        usage: SendUsage {
            last_minute: in_last(MINUTE_MS).count() as u64,
            last_day: in_last(DAY_MS).count() as u64,
            recipients_last_day: in_last(DAY_MS).map(|c| c.recipients.max(0) as u64).sum(),
            held: usage.held.len() as u64,
            paused_until: paused,
            pause_reason: paused.and(l.own.pause_reason),
        },
    })
}

/// Changes the account's own settings (`PATCH /accounts/{id}`). Its held sends are due again
/// at once, to be planned under the new limits (in their order).
pub async fn update(
    engine: &Engine,
    origin: &Origin,
    account: &Account,
    change: SendLimitsChange,
) -> Result<SendLimitStatus, ApiError> {
    let now = engine.clock.now_ms();
    let mut tx = engine.store.begin_write().await.map_err(store_error)?;
    send_limits::lock_in(&mut tx, &account.id)
        .await
        .map_err(store_error)?;
    let own = send_limits::get(Db::Tx(&mut tx), &account.id)
        .await
        .map_err(store_error)?;
    let settings = change.applied_to(own.settings);
    if settings == own.settings {
        // Nothing changes: nothing to record, no held send to plan again.
        drop(tx);
        return status(engine, account).await;
    }
    send_limits::set_in(Db::Tx(&mut tx), &account.id, &settings, now)
        .await
        .map_err(store_error)?;
    send_limits::release_held_in(Db::Tx(&mut tx), &account.id, now)
        .await
        .map_err(store_error)?;
    // Who changed the limits, to what (numbers only), with the change.
    audit::record_in(
        Db::Tx(&mut tx),
        NewEntry {
            workspace_id: &account.workspace_id,
            action: Action::AccountUpdated,
            origin,
            account_id: Some(&account.id),
            target: Some(&account.id),
            details: serde_json::json!({ "send_limits": {
                "per_minute": settings.per_minute.to_stored(),
                "per_day": settings.per_day.to_stored(),
                "recipients_per_day": settings.recipients_per_day.to_stored(),
            } }),
            now_ms: now,
        },
    )
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    engine.outbox.wake();
    tracing::info!(account_id = %account.id, ?settings, "send limits changed");
    status(engine, account).await
}

/// Refuses a limit no provider would have: at most this many per window.
pub const MAX_LIMIT: u32 = 10_000_000;

/// A limit as the API gives it: `null` (the provider's default), 0 (none) or a whole number
/// up to [`MAX_LIMIT`].
pub fn parse_setting(name: &str, v: &serde_json::Value) -> Result<LimitSetting, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorKind::InvalidParameters,
            format!(
                "send_limits.{name} must be null (the provider's default), 0 (no limit) or a whole number up to {MAX_LIMIT}; got {v}"
            ),
        )
    };
    match v {
        serde_json::Value::Null => Ok(LimitSetting::Default),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(0) => Ok(LimitSetting::Unlimited),
            Some(n) if n <= u64::from(MAX_LIMIT) => Ok(LimitSetting::Max(n as u32)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// The `send_limits` object of a request: `{per_minute, per_day, recipients_per_day}`, each
/// optional (left out: unchanged); any other key is refused.
pub fn parse_change(v: &serde_json::Value) -> Result<SendLimitsChange, ApiError> {
    let obj = v.as_object().ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidParameters,
            format!(
                "send_limits must be an object {{per_minute, per_day, recipients_per_day}}; got {v}"
            ),
        )
    })?;
    let mut change = SendLimitsChange::default();
    for (k, val) in obj {
        let setting = parse_setting(k, val)?;
        match k.as_str() {
            "per_minute" => change.per_minute = Some(setting),
            "per_day" => change.per_day = Some(setting),
            "recipients_per_day" => change.recipients_per_day = Some(setting),
            other => {
                return Err(ApiError::new(
                    ErrorKind::InvalidParameters,
                    format!(
                        "send_limits has no field `{other}` (per_minute, per_day, recipients_per_day)"
                    ),
                ));
            }
        }
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_name_defaults_none_or_numbers_and_nothing_else() {
        let c = parse_change(&json!({"per_day": 5, "per_minute": 0, "recipients_per_day": null}))
            .unwrap();
        assert_eq!(c.per_day, Some(LimitSetting::Max(5)));
        assert_eq!(c.per_minute, Some(LimitSetting::Unlimited));
        assert_eq!(c.recipients_per_day, Some(LimitSetting::Default));
        let partial = parse_change(&json!({"per_day": 9})).unwrap();
        let before = SendLimitSettings {
            per_minute: LimitSetting::Max(3),
            ..SendLimitSettings::default()
        };
        assert_eq!(
            partial.applied_to(before),
            SendLimitSettings {
                per_minute: LimitSetting::Max(3),
                per_day: LimitSetting::Max(9),
                recipients_per_day: LimitSetting::Default
            }
        );
        for bad in [
            json!({"per_day": -1}),
            json!({"per_day": 1.5}),
            json!({"per_day": "5"}),
            json!({"per_hour": 5}),
            json!({"per_day": 10_000_001}),
            json!([1]),
            json!(5),
        ] {
            let e = parse_change(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameters, "{bad}");
        }
    }
}
