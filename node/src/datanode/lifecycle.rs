//! Region replica lifecycle on a DataNode: the directories on disk are reconciled against
//! the route table at start-up, so a drop that a crash (or a failed `remove_dir_all`)
//! interrupted is finished, whatever step it stopped at.
//!
//! The ConfigNode's state is the record of intent: a region group that a finished
//! `DeleteDatabase` procedure forgot has no replica anywhere, and group ids are never
//! reused, so a `region-<id>` directory whose id the ConfigNode issued but no longer
//! knows is the leftover of a drop. A directory whose id the ConfigNode never issued
//! means the ConfigNode state is older than the DataNode's data (a restored or replaced
//! ConfigNode directory): that is never "repaired" by deleting data; it is reported and
//! left alone.
//!
//! Creating a replica needs no record: opening a region creates its directory, and the
//! owner shard opens every region the route table gives it at start-up.

use std::collections::BTreeSet;
use std::path::Path;

/// What reconciling one directory of region replicas did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Region ids whose leftover directory was removed.
    pub removed: Vec<u32>,
    /// Region ids the ConfigNode never issued (kept, reported).
    pub unknown: Vec<u32>,
}

/// The region id of a directory named `region-<id>`.
fn region_id(name: &str) -> Option<u32> {
    name.strip_prefix("region-")?.parse().ok()
}

/// Removes every `region-<id>` directory under `dir` whose id is below `next_region_id`
/// (issued) but not in `live`; reports ids at or above `next_region_id`. A missing `dir`
/// holds nothing. Errors name the directory; a removal that fails is logged and retried at
/// the next start.
pub fn reconcile_region_dirs(
    dir: &Path,
    live: &BTreeSet<u32>,
    next_region_id: u32,
    kind: &str,
) -> std::io::Result<Reconciled> {
    let mut reconciled = Reconciled::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(reconciled),
        Err(e) => return Err(e),
    };
    let mut found: Vec<(u32, std::path::PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if let Some(id) = entry.file_name().to_str().and_then(region_id) {
            found.push((id, entry.path()));
        }
    }
    found.sort();
    for (id, path) in found {
        if live.contains(&id) {
            continue;
        }
        if id >= next_region_id {
            tracing::error!(
                region = id,
                kind,
                dir = %path.display(),
                next_region_id,
                "a region directory the ConfigNode never issued: its state is older than this \
                 DataNode's data; the directory is kept"
            );
            reconciled.unknown.push(id);
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::warn!(
                    region = id,
                    kind,
                    dir = %path.display(),
                    "removed the replica of a dropped region group (a drop interrupted earlier)"
                );
                reconciled.removed.push(id);
            }
            Err(e) => {
                tracing::error!(region = id, kind, dir = %path.display(), error = %e,
                    "removing the replica of a dropped region group failed; retried at the next start");
            }
        }
    }
    Ok(reconciled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_dropped_keeps_live_and_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        for id in [0, 1, 2, 7] {
            std::fs::create_dir_all(dir.path().join(format!("region-{id}")).join("wal"))
                .expect("mkdir");
        }
        std::fs::create_dir_all(dir.path().join("other")).expect("mkdir");
        std::fs::write(dir.path().join("region-3"), b"a file, not a replica").expect("write");
        let live: BTreeSet<u32> = [1].into_iter().collect();
        let reconciled = reconcile_region_dirs(dir.path(), &live, 5, "data").expect("reconcile");
        assert_eq!(reconciled.removed, vec![0, 2]);
        assert_eq!(reconciled.unknown, vec![7]);
        assert!(dir.path().join("region-1").exists());
        assert!(dir.path().join("region-7").exists());
        assert!(dir.path().join("other").exists());
        assert!(dir.path().join("region-3").exists());
        assert!(!dir.path().join("region-0").exists());
        // Idempotent: a second pass changes nothing.
        let again = reconcile_region_dirs(dir.path(), &live, 5, "data").expect("reconcile");
        assert!(again.removed.is_empty());
    }

    #[test]
    fn missing_directory_holds_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reconciled =
            reconcile_region_dirs(&dir.path().join("absent"), &BTreeSet::new(), 9, "data")
                .expect("reconcile");
        assert_eq!(reconciled, Reconciled::default());
    }
}
