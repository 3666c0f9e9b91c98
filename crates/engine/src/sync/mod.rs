//! Keeping the mail index current from the providers: one pass of IMAP folder sync
//! ([`imap::sync_account_once`]) and the subject fallback of threading ([`threading`]).

pub mod imap;
pub mod threading;
