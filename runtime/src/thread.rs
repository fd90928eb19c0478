//! Thread helpers: how many cores the process may use, naming the calling thread, and the
//! CPU time it has used.

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

/// CPU time the calling thread has used so far: the first field of its schedstat,
/// nanoseconds on a CPU (read from procfs, so no unsafe call). What a benchmark times when
/// the machine is shared and wall time would count other processes' turns.
pub fn current_thread_cpu_time() -> std::io::Result<std::time::Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let nanos = schedstat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("schedstat does not start with nanoseconds: {schedstat:?}"),
            )
        })?;
    Ok(std::time::Duration::from_nanos(nanos))
}

/// CPU time process `pid` has used so far: every thread's, those that have exited
/// included. Read from the kernel's CPU clock of the process (`clock_getcpuclockid`,
/// nanoseconds); where that clock cannot be read, from /proc's utime and stime (10 ms
/// ticks). An error when neither can be read (the process is gone).
pub fn process_cpu_time(pid: u32) -> std::io::Result<std::time::Duration> {
    clock_cpu_time(pid).or_else(|_| procfs_cpu_time(pid))
}

/// [`process_cpu_time`] from the process's CPU clock.
#[allow(unsafe_code)]
fn clock_cpu_time(pid: u32) -> std::io::Result<std::time::Duration> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t through the pointer, which points
    // at a local that outlives the call.
    let error = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    if error != 0 {
        return Err(std::io::Error::from_raw_os_error(error));
    }
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, a local that outlives
    // the call.
    if unsafe { libc::clock_gettime(clock, &mut time) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(time.tv_nsec).unwrap_or(0);
    Ok(std::time::Duration::new(seconds, nanos))
}

/// /proc reports CPU times in USER_HZ ticks, which the kernel ABI fixes at 100 on x86-64
/// and arm64.
const USER_HZ_MILLIS: u64 = 10;

/// [`process_cpu_time`] from /proc: utime + stime, in ticks.
fn procfs_cpu_time(pid: u32) -> std::io::Result<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no utime and stime in /proc/{pid}/stat: {stat:?}"),
        )
    };
    // Fields after the command name (which may hold spaces) start past the last ')'.
    let rest = stat
        .rfind(')')
        .and_then(|end| stat.get(end + 2..))
        .ok_or_else(invalid)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| -> Option<u64> { fields.get(index)?.parse().ok() };
    let ticks = field(11)
        .zip(field(12))
        .map(|(utime, stime)| utime + stime)
        .ok_or_else(invalid)?;
    Ok(std::time::Duration::from_millis(ticks * USER_HZ_MILLIS))
}

/// The environment variable with which mimalloc itself is told whether it may use
/// transparent huge pages; when it is set, [`tune_allocator`] leaves the choice to it.
const ALLOW_THP_VARIABLE: &str = "MIMALLOC_ALLOW_THP";

/// The environment variable with which mimalloc itself is told how long freed memory waits
/// before it goes back to the system; when it is set, [`tune_allocator`] leaves it.
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// How long memory the process freed stays with the allocator, ready for reuse, before it
/// is given back to the system ([`tune_allocator`]).
///
/// Why 30 s: a flushed memtable frees its memory while the next one fills; a shard at full
/// speed fills a memtable within seconds (the default budget flushes at 512 MiB), and it
/// grows into the freed memory only if that memory is still there. mimalloc's own delay
/// (1 s in the version linked) gave most of it back first, so every memtable faulted in
/// fresh zeroed pages again: with memtables flushed every 16 MiB, 10,000–15,000 page
/// faults a second for as long as ingest ran, against 2,000–3,000 once the memory stays
/// (`docs/performance.md`). Thirty seconds covers a memtable's cycle at any rate where page
/// faults cost a noticeable share of the CPU; memory still goes back half a minute after
/// ingest or a large query stops needing it, so a server's resident size follows its load.
pub const ALLOCATOR_PURGE_DELAY: std::time::Duration = std::time::Duration::from_secs(30);

/// mimalloc's option `purge_delay` (`mi_option_purge_delay` in `mimalloc.h`: the same
/// position in its versions 2 and 3), in milliseconds.
const MI_OPTION_PURGE_DELAY: libc::c_int = 15;

// mimalloc's option API. `libmimalloc-sys` builds and links the library (the binaries' global
// allocator); its Rust declarations of it need its `extended` feature and a crate this
// offline build lacks, so they are declared here.
#[allow(unsafe_code)]
unsafe extern "C" {
    fn mi_option_set(option: libc::c_int, value: libc::c_long);
}

// Loads `mimalloc` (and so links the library declared above) in every binary that calls
// `tune_allocator`, including tests that keep the system allocator.
use mimalloc as _;

