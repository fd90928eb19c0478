//! The format version of a role's directory (`data_dir/confignode`, `data_dir/datanode`),
//! so that an upgrade never meets files it cannot read without saying so.
//!
//! Every role stamps its directory with `format.json` once it holds the directory's lock
//! (a standalone server both): `{"format_version": N, "written_by": "<package version>"}`. A build reads every
//! format version up to its own [`DATA_FORMAT_VERSION`] (upgrading older directories, then
//! stamping them with its own), and refuses a directory stamped with a newer one — naming
//! both versions — instead of misreading it. A directory without the stamp is either new
//! or was written before stamps existed; every such build wrote format 1.
//!
//! Bump [`DATA_FORMAT_VERSION`] with any change to a file this server writes that the
//! previous build could not read back exactly (WAL records, sealed files, manifests, MODS,
//! journals, snapshots), add the upgrade step to [`upgrade`], and keep the previous
//! version's fixture under `tests/fixtures/` opening in `tests/tests/upgrade.rs`.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The format this build writes.
///
/// - 1: the first stamped format.
/// - 2: sealed files of version 3 (the chunk index one zstd block; integer blocks that
///   repeat the previous block's frame in one byte) and compressed journal snapshots
///   (`IOTDBSN2`). A build of format 2 reads format 1's files as they are.
/// - 3: compact WAL records of tablet writes (record kind 3: evenly stepped timestamps as
///   first and step, decimal DOUBLE columns as 16- or 32-bit digits and an exponent). A
///   build of format 3 replays format 2's records (kind 1) as they are.
pub const DATA_FORMAT_VERSION: u32 = 3;

/// The stamp's file name in a role's directory.
pub const FORMAT_FILE: &str = "format.json";

/// The stamp's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatStamp {
    pub format_version: u32,
    /// The package version of the build that wrote the stamp (for the refusal message).
    pub written_by: String,
}

impl FormatStamp {
    /// This build's stamp.
    pub fn current() -> FormatStamp {
        FormatStamp {
            format_version: DATA_FORMAT_VERSION,
            written_by: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Checks the stamp of `data_dir` (a role's directory; the caller holds its lock): a newer format is
/// refused, an older one upgraded, a missing stamp written. Returns the stamp found (or the
/// one written).
pub fn check_and_stamp(data_dir: &Path) -> anyhow::Result<FormatStamp> {
    let path = data_dir.join(FORMAT_FILE);
    let found = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<FormatStamp>(&bytes).with_context(|| {
            format!(
                "{} is damaged (expected {{\"format_version\": N, \"written_by\": \"...\"}})",
                path.display()
            )
        })?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // New, or written before stamps: both format 1.
            FormatStamp {
                format_version: 1,
                written_by: "a build before format stamps".to_string(),
            }
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    if found.format_version > DATA_FORMAT_VERSION {
        bail!(
            "{} holds data format version {} (written by iotdb-server {}); this build \
             (iotdb-server {}) reads format versions up to {DATA_FORMAT_VERSION}: start it \
             with that build or a newer one",
            data_dir.display(),
            found.format_version,
            found.written_by,
            env!("CARGO_PKG_VERSION"),
        );
    }
    if found.format_version == 0 {
        bail!(
            "{} names data format version 0, which never existed",
            path.display()
        );
    }
    upgrade(data_dir, found.format_version)?;
    let current = FormatStamp::current();
    if found != current {
        let bytes = serde_json::to_vec_pretty(&current).context("encoding the format stamp")?;
        crate::confignode::journal::write_atomically(data_dir, &path, &bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(found)
}

/// Brings a directory of format `from` to [`DATA_FORMAT_VERSION`], one version at a time.
fn upgrade(_data_dir: &Path, from: u32) -> anyhow::Result<()> {
    for version in from..DATA_FORMAT_VERSION {
        match version {
            // 1 → 2: nothing to rewrite. The storage engine reads version-2 sealed files
            // (an uncompressed index) beside version-3 ones, and the journals read
            // uncompressed snapshots (`IOTDBSN1`); each is rewritten in the new form by
            // the next compaction or snapshot.
            1 => {}
            // 2 → 3: nothing to rewrite. WAL replay and region replication read both
            // tablet record kinds; the old records leave with the segments that hold them,
            // at the next flush.
            2 => {}
            _ => bail!(
                "no upgrade from data format version {version} to {} is known",
                version + 1
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_stamped_and_a_newer_format_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let found = check_and_stamp(dir.path()).unwrap();
        assert_eq!(found.format_version, 1);
        let written: FormatStamp =
            serde_json::from_slice(&std::fs::read(dir.path().join(FORMAT_FILE)).unwrap()).unwrap();
        assert_eq!(written, FormatStamp::current());
        // Opened again: the same, and nothing rewritten.
        assert_eq!(check_and_stamp(dir.path()).unwrap(), FormatStamp::current());

        let future = FormatStamp {
            format_version: DATA_FORMAT_VERSION + 1,
            written_by: "9.9.9".to_string(),
        };
        std::fs::write(
            dir.path().join(FORMAT_FILE),
            serde_json::to_vec(&future).unwrap(),
        )
        .unwrap();
        let error = check_and_stamp(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!("data format version {}", DATA_FORMAT_VERSION + 1))
                && error.contains("9.9.9")
                && error.contains(&format!("up to {DATA_FORMAT_VERSION}"))
                && error.contains(env!("CARGO_PKG_VERSION")),
            "{error}"
        );
        // The refusal leaves the stamp alone.
        let kept: FormatStamp =
            serde_json::from_slice(&std::fs::read(dir.path().join(FORMAT_FILE)).unwrap()).unwrap();
        assert_eq!(kept, future);

        std::fs::write(dir.path().join(FORMAT_FILE), b"{not json").unwrap();
        let error = check_and_stamp(dir.path()).unwrap_err().to_string();
        assert!(error.contains("is damaged"), "{error}");
    }
}
