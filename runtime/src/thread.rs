//! Thread helpers: how many cores the process may use, and naming the calling thread.

use crate::error::RuntimeError;
use crate::limits::THREAD_NAME_BYTES_MAX;

/// Number of cores this process may run on (its CPU affinity and cgroup quota included),
/// the default shard count. Falls back to 1 when the OS cannot tell.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Whether log lines on stderr may carry ANSI colour escapes: only on a terminal, and not
/// when `NO_COLOR` is set (<https://no-color.org>). Logs written to a file or a pipe stay
/// plain text.
pub fn log_colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Sets the calling thread's name as `ps`, `top -H` and `perf` show it.
///
/// Shard threads are named `shard-i` when spawned; this is for threads a binary creates by
/// other means (the main thread, a blocking pool). Linux keeps at most
/// [`THREAD_NAME_BYTES_MAX`] bytes, so longer names are refused rather than cut.
pub fn set_current_thread_name(name: &str) -> Result<(), RuntimeError> {
    if name.is_empty() || name.len() > THREAD_NAME_BYTES_MAX || name.contains('\0') {
        return Err(RuntimeError::ThreadName {
            name: name.to_owned(),
            max: THREAD_NAME_BYTES_MAX,
        });
    }
    // Writing `comm` under /proc is the kernel's own interface for this (same effect as
    // prctl(PR_SET_NAME)) and needs no unsafe code.
    std::fs::write("/proc/thread-self/comm", name).map_err(|source| RuntimeError::SetThreadName {
        name: name.to_owned(),
        source,
    })
}

/// The calling thread's name as the kernel knows it (which `std::thread::current().name()`
/// does not reflect after [`set_current_thread_name`]).
pub fn current_thread_name() -> std::io::Result<String> {
    let comm = std::fs::read_to_string("/proc/thread-self/comm")?;
    Ok(comm.trim_end_matches('\n').to_owned())
}

/// mimalloc's delay before returning freed memory to the OS, in milliseconds. The default
/// (10 ms) makes a steadily ingesting shard give pages back between batches and fault them
/// in again, zeroed by the kernel: a third of the server's CPU in profiles. A second keeps
/// them for reuse and still returns memory after a burst.
pub const ALLOCATOR_PURGE_DELAY_MS: u32 = 1000;

/// Tunes the global allocator (mimalloc) for thread-per-core servers. Call first thing in
/// `main`, before any other thread starts; a value already set in the environment wins.
#[allow(unsafe_code)]
pub fn tune_allocator() {
    const KEY: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(KEY).is_none() {
        // SAFETY: called at the start of `main` while the process has a single thread, so
        // no other thread reads or writes the environment concurrently.
        unsafe { std::env::set_var(KEY, ALLOCATOR_PURGE_DELAY_MS.to_string()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_cores_is_at_least_one() {
        assert!(available_cores() >= 1);
    }

    #[test]
    fn set_current_thread_name_renames_the_calling_thread_only() {
        let outer = current_thread_name().unwrap();
        std::thread::spawn(|| {
            set_current_thread_name("iotdb-test").unwrap();
            assert_eq!(current_thread_name().unwrap(), "iotdb-test");
        })
        .join()
        .unwrap();
        assert_eq!(current_thread_name().unwrap(), outer);
    }

    #[test]
    fn set_current_thread_name_refuses_names_linux_would_cut() {
        let too_long = "x".repeat(THREAD_NAME_BYTES_MAX + 1);
        assert!(matches!(
            set_current_thread_name(&too_long),
            Err(RuntimeError::ThreadName { .. })
        ));
        assert!(matches!(
            set_current_thread_name(""),
            Err(RuntimeError::ThreadName { .. })
        ));
        assert!(matches!(
            set_current_thread_name("a\0b"),
            Err(RuntimeError::ThreadName { .. })
        ));
    }
}
