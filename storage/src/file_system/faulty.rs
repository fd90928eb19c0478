//! A [`FileSystem`] for tests that injects faults into a real directory: ENOSPC, EIO (on
//! an fsync or any other operation), short writes, and a crash after any operation
//! followed by a power loss that drops what was not made durable.
//!
//! It performs every operation with `std::fs` (sealed files are mapped, so they must be
//! real files), counts them, and keeps what a power loss may undo under POSIX's rules
//! (the module doc of [`crate::file_system`]):
//!
//! - per file written through it, the length made durable by its last successful
//!   `sync_data` (0 for a file it created): a power loss truncates the file to it;
//! - per directory, the creates, renames and removes since its last successful
//!   `sync_dir`, oldest first: a power loss undoes them newest first (a replaced file
//!   is kept as a hard link, a removed file or directory is moved, into the backup
//!   directory until then).
//!
//! Truncating to the synced length is the worst case a crash allows (POSIX may keep any
//! prefix), so a test that passes here passes for every prefix the disk could keep.
//! Files it did not write (the WAL, files that existed before) are taken as durable.
//!
//! Faults are armed with [`FaultyFileSystem::inject`]: the `nth` operation (counted from
//! the injection, 0 first) that matches the fault's operation kind and path fragment
//! fails. After a [`FaultKind::Crash`], that operation and every later one fail with EIO
//! until [`FaultyFileSystem::power_loss`] rewinds the directory.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FileSystem, WritableFile};

/// The kinds of operation the seam performs (a write is one `Write::write` call: a sealed
/// file's are gathered up to 1 MiB per call, `create_new_sequential`'s default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Create,
    /// Opening an existing file to append to it.
    OpenAppend,
    Write,
    /// Cutting a file short (and syncing its new length).
    Truncate,
    SyncData,
    Read,
    /// Asking a file's length.
    FileBytes,
    Exists,
    List,
    CreateDir,
    Rename,
    Remove,
    RemoveDir,
    HardLink,
    SyncDir,
}

/// What an injected fault does to the operation it meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// ENOSPC; nothing of the operation happens.
    NoSpace,
    /// EIO; nothing of the operation happens (an fsync's data stays not durable).
    Io,
    /// On a write: the first half of the bytes reach the file, then ENOSPC. On any other
    /// operation: as [`FaultKind::Io`].
    ShortWrite,
    /// The process stops here: this operation and every later one fail with EIO, until
    /// [`FaultyFileSystem::power_loss`].
    Crash,
}

/// One armed fault: the `nth` matching operation after the injection fails with `kind`.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only operations of this kind count (`None`: every kind).
    pub operation: Option<OperationKind>,
    /// Only operations on a path containing this count (`None`: every path).
    pub path_contains: Option<String>,
    /// How many matching operations pass before the one that fails.
    pub nth: u64,
    pub kind: FaultKind,
}

impl Fault {
    /// The `nth` operation from now, of any kind on any path, fails with `kind`.
    pub fn at(nth: u64, kind: FaultKind) -> Fault {
        Fault {
            operation: None,
            path_contains: None,
            nth,
            kind,
        }
    }

    /// The first operation of `operation` on a path containing `path_contains` fails.
    pub fn first(operation: OperationKind, path_contains: &str, kind: FaultKind) -> Fault {
        Fault {
            operation: Some(operation),
            path_contains: Some(path_contains.to_string()),
            nth: 0,
            kind,
        }
    }

    fn matches(&self, operation: OperationKind, path: &Path) -> bool {
        self.operation.is_none_or(|o| o == operation)
            && self
                .path_contains
                .as_ref()
                .is_none_or(|part| path.to_string_lossy().contains(part.as_str()))
    }
}

/// One fault to try in a test that faults every operation index of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultCase {
    /// The operation index (counted from the injection) that fails.
    pub index: usize,
    pub kind: FaultKind,
    /// Whether a power loss follows (else the process stops and the OS keeps everything).
    pub power_loss: bool,
}

