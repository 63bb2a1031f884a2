//! What the workspace's tests share, so no test file copies another crate's helpers (integration
//! tests of different crates cannot share a module otherwise):
//!
//! - [`pg`] (feature `postgres`): a throwaway PostgreSQL database on the server
//!   `OTTER_TEST_POSTGRES_URL` names (`scripts/pg-throwaway.sh`);
//! - [`s3`]: a fresh bucket on the S3 server `OTTER_TEST_S3_ENDPOINT` names
//!   (`scripts/s3-throwaway.sh`);
//! - [`otter`]: the `otter` binary: `otter serve` on free ports, admin commands with `--json`;
//! - [`mosquitto`]: Otter's Mosquitto plugin built for the running test, and Debian's
//!   `mosquitto` started with a configuration;
//! - [`mqtt`] (feature `mqtt`): an MQTT client connected up to its CONNACK;
//! - [`Running`], [`free_port`], [`free_addr`], [`wait_port`]: child processes and ports.
//!
//! Under `CI` a missing PostgreSQL or S3 server is a failure, never a silent skip.
//!
//! Only ever a dev-dependency.

pub mod mosquitto;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod otter;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod s3;

use std::process::Child;
use std::time::{Duration, Instant};

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `127.0.0.1:<a free port>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Blocks until something listens on the loopback `port` (20 s at most, then panics).
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the environment variable `var` when set and not empty. Otherwise: under `CI` a
/// panic (the tests needing it must not be skipped there), elsewhere `None` after saying on
/// stderr what is skipped.
pub fn required_env(var: &str, start_with: &str, skipped: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {var} is not: start {start_with}")
        }
        _ => {
            eprintln!("{var} not set: {skipped} skipped");
            None
        }
    }
}
