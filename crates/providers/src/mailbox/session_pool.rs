//! IMAP sessions per account: one connection budget for every IMAP use of an account (reply
//! lookups, Sent copies, the sync reads and the push watch), and logged-in sessions kept for
//! reuse so a burst of Sent copies or lookups costs one login, not one per message.
//!
//! **The budget** is [`SESSIONS_PER_ACCOUNT`] (2) connections per account. The push watch
//! ([`crate::Mailbox::watch`]) holds one of them for as long as it lives
//! ([`ImapPool::checkout_dedicated`]); at most `budget - 1` watches hold one at a time, so the
//! commands (sync reads, Sent copies, reply lookups, API calls) always keep at least one.
//!
//! **Logins per host**: at most [`LOGINS_PER_HOST`] (10 by default, [`ImapLimits`]) logins are
//! in progress at once towards one server host, across every account of this process, so a
//! thousand accounts starting together queue for the server instead of storming it (servers
//! answer a storm with throttling or temporary bans). Only the login is capped; a logged-in
//! session does not hold a place.
//!
//! A session is checked out with a permit of the account's budget and given back with
//! [`PooledSession::release`] after a command succeeded. A session dropped without release (an
//! error, a timeout that dropped the future mid-command) is discarded, never reused: its late
//! answer would be read as the next command's. Idle sessions are checked with NOOP after a
//! pause and logged out after [`IDLE_TTL`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::NetPolicy;
use crate::failure::MailError;
use crate::imap_smtp::imap::{self, ImapLogin, ImapSession};

/// IMAP connections one account may hold at once (servers cap connections per user: Gmail 15,
/// Dovecot 10 per user and IP by default; we stay far below).
pub const SESSIONS_PER_ACCOUNT: usize = 2;
/// IMAP logins in progress at once towards one server host (see the module docs).
pub const LOGINS_PER_HOST: usize = 10;
/// How long an unused session stays logged in.
pub const IDLE_TTL: Duration = Duration::from_secs(30);
/// A session unused for longer than this is checked with NOOP before it is reused.
const CHECK_AFTER: Duration = Duration::from_secs(5);

struct Idle {
    session: ImapSession,
    facts: SessionFacts,
    since: Instant,
}

/// What was learnt about a session once (its server's capabilities, what it enabled), kept
/// with the session while it is pooled so it is not asked again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFacts {
    /// `None` until asked; then whether CONDSTORE is enabled on this session.
    pub condstore: Option<bool>,
    /// `None` until asked; then whether QRESYNC is enabled on this session (expunges are then
    /// reported as `VANISHED`, never as `EXPUNGE`).
    pub qresync: Option<bool>,
}

struct Account {
    key: String,
    budget: Arc<Semaphore>,
    /// Places for dedicated (watch) sessions: one less than the budget, so commands keep one.
    dedicated: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
}

/// The pool's limits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapLimits {
    /// Connections one account may hold at once.
    pub sessions_per_account: usize,
    /// Logins in progress at once towards one server host, across accounts.
    pub logins_per_host: usize,
}

impl Default for ImapLimits {
    fn default() -> Self {
        Self {
            sessions_per_account: SESSIONS_PER_ACCOUNT,
            logins_per_host: LOGINS_PER_HOST,
        }
    }
}

/// The sessions of every account. Cheap to clone.
#[derive(Clone)]
pub struct ImapPool {
    inner: Arc<Inner>,
}

struct Inner {
    net: NetPolicy,
    per_account: usize,
    logins_per_host: usize,
    accounts: Mutex<HashMap<String, Arc<Account>>>,
    /// Login places per server host (lowercased), made on first use.
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    logins: AtomicU64,
}

/// A logged-in session of one account, holding a permit of its budget.
pub struct PooledSession {
    session: Option<ImapSession>,
    facts: SessionFacts,
    home: Arc<Account>,
    permit: OwnedSemaphorePermit,
}

impl PooledSession {
    pub fn session(&mut self) -> &mut ImapSession {
        self.session.as_mut().expect("present until released")
    }

    /// The session and what is known of it.
    pub fn parts(&mut self) -> (&mut ImapSession, &mut SessionFacts) {
        (
            self.session.as_mut().expect("present until released"),
            &mut self.facts,
        )
    }

    /// Takes the session out of the pool for good, keeping its place in the budget until the
    /// returned session is dropped (it is never given back for reuse).
    fn detach(mut self, dedicated: OwnedSemaphorePermit) -> DedicatedSession {
        DedicatedSession {
            session: self.session.take().expect("present until released"),
            facts: self.facts,
            _places: (self.permit, dedicated),
        }
    }

    /// Gives the session back for reuse: call only after its last command completed.
    pub fn release(mut self) {
        if let Some(session) = self.session.take() {
            lock(&self.home.idle).push(Idle {
                session,
                facts: self.facts,
                since: Instant::now(),
            });
        }
    }
}

/// A session held outside the pool (by the push watch): it keeps one place of its account's
/// budget until dropped, and is logged out (or just closed) by its holder, never reused.
pub struct DedicatedSession {
    pub session: ImapSession,
    pub facts: SessionFacts,
    _places: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The account part of a `account:version` key.
fn account_of(key: &str) -> &str {
    key.split_once(':').map_or(key, |(a, _)| a)
}

impl ImapPool {
    pub fn new(net: NetPolicy, limits: ImapLimits) -> Self {
        let pool = Self {
            inner: Arc::new(Inner {
                net,
                per_account: limits.sessions_per_account.max(1),
                logins_per_host: limits.logins_per_host.max(1),
                accounts: Mutex::new(HashMap::new()),
                hosts: Mutex::new(HashMap::new()),
                logins: AtomicU64::new(0),
            }),
        };
        // Log out sessions nobody used for a while (when there is a runtime to do it on).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&pool.inner);
            rt.spawn(reap(weak));
        }
        pool
    }

