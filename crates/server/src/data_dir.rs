//! The data folder: the embedded database, blobs and key files. Private to its owner (0700),
//! and served by one `otter serve` at a time.

use anyhow::{Context, Result};
use std::path::Path;
use tracing::info;

/// The data folder holds the database, blobs and key files: its owner's only (0700). Created
/// so, and narrowed when an earlier version left it open to others.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            info!(dir = %dir.display(), "narrowing the data folder's mode to 0700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Name of the lock file in the data folder; it holds the owner's process id.
const OWNER_FILE: &str = "serve.lock";

/// Makes this process the one `otter serve` of `dir`: an exclusive lock on `<dir>/serve.lock`,
/// held until the process ends (the kernel releases it on a crash too). A second server on the
/// same embedded database would mark every device offline under the first one and stall its
/// campaigns, so it refuses to start and names the holder.
pub(crate) fn own(dir: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(OWNER_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_owned(),
                pid => format!("process {pid}"),
            };
            anyhow::bail!(
                "the data folder {} is in use by another `otter serve` ({holder}); stop it, or \
                 give this server its own --data-dir (several nodes share work only through \
                 PostgreSQL, see DEPLOYMENT.md)",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}
