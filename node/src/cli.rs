//! The `iotdb-server` command line (shared by the binary and the test harness's copy).

use std::path::PathBuf;

use crate::config::ServerConfig;
use anyhow::Context;
use clap::{Parser, Subcommand};

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

/// Parses the process arguments and runs the chosen role until it stops.
pub fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(iotdb_runtime::log_colours())
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
    crate::server::run_standalone(config).context("iotdb-server standalone")
}
