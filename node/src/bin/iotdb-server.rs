//! `iotdb-server`: `standalone` runs a ConfigNode and a DataNode in one process.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use iotdb_node::config::ServerConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(version, about = "iotdb-server: ConfigNode and DataNode roles")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// A ConfigNode and a DataNode in one process.
    Standalone(Flags),
}

#[derive(clap::Args, Debug)]
struct Flags {
    /// TOML configuration file (IoTDB's key names).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address clients connect to (dn_rpc_address).
    #[arg(long)]
    rpc_address: Option<String>,
    /// Client port (dn_rpc_port).
    #[arg(long)]
    rpc_port: Option<u16>,
    /// Shards (cores); default: every available core.
    #[arg(long)]
    cores: Option<usize>,
    /// sync | async | off
    #[arg(long)]
    wal_mode: Option<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cli {
        role: Role::Standalone(flags),
    } = Cli::parse();
    let mut config = match &flags.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    if let Some(v) = flags.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = flags.rpc_address {
        config.dn_rpc_address = v;
    }
    if let Some(v) = flags.rpc_port {
        config.dn_rpc_port = v;
    }
    if let Some(v) = flags.cores {
        config.dn_cores = v;
    }
    if let Some(v) = flags.wal_mode {
        config.wal_mode = v;
    }
    iotdb_node::server::run_standalone(config).context("iotdb-server standalone")
}
