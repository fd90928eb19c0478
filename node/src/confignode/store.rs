//! Where the ConfigNode keeps its commands: the [`CommandStore`] seam.
//!
//! ```text
//!  ConfigNode ──append / defer_sync / sync / write_snapshot──► CommandStore
//!                                                               ├─ Journal      (std::fs; the server)
//!                                                               └─ DiskStore<D> (any `Disk`: the
//!                                                                  simulator's faulty SimDisk, StdDisk)
//! ```
//!
//! Both keep a snapshot plus the commands applied since; both acknowledge an append only
//! once it is durable (after the batch's sync), refuse everything after a failed write or
//! sync, and recover the snapshot and the commands after it. The ConfigNode is generic
//! over its store so the same planner, state machine and procedures run in the server and
//! in the deterministic simulator (`sim_tests`). The Raft log store of a replicated
//! ConfigNode group will be a third implementation.
//!
//! `DiskStore` layout on its `Disk`:
//! ```text
//!  confignode.snapshot      atomic file: JSON {generation, state}; the commit point of a snapshot
//!  confignode-<gen>.log     record log (checksummed, dense indexes) of the commands after it
//! ```
//! A snapshot starts a new generation: the snapshot file is replaced atomically first, then
//! the new log is created and the old one removed; a crash between leaves an old log that
//! the next open removes (the snapshot covers it) and a missing new log that it creates.

use iotdb_consensus::atomic_file::{self, AtomicFileError};
use iotdb_consensus::io::{Disk, DiskError};
use iotdb_consensus::record_log::{LogError, RecordLog};
use serde::{Deserialize, Serialize};

use super::error::{ConfigNodeError, Result};
use super::journal::Journal;
use super::state::{ConfigCommand, ConfigState};

/// What a store recovered at open.
#[derive(Debug)]
pub struct Recovered {
    /// The latest snapshot, if one was written.
    pub snapshot: Option<ConfigState>,
    /// The commands after it, in order.
    pub commands: Vec<ConfigCommand>,
}

/// What a replicated store hands its ConfigNode to apply: a command another ConfigNode
/// committed, or a whole state (this node lagged too far and the leader sent a snapshot).
#[derive(Debug, Clone)]
pub enum Committed {
    Command(ConfigCommand),
    State(Box<ConfigState>),
    /// An entry that changes no state (a membership change of the ConfigNode group): it
    /// only moves the applied position, which snapshots are taken at.
    Nothing,
}

/// The ConfigNode's durable command store. Owned by the ConfigNode's thread.
pub trait CommandStore: std::fmt::Debug {
    /// Appends one command; durable when this returns unless syncs are deferred, then
    /// durable after the next successful [`CommandStore::sync`]. A replicated store
    /// returns once the command is committed, with what others committed before it,
    /// which the ConfigNode applies first (a local store: nothing). `state` is the state
    /// the command was checked against (everything applied so far): a replicated store
    /// may snapshot it while it waits, when a lagging member needs a snapshot to commit.
    fn append(&mut self, command: &ConfigCommand, state: &ConfigState) -> Result<Vec<Committed>>;
    /// What others committed since (a replicated store: the followers' only source of
    /// changes; a local store: nothing).
    fn poll_committed(&mut self) -> Vec<Committed> {
        Vec::new()
    }
    /// Makes the following appends wait for [`CommandStore::sync`] (group commit).
    fn defer_sync(&mut self);
    /// Writes the deferred appends without making them durable (a batch writes every
    /// journal it changed before it syncs any: [`Journal::write_deferred`]); a store that
    /// has nothing to write ahead of its sync does nothing.
    fn write_deferred(&mut self) -> Result<()> {
        Ok(())
    }
    /// Makes every deferred append durable and ends deferral.
    fn sync(&mut self) -> Result<()>;
    /// Replaces the snapshot with `state` (covering every command so far) and starts an
    /// empty log.
    fn write_snapshot(&mut self, state: &ConfigState) -> Result<()>;
    /// Commands appended since the latest snapshot (the replay cost of a restart).
    fn records_since_snapshot(&self) -> u64;
    /// Whether the log grew past what a new snapshot would cost
    /// ([`Journal::log_outgrew_snapshot`]; stores that do not track it: never).
    fn log_outgrew_snapshot(&self) -> bool {
        false
    }
}

impl CommandStore for Journal {
    fn append(&mut self, command: &ConfigCommand, _state: &ConfigState) -> Result<Vec<Committed>> {
        Journal::append(self, command)?;
        Ok(Vec::new())
    }

    fn defer_sync(&mut self) {
        Journal::defer_sync(self);
    }

    fn write_deferred(&mut self) -> Result<()> {
        Journal::write_deferred(self)?;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        Journal::sync(self)?;
        Ok(())
    }

    fn write_snapshot(&mut self, state: &ConfigState) -> Result<()> {
        Journal::write_snapshot(self, state)?;
        Ok(())
    }

    fn records_since_snapshot(&self) -> u64 {
        Journal::records_since_snapshot(self)
    }

    fn log_outgrew_snapshot(&self) -> bool {
        Journal::log_outgrew_snapshot(self)
    }
}

/// Opens the std::fs journal `name` in `dir` as a command store.
pub fn open_journal(dir: &std::path::Path, name: &str) -> Result<(Journal, Recovered)> {
    let (journal, recovered) = Journal::open::<ConfigState, ConfigCommand>(dir, name)?;
    Ok((
        journal,
        Recovered {
            snapshot: recovered.snapshot,
            commands: recovered.records,
        },
    ))
}

