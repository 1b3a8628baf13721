//! The container's rootfs: the snapshot containerd passes at Create, mounted at
//! `<bundle>/rootfs`, and unmounted at Delete (or by `delete` after a dead shim).

use std::path::Path;

use containerd_shim::api::CreateTaskRequest;
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;
use wasmcell_core::WorkloadKind;

use crate::ShimError;

/// Longest overlay option string mounted directly (one page, less containerd's margin); longer
/// ones go through containerd-shim's mount, which shortens lowerdir paths in a forked helper.
const DIRECT_MOUNT_DATA_MAX: usize = 4096 - 512;

/// What a Create finds in its bundle once the rootfs is in place.
pub(crate) struct Bundle<'a> {
    pub(crate) spec: &'a Spec,
    /// Wasm or Linux, decided with the rootfs in place (the entrypoint is looked at).
    pub(crate) kind: WorkloadKind,
    /// Whether the rootfs was mounted for this container.
    pub(crate) mounted: bool,
}

/// Mount the container's rootfs (when containerd passed one), load its spec and hand both to
/// `create`; the rootfs is unmounted again when that fails (blocking).
pub(crate) fn on_rootfs<T>(
    req: &CreateTaskRequest,
    create: impl FnOnce(Bundle<'_>) -> Result<T, ShimError>,
) -> Result<T, ShimError> {
    let bundle = Path::new(&req.bundle);
    let mounted = tracing::debug_span!("rootfs").in_scope(|| mount_rootfs(bundle, req))?;
    let created = (|| {
        let config = bundle.join("config.json");
        let spec = tracing::debug_span!("spec").in_scope(|| Spec::load(&config));
        let spec = spec.map_err(|e| {
            ShimError::Workload(format!("failed to load {}: {e}", config.display()))
        })?;
        let kind = wasmcell_core::workload_kind(&spec, bundle);
        create(Bundle {
            spec: &spec,
            kind,
            mounted,
        })
    })();
    if created.is_err() && mounted {
        unmount_rootfs(bundle);
    }
    created
}

/// Mount the rootfs containerd passed (a snapshot) at `<bundle>/rootfs`; false when none.
fn mount_rootfs(bundle: &Path, req: &CreateTaskRequest) -> Result<bool, ShimError> {
    if req.rootfs.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(|e| ShimError::io(format!("failed to create {}", target.display()), e))?;
    for m in &req.rootfs {
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        let mounted = match (fs_type, source) {
            (Some("overlay"), Some(source)) if plain_overlay(&m.options) => {
                let data = m.options.join(",");
                nix::mount::mount(
                    Some(source),
                    &target,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(data.as_str()),
                )
                .map_err(|e| e.to_string())
            }
            _ => containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, &target)
                .map_err(|e| e.to_string()),
        };
        mounted.map_err(|e| {
            ShimError::io(
                format!(
                    "failed to mount rootfs ({}) at {}",
                    m.type_,
                    target.display()
                ),
                std::io::Error::other(e),
            )
        })?;
    }
    Ok(true)
}

/// Unmount `<bundle>/rootfs` if something is mounted there.
pub(crate) fn unmount_rootfs(bundle: &Path) {
    let target = bundle.join("rootfs");
    loop {
        match nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => {
                tracing::warn!(path = %target.display(), error = %e, "failed to unmount rootfs");
                break;
            }
        }
    }
}

/// An overlay whose options are all filesystem data (no mount flags such as `ro` or `bind`)
/// and fit one page: mounted with a single mount(2), without forking a helper.
fn plain_overlay(options: &[String]) -> bool {
    const FLAG_WORDS: &[&str] = &[
        "ro",
        "rw",
        "bind",
        "rbind",
        "remount",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "sync",
        "async",
        "noatime",
        "atime",
        "nodiratime",
        "diratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "private",
        "rprivate",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "unbindable",
        "runbindable",
        "mand",
        "nomand",
        "dirsync",
        "defaults",
    ];
    let size: usize = options.iter().map(|o| o.len() + 1).sum();
    size < DIRECT_MOUNT_DATA_MAX && options.iter().all(|o| !FLAG_WORDS.contains(&o.as_str()))
}
