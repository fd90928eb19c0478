//! Installing a snapshot into a region directory: a new replica, or one too far behind
//! for the WAL, takes a leader's sealed files, MANIFEST and MODS and drops its own WAL,
//! so that it opens at the snapshot's index and the leader's WAL tail applies after it.
//!
//! Crash safety: a staging directory, then a marker file, then idempotent moves.
//!
//! ```text
//!  1 build   region/install.staging/{sealed/*, MODS, MANIFEST}   (links or fsynced copies,
//!            fsync of the directories)                             crash: discarded
//!  2 commit  region/INSTALL (INSTALL.tmp, fsync, rename, dir fsync) ── the point of no return
//!  3 roll forward, each step idempotent (crash: the next open redoes the rest):
//!            remove region/wal
//!            if staging/sealed exists: remove region/sealed, rename staging/sealed over it
//!            if staging/MODS exists: rename it over region/MODS
//!            if staging/MANIFEST exists: rename it over region/MANIFEST
//!            remove the staging directory, then the marker (dir fsync after each)
//! ```
//!
//! [`recover`] runs at the start of every `Region::open`: with the marker it finishes the
//! roll forward; without it, it removes a staging directory left by an interrupted build.
//! A region therefore opens with either its old state or exactly the snapshot's, never a
//! mix. The snapshot always brings a MODS (empty if it had none), so "staging/MODS is
//! gone" can only mean it was moved.

use std::io::Write;
use std::path::Path;

use super::Region;
use super::deletion;
use super::manifest::{MANIFEST_NAME, Manifest, ReplaceOps, replace_file, sync_dir};
use crate::error::{ReplicationError, Result, StorageError};
use crate::file_system::{FileSystem, StdFileSystem};

/// The directory an install is built in, inside the region directory.
const STAGING_NAME: &str = "install.staging";
/// Present (and durable) once the staging directory is complete: roll forward.
const MARKER_NAME: &str = "INSTALL";
/// What [`replace_file`] writes the marker through (`INSTALL.tmp`, then renamed).
const MARKER_TMP_NAME: &str = "INSTALL.tmp";
const MARKER_CONTENT: &[u8] = b"IOTDB snapshot install in progress\n";

/// Counts the steps of an install so a test can stop it after any of them, as a crash
/// would.
struct Steps {
    crash_after: Option<usize>,
    done: usize,
}

impl Steps {
    /// Records a finished step; whether the (simulated) crash happens now.
    fn crashed(&mut self) -> bool {
        self.done += 1;
        self.crash_after.is_some_and(|n| self.done >= n)
    }
}

impl Region {
    /// Replaces the sealed files, MANIFEST and MODS of the region in `region_dir` (closed:
    /// no `Region` may be open on it; or a fresh directory) with those of `snapshot_dir`
    /// (a finished [`crate::transfer::SnapshotWriter`] directory or a
    /// [`Region::snapshot`]), and removes its WAL. `Region::open` afterwards has next
    /// index = the snapshot's `wal_index` + 1. `snapshot_dir` is left as it was (its
    /// files are hard-linked where the file system allows). Crash-safe at every step (the
    /// module doc).
    pub fn install_snapshot(region_dir: &Path, snapshot_dir: &Path) -> Result<()> {
        install(&StdFileSystem, region_dir, snapshot_dir, None)
    }
}

