//! A small file replaced whole and atomically: the Raft hard state (term, vote, commit),
//! a snapshot's metadata, a node's persisted id.
//!
//! ```text
//!  write(name, data):  create name.tmp ─► write header+data ─► sync ─► rename to name ─► sync_dir
//!  read(name):         checksum-verified contents, or None if it was never written
//!  open-time cleanup:  a leftover name.tmp (a crash before the rename) is removed
//! ```
//!
//! After `write` returns Ok the new contents survive any crash. If it fails or the node
//! crashes inside it, a later `read` returns the old contents or the new, whole, never a
//! mix (the rename is the commit point, and the checksum catches a file that is not what
//! was synced). A failed `write` is not retried in place: the caller treats it like a
//! failed WAL fsync.
//!
//! File format: `crc32c u32 LE | length u32 LE | data`, the crc over length and data.

#[cfg(test)]
mod sim_tests;

use thiserror::Error;

use crate::io::{Disk, DiskError};

/// Suffix of the temporary file a write goes through.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Bytes before the data.
pub const HEADER_BYTES: usize = 8;

/// Largest contents of one atomic file.
///
/// Why 1 MiB: these files are metadata, rewritten whole on every change; anything larger
/// belongs in a log or a snapshot stream, not here.
pub const ATOMIC_FILE_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum AtomicFileError {
    #[error("{name}: {source}")]
    Disk {
        name: String,
        #[source]
        source: DiskError,
    },
    #[error("{name} is corrupt: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("{bytes} bytes exceed the {max}-byte limit of this atomic file")]
    TooLarge { bytes: usize, max: usize },
}

fn disk_error(name: &str) -> impl Fn(DiskError) -> AtomicFileError + '_ {
    move |source| AtomicFileError::Disk {
        name: name.to_string(),
        source,
    }
}

/// Replaces the contents of `name` with `data`, durably and atomically (at most
/// [`ATOMIC_FILE_BYTES_MAX`] bytes).
pub fn write(disk: &mut impl Disk, name: &str, data: &[u8]) -> Result<(), AtomicFileError> {
    write_bounded(disk, name, data, ATOMIC_FILE_BYTES_MAX)
}

/// [`write`] with another bound on the contents, for a file whose owner has a reason to
/// hold more than metadata (a Raft snapshot, bounded by what one message carries).
pub fn write_bounded(
    disk: &mut impl Disk,
    name: &str,
    data: &[u8],
    max: usize,
) -> Result<(), AtomicFileError> {
    if data.len() > max {
        return Err(AtomicFileError::TooLarge {
            bytes: data.len(),
            max,
        });
    }
    let temp = format!("{name}{TEMP_SUFFIX}");
    let io = disk_error(name);
    if disk.list().map_err(&io)?.contains(&temp) {
        disk.remove(&temp).map_err(&io)?;
    }
    disk.create(&temp).map_err(&io)?;
    let mut contents = Vec::with_capacity(HEADER_BYTES + data.len());
    contents.extend_from_slice(&[0; 4]);
    contents.extend_from_slice(&(data.len() as u32).to_le_bytes());
    contents.extend_from_slice(data);
    let crc = crc32c::crc32c(&contents[4..]);
    contents[..4].copy_from_slice(&crc.to_le_bytes());
    disk.write_at(&temp, 0, &contents).map_err(&io)?;
    if !mutant::active(mutant::Mutant::SkipTempSync) {
        disk.sync(&temp).map_err(&io)?;
    }
    disk.rename(&temp, name).map_err(&io)?;
    if mutant::active(mutant::Mutant::SkipDirSync) {
        return Ok(());
    }
    disk.sync_dir().map_err(&io)
}

/// Deliberate bugs a test switches on (per thread) to show the simulation catches them.
/// Outside tests `active` is a constant `false`.
pub(crate) mod mutant {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Mutant {
        /// Rename the temporary file without syncing its data first.
        SkipTempSync,
        /// Return before syncing the directory, so the rename may not survive.
        SkipDirSync,
    }

    crate::mutant_switch!(Mutant);
}

/// The contents of `name`, or None if it does not exist. Removes a leftover temporary
/// file first (call it at start-up, before any `write`).
pub fn read(disk: &mut impl Disk, name: &str) -> Result<Option<Vec<u8>>, AtomicFileError> {
    let temp = format!("{name}{TEMP_SUFFIX}");
    let io = disk_error(name);
    let names = disk.list().map_err(&io)?;
    if names.contains(&temp) {
        disk.remove(&temp).map_err(&io)?;
        disk.sync_dir().map_err(&io)?;
    }
    if !names.iter().any(|file| file == name) {
        return Ok(None);
    }
    let contents = disk.read_all(name).map_err(&io)?;
    let corrupt = |reason: String| AtomicFileError::Corrupt {
        name: name.to_string(),
        reason,
    };
    if contents.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "{} bytes, shorter than the header",
            contents.len()
        )));
    }
    let mut word = [0; 4];
    word.copy_from_slice(&contents[4..8]);
    let length = u32::from_le_bytes(word) as usize;
    if length != contents.len() - HEADER_BYTES {
        return Err(corrupt(format!(
            "length {length} but {} bytes of data",
            contents.len() - HEADER_BYTES
        )));
    }
    word.copy_from_slice(&contents[..4]);
    if crc32c::crc32c(&contents[4..]) != u32::from_le_bytes(word) {
        return Err(corrupt("checksum mismatch".to_string()));
    }
    Ok(Some(contents[HEADER_BYTES..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdDisk;
    use crate::sim::{DiskConfig, SimDisk, SimRng};

    #[test]
    fn write_read_replace_on_both_disks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut real = StdDisk::new(dir.path());
        let mut simulated = SimDisk::new(DiskConfig::reliable(), SimRng::new(0));
        for disk in [&mut real as &mut dyn DiskBox, &mut simulated] {
            disk.check();
        }
    }

    /// Runs the same checks on any disk (a small object-safe shim over `impl Disk`).
    trait DiskBox {
        fn check(&mut self);
    }

    impl<D: Disk> DiskBox for D {
        fn check(&mut self) {
            assert_eq!(read(self, "state").unwrap(), None);
            write(self, "state", b"v1").unwrap();
            assert_eq!(read(self, "state").unwrap(), Some(b"v1".to_vec()));
            write(self, "state", b"").unwrap();
            assert_eq!(read(self, "state").unwrap(), Some(Vec::new()));
            self.create("state.tmp").unwrap();
            assert_eq!(read(self, "state").unwrap(), Some(Vec::new()));
            assert!(!self.list().unwrap().contains(&"state.tmp".to_string()));
            self.write_at("state", 8, b"x").unwrap();
            assert!(matches!(
                read(self, "state"),
                Err(AtomicFileError::Corrupt { .. })
            ));
            assert!(matches!(
                write(self, "big", &vec![0; ATOMIC_FILE_BYTES_MAX + 1]),
                Err(AtomicFileError::TooLarge { .. })
            ));
        }
    }
}
