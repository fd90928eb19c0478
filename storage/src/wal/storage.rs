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

use super::format::{BLOCK_BYTES, aligned_position};

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
    /// Writes `buffer[start..]` at `offset`, returning the buffer for reuse.
    /// `buffer[..start]` is room the file may overwrite: the log leaves it so that a
    /// direct writer can put the first block's earlier bytes there and write in place.
    fn write_all_at(
        &self,
        buffer: Vec<u8>,
        start: usize,
        offset: u64,
    ) -> LocalBoxFuture<'_, (io::Result<()>, Vec<u8>)>;
    /// fdatasync.
    fn sync_data(&self) -> LocalBoxFuture<'_, io::Result<()>>;
    /// Whether a completed [`WalFile::write_all_at`] is already as durable as after an
    /// fdatasync (the file is written with `O_DSYNC`), so the log needs no fdatasync of its
    /// own in sync mode. May turn false (never true again) while the file is open.
    fn writes_are_durable(&self) -> bool {
        false
    }
    /// Waits for the I/O the file runs beside the log's writes (zeros written ahead of
    /// its end) to end. The log calls it before it lets go of the file, so nothing
    /// reaches the file once the log has moved on (a reopened log cuts its zeros off).
    fn settle(&self) -> LocalBoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The real storage: monoio files (io_uring) on the data path, `std::fs` for the rest.
#[derive(Clone, Copy, Debug)]
pub struct MonoioStorage {
    /// Write segments with `O_DIRECT` in whole aligned blocks ([`BLOCK_BYTES`]) where the
    /// file system allows it (buffered otherwise): the log's bytes go from the batch buffer
    /// to the device, with no copy into the page cache and no fresh page-cache memory
    /// for every megabyte logged.
    pub direct_io: bool,
    /// Open direct segments with `O_DSYNC` as well, so that each write is durable when it
    /// completes and no fdatasync follows it (the log's sync mode sets this). An fdatasync
    /// runs on an io_uring worker thread, which the kernel wakes and the shard then waits
    /// on; a synchronous direct write completes like any other write, its cache flush
    /// issued by the file system. Buffered segments (no direct I/O) are fdatasynced as before.
    pub synchronous_writes: bool,
    /// Zeros are written ahead of a direct segment's end no further than this offset: the
    /// segment size, past which the log begins a new segment (zeros beyond it would be
    /// written for nothing).
    pub zeros_ahead_limit: u64,
}

impl Default for MonoioStorage {
    fn default() -> Self {
        MonoioStorage {
            direct_io: true,
            synchronous_writes: true,
            zeros_ahead_limit: crate::config::WAL_SEGMENT_BYTES_DEFAULT,
        }
    }
}

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
            let synchronous = if self.synchronous_writes {
                libc::O_DSYNC
            } else {
                0
            };
            let direct = if self.direct_io {
                match open_segment(path, libc::O_DIRECT | synchronous, true).await {
                    Ok(file) => Some(file),
                    // The file system takes no direct I/O (EINVAL): buffered writes.
                    Err(error) if error.raw_os_error() == Some(libc::EINVAL) => None,
                    Err(error) => return Err(error),
                }
            } else {
                None
            };
            let (file, direct) = match direct {
                Some(file) => (file, Some(DirectState::default())),
                None => (open_segment(path, 0, true).await?, None),
            };
            let file = MonoioFile {
                durable_writes: std::cell::Cell::new(direct.is_some() && self.synchronous_writes),
                file: std::cell::RefCell::new(Rc::new(file)),
                path: path.to_path_buf(),
                direct: std::cell::RefCell::new(direct),
                zeros: std::cell::RefCell::new(ZerosAhead::default()),
                // Rounded up to a block; a limit too large to round is no limit.
                zeros_limit: self
                    .zeros_ahead_limit
                    .checked_next_multiple_of(BLOCK_BYTES as u64)
                    .unwrap_or(u64::MAX),
            };
            if !existed {
                sync_parent_dir(path).await?;
            }
            Ok(Rc::new(file) as Rc<dyn WalFile>)
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

/// Writes `buffer[start..]` at `offset` through the page cache.
async fn write_buffered(
    file: &monoio::fs::File,
    buffer: Vec<u8>,
    start: usize,
    offset: u64,
) -> (io::Result<()>, Vec<u8>) {
    let end = buffer.len();
    let (result, slice) = file
        .write_all_at(monoio::buf::IoBuf::slice(buffer, start..end), offset)
        .await;
    (result, slice.into_inner())
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

/// Opens a segment for writing with `flags` added, creating it if missing when `create`
/// (a second descriptor of an open segment does not: a segment deleted meanwhile gets no
/// new file in its place).
async fn open_segment(path: &Path, flags: i32, create: bool) -> io::Result<monoio::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    monoio::fs::OpenOptions::new()
        .write(true)
        .create(create)
        .custom_flags(flags)
        .open(path)
        .await
}

