//! The manifest: which sealed files make up a region, and how far the WAL is covered by
//! them. It is the single source of truth on open: a file in `sealed/` that the manifest
//! does not name is the leftover of a crashed flush or compaction and is deleted.
//!
//! Updates are atomic: the new manifest is written to `MANIFEST.tmp`, fsync'ed, renamed
//! over `MANIFEST`, and the directory fsync'ed. A crash leaves either the old or the new
//! manifest, never a mix.
//!
//! ```text
//! "IOTDBMNF" u32 version | u64 next_file_id u64 flushed_index u32 count
//! count × (u64 id, u64 version, i64 partition, u8 kind, u8 level) | u32 crc32c of all before
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::file_system::{FileSystem, StdFileSystem};

const MAGIC: &[u8; 8] = b"IOTDBMNF";
const FORMAT_VERSION: u32 = 1;
const ENTRY_BYTES: usize = 8 + 8 + 8 + 1 + 1;
pub const MANIFEST_NAME: &str = "MANIFEST";

/// Whether a sealed file holds sequence or unsequence data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Sequence = 0,
    Unsequence = 1,
}

/// One sealed file of the region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Unique id; names the file.
    pub id: u64,
    /// Newest-wins order between files: later writes have higher versions. A compaction
    /// output takes the highest version of its inputs.
    pub version: u64,
    /// The time slot the file's points belong to.
    pub partition: i64,
    pub kind: FileKind,
    /// 0 for a flushed file, +1 per compaction.
    pub level: u8,
}

impl FileEntry {
    /// The file's name inside the region's `sealed/` directory.
    pub fn file_name(&self) -> String {
        let kind = match self.kind {
            FileKind::Sequence => "seq",
            FileKind::Unsequence => "unseq",
        };
        format!(
            "{}-{kind}-{:012}-L{}.tsf",
            self.partition, self.id, self.level
        )
    }
}

/// The region's durable file set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub next_file_id: u64,
    /// Every WAL record with an index up to this one is in the sealed files.
    pub flushed_index: u64,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Reads `dir/MANIFEST`; a missing file is an empty manifest.
    pub fn load(dir: &Path) -> Result<Manifest> {
        Manifest::load_in(&StdFileSystem, dir)
    }

    /// [`Manifest::load`] through `file_system`.
    pub fn load_in(file_system: &dyn FileSystem, dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_NAME);
        let bytes = match file_system.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(StorageError::io("read manifest", path, e)),
        };
        Manifest::decode(&bytes).map_err(|reason| StorageError::corruption(&path, 0, reason))
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let header = MAGIC.len() + 4 + 8 + 8 + 4;
        if bytes.len() < header + 4 {
            return Err(format!("{} bytes is too short for a manifest", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32c::crc32c(body) != stored {
            return Err("checksum mismatch".into());
        }
        if &body[..8] != MAGIC {
            return Err("bad magic".into());
        }
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let version = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(format!("unsupported manifest version {version}"));
        }
        let next_file_id = u64_at(12);
        let flushed_index = u64_at(20);
        let count = u32::from_le_bytes(body[28..32].try_into().expect("4 bytes")) as usize;
        if body.len() != header + count * ENTRY_BYTES {
            return Err(format!("{count} entries do not fit {} bytes", body.len()));
        }
        let mut files = Vec::with_capacity(count);
        for i in 0..count {
            let at = header + i * ENTRY_BYTES;
            let kind = match body[at + 24] {
                0 => FileKind::Sequence,
                1 => FileKind::Unsequence,
                other => return Err(format!("bad file kind {other}")),
            };
            files.push(FileEntry {
                id: u64_at(at),
                version: u64_at(at + 8),
                partition: u64_at(at + 16) as i64,
                kind,
                level: body[at + 25],
            });
        }
        Ok(Manifest {
            next_file_id,
            flushed_index,
            files,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.files.len() * ENTRY_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.next_file_id.to_le_bytes());
        out.extend_from_slice(&self.flushed_index.to_le_bytes());
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for f in &self.files {
            out.extend_from_slice(&f.id.to_le_bytes());
            out.extend_from_slice(&f.version.to_le_bytes());
            out.extend_from_slice(&f.partition.to_le_bytes());
            out.push(f.kind as u8);
            out.push(f.level);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Atomically replaces `dir/MANIFEST` with this manifest.
    pub fn store(&self, dir: &Path) -> Result<()> {
        self.store_in(&StdFileSystem, dir)
    }

    /// [`Manifest::store`] through `file_system`.
    pub fn store_in(&self, file_system: &dyn FileSystem, dir: &Path) -> Result<()> {
        let ops = ReplaceOps {
            write: "write manifest",
            rename: "rename manifest",
        };
        replace_file(file_system, dir, MANIFEST_NAME, &self.encode(), ops)
    }

    /// Allocates a new file id.
    pub fn allocate_id(&mut self) -> u64 {
        self.next_file_id += 1;
        self.next_file_id
    }
}

/// The operation names a [`replace_file`] error carries.
pub(crate) struct ReplaceOps {
    pub write: &'static str,
    pub rename: &'static str,
}

/// Atomically replaces `dir/name` with `bytes`: written to
/// `name.tmp`, fdatasync'ed, renamed over `name`, and the directory fsync'ed. A crash
/// leaves the old or the new content, never a mix; a leftover `.tmp` is overwritten by
/// the next replacement.
pub(crate) fn replace_file(
    file_system: &dyn FileSystem,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    ops: ReplaceOps,
) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let write = || -> std::io::Result<()> {
        let mut file = file_system.create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()
    };
    write().map_err(|e| StorageError::io(ops.write, &tmp, e))?;
    file_system
        .rename(&tmp, &path)
        .map_err(|e| StorageError::io(ops.rename, &path, e))?;
    sync_dir(file_system, dir)
}

/// fsyncs a directory through `file_system` so a rename or create inside it is durable.
pub(crate) fn sync_dir(file_system: &dyn FileSystem, dir: &Path) -> Result<()> {
    file_system
        .sync_dir(dir)
        .map_err(|e| StorageError::io("fsync directory", PathBuf::from(dir), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Manifest::default());
        let manifest = Manifest {
            next_file_id: 7,
            flushed_index: 42,
            files: vec![FileEntry {
                id: 7,
                version: 7,
                partition: -3,
                kind: FileKind::Unsequence,
                level: 1,
            }],
        };
        manifest.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);
        let path = dir.path().join(MANIFEST_NAME);
        let bytes = std::fs::read(&path).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::decode(&bad).is_err(), "bit {bit}");
        }
    }
}
