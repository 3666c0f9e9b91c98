//! Fake Google (OAuth + Gmail API): being written.
