//! What the `otter` binary's tests share: the binary, a child process killed with its test, and
//! `otter serve` started on free ports and read back from its start-up line.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const OTTER: &str = env!("CARGO_BIN_EXE_otter");

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `otter serve` over `data` with `extra` flags (MQTT and HTTP on free loopback ports unless
/// `extra` names them); returns it, its MQTT address and its HTTP base URL.
pub fn serve(data: &Path, extra: &[&str]) -> (Running, String, String) {
    let (child, mqtt, http, _) = serve_logged(data, extra);
    (child, mqtt, http)
}

/// [`serve`], also returning what the server logged before it announced its addresses (its
/// start-up log: configuration, warnings).
pub fn serve_logged(data: &Path, extra: &[&str]) -> (Running, String, String, Vec<String>) {
    let mut cmd = Command::new(OTTER);
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
        if let Some(rest) = line.strip_prefix("otter: MQTT on ") {
            let (mqtt, http) = rest.split_once(", HTTP on ").unwrap();
            let http = http.split([' ', ',']).next().unwrap().to_owned();
            let mqtt = mqtt.to_owned();
            // Keep draining the server's log so it never writes into a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (child, mqtt, http, log);
        }
        log.push(line);
    }
    panic!(
        "otter serve exited without announcing its addresses:\n{}",
        log.join("\n")
    );
}
