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

use std::fs;
use std::io::Write;
use std::path::Path;

use super::Region;
use super::deletion;
use super::manifest::{MANIFEST_NAME, Manifest, sync_dir};
use crate::error::{ReplicationError, Result, StorageError};

/// The directory an install is built in, inside the region directory.
const STAGING_NAME: &str = "install.staging";
/// Present (and durable) once the staging directory is complete: roll forward.
const MARKER_NAME: &str = "INSTALL";
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
        install(region_dir, snapshot_dir, None)
    }
}

/// The install, stopping after `crash_after` steps when given (tests).
pub(super) fn install(
    region_dir: &Path,
    snapshot_dir: &Path,
    crash_after: Option<usize>,
) -> Result<()> {
    let manifest = load_snapshot_manifest(snapshot_dir)?;
    let mods = deletion::load(snapshot_dir)?;
    fs::create_dir_all(region_dir)
        .map_err(|e| StorageError::io("create region directory", region_dir, e))?;
    // An earlier install that crashed after its commit finishes first; one that crashed
    // before is discarded.
    recover(region_dir)?;
    let mut steps = Steps {
        crash_after,
        done: 0,
    };

    let staging = region_dir.join(STAGING_NAME);
    let staging_sealed = staging.join("sealed");
    fs::create_dir_all(&staging_sealed)
        .map_err(|e| StorageError::io("create install staging", &staging_sealed, e))?;
    for entry in &manifest.files {
        let name = entry.file_name();
        link_or_copy(
            &snapshot_dir.join("sealed").join(&name),
            &staging_sealed.join(&name),
        )?;
    }
    sync_dir(&staging_sealed)?;
    deletion::store(&staging, &mods)?;
    manifest.store(&staging)?;
    sync_dir(region_dir)?;
    if steps.crashed() {
        return Ok(());
    }

    let marker_tmp = region_dir.join(MARKER_TMP_NAME);
    let write_marker = || -> std::io::Result<()> {
        let mut file = fs::File::create(&marker_tmp)?;
        file.write_all(MARKER_CONTENT)?;
        file.sync_all()
    };
    write_marker().map_err(|e| StorageError::io("write install marker", &marker_tmp, e))?;
    let marker = region_dir.join(MARKER_NAME);
    fs::rename(&marker_tmp, &marker)
        .map_err(|e| StorageError::io("commit install marker", &marker, e))?;
    sync_dir(region_dir)?;
    if steps.crashed() {
        return Ok(());
    }
    roll_forward(region_dir, &mut steps)
}

/// Finishes or discards an interrupted install in `region_dir` (every `Region::open`
/// calls it first).
pub(super) fn recover(region_dir: &Path) -> Result<()> {
    let staging = region_dir.join(STAGING_NAME);
    if region_dir.join(MARKER_NAME).exists() {
        tracing::info!(dir = %region_dir.display(), "finishing an interrupted snapshot install");
        return roll_forward(
            region_dir,
            &mut Steps {
                crash_after: None,
                done: 0,
            },
        );
    }
    remove_file_if_exists(&region_dir.join(MARKER_TMP_NAME))?;
    if staging.exists() {
        tracing::info!(dir = %region_dir.display(), "discarding an interrupted snapshot install");
        fs::remove_dir_all(&staging)
            .map_err(|e| StorageError::io("remove install staging", &staging, e))?;
        sync_dir(region_dir)?;
    }
    Ok(())
}

