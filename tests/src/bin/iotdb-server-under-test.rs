//! `iotdb-server` for the multi-process tests (the same entry point as the real binary).

#![forbid(unsafe_code)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    iotdb_runtime::tune_allocator();
    iotdb_node::cli::main()
}
