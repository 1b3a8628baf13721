//! The measurements: start latency, throughput and memory per container.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use wasmcell_testing::Containerd;

use crate::runtimes::Runtime;

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) runs: usize,
    pub(crate) tasks: usize,
    pub(crate) concurrency: usize,
    pub(crate) idle: usize,
    pub(crate) out_dir: PathBuf,
    pub(crate) api_tasks: usize,
    pub(crate) api_concurrency: usize,
    pub(crate) large_mib: usize,
    pub(crate) large_cold: usize,
    pub(crate) large_warm: usize,
    pub(crate) fairness_runs: usize,
    /// Seconds of load per HTTP row (`BENCH_HTTP`, default 10; 0 skips the section).
    pub(crate) http_secs: u64,
}

impl Config {
    pub(crate) fn from_env() -> Self {
        let num = |key: &str, default: usize| {
            std::env::var(key)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Config {
            runs: num("BENCH_RUNS", 30).max(3),
            tasks: num("BENCH_TASKS", 200).max(1),
            concurrency: num("BENCH_CONCURRENCY", 8).max(1),
            idle: num("BENCH_IDLE", 10).max(1),
            out_dir: std::env::var_os("BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("results")),
            api_tasks: num("BENCH_API_TASKS", 1000),
            api_concurrency: num("BENCH_API_CONCURRENCY", 32).max(1),
            large_mib: num("BENCH_LARGE_MB", 10),
            large_cold: num("BENCH_LARGE_COLD", 3).max(1),
            large_warm: num("BENCH_LARGE_WARM", 10).max(3),
            fairness_runs: num("BENCH_FAIRNESS", 20),
            http_secs: num("BENCH_HTTP", 10) as u64,
        }
    }
}

#[derive(Debug)]
struct Row {
    name: String,
    min: Duration,
    p50: Duration,
    p99: Duration,
    tasks_per_s: f64,
    per_container: Resident,
}

#[derive(Debug)]
pub(crate) struct Report {
    rows: Vec<Row>,
    cfg: String,
}

pub(crate) fn run_all(
    c: &Containerd,
    runtimes: &[Runtime],
    cfg: &Config,
) -> anyhow::Result<Report> {
    let mut rows = Vec::new();
    for rt in runtimes.iter().filter(|r| !r.api_only) {
        eprintln!("== {}", rt.name);
        let samples = latency(c, rt, cfg.runs)?;
        let tasks_per_s = throughput(c, rt, cfg.tasks, cfg.concurrency)?;
        let per_container = memory(c, rt, cfg.idle)?;
        rows.push(Row {
            name: rt.name.clone(),
            min: samples[0],
            p50: percentile(&samples, 50),
            p99: percentile(&samples, 99),
            tasks_per_s,
            per_container,
        });
    }
    Ok(Report {
        rows,
        cfg: format!(
            "{} latency runs, {} tasks at concurrency {}, {} idle containers; {} cores",
            cfg.runs,
            cfg.tasks,
            cfg.concurrency,
            cfg.idle,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        ),
    })
}

/// One `ctr run --rm` of `cmd` in `rt`, timed.
pub(crate) fn run_once(
    c: &Containerd,
    rt: &Runtime,
    id: &str,
    cmd: &[String],
) -> anyhow::Result<Duration> {
    let mut args: Vec<&str> = vec!["run", "--rm"];
    args.extend(rt.run_args.iter().map(String::as_str));
    args.push(id);
    args.extend(cmd.iter().map(String::as_str));
    let start = Instant::now();
    let out = c.run_ctr(&args);
    let took = start.elapsed();
    if !out.success() {
        bail!("{} run {id} failed: {out:?}", rt.name);
    }
    Ok(took)
}

/// Sorted `ctr run --rm` durations after three warm-up runs.
fn latency(c: &Containerd, rt: &Runtime, runs: usize) -> anyhow::Result<Vec<Duration>> {
    for i in 0..3 {
        run_once(c, rt, &format!("warm-{i}"), &rt.hello)?;
    }
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        samples.push(run_once(c, rt, &format!("lat-{i}"), &rt.hello)?);
    }
    samples.sort();
    Ok(samples)
}

pub(crate) fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let idx = ((sorted.len() * p).div_ceil(100)).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Tasks per second for `tasks` hello runs spread over `concurrency` workers.
fn throughput(
    c: &Containerd,
    rt: &Runtime,
    tasks: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency)
            .map(|w| {
                s.spawn(move || {
                    let mut i = w;
                    while i < tasks {
                        run_once(c, rt, &format!("tp-{i}"), &rt.hello)?;
                        i += concurrency;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(tasks as f64 / start.elapsed().as_secs_f64())
}

/// Memory of the runtime's shim processes and all their descendants, per sleeping container.
fn memory(c: &Containerd, rt: &Runtime, idle: usize) -> anyhow::Result<Resident> {
    for i in 0..idle {
        let mut args: Vec<&str> = vec!["run", "-d"];
        args.extend(rt.run_args.iter().map(String::as_str));
        let id = format!("idle-{i}");
        args.push(&id);
        args.extend(rt.sleep.iter().map(String::as_str));
        let out = c.run_ctr(&args);
        if !out.success() {
            bail!("{} idle container {i} failed: {out:?}", rt.name);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let socket = c.socket().display().to_string();
    let shims: Vec<u32> = wasmcell_testing::pids_with_cmdline_containing(&socket)
        .into_iter()
        .filter(|p| rt.owns(&cmdline(*p)))
        .collect();
    let total: Resident = with_descendants(&shims).iter().map(|p| resident(*p)).sum();
    for i in 0..idle {
        let id = format!("idle-{i}");
        let _ = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
    }
    for i in 0..idle {
        let id = format!("idle-{i}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.run_ctr(&["tasks", "delete", &id]).success() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.run_ctr(&["containers", "delete", &id]);
    }
    Ok(total / idle as u64)
}

pub(crate) fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub(crate) fn with_descendants(roots: &[u32]) -> HashSet<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if let Some(ppid) = ppid {
                parent.insert(pid, ppid);
            }
        }
    }
    let mut set: HashSet<u32> = roots.iter().copied().collect();
    loop {
        let before = set.len();
        for (pid, ppid) in &parent {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// Resident memory of a process: RSS counts every page it maps in full (the shim binary's
/// code in each process again), PSS divides each page among the processes that map it (what
/// the node pays: N containers sharing one binary's code pay for it once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resident {
    pub(crate) rss: u64,
    pub(crate) pss: u64,
}

impl std::iter::Sum for Resident {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Resident::default(), |a, b| Resident {
            rss: a.rss + b.rss,
            pss: a.pss + b.pss,
        })
    }
}

impl std::ops::Div<u64> for Resident {
    type Output = Resident;

    fn div(self, n: u64) -> Resident {
        let n = n.max(1);
        Resident {
            rss: self.rss / n,
            pss: self.pss / n,
        }
    }
}

/// [`Resident`] memory of `pid` from `/proc/PID/smaps_rollup` (zero for a process gone).
pub(crate) fn resident(pid: u32) -> Resident {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Resident {
        rss: field("Rss:"),
        pss: field("Pss:"),
    }
}

impl Report {
    /// (runtime, p50 of `ctr run --rm`, `ctr run` tasks/s) per runtime.
    pub(crate) fn headline(&self) -> Vec<(String, Duration, f64)> {
        self.rows
            .iter()
            .map(|r| (r.name.clone(), r.p50, r.tasks_per_s))
            .collect()
    }

    pub(crate) fn markdown(&self) -> String {
        let baseline = self.rows.iter().find(|r| r.name.starts_with("runc"));
        let peer = self.rows.iter().find(|r| r.name.starts_with("peer ("));
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "`ctr run --rm` of a hello workload ({}); `ctr run` tasks/s counts whole `ctr run \
             --rm` processes (see below for containerd's API):\n",
            self.cfg
        );
        let _ = writeln!(
            out,
            "| runtime | min ms | p50 ms | p99 ms | p50 vs runc | p50 vs peer | `ctr run` tasks/s | tasks/s vs peer | RSS per container | PSS per container |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let vs = |b: Option<&Row>| {
                b.map(|b| format!("{:.2}x", r.p50.as_secs_f64() / b.p50.as_secs_f64()))
                    .unwrap_or_else(|| "-".into())
            };
            let tp_vs = peer
                .map(|p| format!("{:.2}x", r.tasks_per_s / p.tasks_per_s))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.1} MB | {:.1} MB |",
                r.name,
                ms(r.min),
                ms(r.p50),
                ms(r.p99),
                vs(baseline),
                vs(peer),
                r.tasks_per_s,
                tp_vs,
                r.per_container.rss as f64 / 1e6,
                r.per_container.pss as f64 / 1e6
            );
        }
        out
    }
}
