//! Linux namespaces for the guest process, as the spec's `linux.namespaces` asks: join the
//! ones given by path (e.g. a pod's network namespace), create the others, and always a mount
//! namespace of its own. Must run while the process has a single thread.

use std::fs::File;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::ShimError;

/// Enter the namespaces of `spec`. PID and time namespaces are not entered: a Wasm guest starts
/// no processes and reads no clock through them. A user namespace is refused: its uid and gid
/// mappings would change what the guest may open, and dropping it silently would run the guest
/// with the host's ids ([`ShimError::Workload`]); a failed system call is a [`ShimError::Io`].
pub(crate) fn enter(spec: &Spec) -> Result<(), ShimError> {
    let none = Vec::new();
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .unwrap_or(&none);
    let mut create = CloneFlags::empty();
    for ns in namespaces {
        let flag = match ns.typ() {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::User => {
                return Err(ShimError::Workload(
                    "linux.namespaces has a user namespace, which this shim's normal \
                            mode does not create yet; run the container without one, or with \
                            wasmcell-oci"
                        .into(),
                ))
            }
            LinuxNamespaceType::Pid | LinuxNamespaceType::Time => continue,
        };
        match ns.path() {
            Some(path) => {
                let file = File::open(path).map_err(|e| {
                    ShimError::io(format!("failed to open namespace {}", path.display()), e)
                })?;
                setns(file, flag).map_err(|e| {
                    ShimError::io(
                        format!("failed to join namespace {}", path.display()),
                        std::io::Error::from(e),
                    )
                })?;
            }
            None => create |= flag,
        }
    }
    // The guest process always has a mount namespace of its own, where its root is made
    // (crate::container_root); a joined one is copied, never changed.
    create |= CloneFlags::CLONE_NEWNS;
    if !create.is_empty() {
        unshare(create).map_err(|e| {
            ShimError::io(
                format!("failed to create namespaces {create:?}"),
                std::io::Error::from(e),
            )
        })?;
    }
    if create.contains(CloneFlags::CLONE_NEWNS) {
        // Nothing mounted in here propagates back to the host.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| {
            ShimError::io(
                "failed to make the mount namespace private",
                std::io::Error::from(e),
            )
        })?;
    }
    if create.contains(CloneFlags::CLONE_NEWUTS) {
        if let Some(hostname) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(hostname).map_err(|e| {
                ShimError::io(
                    format!("failed to set hostname {hostname}"),
                    std::io::Error::from(e),
                )
            })?;
        }
    }
    Ok(())
}
