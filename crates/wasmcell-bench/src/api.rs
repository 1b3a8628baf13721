//! Throughput through containerd's gRPC API (issue #7): `BENCH_API_TASKS` hello tasks, each
//! created, started, waited for and deleted at concurrency `BENCH_API_CONCURRENCY`, the way
//! a containerd client (kubelet's CRI plugin, nerdctl) drives a runtime, without `ctr`'s own
//! process start per task.
//!
//! Per task: create the container (an OCI spec built here, the hello workload's args, root
//! `rootfs`), prepare its snapshot on the image's top layer chain id, create the task with the
//! snapshot's mounts and no stdio, call Wait (before Start, as containerd's Go client does),
//! start it, await the exit (status 0 required), delete the task, remove the snapshot and the
//! container.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetImageRequest, ReadContentRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use containerd_client::types::Mount;
use oci_spec::runtime::Spec;
use sha2::{Digest as _, Sha256};
use wasmcell_testing::Containerd;

use crate::measure::percentile;
use crate::runtimes::Runtime;

/// The type URL containerd gives an OCI runtime spec.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// Deadline of one task's whole lifecycle.
const TASK_TIMEOUT: Duration = Duration::from_secs(120);
/// Tasks run one by one before the measurement (shim binaries and images in the page cache).
const WARM_UP: usize = 2;

/// What the API measurement of every runtime gave: rows, and the runtimes that failed.
#[derive(Debug, Default)]
pub(crate) struct ApiReport {
    pub(crate) rows: Vec<ApiRow>,
    pub(crate) failures: Vec<(String, String)>,
}

