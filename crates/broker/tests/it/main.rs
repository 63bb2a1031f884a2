//! Integration tests of the embedded broker with real MQTT clients over TCP.
//! One test binary per crate: one link instead of one per file (faster CI, less disk).

mod broker;
mod common;
mod mqtt31;