/// The install through `fs`, stopping after `crash_after` steps when given (tests).
pub(super) fn install(
    fs: &dyn FileSystem,
    region_dir: &Path,
    snapshot_dir: &Path,
    crash_after: Option<usize>,
) -> Result<()> {
    let manifest = load_snapshot_manifest(fs, snapshot_dir)?;
    let mods = deletion::load_in(fs, snapshot_dir)?;
    fs.create_dir_all(region_dir)
        .map_err(|e| StorageError::io("create region directory", region_dir, e))?;
    // An earlier install that crashed after its commit finishes first; one that crashed
    // before is discarded.
    recover(fs, region_dir)?;
    let mut steps = Steps {
        crash_after,
        done: 0,
    };

    let staging = region_dir.join(STAGING_NAME);
    let staging_sealed = staging.join("sealed");
    fs.create_dir_all(&staging_sealed)
        .map_err(|e| StorageError::io("create install staging", &staging_sealed, e))?;
    for entry in &manifest.files {
        let name = entry.file_name();
        link_or_copy(
            fs,
            &snapshot_dir.join("sealed").join(&name),
            &staging_sealed.join(&name),
        )?;
    }
    sync_dir(fs, &staging_sealed)?;
    deletion::store_in(fs, &staging, &mods)?;
    manifest.store_in(fs, &staging)?;
    sync_dir(fs, region_dir)?;
    if steps.crashed() {
        return Ok(());
    }

    // The commit point: the marker, durable (`INSTALL.tmp`, fdatasync, rename, dir fsync).
    let ops = ReplaceOps {
        write: "write install marker",
        rename: "commit install marker",
    };
    replace_file(fs, region_dir, MARKER_NAME, MARKER_CONTENT, ops)?;
    if steps.crashed() {
        return Ok(());
    }
    roll_forward(fs, region_dir, &mut steps)
}

/// Finishes or discards an interrupted install in `region_dir` (every `Region::open`
/// calls it first).
pub(super) fn recover(fs: &dyn FileSystem, region_dir: &Path) -> Result<()> {
    let staging = region_dir.join(STAGING_NAME);
    if exists(fs, &region_dir.join(MARKER_NAME))? {
        tracing::info!(dir = %region_dir.display(), "finishing an interrupted snapshot install");
        return roll_forward(
            fs,
            region_dir,
            &mut Steps {
                crash_after: None,
                done: 0,
            },
        );
    }
    remove_file_if_exists(fs, &region_dir.join(MARKER_TMP_NAME))?;
    if exists(fs, &staging)? {
        tracing::info!(dir = %region_dir.display(), "discarding an interrupted snapshot install");
        fs.remove_dir_all(&staging)
            .map_err(|e| StorageError::io("remove install staging", &staging, e))?;
        sync_dir(fs, region_dir)?;
    }
    Ok(())
}

fn exists(fs: &dyn FileSystem, path: &Path) -> Result<bool> {
    fs.exists(path)
        .map_err(|e| StorageError::io("check install file", path, e))
}

/// The committed part of an install; every step may be redone after a crash.
fn roll_forward(fs: &dyn FileSystem, region_dir: &Path, steps: &mut Steps) -> Result<()> {
    let staging = region_dir.join(STAGING_NAME);
    let wal = region_dir.join("wal");
    if exists(fs, &wal)? {
        fs.remove_dir_all(&wal)
            .map_err(|e| StorageError::io("remove old WAL", &wal, e))?;
        sync_dir(fs, region_dir)?;
    }
    if steps.crashed() {
        return Ok(());
    }

    let staged_sealed = staging.join("sealed");
    let sealed = region_dir.join("sealed");
    if exists(fs, &staged_sealed)? {
        if exists(fs, &sealed)? {
            fs.remove_dir_all(&sealed)
                .map_err(|e| StorageError::io("remove old sealed files", &sealed, e))?;
        }
        if steps.crashed() {
            return Ok(());
        }
        fs.rename(&staged_sealed, &sealed)
            .map_err(|e| StorageError::io("move snapshot files", &sealed, e))?;
        sync_dir(fs, region_dir)?;
    }
    if steps.crashed() {
        return Ok(());
    }

    for name in [deletion::MODS_NAME, MANIFEST_NAME] {
        let staged = staging.join(name);
        if exists(fs, &staged)? {
            let target = region_dir.join(name);
            fs.rename(&staged, &target)
                .map_err(|e| StorageError::io("move snapshot metadata", &target, e))?;
            sync_dir(fs, region_dir)?;
        }
        if steps.crashed() {
            return Ok(());
        }
    }

    if exists(fs, &staging)? {
        fs.remove_dir_all(&staging)
            .map_err(|e| StorageError::io("remove install staging", &staging, e))?;
        sync_dir(fs, region_dir)?;
    }
    if steps.crashed() {
        return Ok(());
    }
    remove_file_if_exists(fs, &region_dir.join(MARKER_NAME))?;
    sync_dir(fs, region_dir)
}