/// The snapshot file of a [`DiskStore`].
const SNAPSHOT_FILE: &str = "confignode.snapshot";

fn log_file(generation: u64) -> String {
    format!("confignode-{generation}.log")
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    generation: u64,
    state: ConfigState,
}

fn store_error(what: &str, error: impl std::fmt::Display) -> ConfigNodeError {
    ConfigNodeError::Store(format!("{what}: {error}"))
}

fn log_error(error: LogError) -> ConfigNodeError {
    store_error("command log", error)
}

fn snapshot_error(error: AtomicFileError) -> ConfigNodeError {
    store_error("snapshot", error)
}

fn disk_error(error: DiskError) -> ConfigNodeError {
    store_error("disk", error)
}

/// A command store on any [`Disk`] (see the module docs for its layout).
#[derive(Debug)]
pub struct DiskStore<D: Disk + Clone> {
    disk: D,
    log: RecordLog<D>,
    generation: u64,
    deferred: bool,
    records_since_snapshot: u64,
    /// A write, sync or snapshot failed: what is on disk is unknown until reopened.
    failed: bool,
}

impl<D: Disk + Clone + std::fmt::Debug> DiskStore<D> {
    /// Opens the store on `disk` (creating it when empty) and recovers it.
    pub fn open(mut disk: D) -> Result<(DiskStore<D>, Recovered)> {
        let (generation, snapshot) =
            match atomic_file::read(&mut disk, SNAPSHOT_FILE).map_err(snapshot_error)? {
                Some(bytes) => {
                    let file: SnapshotFile = serde_json::from_slice(&bytes)
                        .map_err(|error| store_error("decoding the snapshot", error))?;
                    (file.generation, Some(file.state))
                }
                None => (0, None),
            };
        let name = log_file(generation);
        let opened = RecordLog::open(disk.clone(), &name).map_err(log_error)?;
        // What was recovered may sit only in the page cache (a process crash before the
        // sync): make it durable before anything is acknowledged on top of it.
        disk.sync(&name).map_err(disk_error)?;
        let commands = opened
            .records
            .iter()
            .map(|record| {
                serde_json::from_slice::<ConfigCommand>(&record.payload).map_err(|error| {
                    store_error(
                        &format!("decoding command {} of {name}", record.index),
                        error,
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Logs of older generations are covered by the snapshot: a crash inside
        // `write_snapshot` left them.
        let stale: Vec<String> = disk
            .list()
            .map_err(disk_error)?
            .into_iter()
            .filter(|file| {
                file.starts_with("confignode-") && file.ends_with(".log") && *file != name
            })
            .collect();
        for file in &stale {
            disk.remove(file).map_err(disk_error)?;
        }
        if !stale.is_empty() {
            disk.sync_dir().map_err(disk_error)?;
        }
        let store = DiskStore {
            disk,
            log: opened.log,
            generation,
            deferred: false,
            records_since_snapshot: commands.len() as u64,
            failed: false,
        };
        Ok((store, Recovered { snapshot, commands }))
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(store_error(
                "the store",
                "an earlier write or sync failed; reopen to recover",
            ));
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if let Err(error) = self.log.commit() {
            self.failed = true;
            return Err(log_error(error));
        }
        Ok(())
    }
}

impl<D: Disk + Clone + std::fmt::Debug> CommandStore for DiskStore<D> {
    fn append(&mut self, command: &ConfigCommand, _state: &ConfigState) -> Result<Vec<Committed>> {
        self.check_usable()?;
        let payload =
            serde_json::to_vec(command).map_err(|error| store_error("encoding", error))?;
        self.log.append(&payload).map_err(log_error)?;
        self.records_since_snapshot += 1;
        if !self.deferred {
            self.commit()?;
        }
        Ok(Vec::new())
    }

    fn defer_sync(&mut self) {
        self.deferred = true;
    }

    fn sync(&mut self) -> Result<()> {
        self.deferred = false;
        self.check_usable()?;
        self.commit()
    }

    fn write_snapshot(&mut self, state: &ConfigState) -> Result<()> {
        self.check_usable()?;
        // Whatever is pending is covered by the snapshot only if the snapshot lands; make
        // it durable first so a failed snapshot loses nothing acknowledged.
        self.commit()?;
        let generation = self.generation + 1;
        let bytes = serde_json::to_vec(&SnapshotFile {
            generation,
            state: state.clone(),
        })
        .map_err(|error| store_error("encoding the snapshot", error))?;
        let result = (|| {
            atomic_file::write(&mut self.disk, SNAPSHOT_FILE, &bytes).map_err(snapshot_error)?;
            let opened =
                RecordLog::open(self.disk.clone(), &log_file(generation)).map_err(log_error)?;
            let old = std::mem::replace(&mut self.log, opened.log);
            drop(old);
            self.disk
                .remove(&log_file(self.generation))
                .map_err(disk_error)?;
            self.disk.sync_dir().map_err(disk_error)
        })();
        match result {
            Ok(()) => {
                self.generation = generation;
                self.records_since_snapshot = 0;
                Ok(())
            }
            Err(error) => {
                self.failed = true;
                Err(error)
            }
        }
    }

    fn records_since_snapshot(&self) -> u64 {
        self.records_since_snapshot
    }
}
