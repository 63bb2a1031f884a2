//! Integration tests of the device agent and the fleet simulator against a real broker.
//! One test binary per crate: one link instead of one per file (faster CI, less disk).

mod agent;
mod sim;
