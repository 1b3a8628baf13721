//! An HTTP guest's socket in shared mode, bound at Create in the container's network namespace:
//! on a thread of its own that enters the namespace (a socket stays in the namespace it was
//! made in), so that no other thread of the manager leaves the manager's.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use wasmcell_core::RunPlan;
use wasmcell_wasmtime::http::HttpOptions;

use crate::ShimError;

/// Annotation naming the pod a CRI container belongs to.
const POD_NAME: &str = "io.kubernetes.cri.sandbox-name";

/// Bind the listen address of the HTTP guest `plan` describes: in the network namespace the
/// spec names (a pod's), or the manager's when it names none (a host-network container). A
/// spec asking for a new network namespace cannot be served: the manager makes none.
pub(crate) fn bind_for(spec: &Spec, plan: &RunPlan) -> Result<TcpListener, ShimError> {
    let failed = |e: String| match pod_of(spec) {
        Some(pod) => ShimError::Workload(format!("pod {pod}: {e}")),
        None => ShimError::Workload(e),
    };
    let listen = || {
        HttpOptions::from_env(&plan.env)
            .map(|o| o.listen)
            .map_err(|e| failed(e.to_string()))
    };
    let Some(network) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| {
            ns.iter()
                .find(|n| n.typ() == LinuxNamespaceType::Network)
                .cloned()
        })
    else {
        let listen = listen()?;
        return TcpListener::bind(listen)
            .map_err(|e| failed(format!("failed to listen on {listen}: {e}")));
    };
    let Some(path) = network.path().clone() else {
        return Err(failed(
            "an http guest in shared mode needs the host's network or a pod's network \
             namespace (linux.namespaces network with a path); the shared runtime makes none"
                .into(),
        ));
    };
    let listen = listen()?;
    let bound = std::thread::Builder::new()
        .name("wasmcell-netns".into())
        .spawn(move || bind_in(&path, listen))
        .map_err(|e| {
            failed(format!(
                "cannot start the thread that binds the socket: {e}"
            ))
        })?
        .join()
        .map_err(|_| failed("the thread that binds the socket panicked".into()))?;
    bound.map_err(failed)
}

/// Enter network namespace `path` (this thread only) and bind `listen` there.
fn bind_in(path: &PathBuf, listen: SocketAddr) -> Result<TcpListener, String> {
    let netns = std::fs::File::open(path)
        .map_err(|e| format!("cannot open network namespace {}: {e}", path.display()))?;
    setns(&netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("cannot enter network namespace {}: {e}", path.display()))?;
    TcpListener::bind(listen).map_err(|e| {
        format!(
            "failed to listen on {listen} in network namespace {}: {e}",
            path.display()
        )
    })
}

fn pod_of(spec: &Spec) -> Option<String> {
    spec.annotations().as_ref()?.get(POD_NAME).cloned()
}