/// The committed part of an install; every step may be redone after a crash.
fn roll_forward(region_dir: &Path, steps: &mut Steps) -> Result<()> {
    let staging = region_dir.join(STAGING_NAME);
    let wal = region_dir.join("wal");
    if wal.exists() {
        fs::remove_dir_all(&wal).map_err(|e| StorageError::io("remove old WAL", &wal, e))?;
        sync_dir(region_dir)?;
    }
    if steps.crashed() {
        return Ok(());
    }

    let staged_sealed = staging.join("sealed");
    let sealed = region_dir.join("sealed");
    if staged_sealed.exists() {
        if sealed.exists() {
            fs::remove_dir_all(&sealed)
                .map_err(|e| StorageError::io("remove old sealed files", &sealed, e))?;
        }
        if steps.crashed() {
            return Ok(());
        }
        fs::rename(&staged_sealed, &sealed)
            .map_err(|e| StorageError::io("move snapshot files", &sealed, e))?;
        sync_dir(region_dir)?;
    }
    if steps.crashed() {
        return Ok(());
    }

    for name in [deletion::MODS_NAME, MANIFEST_NAME] {
        let staged = staging.join(name);
        if staged.exists() {
            let target = region_dir.join(name);
            fs::rename(&staged, &target)
                .map_err(|e| StorageError::io("move snapshot metadata", &target, e))?;
            sync_dir(region_dir)?;
        }
        if steps.crashed() {
            return Ok(());
        }
    }

    if staging.exists() {
        fs::remove_dir_all(&staging)
            .map_err(|e| StorageError::io("remove install staging", &staging, e))?;
        sync_dir(region_dir)?;
    }
    if steps.crashed() {
        return Ok(());
    }
    remove_file_if_exists(&region_dir.join(MARKER_NAME))?;
    sync_dir(region_dir)
}

/// The snapshot's manifest, after checking that it exists and every file it names does.
fn load_snapshot_manifest(snapshot_dir: &Path) -> Result<Manifest> {
    if !snapshot_dir.join(MANIFEST_NAME).is_file() {
        return Err(ReplicationError::InvalidSnapshot(format!(
            "{} has no {MANIFEST_NAME}",
            snapshot_dir.display()
        ))
        .into());
    }
    let manifest = Manifest::load(snapshot_dir)?;
    for entry in &manifest.files {
        let path = snapshot_dir.join("sealed").join(entry.file_name());
        if !path.is_file() {
            return Err(ReplicationError::InvalidSnapshot(format!(
                "the manifest names {} but it is missing",
                path.display()
            ))
            .into());
        }
    }
    Ok(manifest)
}

/// Hard-links `from` to `to`, or copies and fsyncs it where links are impossible.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    remove_file_if_exists(to)?;
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let copy = || -> std::io::Result<()> {
        fs::copy(from, to)?;
        fs::File::open(to)?.sync_all()
    };
    copy().map_err(|e| StorageError::io("copy snapshot file", to, e))
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
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
        fs::create_dir_all(to).expect("mkdir");
        for entry in fs::read_dir(from).expect("list") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).expect("copy");
            }
        }
    }

    /// An install stopped after any step (a crash) leaves the region opening with its
    /// old state or the snapshot's, the latter once the marker is durable; an
    /// interrupted install is finished or discarded by the open.
    #[test]
    fn a_crash_at_any_step_of_an_install_opens_old_or_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old_dir = dir.path().join("old");
        let snapshot_dir = dir.path().join("snapshot");
        run(async {
            // The old replica: flushed files, MODS, and WAL records past the flush.
            let old = Region::open(&old_dir, RegionConfig::default()).expect("open");
            old.write_durable(&tablet(0, 10, 1)).await.expect("write");
            old.flush().await.expect("flush");
            let key = SeriesKey::new("root.install.d0", "s0");
            old.delete(&[key], TimeRange::new(0, 2)).expect("delete");
            old.write_durable(&tablet(100, 5, 1)).await.expect("write");
            old.close(false).await.expect("close");

            let leader =
                Region::open(&dir.path().join("leader"), RegionConfig::default()).expect("open");
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
            let copy = dir.path().join("old-copy");
            copy_dir(&old_dir, &copy);
            state_of(&copy).await
        });
        let new_state = run(state_of(&snapshot_dir));
        assert_ne!(old_state, new_state);
        for crash_after in 1..=9 {
            let region_dir = dir.path().join(format!("crash-{crash_after}"));
            copy_dir(&old_dir, &region_dir);
            install(&region_dir, &snapshot_dir, Some(crash_after)).expect("install");
            let state = run(state_of(&region_dir));
            if crash_after == 1 {
                assert_eq!(state, old_state, "crash after step {crash_after}");
            } else {
                assert_eq!(state, new_state, "crash after step {crash_after}");
            }
            assert!(!region_dir.join(MARKER_NAME).exists());
            assert!(!region_dir.join(STAGING_NAME).exists());
        }
    }
}
