//! An in-memory `WalStorage` that counts operations and injects faults, for tests.
//!
//! Each file keeps two images: what the OS has (`contents`, every completed write) and
//! what a power loss would leave (`durable`, the contents as of the last fsync).
//! `crash` reverts every file to its durable image. Faults are armed one operation at a
//! time: a failing write, a torn write (a prefix reaches the file, then an error), a
//! failing fsync. Each I/O can also take a number of scheduler ticks, so tests can see
//! appends accumulate while a batch is in flight.
//!
//! Single-threaded like the WAL it serves; clone it to keep a handle to the same state.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::storage::{LocalBoxFuture, WalFile, WalStorage};

/// One in-memory file.
#[derive(Clone, Debug, Default)]
struct MemoryFile {
    contents: Vec<u8>,
    durable: Vec<u8>,
}

/// A fault to inject into the next matching operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next write fails before any byte reaches the file.
    WriteError,
    /// The next write stores only its first `bytes` bytes, then fails.
    TornWrite { bytes: usize },
    /// The next fsync fails (and, as on Linux, the unsynced data may be lost).
    SyncError,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, MemoryFile>,
    writes: u64,
    syncs: u64,
    bytes_written: u64,
    faults: Vec<Fault>,
    io_delay_ticks: u32,
    /// Writes are synchronous (`O_DSYNC`): a completed write is durable.
    durable_writes: bool,
}

