//! The simulated disk: a volatile view (what reads see) and a durable view (what a crash
//! leaves), with the faults real disks have, all drawn from a seeded generator.
//!
//! ```text
//!  write_at / truncate ──► inode.volatile   and   inode.pending (ops since the last sync)
//!  sync(file)   ok ──► durable := durable + pending          EIO ──► maybe pending lost
//!  create/rename/remove ──► names (volatile) and names_pending (ops since sync_dir)
//!  sync_dir     ok ──► names_durable := names
//!  crash ──► names := names_durable + a prefix of names_pending
//!            each file: durable + a prefix of its pending ops, the next op maybe torn
//! ```
//!
//! Faults, per [`DiskConfig`]: `sync`/`sync_dir` fail with EIO; a failed `sync` may drop
//! the pending changes for good while reads still show them (Linux's behaviour, which
//! makes "retry the fsync, then acknowledge" lose data); writes fail with ENOSPC at random
//! or past `capacity_bytes`; a crash keeps a random prefix of the unsynced changes and may
//! tear the last one (a prefix of its bytes, or zeros where the file grew but the data
//! did not land).
//!
//! [`SimDisk`] is a cheap handle. The simulator keeps one per node and hands a fresh one
//! to each incarnation; a handle from before a crash panics when used, because a node that
//! touches its disk after dying is a bug in the test.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::rng::SimRng;
use crate::io::{Disk, DiskError, DiskOp, validate_file_name};

/// Fault probabilities of a simulated disk.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskConfig {
    /// Probability that a `sync` or `sync_dir` fails with EIO.
    pub sync_failure_probability: f64,
    /// Given a failed `sync`, probability that the file's unsynced changes are lost for
    /// good (reads still return them until a crash).
    pub sync_failure_loses_probability: f64,
    /// Probability that a write or truncate that grows a file fails with ENOSPC.
    pub no_space_probability: f64,
    /// Total bytes the disk holds (volatile lengths of all files); growing past fails.
    pub capacity_bytes: u64,
    /// At a crash, probability that each unsynced change survives, in order: the first
    /// that does not ends the surviving prefix.
    pub writeback_probability: f64,
    /// At a crash, probability that the change after the surviving prefix is torn:
    /// partly on disk instead of absent.
    pub torn_write_probability: f64,
    /// How unsynced writes reach the platter at a crash.
    pub writeback: Writeback,
}

/// The order in which a crash lets unsynced writes of one file survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writeback {
    /// A prefix of the writes, in order, the last one maybe torn (the default). This is
    /// the model the WAL's recovery rule assumes.
    InOrder,
    /// Each 4 KiB page of each unsynced write survives or not on its own, in any order,
    /// as a kernel's page writeback and a drive's cache allow. A later page can be on disk
    /// while an earlier one is not.
    PagesAnyOrder,
}

/// Page size of `Writeback::PagesAnyOrder`.
pub const PAGE_BYTES: u64 = 4096;

impl DiskConfig {
    /// A disk that never fails (a crash still loses what was not synced).
    pub fn reliable() -> DiskConfig {
        DiskConfig {
            sync_failure_probability: 0.0,
            sync_failure_loses_probability: 0.0,
            no_space_probability: 0.0,
            capacity_bytes: u64::MAX,
            writeback_probability: 0.0,
            torn_write_probability: 0.0,
            writeback: Writeback::InOrder,
        }
    }

    /// Every fault, often enough to be hit in most runs of a few hundred operations.
    pub fn faulty() -> DiskConfig {
        DiskConfig {
            sync_failure_probability: 0.01,
            sync_failure_loses_probability: 0.5,
            no_space_probability: 0.002,
            capacity_bytes: 64 * 1024 * 1024,
            writeback_probability: 0.5,
            torn_write_probability: 0.5,
            writeback: Writeback::InOrder,
        }
    }
}

/// Counters of what the disk did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub writes: u64,
    pub syncs: u64,
    pub sync_failures: u64,
    /// Failed syncs that dropped unsynced changes for good.
    pub lost_on_sync_failure: u64,
    pub no_space: u64,
    pub crashes: u64,
    /// Crashes that tore a change.
    pub torn_writes: u64,
}

/// An unsynced change to a file's data.
#[derive(Clone, Debug)]
enum DataOp {
    Write { offset: u64, data: Vec<u8> },
    Truncate { len: u64 },
}

