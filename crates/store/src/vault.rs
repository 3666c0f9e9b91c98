//! The vault seals secrets (passwords, OAuth tokens) before they reach the database.
//!
//! Envelope scheme: the operator's master key (`MAILROOM_MASTER_KEY`, never stored) seals the
//! *data keys* kept in `vault_keys`; data keys seal the secrets. Every sealed blob is
//! `0x01 || data key id (16) || nonce (24) || XChaCha20-Poly1305 ciphertext+tag`, with the
//! row's identity as associated data so a blob cannot be moved to another row.
//! `rotate` makes a new active data key and re-seals every secret under it while the
//! server keeps running: other nodes find keys they have not seen yet by the id in the blob.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox};
use sqlx::Row;
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::{Store, with_pool};
use mailroom_core::id::random_bytes;

const FORMAT_V1: u8 = 1;
const KEY_ID_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the master key must be 32 bytes in standard base64 (e.g. `openssl rand -base64 32`)")]
    BadMasterKey,
    #[error("the master key does not open this database's vault (wrong MAILROOM_MASTER_KEY?)")]
    WrongMasterKey,
    #[error("sealed data is damaged or belongs to another record")]
    Tampered,
    #[error("sealed data names data key {0}, which this database does not have")]
    UnknownKey(String),
}

/// The operator's 256-bit key encryption key.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl MasterKey {
    pub fn from_base64(s: &str) -> std::result::Result<Self, VaultError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(s.trim())
                .map_err(|_| VaultError::BadMasterKey)?,
        );
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::BadMasterKey)?;
        Ok(Self(SecretBox::new(Box::new(arr))))
    }

    /// A new random key and its base64 form (to be written to the key file once).
    pub fn generate() -> (Self, Zeroizing<String>) {
        let raw = random_bytes::<32>();
        let b64 = Zeroizing::new(STANDARD.encode(raw));
        (Self(SecretBox::new(Box::new(raw))), b64)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(self.0.expose_secret()).expect("32-byte key")
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub new_key_id: String,
    pub resealed: u64,
}

#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    master: XChaCha20Poly1305,
    keys: RwLock<HashMap<[u8; KEY_ID_LEN], XChaCha20Poly1305>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

