//! `iotdb-ctl` for the shell tests (the same entry point as the real binary).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    iotdb_ctl::cli::main()
}
