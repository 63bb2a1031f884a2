//! The server's own secrets, kept as files outside the database (mode 0600, made on first start):
//! the admin token, the device-secret sealing key and the download-link keys.
//!
//! `download-key` holds the current link key on its first line and, below it, retired keys each
//! with the Unix time until which their links are still accepted (`<hex> <until>`). Rotating
//! (`otter rotate-download-key`) moves the current key down with a grace period of the longest
//! link lifetime and writes a new one; a running server picks it up at its next start.

use anyhow::{Context, Result, bail};
use rand::RngCore;
use std::path::Path;

/// File names under the data dir.
pub const ADMIN_TOKEN: &str = "admin-token";
pub const SECRET_KEY: &str = "secret-key";
pub const DOWNLOAD_KEY: &str = "download-key";

/// The download-link keys: current, and retired ones with their grace deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadKeys {
    pub current: Vec<u8>,
    pub retired: Vec<(Vec<u8>, u64)>,
}

/// A random 32-byte secret persisted at `path` so it survives restarts.
pub fn secret_file(path: &Path) -> Result<Vec<u8>> {
    if path.exists() {
        return read_hex_key(path);
    }
    let key = random_key();
    write_private(path, &hex::encode(&key), false)?;
    Ok(key)
}

fn read_hex_key(path: &Path) -> Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim();
    hex::decode(line).with_context(|| format!("{} is not hex", path.display()))
}

/// Reads the download keys (making the file on first start), dropping retired keys whose grace
/// period is over at `now_unix`.
pub fn download_keys(path: &Path, now_unix: u64) -> Result<DownloadKeys> {
    if !path.exists() {
        secret_file(path)?;
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_download_keys(&text, now_unix).with_context(|| format!("in {}", path.display()))
}

fn parse_download_keys(text: &str, now_unix: u64) -> Result<DownloadKeys> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let current = hex::decode(lines.next().unwrap_or("")).context("the current key is not hex")?;
    if current.is_empty() {
        bail!("no current key");
    }
    let mut retired = Vec::new();
    for line in lines {
        let (key, until) = line
            .split_once(' ')
            .context("a retired key line is not `<hex> <unix time>`")?;
        let until: u64 = until.trim().parse().context("a retired key's time")?;
        if until > now_unix {
            retired.push((hex::decode(key).context("a retired key is not hex")?, until));
        }
    }
    Ok(DownloadKeys { current, retired })
}

/// Replaces the current download key; links signed with the old one stay valid for `grace_secs`.
pub fn rotate_download_key(path: &Path, now_unix: u64, grace_secs: u64) -> Result<DownloadKeys> {
    let old = download_keys(path, now_unix)?;
    let mut keys = DownloadKeys {
        current: random_key(),
        retired: old.retired,
    };
    keys.retired
        .push((old.current, now_unix.saturating_add(grace_secs)));
    let mut text = hex::encode(&keys.current);
    for (key, until) in &keys.retired {
        text.push_str(&format!("\n{} {until}", hex::encode(key)));
    }
    write_private(path, &text, true)?;
    Ok(keys)
}

fn random_key() -> Vec<u8> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key.to_vec()
}

/// Writes a 0600 file; replacing goes through a temporary file and a rename, so a crash leaves
/// either the old or the new keys, never half of them.
fn write_private(path: &Path, text: &str, replace: bool) -> Result<()> {
    use std::io::Write;
    let target = if replace {
        path.with_extension("new")
    } else {
        path.to_path_buf()
    };
    let mut options = std::fs::OpenOptions::new();
    options
        .write(true)
        .create_new(!replace)
        .create(true)
        .truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&target)
        .with_context(|| format!("creating {}", target.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    if replace {
        std::fs::rename(&target, path).with_context(|| format!("replacing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_old_key_for_its_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DOWNLOAD_KEY);
        let first = download_keys(&path, 1000).unwrap();
        assert_eq!(first.current.len(), 32);
        assert!(first.retired.is_empty());
        assert_eq!(
            download_keys(&path, 1000).unwrap(),
            first,
            "stable across starts"
        );

        let rotated = rotate_download_key(&path, 1000, 500).unwrap();
        assert_ne!(rotated.current, first.current);
        assert_eq!(rotated.retired, vec![(first.current.clone(), 1500)]);
        assert_eq!(download_keys(&path, 1499).unwrap(), rotated);
        assert!(download_keys(&path, 1500).unwrap().retired.is_empty());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(parse_download_keys("zz", 0).is_err());
        assert!(parse_download_keys("", 0).is_err());
        assert!(parse_download_keys("00ff\n00ff", 0).is_err());
        assert!(parse_download_keys("00ff\n00ff soon", 0).is_err());
    }
}
