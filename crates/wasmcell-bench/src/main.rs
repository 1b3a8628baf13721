//! `make bench`: start a private containerd and measure, in the same run, `ctr run --rm`
//! latency, throughput and memory per container for wasmcell, runc + busybox (the native floor)
//! and, when `PEER_SHIM=/path/to/containerd-shim-NAME-v1` is set, a peer shim.
//!
//! Environment: `BENCH_RUNS` (latency samples per runtime, default 30), `BENCH_TASKS` (tasks
//! for throughput, default 200), `BENCH_CONCURRENCY` (default 8), `BENCH_IDLE` (sleeping
//! containers for the memory figure, default 10), `BENCH_OUT` (results folder, default
//! `results/`).

mod measure;
mod runtimes;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let cfg = measure::Config::from_env();
    let shim_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("cannot locate the bench binary's directory"))?;
    let peer = std::env::var_os("PEER_SHIM").map(PathBuf::from);
    let (containerd, runtimes) = runtimes::prepare(&shim_dir, peer.as_deref())?;
    let report = measure::run_all(&containerd, &runtimes, &cfg)?;
    let table = report.markdown();
    println!("{table}");
    std::fs::create_dir_all(&cfg.out_dir)?;
    let file = cfg.out_dir.join("bench.md");
    std::fs::write(&file, &table)?;
    eprintln!("written to {}", file.display());
    Ok(())
}
