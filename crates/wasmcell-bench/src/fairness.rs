//! Fairness between guests: with two spinning guests running, how long a hello `ctr run --rm`
//! takes against the same run alone, and how soon a SIGKILLed spinning guest is reported
//! stopped (from the Kill call through containerd's API to its Wait returning). Shared mode is
//! the case that matters (one process for every guest); normal mode, where each guest is a
//! process of its own, is the baseline, measured the same way in the same run.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{KillRequest, WaitRequest};
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::Request;
use wasmcell_testing::Containerd;

use crate::measure::{percentile, run_once};
use crate::runtimes::Runtime;

/// How many spinners run beside the measured hello runs.
const SPINNERS: usize = 2;
/// How many spinners are killed, one at a time, for the stop latency.
const KILLS: usize = 7;

#[derive(Debug)]
pub(crate) struct FairnessRow {
    name: String,
    alone_p50: Duration,
    spinning_p50: Duration,
    spinning_p99: Duration,
    kill_p50: Duration,
    kill_max: Duration,
}

/// Measure `rt` (`runs` hello runs alone, then as many beside [`SPINNERS`] spinning guests,
/// then [`KILLS`] kills of a spinning guest).
pub(crate) fn measure(c: &Containerd, rt: &Runtime, runs: usize) -> anyhow::Result<FairnessRow> {
    eprintln!("== fairness: {}", rt.name);
    let spin = spin_args(rt);
    let hello = |prefix: &str| -> anyhow::Result<Vec<Duration>> {
        let mut took = (0..runs)
            .map(|i| run_once(c, rt, &format!("{prefix}-{i}"), &rt.hello))
            .collect::<anyhow::Result<Vec<_>>>()?;
        took.sort();
        Ok(took)
    };
    run_once(c, rt, "fair-warm", &rt.hello)?;
    let alone = hello("fair-alone")?;
    let spinners: Vec<String> = (0..SPINNERS).map(|i| format!("fair-spin-{i}")).collect();
    for id in &spinners {
        start_detached(c, rt, id, &spin)?;
    }
    let spinning = hello("fair-spinning");
    let kills = kill_latencies(c, rt, &spin);
    for id in &spinners {
        remove(c, id);
    }
    let (spinning, mut kills) = (spinning?, kills?);
    kills.sort();
    Ok(FairnessRow {
        name: rt.name.clone(),
        alone_p50: percentile(&alone, 50),
        spinning_p50: percentile(&spinning, 50),
        spinning_p99: percentile(&spinning, 99),
        kill_p50: percentile(&kills, 50),
        kill_max: kills.last().copied().unwrap_or_default(),
    })
}

/// The runtime's sleep command with `spin` in place of `sleep N` (the probe guest).
fn spin_args(rt: &Runtime) -> Vec<String> {
    let mut args: Vec<String> = rt.sleep.iter().take(1).cloned().collect();
    args.push("spin".into());
    args
}

fn start_detached(c: &Containerd, rt: &Runtime, id: &str, cmd: &[String]) -> anyhow::Result<()> {
    let mut args: Vec<&str> = vec!["run", "-d"];
    args.extend(rt.run_args.iter().map(String::as_str));
    args.push(id);
    args.extend(cmd.iter().map(String::as_str));
    let out = c.run_ctr(&args);
    if !out.success() {
        bail!("{} container {id} failed: {out:?}", rt.name);
    }
    Ok(())
}

fn remove(c: &Containerd, id: &str) {
    let _ = c.run_ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.run_ctr(&["tasks", "delete", id]).success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.run_ctr(&["containers", "delete", id]);
}

/// For each of [`KILLS`] spinning guests (beside the [`SPINNERS`]): the time from sending
/// SIGKILL through containerd's API to containerd's Wait for it returning.
fn kill_latencies(c: &Containerd, rt: &Runtime, spin: &[String]) -> anyhow::Result<Vec<Duration>> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start a tokio runtime for the API client")?;
    let namespace: MetadataValue<Ascii> = c
        .namespace()
        .parse()
        .with_context(|| format!("namespace {} is not a header value", c.namespace()))?;
    let channel = tokio
        .block_on(containerd_client::connect(c.socket()))
        .with_context(|| format!("failed to connect to {}", c.socket().display()))?;
    let mut took = Vec::with_capacity(KILLS);
    for k in 0..KILLS {
        let id = format!("fair-victim-{k}");
        start_detached(c, rt, &id, spin)?;
        let measured = tokio.block_on(async {
            let mut tasks = TasksClient::new(channel.clone());
            let wait = {
                let mut tasks = tasks.clone();
                let request = in_namespace(
                    &namespace,
                    WaitRequest {
                        container_id: id.clone(),
                        exec_id: String::new(),
                    },
                );
                tokio::spawn(async move { tasks.wait(request).await })
            };
            // Let the guest spin and the Wait reach the shim.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let begun = Instant::now();
            tasks
                .kill(in_namespace(
                    &namespace,
                    KillRequest {
                        container_id: id.clone(),
                        exec_id: String::new(),
                        signal: 9,
                        all: false,
                    },
                ))
                .await
                .with_context(|| format!("failed to kill {id}"))?;
            let status = wait
                .await
                .map_err(|e| anyhow!("waiting for {id} panicked: {e}"))?
                .with_context(|| format!("failed to wait for {id}"))?
                .into_inner()
                .exit_status;
            let elapsed = begun.elapsed();
            if status != 137 {
                bail!("{id} exited with {status}, not 137");
            }
            Ok(elapsed)
        });
        remove(c, &id);
        took.push(measured?);
    }
    Ok(took)
}

/// A request carrying containerd's namespace header.
fn in_namespace<T>(namespace: &MetadataValue<Ascii>, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", namespace.clone());
    r
}

pub(crate) fn markdown(rows: &[FairnessRow], runs: usize) -> String {
    let mut s = format!(
        "\n### Fairness: {SPINNERS} spinning guests on {} CPUs\n\n`ctr run --rm` of hello ({runs} runs) alone and beside {SPINNERS} spinning guests \
         (the issue's goal: at most 2x); a spinning guest SIGKILLed through containerd's API \
         until containerd's Wait returns ({KILLS} kills; goal: 50 ms).\n\n\
         | runtime | hello alone p50 | with spinners p50 | p99 | ratio (p50) | kill -> stopped p50 | max |\n\
         |---|---|---|---|---|---|---|\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}x | {:.1} ms | {:.1} ms |",
            r.name,
            ms(r.alone_p50),
            ms(r.spinning_p50),
            ms(r.spinning_p99),
            ms(r.spinning_p50) / ms(r.alone_p50).max(0.001),
            ms(r.kill_p50),
            ms(r.kill_max)
        );
    }
    s
}