/// The faults to try at `count` operation indexes: a crash and a power loss at each, and
/// with `other_kinds` one of ENOSPC, EIO and a short write (rotating) followed by a
/// process stop. With `FILE_FAULT_KINDS=all` in the environment (long runs): every kind
/// at every index, each both ways.
pub fn fault_cases(count: usize, other_kinds: bool) -> Vec<FaultCase> {
    let all = std::env::var("FILE_FAULT_KINDS").is_ok_and(|v| v == "all");
    let others = [FaultKind::NoSpace, FaultKind::Io, FaultKind::ShortWrite];
    let case = |index, kind, power_loss| FaultCase {
        index,
        kind,
        power_loss,
    };
    let mut cases = Vec::new();
    for index in 0..count {
        if all {
            for kind in [FaultKind::Crash].iter().chain(&others) {
                cases.push(case(index, *kind, true));
                cases.push(case(index, *kind, false));
            }
        } else {
            cases.push(case(index, FaultKind::Crash, true));
            if other_kinds {
                cases.push(case(index, others[index % others.len()], false));
            }
        }
    }
    cases
}

/// Runs `run` once per case of `cases`, with the case's fault (armed at its index),
/// whether a power loss follows, and a description naming the operation at that index in
/// `operations` (the counting run's). A case that panics is reported by its description
/// before the panic goes on. Prints how many runs there were and returns how many saw
/// their fault fire (`run`'s answer).
pub fn run_fault_cases(
    label: &str,
    operations: &[(OperationKind, PathBuf)],
    cases: &[FaultCase],
    mut run: impl FnMut(Fault, bool, &str) -> bool,
) -> usize {
    let started = std::time::Instant::now();
    let mut fired = 0;
    for case in cases {
        let operation = operations.get(case.index).map_or_else(
            || "(beyond the counting run's operations)".to_string(),
            |(kind, path)| format!("{kind:?} {}", path.display()),
        );
        let when = format!(
            "{label}: {:?} at operation {} of {} ({operation}), power loss {}",
            case.kind,
            case.index,
            operations.len(),
            case.power_loss
        );
        let fault = Fault::at(case.index as u64, case.kind);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(fault, case.power_loss, &when)
        }));
        match outcome {
            Ok(true) => fired += 1,
            Ok(false) => {}
            Err(panic) => {
                eprintln!("{when}: failed");
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "{label}: {} faulted runs over {} operations ({fired} faults fired) in {:?}",
        cases.len(),
        operations.len(),
        started.elapsed()
    );
    fired
}

/// A directory operation a power loss may undo.
#[derive(Debug)]
enum Undo {
    Created(PathBuf),
    Renamed {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<PathBuf>,
    },
    /// A file or a whole directory, kept in the backup directory.
    Removed {
        path: PathBuf,
        backup: PathBuf,
    },
}

