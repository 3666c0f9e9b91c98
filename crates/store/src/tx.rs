//! Several repository calls on one connection: a [`WriteTx`] makes them one transaction, so
//! they are all-or-nothing (a message and the event announcing it are stored together), its
//! reads see its own writes, and on PostgreSQL a batch of sync writes commits once (one WAL
//! flush, not one per message; see [`Store::batches_writes`] for why SQLite does not batch).
//! [`Db`] says where a call runs: on the pool, or inside a transaction.

use crate::error::Result;
use crate::{Backend, Store};

/// A write transaction on either backend (SQLite: `BEGIN IMMEDIATE`, so it never has to upgrade
/// a read lock and fail with SQLITE_BUSY half-way). Dropped without [`WriteTx::commit`], it rolls
/// back. The flag says it queued webhook deliveries: committing it wakes this process's
/// dispatchers ([`crate::webhook_deliveries::signal`]). The list holds the delivery queues
/// whose PostgreSQL advisory lock it took (see `webhook_deliveries::fan_out`), each taken once.
pub struct WriteTx(pub(crate) TxInner, pub(crate) bool, pub(crate) Vec<String>);

pub(crate) enum TxInner {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Store {
    /// Begins a write transaction.
    pub async fn begin_write(&self) -> Result<WriteTx> {
        Ok(WriteTx(
            match self {
                Store::Sqlite(pool) => TxInner::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
                Store::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
            },
            false,
            Vec::new(),
        ))
    }
}

impl Store {
    /// Whether a batch of writes (a sync pass's fetched batch) should be one transaction, its
    /// reads included. PostgreSQL: yes, one commit (one WAL flush) instead of one per row, and
    /// its row locks let other writers through meanwhile. SQLite: no. It has one write lock
    /// for the whole database, and a waiting writer polls for it (busy timeout) instead of
    /// queueing: a long transaction taken back at once after each commit starves the others
    /// (measured: the outbox waited up to 4.7 s of its 5 s while a first sync held batches of
    /// 100). There, each message is its own short transaction and reads stay outside it.
    pub fn batches_writes(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        match self.0 {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        if self.1 {
            crate::webhook_deliveries::signal().notify_waiters();
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self.0 {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Where a repository call runs: on the pool (a connection of its own, each statement its own
/// transaction) or inside a [`WriteTx`].
pub enum Db<'a> {
    Pool(&'a Store),
    Tx(&'a mut WriteTx),
}

impl Db<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Db::Pool(store) => store.backend(),
            Db::Tx(tx) => tx.backend(),
        }
    }

    /// The same place, borrowed again (for a second call in one function).
    pub fn reborrow(&mut self) -> Db<'_> {
        match self {
            Db::Pool(store) => Db::Pool(store),
            Db::Tx(tx) => Db::Tx(tx),
        }
    }
}

impl<'a> From<&'a Store> for Db<'a> {
    fn from(store: &'a Store) -> Self {
        Db::Pool(store)
    }
}

impl<'a> From<&'a mut WriteTx> for Db<'a> {
    fn from(tx: &'a mut WriteTx) -> Self {
        Db::Tx(tx)
    }
}

/// Runs `$body` with `$c` bound to a `&mut` connection of the backend's type (use it as
/// `&mut *$c` for each statement): a connection taken from the pool for `Db::Pool`, the
/// transaction's for `Db::Tx`.
macro_rules! with_conn {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            $crate::tx::Db::Pool($crate::Store::Sqlite(pool)) => {
                let mut conn = pool.acquire().await?;
                let $c = &mut *conn;
                $body
            }
            $crate::tx::Db::Pool($crate::Store::Postgres(pool)) => {
                let mut conn = pool.acquire().await?;
                let $c = &mut *conn;
                $body
            }
            $crate::tx::Db::Tx(tx) => match &mut tx.0 {
                $crate::tx::TxInner::Sqlite(t) => {
                    let $c = &mut **t;
                    $body
                }
                $crate::tx::TxInner::Postgres(t) => {
                    let $c = &mut **t;
                    $body
                }
            },
        }
    };
}
pub(crate) use with_conn;
