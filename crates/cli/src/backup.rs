//! `otter backup`: copy a data folder while `otter serve` runs (see otter-server's `backup`).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct BackupArgs {
    /// The server's data folder.
    #[arg(long, env = "OTTER_DATA_DIR", default_value = "otter-data")]
    data_dir: PathBuf,
    /// The server's blob folder, when --blobs put it elsewhere [default: <data-dir>/blobs].
    #[arg(long)]
    blobs: Option<PathBuf>,
    /// New folder to write the backup to (it holds the keys: keep it as private as the data
    /// folder).
    #[arg(long)]
    to: PathBuf,
}

pub async fn run(a: BackupArgs) -> Result<()> {
    let blobs = a.blobs.unwrap_or_else(|| a.data_dir.join("blobs"));
    let done = otter_server::backup::backup(&a.data_dir, &blobs, &a.to).await?;
    println!(
        "backed up {} into {}: database {} bytes, {} blobs ({} bytes), keys: {}",
        a.data_dir.display(),
        a.to.display(),
        done.database_bytes,
        done.blobs,
        done.blob_bytes,
        if done.keys.is_empty() {
            "none".to_owned()
        } else {
            done.keys.join(", ")
        }
    );
    println!(
        "restore: stop otter serve, then start it with --data-dir {} (or put the folder in the \
         data folder's place)",
        a.to.display()
    );
    Ok(())
}
