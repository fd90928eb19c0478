//! A file written once, front to back, around the page cache: [`DirectFile`], what
//! [`StdFileSystem`](super::StdFileSystem) gives a sealed file
//! ([`FileSystem::create_new_sequential`](super::FileSystem::create_new_sequential)).
//!
//! A flush writes every byte of a sealed file once and syncs it; nothing reads it back
//! until a query maps it. Written through the page cache, each of those bytes is first
//! copied into fresh page-cache pages (allocated, charged, put on the LRU, written back
//! at the fdatasync). A profile of the standard workload put that copy at 8 % of the
//! server's CPU, more than any encoder. With `O_DIRECT` the disk reads the bytes from the
//! writer's own buffer, reused for the whole file.
//!
//! ```text
//!  write ──► aligned buffer (1 MiB) ──full──► pwrite, O_DIRECT fd, aligned offset
//!  flush / sync_data ──► aligned prefix as above; the tail (< 4 KiB) ──► pwrite, buffered fd
//!  sync_data ──► fdatasync (the inode's data and length, whichever fd wrote them)
//! ```
//!
//! The file is created with an ordinary descriptor (`create_new`'s semantics exactly),
//! then opened a second time with `O_DIRECT`. Where the file system refuses `O_DIRECT`
//! (at that open, or at a write: `EINVAL`), the buffer is written through the ordinary
//! descriptor instead: the same bytes, through the page cache. Once a tail has been
//! written (by `flush`), later writes go through the ordinary descriptor too, since the
//! file's end is no longer aligned. Either way writes are gathered in the buffer: the
//! sealed-file writer hands over each block as it encodes it, with no buffer of its own
//! ([`FileSystem::create_new_sequential`](super::FileSystem::create_new_sequential)).
//!
//! What this moves: a query of a file just flushed reads it from the disk, not from the
//! page cache (one read per page, the first time).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::WritableFile;

/// The alignment `O_DIRECT` needs of the buffer's address, of each write's length and of
/// its file offset (the page size: a multiple of every common logical block size).
const ALIGN: usize = 4096;

/// Bytes gathered before a direct write.
const BUFFER_BYTES: usize = 1 << 20;

/// A file written front to back with `O_DIRECT` where the file system allows it.
pub(super) struct DirectFile {
    /// The descriptor `create_new` opened: the tail's writes, the fallback, and fsync.
    file: File,
    /// The same file opened with `O_DIRECT`; `None` once the buffer goes through `file`.
    direct: Option<File>,
    /// Holds the aligned buffer: `storage[start..start + BUFFER_BYTES]`. Never resized.
    storage: Vec<u8>,
    start: usize,
    /// Bytes in the buffer.
    len: usize,
    /// Bytes written to the file: the offset of the next write.
    offset: u64,
}

impl DirectFile {
    /// Creates `path`; fails with `AlreadyExists` if it exists.
    pub(super) fn create_new(path: &Path) -> io::Result<DirectFile> {
        DirectFile::create(path, true)
    }

    /// [`DirectFile::create_new`]; with `try_direct` false, as where the file system
    /// refuses `O_DIRECT`.
    fn create(path: &Path, try_direct: bool) -> io::Result<DirectFile> {
        let file = File::options().write(true).create_new(true).open(path)?;
        let opened = try_direct.then(|| {
            File::options()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
        });
        let direct = match opened {
            Some(Ok(direct)) => Some(direct),
            Some(Err(e)) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
            Some(Err(_)) | None => None,
        };
        // Also where every write goes through `file`: the buffer gathers them either way.
        let storage = vec![0; BUFFER_BYTES + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Ok(DirectFile {
            file,
            direct,
            storage,
            start,
            len: 0,
            offset: 0,
        })
    }

    /// Whether writes still bypass the page cache.
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    fn buffer(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// Writes the buffer's first `bytes` (a multiple of [`ALIGN`]) with `O_DIRECT`, and
    /// keeps the rest at the buffer's start. On `EINVAL` (the file system or this offset
    /// refuses direct I/O), or with no `O_DIRECT` descriptor at all, writes the whole
    /// buffer through the ordinary descriptor, where later writes stay.
    fn write_direct(&mut self, bytes: usize) -> io::Result<()> {
        debug_assert_eq!(bytes % ALIGN, 0);
        let mut written = 0;
        while written < bytes {
            let Some(direct) = &self.direct else {
                break;
            };
            let chunk = &self.storage[self.start + written..self.start + bytes];
            match direct.write_at(chunk, self.offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                Err(e) => {
                    self.consume(written);
                    return Err(e);
                }
            }
        }
        self.consume(written);
        if self.direct.is_none() {
            self.write_buffered_all()?;
        }
        Ok(())
    }

    /// Drops the buffer's first `bytes` (written).
    fn consume(&mut self, bytes: usize) {
        let range = self.start + bytes..self.start + self.len;
        self.storage.copy_within(range, self.start);
        self.len -= bytes;
    }

    /// Writes the whole buffer through the ordinary descriptor.
    fn write_buffered_all(&mut self) -> io::Result<()> {
        let offset = self.offset;
        self.file.write_all_at(self.buffer(), offset)?;
        self.offset += self.len as u64;
        self.len = 0;
        Ok(())
    }

    /// Writes everything buffered: the aligned prefix directly, the tail through the
    /// ordinary descriptor (after which every write goes there).
    fn write_out(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        if self.direct.is_some() {
            let aligned = self.len / ALIGN * ALIGN;
            if aligned > 0 {
                self.write_direct(aligned)?;
            }
            self.direct = None;
        }
        self.write_buffered_all()
    }
}

impl Write for DirectFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // A full buffer is written before this call's bytes are taken, so an error
        // leaves them unwritten, as `Write` promises.
        if self.len == BUFFER_BYTES {
            self.write_direct(BUFFER_BYTES)?;
        }
        let n = bytes.len().min(BUFFER_BYTES - self.len);
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()
    }
}

