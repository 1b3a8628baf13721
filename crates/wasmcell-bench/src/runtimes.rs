//! The runtimes under comparison, each with a workload that prints one line and exits.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use wasmcell_core::names::{RUNTIME_TYPE, SHARED_RUNTIME_TYPE, SHARED_SHIM_BINARY, SHIM_BINARY};
use wasmcell_image::ImageSpec;
use wasmcell_testing::Containerd;

/// One runtime and how to run its hello and sleeping workloads with `ctr run`.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    pub(crate) name: String,
    /// The runtime type containerd starts the shim by, e.g. `io.containerd.wasmcell.v1`.
    pub(crate) runtime_type: String,
    /// The image the hello workload runs from through containerd's API (and, for Wasm
    /// runtimes, with `ctr run`; runc + busybox runs from a rootfs directory there).
    pub(crate) image: String,
    /// Arguments between `ctr run --rm` and the container id.
    pub(crate) run_args: Vec<String>,
    /// Command after the id for the hello workload.
    pub(crate) hello: Vec<String>,
    /// Command after the id for a sleeping workload.
    pub(crate) sleep: Vec<String>,
    /// Text that identifies this runtime's processes (shim binary name).
    pub(crate) process_marker: String,
    /// Measured through containerd's API only, not with `ctr run` (which cannot run it).
    pub(crate) api_only: bool,
}

/// A shared-mode manager's command line holds `-id manager` (or `-id manager-N`, the next ones
/// of a node with thousands of containers).
const MANAGER_MARKER: &str = "\0-id\0manager";

impl Runtime {
    /// Whether the process with this command line (NUL-separated) is one of this runtime's.
    pub(crate) fn owns(&self, cmdline: &str) -> bool {
        if self.process_marker == MANAGER_MARKER {
            return cmdline.contains(MANAGER_MARKER);
        }
        cmdline.contains(&self.process_marker) && !cmdline.contains(MANAGER_MARKER)
    }
}

/// `wasmcell_wasmtime::CACHE_DIR_ENV`: where the shims keep precompiled modules.
pub(crate) const CACHE_DIR_ENV: &str = "WASMCELL_CACHE_DIR";

/// The busybox image for runc through containerd's API.
const BUSYBOX_IMAGE: &str = "docker.io/library/bench-busybox:latest";

/// The probe guest's image, run by the Wasm runtimes from a rootfs.
const PROBE_IMAGE: &str = "docker.io/library/bench-probe:latest";

/// The probe guest as a CNCF Wasm OCI artifact.
const PROBE_ARTIFACT: &str = "docker.io/library/bench-probe-artifact:latest";

/// A peer shim given by `PEER_SHIM`: `containerd-shim-NAME-v1`.
#[derive(Debug)]
struct PeerShim {
    /// `io.containerd.NAME.v1`.
    runtime_type: String,
    /// The shim's file name, which also marks its processes.
    binary: String,
    /// The directory holding the shim, for containerd's PATH.
    dir: PathBuf,
}

/// Start containerd with wasmcell's shim (and the peer's) on its PATH and prepare workloads.
/// `cache_dir` becomes `WASMCELL_CACHE_DIR` in containerd's environment, which the shims and
/// their guest processes inherit.
pub(crate) fn prepare(
    shim_dir: &Path,
    peer: Option<&Path>,
    cache_dir: &Path,
) -> anyhow::Result<(Containerd, Vec<Runtime>)> {
    let links = link_shared_shim(shim_dir)?;
    let mut path = vec![shim_dir.to_path_buf(), links];
    let peer = peer.map(peer_shim).transpose()?;
    if let Some(p) = &peer {
        path.push(p.dir.clone());
    }
    // containerd inherits the bench's environment (the harness sets only PATH) and passes it
    // on to the shims. Set while the bench is still single-threaded.
    std::env::set_var(CACHE_DIR_ENV, cache_dir);
    let containerd = Containerd::start_with_path(&path);

    import_probe_image(&containerd)?;
    let rootfs = import_busybox(&containerd)?;
    let probe = std::fs::read(wasmcell_test_guests::PROBE_P1).context("read the probe guest")?;
    containerd.import_wasm_artifact(containerd.namespace(), "wasip1", &probe, PROBE_ARTIFACT);
    std::fs::create_dir_all(containerd.dir().join("empty-rootfs"))?;
    let mut runtimes = own_runtimes(&containerd, &rootfs);
    if let Some(p) = peer {
        runtimes.extend(peer_runtimes(p));
    }
    Ok((containerd, runtimes))
}

/// Link the shared runtime's binary name to the shim, as the installer makes it, in a
/// directory of its own under `shim_dir`; returns that directory.
fn link_shared_shim(shim_dir: &Path) -> anyhow::Result<PathBuf> {
    let links = shim_dir.join("bench-links");
    std::fs::create_dir_all(&links)?;
    let shared_link = links.join(SHARED_SHIM_BINARY);
    let _ = std::fs::remove_file(&shared_link);
    std::os::unix::fs::symlink(shim_dir.join(SHIM_BINARY), &shared_link)
        .context("link the shared-mode shim name")?;
    Ok(links)
}

