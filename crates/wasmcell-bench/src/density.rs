//! Density: N sleeping containers started at once, then the memory they hold.
//!
//! For each runtime and N: `ctr run -d` of N sleeping guests over `concurrency` workers (start
//! throughput and the p50/p99 of each `ctr run`), then the RSS and PSS of the runtime's
//! processes (all shims and their children, or the one manager) divided by N, and containerd's
//! own RSS.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use wasmcell_testing::Containerd;

use crate::measure::{cmdline, percentile, resident, with_descendants, Resident};
use crate::runtimes::Runtime;

#[derive(Debug)]
pub(crate) struct DensityRow {
    name: String,
    n: usize,
    tasks_per_s: f64,
    p50: Duration,
    p99: Duration,
    per_container: Resident,
    containerd_rss: u64,
    /// How many were running when measured (all `n`, unless one was refused).
    held: usize,
    /// How many processes the runtime had (managers, or shims and guests).
    processes: usize,
    /// Why a container could not start, when one could not: the rest are not tried.
    refused: Option<String>,
}

/// Start `n` sleeping containers of `rt`, measure, and remove them.
pub(crate) fn density(
    c: &Containerd,
    rt: &Runtime,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<DensityRow> {
    eprintln!("== density: {} x {n}", rt.name);
    let start = Instant::now();
    let (mut samples, failure) = start_sleepers(c, rt, n, concurrency);
    let elapsed = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (total, processes) = runtime_memory(c, rt);
    let containerd_rss = c.pid().map_or(0, |p| resident(p).rss);
    let held = samples.len();
    remove_all(c, n, concurrency);
    if held == 0 {
        bail!(
            "{}: no container started: {}",
            rt.name,
            failure.unwrap_or_default()
        );
    }
    if let Some(e) = &failure {
        eprintln!("density stopped at {held} of {n}: {e}");
    }
    samples.sort();
    Ok(DensityRow {
        name: rt.name.clone(),
        n,
        tasks_per_s: held as f64 / elapsed.as_secs_f64(),
        p50: percentile(&samples, 50),
        p99: percentile(&samples, 99),
        per_container: total / held as u64,
        containerd_rss,
        held,
        processes,
        refused: failure,
    })
}

/// `ctr run -d` of containers `dense-0` to `dense-{n-1}` of `rt` over `concurrency` workers;
/// returns the start time of every container started, and why starting stopped early if it
/// did (the first failure stops every worker; the containers started before still count).
fn start_sleepers(
    c: &Containerd,
    rt: &Runtime,
    n: usize,
    concurrency: usize,
) -> (Vec<Duration>, Option<String>) {
    let stop = AtomicBool::new(false);
    let stop = &stop;
    let results: Vec<(Vec<Duration>, Option<String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..concurrency)
            .map(|w| s.spawn(move || start_worker_share(c, rt, (w, n, concurrency), stop)))
            .collect();
        workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Vec::new(), Some("worker panicked".to_string())))
            })
            .collect()
    });
    let mut samples = Vec::with_capacity(n);
    let mut failure = None;
    for (took, why) in results {
        samples.extend(took);
        if why.is_some() {
            failure = why;
        }
    }
    (samples, failure)
}

/// Worker `w`'s share of [`start_sleepers`]: containers `w`, `w + concurrency`, ... below `n`,
/// until one fails (which sets `stop`) or another worker set `stop`. Returns the start times
/// of its containers, and why it stopped early, if it did.
fn start_worker_share(
    c: &Containerd,
    rt: &Runtime,
    (w, n, concurrency): (usize, usize, usize),
    stop: &AtomicBool,
) -> (Vec<Duration>, Option<String>) {
    let mut took = Vec::new();
    let mut i = w;
    while i < n && !stop.load(Ordering::Relaxed) {
        let id = format!("dense-{i}");
        let mut args: Vec<&str> = vec!["run", "-d"];
        args.extend(rt.run_args.iter().map(String::as_str));
        args.push(&id);
        args.extend(rt.sleep.iter().map(String::as_str));
        let begun = Instant::now();
        let out = c.run_ctr(&args);
        if !out.success() {
            stop.store(true, Ordering::Relaxed);
            let _ = c.run_ctr(&["containers", "delete", &id]);
            let why = format!("container {id} failed: {}", out.stderr.trim());
            return (took, Some(why));
        }
        took.push(begun.elapsed());
        i += concurrency;
    }
    (took, None)
}

/// The resident memory of `rt`'s processes on containerd `c` (its shims or managers, with
/// their descendants), and how many such processes (without descendants) there are.
fn runtime_memory(c: &Containerd, rt: &Runtime) -> (Resident, usize) {
    let socket = c.socket().display().to_string();
    let procs: Vec<u32> = wasmcell_testing::pids_with_cmdline_containing(&socket)
        .into_iter()
        .filter(|p| rt.owns(&cmdline(*p)))
        .collect();
    let total: Resident = with_descendants(&procs).iter().map(|p| resident(*p)).sum();
    (total, procs.len())
}

/// Kill and delete containers `dense-0` to `dense-{n-1}` over `concurrency` workers, waiting up
/// to 20 s for each task to go; those never started are skipped.
fn remove_all(c: &Containerd, n: usize, concurrency: usize) {
    std::thread::scope(|s| {
        for w in 0..concurrency {
            s.spawn(move || {
                let mut i = w;
                while i < n {
                    let id = format!("dense-{i}");
                    let _ = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
                    let deadline = Instant::now() + Duration::from_secs(20);
                    loop {
                        let out = c.run_ctr(&["tasks", "delete", &id]);
                        // Never started (the run stopped before it): nothing to wait for.
                        if out.success()
                            || out.stderr.contains("not found")
                            || Instant::now() >= deadline
                        {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let _ = c.run_ctr(&["containers", "delete", &id]);
                    i += concurrency;
                }
            });
        }
    });
}

pub(crate) fn markdown(rows: &[DensityRow], concurrency: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSleeping containers started with `ctr run -d` at concurrency {concurrency}:\n"
    );
    let _ = writeln!(
        out,
        "| runtime | containers (running / asked) | runtime processes | start tasks/s | p50 ms | p99 ms | runtime RSS per container | runtime PSS per container | containerd RSS |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} | {:.1} | {:.1} | {:.1} | {:.2} MB | {:.2} MB | {:.0} MB |",
            r.name,
            r.held,
            r.n,
            r.processes,
            r.tasks_per_s,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0,
            r.per_container.rss as f64 / 1e6,
            r.per_container.pss as f64 / 1e6,
            r.containerd_rss as f64 / 1e6
        );
    }
    for r in rows.iter().filter(|r| r.refused.is_some()) {
        let _ = writeln!(
            out,
            "\n{} stopped at {} of {}: {}",
            r.name,
            r.held,
            r.n,
            r.refused.as_deref().unwrap_or_default()
        );
    }
    out
}
