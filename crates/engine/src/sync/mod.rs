//! Keeping the mail index current from the providers. Today: one pass of IMAP folder sync
//! ([`imap::sync_account_once`]), library code only: no worker starts it and no route exposes
//! it yet (the supervisor, its leases, IDLE/NOTIFY and the read routes come later; see
//! `docs/sync.md`).

pub mod imap;