    /// IMAP logins this pool has made (for tests and benchmarks).
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(Ordering::Relaxed)
    }

    /// Sessions of `key`'s account checked out right now.
    pub fn in_use(&self, key: &str) -> usize {
        lock(&self.inner.accounts)
            .get(account_of(key))
            .map_or(0, |a| self.inner.per_account - a.budget.available_permits())
    }

    /// Drops the account's idle sessions and its entry (deleted or reconnected account).
    pub fn forget(&self, key: &str) {
        let gone = lock(&self.inner.accounts).remove(account_of(key));
        if let Some(a) = gone {
            let sessions: Vec<Idle> = lock(&a.idle).drain(..).collect();
            logout_later(sessions);
        }
    }

    fn account(&self, key: &str) -> Arc<Account> {
        let mut accounts = lock(&self.inner.accounts);
        let id = account_of(key);
        if let Some(a) = accounts.get(id)
            && a.key == key
        {
            return a.clone();
        }
        let fresh = Arc::new(Account {
            key: key.to_owned(),
            budget: Arc::new(Semaphore::new(self.inner.per_account)),
            dedicated: Arc::new(Semaphore::new(
                self.inner.per_account.saturating_sub(1).max(1),
            )),
            idle: Mutex::new(Vec::new()),
        });
        if let Some(old) = accounts.insert(id.to_owned(), fresh.clone()) {
            let sessions: Vec<Idle> = lock(&old.idle).drain(..).collect();
            logout_later(sessions);
        }
        fresh
    }

    /// A session of `key` (`account:version`), waiting for a free place in the account's
    /// budget; an idle one when there is one that still answers, else a new login.
    pub async fn checkout(
        &self,
        key: &str,
        login: &ImapLogin<'_>,
    ) -> Result<PooledSession, MailError> {
        let home = self.account(key);
        let permit = home
            .budget
            .clone()
            .acquire_owned()
            .await
            .expect("the budget is never closed");
        loop {
            let idle = lock(&home.idle).pop();
            let Some(Idle {
                mut session,
                facts,
                since,
            }) = idle
            else {
                break;
            };
            if since.elapsed() > IDLE_TTL {
                logout_later(vec![Idle {
                    session,
                    facts,
                    since,
                }]);
                continue;
            }
            if since.elapsed() > CHECK_AFTER
                && tokio::time::timeout(Duration::from_secs(5), session.noop())
                    .await
                    .map_or(true, |r| r.is_err())
            {
                continue;
            }
            return Ok(PooledSession {
                session: Some(session),
                facts,
                home,
                permit,
            });
        }
        let session = self.login(login).await?;
        Ok(PooledSession {
            session: Some(session),
            facts: SessionFacts::default(),
            home,
            permit,
        })
    }

    /// A session of `key` taken out of the pool for a long-lived use (the push watch), holding
    /// one place of the account's budget until dropped. Waits while the account's dedicated
    /// places (`budget - 1`, at least one) are taken: commands always keep one place.
    pub async fn checkout_dedicated(
        &self,
        key: &str,
        login: &ImapLogin<'_>,
    ) -> Result<DedicatedSession, MailError> {
        let home = self.account(key);
        let dedicated = home
            .dedicated
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        Ok(self.checkout(key, login).await?.detach(dedicated))
    }

    /// Logs in for the pool (counted in [`ImapPool::logins`]) under the host's login cap.
    async fn login(&self, login: &ImapLogin<'_>) -> Result<ImapSession, MailError> {
        let session = self.capped_login(login).await?;
        self.inner.logins.fetch_add(1, Ordering::Relaxed);
        Ok(session)
    }

    /// Logs in and out (proving settings and credentials) under the host's login cap.
    pub(crate) async fn verify(&self, login: &ImapLogin<'_>) -> Result<(), MailError> {
        let mut session = self.capped_login(login).await?;
        // A failed LOGOUT does not make the credentials wrong.
        let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
        Ok(())
    }

    /// Logs in, holding one of the host's login places meanwhile (waiting for one first: the
    /// wait is not part of the login's own deadline).
    async fn capped_login(&self, login: &ImapLogin<'_>) -> Result<ImapSession, MailError> {
        let host = self.host_places(login.host);
        let _place = host.acquire_owned().await.expect("never closed");
        imap::login(login, &self.inner.net).await
    }

    fn host_places(&self, host: &str) -> Arc<Semaphore> {
        lock(&self.inner.hosts)
            .entry(host.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.logins_per_host)))
            .clone()
    }
}

fn logout_later(sessions: Vec<Idle>) {
    if sessions.is_empty() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for mut s in sessions {
                let _ = tokio::time::timeout(Duration::from_secs(5), s.session.logout()).await;
            }
        });
    }
}

async fn reap(pool: Weak<Inner>) {
    loop {
        tokio::time::sleep(IDLE_TTL / 2).await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        let accounts: Vec<Arc<Account>> = lock(&inner.accounts).values().cloned().collect();
        for a in accounts {
            let stale: Vec<Idle> = {
                let mut idle = lock(&a.idle);
                let (old, keep): (Vec<Idle>, Vec<Idle>) =
                    idle.drain(..).partition(|s| s.since.elapsed() > IDLE_TTL);
                *idle = keep;
                old
            };
            logout_later(stale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_account() {
        assert_eq!(account_of("acc:17"), "acc");
        assert_eq!(account_of("acc"), "acc");
    }
}
