//! The write-ahead log: checksummed records in segment files, group commit over io_uring.
