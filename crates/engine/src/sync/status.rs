//! The account's status as its sync finds it (`sources[].status`), with an `account_status`
//! event for every change (the webhooks deliver them).

use serde_json::json;

use mailroom_core::account::SourceStatus;
use mailroom_store::accounts::{self, Account};
use mailroom_store::audit::{Action, Origin};
use mailroom_store::events::{self, NewEvent, event_id};
use mailroom_store::{Db, Store, StoreError};

/// Sets `account`'s status (and its reason); records an `account_status` event when the
/// status actually changed. The event id is derived from the account, the status and the time
/// of the change: the conditional update lets only one writer see the change, so it is
/// recorded once.
pub async fn set(
    store: &Store,
    account: &Account,
    status: SourceStatus,
    detail: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    // The change and its event commit together: a crash cannot keep one without the other.
    let mut tx = store.begin_write().await?;
    if !accounts::set_sync_status_in(Db::Tx(&mut tx), &account.id, status, detail).await? {
        tx.commit().await?; // a new reason for the same status
        return Ok(false);
    }
    let mut body = json!({
        "account_id": account.id,
        "account_type": account.account_type.as_str(),
        "message": status.as_str(),
    });
    if let Some(d) = detail {
        body["reason"] = json!(d);
    }
    events::record_in(
        Db::Tx(&mut tx),
        NewEvent {
            id: event_id(&[
                "account_status",
                &account.id,
                status.as_str(),
                &now_ms.to_string(),
            ]),
            workspace_id: &account.workspace_id,
            account_id: Some(&account.id),
            kind: "account_status",
            payload: json!({ "AccountStatus": body }),
            now_ms,
        },
    )
    .await?;
    if status == SourceStatus::Credentials {
        // The provider's reason stays out of the audit log: it can quote the login.
        crate::link::audit_account(
            &mut tx,
            Action::AccountCredentialsRefused,
            &Origin::system(),
            account,
            now_ms,
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(account_id = %account.id, status = status.as_str(), detail, "account status changed");
    Ok(true)
}

/// Records an `account_status` event that no status column holds (`CREATION_SUCCESS`,
/// `RECONNECTED`, `SYNC_SUCCESS`, `DELETED`), on the pool or in the transaction of the change it
/// announces. `key` makes the id: the same key is announced once (e.g. `""` for what happens
/// once in an account's life, the time for a reconnect).
pub async fn announce(
    db: Db<'_>,
    account: &Account,
    message: &str,
    key: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    events::record_in(
        db,
        NewEvent {
            id: event_id(&["account_status", &account.id, message, key]),
            workspace_id: &account.workspace_id,
            account_id: Some(&account.id),
            kind: "account_status",
            payload: json!({ "AccountStatus": {
                "account_id": account.id,
                "account_type": account.account_type.as_str(),
                "message": message,
            }}),
            now_ms,
        },
    )
    .await
}
