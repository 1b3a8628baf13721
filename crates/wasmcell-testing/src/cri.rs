//! A blocking client of containerd's CRI plugin (Kubernetes CRI `runtime.v1`, the API kubelet
//! uses) over containerd's unix socket, for CRI-level tests (cargo feature `cri`).
//!
//! [`CriClient`] runs each call on its own single-threaded tokio runtime with a deadline
//! ([`CALL_TIMEOUT`] unless [`CriClient::with_timeout`] says otherwise), so no call can hang a
//! test. The generated request and response types are re-exported as [`api`]; the helpers
//! [`host_network_pod`], [`pod_network_pod`] and [`container_config`] fill them the way kubelet
//! does, and [`parse_cri_log`] reads the container log files CRI writes.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

/// The CRI `runtime.v1` types (requests, responses, enums) and clients, from `k8s-cri`.
pub use k8s_cri::v1 as api;
/// The error of a CRI call: a gRPC status (deadlines are [`Code::DeadlineExceeded`]).
pub use tonic::{Code, Status};

/// Deadline of each CRI call (connecting included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace period [`remove_all_pods`] gives containers before SIGKILL: none, as for a pod whose
/// grace period is over.
const CLEANUP_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of the polling helpers.
const POLL: Duration = Duration::from_millis(50);

/// A blocking CRI client: every method runs one CRI call to its end or to its deadline.
#[derive(Debug)]
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    socket: PathBuf,
    timeout: Duration,
}

