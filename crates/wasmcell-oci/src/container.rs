//! Finding a container's state under `--root`, and its OCI state as runc prints it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use libcgroups::common::{create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager};
use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use crate::OciError;

/// The runtime-spec version this runtime implements, reported as `ociVersion` (as runc reports
/// its own).
pub const OCI_VERSION: &str = "1.2.0";

/// `--root` when none is given.
pub const DEFAULT_ROOT: &str = "/run/wasmcell-oci";

/// The state directory of container `id`, after checking that `id` cannot name anything but a
/// direct child of `root`.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf, OciError> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(OciError::Invalid {
            field: "container id",
            value: id.to_string(),
            reason: "must be a non-empty name without '/'".into(),
        });
    }
    Ok(root.join(id))
}

/// Load container `id` (its status refreshed from its process).
pub fn load(root: &Path, id: &str) -> Result<Container, OciError> {
    let dir = container_dir(root, id)?;
    if !dir.join("state.json").exists() {
        return Err(OciError::NotFound { id: id.to_string() });
    }
    Container::load(dir).map_err(|e| OciError::container("load", id, e))
}

/// The cgroup manager of a loaded container (`action` names the verb for errors).
pub fn cgroup_manager(
    container: &Container,
    action: &'static str,
) -> Result<AnyCgroupManager, OciError> {
    let id = container.id().to_string();
    let config = container
        .spec()
        .map_err(|e| OciError::container(action, &id, e))?;
    create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: id.clone(),
    })
    .map_err(|e| OciError::Cgroup {
        action,
        id,
        reason: e.to_string(),
    })
}

/// The pids of every process in the container's cgroup.
pub fn pids(container: &Container) -> Result<Vec<i32>, OciError> {
    let manager = cgroup_manager(container, "read")?;
    let pids = manager.get_all_pids().map_err(|e| OciError::Cgroup {
        action: "read",
        id: container.id().to_string(),
        reason: e.to_string(),
    })?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}

/// The state of a container as `runc state` prints it.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// The runtime-spec version implemented.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// The init process (0 once stopped, as runc reports).
    pub pid: i32,
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: &'static str,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The spec's annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
    /// Owner name; empty for root (as runc).
    pub owner: String,
}

/// The lowercase status name of the OCI state.
pub fn status_name(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

impl OciState {
    /// The OCI state of a loaded container.
    pub fn of(container: &Container) -> OciState {
        let status = container.status();
        let pid = match status {
            ContainerStatus::Stopped => 0,
            _ => container.pid().map(|p| p.as_raw()).unwrap_or(0),
        };
        let bundle = container.bundle().clone();
        let rootfs = rootfs_of(&bundle);
        let annotations = container
            .state
            .annotations
            .clone()
            .filter(|a| !a.is_empty());
        OciState {
            oci_version: OCI_VERSION.to_string(),
            id: container.id().to_string(),
            pid,
            status: status_name(status),
            bundle,
            rootfs,
            created: container
                .created()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_default(),
            annotations,
            owner: owner_name(container.state.creator.unwrap_or(0)),
        }
    }
}

/// `root.path` of the bundle's config, made absolute; the bundle's `rootfs` when unreadable.
fn rootfs_of(bundle: &Path) -> PathBuf {
    let root = oci_spec::runtime::Spec::load(bundle.join("config.json"))
        .ok()
        .and_then(|s| s.root().as_ref().map(|r| r.path().clone()))
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    bundle.join(root)
}

/// runc prints an empty owner for root and the user name otherwise.
fn owner_name(uid: u32) -> String {
    if uid == 0 {
        return String::new();
    }
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut parts = line.split(':');
                let name = parts.next()?;
                let id = parts.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_the_root() {
        let root = Path::new("/run/x");
        assert_eq!(container_dir(root, "a-1").expect("ok"), root.join("a-1"));
        for bad in ["", ".", "..", "a/b", "../x"] {
            let err = container_dir(root, bad).expect_err(bad).to_string();
            assert!(err.starts_with("invalid container id"), "{err}");
        }
    }

    #[test]
    fn unknown_id_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(dir.path(), "nope").expect_err("missing").to_string();
        assert_eq!(err, "container nope does not exist");
    }
}
