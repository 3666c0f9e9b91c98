//! mailroom's domain core: ids, the error catalogue, date and cursor encoding, and the
//! account types shared by every other crate. No I/O lives here.

pub mod account;
pub mod clock;
pub mod cursor;
pub mod email;
pub mod error;
pub mod id;
pub mod mail;
pub mod send_limits;
pub mod time_fmt;

pub use clock::{Clock, SystemClock};
pub use error::{ApiError, ErrorKind};
pub use id::{AccountId, MessageId, TrackingId, new_id};
