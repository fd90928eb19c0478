//! The real `Disk` on `std::fs`, for tools, tests and the bounded I/O pool.
//!
//! It blocks: never call it from a shard's io_uring loop directly (issue 8 item 5 puts such
//! calls on io_uring or a small bounded pool).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::disk::{Disk, DiskError, DiskOp, validate_file_name};

/// Files in one existing directory.
#[derive(Debug)]
pub struct StdDisk {
    dir: PathBuf,
}

impl StdDisk {
    /// A disk over `dir`, which must exist.
    pub fn new(dir: impl AsRef<Path>) -> StdDisk {
        StdDisk {
            dir: dir.as_ref().to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf, DiskError> {
        validate_file_name(name)?;
        Ok(self.dir.join(name))
    }

    fn open(&self, op: DiskOp, name: &str, write: bool) -> Result<File, DiskError> {
        let path = self.path(name)?;
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
            .map_err(|source| DiskError::from_io(op, name, source))
    }
}

impl Disk for StdDisk {
    fn create(&mut self, name: &str) -> Result<(), DiskError> {
        let path = self.path(name)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop)
            .map_err(|source| DiskError::from_io(DiskOp::Create, name, source))
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<u64, DiskError> {
        let file = self.open(DiskOp::Append, name, true)?;
        let io = |source| DiskError::from_io(DiskOp::Append, name, source);
        let offset = file.metadata().map_err(io)?.len();
        file.write_all_at(data, offset).map_err(io)?;
        Ok(offset)
    }

    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let file = self.open(DiskOp::WriteAt, name, true)?;
        file.write_all_at(data, offset)
            .map_err(|source| DiskError::from_io(DiskOp::WriteAt, name, source))
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        let mut file = self.open(DiskOp::Read, name, false)?;
        let io = |source| DiskError::from_io(DiskOp::Read, name, source);
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut data = Vec::new();
        file.take(len as u64).read_to_end(&mut data).map_err(io)?;
        Ok(data)
    }

    fn read_all(&self, name: &str) -> Result<Vec<u8>, DiskError> {
        let path = self.path(name)?;
        std::fs::read(path).map_err(|source| DiskError::from_io(DiskOp::Read, name, source))
    }

    fn len(&self, name: &str) -> Result<u64, DiskError> {
        let path = self.path(name)?;
        std::fs::metadata(path)
            .map(|metadata| metadata.len())
            .map_err(|source| DiskError::from_io(DiskOp::Len, name, source))
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), DiskError> {
        let file = self.open(DiskOp::Truncate, name, true)?;
        file.set_len(len)
            .map_err(|source| DiskError::from_io(DiskOp::Truncate, name, source))
    }

    fn sync(&mut self, name: &str) -> Result<(), DiskError> {
        let file = self.open(DiskOp::Sync, name, true)?;
        file.sync_data()
            .map_err(|source| DiskError::from_io(DiskOp::Sync, name, source))
    }

    fn sync_dir(&mut self) -> Result<(), DiskError> {
        let name = self.dir.display().to_string();
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| DiskError::from_io(DiskOp::SyncDir, &name, source))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        let from_path = self.path(from)?;
        let to_path = self.path(to)?;
        std::fs::rename(from_path, to_path)
            .map_err(|source| DiskError::from_io(DiskOp::Rename, from, source))
    }

    fn remove(&mut self, name: &str) -> Result<(), DiskError> {
        let path = self.path(name)?;
        std::fs::remove_file(path)
            .map_err(|source| DiskError::from_io(DiskOp::Remove, name, source))
    }

    fn list(&self) -> Result<Vec<String>, DiskError> {
        let name = self.dir.display().to_string();
        let io = |source| DiskError::from_io(DiskOp::List, &name, source);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.file_type().map_err(io)?.is_file()
                && let Ok(file_name) = entry.file_name().into_string()
            {
                names.push(file_name);
            }
        }
        names.sort();
        Ok(names)
    }
}
