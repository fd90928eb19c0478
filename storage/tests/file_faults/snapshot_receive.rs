//! Faults while a replica receives a snapshot (`SnapshotWriter` through the seam).
//!
//! A leader's snapshot (two sealed files, MODS, MANIFEST) is sent in small chunks into a
//! staging directory beside a follower's region. A counting run records every file
//! operation of the receive (listing and creating the staging directory, each file's
//! create, writes and fdatasync, reading MANIFEST and MODS back, the directory fsyncs);
//! then each index gets one fault: a crash followed by a power loss, and one of ENOSPC,
//! EIO and a short write (rotating) followed by a process stop. After each:
//!
//! - the receive failed (a fault at any of its operations is never swallowed), with
//!   `StorageError::Io` from the call that met it and `ReadOnly` from every later call,
//!   `finish` included: a failed writer never describes a snapshot;
//! - installing what the staging directory holds is refused with a typed error, or
//!   installs exactly the leader's snapshot (the fault came after every file was durable):
//!   a partial snapshot is never installed;
//! - the follower's region still reads exactly its own data;
//! - a retry into the emptied staging directory succeeds, and installing it gives the
//!   follower exactly the leader's data.
//!
//! `FILE_FAULT_KINDS=all` runs every kind at every index, each both ways.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use iotdb_storage::file_system::FileSystem;
use iotdb_storage::file_system::faulty::{Fault, FaultyFileSystem, fault_cases, run_fault_cases};
use iotdb_storage::transfer::{SnapshotReader, SnapshotWriter};
use iotdb_storage::{Region, StorageError, TimeRange};

use super::{
    Model, assert_reopens_to_model, block_on, config, delete, temp_dir, write, write_generation,
};

/// Small chunks: each sealed file arrives in several writes.
const CHUNK_BYTES: usize = 256;

/// A follower's region and a leader's snapshot, with what each holds.
struct Prepared {
    _root: tempfile::TempDir,
    follower_dir: std::path::PathBuf,
    snapshot_dir: std::path::PathBuf,
    follower: Model,
    leader: Model,
}

fn prepare() -> Prepared {
    let root = temp_dir();
    let follower_dir = root.path().join("follower");
    let snapshot_dir = root.path().join("snapshot");
    let mut follower = Model::new();
    let mut leader = Model::new();
    block_on(async {
        let region = Region::open(&follower_dir, config(None)).unwrap();
        assert!(write(&region, &mut follower, 0, 50).await);
        region.flush().await.unwrap();
        // Points only the WAL holds: the install must not be the only way they survive.
        assert!(write(&region, &mut follower, 50, 10).await);
        region.close(false).await.unwrap();

        let region = Region::open(&root.path().join("leader"), config(None)).unwrap();
        assert!(write_generation(&region, &mut leader, 0, 100, 7).await);
        region.flush().await.unwrap();
        delete(&region, &mut leader, TimeRange::new(10, 20)).await;
        assert!(write_generation(&region, &mut leader, 100, 100, 7).await);
        region.flush().await.unwrap();
        let info = region.snapshot(&snapshot_dir).unwrap();
        assert_eq!(info.files, 2, "{info:?}");
        region.close(false).await.unwrap();
    });
    Prepared {
        _root: root,
        follower_dir,
        snapshot_dir,
        follower,
        leader,
    }
}

/// Sends the snapshot into `staging` through `file_system`; the first error ends the
/// receive. Checks that the error is typed as the writer promises.
fn receive(
    snapshot_dir: &Path,
    staging: &Path,
    file_system: Arc<dyn FileSystem>,
) -> iotdb_storage::Result<()> {
    block_on(async {
        let mut reader = SnapshotReader::open(snapshot_dir).unwrap();
        let mut writer = SnapshotWriter::with_file_system(file_system, staging)?;
        while let Some(chunk) = reader.next_chunk(CHUNK_BYTES).await.unwrap() {
            let mut wire = Vec::new();
            chunk.encode(&mut wire);
            let chunk = iotdb_storage::Chunk::decode(&Bytes::from(wire)).unwrap();
            let resent = chunk.clone();
            if let Err(error) = writer.accept(chunk).await {
                assert!(
                    matches!(error, StorageError::Io { .. }),
                    "the chunk that met the fault failed with {error:?}"
                );
                let again = writer.accept(resent).await.expect_err("a failed writer");
                assert!(matches!(again, StorageError::ReadOnly(_)), "{again:?}");
                let finished = writer.finish().await.expect_err("a failed writer");
                assert!(
                    matches!(finished, StorageError::ReadOnly(_)),
                    "{finished:?}"
                );
                return Err(error);
            }
        }
        writer.finish().await.map(|info| {
            assert_eq!(info.files, 2, "{info:?}");
        })
    })
}

