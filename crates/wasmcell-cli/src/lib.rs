//! The `wasmcell` command line: one file per subcommand under `commands/`.
#![warn(missing_docs)]

use clap::{Parser, Subcommand};

mod commands;
mod install;

/// Run WebAssembly (WASI) workloads as containers.
#[derive(Debug, Parser)]
#[command(name = "wasmcell", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Wasm module or component, or an OCI bundle, in the foreground.
    Run(commands::run::RunCommand),
    /// Build Wasm OCI images, or convert Wasm OCI artifacts into them.
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Inspect or prune the precompile cache.
    #[command(subcommand)]
    Cache(commands::cache::CacheCommand),
    /// Install wasmcell into a container engine's configuration.
    #[command(subcommand)]
    Install(commands::install::InstallCommand),
}

/// Parse the command line, run the subcommand, and return the process exit status.
pub fn main() -> i32 {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(cmd) => cmd.execute(),
        Command::Image(cmd) => cmd.execute(),
        Command::Cache(cmd) => cmd.execute(),
        Command::Install(cmd) => cmd.execute(),
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings and errors).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
