//! API keys: `<key id>.<secret>`, shown once. Only SHA-256 of the secret is stored; the
//! secret has 256 bits of entropy, so a fast hash is right (no password stretching needed)
//! and the comparison is constant-time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::error::Result;
use crate::{Store, with_pool};
use mailroom_core::id::{looks_like_id, new_id, random_bytes};

/// Who a request is: the key and its workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub key_id: String,
    pub workspace_id: String,
}

/// A freshly created key; `token` is the only copy of the secret.
pub struct CreatedKey {
    pub key_id: String,
    pub workspace_id: String,
    pub token: SecretString,
}

fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates a key in `workspace_id` (which must exist).
pub async fn create(
    store: &Store,
    workspace_id: &str,
    name: &str,
    now_ms: i64,
) -> Result<CreatedKey> {
    let key_id = new_id();
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let hash = hash_secret(&secret);
    with_pool!(store, pool => {
        sqlx::query(
            "INSERT INTO api_keys (id, workspace_id, name, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key_id)
        .bind(workspace_id)
        .bind(name)
        .bind(&hash)
        .bind(now_ms)
        .execute(pool)
        .await?;
    });
    let token = SecretString::from(format!("{key_id}.{secret}"));
    Ok(CreatedKey {
        key_id,
        workspace_id: workspace_id.to_owned(),
        token,
    })
}

/// Checks a presented token. `Ok(None)` means the key is unknown or the secret is wrong.
pub async fn verify(store: &Store, token: &SecretString) -> Result<Option<KeyIdentity>> {
    let Some((key_id, secret)) = token.expose_secret().split_once('.') else {
        return Ok(None);
    };
    if !looks_like_id(key_id) {
        return Ok(None);
    }
    let row: Option<(String, Vec<u8>)> = with_pool!(store, pool => {
        sqlx::query("SELECT workspace_id, secret_hash FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(pool)
            .await?
            .map(|r| (r.get(0), r.get(1)))
    });
    let Some((workspace_id, stored)) = row else {
        return Ok(None);
    };
    let presented = hash_secret(secret);
    if bool::from(presented.ct_eq(&stored)) {
        Ok(Some(KeyIdentity {
            key_id: key_id.to_owned(),
            workspace_id,
        }))
    } else {
        Ok(None)
    }
}
