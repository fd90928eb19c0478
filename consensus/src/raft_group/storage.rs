//! raft-rs's `Storage` over the `Disk` trait: an in-memory copy of the log (from the last
//! snapshot on) in front of one log file and one snapshot file.
//!
//! ```text
//!  files:  raft-snapshot                    atomic file: log generation g, metadata, data
//!          raft-log-<g, 20 digits>          record log: entry and hard-state records
//!
//!  append(entries) ─► records (an entry at index i replaces every entry ≥ i)
//!  set_hard_state  ─► a record
//!  sync()          ─► one write + one fsync; error ─► failed for good
//!  compact(i) / install_snapshot ─► rotate:
//!      raft-log-<g+1>: hard state + entries kept, synced, directory synced
//!      raft-snapshot := (g+1, metadata, data)           ◄── the commit point
//!      remove raft-log-<g>, sync directory
//!  open ─► read raft-snapshot (none: generation 0, or bootstrap), remove other log
//!          files, replay raft-log-<g>: entries ≤ snapshot index skipped, a gap is
//!          corruption; hard state = last record, raised to the snapshot's term/index
//! ```
//!
//! Owned by the `RawNode` of one [`super::RaftGroup`], on the thread that drives it.

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::RaftGroupError;
use super::codec::{
    LogRecord, SnapshotFile, decode_record, decode_snapshot_file, encode_entry_record,
    encode_hard_state_record, encode_snapshot_file, snapshot_file_overhead,
};
use super::mutant::{self, Mutant};
use crate::atomic_file;
use crate::io::Disk;
use crate::limits::RAFT_SNAPSHOT_FILE_BYTES_MAX;
use crate::record_log::{LogError, RecordLog};

/// The snapshot file's name.
pub const SNAPSHOT_FILE: &str = "raft-snapshot";
/// Log files are `raft-log-` and a 20-digit generation.
pub const LOG_FILE_PREFIX: &str = "raft-log-";

fn log_file(generation: u64) -> String {
    format!("{LOG_FILE_PREFIX}{generation:020}")
}

/// Largest state-machine snapshot the storage holds (the snapshot file is an atomic file
/// of at most [`RAFT_SNAPSHOT_FILE_BYTES_MAX`] bytes).
pub fn snapshot_bytes_max(metadata: &SnapshotMetadata) -> usize {
    RAFT_SNAPSHOT_FILE_BYTES_MAX.saturating_sub(snapshot_file_overhead(metadata))
}

/// The Raft log, hard state and latest snapshot of one node, durable through a `Disk`.
pub struct RaftStorage<D: Disk> {
    /// None once a rotation failed half-way: the storage is dead.
    log: Option<RecordLog<D>>,
    generation: u64,
    /// The latest snapshot (index 0: none). Its conf state is the one raft starts from.
    snapshot: Snapshot,
    /// Entries after the snapshot, dense: `entries[k].index == snapshot index + 1 + k`.
    entries: Vec<Entry>,
    hard_state: HardState,
    /// A write, fsync or rotation failed: nothing more is written or acknowledged.
    failed: bool,
    /// Raft wanted to send the snapshot to a node its conf state does not name (one added
    /// after it was taken, which would refuse it): the host should compact anew.
    snapshot_wanted: std::cell::Cell<bool>,
}

