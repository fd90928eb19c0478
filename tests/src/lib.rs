//! Multi-process tests: they start real server processes on 127.0.0.x ports (see
//! `tests/`). The library holds the harness they share.

#![forbid(unsafe_code)]
