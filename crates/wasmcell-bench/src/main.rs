//! `make bench`: start a private containerd and measure, in the same run, `ctr run --rm`
//! latency, throughput and memory per container for wasmcell, runc + busybox (the native floor)
//! and, when `PEER_SHIM=/path/to/containerd-shim-NAME-v1` is set, a peer shim; throughput
//! through containerd's gRPC API; cold and warm start of a large module; fairness; HTTP serving
//! against `wasmtime serve`; density. Writes
//! `bench.md` (tables) and `bench.png` (bar charts) to the results folder.
//!
//! Environment: `BENCH_RUNS` (latency samples per runtime, default 30), `BENCH_TASKS` (tasks
//! for `ctr run` throughput, default 200), `BENCH_CONCURRENCY` (default 8), `BENCH_IDLE`
//! (sleeping containers for the memory figure, default 10), `BENCH_OUT` (results folder,
//! default `results/`), `BENCH_DENSITY` (sleeping containers for the shared-mode density rows,
//! default `100,1000,10000`), `BENCH_DENSITY_NORMAL` (the same for normal mode, default `100`: each
//! normal-mode container is a process), `BENCH_API_TASKS` (tasks through containerd's API per
//! runtime, default 1000; 0 skips), `BENCH_API_CONCURRENCY` (default 32), `BENCH_LARGE_MB`
//! (size of the generated large module in MiB, default 10; 0 skips), `BENCH_FAIRNESS` (hello
//! runs alone and beside two spinning guests, default 20; 0 skips), `BENCH_LARGE_COLD` (runs
//! of it without cache, default 3), `BENCH_LARGE_WARM` (warm runs, each paired with a hello
//! run, default 10), `BENCH_HTTP` (seconds of `wrk` load per HTTP row, default 10; 0 skips),
//! `WASMTIME_CLI` (the `wasmtime` 48.0.8 to compare with; else installed once with `cargo
//! install` into `bench-tools/` beside the bench binary), `BENCH_FONT` (TrueType font for the PNG, default Debian's
//! `fonts-dejavu-core` DejaVuSans).
//!
//! `wasmcell-bench large-module FILE [MIB]` only writes the generated large module to FILE (to
//! profile its start outside containerd, e.g. `perf record wasmcell run FILE`).
//!
//! The shims get `WASMCELL_CACHE_DIR` pointing at a temporary directory of the bench's own
//! (set before containerd starts; containerd passes its environment to the shims), so the
//! host's cache is neither used nor touched.

mod api;
mod density;
mod fairness;
mod http;
mod large;
mod measure;
mod plot;
mod runtimes;

use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmcell_testing::Containerd;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("large-module") {
        return large::write_module(&args[1..]);
    }
    let cfg = measure::Config::from_env();
    let shim_dir = bench_binary_dir()?;
    let peer = std::env::var_os("PEER_SHIM").map(PathBuf::from);
    let cache_base = tempfile::Builder::new()
        .prefix("wasmcell-bench-cache")
        .tempdir()
        .context("failed to create the bench's cache directory")?;
    let cache_dir = large::cache_dir(cache_base.path());
    raise_open_file_limit();
    let (containerd, runtimes) = runtimes::prepare(&shim_dir, peer.as_deref(), &cache_dir)?;
    let report = measure::run_all(&containerd, &runtimes, &cfg)?;
    let mut table = format!("Built in {}.\n\n", build_kind());
    table.push_str(&report.markdown());

    let (api_table, api_rows) = measure_api(&containerd, &runtimes, &cfg);
    table.push_str(&api_table);
    let large_report = measure_large(&containerd, &runtimes, &cfg, &cache_dir)?;
    if let Some(r) = &large_report {
        table.push_str(&r.markdown());
    }
    table.push_str(&measure_fairness(&containerd, &runtimes, &cfg)?);
    table.push_str(&measure_http(&containerd, &runtimes, &cfg, &shim_dir));
    table.push_str(&measure_density(&containerd, &runtimes, &cfg)?);
    println!("{table}");
    write_results(&cfg, &table, &report, &api_rows, large_report.as_ref())
}