impl CriClient {
    /// Connect to the CRI plugin serving on `socket` (containerd's gRPC socket).
    ///
    /// # Errors
    /// When the runtime cannot be built or nothing answers on the socket within
    /// [`CALL_TIMEOUT`].
    pub fn connect(socket: &Path) -> Result<CriClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
        let path = socket.to_path_buf();
        // The URI is not used: the connector always dials the unix socket.
        let endpoint = Endpoint::from_static("http://[::1]:50051")
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT);
        let connect = endpoint.connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }));
        // The timer must be created inside the runtime.
        let channel = match rt.block_on(async { tokio::time::timeout(CALL_TIMEOUT, connect).await })
        {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(format!("connecting to {}: {e:?}", socket.display())),
            Err(_) => {
                return Err(format!(
                    "connecting to {}: no answer within {CALL_TIMEOUT:?}",
                    socket.display()
                ))
            }
        };
        Ok(CriClient {
            rt,
            channel,
            socket: socket.to_path_buf(),
            timeout: CALL_TIMEOUT,
        })
    }

    /// The same client with another deadline per call.
    pub fn with_timeout(mut self, timeout: Duration) -> CriClient {
        self.timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A raw `RuntimeService` client on this connection, for calls without a helper here; run
    /// its futures with [`CriClient::call`].
    pub fn runtime_service(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// A raw `ImageService` client on this connection; run its futures with
    /// [`CriClient::call`].
    pub fn image_service(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    /// Run one call (a future of a raw client) to its end, or fail with
    /// [`Code::DeadlineExceeded`] after the client's deadline. `what` names it in errors.
    ///
    /// # Errors
    /// The call's status, or the deadline.
    pub fn call<T, F>(&self, what: &str, call: F) -> Result<T, Status>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let timeout = self.timeout;
        match self
            .rt
            .block_on(async move { tokio::time::timeout(timeout, call).await })
        {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// `Version`.
    ///
    /// # Errors
    /// The call's status.
    pub fn version(&self) -> Result<api::VersionResponse, Status> {
        let mut c = self.runtime_service();
        self.call(
            "Version",
            c.version(api::VersionRequest {
                version: "v1".into(),
            }),
        )
    }

    /// `Status` (runtime and network conditions).
    ///
    /// # Errors
    /// The call's status.
    pub fn status(&self) -> Result<api::StatusResponse, Status> {
        let mut c = self.runtime_service();
        self.call("Status", c.status(api::StatusRequest { verbose: false }))
    }

    /// `RunPodSandbox` with `runtime_handler`; returns the pod sandbox id.
    ///
    /// # Errors
    /// The call's status.
    pub fn run_pod_sandbox(
        &self,
        config: &api::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, Status> {
        let mut c = self.runtime_service();
        self.call(
            "RunPodSandbox",
            c.run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: runtime_handler.into(),
            }),
        )
        .map(|r| r.pod_sandbox_id)
    }

    /// `PodSandboxStatus`.
    ///
    /// # Errors
    /// The call's status; `NotFound` for an unknown pod.
    pub fn pod_sandbox_status(&self, pod_id: &str) -> Result<api::PodSandboxStatus, Status> {
        let mut c = self.runtime_service();
        self.call(
            "PodSandboxStatus",
            c.pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.into(),
                verbose: false,
            }),
        )?
        .status
        .ok_or_else(|| Status::internal(format!("PodSandboxStatus of {pod_id}: no status")))
    }

    /// `PodSandboxStatus` with `verbose`: the status and the runtime's extra information
    /// (containerd puts a JSON document under `"info"`: `pid` of the sandbox, `runtimeSpec`
    /// with the pod's namespaces, `cniResult`, ...).
    ///
    /// # Errors
    /// The call's status; `NotFound` for an unknown pod.
    pub fn pod_sandbox_status_verbose(
        &self,
        pod_id: &str,
    ) -> Result<(api::PodSandboxStatus, HashMap<String, String>), Status> {
        let mut c = self.runtime_service();
        let response = self.call(
            "PodSandboxStatus",
            c.pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.into(),
                verbose: true,
            }),
        )?;
        let status = response
            .status
            .ok_or_else(|| Status::internal(format!("PodSandboxStatus of {pod_id}: no status")))?;
        Ok((status, response.info))
    }

    /// `StopPodSandbox`: stops every container of the pod and the sandbox.
    ///
    /// # Errors
    /// The call's status.
    pub fn stop_pod_sandbox(&self, pod_id: &str) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "StopPodSandbox",
            c.stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            }),
        )
        .map(drop)
    }

    /// `RemovePodSandbox`: removes the pod and its containers.
    ///
    /// # Errors
    /// The call's status.
    pub fn remove_pod_sandbox(&self, pod_id: &str) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "RemovePodSandbox",
            c.remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            }),
        )
        .map(drop)
    }

    /// `ListPodSandbox` without a filter.
    ///
    /// # Errors
    /// The call's status.
    pub fn list_pod_sandboxes(&self) -> Result<Vec<api::PodSandbox>, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ListPodSandbox",
            c.list_pod_sandbox(api::ListPodSandboxRequest { filter: None }),
        )
        .map(|r| r.items)
    }

    /// `CreateContainer` in the pod `pod_id` (whose config is `pod`); returns the container id.
    ///
    /// # Errors
    /// The call's status.
    pub fn create_container(
        &self,
        pod_id: &str,
        config: &api::ContainerConfig,
        pod: &api::PodSandboxConfig,
    ) -> Result<String, Status> {
        let mut c = self.runtime_service();
        self.call(
            "CreateContainer",
            c.create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config.clone()),
                sandbox_config: Some(pod.clone()),
            }),
        )
        .map(|r| r.container_id)
    }

    /// `StartContainer`.
    ///
    /// # Errors
    /// The call's status.
    pub fn start_container(&self, id: &str) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "StartContainer",
            c.start_container(api::StartContainerRequest {
                container_id: id.into(),
            }),
        )
        .map(drop)
    }

    /// `StopContainer` with a grace period of `timeout_seconds`: the stop signal (SIGTERM), then
    /// SIGKILL once the grace period is over (at once for 0).
    ///
    /// # Errors
    /// The call's status.
    pub fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "StopContainer",
            c.stop_container(api::StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_seconds,
            }),
        )
        .map(drop)
    }

    /// `RemoveContainer`.
    ///
    /// # Errors
    /// The call's status.
    pub fn remove_container(&self, id: &str) -> Result<(), Status> {
        let mut c = self.runtime_service();
        self.call(
            "RemoveContainer",
            c.remove_container(api::RemoveContainerRequest {
                container_id: id.into(),
            }),
        )
        .map(drop)
    }

    /// `ContainerStatus`.
    ///
    /// # Errors
    /// The call's status; `NotFound` for an unknown container.
    pub fn container_status(&self, id: &str) -> Result<api::ContainerStatus, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ContainerStatus",
            c.container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }),
        )?
        .status
        .ok_or_else(|| Status::internal(format!("ContainerStatus of {id}: no status")))
    }

    /// `ListContainers` without a filter.
    ///
    /// # Errors
    /// The call's status.
    pub fn list_containers(&self) -> Result<Vec<api::Container>, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ListContainers",
            c.list_containers(api::ListContainersRequest { filter: None }),
        )
        .map(|r| r.containers)
    }

    /// `ListContainerStats` without a filter.
    ///
    /// # Errors
    /// The call's status.
    pub fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ListContainerStats",
            c.list_container_stats(api::ListContainerStatsRequest { filter: None }),
        )
        .map(|r| r.stats)
    }

    /// `ContainerStats` of one container.
    ///
    /// # Errors
    /// The call's status.
    pub fn container_stats(&self, id: &str) -> Result<api::ContainerStats, Status> {
        let mut c = self.runtime_service();
        self.call(
            "ContainerStats",
            c.container_stats(api::ContainerStatsRequest {
                container_id: id.into(),
            }),
        )?
        .stats
        .ok_or_else(|| Status::internal(format!("ContainerStats of {id}: no stats")))
    }

    /// `ImageStatus` of `reference`: `None` when CRI does not know the image.
    ///
    /// # Errors
    /// The call's status.
    pub fn image_status(&self, reference: &str) -> Result<Option<api::Image>, Status> {
        let mut c = self.image_service();
        self.call(
            "ImageStatus",
            c.image_status(api::ImageStatusRequest {
                image: Some(image_spec(reference)),
                verbose: false,
            }),
        )
        .map(|r| r.image)
    }

    /// Poll `ImageStatus` until CRI knows `reference` (images imported with `ctr` reach CRI's
    /// image store through an event, shortly after the import), as kubelet's image check does
    /// before `CreateContainer`. Returns the image; its `id` is what kubelet passes to
    /// `CreateContainer`.
    ///
    /// # Errors
    /// When the image is not known within `timeout`, or a call fails.
    pub fn wait_for_image(&self, reference: &str, timeout: Duration) -> Result<api::Image, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.image_status(reference) {
                Ok(Some(image)) => return Ok(image),
                Ok(None) => {}
                Err(e) => return Err(format!("ImageStatus of {reference}: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!("CRI did not know {reference} within {timeout:?}"));
            }
            thread::sleep(POLL);
        }
    }

    /// Poll `ContainerStatus` until the container is in `state`; returns that status.
    ///
    /// # Errors
    /// When it is not in `state` within `timeout` (the message holds the last status), or a
    /// call fails.
    pub fn wait_for_container_state(
        &self,
        id: &str,
        state: api::ContainerState,
        timeout: Duration,
    ) -> Result<api::ContainerStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .container_status(id)
                .map_err(|e| format!("ContainerStatus of {id}: {e}"))?;
            if status.state() == state {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "container {id} not {state:?} within {timeout:?}; last status: {status:?}"
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Stop and remove every pod sandbox (which stops and removes their containers), the way
    /// kubelet removes pods whose grace period is over. Returns what failed.
    pub fn remove_all_pods(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let pods = match self.list_pod_sandboxes() {
            Ok(pods) => pods,
            Err(e) => return vec![format!("ListPodSandbox: {e}")],
        };
        for pod in pods {
            if let Err(e) = self.stop_pod_sandbox(&pod.id) {
                problems.push(format!("StopPodSandbox {}: {e}", pod.id));
            }
            if let Err(e) = self.remove_pod_sandbox(&pod.id) {
                problems.push(format!("RemovePodSandbox {}: {e}", pod.id));
            }
        }
        problems
    }
}

