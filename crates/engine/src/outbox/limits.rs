//! Send limits in the outbox: whether a job may go now under its account's limits, or when it
//! will. The windows are rolling (the last minute, the last 24 hours) and counted from what
//! the account actually sent (its sent rows), plus what is admitted and under way; jobs held
//! for the window go in acceptance order, one after the other. Each decision is taken under
//! the account's lock ([`send_limits::lock_in`]) in the transaction that records it, so two
//! processes never both take the last slot.

use mailroom_core::send_limits::SendLimits;
use mailroom_store::accounts::Account;
use mailroom_store::send_limits::{self, AccountLimits, Counted, Usage};
use mailroom_store::tx::{Db, WriteTx};
use mailroom_store::{Store, StoreError};

pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;

/// An account's limits in force, and its own settings and pause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub effective: SendLimits,
    /// The provider's defaults the settings apply over.
    pub defaults: SendLimits,
    pub own: AccountLimits,
}

impl Limits {
    /// Whether sends of the account are gated at all: it has a limit, or a provider's quota
    /// answer paused it (held jobs of a pause keep their order after it ends, for a day).
    pub fn gated(&self, now_ms: i64) -> bool {
        !self.effective.is_unlimited() || self.own.paused_until.is_some_and(|p| p > now_ms - DAY_MS)
    }
}

/// The account's limits: its settings over its provider's defaults (the seam says them).
pub async fn of(
    db: Db<'_>,
    providers: &mailroom_providers::Providers,
    account: &Account,
) -> Result<Limits, StoreError> {
    let own = send_limits::get(db, &account.id).await?;
    let defaults = providers.default_send_limits(account.account_type, account.settings.address());
    Ok(Limits {
        effective: own.settings.over(defaults),
        defaults,
        own,
    })
}

/// The job a decision is about: its id (none for a job not yet stored), when it was accepted,
/// and its envelope recipients.
pub struct Candidate<'a> {
    pub id: Option<&'a str>,
    pub created_at: i64,
    pub recipients: i64,
    /// It was held for the window: it goes in acceptance order, after the account's older
    /// sends under way have ended (held sends leave one after the other, never overtaking).
    pub held: bool,
}

/// The verdict on a candidate: go now, or wait until the time given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    WaitUntil(i64),
}

/// Takes the account's lock in `tx`, then reads its limits and what counts against them: read
/// under the lock, a concurrent change of the limits (`PATCH`) is either wholly before or
/// wholly after the decision.
pub async fn locked(
    tx: &mut WriteTx,
    providers: &mailroom_providers::Providers,
    account: &Account,
    now_ms: i64,
) -> Result<(Limits, Usage), StoreError> {
    send_limits::lock_in(tx, &account.id).await?;
    let limits = of(Db::Tx(tx), providers, account).await?;
    let usage = send_limits::usage_in(Db::Tx(tx), &account.id, now_ms - DAY_MS).await?;
    Ok((limits, usage))
}

/// Decides for `me` at `now`: the jobs held before it go first (each at its own earliest
/// time), then it goes at the earliest time its account's limits and pause allow.
pub fn decide(limits: &Limits, usage: &Usage, me: &Candidate<'_>, now: i64) -> Verdict {
    let mut counted: Vec<Counted> = usage.sent.clone();
    let others = usage
        .in_flight
        .iter()
        .filter(|f| Some(f.id.as_str()) != me.id);
    counted.extend(others.clone().map(|f| Counted {
        at: now,
        recipients: f.recipients,
    }));
    let paused = limits.own.paused_until.unwrap_or(0);
    let mut from = now.max(paused);
    let mut ahead = me.held
        && others
            .clone()
            .any(|f| (f.created_at, f.id.as_str()) < (me.created_at, me.id.unwrap_or("")));
    for h in usage.held.iter().filter(|h| {
        Some(h.id.as_str()) != me.id
            && (me.id.is_none()
                || (h.created_at, h.id.as_str()) < (me.created_at, me.id.unwrap_or("")))
    }) {
        ahead = true;
        let at = earliest(
            &limits.effective,
            &counted,
            from.max(h.run_after),
            h.recipients,
        );
        counted.push(Counted {
            at,
            recipients: h.recipients,
        });
        from = at;
    }
    let at = earliest(&limits.effective, &counted, from, me.recipients);
    if at <= now && !ahead {
        Verdict::Go
    } else {
        Verdict::WaitUntil(at.max(now))
    }
}