/// The directory of the bench binary, where cargo also puts the shim.
fn bench_binary_dir() -> anyhow::Result<PathBuf> {
    std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("cannot locate the bench binary's directory"))
}

/// Throughput through containerd's API (unless `BENCH_API_TASKS` is 0): its table, or a note
/// that it failed, and its rows for the plot.
fn measure_api(
    c: &Containerd,
    runtimes: &[runtimes::Runtime],
    cfg: &measure::Config,
) -> (String, Vec<api::ApiRow>) {
    if cfg.api_tasks == 0 {
        return (String::new(), Vec::new());
    }
    match api::measure_all(c, runtimes, cfg.api_tasks, cfg.api_concurrency) {
        Ok(report) => {
            let table = api::markdown(&report, cfg.api_tasks, cfg.api_concurrency);
            (table, report.rows)
        }
        Err(e) => {
            eprintln!("throughput through containerd's API failed: {e:#}");
            let note = format!(
                "\nThroughput through containerd's API: failed ({e:#}); only the `ctr run` \
                 figure above is available.\n"
            );
            (note, Vec::new())
        }
    }
}

/// Cold and warm start of the large module (unless `BENCH_LARGE_MB` is 0).
fn measure_large(
    c: &Containerd,
    runtimes: &[runtimes::Runtime],
    cfg: &measure::Config,
    cache_dir: &Path,
) -> anyhow::Result<Option<large::LargeReport>> {
    if cfg.large_mib == 0 {
        return Ok(None);
    }
    let normal = runtimes
        .iter()
        .find(|r| r.name == "wasmcell")
        .context("no wasmcell runtime")?;
    let module = large::prepare(c, cfg.large_mib)?;
    let bench = large::LargeBench {
        normal,
        shared: runtimes.iter().find(|r| r.name == "wasmcell shared"),
        artifact: runtimes.iter().find(|r| r.name == "wasmcell artifact"),
        module: &module,
        cache_dir,
        cold_runs: cfg.large_cold,
        warm_runs: cfg.large_warm,
    };
    large::measure(c, &bench).map(Some)
}

/// Hello runs alone and beside spinning guests, in shared then normal mode (unless
/// `BENCH_FAIRNESS` is 0): its table, or nothing.
fn measure_fairness(
    c: &Containerd,
    runtimes: &[runtimes::Runtime],
    cfg: &measure::Config,
) -> anyhow::Result<String> {
    if cfg.fairness_runs == 0 {
        return Ok(String::new());
    }
    let mut rows = Vec::new();
    for name in ["wasmcell shared", "wasmcell"] {
        if let Some(rt) = runtimes.iter().find(|r| r.name == name) {
            rows.push(fairness::measure(c, rt, cfg.fairness_runs)?);
        }
    }
    Ok(fairness::markdown(&rows, cfg.fairness_runs))
}