/// The peer shim at `p`, which must be named `containerd-shim-NAME-v1`.
fn peer_shim(p: &Path) -> anyhow::Result<PeerShim> {
    let file = p
        .file_name()
        .and_then(|f| f.to_str())
        .context("PEER_SHIM has no file name")?;
    let name = file
        .strip_prefix("containerd-shim-")
        .and_then(|n| n.strip_suffix("-v1"))
        .context("PEER_SHIM must be named containerd-shim-NAME-v1")?;
    Ok(PeerShim {
        runtime_type: format!("io.containerd.{name}.v1"),
        binary: file.to_string(),
        dir: p.parent().map(PathBuf::from).unwrap_or_default(),
    })
}

/// Build the probe guest's image ([`PROBE_IMAGE`]) and import it into `containerd`.
fn import_probe_image(containerd: &Containerd) -> anyhow::Result<()> {
    let hello = ImageSpec::new(wasmcell_test_guests::PROBE_P1, PROBE_IMAGE)
        .build()
        .context("build the wasm image")?;
    let tar = containerd.dir().join("probe.tar");
    hello.write_archive(&tar)?;
    containerd.import(&tar);
    Ok(())
}

/// Copy the host's static busybox into a rootfs directory for `ctr run` and import the busybox
/// image ([`BUSYBOX_IMAGE`]) for the API; returns the rootfs.
fn import_busybox(containerd: &Containerd) -> anyhow::Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox is missing: install Debian's busybox-static (make bench does)");
    }
    let rootfs = containerd.dir().join("busybox-rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
    let tar = containerd.dir().join("busybox.tar");
    wasmcell_testing::busybox_image(BUSYBOX_IMAGE)
        .write_archive(&tar)
        .context("build the busybox image")?;
    containerd.import(&tar);
    Ok(rootfs)
}

impl Runtime {
    /// A runtime of the probe guest run by `ctr run` with `run_args`: hello prints its
    /// arguments, sleep sleeps ten minutes.
    fn probe(
        name: String,
        runtime_type: &str,
        image: &str,
        run_args: Vec<String>,
        process_marker: &str,
    ) -> Self {
        Runtime {
            name,
            runtime_type: runtime_type.into(),
            image: image.into(),
            run_args,
            hello: vec!["/app.wasm".into(), "args".into()],
            sleep: vec!["/app.wasm".into(), "sleep".into(), "600000".into()],
            process_marker: process_marker.into(),
            api_only: false,
        }
    }
}

/// wasmcell's runtimes (normal, shared, normal from an artifact) and runc + busybox from
/// `rootfs`.
fn own_runtimes(containerd: &Containerd, rootfs: &Path) -> Vec<Runtime> {
    let image_args =
        |runtime_type: &str| vec!["--runtime".into(), runtime_type.into(), PROBE_IMAGE.into()];
    vec![
        Runtime::probe(
            "wasmcell".into(),
            RUNTIME_TYPE,
            PROBE_IMAGE,
            image_args(RUNTIME_TYPE),
            SHIM_BINARY,
        ),
        Runtime::probe(
            "wasmcell shared".into(),
            SHARED_RUNTIME_TYPE,
            PROBE_IMAGE,
            image_args(SHARED_RUNTIME_TYPE),
            MANAGER_MARKER,
        ),
        // The same module as a CNCF Wasm OCI artifact, read from containerd's content store.
        Runtime::probe(
            "wasmcell artifact".into(),
            RUNTIME_TYPE,
            PROBE_ARTIFACT,
            artifact_run_args(containerd, PROBE_ARTIFACT),
            SHIM_BINARY,
        ),
        Runtime {
            name: "runc + busybox".into(),
            runtime_type: "io.containerd.runc.v2".into(),
            image: BUSYBOX_IMAGE.into(),
            run_args: vec![
                "--runtime".into(),
                "io.containerd.runc.v2".into(),
                "--rootfs".into(),
                rootfs.display().to_string(),
            ],
            hello: vec!["/bin/busybox".into(), "echo".into(), "/app.wasm".into()],
            sleep: vec!["/bin/busybox".into(), "sleep".into(), "600".into()],
            process_marker: "containerd-shim-runc-v2".into(),
            api_only: false,
        },
    ]
}

/// The peer's runtimes: on the probe's image with `ctr run`, and on its artifact through
/// containerd's API only.
fn peer_runtimes(peer: PeerShim) -> [Runtime; 2] {
    let PeerShim {
        runtime_type,
        binary,
        ..
    } = peer;
    let run_args = vec!["--runtime".into(), runtime_type.clone(), PROBE_IMAGE.into()];
    [
        Runtime::probe(
            format!("peer ({binary})"),
            &runtime_type,
            PROBE_IMAGE,
            run_args,
            &binary,
        ),
        // The peer on the artifact too, as CRI runs it (ctr cannot): a peer that reads Wasm
        // layers from the content store may precompile them, where it compiles a module in a
        // rootfs on every start.
        Runtime {
            sleep: Vec::new(),
            api_only: true,
            ..Runtime::probe(
                format!("peer artifact ({binary})"),
                &runtime_type,
                PROBE_ARTIFACT,
                Vec::new(),
                &binary,
            )
        },
    ]
}

/// `ctr run` arguments that run the artifact `reference` with wasmcell's normal runtime: ctr
/// cannot unpack it, so the image is named by annotation and the rootfs is an empty directory.
pub(crate) fn artifact_run_args(containerd: &Containerd, reference: &str) -> Vec<String> {
    vec![
        "--runtime".into(),
        RUNTIME_TYPE.into(),
        "--annotation".into(),
        format!("wasmcell.dev/image={reference}"),
        "--rootfs".into(),
        containerd.dir().join("empty-rootfs").display().to_string(),
    ]
}
