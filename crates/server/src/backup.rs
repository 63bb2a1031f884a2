//! `otter backup`: an online, consistent copy of a data folder that `otter serve` may be using.
//!
//! Order makes it consistent without stopping the server: the database is copied first, as one
//! snapshot (`otter_store::backup_sqlite`); blobs after it. Blobs are content-addressed and
//! written before the firmware row that names them is committed, so every blob the snapshot
//! names is already there when the blobs are copied (a blob uploaded meanwhile is copied too, or
//! not: nothing in the snapshot names it). Key files never change in place. Unfinished uploads
//! (`staging/`) are left out.

use anyhow::{Context, Result, bail};
use std::path::Path;

use crate::keys;

/// What a backup copied.
#[derive(Debug, Default)]
pub struct BackupSummary {
    pub database_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub keys: Vec<&'static str>,
}

/// Copies the database, the blob folder `blobs` (`<data_dir>/blobs` normally) and the key files
/// of `data_dir` into `to`, a folder that must not exist yet (created 0700: it holds keys).
pub async fn backup(data_dir: &Path, blobs: &Path, to: &Path) -> Result<BackupSummary> {
    let db = data_dir.join("otter.db");
    if !db.is_file() {
        bail!(
            "{} has no embedded database (otter.db); with PostgreSQL, back up the database \
             with pg_dump and S3 blobs with the S3 service's own tools",
            data_dir.display()
        );
    }
    if to.exists() {
        bail!("{} exists: back up into a new folder", to.display());
    }
    crate::data_dir::private_dir(to).with_context(|| format!("creating {}", to.display()))?;
    let mut summary = BackupSummary::default();

    let copy = to.join("otter.db");
    otter_store::backup_sqlite(&db, &copy)
        .await
        .with_context(|| format!("copying the database {}", db.display()))?;
    summary.database_bytes = std::fs::metadata(&copy)?.len();

    let content = blobs.join("sha256");
    if content.is_dir() {
        let into = to.join("blobs").join("sha256");
        std::fs::create_dir_all(&into)?;
        for entry in std::fs::read_dir(&content)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            summary.blob_bytes += std::fs::copy(entry.path(), into.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
            summary.blobs += 1;
        }
    }

    for name in [keys::ADMIN_TOKEN, keys::SECRET_KEY, keys::DOWNLOAD_KEY] {
        let key = data_dir.join(name);
        if key.is_file() {
            std::fs::copy(&key, to.join(name))
                .with_context(|| format!("copying {}", key.display()))?;
            summary.keys.push(name);
        }
    }
    Ok(summary)
}
