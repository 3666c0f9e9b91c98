//! Fake Microsoft (identity platform + Graph): being written.