/// The snapshot's manifest, after checking that it exists and every file it names does.
fn load_snapshot_manifest(fs: &dyn FileSystem, snapshot_dir: &Path) -> Result<Manifest> {
    if !exists(fs, &snapshot_dir.join(MANIFEST_NAME))? {
        return Err(ReplicationError::InvalidSnapshot(format!(
            "{} has no {MANIFEST_NAME}",
            snapshot_dir.display()
        ))
        .into());
    }
    let manifest = Manifest::load_in(fs, snapshot_dir)?;
    for entry in &manifest.files {
        let path = snapshot_dir.join("sealed").join(entry.file_name());
        if !exists(fs, &path)? {
            return Err(ReplicationError::InvalidSnapshot(format!(
                "the manifest names {} but it is missing",
                path.display()
            ))
            .into());
        }
    }
    Ok(manifest)
}

/// Hard-links `from` to `to`, or copies and fdatasyncs it where links are impossible (a
/// snapshot and an install share sealed files this way; the caller fsyncs the directory).
pub(super) fn link_or_copy(fs: &dyn FileSystem, from: &Path, to: &Path) -> Result<()> {
    remove_file_if_exists(fs, to)?;
    if fs.hard_link(from, to).is_ok() {
        return Ok(());
    }
    let copy = || -> std::io::Result<()> {
        let bytes = fs.read(from)?;
        let mut file = fs.create_new(to)?;
        file.write_all(&bytes)?;
        file.sync_data()
    };
    copy().map_err(|e| StorageError::io("copy snapshot file", to, e))
}

