//! `iotdb-server`: `standalone` runs a ConfigNode and a DataNode in one process.

#![forbid(unsafe_code)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    iotdb_runtime::tune_allocator();
    iotdb_node::cli::main()
}