/// A segment file opened through monoio.
struct MonoioFile {
    /// Swapped for a buffered handle if a direct write is refused.
    file: std::cell::RefCell<Rc<monoio::fs::File>>,
    path: PathBuf,
    /// `Some` while writes are direct.
    direct: std::cell::RefCell<Option<DirectState>>,
    /// True while writes go through the direct handle opened with `O_DSYNC`.
    durable_writes: std::cell::Cell<bool>,
    zeros: std::cell::RefCell<ZerosAhead>,
    /// [`MonoioStorage::zeros_ahead_limit`], block-aligned.
    zeros_limit: u64,
}

/// What direct writes keep between calls (the commit task writes one batch at a time).
#[derive(Default)]
struct DirectState {
    /// The staging buffer, reused: `BLOCK_BYTES` spare so an aligned window always fits.
    staging: Vec<u8>,
    /// The file's bytes from the start of the block holding its end up to that end, as
    /// the last write left them (`None` until a write, or after a failed one: then they
    /// are read back from the file).
    tail: Option<(u64, Vec<u8>)>,
}

/// Zeros written ahead of a direct segment's end, beside the log's writes.
#[derive(Default)]
struct ZerosAhead {
    /// Zeros are durable in the file up to here (0: none written through this handle yet;
    /// `u64::MAX`: stopped, after a failure).
    durable_to: u64,
    /// The step being written.
    running: Option<ZeroStep>,
    /// The segment opened a second time for them: direct, without `O_DSYNC`, so that a
    /// step is one fdatasync however many writes it takes.
    file: Option<Rc<monoio::fs::File>>,
}

/// A step of zeros in flight over `[from, to)`: no write of the log may reach `from`
/// before it has ended, or its zeros could land over the log's bytes.
struct ZeroStep {
    from: u64,
    to: u64,
    task: monoio::task::JoinHandle<io::Result<()>>,
}

/// The most zeros written ahead of a direct segment's end in one step, so that most appends
/// land inside the file. A step writes as many zeros as the file already holds, up to this:
/// a small segment holds at most twice its records, a large one grows 8 MiB at a time.
///
/// Why: an fdatasync after a write that grows the file must also write the inode (its new
/// size), a second I/O and the file system's work each time; after a write inside the file,
/// over blocks already written, it writes only the data. Profiled with synchronous clients
/// (`iotdb-perf --pipeline 1`), writing inodes was ~8 % of the server's CPU; writing zeros
/// ahead cut the server's CPU by about a quarter. Recovery reads the zeros past a
/// segment's last record as its clean end (`format::SEGMENT_FLAG_ZEROS_AHEAD`), and
/// opening the log cuts them off its last segment.
///
/// A step runs beside the log's writes (a task of the shard), begun once the log has used
/// half of the zeros ahead of it, so a commit waits for zeros only when the log outruns
/// them. Written in front of the next commit, the steps held every commit of the shard
/// behind 8 MiB of zero writes, each an `O_DSYNC` write with its own cache flush: with
/// pipelined clients, the write phase took a quarter longer than with no zeros at all.
const ZEROS_AHEAD_BYTES: u64 = 8 << 20;

/// A block-aligned megabyte of zeros, the source of every zero write.
#[repr(C, align(4096))]
struct AlignedZeros([u8; ZEROS_WRITE_BYTES]);

const ZEROS_WRITE_BYTES: usize = 1 << 20;

static ZEROS: AlignedZeros = AlignedZeros([0; ZEROS_WRITE_BYTES]);