/// Connect to the CRI plugin on `socket` and [`CriClient::remove_all_pods`]; used by
/// [`crate::Containerd`]'s drop. Never panics.
pub fn remove_all_pods(socket: &Path) -> Vec<String> {
    match CriClient::connect(socket) {
        Ok(client) => client.with_timeout(CLEANUP_CALL_TIMEOUT).remove_all_pods(),
        Err(e) => vec![format!("CRI cleanup: {e}")],
    }
}

/// An `ImageSpec` naming `image` (a reference or an image id).
pub fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

/// A host-network pod as kubelet describes it in `RunPodSandbox` (`hostNetwork: true`): pod
/// metadata, kubelet's labels, `log_directory`, the cgroup parent (see
/// [`crate::Containerd::pod_cgroup_parent`]) and namespace options network=NODE, pid=CONTAINER,
/// ipc=POD. kubelet leaves the hostname empty for host-network pods.
pub fn host_network_pod(
    name: &str,
    uid: &str,
    namespace: &str,
    log_directory: &Path,
    cgroup_parent: &str,
) -> api::PodSandboxConfig {
    pod_config(
        name,
        uid,
        namespace,
        log_directory,
        cgroup_parent,
        host_network_namespaces(),
    )
}

/// A pod with its own network namespace, as kubelet describes it in `RunPodSandbox` for an
/// ordinary pod: as [`host_network_pod`], but namespace options network=POD, pid=CONTAINER,
/// ipc=POD and the hostname set to the pod's name. CRI asks CNI for its network (see
/// [`crate::Containerd::start_cri_with_pod_network`]); [`pod_ip`] reads the address.
pub fn pod_network_pod(
    name: &str,
    uid: &str,
    namespace: &str,
    log_directory: &Path,
    cgroup_parent: &str,
) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        hostname: name.into(),
        ..pod_config(
            name,
            uid,
            namespace,
            log_directory,
            cgroup_parent,
            pod_namespaces(),
        )
    }
}

