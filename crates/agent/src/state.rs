//! The agent's persistent state on disk: which firmware version the device runs (one small
//! file, so a restart after an install reports the new version), what signing keys were
//! announced and the newest signature seen (`trust.json`), where downloads go, and the
//! atomic-replace helper every other state file (checkpoint, trial boot, outbox) is written with.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the file holding the version the device runs.
const VERSION_FILE: &str = "version";
/// Name of the file holding the announced keys and the newest `issued` seen per module.
const TRUST_FILE: &str = "trust.json";
/// Folder (inside the state dir) for firmware images being downloaded.
const DOWNLOADS_DIR: &str = "downloads";

/// The version recorded by the last install, or `fallback` when none was recorded yet.
pub(crate) fn load_version(dir: &Path, fallback: &str) -> io::Result<String> {
    match std::fs::read_to_string(dir.join(VERSION_FILE)) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Ok(fallback.to_owned()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(fallback.to_owned()),
        Err(err) => Err(err),
    }
}

/// Records `version` atomically (see [`write_atomic`]).
pub(crate) fn store_version(dir: &Path, version: &str) -> io::Result<()> {
    write_atomic(&dir.join(VERSION_FILE), format!("{version}\n").as_bytes())
}

/// What `trust.json` holds: announcements accepted (re-verified at every start) and, per
/// module, the highest signature issue time accepted (anti-replay).
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TrustFile {
    #[serde(default)]
    pub announcements: Vec<otter_protocol::KeyAnnouncement>,
    #[serde(default)]
    pub issued: std::collections::BTreeMap<String, u64>,
}

/// The trust state; empty when never written. An unreadable file is an error: silently
/// forgetting the newest `issued` would reopen replays.
pub(crate) fn load_trust(dir: &Path) -> io::Result<TrustFile> {
    match std::fs::read(dir.join(TRUST_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(TrustFile::default()),
        Err(err) => Err(err),
    }
}

/// Records the trust state atomically.
pub(crate) fn store_trust(dir: &Path, trust: &TrustFile) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(trust).map_err(io::Error::other)?;
    write_atomic(&dir.join(TRUST_FILE), &bytes)
}

/// Replaces `path` atomically: a power cut leaves either the old or the new file, never a
/// torn one (write a temporary file, fsync it, rename it over, fsync the folder).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Persists renames and creations in `dir`; not every platform allows opening a folder.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// The folder of downloads (the partial image and its checkpoint).
pub(crate) fn downloads_dir(dir: &Path) -> PathBuf {
    dir.join(DOWNLOADS_DIR)
}

/// The image being downloaded; one at a time, whatever its version.
pub(crate) fn partial_path(dir: &Path) -> PathBuf {
    downloads_dir(dir).join("firmware.part")
}

/// The checkpoint describing [`partial_path`].
pub(crate) fn checkpoint_path(dir: &Path) -> PathBuf {
    downloads_dir(dir).join("checkpoint.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trips_and_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_version(dir.path(), "1.0").unwrap(), "1.0");
        store_version(dir.path(), "2.0").unwrap();
        assert_eq!(load_version(dir.path(), "1.0").unwrap(), "2.0");
        store_version(dir.path(), "3.0").unwrap();
        assert_eq!(load_version(dir.path(), "1.0").unwrap(), "3.0");
        assert!(!dir.path().join("version.tmp").exists());
    }

    #[test]
    fn trust_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_trust(dir.path()).unwrap(), TrustFile::default());
        let mut t = TrustFile::default();
        t.issued.insert("default".into(), 42);
        store_trust(dir.path(), &t).unwrap();
        assert_eq!(load_trust(dir.path()).unwrap(), t);
        std::fs::write(dir.path().join(TRUST_FILE), b"{").unwrap();
        assert!(load_trust(dir.path()).is_err());
    }
}
