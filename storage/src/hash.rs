//! The hash maps of the write path. Every column of every tablet is looked up by device
//! path and measurement name several times (schema types, memtable buffers, the last-value
//! cache), so those maps use foldhash rather than std's SipHash: a short name hashes in a
//! few instructions instead of a full SipHash round.
//!
//! The seeds are random per process and per map, as std's are, so names a client chooses
//! cannot be made to collide in every server; foldhash makes no cryptographic promise,
//! though, where SipHash does. Maps keyed by anything else keep std's hasher.

/// A `HashMap` hashed with foldhash; build it with `FastMap::default()`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` hashed with foldhash, as [`FastMap`].
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