fn pod_config(
    name: &str,
    uid: &str,
    namespace: &str,
    log_directory: &Path,
    cgroup_parent: &str,
    namespace_options: api::NamespaceOption,
) -> api::PodSandboxConfig {
    let labels = HashMap::from([
        ("io.kubernetes.pod.name".to_string(), name.to_string()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            namespace.to_string(),
        ),
        ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
    ]);
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            attempt: 0,
        }),
        log_directory: log_directory.display().to_string(),
        labels,
        annotations: HashMap::from([(
            "kubernetes.io/config.source".to_string(),
            "api".to_string(),
        )]),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container as kubelet describes it in `CreateContainer` for a best-effort pod: metadata,
/// `image` (kubelet passes the image id from `ImageStatus`), `command` (replaces the image's
/// entrypoint when not empty) and `args` (replace its cmd), `log_path` (relative to the pod's
/// log directory, kubelet uses `<name>/<attempt>.log`), kubelet's labels, best-effort
/// resources and the pod's namespace options.
pub fn container_config(
    name: &str,
    image: &str,
    command: &[&str],
    args: &[&str],
    pod: &api::PodSandboxConfig,
) -> api::ContainerConfig {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut labels = pod.labels.clone();
    labels.insert("io.kubernetes.container.name".into(), name.into());
    let namespace_options = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(image_spec(image)),
        command: strings(command),
        args: strings(args),
        log_path: format!("{name}/0.log"),
        labels,
        annotations: HashMap::from([
            (
                "io.kubernetes.container.restartCount".to_string(),
                "0".to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePolicy".to_string(),
                "File".to_string(),
            ),
        ]),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(api::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_shares: 2,
                oom_score_adj: 1000,
                ..Default::default()
            }),
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Namespace options of a `hostNetwork: true` pod: network NODE, pid CONTAINER, ipc POD.
pub fn host_network_namespaces() -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Node.into(),
        pid: api::NamespaceMode::Container.into(),
        ipc: api::NamespaceMode::Pod.into(),
        ..Default::default()
    }
}

/// Namespace options of an ordinary pod: network POD, pid CONTAINER, ipc POD.
pub fn pod_namespaces() -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Pod.into(),
        pid: api::NamespaceMode::Container.into(),
        ipc: api::NamespaceMode::Pod.into(),
        ..Default::default()
    }
}

/// The pod's primary address from `PodSandboxStatus` (`network.ip`); `None` for host-network
/// pods (CRI reports none) or an unparsable address.
pub fn pod_ip(status: &api::PodSandboxStatus) -> Option<IpAddr> {
    status.network.as_ref()?.ip.parse().ok()
}

/// The pod's network namespace mode from `PodSandboxStatus` (`Node` for host network, `Pod`
/// for a namespace of its own).
pub fn pod_network_mode(status: &api::PodSandboxStatus) -> Option<api::NamespaceMode> {
    status
        .linux
        .as_ref()?
        .namespaces
        .as_ref()?
        .options
        .as_ref()
        .map(|o| o.network())
}