/// HTTP serving against `wasmtime serve` (unless `BENCH_HTTP` is 0): its table, or a note
/// that it failed.
fn measure_http(
    c: &Containerd,
    runtimes: &[runtimes::Runtime],
    cfg: &measure::Config,
    shim_dir: &Path,
) -> String {
    if cfg.http_secs == 0 {
        return String::new();
    }
    match http::measure(c, runtimes, cfg.http_secs, &shim_dir.join("bench-tools")) {
        Ok(rows) => http::markdown(&rows, cfg.http_secs),
        Err(e) => {
            eprintln!("http serving failed: {e:#}");
            format!(
                "
HTTP serving: failed ({e:#}).
"
            )
        }
    }
}

/// The density rows of shared mode (`BENCH_DENSITY` counts) and normal mode
/// (`BENCH_DENSITY_NORMAL` counts): their table, or nothing when there is no row.
fn measure_density(
    c: &Containerd,
    runtimes: &[runtimes::Runtime],
    cfg: &measure::Config,
) -> anyhow::Result<String> {
    let mut dense = Vec::new();
    for rt in runtimes {
        let ns = match rt.name.as_str() {
            "wasmcell shared" => density_counts("BENCH_DENSITY", "100,1000,10000"),
            "wasmcell" => density_counts("BENCH_DENSITY_NORMAL", "100"),
            _ => continue,
        };
        for n in ns {
            dense.push(density::density(c, rt, n, cfg.concurrency)?);
        }
    }
    if dense.is_empty() {
        return Ok(String::new());
    }
    Ok(density::markdown(&dense, cfg.concurrency))
}

/// The container counts in the comma-separated environment variable `key` (else `default`),
/// without zeros and anything that is not a number.
fn density_counts(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect()
}

/// Write `table` to `bench.md` and the plot to `bench.png` in the results folder; a plot that
/// cannot be drawn is reported, not an error.
fn write_results(
    cfg: &measure::Config,
    table: &str,
    report: &measure::Report,
    api_rows: &[api::ApiRow],
    large: Option<&large::LargeReport>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.out_dir)
        .with_context(|| format!("failed to create {}", cfg.out_dir.display()))?;
    let file = cfg.out_dir.join("bench.md");
    std::fs::write(&file, table).with_context(|| format!("failed to write {}", file.display()))?;
    eprintln!("written to {}", file.display());

    let png = cfg.out_dir.join("bench.png");
    let panels = panels(report, api_rows, large, cfg);
    let title = format!("wasmcell bench, one run on one machine ({})", build_kind());
    match plot::draw(&png, &title, &panels) {
        Ok(()) => eprintln!("plot written to {}", png.display()),
        Err(e) => eprintln!("no plot: {e:#}"),
    }
    Ok(())
}

/// containerd (started by the bench, inheriting its limits) holds descriptors for every task:
/// thousands of sleeping containers need more than a default limit. Raised as the manager
/// raises its own (`fs.nr_open`, at most 2^20), so containerd is not the first to run out.
fn raise_open_file_limit() {
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20)
        .min(1 << 20);
    let raised = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={ceiling}:{ceiling}"),
        ])
        .status();
    if !raised.is_ok_and(|s| s.success()) {
        eprintln!("could not raise the open-file limit to {ceiling}; density rows may fail");
    }
}

/// Which build measured: numbers of a debug build only show that the bench works.
fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "debug mode: figures only check that the bench works"
    } else {
        "release mode"
    }
}

/// The plot's panels: hello p50, tasks/s through the API and with `ctr run`, large module.
fn panels(
    report: &measure::Report,
    api_rows: &[api::ApiRow],
    large: Option<&large::LargeReport>,
    cfg: &measure::Config,
) -> Vec<plot::Panel> {
    let headline = report.headline();
    let mut panels = vec![plot::Panel {
        title: "ctr run --rm of hello: p50 latency".into(),
        unit: "ms".into(),
        bars: headline
            .iter()
            .map(|(n, p50, _)| (plot::short(n), p50.as_secs_f64() * 1000.0))
            .collect(),
    }];
    if !api_rows.is_empty() {
        panels.push(plot::Panel {
            title: format!(
                "containerd API: {} tasks at concurrency {}",
                cfg.api_tasks, cfg.api_concurrency
            ),
            unit: "tasks/s".into(),
            bars: api_rows
                .iter()
                .map(|r| (plot::short(&r.name), r.tasks_per_s))
                .collect(),
        });
    }
    panels.push(plot::Panel {
        title: format!(
            "ctr run processes: {} tasks at concurrency {}",
            cfg.tasks, cfg.concurrency
        ),
        unit: "tasks/s".into(),
        bars: headline
            .iter()
            .map(|(n, _, tps)| (plot::short(n), *tps))
            .collect(),
    });
    if let Some(l) = large {
        panels.push(plot::Panel {
            title: format!(
                "{:.1} MB module vs hello: p50 start (normal mode)",
                l.module_bytes as f64 / 1e6
            ),
            unit: "ms".into(),
            bars: l
                .rows
                .iter()
                .filter(|r| r.label.contains("normal"))
                .map(|r| {
                    (
                        r.label.replace(", normal", "").replace(", same window", ""),
                        r.p50().as_secs_f64() * 1000.0,
                    )
                })
                .collect(),
        });
    }
    panels
}
