//! Deletions (`DELETE FROM ... WHERE time ...`): a logged tombstone per series and time
//! range, applied to everything the region held when it was issued and to nothing written
//! after.
//!
//! ```text
//! Region::delete ─► WAL record (KIND_DELETE) ─► freeze the active memtable
//!                                              ─► attach to every frozen memtable and sealed file
//!                                              ─► MODS marked dirty: rewritten whole by the
//!                                                 region's next metadata job on the
//!                                                 background pool (the WAL record covers
//!                                                 the deletion until then)
//! reads:       a chunk or memtable piece overlapping a deletion is decoded and filtered
//!              (its chunk statistics are not used)
//! flush:       the files of a frozen memtable inherit its deletions (MODS written first,
//!              in the same metadata job as the manifest)
//! compaction:  applies its inputs' deletions physically; the output carries only those
//!              that arrived while it ran
//! open:        MODS is loaded for the manifest's files; WAL delete records past the
//!              flushed index are replayed (attach again, idempotently)
//! ```
//!
//! Freezing the active memtable at a deletion is what keeps "older than the deletion"
//! exact without versions: every point the deletion may hide is then in an immutable
//! piece, and every later write goes to a fresh memtable.
//!
//! MODS format (rewritten whole via `MODS.tmp` + rename + directory fsync):
//! ```text
//! "IOTDBMOD" u32 version u32 count
//! count × (u64 file_id, u16 device_len, device, u16 measurement_len, measurement,
//!          i64 start, i64 end) | u32 crc32c of all before
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::manifest::{ReplaceOps, replace_file};
use crate::error::{Result, StorageError};
use crate::file_system::{FileSystem, StdFileSystem};
use crate::types::{PointColumn, SeriesKey, TimeRange, Values};

/// The WAL record kind of a deletion.
pub const KIND_DELETE: u8 = 2;

/// Most series one deletion record may name: bounds a record's size.
pub const DELETION_KEYS_MAX: usize = 65_536;

const MAGIC: &[u8; 8] = b"IOTDBMOD";
const FORMAT_VERSION: u32 = 1;
pub const MODS_NAME: &str = "MODS";

/// Points of `key` in `range` are deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    pub key: SeriesKey,
    pub range: TimeRange,
}

/// The ranges of `deletions` that apply to `key` and overlap `[min, max]`.
pub fn ranges_for(deletions: &[Deletion], key: &SeriesKey, min: i64, max: i64) -> Vec<TimeRange> {
    deletions
        .iter()
        .filter(|d| d.key == *key && d.range.overlaps(min, max))
        .map(|d| d.range)
        .collect()
}

/// Adds `deletion` to `list` unless it is already there (WAL replay re-attaches).
pub fn attach(list: &mut Vec<Deletion>, deletion: &Deletion) {
    if !list.contains(deletion) {
        list.push(deletion.clone());
    }
}

/// `points` without those in any of `ranges`.
pub fn without(points: PointColumn, ranges: &[TimeRange]) -> PointColumn {
    if ranges.is_empty() {
        return points;
    }
    let keep: Vec<usize> = (0..points.len())
        .filter(|&i| !ranges.iter().any(|r| r.contains(points.timestamps[i])))
        .collect();
    if keep.len() == points.len() {
        return points;
    }
    let mut values = Values::with_capacity(points.data_type(), keep.len());
    let mut timestamps = Vec::with_capacity(keep.len());
    for i in keep {
        timestamps.push(points.timestamps[i]);
        values.push_from(&points.values, i);
    }
    PointColumn { timestamps, values }
}

/// The WAL payload of a deletion of `keys` over `range`.
pub fn encode_record(keys: &[SeriesKey], range: TimeRange, out: &mut Vec<u8>) {
    assert!(keys.len() <= DELETION_KEYS_MAX, "checked by Region::delete");
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for key in keys {
        put_str16(out, &key.device);
        put_str16(out, &key.measurement);
    }
    out.extend_from_slice(&range.start.to_le_bytes());
    out.extend_from_slice(&range.end.to_le_bytes());
}

/// Decodes a payload written by [`encode_record`].
pub fn decode_record(payload: &[u8]) -> std::result::Result<Vec<Deletion>, String> {
    let mut reader = Reader {
        bytes: payload,
        at: 0,
    };
    let count = reader.u32()? as usize;
    if count > DELETION_KEYS_MAX {
        return Err(format!(
            "{count} series in one deletion, at most {DELETION_KEYS_MAX}"
        ));
    }
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        let device = reader.str16()?;
        let measurement = reader.str16()?;
        keys.push(SeriesKey {
            device,
            measurement,
        });
    }
    let range = TimeRange::new(reader.i64()?, reader.i64()?);
    if reader.at != payload.len() {
        return Err(format!(
            "{} trailing bytes after a deletion",
            payload.len() - reader.at
        ));
    }
    Ok(keys
        .into_iter()
        .map(|key| Deletion { key, range })
        .collect())
}

/// Reads `dir/MODS` (file id → deletions); a missing file means none.
pub fn load(dir: &Path) -> Result<BTreeMap<u64, Vec<Deletion>>> {
    load_in(&StdFileSystem, dir)
}