/// One line of a CRI container log file: `<RFC 3339 timestamp> <stream> <P|F> <content>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLogLine {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub timestamp: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// `P`: a partial line continued by the next one of the stream; `F`: a full (last) part.
    pub partial: bool,
    /// The text, without the newline.
    pub content: String,
}

/// Parse a CRI container log file (the format containerd's CRI plugin writes and kubelet reads).
///
/// # Errors
/// On the first line that is not in that format; the message quotes it.
pub fn parse_cri_log(text: &str) -> Result<Vec<CriLogLine>, String> {
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let bad = |why: &str| format!("CRI log line {}: {why}: {line:?}", n + 1);
            let mut parts = line.splitn(4, ' ');
            let timestamp = parts.next().unwrap_or_default();
            let stream = parts.next().ok_or_else(|| bad("no stream"))?;
            let tag = parts.next().ok_or_else(|| bad("no tag"))?;
            let content = parts.next().unwrap_or_default();
            if !is_rfc3339(timestamp) {
                return Err(bad("the timestamp is not RFC 3339"));
            }
            if stream != "stdout" && stream != "stderr" {
                return Err(bad("the stream is neither stdout nor stderr"));
            }
            let partial = match tag {
                "P" => true,
                "F" => false,
                _ => return Err(bad("the tag is neither P nor F")),
            };
            Ok(CriLogLine {
                timestamp: timestamp.into(),
                stream: stream.into(),
                partial,
                content: content.into(),
            })
        })
        .collect()
}

/// The text of one stream of a parsed CRI log: partial lines joined, each full line ending in
/// a newline.
pub fn cri_log_text(lines: &[CriLogLine], stream: &str) -> String {
    let mut out = String::new();
    for line in lines.iter().filter(|l| l.stream == stream) {
        out.push_str(&line.content);
        if !line.partial {
            out.push('\n');
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.len() == r.len() && d.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1..i + 3)
                && b.get(i + 3) == Some(&b':')
                && digits(i + 4..i + 6)
                && i + 6 == b.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_logs_are_parsed() {
        let text = "2024-05-01T10:00:00.123456789Z stdout F Hello from a wasmcell guest!\n\
                    2024-05-01T10:00:00.2+02:00 stderr P part \n\
                    2024-05-01T10:00:01Z stderr F two\n\
                    2024-05-01T10:00:01Z stdout F \n";
        let lines = parse_cri_log(text).expect("valid log");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].content, "Hello from a wasmcell guest!");
        assert!(lines[1].partial);
        assert_eq!(
            cri_log_text(&lines, "stdout"),
            "Hello from a wasmcell guest!\n\n"
        );
        assert_eq!(cri_log_text(&lines, "stderr"), "part two\n");
    }

    #[test]
    fn bad_cri_log_lines_are_refused() {
        for bad in [
            "Hello",
            "2024-05-01 stdout F x",
            "2024-05-01T10:00:00Z stdin F x",
            "2024-05-01T10:00:00Z stdout X x",
            "2024-05-01T10:00:00.Z stdout F x",
            "2024-05-01T10:00:00+0200 stdout F x",
        ] {
            assert!(parse_cri_log(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn kubelet_style_configs() {
        let pod = host_network_pod("p", "u1", "default", Path::new("/logs"), "/x/podu1");
        let container = container_config("c", "sha256:00", &[], &["sleep", "1"], &pod);
        assert_eq!(container.log_path, "c/0.log");
        assert_eq!(container.args, ["sleep", "1"]);
        let ns = container
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .expect("namespace options");
        assert_eq!(ns.network(), api::NamespaceMode::Node);
        assert_eq!(
            pod.hostname, "",
            "kubelet sets no hostname for host-network pods"
        );

        let pod = pod_network_pod("p", "u1", "default", Path::new("/logs"), "/x/podu1");
        assert_eq!(pod.hostname, "p");
        let ns = pod
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .expect("namespace options");
        assert_eq!(ns.network(), api::NamespaceMode::Pod);
        assert_eq!(
            container
                .labels
                .get("io.kubernetes.pod.uid")
                .map(String::as_str),
            Some("u1")
        );
    }
}