fn remove_file_if_exists(fs: &dyn FileSystem, path: &Path) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::RegionConfig;
    use crate::file_system::faulty::{Fault, FaultKind, FaultyFileSystem};
    use crate::types::{SeriesKey, Tablet, TabletColumn, TimeRange, Values};

    fn run<F: std::future::Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    fn tablet(first: i64, rows: i64, value: i64) -> Tablet {
        Tablet {
            device: Arc::from("root.install.d0"),
            timestamps: (first..first + rows).collect(),
            columns: vec![TabletColumn {
                measurement: Arc::from("s0"),
                values: Values::Int64(vec![value; rows as usize]),
                nulls: None,
            }],
        }
    }

    /// What a region in `dir` holds: (last index, timestamps, values of the series).
    async fn state_of(dir: &Path) -> (u64, Vec<i64>, Vec<String>) {
        let region = Region::open(dir, RegionConfig::default()).expect("open");
        let key = SeriesKey::new("root.install.d0", "s0");
        let points = region
            .scan(&key, TimeRange::ALL)
            .expect("scan")
            .expect("the series exists");
        let values = (0..points.len())
            .map(|i| format!("{:?}", points.values.get(i)))
            .collect();
        let state = (region.info().last_index, points.timestamps, values);
        region.close(false).await.expect("close");
        state
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("list") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).expect("copy");
            }
        }
    }

    /// An old replica (flushed files, MODS, WAL records past the flush) in `dir/old` and
    /// a leader's snapshot in `dir/snapshot`, with what a region opened on each holds.
    struct Prepared {
        old_dir: std::path::PathBuf,
        snapshot_dir: std::path::PathBuf,
        old_state: (u64, Vec<i64>, Vec<String>),
        new_state: (u64, Vec<i64>, Vec<String>),
    }

    fn prepare(dir: &Path) -> Prepared {
        let old_dir = dir.join("old");
        let snapshot_dir = dir.join("snapshot");
        run(async {
            let old = Region::open(&old_dir, RegionConfig::default()).expect("open");
            old.write_durable(&tablet(0, 10, 1)).await.expect("write");
            old.flush().await.expect("flush");
            let key = SeriesKey::new("root.install.d0", "s0");
            old.delete(&[key], TimeRange::new(0, 2)).expect("delete");
            old.write_durable(&tablet(100, 5, 1)).await.expect("write");
            old.close(false).await.expect("close");

            let leader = Region::open(&dir.join("leader"), RegionConfig::default()).expect("open");
            for i in 0..3 {
                leader
                    .write_durable(&tablet(i * 20, 20, 2))
                    .await
                    .expect("write");
            }
            leader.flush().await.expect("flush");
            leader.snapshot(&snapshot_dir).expect("snapshot");
            leader.close(false).await.expect("close");
        });
        let old_state = run(async {
            let copy = dir.join("old-copy");
            copy_dir(&old_dir, &copy);
            state_of(&copy).await
        });
        let new_state = run(state_of(&snapshot_dir));
        assert_ne!(old_state, new_state);
        Prepared {
            old_dir,
            snapshot_dir,
            old_state,
            new_state,
        }
    }

    /// An install stopped after any step (a crash) leaves the region opening with its
    /// old state or the snapshot's, the latter once the marker is durable; an
    /// interrupted install is finished or discarded by the open.
    #[test]
    fn a_crash_at_any_step_of_an_install_opens_old_or_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prepared = prepare(dir.path());
        for crash_after in 1..=9 {
            let region_dir = dir.path().join(format!("crash-{crash_after}"));
            copy_dir(&prepared.old_dir, &region_dir);
            install(
                &StdFileSystem,
                &region_dir,
                &prepared.snapshot_dir,
                Some(crash_after),
            )
            .expect("install");
            let state = run(state_of(&region_dir));
            if crash_after == 1 {
                assert_eq!(state, prepared.old_state, "crash after step {crash_after}");
            } else {
                assert_eq!(state, prepared.new_state, "crash after step {crash_after}");
            }
            assert!(!region_dir.join(MARKER_NAME).exists());
            assert!(!region_dir.join(STAGING_NAME).exists());
        }
    }

    /// A fault at any file operation of an install, through the fault-injecting file
    /// system: a crash followed by a power loss (what no fsync made durable is gone) at
    /// each, and EIO with the process stopping or ENOSPC and a power loss at alternating
    /// ones. The open that follows finishes or discards
    /// the install: the region holds the old state or the snapshot's, never a mix, and the
    /// snapshot's once the install returned `Ok`.
    #[test]
    fn a_fault_at_any_operation_of_an_install_opens_old_or_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prepared = prepare(dir.path());
        let counting = FaultyFileSystem::new(&dir.path().join("backup-count")).expect("fs");
        let count_dir = dir.path().join("count");
        copy_dir(&prepared.old_dir, &count_dir);
        install(&counting, &count_dir, &prepared.snapshot_dir, None).expect("install");
        let count = counting.operation_count();
        assert!(count >= 20, "{:?}", counting.operations());
        for index in 0..count {
            let other = if index % 2 == 0 {
                (FaultKind::Io, false)
            } else {
                (FaultKind::NoSpace, true)
            };
            for (kind, power_loss) in [(FaultKind::Crash, true), other] {
                let name = format!("{index}-{kind:?}");
                let region_dir = dir.path().join(format!("fault-{name}"));
                copy_dir(&prepared.old_dir, &region_dir);
                let fs =
                    FaultyFileSystem::new(&dir.path().join(format!("backup-{name}"))).expect("fs");
                fs.inject(Fault::at(index as u64, kind));
                let installed = install(&fs, &region_dir, &prepared.snapshot_dir, None);
                if power_loss {
                    fs.power_loss().expect("power loss");
                }
                let state = run(state_of(&region_dir));
                let what = format!(
                    "{kind:?} at operation {index} ({:?}), power loss {power_loss}",
                    counting.operations().get(index)
                );
                if installed.is_ok() {
                    assert_eq!(state, prepared.new_state, "{what}");
                } else {
                    assert!(
                        state == prepared.old_state || state == prepared.new_state,
                        "{what}: neither old nor new: {state:?}"
                    );
                }
                assert!(!region_dir.join(MARKER_NAME).exists(), "{what}");
                assert!(!region_dir.join(STAGING_NAME).exists(), "{what}");
            }
        }
    }
}
