//! The WAL's narrow file-storage interface, and its real implementation on monoio.
//!
//! The data path (`WalFile::write_all_at`, `WalFile::sync_data`, `WalStorage::open_file`)
//! is asynchronous and goes through io_uring when the runtime has it (epoll's legacy
//! driver otherwise). The rest runs rarely — recovery once at open, segment deletion after
//! a flush — and is synchronous `std::fs`.
//!
//! `super::memory::MemoryStorage` implements the same traits in memory with fault
//! injection, so tests can count writes and fsyncs and fail them at will.
//!
//! Both are single-threaded: they belong to the shard that owns the region.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

/// A boxed future bound to the current thread. The WAL boxes one per batch at most, which
/// is nothing next to a write and an fsync, and it keeps the traits object-safe.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Files and directories as the WAL needs them.
pub trait WalStorage {
    /// Creates `dir` and its parents where missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// A whole file's bytes.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Up to `len` bytes of `path` from `offset` (fewer only where the file ends). The
    /// default reads the whole file; the real storage reads just the range, through
    /// io_uring.
    fn read_at<'a>(
        &'a self,
        path: &'a Path,
        offset: u64,
        len: usize,
    ) -> LocalBoxFuture<'a, io::Result<Vec<u8>>> {
        Box::pin(async move {
            let data = self.read_file(path)?;
            let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
            let end = start.saturating_add(len).min(data.len());
            Ok(data[start..end].to_vec())
        })
    }
    /// Shortens a file to `len` bytes and makes that durable.
    fn truncate_file(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Opens `path` for positional writes, creating it if missing; when it creates the
    /// file it also makes the directory entry durable, so fdatasync on the file suffices
    /// afterwards.
    fn open_file<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn WalFile>>>;
}

/// One open segment file.
pub trait WalFile {
    /// Writes all of `buffer` at `offset`, returning the buffer for reuse.
    fn write_all_at(
        &self,
        buffer: Vec<u8>,
        offset: u64,
    ) -> LocalBoxFuture<'_, (io::Result<()>, Vec<u8>)>;
    /// fdatasync.
    fn sync_data(&self) -> LocalBoxFuture<'_, io::Result<()>>;
}

/// The real storage: monoio files (io_uring) on the data path, `std::fs` for the rest.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonoioStorage;

impl WalStorage for MonoioStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Ok(name) = entry.file_name().into_string()
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn truncate_file(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn read_at<'a>(
        &'a self,
        path: &'a Path,
        offset: u64,
        len: usize,
    ) -> LocalBoxFuture<'a, io::Result<Vec<u8>>> {
        Box::pin(read_range(path, offset, len))
    }

    fn open_file<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn WalFile>>> {
        Box::pin(async move {
            let existed = std::fs::metadata(path).is_ok();
            let file = monoio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .open(path)
                .await?;
            if !existed {
                sync_parent_dir(path).await?;
            }
            Ok(Rc::new(MonoioFile { file }) as Rc<dyn WalFile>)
        })
    }
}

/// Up to `len` bytes of `path` from `offset` through monoio (io_uring where available):
/// the shard's loop goes on while the read is in flight.
pub async fn read_range(path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let file = monoio::fs::File::open(path).await?;
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let mut result = Ok(());
    while out.len() < len {
        let wanted = len - out.len();
        let (read, buffer) = file
            .read_at(Vec::with_capacity(wanted), offset + out.len() as u64)
            .await;
        match read {
            Ok(0) => break,
            // Nearly always one read does it, and its buffer is the result.
            Ok(_) if out.is_empty() => out = buffer,
            Ok(_) => out.extend_from_slice(&buffer),
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    file.close().await?;
    result.map(|()| out)
}

/// fsync of the directory holding `path`, so a newly created file survives a crash.
async fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir: PathBuf = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir_file = monoio::fs::File::open(&dir).await?;
    let result = dir_file.sync_all().await;
    dir_file.close().await?;
    result
}

/// A segment file opened through monoio.
struct MonoioFile {
    file: monoio::fs::File,
}

impl WalFile for MonoioFile {
    fn write_all_at(
        &self,
        buffer: Vec<u8>,
        offset: u64,
    ) -> LocalBoxFuture<'_, (io::Result<()>, Vec<u8>)> {
        Box::pin(self.file.write_all_at(buffer, offset))
    }

    fn sync_data(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        Box::pin(self.file.sync_data())
    }
}