/// Tunes the process for its global allocator (mimalloc) on a thread-per-core server. Call
/// first thing in `main`.
///
/// It turns transparent huge pages off for the process (`prctl(PR_SET_THP_DISABLE)`, what
/// mimalloc does itself when started with `MIMALLOC_ALLOW_THP=0`). mimalloc advises huge
/// pages on the memory it maps, so every fresh page it touches made the kernel clear a
/// whole 2 MiB page: memtables, WAL batches and network frames come and go as the server
/// ingests, and the kernel's `clear_page_erms` took 40-70 % of a DataNode's CPU in
/// profiles. With 4 KiB pages only what is touched is cleared. mimalloc reads its own
/// options (`MIMALLOC_*`) once when the process loads, before `main`, so setting them here
/// would change nothing; an explicit `MIMALLOC_ALLOW_THP` in the environment wins.
///
/// And it keeps freed memory with the allocator for [`ALLOCATOR_PURGE_DELAY`] instead of
/// mimalloc's second, so that steady ingest reuses the pages of flushed memtables instead
/// of faulting in fresh ones (mimalloc's option API, which takes effect at once; an explicit
/// `MIMALLOC_PURGE_DELAY` wins).
#[allow(unsafe_code)]
pub fn tune_allocator() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_none() {
        let delay = libc::c_long::try_from(ALLOCATOR_PURGE_DELAY.as_millis())
            .expect("the purge delay fits a C long");
        // SAFETY: mi_option_set stores an integer in mimalloc's option table (atomically);
        // the option exists in every mimalloc this crate links, and a delay is any value.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, delay) };
    }
    if std::env::var_os(ALLOW_THP_VARIABLE).is_some() {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of
    // this process; it only sets a flag on the process that the kernel consults when it
    // faults pages in.
    let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if result != 0 {
        // Not fatal: the server only runs slower (an old kernel, a seccomp filter). Logging
        // is not set up yet this early.
        eprintln!(
            "warning: transparent huge pages could not be turned off for this process: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    unsafe extern "C" {
        fn mi_option_get(option: libc::c_int) -> libc::c_long;
    }

    /// mimalloc's purge delay now, in milliseconds (negative: never).
    #[allow(unsafe_code)]
    // A C long is an i64 only on 64-bit Unix.
    #[allow(clippy::useless_conversion)]
    fn allocator_purge_delay_ms() -> i64 {
        // SAFETY: mi_option_get reads an integer from mimalloc's option table.
        i64::from(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) })
    }

    #[test]
    fn tune_allocator_keeps_freed_memory_for_the_purge_delay() {
        if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
            return;
        }
        // mimalloc's own default, before: 1 s in the linked version (any other value means
        // the option's position is not what `MI_OPTION_PURGE_DELAY` says, unless another
        // test of this process tuned it first).
        let before = allocator_purge_delay_ms();
        assert!(
            before == 1000 || before == ALLOCATOR_PURGE_DELAY.as_millis() as i64,
            "mimalloc's purge_delay reads {before} ms"
        );
        tune_allocator();
        assert_eq!(
            allocator_purge_delay_ms(),
            ALLOCATOR_PURGE_DELAY.as_millis() as i64
        );
    }

    #[test]
    fn tune_allocator_turns_transparent_huge_pages_off() {
        if std::env::var_os(ALLOW_THP_VARIABLE).is_some() {
            return;
        }
        tune_allocator();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        // Kernels before 6.x do not report it; where they do, it is off now.
        if let Some(line) = status.lines().find(|line| line.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }

    #[test]
    fn current_thread_cpu_time_grows_with_work_on_this_thread() {
        let before = current_thread_cpu_time().unwrap();
        let mut x = 0u64;
        while current_thread_cpu_time().unwrap() == before {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(current_thread_cpu_time().unwrap() > before);
    }

    #[test]
    fn process_cpu_time_counts_every_thread_and_matches_procfs() {
        let pid = std::process::id();
        let before = process_cpu_time(pid).unwrap();
        // Work on another thread that then exits: its CPU time stays in the process's.
        let spent = std::thread::spawn(|| {
            let start = current_thread_cpu_time().unwrap();
            let mut x = 0u64;
            while current_thread_cpu_time().unwrap() < start + std::time::Duration::from_millis(20)
            {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            current_thread_cpu_time().unwrap() - start
        })
        .join()
        .unwrap();
        let after = process_cpu_time(pid).unwrap();
        assert!(
            after - before >= spent,
            "{before:?} -> {after:?}, the thread spent {spent:?}"
        );
        // /proc's ticks count the same time, 10 ms at a time.
        let procfs = procfs_cpu_time(pid).unwrap();
        let now = clock_cpu_time(pid).unwrap();
        let difference = now.abs_diff(procfs);
        assert!(
            difference < std::time::Duration::from_millis(50),
            "clock {now:?}, procfs {procfs:?}"
        );
        assert!(process_cpu_time(u32::MAX).is_err());
    }

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