/// The fault-injecting in-memory storage.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    state: Rc<RefCell<State>>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// Completed positional writes so far.
    pub fn writes(&self) -> u64 {
        self.state.borrow().writes
    }

    /// Completed fsyncs (of files) so far.
    pub fn syncs(&self) -> u64 {
        self.state.borrow().syncs
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.state.borrow().bytes_written
    }

    /// Arms a fault for the next matching operation; faults fire in the order armed.
    pub fn inject(&self, fault: Fault) {
        self.state.borrow_mut().faults.push(fault);
    }

    /// Makes every write and fsync take `ticks` scheduler ticks.
    pub fn set_io_delay_ticks(&self, ticks: u32) {
        self.state.borrow_mut().io_delay_ticks = ticks;
    }

    /// Makes writes synchronous, as a file opened with `O_DSYNC`: a write that completes is
    /// durable ([`WalFile::writes_are_durable`]); an armed [`Fault::SyncError`] then fails
    /// the next write after its bytes reached the file but before they were durable.
    pub fn set_durable_writes(&self, durable: bool) {
        self.state.borrow_mut().durable_writes = durable;
    }

    /// A power loss: every file goes back to what its last fsync made durable.
    pub fn crash(&self) {
        for file in self.state.borrow_mut().files.values_mut() {
            file.contents = file.durable.clone();
        }
    }

    /// The names of the files under `dir`, sorted.
    pub fn file_names(&self, dir: &Path) -> Vec<String> {
        self.list_dir(dir).unwrap_or_default()
    }

    /// A file's current contents.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.state
            .borrow()
            .files
            .get(path)
            .map(|file| file.contents.clone())
    }

    /// Replaces a file's contents, durably (to build damaged logs in tests).
    pub fn set_contents(&self, path: &Path, contents: Vec<u8>) {
        self.state.borrow_mut().files.insert(
            path.to_path_buf(),
            MemoryFile {
                contents: contents.clone(),
                durable: contents,
            },
        );
    }

    fn take_fault(&self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut state = self.state.borrow_mut();
        let position = state.faults.iter().position(matches)?;
        Some(state.faults.remove(position))
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl WalStorage for MemoryStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.borrow();
        Ok(state
            .files
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.contents(path).ok_or_else(|| not_found(path))
    }

    fn truncate_file(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        file.contents.truncate(len as usize);
        file.durable = file.contents.clone();
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.state
            .borrow_mut()
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn open_file<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn WalFile>>> {
        self.state
            .borrow_mut()
            .files
            .entry(path.to_path_buf())
            .or_default();
        let file: Rc<dyn WalFile> = Rc::new(MemoryFileHandle {
            storage: self.clone(),
            path: path.to_path_buf(),
        });
        Box::pin(async move { Ok(file) })
    }
}

/// An open in-memory file.
struct MemoryFileHandle {
    storage: MemoryStorage,
    path: PathBuf,
}

impl MemoryFileHandle {
    /// Runs `operation` on the file. A file removed while this handle was open is gone
    /// from the directory but, as on POSIX, the open handle still works: the operation
    /// succeeds on an unlinked copy that nothing can read any more.
    fn with_file<T>(&self, operation: impl FnOnce(&mut MemoryFile) -> T) -> io::Result<T> {
        let mut state = self.storage.state.borrow_mut();
        match state.files.get_mut(&self.path) {
            Some(file) => Ok(operation(file)),
            None => Ok(operation(&mut MemoryFile::default())),
        }
    }
}

impl WalFile for MemoryFileHandle {
    fn write_all_at(
        &self,
        whole: Vec<u8>,
        start: usize,
        offset: u64,
    ) -> LocalBoxFuture<'_, (io::Result<()>, Vec<u8>)> {
        Box::pin(async move {
            let buffer = &whole[start..];
            let delay_ticks = self.storage.state.borrow().io_delay_ticks;
            YieldTicks::new(delay_ticks).await;
            let durable_writes = self.storage.state.borrow().durable_writes;
            let fault = self.storage.take_fault(|fault| match fault {
                Fault::WriteError | Fault::TornWrite { .. } => true,
                // A synchronous write flushes, and reports the flush's failure.
                Fault::SyncError => durable_writes,
            });
            let stored = match fault {
                Some(Fault::WriteError) => 0,
                Some(Fault::TornWrite { bytes }) => bytes.min(buffer.len()),
                _ => buffer.len(),
            };
            let written = self.with_file(|file| {
                let at = offset as usize;
                if file.contents.len() < at + stored {
                    file.contents.resize(at + stored, 0);
                }
                file.contents[at..at + stored].copy_from_slice(&buffer[..stored]);
                if durable_writes && fault.is_none() {
                    if file.durable.len() < at + stored {
                        file.durable.resize(at + stored, 0);
                    }
                    file.durable[at..at + stored].copy_from_slice(&buffer[..stored]);
                }
            });
            if let Err(error) = written {
                return (Err(error), whole);
            }
            match fault {
                Some(Fault::SyncError) => {
                    return (Err(io::Error::other("injected fsync fault")), whole);
                }
                Some(_) => return (Err(io::Error::other("injected write fault")), whole),
                None => {}
            }
            let mut state = self.storage.state.borrow_mut();
            state.writes += 1;
            state.bytes_written += buffer.len() as u64;
            (Ok(()), whole)
        })
    }

    fn sync_data(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let delay_ticks = self.storage.state.borrow().io_delay_ticks;
            YieldTicks::new(delay_ticks).await;
            if self
                .storage
                .take_fault(|fault| *fault == Fault::SyncError)
                .is_some()
            {
                return Err(io::Error::other("injected fsync fault"));
            }
            self.with_file(|file| file.durable = file.contents.clone())?;
            self.storage.state.borrow_mut().syncs += 1;
            Ok(())
        })
    }

    fn writes_are_durable(&self) -> bool {
        self.storage.state.borrow().durable_writes
    }
}

/// Returns Pending `ticks` times (waking itself at once), so an operation spans that many
/// scheduler ticks.
struct YieldTicks {
    ticks_left: u32,
}

impl YieldTicks {
    fn new(ticks: u32) -> YieldTicks {
        YieldTicks { ticks_left: ticks }
    }
}

impl Future for YieldTicks {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.ticks_left == 0 {
            return Poll::Ready(());
        }
        self.ticks_left -= 1;
        context.waker().wake_by_ref();
        Poll::Pending
    }
}