/// An unsynced change to the directory.
#[derive(Clone, Debug)]
enum NameOp {
    Link {
        name: String,
        inode: u64,
    },
    Unlink {
        name: String,
    },
    /// One op, so that a crash keeps either the old name or the new, never both.
    Rename {
        from: String,
        to: String,
        inode: u64,
    },
}

#[derive(Clone, Debug, Default)]
struct Inode {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<DataOp>,
}

#[derive(Debug)]
struct DiskState {
    config: DiskConfig,
    rng: SimRng,
    /// Bumped by every crash; handles of an older incarnation are dead.
    incarnation: u64,
    names: BTreeMap<String, u64>,
    names_durable: BTreeMap<String, u64>,
    names_pending: Vec<NameOp>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    stats: DiskStats,
    /// Print injected faults to stderr (`SIM_TRACE`).
    trace: bool,
}

/// A handle to one node's simulated disk (one directory).
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Rc<RefCell<DiskState>>,
    incarnation: u64,
}

fn apply(image: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Write { offset, data } => {
            let offset = usize::try_from(*offset).expect("simulated files fit in memory");
            let end = offset + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[offset..end].copy_from_slice(data);
        }
        DataOp::Truncate { len } => {
            image.resize(
                usize::try_from(*len).expect("simulated files fit in memory"),
                0,
            );
        }
    }
}

/// A change split at page boundaries (a truncate stays whole).
fn pages(op: &DataOp) -> Vec<DataOp> {
    match op {
        DataOp::Truncate { .. } => vec![op.clone()],
        DataOp::Write { offset, data } => {
            let mut pieces = Vec::new();
            let mut start = 0usize;
            while start < data.len() {
                let at = offset + start as u64;
                let room = (PAGE_BYTES - at % PAGE_BYTES) as usize;
                let end = (start + room).min(data.len());
                pieces.push(DataOp::Write {
                    offset: at,
                    data: data[start..end].to_vec(),
                });
                start = end;
            }
            pieces
        }
    }
}

fn apply_name(names: &mut BTreeMap<String, u64>, op: &NameOp) {
    match op {
        NameOp::Link { name, inode } => {
            names.insert(name.clone(), *inode);
        }
        NameOp::Unlink { name } => {
            names.remove(name);
        }
        NameOp::Rename { from, to, inode } => {
            names.remove(from);
            names.insert(to.clone(), *inode);
        }
    }
}

impl SimDisk {
    /// An empty disk whose faults are drawn from `rng`.
    pub fn new(config: DiskConfig, rng: SimRng) -> SimDisk {
        SimDisk {
            state: Rc::new(RefCell::new(DiskState {
                config,
                rng,
                incarnation: 0,
                names: BTreeMap::new(),
                names_durable: BTreeMap::new(),
                names_pending: Vec::new(),
                inodes: BTreeMap::new(),
                next_inode: 1,
                stats: DiskStats::default(),
                trace: std::env::var_os(super::trace::TRACE_ENV).is_some_and(|value| value != "0"),
            })),
            incarnation: 0,
        }
    }

    /// A new handle for the current incarnation (what a restarted node gets).
    pub fn handle(&self) -> SimDisk {
        SimDisk {
            state: Rc::clone(&self.state),
            incarnation: self.state.borrow().incarnation,
        }
    }

    /// Replaces the fault probabilities (e.g. a reliable disk for a final check).
    pub fn set_config(&self, config: DiskConfig) {
        self.state.borrow_mut().config = config;
    }

    pub fn stats(&self) -> DiskStats {
        self.state.borrow().stats.clone()
    }

    /// A power loss. Every handle taken before it is dead afterwards.
    pub fn crash(&self) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        state.incarnation += 1;
        state.stats.crashes += 1;
        let writeback = state.config.writeback_probability;
        let torn = state.config.torn_write_probability;

