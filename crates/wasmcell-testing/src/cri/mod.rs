//! A blocking client of containerd's CRI plugin (Kubernetes CRI `runtime.v1`, the API kubelet
//! uses) over containerd's unix socket, for CRI-level tests (cargo feature `cri`).
//!
//! [`CriClient`] runs each call on its own single-threaded tokio runtime with a deadline
//! ([`CALL_TIMEOUT`] unless [`CriClient::with_timeout`] says otherwise), so no call can hang a
//! test. The generated request and response types are re-exported as [`api`]; the helpers
//! [`host_network_pod`], [`pod_network_pod`] and [`container_config`] fill them the way kubelet
//! does, and [`parse_cri_log`] reads the container log files CRI writes.

mod calls;
mod cleanup;
mod client;
mod configs;
mod log;
mod waits;

use std::time::Duration;

/// The CRI `runtime.v1` types (requests, responses, enums) and clients, from `k8s-cri`.
pub use k8s_cri::v1 as api;
/// The error of a CRI call: a gRPC status (deadlines are [`Code::DeadlineExceeded`]).
pub use tonic::{Code, Status};

/// Deadline of each CRI call (connecting included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub use cleanup::remove_all_pods;
pub use client::CriClient;
pub use configs::{
    container_config, host_network_namespaces, host_network_pod, image_spec, pod_ip,
    pod_namespaces, pod_network_mode, pod_network_pod,
};
pub use log::{cri_log_text, parse_cri_log, CriLogLine};
