//! Debian's Mosquitto for the tests of Otter's Mosquitto plugin (crates/mosquitto-auth): the
//! plugin built for the running test, and `mosquitto` started with a configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `mosquitto` executable: `OTTER_TEST_MOSQUITTO` when set, else Debian's
/// `/usr/sbin/mosquitto` (installed by .ci/run).
pub fn exe() -> PathBuf {
    std::env::var_os("OTTER_TEST_MOSQUITTO")
        .map_or_else(|| "/usr/sbin/mosquitto".into(), Into::into)
}

/// Builds the plugin (`cargo build -p otter-mosquitto-auth`) into the target directory and profile
/// the running test was built with, and returns the path of the shared library.
pub fn plugin() -> PathBuf {
    // This executable is <target>/<profile>/deps/<test>; the plugin lands in <target>/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--quiet", "-p", "otter-mosquitto-auth"])
        .env("CARGO_TARGET_DIR", target_dir);
    // Cargo sets these for this test; passed on, they look like changed inputs to build scripts
    // (ring tracks CARGO_MANIFEST_DIR) and every run would rebuild the plugin's dependencies.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_BIN_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&&*key)
        {
            cmd.env_remove(&*key);
        }
    }
    if profile != "debug" {
        cmd.args(["--profile", &profile]);
    }
    let status = cmd.status().expect("running cargo to build the plugin");
    assert!(status.success(), "building otter-mosquitto-auth failed");
    let plugin = profile_dir.join("libotter_mosquitto_auth.so");
    assert!(plugin.exists(), "no plugin at {}", plugin.display());
    plugin
}

/// A running `mosquitto` on a free loopback port, its stderr kept in a log file; killed when
/// dropped.
pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mosquitto {
    /// Starts `mosquitto -c` on `listener <port> 127.0.0.1` followed by `config` (whole lines),
    /// and waits until it listens.
    pub async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{config}")).unwrap();
        let log = dir.path().join("mosquitto.log");
        let exe = exe();
        let child = Command::new(&exe)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (apt-get install mosquitto): {e}",
                    exe.display()
                )
            });
        let mut broker = Mosquitto {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: dir,
        };
        broker.wait_listening().await;
        broker
    }

    async fn wait_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(self.addr).await.is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mosquitto exited ({status}):\n{}", self.log_text());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mosquitto never listened:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