fn seal_with(
    cipher: &XChaCha20Poly1305,
    key_id: &[u8; KEY_ID_LEN],
    aad: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let nonce_bytes = random_bytes::<NONCE_LEN>();
    let nonce = XNonce::from(nonce_bytes);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(key_id);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    out
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    aad: &str,
    blob: &[u8],
) -> std::result::Result<Zeroizing<Vec<u8>>, VaultError> {
    let nonce_bytes: [u8; NONCE_LEN] = blob[1 + KEY_ID_LEN..HEADER_LEN]
        .try_into()
        .map_err(|_| VaultError::Tampered)?;
    cipher
        .decrypt(
            &XNonce::from(nonce_bytes),
            Payload {
                msg: &blob[HEADER_LEN..],
                aad: aad.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Tampered)
}

fn key_id_of(blob: &[u8]) -> std::result::Result<[u8; KEY_ID_LEN], VaultError> {
    if blob.len() < HEADER_LEN + 16 || blob[0] != FORMAT_V1 {
        return Err(VaultError::Tampered);
    }
    Ok(blob[1..1 + KEY_ID_LEN].try_into().expect("length checked"))
}

fn data_key_aad(id: &str) -> String {
    format!("vault_keys:{id}")
}

impl Vault {
    /// Opens the vault: creates the first data key on a new database, and checks that the
    /// master key opens every data key (a wrong master key fails here, at start-up).
    pub async fn open(store: Store, master: &MasterKey, now_ms: i64) -> Result<Self> {
        let vault = Vault {
            inner: Arc::new(Inner {
                store,
                master: master.cipher(),
                keys: RwLock::new(HashMap::new()),
            }),
        };
        if vault.active_key().await?.is_none() {
            match vault.insert_key(now_ms, None).await {
                Ok(_) => {}
                // Another node created the first key at the same moment: use theirs.
                Err(e) if e.is_unique_violation() => {}
                Err(e) => return Err(e),
            }
        }
        vault.load_all_keys().await?;
        Ok(vault)
    }

    /// Seals `plaintext` for the record named by `aad` under the active data key.
    pub async fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let (id, cipher) = self
            .active_key()
            .await?
            .ok_or_else(|| StoreError::Corrupt("the vault has no active data key".into()))?;
        Ok(seal_with(&cipher, &id, aad, plaintext))
    }

    /// Opens a blob sealed for the record named by `aad`.
    pub async fn open_blob(&self, aad: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let id = key_id_of(blob)?;
        let cipher = match self.cached(&id) {
            Some(c) => c,
            None => {
                self.load_all_keys().await?;
                self.cached(&id)
                    .ok_or_else(|| VaultError::UnknownKey(URL_SAFE_NO_PAD.encode(id)))?
            }
        };
        Ok(open_with(&cipher, aad, blob)?)
    }

    /// Makes a new active data key and re-seals every secret under it.
    pub async fn rotate(&self, now_ms: i64) -> Result<Rotation> {
        let new_key_id = self.insert_key(now_ms, Some(())).await?;
        // A node may have sealed with the previous key just before the switch committed; later
        // passes pick up what the first one's snapshot missed.
        let mut resealed = 0;
        for _ in 0..5 {
            let (done, left) =
                crate::accounts::reseal_all(&self.inner.store, self, &new_key_id).await?;
            resealed += done;
            if left == 0 {
                break;
            }
        }
        Ok(Rotation {
            new_key_id,
            resealed,
        })
    }

    /// The data key id a blob was sealed with (tests and diagnostics).
    pub fn blob_key_id(blob: &[u8]) -> Option<String> {
        key_id_of(blob).ok().map(|id| URL_SAFE_NO_PAD.encode(id))
    }

    fn cached(&self, id: &[u8; KEY_ID_LEN]) -> Option<XChaCha20Poly1305> {
        self.inner
            .keys
            .read()
            .expect("vault key cache poisoned")
            .get(id)
            .cloned()
    }

    fn unseal_data_key(
        &self,
        id: &str,
        sealed: &[u8],
    ) -> Result<([u8; KEY_ID_LEN], XChaCha20Poly1305)> {
        let raw_id: [u8; KEY_ID_LEN] = URL_SAFE_NO_PAD
            .decode(id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("bad vault key id {id}")))?;
        let key = open_with(&self.inner.master, &data_key_aad(id), sealed)
            .map_err(|_| VaultError::WrongMasterKey)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| StoreError::Corrupt(format!("vault key {id} has the wrong length")))?;
        Ok((raw_id, cipher))
    }

    async fn load_all_keys(&self) -> Result<()> {
        let rows: Vec<(String, Vec<u8>)> = with_pool!(&self.inner.store, pool => {
            sqlx::query("SELECT id, sealed_key FROM vault_keys")
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        });
        let mut loaded = Vec::with_capacity(rows.len());
        for (id, sealed) in rows {
            loaded.push(self.unseal_data_key(&id, &sealed)?);
        }
        let mut keys = self.inner.keys.write().expect("vault key cache poisoned");
        keys.extend(loaded);
        Ok(())
    }

    async fn active_key(&self) -> Result<Option<([u8; KEY_ID_LEN], XChaCha20Poly1305)>> {
        let row: Option<(String, Vec<u8>)> = with_pool!(&self.inner.store, pool => {
            sqlx::query("SELECT id, sealed_key FROM vault_keys WHERE active = TRUE")
                .fetch_optional(pool)
                .await?
                .map(|r| (r.get(0), r.get(1)))
        });
        let Some((id, sealed)) = row else {
            return Ok(None);
        };
        let (raw, cipher) = self.unseal_data_key(&id, &sealed)?;
        self.inner
            .keys
            .write()
            .expect("vault key cache poisoned")
            .insert(raw, cipher.clone());
        Ok(Some((raw, cipher)))
    }

    /// Inserts a new active data key; with `retire_old`, the previous active key is retired
    /// in the same transaction (kept, so blobs sealed under it still open).
    async fn insert_key(&self, now_ms: i64, retire_old: Option<()>) -> Result<String> {
        let raw_id = random_bytes::<KEY_ID_LEN>();
        let id = URL_SAFE_NO_PAD.encode(raw_id);
        let key = Zeroizing::new(random_bytes::<32>());
        let sealed = seal_with(
            &self.inner.master,
            &[0; KEY_ID_LEN],
            &data_key_aad(&id),
            key.as_slice(),
        );
        with_pool!(&self.inner.store, pool => {
            let mut tx = pool.begin().await?;
            if retire_old.is_some() {
                sqlx::query("UPDATE vault_keys SET active = FALSE WHERE active = TRUE")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO vault_keys (id, sealed_key, active, created_at) VALUES ($1, $2, TRUE, $3)")
                .bind(&id)
                .bind(&sealed)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        let cipher = XChaCha20Poly1305::new_from_slice(key.as_slice()).expect("32-byte key");
        self.inner
            .keys
            .write()
            .expect("vault key cache poisoned")
            .insert(raw_id, cipher);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_is_bound_to_its_record() {
        let (master, _) = MasterKey::generate();
        let c = master.cipher();
        let id = [7u8; KEY_ID_LEN];
        let blob = seal_with(&c, &id, "accounts.credentials:a", b"hunter2");
        assert_eq!(key_id_of(&blob).unwrap(), id);
        assert_eq!(
            open_with(&c, "accounts.credentials:a", &blob)
                .unwrap()
                .as_slice(),
            b"hunter2"
        );
        assert!(open_with(&c, "accounts.credentials:b", &blob).is_err());
        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(open_with(&c, "accounts.credentials:a", &flipped).is_err());
        assert!(!blob.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn master_key_must_be_32_bytes_of_base64() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64 at all!").is_err());
        let (_, b64) = MasterKey::generate();
        assert!(MasterKey::from_base64(&b64).is_ok());
    }
}
