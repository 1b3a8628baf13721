//! Density: N sleeping containers started at once, then the memory they hold.
//!
//! For each runtime and N: `ctr run -d` of N sleeping guests over `concurrency` workers (start
//! throughput and the p50/p99 of each `ctr run`), then the RSS and PSS of the runtime's
//! processes (all shims and their children, or the one manager) divided by N, and containerd's
//! own RSS.

use std::fmt::Write as _;
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
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stop = &stop;
    // Each worker: the start times of its containers, and why it stopped early, if it did
    // (the containers it started before still count).
    let results: Vec<(Vec<Duration>, Option<String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..concurrency)
            .map(|w| {
                s.spawn(move || {
                    let mut took = Vec::new();
                    let mut i = w;
                    while i < n && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let id = format!("dense-{i}");
                        let mut args: Vec<&str> = vec!["run", "-d"];
                        args.extend(rt.run_args.iter().map(String::as_str));
                        args.push(&id);
                        args.extend(rt.sleep.iter().map(String::as_str));
                        let begun = Instant::now();
                        let out = c.run_ctr(&args);
                        if !out.success() {
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                            let _ = c.run_ctr(&["containers", "delete", &id]);
                            let why = format!("container {id} failed: {}", out.stderr.trim());
                            return (took, Some(why));
                        }
                        took.push(begun.elapsed());
                        i += concurrency;
                    }
                    (took, None)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Vec::new(), Some("worker panicked".to_string())))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut samples = Vec::with_capacity(n);
    let mut failure = None;
    for (took, why) in results {
        samples.extend(took);
        if why.is_some() {
            failure = why;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let socket = c.socket().display().to_string();
    let procs: Vec<u32> = wasmcell_testing::pids_with_cmdline_containing(&socket)
        .into_iter()
        .filter(|p| rt.owns(&cmdline(*p)))
        .collect();
    let total: Resident = with_descendants(&procs).iter().map(|p| resident(*p)).sum();
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
        processes: procs.len(),
        refused: failure,
    })
}

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