/// Copies the regular files and directories under `from` to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Installs `staging` into a copy of the follower's region; the copy must then read
/// the leader's data, or (`partial`) the install must be refused and the copy read the
/// follower's data.
fn check_install(prepared: &Prepared, staging: &Path, scratch: &Path, partial: bool, when: &str) {
    let region_dir = scratch.join("installed");
    copy_dir(&prepared.follower_dir, &region_dir);
    match Region::install_snapshot(&region_dir, staging) {
        Ok(()) => assert_reopens_to_model(&region_dir, &prepared.leader, when),
        Err(
            StorageError::Replication(_)
            | StorageError::Corruption { .. }
            | StorageError::Io { .. }
            | StorageError::InvalidArgument(_),
        ) if partial => {
            assert_reopens_to_model(&region_dir, &prepared.follower, when);
        }
        Err(error) => panic!("{when}: the install failed with {error:?}"),
    }
}

/// One receive with `fault` armed; then the checks of the module doc.
fn run(prepared: &Prepared, fault: Fault, power_loss: bool, when: &str) -> bool {
    let scratch = temp_dir();
    let staging = scratch.path().join("staging");
    let fs = FaultyFileSystem::new(&scratch.path().join("backup")).unwrap();
    fs.inject(fault);
    let received = receive(&prepared.snapshot_dir, &staging, Arc::new(fs.clone()));
    let fired = !fs.fired().is_empty();
    assert_eq!(
        received.is_err(),
        fired,
        "{when}: a fault fired but the receive succeeded, or failed without one: {received:?}"
    );
    if power_loss {
        fs.power_loss().unwrap();
    }
    if staging.exists() {
        check_install(prepared, &staging, scratch.path(), fired, when);
    }
    assert_reopens_to_model(&prepared.follower_dir, &prepared.follower, when);

    // The retry, as the DataNode does it: an empty staging directory, a fresh writer.
    if staging.exists() {
        std::fs::remove_dir_all(&staging).unwrap();
    }
    let retried = receive(
        &prepared.snapshot_dir,
        &staging,
        iotdb_storage::file_system::std_file_system(),
    );
    retried.unwrap_or_else(|e| panic!("{when}: the retry failed: {e}"));
    std::fs::remove_dir_all(scratch.path().join("installed")).ok();
    check_install(prepared, &staging, scratch.path(), false, when);
    fired
}

#[test]
fn a_fault_at_every_operation_of_a_snapshot_receive() {
    let prepared = prepare();
    let counting = temp_dir();
    let fs = FaultyFileSystem::new(&counting.path().join("backup")).unwrap();
    let staging = counting.path().join("staging");
    receive(&prepared.snapshot_dir, &staging, Arc::new(fs.clone())).unwrap();
    let operations = fs.operations();
    // list, mkdir, 4 files × (create, writes, fdatasync), 2 reads, 2 directory fsyncs.
    assert!(operations.len() >= 18, "{operations:?}");
    check_install(
        &prepared,
        &staging,
        counting.path(),
        false,
        "the counting run",
    );

    let cases = fault_cases(operations.len(), true);
    let fired = run_fault_cases(
        "snapshot receive",
        &operations,
        &cases,
        |fault, power_loss, when| run(&prepared, fault, power_loss, when),
    );
    // The receive runs on one thread: every armed fault meets its operation.
    assert_eq!(fired, cases.len());
}
