//! An account's send limits: how many messages (per minute, per rolling 24 hours) and
//! recipients (per rolling 24 hours) the outbox lets it send. The provider's published quotas
//! are the defaults (`mailroom_providers`), each of which an account may override.

use serde::{Deserialize, Serialize};

/// Effective limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendLimits {
    pub per_minute: Option<u32>,
    pub per_day: Option<u32>,
    pub recipients_per_day: Option<u32>,
}

impl SendLimits {
    /// No limit at all: the outbox sends as fast as the provider takes it.
    pub fn is_unlimited(&self) -> bool {
        self.per_minute.is_none() && self.per_day.is_none() && self.recipients_per_day.is_none()
    }
}

/// One limit as an account sets it: `Default` keeps the provider's, `Unlimited` (`0` in the
/// API) removes it, `Max(n)` replaces it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LimitSetting {
    #[default]
    Default,
    Unlimited,
    Max(u32),
}

impl LimitSetting {
    /// The stored form: NULL for the default, 0 for no limit, else the number.
    pub fn to_stored(self) -> Option<i64> {
        match self {
            LimitSetting::Default => None,
            LimitSetting::Unlimited => Some(0),
            LimitSetting::Max(n) => Some(i64::from(n)),
        }
    }

    pub fn from_stored(v: Option<i64>) -> Self {
        match v {
            None => LimitSetting::Default,
            Some(n) if n <= 0 => LimitSetting::Unlimited,
            Some(n) => LimitSetting::Max(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }

    fn over(self, default: Option<u32>) -> Option<u32> {
        match self {
            LimitSetting::Default => default,
            LimitSetting::Unlimited => None,
            LimitSetting::Max(n) => Some(n),
        }
    }
}

/// An account's own settings of its limits (all `Default` unless it set some).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendLimitSettings {
    pub per_minute: LimitSetting,
    pub per_day: LimitSetting,
    pub recipients_per_day: LimitSetting,
}

impl SendLimitSettings {
    /// Nothing set: the provider's defaults throughout.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The stored form (a hosted link keeps it until its account exists).
    pub fn to_stored_json(&self) -> String {
        serde_json::json!({
            "per_minute": self.per_minute.to_stored(),
            "per_day": self.per_day.to_stored(),
            "recipients_per_day": self.recipients_per_day.to_stored(),
        })
        .to_string()
    }

    pub fn from_stored_json(s: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let field = |k: &str| LimitSetting::from_stored(v.get(k).and_then(|n| n.as_i64()));
        Some(Self {
            per_minute: field("per_minute"),
            per_day: field("per_day"),
            recipients_per_day: field("recipients_per_day"),
        })
    }

    /// The limits in force: these settings over the provider's `defaults`.
    pub fn over(&self, defaults: SendLimits) -> SendLimits {
        SendLimits {
            per_minute: self.per_minute.over(defaults.per_minute),
            per_day: self.per_day.over(defaults.per_day),
            recipients_per_day: self.recipients_per_day.over(defaults.recipients_per_day),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_replace_remove_or_keep_each_default() {
        let defaults = SendLimits {
            per_minute: Some(30),
            per_day: Some(500),
            recipients_per_day: Some(10_000),
        };
        let s = SendLimitSettings {
            per_minute: LimitSetting::Unlimited,
            per_day: LimitSetting::Max(3),
            recipients_per_day: LimitSetting::Default,
        };
        assert_eq!(
            s.over(defaults),
            SendLimits {
                per_minute: None,
                per_day: Some(3),
                recipients_per_day: Some(10_000)
            }
        );
        for v in [
            LimitSetting::Default,
            LimitSetting::Unlimited,
            LimitSetting::Max(7),
        ] {
            assert_eq!(LimitSetting::from_stored(v.to_stored()), v);
        }
        assert_eq!(
            SendLimitSettings::from_stored_json(&s.to_stored_json()),
            Some(s)
        );
    }
}
