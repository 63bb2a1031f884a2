//! Builds the Mosquitto plugin for a test, into the target directory and profile the test itself
//! was built with; shared by the tests that start Debian's mosquitto with it (included with
//! `#[path]`, since integration tests of different crates cannot share a module otherwise).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the plugin into the target directory this test was built in and returns its path.
pub fn build_plugin() -> PathBuf {
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