impl WritableFile for DirectFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ at every offset, so a misplaced write shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    fn write_in_pieces(file: &mut DirectFile, bytes: &[u8], pieces: &[usize]) {
        let mut at = 0;
        for &piece in pieces.iter().cycle() {
            if at == bytes.len() {
                break;
            }
            let end = at.saturating_add(piece).min(bytes.len());
            file.write_all(&bytes[at..end]).unwrap();
            at = end;
        }
    }

    #[test]
    fn writes_land_where_written_across_buffer_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len, pieces) in [
            ("empty", 0, vec![1]),
            ("small", 100, vec![7]),
            ("one_page", ALIGN, vec![ALIGN]),
            ("buffer", BUFFER_BYTES, vec![65_536]),
            ("buffer_and_tail", BUFFER_BYTES + 13, vec![333_333]),
            (
                "several",
                3 * BUFFER_BYTES + ALIGN + 1,
                vec![1, 4095, 1 << 20, 777_777],
            ),
            ("one_big_write", 2 * BUFFER_BYTES + 5, vec![usize::MAX]),
        ] {
            let path = dir.path().join(name);
            let bytes = pattern(len);
            let mut file = DirectFile::create_new(&path).unwrap();
            write_in_pieces(&mut file, &bytes, &pieces);
            file.sync_data().unwrap();
            drop(file);
            assert!(std::fs::read(&path).unwrap() == bytes, "{name}");
        }
    }

    /// Without direct I/O the buffer still gathers the writes: the file grows a whole
    /// buffer at a time, then by the rest at the sync.
    #[test]
    fn without_direct_io_writes_are_gathered_then_go_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffered");
        let bytes = pattern(2 * BUFFER_BYTES + 7);
        let mut file = DirectFile::create(&path, false).unwrap();
        assert!(!file.is_direct());
        let length = || std::fs::metadata(&path).unwrap().len();
        write_in_pieces(&mut file, &bytes[..BUFFER_BYTES], &[1, 4093, 65_535]);
        assert_eq!(
            length(),
            0,
            "a buffer's worth of small writes stays gathered"
        );
        write_in_pieces(&mut file, &bytes[BUFFER_BYTES..], &[1, 65_535, 1 << 20]);
        assert_eq!(length(), 2 * BUFFER_BYTES as u64);
        file.sync_data().unwrap();
        assert!(std::fs::read(&path).unwrap() == bytes);
    }

    #[test]
    fn a_flush_writes_the_tail_and_later_writes_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flushed");
        let bytes = pattern(2 * BUFFER_BYTES + 3 * ALIGN + 17);
        let mut file = DirectFile::create_new(&path).unwrap();
        file.write_all(&bytes[..BUFFER_BYTES + 100]).unwrap();
        file.flush().unwrap();
        assert!(!file.is_direct());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            BUFFER_BYTES as u64 + 100
        );
        file.write_all(&bytes[BUFFER_BYTES + 100..]).unwrap();
        file.sync_data().unwrap();
        assert!(std::fs::read(&path).unwrap() == bytes);
    }

    #[test]
    fn an_existing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exists");
        std::fs::write(&path, b"old").unwrap();
        let err = DirectFile::create_new(&path).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    /// On a file system that refuses `O_DIRECT` (tmpfs before Linux 6.6) the file is
    /// written through the page cache; where it is allowed, directly. Either way, the
    /// same bytes.
    #[test]
    fn shared_memory_files_are_written_either_way() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        let path = dir.path().join("shm");
        let bytes = pattern(BUFFER_BYTES + ALIGN + 9);
        let mut file = DirectFile::create_new(&path).unwrap();
        file.write_all(&bytes).unwrap();
        file.sync_data().unwrap();
        assert!(std::fs::read(&path).unwrap() == bytes);
    }
}
