//! mailroom's HTTP API: the axum router, authentication, request decoding, the JSON error
//! body, the OpenAPI document and the operational endpoints.

mod auth;
mod docs_page;
pub mod error;
mod extract;
mod middleware;
pub mod openapi;
mod origin;
mod pagination;
mod rate_limit;
mod routes;
mod state;
pub mod telemetry;
pub mod webhook_events;

pub use routes::router;
pub use state::{ApiConfig, AppState};
