//! The operator's Google and Microsoft apps (they live with the providers; re-exported here
//! for the server's wiring).

pub use mailroom_providers::apps::*;
