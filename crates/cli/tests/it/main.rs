//! The `otter` binary driven as a user runs it. (`scale_out` is its own test binary: its three
//! nodes and 1,000 devices would make every test running beside it time out on 2 cores.)
//! One test binary for the rest: one link instead of one per file (faster CI, less disk).

mod agent_resume;
mod aliyun_request;
#[path = "../common/mod.rs"]
mod common;
mod crash_restart;
mod otter_binary;
mod security_cli;
mod signing;
mod simulate_fleet;
