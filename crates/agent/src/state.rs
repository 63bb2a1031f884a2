//! The agent's persistent state on disk: which firmware version the device runs. Kept in one
//! small file so a restart after an install reports the new version, not the configured one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the file holding the version the device runs.
const VERSION_FILE: &str = "version";
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

/// Records `version` atomically: a power cut leaves either the old or the new file, never a
/// torn one (write a temporary file, fsync it, rename it over, fsync the folder).
pub(crate) fn store_version(dir: &Path, version: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{VERSION_FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(version.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(VERSION_FILE))?;
    // Persisting the rename needs the directory synced; not every platform allows opening one.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Where the image of `version` is downloaded. The name is derived from the version only, so a
/// later resumable download finds its partial file again.
pub(crate) fn download_path(dir: &Path, version: &str) -> PathBuf {
    let safe: String = version
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(DOWNLOADS_DIR).join(format!("firmware-{safe}.bin"))
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
    fn download_names_stay_inside_the_folder() {
        let dir = Path::new("/state");
        let p = download_path(dir, "../../etc/passwd");
        assert_eq!(p.parent(), Some(Path::new("/state/downloads")));
        assert_eq!(
            p.file_name().unwrap().to_str().unwrap(),
            "firmware-.._.._etc_passwd.bin"
        );
    }
}
