//! The `otter` binary driven as a user runs it. (`scale_out` is its own test binary: its three
//! nodes and 1,000 devices would make every test running beside it time out on 2 cores.)
//! One test binary for the rest: one link instead of one per file (faster CI, less disk).

use otter_testkit::otter::Otter;

/// The binary under test; otter-testkit runs it (`otter serve` on free ports, admin commands).
const OTTER: Otter = Otter::new(env!("CARGO_BIN_EXE_otter"));

mod agent_resume;
mod aliyun_request;
mod cli_reads_well;
mod containerfile;
mod crash_restart;
mod fail_fast;
mod failures;
mod operators_cli;
mod otter_binary;
mod retire;
mod security_cli;
mod signing;
mod simulate_fleet;