/// [`load`] through `file_system`.
pub fn load_in(file_system: &dyn FileSystem, dir: &Path) -> Result<BTreeMap<u64, Vec<Deletion>>> {
    let path = dir.join(MODS_NAME);
    let bytes = match file_system.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(StorageError::io("read deletions", path, e)),
    };
    decode_mods(&bytes).map_err(|reason| StorageError::corruption(&path, 0, reason))
}

/// Atomically replaces `dir/MODS` with `mods`.
pub fn store(dir: &Path, mods: &BTreeMap<u64, Vec<Deletion>>) -> Result<()> {
    store_in(&StdFileSystem, dir, mods)
}

/// [`store`] through `file_system`.
pub fn store_in(
    file_system: &dyn FileSystem,
    dir: &Path,
    mods: &BTreeMap<u64, Vec<Deletion>>,
) -> Result<()> {
    let ops = ReplaceOps {
        write: "write deletions",
        rename: "rename deletions",
    };
    replace_file(file_system, dir, MODS_NAME, &encode_mods(mods), ops)
}

fn encode_mods(mods: &BTreeMap<u64, Vec<Deletion>>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let count: usize = mods.values().map(Vec::len).sum();
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (file_id, deletions) in mods {
        for d in deletions {
            out.extend_from_slice(&file_id.to_le_bytes());
            put_str16(&mut out, &d.key.device);
            put_str16(&mut out, &d.key.measurement);
            out.extend_from_slice(&d.range.start.to_le_bytes());
            out.extend_from_slice(&d.range.end.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_mods(bytes: &[u8]) -> std::result::Result<BTreeMap<u64, Vec<Deletion>>, String> {
    if bytes.len() < MAGIC.len() + 8 + 4 {
        return Err(format!(
            "{} bytes is too short for a deletion list",
            bytes.len()
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != stored {
        return Err("checksum mismatch".into());
    }
    if &body[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let mut reader = Reader { bytes: body, at: 8 };
    let version = reader.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!("unsupported deletion list version {version}"));
    }
    let count = reader.u32()? as usize;
    let mut mods: BTreeMap<u64, Vec<Deletion>> = BTreeMap::new();
    for _ in 0..count {
        let file_id = reader.u64()?;
        let device = reader.str16()?;
        let measurement = reader.str16()?;
        let range = TimeRange::new(reader.i64()?, reader.i64()?);
        mods.entry(file_id).or_default().push(Deletion {
            key: SeriesKey {
                device,
                measurement,
            },
            range,
        });
    }
    if reader.at != body.len() {
        return Err(format!("{} trailing bytes", body.len() - reader.at));
    }
    Ok(mods)
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("series names are shorter than 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{n} bytes wanted at offset {}, {} in all",
                    self.at,
                    self.bytes.len()
                )
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn str16(&mut self) -> std::result::Result<Arc<str>, String> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Arc::from)
            .map_err(|_| "name is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::DataType;
    use proptest::prelude::*;

    fn key(d: &str, m: &str) -> SeriesKey {
        SeriesKey::new(d, m)
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let keys = vec![key("root.a.d", "s1"), key("root.a.d", "s2")];
        let mut out = Vec::new();
        encode_record(&keys, TimeRange::new(-5, 10), &mut out);
        let decoded = decode_record(&out).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[1].key, keys[1]);
        assert_eq!(decoded[0].range, TimeRange::new(-5, 10));
        for cut in 0..out.len() {
            assert!(decode_record(&out[..cut]).is_err());
        }
        out.push(0);
        assert!(decode_record(&out).is_err());
    }

    #[test]
    fn mods_round_trip_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let mut mods = BTreeMap::new();
        mods.insert(
            3,
            vec![Deletion {
                key: key("root.a.d", "s1"),
                range: TimeRange::new(0, 100),
            }],
        );
        store(dir.path(), &mods).unwrap();
        assert_eq!(load(dir.path()).unwrap(), mods);
        let path = dir.path().join(MODS_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[14] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(StorageError::Corruption { .. })
        ));
    }

    proptest! {
        #[test]
        fn without_keeps_exactly_the_points_outside(
            times in proptest::collection::btree_set(-50i64..50, 0..40),
            ranges in proptest::collection::vec((-60i64..60, 0i64..30), 0..4),
        ) {
            let ranges: Vec<TimeRange> =
                ranges.into_iter().map(|(s, l)| TimeRange::new(s, s + l)).collect();
            let mut points = PointColumn::new(DataType::Int64);
            for t in &times {
                points.timestamps.push(*t);
                points.values.push(crate::types::Value::Int64(*t * 2));
            }
            let kept = without(points, &ranges);
            let expected: Vec<i64> = times
                .iter()
                .copied()
                .filter(|t| !ranges.iter().any(|r| r.contains(*t)))
                .collect();
            prop_assert_eq!(&kept.timestamps, &expected);
            for i in 0..kept.len() {
                prop_assert_eq!(kept.values.get(i), crate::types::Value::Int64(kept.timestamps[i] * 2));
            }
        }
    }
}
