//! Requests' configurations filled the way kubelet fills them: pod sandboxes (host network
//! or a network namespace of their own), containers of a best-effort pod, image specs and
//! namespace options; and what a `PodSandboxStatus` tells about the pod's network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::api;

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

#[cfg(test)]
mod tests {
    use super::*;

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
