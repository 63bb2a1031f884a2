//! The `otter` binary driven as a user runs it: `otter serve` on free ports, read back from its
//! start-up line, and the admin commands.
//!
//! The binary's path comes from the test (`env!("CARGO_BIN_EXE_otter")` exists only in the
//! tests of the crate that builds it):
//!
//! ```ignore
//! const OTTER: Otter = Otter::new(env!("CARGO_BIN_EXE_otter"));
//! let (_server, mqtt, http) = OTTER.serve(dir.path(), &[]);
//! let products = OTTER.json(&http, dir.path(), &["product", "list"]);
//! ```

use crate::Running;
use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// The `otter` executable. `Command::new(OTTER)` works too.
#[derive(Clone, Copy, Debug)]
pub struct Otter(&'static str);

impl AsRef<OsStr> for Otter {
    fn as_ref(&self) -> &OsStr {
        self.0.as_ref()
    }
}

impl Otter {
    pub const fn new(path: &'static str) -> Self {
        Otter(path)
    }

    /// `otter serve` over `data` with `extra` flags (MQTT and HTTP on free loopback ports unless
    /// `extra` names them); returns it, its MQTT address (the broker's URL with `--broker`) and
    /// its HTTP base URL once it announced them (it is then listening).
    pub fn serve(self, data: &Path, extra: &[&str]) -> (Running, String, String) {
        let (child, mqtt, http, _) = self.serve_logged(data, extra);
        (child, mqtt, http)
    }

    /// [`Otter::serve`], also returning what the server logged before it announced its
    /// addresses (its start-up log: configuration, warnings).
    pub fn serve_logged(
        self,
        data: &Path,
        extra: &[&str],
    ) -> (Running, String, String, Vec<String>) {
        let (child, mqtt, http, _, log) = self.serve_announced(data, extra);
        (child, mqtt, http, log)
    }

    /// [`Otter::serve`] with the operators' surface on a listener of its own (`--admin-listen`
    /// on a free loopback port): returns the server, its MQTT address, its device HTTP URL and
    /// its admin URL (API, console, metrics).
    pub fn serve_admin(self, data: &Path, extra: &[&str]) -> (Running, String, String, String) {
        let mut args = vec!["--admin-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (child, mqtt, http, admin, _) = self.serve_announced(data, &args);
        let admin = admin.expect("otter serve announced no admin listener");
        (child, mqtt, http, admin)
    }

    /// Starts `otter serve` and reads its start-up line: the server, MQTT address, HTTP URL,
    /// admin URL (with `--admin-listen`) and the log before that line.
    #[allow(clippy::type_complexity)]
    fn serve_announced(
        self,
        data: &Path,
        extra: &[&str],
    ) -> (Running, String, String, Option<String>, Vec<String>) {
        let mut cmd = Command::new(self);
        cmd.arg("serve");
        for flag in ["--mqtt-listen", "--http-listen"] {
            if !extra.contains(&flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        let mut child = Running(
            cmd.arg("--data-dir")
                .arg(data)
                .args(extra)
                .env_remove("OTTER_TOKEN")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            // `MQTT on <addr>`, or `MQTT via <url>` with an external broker (--broker).
            let announced = line
                .strip_prefix("otter: MQTT on ")
                .or_else(|| line.strip_prefix("otter: MQTT via "));
            if let Some(rest) = announced {
                let (mqtt, http) = rest.split_once(", HTTP on ").unwrap();
                let admin = http
                    .split_once("admin (API, console, metrics) on ")
                    .map(|(_, admin)| admin.split([' ', ',']).next().unwrap().to_owned());
                let http = http.split([' ', ',']).next().unwrap().to_owned();
                let mqtt = mqtt.to_owned();
                // Keep draining the server's log so it never writes into a closed pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return (child, mqtt, http, admin, log);
            }
            log.push(line);
        }
        panic!(
            "otter serve exited without announcing its addresses:\n{}",
            log.join("\n")
        );
    }

    /// An admin command's `otter` for the server at `server` (a URL) with the admin token from
    /// the data dir `data` (`OTTER_TOKEN` removed); the caller adds the arguments.
    pub fn admin(self, server: &str, data: &Path) -> Command {
        let mut cmd = Command::new(self);
        cmd.env("OTTER_SERVER", server)
            .env("OTTER_DATA_DIR", data)
            .env_remove("OTTER_TOKEN");
        cmd
    }

    /// Runs the admin command `otter args --json` (see [`Otter::admin`]), which must succeed,
    /// and returns the JSON it printed.
    pub fn json(self, server: &str, data: &Path, args: &[&str]) -> Value {
        let out = self
            .admin(server, data)
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "otter {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "otter {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}