/// Tasks/s through the API for one runtime.
#[derive(Debug)]
pub(crate) struct ApiRow {
    pub(crate) name: String,
    pub(crate) tasks_per_s: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

/// What every task of one runtime shares.
#[derive(Debug, Clone)]
struct Plan {
    channel: Channel,
    namespace: MetadataValue<Ascii>,
    namespace_name: String,
    snapshotter: String,
    runtime_type: String,
    image: String,
    chain_id: String,
    args: Vec<String>,
    prefix: String,
}

/// A request carrying containerd's namespace header.
fn req<T>(plan: &Plan, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", plan.namespace.clone());
    r
}

/// Measure every runtime through the API of `c`; a runtime that fails is reported and skipped.
pub(crate) fn measure_all(
    c: &Containerd,
    runtimes: &[Runtime],
    tasks: usize,
    concurrency: usize,
) -> anyhow::Result<ApiReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime for the API client")?;
    rt.block_on(async {
        let channel = containerd_client::connect(c.socket())
            .await
            .with_context(|| format!("failed to connect to {}", c.socket().display()))?;
        let namespace: MetadataValue<Ascii> = c
            .namespace()
            .parse()
            .with_context(|| format!("namespace {} is not a header value", c.namespace()))?;
        let mut report = ApiReport::default();
        for (n, runtime) in runtimes.iter().enumerate() {
            eprintln!(
                "== API: {} x {tasks} at concurrency {concurrency}",
                runtime.name
            );
            let mut plan = Plan {
                channel: channel.clone(),
                namespace: namespace.clone(),
                namespace_name: c.namespace().to_string(),
                snapshotter: c.snapshotter().to_string(),
                runtime_type: runtime.runtime_type.clone(),
                image: runtime.image.clone(),
                chain_id: String::new(),
                args: runtime.hello.clone(),
                prefix: format!("api{n}"),
            };
            let outcome = match chain_id(&plan).await {
                Ok(chain) => {
                    plan.chain_id = chain;
                    measure(runtime, Arc::new(plan), tasks, concurrency).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(row) => report.rows.push(row),
                Err(e) => {
                    eprintln!("{} through containerd's API failed: {e:#}", runtime.name);
                    report
                        .failures
                        .push((runtime.name.clone(), format!("{e:#}")));
                }
            }
        }
        Ok(report)
    })
}

async fn measure(
    runtime: &Runtime,
    plan: Arc<Plan>,
    tasks: usize,
    concurrency: usize,
) -> anyhow::Result<ApiRow> {
    for i in 0..WARM_UP {
        lifecycle(&plan, &format!("{}-warm-{i}", plan.prefix)).await?;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let plan = plan.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut took = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tasks {
                        return Ok::<_, anyhow::Error>(took);
                    }
                    let begun = Instant::now();
                    lifecycle(&plan, &format!("{}-{i}", plan.prefix)).await?;
                    took.push(begun.elapsed());
                }
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(tasks);
    let mut failure = None;
    for w in workers {
        match w.await {
            Ok(Ok(t)) => samples.extend(t),
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(anyhow!("API worker panicked: {e}")),
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = failure {
        return Err(e.context(format!("{} through containerd's API", runtime.name)));
    }
    samples.sort();
    Ok(ApiRow {
        name: runtime.name.clone(),
        tasks_per_s: tasks as f64 / elapsed.as_secs_f64(),
        p50: percentile(&samples, 50),
        p99: percentile(&samples, 99),
    })
}

/// One task from container creation to container removal; cleans up after a failure.
async fn lifecycle(plan: &Plan, id: &str) -> anyhow::Result<()> {
    let run = tokio::time::timeout(TASK_TIMEOUT, run_task(plan, id)).await;
    let outcome = match run {
        Ok(r) => r,
        Err(_) => Err(anyhow!("task {id} did not finish within {TASK_TIMEOUT:?}")),
    };
    if outcome.is_err() {
        cleanup(plan, id).await;
    }
    outcome
}

/// One task's lifecycle, failing at the first call that fails: create its container and
/// snapshot, create and start the task, check its exit status, then remove all three.
async fn run_task(plan: &Plan, id: &str) -> anyhow::Result<()> {
    // The container first: it references the snapshot key, which keeps containerd's garbage
    // collector off the snapshot from the moment it is prepared.
    create_container(plan, id).await?;
    let mounts = prepare_snapshot(plan, id).await?;
    let mut tasks = TasksClient::new(plan.channel.clone());
    tasks
        .create(req(
            plan,
            CreateTaskRequest {
                container_id: id.to_string(),
                rootfs: mounts,
                ..Default::default()
            },
        ))
        .await
        .with_context(|| format!("failed to create task {id}"))?;
    let status = start_and_wait(plan, &mut tasks, id).await?;
    if status != 0 {
        bail!("task {id} exited with status {status}");
    }
    remove_task(plan, &mut tasks, id).await
}

/// Create container `id`: the plan's image and runtime, [`spec_json`]'s spec, and the snapshot
/// key `id` (prepared next).
async fn create_container(plan: &Plan, id: &str) -> anyhow::Result<()> {
    let container = Container {
        id: id.to_string(),
        image: plan.image.clone(),
        runtime: Some(ContainerRuntime {
            name: plan.runtime_type.clone(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: SPEC_TYPE_URL.to_string(),
            value: spec_json(plan, id)?,
        }),
        snapshotter: plan.snapshotter.clone(),
        snapshot_key: id.to_string(),
        ..Default::default()
    };
    ContainersClient::new(plan.channel.clone())
        .create(req(
            plan,
            CreateContainerRequest {
                container: Some(container),
            },
        ))
        .await
        .with_context(|| format!("failed to create container {id}"))?;
    Ok(())
}

/// Prepare the snapshot `id` on the image's chain id; returns its mounts, the task's rootfs.
async fn prepare_snapshot(plan: &Plan, id: &str) -> anyhow::Result<Vec<Mount>> {
    let mounts = SnapshotsClient::new(plan.channel.clone())
        .prepare(req(
            plan,
            PrepareSnapshotRequest {
                snapshotter: plan.snapshotter.clone(),
                key: id.to_string(),
                parent: plan.chain_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .with_context(|| format!("failed to prepare the snapshot of {id}"))?
        .into_inner()
        .mounts;
    Ok(mounts)
}

/// Call Wait on task `id` (before Start, as containerd's Go client does), start it, and return
/// its exit status.
async fn start_and_wait(
    plan: &Plan,
    tasks: &mut TasksClient<Channel>,
    id: &str,
) -> anyhow::Result<u32> {
    let wait = {
        let mut tasks = tasks.clone();
        let request = req(
            plan,
            WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            },
        );
        tokio::spawn(async move { tasks.wait(request).await })
    };
    tasks
        .start(req(
            plan,
            StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            },
        ))
        .await
        .with_context(|| format!("failed to start task {id}"))?;
    let status = wait
        .await
        .map_err(|e| anyhow!("waiting for task {id} panicked: {e}"))?
        .with_context(|| format!("failed to wait for task {id}"))?
        .into_inner()
        .exit_status;
    Ok(status)
}

/// Delete the exited task `id`, then its snapshot and its container.
async fn remove_task(
    plan: &Plan,
    tasks: &mut TasksClient<Channel>,
    id: &str,
) -> anyhow::Result<()> {
    tasks
        .delete(req(
            plan,
            DeleteTaskRequest {
                container_id: id.to_string(),
            },
        ))
        .await
        .with_context(|| format!("failed to delete task {id}"))?;
    SnapshotsClient::new(plan.channel.clone())
        .remove(req(
            plan,
            RemoveSnapshotRequest {
                snapshotter: plan.snapshotter.clone(),
                key: id.to_string(),
            },
        ))
        .await
        .with_context(|| format!("failed to remove the snapshot of {id}"))?;
    ContainersClient::new(plan.channel.clone())
        .delete(req(plan, DeleteContainerRequest { id: id.to_string() }))
        .await
        .with_context(|| format!("failed to delete container {id}"))?;
    Ok(())
}

/// Best effort removal of whatever a failed task left behind.
async fn cleanup(plan: &Plan, id: &str) {
    let mut tasks = TasksClient::new(plan.channel.clone());
    let _ = tasks
        .kill(req(
            plan,
            containerd_client::services::v1::KillRequest {
                container_id: id.to_string(),
                signal: 9,
                all: true,
                ..Default::default()
            },
        ))
        .await;
    let _ = tasks
        .delete(req(
            plan,
            DeleteTaskRequest {
                container_id: id.to_string(),
            },
        ))
        .await;
    let _ = SnapshotsClient::new(plan.channel.clone())
        .remove(req(
            plan,
            RemoveSnapshotRequest {
                snapshotter: plan.snapshotter.clone(),
                key: id.to_string(),
            },
        ))
        .await;
    let _ = ContainersClient::new(plan.channel.clone())
        .delete(req(plan, DeleteContainerRequest { id: id.to_string() }))
        .await;
}

/// The OCI runtime spec of one task: the runc-style default (`oci-spec`'s), the hello args,
/// no terminal, a writable `rootfs` and the cgroup path `ctr` would give it.
fn spec_json(plan: &Plan, id: &str) -> anyhow::Result<Vec<u8>> {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_terminal(Some(false));
    process.set_args(Some(plan.args.clone()));
    process.set_env(Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    ]));
    process.set_cwd(PathBuf::from("/"));
    spec.set_process(Some(process));
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(format!(
        "/{}/{id}",
        plan.namespace_name
    ))));
    spec.set_linux(Some(linux));
    serde_json::to_vec(&spec).context("failed to serialize the OCI runtime spec")
}

/// The whole blob `digest` from containerd's content store.
async fn read_blob(plan: &Plan, digest: &str) -> anyhow::Result<serde_json::Value> {
    let mut stream = ContentClient::new(plan.channel.clone())
        .read(req(
            plan,
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
        ))
        .await
        .with_context(|| format!("failed to read blob {digest}"))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .with_context(|| format!("failed to read blob {digest}"))?
    {
        bytes.extend_from_slice(&chunk.data);
    }
    serde_json::from_slice(&bytes).with_context(|| format!("blob {digest} is not JSON"))
}

/// The chain id of the image's top layer (its unpacked snapshot), checked to exist; empty for a
/// Wasm OCI artifact, which has no layer to unpack.
async fn chain_id(plan: &Plan) -> anyhow::Result<String> {
    let image = ImagesClient::new(plan.channel.clone())
        .get(req(
            plan,
            GetImageRequest {
                name: plan.image.clone(),
            },
        ))
        .await
        .with_context(|| format!("failed to look up image {}", plan.image))?
        .into_inner()
        .image
        .and_then(|i| i.target)
        .with_context(|| format!("image {} has no target", plan.image))?;
    let mut manifest = read_blob(plan, &image.digest).await?;
    if manifest.get("manifests").is_some() {
        // An index: the host's platform if listed, else the first manifest.
        let entries = manifest["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let arch = wasmcell_testing::host_architecture();
        let chosen = entries
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .or(entries.first())
            .and_then(|m| m["digest"].as_str())
            .with_context(|| format!("image {} has an empty index", plan.image))?
            .to_string();
        manifest = read_blob(plan, &chosen).await?;
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .with_context(|| format!("image {} has a manifest without config", plan.image))?;
    let config = read_blob(plan, config_digest).await?;
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str()).collect())
        .unwrap_or_default();
    if diff_ids.is_empty() && config["architecture"] == "wasm" {
        // A Wasm OCI artifact: no layer to unpack; the container gets an empty snapshot, as
        // CRI gives it, and the shim reads the module from the content store.
        return Ok(String::new());
    }
    let mut chain = diff_ids
        .first()
        .with_context(|| format!("image {} has no layers", plan.image))?
        .to_string();
    for diff in &diff_ids[1..] {
        let digest = Sha256::digest(format!("{chain} {diff}").as_bytes());
        chain = format!("sha256:{}", hex(&digest));
    }
    SnapshotsClient::new(plan.channel.clone())
        .stat(req(
            plan,
            StatSnapshotRequest {
                snapshotter: plan.snapshotter.clone(),
                key: chain.clone(),
            },
        ))
        .await
        .with_context(|| {
            format!(
                "image {} is not unpacked in {} (no snapshot {chain})",
                plan.image, plan.snapshotter
            )
        })?;
    Ok(chain)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn markdown(report: &ApiReport, tasks: usize, concurrency: usize) -> String {
    let rows = &report.rows;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nThrough containerd's gRPC API: {tasks} hello tasks created, started, waited for and \
         deleted (with their container and snapshot) at concurrency {concurrency}:\n"
    );
    let runc = rows.iter().find(|r| r.name.starts_with("runc"));
    let peer = rows.iter().find(|r| r.name.starts_with("peer ("));
    let _ = writeln!(
        out,
        "| runtime | tasks/s | vs runc | vs peer | p50 ms per task | p99 ms per task |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for r in rows {
        let vs = |b: Option<&ApiRow>| {
            b.map(|b| format!("{:.2}x", r.tasks_per_s / b.tasks_per_s))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} | {:.1} | {:.1} |",
            r.name,
            r.tasks_per_s,
            vs(runc),
            vs(peer),
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0
        );
    }
    for (name, error) in &report.failures {
        let _ = writeln!(out, "| {name} | failed: {error} | - | - | - | - |");
    }
    out
}
