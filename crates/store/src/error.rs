use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A key was to be bound to an account its workspace does not have.
    #[error("no account {account} in workspace {workspace}")]
    UnknownAccount { workspace: String, account: String },
}

impl StoreError {
    /// A unique-constraint violation (e.g. two nodes inserting the same row at once).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