impl Undo {
    fn in_dir(&self, dir: &Path) -> bool {
        let parent_is = |path: &Path| path.parent() == Some(dir);
        match self {
            Undo::Created(path) | Undo::Removed { path, .. } => parent_is(path),
            Undo::Renamed { from, to, .. } => parent_is(from) || parent_is(to),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Every operation performed or refused, in order.
    operations: Vec<(OperationKind, PathBuf)>,
    /// Armed faults, each with how many matching operations it has let pass.
    faults: Vec<(Fault, u64)>,
    /// Faults that fired: (operation index, kind).
    fired: Vec<(usize, FaultKind)>,
    crashed: bool,
    /// Durable length of each file written through this file system.
    synced_bytes: HashMap<PathBuf, u64>,
    /// Directory operations not yet made durable, oldest first.
    undo: Vec<Undo>,
    backups: u64,
}

/// The fault-injecting file system (tests). Clones share the same state.
#[derive(Clone, Debug)]
pub struct FaultyFileSystem {
    state: Arc<Mutex<State>>,
    /// Where replaced and removed files are kept (hard links) until a power loss or a
    /// directory fsync decides their fate; must be on the same file system as the data.
    backup_dir: PathBuf,
}

fn error(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::NoSpace | FaultKind::ShortWrite => io::Error::from_raw_os_error(libc::ENOSPC),
        FaultKind::Io | FaultKind::Crash => io::Error::from_raw_os_error(libc::EIO),
    }
}

impl FaultyFileSystem {
    /// A file system with no fault armed, keeping backups in `backup_dir` (created).
    pub fn new(backup_dir: &Path) -> io::Result<FaultyFileSystem> {
        std::fs::create_dir_all(backup_dir)?;
        Ok(FaultyFileSystem {
            state: Arc::default(),
            backup_dir: backup_dir.to_path_buf(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test thread that panicked holding the lock leaves a state still worth reading.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms `fault`; its `nth` counts matching operations from now.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push((fault, 0));
    }

    /// Operations so far (performed or refused).
    pub fn operation_count(&self) -> usize {
        self.lock().operations.len()
    }

    /// Every operation so far, in order.
    pub fn operations(&self) -> Vec<(OperationKind, PathBuf)> {
        self.lock().operations.clone()
    }

    /// The faults that fired: (operation index, kind).
    pub fn fired(&self) -> Vec<(usize, FaultKind)> {
        self.lock().fired.clone()
    }

    /// Whether a crash fault fired (every operation fails since).
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Counts an operation and decides whether it fails: `Ok(None)` to perform it,
    /// `Ok(Some(ShortWrite))` for a write to cut short, `Err` to refuse it.
    fn begin(&self, operation: OperationKind, path: &Path) -> io::Result<Option<FaultKind>> {
        let mut state = self.lock();
        let index = state.operations.len();
        state.operations.push((operation, path.to_path_buf()));
        if state.crashed {
            return Err(error(FaultKind::Crash));
        }
        let mut fired = None;
        for (position, (fault, seen)) in state.faults.iter_mut().enumerate() {
            if !fault.matches(operation, path) {
                continue;
            }
            if *seen == fault.nth {
                fired = Some((position, fault.kind));
                break;
            }
            *seen += 1;
        }
        let Some((position, kind)) = fired else {
            return Ok(None);
        };
        state.faults.remove(position);
        state.fired.push((index, kind));
        match kind {
            FaultKind::Crash => {
                state.crashed = true;
                Err(error(kind))
            }
            FaultKind::ShortWrite if operation == OperationKind::Write => Ok(Some(kind)),
            FaultKind::ShortWrite => Err(error(FaultKind::Io)),
            FaultKind::NoSpace | FaultKind::Io => Err(error(kind)),
        }
    }

    /// Removes the file or directory `path` by moving it into the backup directory, so
    /// that a power loss can bring it back.
    fn remove_undoably(&self, operation: OperationKind, path: &Path) -> io::Result<()> {
        self.begin(operation, path)?;
        if operation == OperationKind::Remove && path.is_dir() {
            return Err(io::ErrorKind::IsADirectory.into());
        }
        let mut state = self.lock();
        state.backups += 1;
        let backup = self.backup_dir.join(format!("backup-{}", state.backups));
        std::fs::rename(path, &backup)?;
        state
            .synced_bytes
            .retain(|synced, _| !synced.starts_with(path));
        state.undo.push(Undo::Removed {
            path: path.to_path_buf(),
            backup,
        });
        Ok(())
    }

    /// Keeps a hard link to `path` in the backup directory; its name there.
    fn back_up(&self, state: &mut State, path: &Path) -> io::Result<PathBuf> {
        state.backups += 1;
        let backup = self.backup_dir.join(format!("backup-{}", state.backups));
        std::fs::hard_link(path, &backup)?;
        Ok(backup)
    }

    /// A power loss now: every file written through this file system goes back to its
    /// synced length, then every create, rename and remove not made durable by a
    /// directory fsync is undone, newest first. Clears the crash and the armed faults:
    /// the directory is then what a machine would find after rebooting.
    pub fn power_loss(&self) -> io::Result<()> {
        let mut state = self.lock();
        for (path, &synced) in &state.synced_bytes {
            match std::fs::OpenOptions::new().write(true).open(path) {
                Ok(file) => {
                    if file.metadata()?.len() > synced {
                        file.set_len(synced)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        while let Some(undo) = state.undo.pop() {
            match undo {
                Undo::Created(path) => remove_if_present(&path)?,
                Undo::Renamed { from, to, replaced } => {
                    std::fs::rename(&to, &from)?;
                    if let Some(backup) = replaced {
                        std::fs::rename(&backup, &to)?;
                    }
                }
                Undo::Removed { path, backup } => std::fs::rename(&backup, &path)?,
            }
        }
        state.synced_bytes.clear();
        state.faults.clear();
        state.crashed = false;
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A file being written through a [`FaultyFileSystem`].
struct FaultyFile {
    file_system: FaultyFileSystem,
    path: PathBuf,
    file: std::fs::File,
}

impl Write for FaultyFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(kind) = self.file_system.begin(OperationKind::Write, &self.path)? {
            self.file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(error(kind));
        }
        self.file.write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WritableFile for FaultyFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.file_system
            .begin(OperationKind::SyncData, &self.path)?;
        self.file.sync_data()?;
        let len = self.file.metadata()?.len();
        self.file_system
            .lock()
            .synced_bytes
            .insert(self.path.clone(), len);
        Ok(())
    }
}

impl FaultyFileSystem {
    fn open_for_write(&self, path: &Path, create_new: bool) -> io::Result<Box<dyn WritableFile>> {
        self.begin(OperationKind::Create, path)?;
        let existed = path.exists();
        let file = if create_new {
            std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(path)?
        } else {
            std::fs::File::create(path)?
        };
        let mut state = self.lock();
        if !existed {
            state.undo.push(Undo::Created(path.to_path_buf()));
        }
        // A truncated file's new contents are not durable either.
        state.synced_bytes.insert(path.to_path_buf(), 0);
        Ok(Box::new(FaultyFile {
            file_system: self.clone(),
            path: path.to_path_buf(),
            file,
        }))
    }
}

impl FileSystem for FaultyFileSystem {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.open_for_write(path, true)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.open_for_write(path, false)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.begin(OperationKind::OpenAppend, path)?;
        let file = std::fs::File::options().append(true).open(path)?;
        let len = file.metadata()?.len();
        // What the file held when it was opened is durable (or already tracked); what is
        // appended is not until a sync.
        self.lock()
            .synced_bytes
            .entry(path.to_path_buf())
            .or_insert(len);
        Ok(Box::new(FaultyFile {
            file_system: self.clone(),
            path: path.to_path_buf(),
            file,
        }))
    }

    fn truncate(&self, path: &Path, bytes: u64) -> io::Result<()> {
        self.begin(OperationKind::Truncate, path)?;
        let file = std::fs::File::options().write(true).open(path)?;
        file.set_len(bytes)?;
        file.sync_all()?;
        // The fsync made every byte left durable.
        self.lock().synced_bytes.insert(path.to_path_buf(), bytes);
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.begin(OperationKind::Read, path)?;
        std::fs::read(path)
    }

    fn file_bytes(&self, path: &Path) -> io::Result<u64> {
        self.begin(OperationKind::FileBytes, path)?;
        super::StdFileSystem.file_bytes(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.begin(OperationKind::Exists, path)?;
        super::StdFileSystem.exists(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.begin(OperationKind::List, dir)?;
        super::StdFileSystem.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.begin(OperationKind::CreateDir, dir)?;
        std::fs::create_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.begin(OperationKind::Rename, to)?;
        let mut state = self.lock();
        let replaced = if to.exists() {
            Some(self.back_up(&mut state, to)?)
        } else {
            None
        };
        std::fs::rename(from, to)?;
        if let Some(synced) = state.synced_bytes.remove(from) {
            state.synced_bytes.insert(to.to_path_buf(), synced);
        }
        state.undo.push(Undo::Renamed {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            replaced,
        });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.remove_undoably(OperationKind::Remove, path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.remove_undoably(OperationKind::RemoveDir, dir)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.begin(OperationKind::HardLink, to)?;
        std::fs::hard_link(from, to)?;
        self.lock().undo.push(Undo::Created(to.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.begin(OperationKind::SyncDir, dir)?;
        std::fs::File::open(dir)?.sync_all()?;
        let mut state = self.lock();
        state.undo.retain(|undo| !undo.in_dir(dir));
        Ok(())
    }
}