/// The earliest time at or after `from` at which a message to `recipients` fits in every
/// window of `limits`, given the sends `counted`. A message with more recipients than the
/// daily cap waits for an empty window, then goes alone.
pub fn earliest(limits: &SendLimits, counted: &[Counted], from: i64, recipients: i64) -> i64 {
    let mut t = from;
    loop {
        let mut next = t;
        if let Some(max) = limits.per_minute {
            next = next.max(room_at(counted, t, MINUTE_MS, i64::from(max), |_| 1, 1));
        }
        if let Some(max) = limits.per_day {
            next = next.max(room_at(counted, t, DAY_MS, i64::from(max), |_| 1, 1));
        }
        if let Some(max) = limits.recipients_per_day {
            let max = i64::from(max);
            next = next.max(room_at(
                counted,
                t,
                DAY_MS,
                max,
                |c| c.recipients,
                recipients.clamp(0, max),
            ));
        }
        if next == t {
            return t;
        }
        t = next;
    }
}

/// The earliest time at or after `t` at which the window `(time - window, time]` has room for
/// `need` more under `max`, as sends leave it oldest first (`weight` says what each uses).
fn room_at(
    counted: &[Counted],
    t: i64,
    window: i64,
    max: i64,
    weight: impl Fn(&Counted) -> i64,
    need: i64,
) -> i64 {
    let mut inside: Vec<&Counted> = counted.iter().filter(|c| c.at > t - window).collect();
    let mut used: i64 = inside.iter().map(|c| weight(c)).sum();
    if used + need <= max {
        return t;
    }
    inside.sort_by_key(|c| c.at);
    for c in inside {
        used -= weight(c);
        if used + need <= max {
            return (c.at + window).max(t);
        }
    }
    t
}

/// The store's view for the API: sends in the last minute and day, recipients in the last day.
pub async fn usage(store: &Store, account_id: &str, now: i64) -> Result<Usage, StoreError> {
    send_limits::usage_in(Db::Pool(store), account_id, now - DAY_MS).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_store::send_limits::Held;

    fn sent(times: &[i64]) -> Vec<Counted> {
        times
            .iter()
            .map(|&at| Counted { at, recipients: 1 })
            .collect()
    }

    fn limits(per_minute: Option<u32>, per_day: Option<u32>, rcpts: Option<u32>) -> Limits {
        Limits {
            effective: SendLimits {
                per_minute,
                per_day,
                recipients_per_day: rcpts,
            },
            ..Limits::default()
        }
    }

    #[test]
    fn a_full_day_opens_when_its_oldest_send_leaves_the_window() {
        let l = limits(None, Some(3), None).effective;
        let c = sent(&[1_000, 2_000, 3_000]);
        assert_eq!(earliest(&l, &c, 5_000, 1), 1_000 + DAY_MS);
        assert_eq!(earliest(&l, &c[..2], 5_000, 1), 5_000);
    }

    #[test]
    fn the_minute_and_the_day_both_hold() {
        let l = limits(Some(2), Some(3), None).effective;
        // Two in the last minute: the minute opens at 61 s; the day still has room.
        assert_eq!(earliest(&l, &sent(&[1_000, 2_000]), 3_000, 1), 61_000);
    }

    #[test]
    fn recipients_are_summed_and_a_huge_message_waits_for_an_empty_window() {
        let l = limits(None, None, Some(10)).effective;
        let c = vec![
            Counted {
                at: 1_000,
                recipients: 4,
            },
            Counted {
                at: 2_000,
                recipients: 4,
            },
        ];
        assert_eq!(earliest(&l, &c, 3_000, 2), 3_000);
        assert_eq!(earliest(&l, &c, 3_000, 3), 1_000 + DAY_MS);
        assert_eq!(earliest(&l, &c, 3_000, 50), 2_000 + DAY_MS);
    }

    #[test]
    fn held_jobs_go_first_in_order_and_a_pause_holds_everything() {
        let mut l = limits(None, Some(2), None);
        let usage = Usage {
            sent: sent(&[1_000]),
            in_flight: vec![],
            held: vec![Held {
                id: "a".into(),
                created_at: 500,
                run_after: 1_500,
                recipients: 1,
            }],
        };
        // A new job comes after the held one, which takes the last slot: a day after the send.
        let new = Candidate {
            id: None,
            created_at: 3_000,
            recipients: 1,
            held: false,
        };
        assert_eq!(
            decide(&l, &usage, &new, 3_000),
            Verdict::WaitUntil(1_000 + DAY_MS)
        );
        // The held one itself goes now.
        let held = Candidate {
            id: Some("a"),
            created_at: 500,
            recipients: 1,
            held: true,
        };
        assert_eq!(decide(&l, &usage, &held, 3_000), Verdict::Go);
        // While an older send is under way, a held one waits for it (order), though in room.
        let mut busy = usage.clone();
        busy.in_flight.push(mailroom_store::send_limits::InFlight {
            id: "z".into(),
            created_at: 100,
            recipients: 1,
        });
        busy.sent.clear();
        assert_eq!(decide(&l, &busy, &held, 3_000), Verdict::WaitUntil(3_000));
        l.own.paused_until = Some(9_000);
        assert_eq!(decide(&l, &usage, &held, 3_000), Verdict::WaitUntil(9_000));
    }
}
