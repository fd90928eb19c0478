//! Sealed (immutable) files: a TsFile-like format of chunks, statistics and a tail index.