        let kept = (0..state.names_pending.len())
            .take_while(|_| state.rng.chance(writeback))
            .count();
        for op in &state.names_pending[..kept] {
            apply_name(&mut state.names_durable, op);
        }
        state.names_pending.clear();
        state.names = state.names_durable.clone();
        let live: std::collections::BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|inode, _| live.contains(inode));

        let trace = state.trace;
        for inode in state.inodes.values_mut() {
            if state.config.writeback == Writeback::PagesAnyOrder {
                for op in std::mem::take(&mut inode.pending) {
                    for page in pages(&op) {
                        if state.rng.chance(writeback) {
                            apply(&mut inode.durable, &page);
                        }
                    }
                }
                inode.volatile = inode.durable.clone();
                continue;
            }
            let kept = (0..inode.pending.len())
                .take_while(|_| state.rng.chance(writeback))
                .count();
            for op in &inode.pending[..kept] {
                apply(&mut inode.durable, op);
            }
            if let Some(DataOp::Write { offset, data }) = inode.pending.get(kept)
                && !data.is_empty()
                && state.rng.chance(torn)
            {
                state.stats.torn_writes += 1;
                let prefix = state.rng.below(data.len() as u64) as usize;
                if trace {
                    eprintln!(
                        "sim disk: crash tears a {}-byte write at {offset} after {prefix} bytes",
                        data.len()
                    );
                }
                let torn_data = if state.rng.chance(0.5) {
                    data[..prefix].to_vec()
                } else {
                    // The length reached the disk but the data did not: zeros.
                    let mut zeros = data[..prefix].to_vec();
                    zeros.resize(data.len(), 0);
                    zeros
                };
                apply(
                    &mut inode.durable,
                    &DataOp::Write {
                        offset: *offset,
                        data: torn_data,
                    },
                );
            }
            inode.pending.clear();
            inode.volatile = inode.durable.clone();
        }
    }

    /// Runs `body` on the state of a live handle.
    fn with<T>(&self, body: impl FnOnce(&mut DiskState) -> T) -> T {
        let mut state = self.state.borrow_mut();
        assert_eq!(
            state.incarnation, self.incarnation,
            "a disk handle was used after its node crashed"
        );
        body(&mut state)
    }

    /// Durable contents of a file, for tests that inspect what a crash would leave.
    pub fn durable_contents(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let inode = state.names_durable.get(name)?;
        Some(state.inodes.get(inode)?.durable.clone())
    }
}

impl DiskState {
    fn inode_mut(&mut self, op: DiskOp, name: &str) -> Result<&mut Inode, DiskError> {
        validate_file_name(name)?;
        let inode = self.names.get(name).ok_or_else(|| DiskError::NotFound {
            op,
            name: name.to_string(),
        })?;
        Ok(self
            .inodes
            .get_mut(inode)
            .expect("every named inode exists"))
    }

    fn inode(&self, op: DiskOp, name: &str) -> Result<&Inode, DiskError> {
        validate_file_name(name)?;
        let inode = self.names.get(name).ok_or_else(|| DiskError::NotFound {
            op,
            name: name.to_string(),
        })?;
        Ok(self.inodes.get(inode).expect("every named inode exists"))
    }

    fn used_bytes(&self) -> u64 {
        self.names
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|inode| self.inodes[inode].volatile.len() as u64)
            .sum()
    }

    /// ENOSPC check for an operation that grows a file by `growth` bytes.
    fn check_space(&mut self, op: DiskOp, name: &str, growth: u64) -> Result<(), DiskError> {
        if growth == 0 {
            return Ok(());
        }
        let full = self.used_bytes().saturating_add(growth) > self.config.capacity_bytes;
        if full || self.rng.chance(self.config.no_space_probability) {
            self.stats.no_space += 1;
            if self.trace {
                eprintln!("sim disk: {op} {name}: injected ENOSPC");
            }
            return Err(DiskError::NoSpace {
                op,
                name: name.to_string(),
            });
        }
        Ok(())
    }

    fn change(&mut self, op: DiskOp, name: &str, change: DataOp) -> Result<(), DiskError> {
        let current = self.inode(op, name)?.volatile.len() as u64;
        let new_len = match &change {
            DataOp::Write { offset, data } => current.max(offset + data.len() as u64),
            DataOp::Truncate { len } => *len,
        };
        self.check_space(op, name, new_len.saturating_sub(current))?;
        self.stats.writes += 1;
        let inode = self.inode_mut(op, name)?;
        apply(&mut inode.volatile, &change);
        inode.pending.push(change);
        Ok(())
    }

    fn eio(&mut self, op: DiskOp, name: &str) -> Option<DiskError> {
        if !self.rng.chance(self.config.sync_failure_probability) {
            return None;
        }
        self.stats.sync_failures += 1;
        if self.trace {
            eprintln!("sim disk: {op} {name}: injected EIO");
        }
        Some(DiskError::Io {
            op,
            name: name.to_string(),
            source: std::io::Error::from_raw_os_error(EIO),
        })
    }
}

