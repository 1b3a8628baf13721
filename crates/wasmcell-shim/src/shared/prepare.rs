//! What a shared-mode Create does off the executor: mount the rootfs, read the spec, decide
//! Wasm or Linux and, for Wasm, resolve the plan, compile (in the helper when the module is new
//! to the node) and link the module, and open its stdio.

use std::path::Path;

use containerd_shim::api::CreateTaskRequest;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use wasmcell_core::WorkloadKind;
use wasmcell_wasmtime::WasmtimeEngine;

use crate::artifact::Containerd;
use crate::reaper::Reaper;
use crate::rootfs::on_rootfs;
use crate::shared::compile_helper::compile_in_helper;
use crate::shared::in_process::Prepared;
use crate::stdio::GuestStdio;
use crate::ShimError;

/// What a Create finds in its bundle.
pub(crate) enum Inspected {
    /// A Linux container (runc's), on the rootfs mounted (or not) here.
    Linux { mounted: bool, spec: Box<Spec> },
    /// A Wasm guest, ready to start.
    Wasm(Box<Prepared>),
}

impl Inspected {
    /// Whether a rootfs was mounted for it.
    pub(crate) fn mounted(&self) -> bool {
        match self {
            Inspected::Linux { mounted, .. } => *mounted,
            Inspected::Wasm(p) => p.mounted,
        }
    }
}

/// Mount the container's rootfs, read its spec, and decide what it is; prepare it when it is
/// Wasm. Blocking work; the rootfs is unmounted again when this fails.
pub(crate) fn inspect(
    engine: &WasmtimeEngine,
    containerd: &Containerd,
    reaper: &Reaper,
    req: &CreateTaskRequest,
) -> Result<Inspected, ShimError> {
    on_rootfs(req, |bundle| match bundle.kind {
        WorkloadKind::Linux => Ok(Inspected::Linux {
            mounted: bundle.mounted,
            spec: Box::new(bundle.spec.clone()),
        }),
        WorkloadKind::Wasm => {
            let mut prepared = prepare(engine, containerd, reaper, req, bundle.spec)?;
            prepared.mounted = bundle.mounted;
            Ok(Inspected::Wasm(Box::new(prepared)))
        }
    })
}

/// Resolve the bundle's run plan from its `spec`, compile and link its module, open its stdio
/// (blocking work).
fn prepare(
    engine: &WasmtimeEngine,
    containerd: &Containerd,
    reaper: &Reaper,
    req: &CreateTaskRequest,
    spec: &Spec,
) -> Result<Prepared, ShimError> {
    let (id, bundle) = (req.id.as_str(), Path::new(&req.bundle));
    let loaded = crate::artifact::load(spec, bundle, id, containerd)
        .map_err(|e| ShimError::Workload(e.to_string()))?;
    let (plan, wasm) = (loaded.plan, loaded.wasm);
    // Guests share the manager's network namespace: they get sockets only when the container
    // asked for the host's network (no network namespace of its own).
    let plan = if plan.network && !host_network(spec) {
        tracing::info!(container = %id, "no sockets: the shared runtime cannot enter a container's own network namespace");
        plan.with_network(false)
    } else {
        plan
    };
    // One process holds every guest: a guest without a memory limit gets the manager's default
    // cap, so that it cannot take the memory of all the others.
    let plan = match plan.memory_limit {
        Some(_) => plan,
        None => {
            let cap = default_memory_limit();
            plan.with_memory_limit(Some(cap))
        }
    };
    // A module new to the node is compiled in a helper process (its memory capped, its crash
    // its own), into the node's cache; the manager then only loads code. An artifact's module
    // (its bytes from containerd) is compiled here, bounded by the artifact size cap.
    if let Some(source) = &loaded.source {
        if !engine.has_compiled(&wasm) {
            compile_in_helper(reaper, &source.root, &source.path, id)?;
            if !engine.has_compiled(&wasm) {
                tracing::warn!(container = %id, "the compiled code is not in the node's cache (is it usable?); compiling in the manager");
            }
        }
    }
    let guest = engine
        .prepare_guest(&plan, &wasm)
        .map_err(|e| ShimError::Workload(e.to_string()))?;
    let listener = match guest.serves_http() {
        true => Some(crate::shared::http_listener::bind_for(spec, &plan)?),
        false => None,
    };
    let stdio = GuestStdio::open(&req.stdin, &req.stdout, &req.stderr)?;
    Ok(Prepared {
        plan,
        wasm,
        guest,
        stdio,
        mounted: false,
        cpu_quota: crate::shared::cpu_time::CpuQuota::of(spec),
        listener,
    })
}

/// Memory cap of a guest whose container sets no memory limit: 1 GiB, or
/// `WASMCELL_SHARED_MEMORY_LIMIT` (bytes) in the manager's environment.
fn default_memory_limit() -> u64 {
    std::env::var("WASMCELL_SHARED_MEMORY_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(1 << 30)
}

fn host_network(spec: &Spec) -> bool {
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network)
}
