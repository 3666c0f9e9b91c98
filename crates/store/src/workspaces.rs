//! Workspaces: the tenant boundary. Every API key and account belongs to exactly one.

use crate::error::Result;
use crate::{Store, with_pool};

pub const DEFAULT_WORKSPACE: &str = "default";

/// Creates the workspace `id` unless it exists.
pub async fn ensure(store: &Store, id: &str, now_ms: i64) -> Result<()> {
    with_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await?;
    });
    Ok(())
}