impl MonoioFile {
    /// Writes `buffer[start..]` at `offset` as whole aligned blocks: the bytes before
    /// `offset` in its block (the previous write's tail, rewritten unchanged: a torn
    /// rewrite leaves each sector old or new, and both hold the same bytes there), then
    /// the data, then zeros to the block's end. Where the log left room before the data
    /// with the block's start at an aligned address (`log::batch_buffer`), those bytes go
    /// into the room and the buffer is written where it lies; otherwise into the staging
    /// buffer with a copy of the data.
    async fn write_direct(
        &self,
        mut state: DirectState,
        mut buffer: Vec<u8>,
        start: usize,
        offset: u64,
    ) -> (io::Result<DirectState>, Vec<u8>) {
        let block = BLOCK_BYTES as u64;
        let block_start = offset - offset % block;
        let prefix_len = (offset - block_start) as usize;
        let tail = state.tail.take();
        let prefix = match tail {
            Some((at, bytes)) if at == block_start && bytes.len() == prefix_len => bytes,
            _ if prefix_len == 0 => Vec::new(),
            _ => match read_range(&self.path, block_start, prefix_len).await {
                Ok(bytes) if bytes.len() == prefix_len => bytes,
                Ok(bytes) => {
                    let error = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} ends at byte {}, before a write at {offset}",
                            self.path.display(),
                            block_start + bytes.len() as u64
                        ),
                    );
                    return (Err(error), buffer);
                }
                Err(error) => return (Err(error), buffer),
            },
        };
        let data_len = buffer.len() - start;
        let end = offset + data_len as u64;
        let padded = (prefix_len + data_len).next_multiple_of(BLOCK_BYTES);
        let write_end = block_start + padded as u64;
        let file = self.file.borrow().clone();
        // Where the window `[block_start, write_end)` of the file lies in the buffer
        // written, and that buffer (the batch's own, or the staging buffer).
        let in_place = start.checked_sub(prefix_len).filter(|&window| {
            (buffer.as_ptr() as usize + window).is_multiple_of(BLOCK_BYTES)
                && buffer.capacity() >= window + padded
        });
        let (to_write, window, batch) = if let Some(window) = in_place {
            buffer[window..start].copy_from_slice(&prefix);
            // Zeros to the block's end, inside the capacity: the buffer does not move.
            buffer.resize(window + padded, 0);
            (buffer, window, None)
        } else {
            let mut staging = std::mem::take(&mut state.staging);
            staging.clear();
            staging.reserve(padded + BLOCK_BYTES);
            // The aligned window inside the buffer (its allocation moves with neither the
            // buffer's moves nor the kernel's use of it).
            let lead = aligned_position(staging.as_ptr() as usize, 0);
            staging.resize(lead, 0);
            staging.extend_from_slice(&prefix);
            staging.extend_from_slice(&buffer[start..]);
            staging.resize(lead + padded, 0);
            (staging, lead, Some(buffer))
        };
        let (result, slice) = file
            .write_all_at(
                monoio::buf::IoBuf::slice(to_write, window..window + padded),
                block_start,
            )
            .await;
        let written = slice.into_inner();
        // The bytes of the block holding the end, as the file now has them: the next
        // write's prefix. The prefix's buffer holds them: no allocation per write.
        let tail_start = end - end % block;
        let from = window + (tail_start - block_start) as usize;
        let to = window + (end - block_start) as usize;
        let mut tail = prefix;
        tail.clear();
        tail.extend_from_slice(&written[from..to]);
        let buffer = match batch {
            None => {
                // The batch as it was handed over, without the zeros after it (a buffered
                // retry of a refused direct write writes `buffer[start..]`).
                let mut written = written;
                written.truncate(start + data_len);
                written
            }
            Some(batch) => {
                // Kept like the log's batch buffers: not after one huge record grew it.
                if written.capacity() <= crate::config::WAL_BATCH_BYTES_MAX + 2 * BLOCK_BYTES {
                    state.staging = written;
                }
                batch
            }
        };
        if let Err(error) = result {
            return (Err(error), buffer);
        }
        state.tail = Some((tail_start, tail));
        // Zeros ahead, after the data so a segment's header always precedes them.
        self.zeros_after_write(write_end).await;
        (Ok(state), buffer)
    }

    /// Before a write whose last block ends at `end`: waits for a step of zeros that
    /// reaches into it.
    async fn zeros_before_write(&self, end: u64) {
        self.end_zero_step_if(|step| step.from < end).await;
    }

    /// Waits for the running step of zeros, if `condition` holds for it, and records how it
    /// ended.
    async fn end_zero_step_if(&self, condition: impl Fn(&ZeroStep) -> bool) {
        let step = {
            let mut zeros = self.zeros.borrow_mut();
            match &zeros.running {
                Some(step) if condition(step) => zeros.running.take(),
                _ => None,
            }
        };
        if let Some(step) = step {
            let to = step.to;
            self.zero_step_ended(to, step.task.await);
        }
    }

    /// After a direct write whose last block ends at `end`: collects a step that has
    /// ended, and begins the next once the zeros ahead of `end` are fewer than half a
    /// step. Zeros are only a saving: the data is written whatever happens here, so a
    /// failure (a disk without room for them) stops them for this file instead of
    /// failing a write.
    async fn zeros_after_write(&self, end: u64) {
        self.end_zero_step_if(|step| step.task.is_finished()).await;
        let (from, to, file) = {
            let zeros = self.zeros.borrow();
            if zeros.running.is_some() || zeros.durable_to == u64::MAX {
                return;
            }
            if zeros.durable_to.saturating_sub(end) >= zero_step(end) / 2 {
                return;
            }
            let from = zeros.durable_to.max(end);
            let to = (from + zero_step(from)).min(self.zeros_limit);
            if to <= from {
                return;
            }
            (from, to, zeros.file.clone())
        };
        let file = match file {
            Some(file) => file,
            None => match open_segment(&self.path, libc::O_DIRECT, false).await {
                Ok(file) => {
                    let file = Rc::new(file);
                    self.zeros.borrow_mut().file = Some(file.clone());
                    file
                }
                Err(error) => {
                    self.zero_step_ended(from, Err(error));
                    return;
                }
            },
        };
        let task = monoio::spawn(async move {
            write_zeros(&file, from, to).await?;
            file.sync_data().await
        });
        self.zeros.borrow_mut().running = Some(ZeroStep { from, to, task });
    }

    fn zero_step_ended(&self, to: u64, result: io::Result<()>) {
        let mut zeros = self.zeros.borrow_mut();
        match result {
            Ok(()) => zeros.durable_to = zeros.durable_to.max(to),
            Err(error) => {
                tracing::debug!(path = %self.path.display(), %error, "no more WAL zeros ahead for this segment");
                zeros.durable_to = u64::MAX;
            }
        }
    }
}