impl<D: Disk> std::fmt::Debug for RaftStorage<D> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RaftStorage")
            .field("generation", &self.generation)
            .field("snapshot_index", &self.snapshot_index())
            .field("last_index", &self.last_index())
            .field("hard_state", &self.hard_state)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<D: Disk> RaftStorage<D> {
    /// Recovers the storage from `disk`. With no state on disk and `initial_voters` not
    /// empty, bootstraps a new group (a durable snapshot at index 1, term 1, with those
    /// voters and empty data); with state on disk, `initial_voters` is ignored.
    pub fn open(mut disk: D, initial_voters: &[u64]) -> Result<RaftStorage<D>, RaftGroupError> {
        let snapshot_file =
            match atomic_file::read(&mut disk, SNAPSHOT_FILE)? {
                Some(bytes) => Some(decode_snapshot_file(&bytes).map_err(|reason| {
                    RaftGroupError::Corrupt(format!("{SNAPSHOT_FILE}: {reason}"))
                })?),
                None => None,
            };
        let generation = snapshot_file.as_ref().map_or(0, |file| file.generation);
        let current = log_file(generation);
        let mut removed = false;
        let names = disk.list()?;
        for name in &names {
            if name.starts_with(LOG_FILE_PREFIX) && *name != current {
                // A log an interrupted rotation left behind (older or never switched to).
                disk.remove(name)?;
                removed = true;
            }
        }
        if removed {
            disk.sync_dir()?;
        }
        if generation > 0 && !names.contains(&current) {
            return Err(RaftGroupError::Corrupt(format!(
                "{SNAPSHOT_FILE} names log {current}, which does not exist"
            )));
        }
        let opened = RecordLog::open(disk, &current)?;
        let mut snapshot = Snapshot::default();
        if let Some(file) = snapshot_file.clone() {
            snapshot.set_metadata(file.metadata);
            snapshot.data = file.data;
        }
        let mut storage = RaftStorage {
            log: Some(opened.log),
            generation,
            snapshot,
            entries: Vec::new(),
            hard_state: HardState::default(),
            failed: false,
            snapshot_wanted: std::cell::Cell::new(false),
        };
        let mut had_records = false;
        for record in opened.records {
            had_records = true;
            let decoded = decode_record(&record.payload).map_err(|reason| {
                RaftGroupError::Corrupt(format!("{current} record {}: {reason}", record.index))
            })?;
            match decoded {
                LogRecord::Entry(entry) => storage.replay_entry(entry, &current)?,
                LogRecord::HardState(hard_state) => storage.hard_state = hard_state,
            }
        }
        let metadata = storage.snapshot.get_metadata().clone();
        storage.hard_state.term = storage.hard_state.term.max(metadata.term);
        storage.hard_state.commit = storage.hard_state.commit.max(metadata.index);
        if storage.hard_state.commit > storage.last_index() {
            return Err(RaftGroupError::Corrupt(format!(
                "commit index {} past the last entry {}",
                storage.hard_state.commit,
                storage.last_index()
            )));
        }
        if snapshot_file.is_none() && !had_records && !initial_voters.is_empty() {
            storage.bootstrap(initial_voters)?;
        }
        storage.check_invariants();
        Ok(storage)
    }

    /// Replays one entry record: it replaces every entry at or after its index.
    fn replay_entry(&mut self, entry: Entry, file: &str) -> Result<(), RaftGroupError> {
        if entry.index <= self.snapshot_index() {
            return Ok(());
        }
        if entry.index > self.last_index() + 1 {
            return Err(RaftGroupError::Corrupt(format!(
                "{file}: entry {} after last entry {}",
                entry.index,
                self.last_index()
            )));
        }
        let keep = (entry.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.push(entry);
        Ok(())
    }

    fn bootstrap(&mut self, voters: &[u64]) -> Result<(), RaftGroupError> {
        let mut metadata = SnapshotMetadata {
            index: 1,
            term: 1,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(ConfState::from((voters.to_vec(), Vec::<u64>::new())));
        self.snapshot = Snapshot::default();
        self.snapshot.set_metadata(metadata);
        self.entries.clear();
        self.hard_state.term = 1;
        self.hard_state.commit = 1;
        self.rotate()
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    pub fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |entry| entry.index)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The latest snapshot (index 0 when there is none).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Entries held (and on disk) since the latest snapshot.
    pub fn entries_since_snapshot(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Whether raft needs a newer snapshot than the stored one (see `snapshot`); cleared
    /// by the next compaction.
    pub fn snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.get()
    }

    pub fn has_failed(&self) -> bool {
        self.failed || self.log.is_none()
    }

    fn live_log(&mut self) -> Result<&mut RecordLog<D>, RaftGroupError> {
        if self.failed {
            return Err(RaftGroupError::Failed);
        }
        self.log.as_mut().ok_or(RaftGroupError::Failed)
    }

    /// Runs a disk step; any error stops the storage for good.
    fn guard<T>(
        &mut self,
        step: impl FnOnce(&mut Self) -> Result<T, RaftGroupError>,
    ) -> Result<T, RaftGroupError> {
        if self.has_failed() {
            return Err(RaftGroupError::Failed);
        }
        let result = step(self);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Appends a record, committing the batch first when it is full.
    fn append_record(log: &mut RecordLog<D>, payload: &[u8]) -> Result<(), RaftGroupError> {
        match log.append(payload) {
            Ok(_) => Ok(()),
            Err(LogError::BatchFull { .. }) => {
                log.commit()?;
                log.append(payload)?;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Appends entries from raft (a `Ready`'s): an entry at index i replaces every entry
    /// at or after i. Durable after the next [`RaftStorage::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), RaftGroupError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            first.index > self.snapshot_index() && first.index <= self.last_index() + 1,
            "raft appends {} to a log of [{}, {}]",
            first.index,
            self.first_index(),
            self.last_index()
        );
        self.guard(|storage| {
            let log = storage.live_log()?;
            for entry in entries {
                Self::append_record(log, &encode_entry_record(entry))?;
            }
            Ok(())
        })?;
        let keep = (first.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        self.check_invariants();
        Ok(())
    }

    /// Records a new hard state. Durable after the next [`RaftStorage::sync`].
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), RaftGroupError> {
        self.guard(|storage| {
            let log = storage.live_log()?;
            Self::append_record(log, &encode_hard_state_record(hard_state))
        })?;
        self.hard_state = hard_state.clone();
        Ok(())
    }

    /// Makes every record so far durable (one write, one fsync). A failure stops the
    /// storage for good: nothing written before it may ever be acknowledged.
    pub fn sync(&mut self) -> Result<(), RaftGroupError> {
        self.guard(|storage| {
            let log = storage.live_log()?;
            if mutant::active(Mutant::SkipSync) {
                log.write()?;
                return Ok(());
            }
            #[cfg(test)]
            if mutant::active(Mutant::IgnoreSyncFailure) {
                log.set_retry_after_sync_failure(true);
                log.write()?;
                let _ = log.sync();
                return Ok(());
            }
            log.commit()?;
            Ok(())
        })
    }

    /// Installs a snapshot raft received from the leader: the whole log is replaced by
    /// it (raft installs one only when the log does not match at its index). Durable on
    /// return.
    pub fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), RaftGroupError> {
        let metadata = snapshot.get_metadata();
        if metadata.index < self.first_index() {
            return Err(RaftGroupError::Raft(raft::Error::Store(
                StorageError::SnapshotOutOfDate,
            )));
        }
        self.hard_state.term = self.hard_state.term.max(metadata.term);
        self.hard_state.commit = metadata.index;
        self.snapshot = snapshot.clone();
        self.entries.clear();
        self.guard(|storage| storage.rotate())?;
        self.check_invariants();
        Ok(())
    }

    /// Replaces the log before `index` by a snapshot of the state machine at `index`
    /// (which must be applied, hence durable and committed). Durable on return.
    pub fn compact(
        &mut self,
        index: u64,
        conf_state: ConfState,
        data: Bytes,
    ) -> Result<(), RaftGroupError> {
        let invalid = |reason: String| RaftGroupError::InvalidCompaction { index, reason };
        if index <= self.snapshot_index() {
            // Nothing newer to store; raft asks again if it still needs more.
            self.snapshot_wanted.set(false);
            return Ok(());
        }
        if index > self.hard_state.commit || index > self.last_index() {
            return Err(invalid(format!(
                "beyond commit {} / last index {}",
                self.hard_state.commit,
                self.last_index()
            )));
        }
        let term = self.entry_term(index)?;
        let mut metadata = SnapshotMetadata {
            index,
            term,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(conf_state);
        let max = snapshot_bytes_max(&metadata);
        if data.len() > max {
            return Err(RaftGroupError::SnapshotTooLarge {
                bytes: data.len(),
                max,
            });
        }
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(metadata);
        snapshot.data = data;
        let keep_from = (index + 1 - self.first_index()) as usize;
        let previous_snapshot = std::mem::replace(&mut self.snapshot, snapshot);
        let previous_entries = self.entries.clone();
        self.entries.drain(..keep_from);
        if let Err(error) = self.guard(|storage| storage.rotate()) {
            // Memory stays as it was on disk before (the storage is dead anyway).
            self.snapshot = previous_snapshot;
            self.entries = previous_entries;
            return Err(error);
        }
        self.snapshot_wanted.set(false);
        self.check_invariants();
        Ok(())
    }

    /// Writes the next log file (hard state and every entry held), switches the snapshot
    /// file to it and removes the old one. See the module doc for the crash argument.
    fn rotate(&mut self) -> Result<(), RaftGroupError> {
        let old = self.log.take().ok_or(RaftGroupError::Failed)?;
        let old_name = log_file(self.generation);
        let generation = self.generation + 1;
        let name = log_file(generation);
        let mut disk = old.into_disk();
        if disk.list()?.contains(&name) {
            disk.remove(&name)?;
        }
        let opened = RecordLog::open(disk, &name)?;
        let mut log = opened.log;
        if !opened.records.is_empty() {
            return Err(RaftGroupError::Corrupt(format!(
                "{name} has records right after it was removed"
            )));
        }
        Self::append_record(&mut log, &encode_hard_state_record(&self.hard_state))?;
        for entry in &self.entries {
            Self::append_record(&mut log, &encode_entry_record(entry))?;
        }
        log.commit()?;
        let file = SnapshotFile {
            generation,
            metadata: self.snapshot.get_metadata().clone(),
            data: self.snapshot.data.clone(),
        };
        atomic_file::write_bounded(
            log.disk_mut(),
            SNAPSHOT_FILE,
            &encode_snapshot_file(&file),
            RAFT_SNAPSHOT_FILE_BYTES_MAX,
        )?;
        let disk = log.disk_mut();
        if disk.list()?.contains(&old_name) {
            disk.remove(&old_name)?;
            disk.sync_dir()?;
        }
        self.log = Some(log);
        self.generation = generation;
        Ok(())
    }

    /// The term of the entry at `index` (the snapshot's index included).
    fn entry_term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if index < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(index - self.first_index()) as usize].term)
    }

    fn check_invariants(&self) {
        let first = self.first_index();
        for (offset, entry) in self.entries.iter().enumerate() {
            assert_eq!(entry.index, first + offset as u64, "entries are dense");
        }
        assert!(self.hard_state.commit >= self.snapshot_index());
        assert!(self.hard_state.term >= self.snapshot.get_metadata().term);
    }
}

impl<D: Disk> raft::Storage for RaftStorage<D> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.snapshot.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let first = self.first_index();
        let mut entries = self.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        self.entry_term(index)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(RaftStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftStorage::last_index(self))
    }

    /// The stored snapshot, unless it cannot serve: older than `request_index`, or taken
    /// before `to` joined (the follower would refuse a snapshot whose conf state does not
    /// name it, and the log it needs is gone). Then raft is told to retry later and the
    /// host is asked, through `snapshot_wanted`, to compact now.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let conf_state = self.snapshot.get_metadata().get_conf_state();
        let names_to = conf_state.voters.contains(&to) || conf_state.learners.contains(&to);
        if self.snapshot_index() == 0 || self.snapshot_index() < request_index || !names_to {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{DiskConfig, SimDisk, SimRng};
    use raft::Storage as _;

    fn entry(index: u64, term: u64, data: &'static [u8]) -> Entry {
        Entry {
            index,
            term,
            data: Bytes::from_static(data),
            ..Entry::default()
        }
    }

    fn reopen(disk: &SimDisk) -> RaftStorage<SimDisk> {
        disk.crash();
        RaftStorage::open(disk.handle(), &[]).unwrap()
    }

    #[test]
    fn bootstrap_append_truncate_compact_recover() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(1));
        let mut storage = RaftStorage::open(disk.handle(), &[1]).unwrap();
        assert_eq!((storage.first_index(), storage.last_index()), (2, 1));
        assert_eq!(storage.term(1).unwrap(), 1);
        let state = storage.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![1]);

        storage
            .append(&[entry(2, 1, b"a"), entry(3, 1, b"b"), entry(4, 1, b"c")])
            .unwrap();
        // A conflicting suffix from a new leader replaces 3 and 4.
        storage.append(&[entry(3, 2, b"B")]).unwrap();
        let hard_state = HardState {
            term: 2,
            vote: 1,
            commit: 3,
            ..HardState::default()
        };
        storage.set_hard_state(&hard_state).unwrap();
        storage.sync().unwrap();

        let mut storage = reopen(&disk);
        assert_eq!(storage.last_index(), 3);
        assert_eq!(storage.term(3).unwrap(), 2);
        assert_eq!(storage.hard_state(), &hard_state);
        let entries = storage.entries(2, 4, None, GetEntriesContext::empty(false));
        assert_eq!(entries.unwrap()[1].data, Bytes::from_static(b"B"));

        // Initial voters are ignored once there is state.
        storage
            .compact(
                2,
                ConfState::from((vec![1, 2], vec![])),
                Bytes::from_static(b"s2"),
            )
            .unwrap();
        assert_eq!(storage.first_index(), 3);
        assert!(
            storage
                .entries(2, 3, None, GetEntriesContext::empty(false))
                .is_err()
        );
        let storage = {
            disk.crash();
            RaftStorage::open(disk.handle(), &[7, 8]).unwrap()
        };
        assert_eq!((storage.first_index(), storage.last_index()), (3, 3));
        assert_eq!(
            storage.snapshot(0, 2).unwrap().data,
            Bytes::from_static(b"s2")
        );
        assert_eq!(
            storage.initial_state().unwrap().conf_state.voters,
            vec![1, 2]
        );
        let logs: Vec<String> = disk
            .handle()
            .list()
            .unwrap()
            .into_iter()
            .filter(|name| name.starts_with(LOG_FILE_PREFIX))
            .collect();
        assert_eq!(logs.len(), 1, "{logs:?}");
    }

    #[test]
    fn unsynced_records_may_vanish_but_synced_ones_stay() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(2));
        let mut storage = RaftStorage::open(disk.handle(), &[]).unwrap();
        storage.append(&[entry(1, 1, b"x")]).unwrap();
        storage.sync().unwrap();
        storage.append(&[entry(2, 1, b"y")]).unwrap();
        let storage = reopen(&disk);
        assert_eq!(storage.last_index(), 1);
    }

    #[test]
    fn a_snapshot_naming_a_missing_log_is_corruption() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(3));
        let storage = RaftStorage::open(disk.handle(), &[1]).unwrap();
        drop(storage);
        let mut handle = disk.handle();
        let name = log_file(1);
        handle.remove(&name).unwrap();
        handle.sync_dir().unwrap();
        assert!(matches!(
            RaftStorage::open(disk.handle(), &[1]),
            Err(RaftGroupError::Corrupt(_))
        ));
    }

    /// A disk that fails every operation once its budget of operations is spent: a
    /// process that dies at that point of a rotation (before a crash of the disk).
    #[derive(Debug, Clone)]
    struct FailingDisk {
        inner: SimDisk,
        budget: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl FailingDisk {
        fn spend(&self, op: crate::io::DiskOp, name: &str) -> Result<(), crate::io::DiskError> {
            if self.budget.get() == 0 {
                return Err(crate::io::DiskError::Io {
                    op,
                    name: name.to_string(),
                    source: std::io::Error::other("budget spent"),
                });
            }
            self.budget.set(self.budget.get() - 1);
            Ok(())
        }
    }

    impl Disk for FailingDisk {
        fn create(&mut self, name: &str) -> Result<(), crate::io::DiskError> {
            self.spend(crate::io::DiskOp::Create, name)?;
            self.inner.create(name)
        }
        fn append(&mut self, name: &str, data: &[u8]) -> Result<u64, crate::io::DiskError> {
            self.spend(crate::io::DiskOp::Append, name)?;
            self.inner.append(name, data)
        }
        fn write_at(
            &mut self,
            name: &str,
            offset: u64,
            data: &[u8],
        ) -> Result<(), crate::io::DiskError> {
            self.spend(crate::io::DiskOp::WriteAt, name)?;
            self.inner.write_at(name, offset, data)
        }
        fn read_at(
            &self,
            name: &str,
            offset: u64,
            len: usize,
        ) -> Result<Vec<u8>, crate::io::DiskError> {
            self.inner.read_at(name, offset, len)
        }
        fn read_all(&self, name: &str) -> Result<Vec<u8>, crate::io::DiskError> {
            self.inner.read_all(name)
        }
        fn len(&self, name: &str) -> Result<u64, crate::io::DiskError> {
            self.inner.len(name)
        }
        fn truncate(&mut self, name: &str, len: u64) -> Result<(), crate::io::DiskError> {
            self.spend(crate::io::DiskOp::Truncate, name)?;
            self.inner.truncate(name, len)
        }
        fn sync(&mut self, name: &str) -> Result<(), crate::io::DiskError> {
            self.spend(crate::io::DiskOp::Sync, name)?;
            self.inner.sync(name)
        }
        fn sync_dir(&mut self) -> Result<(), crate::io::DiskError> {
            self.spend(crate::io::DiskOp::SyncDir, "")?;
            self.inner.sync_dir()
        }
        fn rename(&mut self, from: &str, to: &str) -> Result<(), crate::io::DiskError> {
            self.spend(crate::io::DiskOp::Rename, from)?;
            self.inner.rename(from, to)
        }
        fn remove(&mut self, name: &str) -> Result<(), crate::io::DiskError> {
            self.spend(crate::io::DiskOp::Remove, name)?;
            self.inner.remove(name)
        }
        fn list(&self) -> Result<Vec<String>, crate::io::DiskError> {
            self.inner.list()
        }
    }

    /// A compaction interrupted after every possible number of disk operations, then a
    /// power loss (keeping a random prefix of what was not synced, maybe torn): recovery
    /// always finds the old snapshot with the whole log, or the new one with the log after
    /// it, and never loses a synced entry or the hard state.
    #[test]
    fn a_rotation_interrupted_anywhere_recovers_old_or_new() {
        let mut completed = false;
        for budget in 0..200u64 {
            for seed in 0..8 {
                let config = DiskConfig {
                    writeback_probability: 0.5,
                    torn_write_probability: 0.5,
                    ..DiskConfig::reliable()
                };
                let disk = SimDisk::new(config, SimRng::new(seed));
                let spent = std::rc::Rc::new(std::cell::Cell::new(u64::MAX));
                let failing = FailingDisk {
                    inner: disk.handle(),
                    budget: std::rc::Rc::clone(&spent),
                };
                let mut storage = RaftStorage::open(failing, &[1, 2]).unwrap();
                let entries: Vec<Entry> = (2..=10).map(|index| entry(index, 2, b"e")).collect();
                storage.append(&entries).unwrap();
                let hard_state = HardState {
                    term: 3,
                    vote: 2,
                    commit: 8,
                    ..HardState::default()
                };
                storage.set_hard_state(&hard_state).unwrap();
                storage.sync().unwrap();
                spent.set(budget);
                let result = storage.compact(
                    6,
                    ConfState::from((vec![1, 2], vec![])),
                    Bytes::from_static(b"six"),
                );
                completed |= result.is_ok();
                drop(storage);
                disk.crash();
                let recovered = RaftStorage::open(disk.handle(), &[])
                    .unwrap_or_else(|error| panic!("budget {budget} seed {seed}: {error}"));
                let snapshot = recovered.latest_snapshot();
                let index = snapshot.get_metadata().index;
                assert!(
                    index == 1 || index == 6,
                    "budget {budget}: snapshot at {index}"
                );
                if index == 6 {
                    assert_eq!(snapshot.data, Bytes::from_static(b"six"));
                }
                assert_eq!(recovered.last_index(), 10, "budget {budget} seed {seed}");
                assert_eq!(recovered.hard_state(), &hard_state, "budget {budget}");
                let logs = disk
                    .handle()
                    .list()
                    .unwrap()
                    .into_iter()
                    .filter(|name| name.starts_with(LOG_FILE_PREFIX))
                    .count();
                assert_eq!(logs, 1, "budget {budget}: one log file after recovery");
            }
        }
        assert!(completed, "some budget lets the compaction finish");
    }
}
