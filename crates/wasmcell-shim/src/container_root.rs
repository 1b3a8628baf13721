//! The guest process's root: the container's rootfs, as runc gives a container's process.
//!
//! In the guest process's own mount namespace ([`crate::namespaces`] always makes one), the
//! rootfs is bind-mounted onto itself and every directory bind mount of the spec onto its
//! destination inside it, each `nosuid,nodev` (and read-only where the spec says so, the rootfs
//! too with `root.readonly`); then the process pivots into it and detaches the old root. From
//! then on nothing of the host's tree is reachable by name: the guest's preopens are opened in
//! this root at run time, so a symlink a sidecar swaps into a shared volume resolves inside the
//! container, never on the host; a device node in the image or a volume cannot be opened.
//!
//! Mount destinations are joined onto the rootfs with [`wasmcell_core::secure_join`] (symlinks
//! of the image resolve inside the rootfs); nothing of the container runs yet, so nothing can
//! change them in between.

use std::path::{Path, PathBuf};

use libcontainer::syscall::syscall::create_syscall;
use nix::mount::{mount, MsFlags};
use wasmcell_core::WorkloadSpec;

use crate::ShimError;

/// Make `rootfs` (host path, canonical) this process's root, with the directory bind mounts
/// of `workload` in it (see the module docs). Returns the workload as seen from in there:
/// root `/`, the mounts that were made, each at its destination. A mount destination that
/// cannot be resolved inside the rootfs is a [`ShimError::Workload`]; a failed mount, a
/// [`ShimError::Io`].
pub(crate) fn enter(
    workload: &WorkloadSpec,
    bundle: &Path,
    rootfs: &Path,
) -> Result<WorkloadSpec, ShimError> {
    let mut inside = workload.inside_root();
    inside.mounts.clear();
    bind(rootfs, rootfs, workload.root_readonly).map_err(|e| {
        ShimError::io(
            format!("failed to bind the rootfs {}", rootfs.display()),
            std::io::Error::from(e),
        )
    })?;
    for m in &workload.mounts {
        let source = bundle.join(&m.source);
        if !source.is_dir() {
            // Only directories become preopens (a file such as /etc/hosts means nothing to a
            // WASI guest): the same rule as the run plan's.
            continue;
        }
        let target = target_in(rootfs, &m.destination)?;
        bind(&source, &target, m.readonly).map_err(|e| {
            ShimError::io(
                format!(
                    "failed to mount {} at {}",
                    source.display(),
                    m.destination.display()
                ),
                std::io::Error::from(e),
            )
        })?;
        let mut made = m.clone();
        made.source = m.destination.clone();
        inside.mounts.push(made);
    }
    create_syscall().pivot_rootfs(rootfs).map_err(|e| {
        ShimError::io(
            format!("failed to pivot into the rootfs {}", rootfs.display()),
            std::io::Error::other(e.to_string()),
        )
    })?;
    nix::unistd::chdir("/")
        .map_err(|e| ShimError::io("failed to enter the new root", std::io::Error::from(e)))?;
    Ok(inside)
}

/// The mount point of `destination` inside `rootfs`, created as a directory when missing.
fn target_in(rootfs: &Path, destination: &Path) -> Result<PathBuf, ShimError> {
    let target = wasmcell_core::secure_join(rootfs, destination).map_err(|e| {
        ShimError::Workload(format!(
            "failed to resolve the mount destination {}: {e}",
            destination.display()
        ))
    })?;
    std::fs::create_dir_all(&target).map_err(|e| {
        ShimError::io(
            format!(
                "failed to create the mount point {} in the rootfs",
                destination.display()
            ),
            e,
        )
    })?;
    Ok(target)
}

/// Bind `source` at `target` (with what is mounted below it), then make that mount
/// `nosuid,nodev` and, when `readonly`, read-only.
fn bind(source: &Path, target: &Path, readonly: bool) -> nix::Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
}