/// Linux's EIO.
const EIO: i32 = 5;

impl Disk for SimDisk {
    fn create(&mut self, name: &str) -> Result<(), DiskError> {
        validate_file_name(name)?;
        self.with(|state| {
            if state.names.contains_key(name) {
                return Err(DiskError::AlreadyExists {
                    op: DiskOp::Create,
                    name: name.to_string(),
                });
            }
            let inode = state.next_inode;
            state.next_inode += 1;
            state.inodes.insert(inode, Inode::default());
            state.names.insert(name.to_string(), inode);
            state.names_pending.push(NameOp::Link {
                name: name.to_string(),
                inode,
            });
            Ok(())
        })
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<u64, DiskError> {
        self.with(|state| {
            let offset = state.inode(DiskOp::Append, name)?.volatile.len() as u64;
            state.change(
                DiskOp::Append,
                name,
                DataOp::Write {
                    offset,
                    data: data.to_vec(),
                },
            )?;
            Ok(offset)
        })
    }

    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.with(|state| {
            state.change(
                DiskOp::WriteAt,
                name,
                DataOp::Write {
                    offset,
                    data: data.to_vec(),
                },
            )
        })
    }

    fn read_at(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        self.with(|state| {
            let data = &state.inode(DiskOp::Read, name)?.volatile;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let end = start.saturating_add(len).min(data.len());
            Ok(data[start..end].to_vec())
        })
    }

    fn read_all(&self, name: &str) -> Result<Vec<u8>, DiskError> {
        self.with(|state| Ok(state.inode(DiskOp::Read, name)?.volatile.clone()))
    }

    fn len(&self, name: &str) -> Result<u64, DiskError> {
        self.with(|state| Ok(state.inode(DiskOp::Len, name)?.volatile.len() as u64))
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), DiskError> {
        self.with(|state| state.change(DiskOp::Truncate, name, DataOp::Truncate { len }))
    }

    fn sync(&mut self, name: &str) -> Result<(), DiskError> {
        self.with(|state| {
            state.inode(DiskOp::Sync, name)?;
            state.stats.syncs += 1;
            if let Some(error) = state.eio(DiskOp::Sync, name) {
                let lose = state
                    .rng
                    .chance(state.config.sync_failure_loses_probability);
                let inode = state.inode_mut(DiskOp::Sync, name)?;
                if lose && !inode.pending.is_empty() {
                    inode.pending.clear();
                    state.stats.lost_on_sync_failure += 1;
                    if state.trace {
                        eprintln!("sim disk: the failed fsync of {name} lost its unsynced writes");
                    }
                }
                return Err(error);
            }
            let inode = state.inode_mut(DiskOp::Sync, name)?;
            for op in std::mem::take(&mut inode.pending) {
                apply(&mut inode.durable, &op);
            }
            Ok(())
        })
    }

    fn sync_dir(&mut self) -> Result<(), DiskError> {
        self.with(|state| {
            state.stats.syncs += 1;
            if let Some(error) = state.eio(DiskOp::SyncDir, ".") {
                return Err(error);
            }
            for op in std::mem::take(&mut state.names_pending) {
                apply_name(&mut state.names_durable, &op);
            }
            debug_assert_eq!(state.names_durable, state.names);
            Ok(())
        })
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        validate_file_name(to)?;
        self.with(|state| {
            validate_file_name(from)?;
            let inode = *state.names.get(from).ok_or_else(|| DiskError::NotFound {
                op: DiskOp::Rename,
                name: from.to_string(),
            })?;
            if from == to {
                return Ok(());
            }
            state.names.remove(from);
            state.names.insert(to.to_string(), inode);
            state.names_pending.push(NameOp::Rename {
                from: from.to_string(),
                to: to.to_string(),
                inode,
            });
            Ok(())
        })
    }

    fn remove(&mut self, name: &str) -> Result<(), DiskError> {
        self.with(|state| {
            state.inode(DiskOp::Remove, name)?;
            state.names.remove(name);
            state.names_pending.push(NameOp::Unlink {
                name: name.to_string(),
            });
            Ok(())
        })
    }

    fn list(&self) -> Result<Vec<String>, DiskError> {
        self.with(|state| Ok(state.names.keys().cloned().collect()))
    }
}
