//! The download fast path for blobs in a local folder: read the file directly, not through
//! `object_store`.
//!
//! Through `object_store`, every ranged read of a local blob costs a `head` (stat), a `get`
//! (open, stat, seek) and then one blocking-pool hop per 8 KiB, plus a copy through tokio's file
//! buffer. Blobs are content-addressed and never rewritten in place (ingest renames a finished
//! file under its final name and keeps an existing one), so an open file and its size can be
//! kept per blob and reused by every request; reads are positioned (`pread`), so requests share
//! one descriptor without seeking. A file removed from the folder behind Otter's back keeps being
//! served from the cached descriptor until it is evicted — its bytes are still the ones its name
//! promises.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;

use crate::{BlobError, blob_key};

/// Open blob files kept at most: bounds the descriptors held (the process shares its limit
/// with device connections), while a fleet update only ever serves a handful of blobs at once.
const MAX_OPEN: usize = 64;
/// Bytes read (and handed to hyper) per step. 64 KiB keeps each buffer in the CPU cache between
/// the read into it and the socket write out of it: measured faster on whole files than 256 KiB,
/// and a thousand concurrent downloads hold only ~64 MiB of buffers.
const CHUNK: usize = 64 * 1024;

/// One open blob file and its size (fixed: blobs never change).
#[derive(Debug)]
pub(crate) struct OpenFile {
    file: File,
    pub(crate) size: u64,
}

/// The local folder, with the cache of open blob files.
#[derive(Debug)]
pub(crate) struct LocalFiles {
    fs: Arc<LocalFileSystem>,
    open: Mutex<HashMap<String, Arc<OpenFile>>>,
}

impl LocalFiles {
    pub(crate) fn new(fs: Arc<LocalFileSystem>) -> Self {
        Self {
            fs,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The open file of blob `sha256` (already validated), or `None` when it is not stored.
    /// Misses are not cached: the blob may be ingested a moment later.
    pub(crate) async fn open(&self, sha256: &str) -> Result<Option<Arc<OpenFile>>, BlobError> {
        if let Some(hit) = self.cached(sha256) {
            return Ok(Some(hit));
        }
        let path = self.fs.path_to_filesystem(&blob_key(sha256))?;
        let opened = tokio::task::spawn_blocking(move || open_file(&path))
            .await
            .map_err(std::io::Error::other)??;
        let Some(opened) = opened else {
            return Ok(None);
        };
        let opened = Arc::new(opened);
        let mut open = self.lock();
        if open.len() >= MAX_OPEN {
            // Arbitrary eviction is fine: a miss costs one open, and readers keep their Arc.
            if let Some(victim) = open.keys().next().cloned() {
                open.remove(&victim);
            }
        }
        open.insert(sha256.to_owned(), Arc::clone(&opened));
        Ok(Some(opened))
    }

    /// Drops the cached file of a blob being removed (readers holding it finish their reads).
    pub(crate) fn forget(&self, sha256: &str) {
        self.lock().remove(sha256);
    }

    fn cached(&self, sha256: &str) -> Option<Arc<OpenFile>> {
        self.lock().get(sha256).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OpenFile>>> {
        // The map holds no invariant a panicking holder could break; keep serving.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn open_file(path: &std::path::Path) -> std::io::Result<Option<OpenFile>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    Ok(Some(OpenFile {
        file,
        size: meta.len(),
    }))
}

/// Streams bytes `range` of `file` (already clamped to its size), [`CHUNK`] bytes per read; the
/// stream fails if the file turns out shorter than its recorded size.
pub(crate) fn stream(
    file: Arc<OpenFile>,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    stream::try_unfold((file, range), |(file, range)| async move {
        if range.is_empty() {
            return Ok(None);
        }
        let len = usize::try_from(range.end - range.start)
            .unwrap_or(usize::MAX)
            .min(CHUNK);
        let chunk = read_chunk(Arc::clone(&file), range.start, len).await?;
        let next = range.start + chunk.len() as u64;
        Ok(Some((chunk, (file, next..range.end))))
    })
    .boxed()
}

/// Exactly `len` bytes at `offset` (at most [`CHUNK`]). Bytes already in the page cache are
/// copied right here (what nginx does); only a read that would wait for the disk goes to the
/// blocking pool, since a hop there and back costs more than copying a cached chunk.
async fn read_chunk(file: Arc<OpenFile>, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = Pooled::take(len);
    let filled = read_cached(&file.file, buf.as_mut(), offset);
    if filled == len {
        return Ok(Bytes::from_owner(buf));
    }
    tokio::task::spawn_blocking(move || {
        read_exact_at(&file.file, buf.as_mut(), filled, offset)?;
        Ok(Bytes::from_owner(buf))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Idle read buffers kept for reuse: enough for the chunks in flight on a busy server, at most
/// `MAX_IDLE * CHUNK` bytes (8 MiB) held when idle.
const MAX_IDLE: usize = 128;

/// Read buffers of [`CHUNK`] bytes, reused: allocating (and zeroing) a fresh one per chunk costs
/// about as much as reading a cached chunk.
static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A [`CHUNK`]-byte buffer of which the first `len` bytes are the content; it goes back to
/// [`IDLE`] when the last [`Bytes`] made from it is dropped (after hyper has sent it).
struct Pooled {
    buf: Vec<u8>,
    len: usize,
}

impl Pooled {
    fn take(len: usize) -> Self {
        let reused = IDLE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let buf = reused.unwrap_or_else(|| vec![0; CHUNK]);
        Self {
            len: len.min(buf.len()),
            buf,
        }
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl AsMut<[u8]> for Pooled {
    fn as_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(..self.len).unwrap_or_default()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut idle = IDLE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(std::mem::take(&mut self.buf));
        }
    }
}

/// Fills `buf` from `offset` with what can be read without waiting for the disk
/// (`RWF_NOWAIT`); returns how many bytes that was. Any error just means "ask the blocking pool".
#[cfg(target_os = "linux")]
fn read_cached(file: &File, buf: &mut [u8], offset: u64) -> usize {
    use rustix::io::{ReadWriteFlags, preadv2};
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        let mut slices = [std::io::IoSliceMut::new(rest)];
        match preadv2(
            file,
            &mut slices,
            offset + filled as u64,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _buf: &mut [u8], _offset: u64) -> usize {
    0
}

/// Fills `buf[filled..]` with the bytes at `offset + filled` onwards, or fails with
/// `UnexpectedEof`. Blocks.
fn read_exact_at(
    file: &File,
    buf: &mut [u8],
    mut filled: usize,
    offset: u64,
) -> std::io::Result<()> {
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read_at(rest, offset + filled as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob file shorter than its recorded size",
                ));
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
