//! The seam between the engine and the files it writes off the WAL: sealed files, MANIFEST,
//! MODS, the removal of replaced files, TTL expiry, a received snapshot
//! (`transfer::SnapshotWriter`) and a snapshot install (its staging directory and
//! `INSTALL` marker). The node crate's journal (the ConfigNode's state and each
//! single-replica SchemaRegion) writes through it too.
//!
//! ```text
//!  region (shard) ── plans ──► background pool ──► FileSystem ──► StdFileSystem (std::fs)
//!  Region::open ── manifest, MODS, orphans ──────►     │       └─► FaultyFileSystem (tests)
//!                                                      ▼
//!                                       sealed/*.tsf, MANIFEST(.tmp), MODS(.tmp)
//! ```
//!
//! Every create, write, fsync, rename, remove, read and listing of those files goes
//! through one [`FileSystem`], chosen when the region is opened
//! (`RegionConfig::file_system`; `None` is [`StdFileSystem`]). The WAL keeps its own
//! seam (`wal::WalStorage`, io_uring, simulated by `wal::MemoryStorage`); sealed files
//! are written with `O_DIRECT` where the file system allows it
//! ([`FileSystem::create_new_sequential`], module `direct`: a flush's bytes skip the page
//! cache) and read through `mmap` of the real file, which is why the fault-injecting
//! implementation ([`faulty::FaultyFileSystem`]) wraps a real directory instead of
//! holding files in memory.
//!
//! Why not the consensus crate's `io::Disk`: it names files in one flat directory, is
//! single-threaded (`&mut self`) and holds its simulated files in memory; the engine
//! writes in two directories (the region's and `sealed/`) from pool threads and maps its
//! sealed files, so a small path-based, `Send + Sync` trait fits it without an adapter.
//!
//! The durability contract is POSIX's (the same as `io::Disk`'s): data written to a file
//! survives a crash only after [`WritableFile::sync_data`]; a create, rename or remove
//! only after [`FileSystem::sync_dir`] of its directory. A failed fsync may have lost the
//! data for good: the region never retries one, it turns read-only.

mod direct;
pub mod faulty;

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// A file opened for writing by [`FileSystem::create_new`] or [`FileSystem::create`].
/// Owned by one background job at a time.
pub trait WritableFile: Write + Send {
    /// fdatasync: makes the data written so far (and the length) durable.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The file operations the engine performs on sealed files, MANIFEST and MODS. Shared by
/// the shard that owns a region and the pool threads that run its jobs (`Send + Sync`).
pub trait FileSystem: Send + Sync + std::fmt::Debug {
    /// Creates `path` for writing; fails with `AlreadyExists` if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Creates `path` for a file written once, front to back, synced, then only read (a
    /// sealed file): its bytes need not pass through the page cache. Fails with
    /// `AlreadyExists` if it exists. The file gathers what is written in a buffer of its
    /// own, so its writer writes blocks of any size with none in front of it; they may stay
    /// there until `flush` or `sync_data`. The default is [`FileSystem::create_new`]'s
    /// file behind a buffer of [`SEQUENTIAL_BUFFER_BYTES`].
    fn create_new_sequential(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = self.create_new(path)?;
        Ok(Box::new(io::BufWriter::with_capacity(
            SEQUENTIAL_BUFFER_BYTES,
            file,
        )))
    }
    /// Creates `path` for writing, truncating it if it exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens the existing file `path` for writing at its end (a journal's log).
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Cuts the existing file `path` to `bytes` and makes that length durable (a
    /// journal dropping a torn tail).
    fn truncate(&self, path: &Path, bytes: u64) -> io::Result<()>;
    /// The whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The file's length in bytes (checked against a limit before a [`FileSystem::read`]).
    fn file_bytes(&self, path: &Path) -> io::Result<u64>;
    /// Whether `path` exists (without following a symbolic link).
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// The names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Deletes a directory and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// A second name `to` for the file `from` (a snapshot shares sealed files this way).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync of a directory: makes creates, renames and removes inside it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// What the default [`FileSystem::create_new_sequential`] gathers before it writes: a
/// write call per MiB of a sealed file.
pub const SEQUENTIAL_BUFFER_BYTES: usize = 1 << 20;

/// A file whose writes are gathered in a buffer (the default
/// [`FileSystem::create_new_sequential`]): `sync_data` writes the buffer out first.
impl WritableFile for io::BufWriter<Box<dyn WritableFile>> {
    fn sync_data(&mut self) -> io::Result<()> {
        self.flush()?;
        self.get_mut().sync_data()
    }
}

/// The real file system: `std::fs`, blocking (called on the background pool, and by
/// `Region::open`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFileSystem;

/// The production choice, shared.
pub fn std_file_system() -> Arc<dyn FileSystem> {
    Arc::new(StdFileSystem)
}

struct StdFile(std::fs::File);

impl Write for StdFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl WritableFile for StdFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl FileSystem for StdFileSystem {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    /// `O_DIRECT` where the file system allows it (module `direct`).
    fn create_new_sequential(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(direct::DirectFile::create_new(path)?))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(StdFile(std::fs::File::create(path)?)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = std::fs::File::options().append(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn truncate(&self, path: &Path, bytes: u64) -> io::Result<()> {
        let file = std::fs::File::options().write(true).open(path)?;
        file.set_len(bytes)?;
        file.sync_all()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn file_bytes(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::faulty::{FaultyFileSystem, OperationKind};
    use super::*;

    /// A file system without a sequential file of its own gathers a sealed file's small
    /// writes: a write call per [`SEQUENTIAL_BUFFER_BYTES`], and the bytes all there after
    /// the sync.
    #[test]
    fn the_default_sequential_file_gathers_small_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file_system = FaultyFileSystem::new(&dir.path().join("backup")).unwrap();
        let path = dir.path().join("sealed");
        let bytes: Vec<u8> = (0..SEQUENTIAL_BUFFER_BYTES * 2 + 100)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let mut file = file_system.create_new_sequential(&path).unwrap();
        for block in bytes.chunks(1000) {
            file.write_all(block).unwrap();
        }
        file.sync_data().unwrap();
        let kinds: Vec<OperationKind> = file_system
            .operations()
            .into_iter()
            .map(|(kind, _)| kind)
            .filter(|kind| *kind != OperationKind::Create)
            .collect();
        assert_eq!(
            kinds,
            [
                OperationKind::Write,
                OperationKind::Write,
                OperationKind::Write,
                OperationKind::SyncData
            ]
        );
        assert!(std::fs::read(&path).unwrap() == bytes);
    }
}
