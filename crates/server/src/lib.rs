//! The `mailroom` binary's library half: configuration, start-up wiring and telemetry, so
//! tests can build and run the same application in-process.

pub mod app;
pub mod config;
pub mod telemetry;

pub use app::Application;
pub use config::{ConfigError, RawConfig, Settings};