/// The zeros a step writes ahead of `end`: as many as the file holds, at most
/// [`ZEROS_AHEAD_BYTES`].
fn zero_step(end: u64) -> u64 {
    end.min(ZEROS_AHEAD_BYTES)
}

/// Writes zeros over `[from, to)` of `file`, both block-aligned, a megabyte at a time.
async fn write_zeros(file: &monoio::fs::File, from: u64, to: u64) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let len =
            usize::try_from(to - at).map_or(ZEROS_WRITE_BYTES, |left| left.min(ZEROS_WRITE_BYTES));
        let zeros: &'static [u8] = &ZEROS.0[..len];
        let (result, _) = file.write_all_at(zeros, at).await;
        result?;
        at += len as u64;
    }
    Ok(())
}

impl WalFile for MonoioFile {
    fn write_all_at(
        &self,
        buffer: Vec<u8>,
        start: usize,
        offset: u64,
    ) -> LocalBoxFuture<'_, (io::Result<()>, Vec<u8>)> {
        Box::pin(async move {
            // The last block this write may touch: a direct write pads to its end.
            let end = (offset + (buffer.len() - start) as u64).next_multiple_of(BLOCK_BYTES as u64);
            self.zeros_before_write(end).await;
            let Some(state) = self.direct.borrow_mut().take() else {
                let file = self.file.borrow().clone();
                return write_buffered(&file, buffer, start, offset).await;
            };
            let (result, buffer) = self.write_direct(state, buffer, start, offset).await;
            match result {
                Ok(state) => {
                    *self.direct.borrow_mut() = Some(state);
                    (Ok(()), buffer)
                }
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    // The device refuses this alignment: nothing was written; go on
                    // buffered from here (`direct` stays `None`).
                    tracing::warn!(path = %self.path.display(), %error, "direct WAL writes refused; writing through the page cache");
                    self.durable_writes.set(false);
                    match open_segment(&self.path, 0, true).await {
                        Ok(file) => {
                            // Later writes and syncs use the buffered handle.
                            let file = Rc::new(file);
                            *self.file.borrow_mut() = file.clone();
                            write_buffered(&file, buffer, start, offset).await
                        }
                        Err(error) => (Err(error), buffer),
                    }
                }
                Err(error) => {
                    // The tail is unknown after a failed write: read back next time.
                    *self.direct.borrow_mut() = Some(DirectState::default());
                    (Err(error), buffer)
                }
            }
        })
    }

    fn sync_data(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        let file = self.file.borrow().clone();
        Box::pin(async move { file.sync_data().await })
    }

    fn writes_are_durable(&self) -> bool {
        self.durable_writes.get()
    }

    fn settle(&self) -> LocalBoxFuture<'_, ()> {
        Box::pin(self.end_zero_step_if(|_| true))
    }
}
