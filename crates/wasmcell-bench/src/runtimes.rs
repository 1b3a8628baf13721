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

/// Start containerd with wasmcell's shim (and the peer's) on its PATH and prepare workloads.
/// `cache_dir` becomes `WASMCELL_CACHE_DIR` in containerd's environment, which the shims and
/// their guest processes inherit.
pub(crate) fn prepare(
    shim_dir: &Path,
    peer: Option<&Path>,
    cache_dir: &Path,
) -> anyhow::Result<(Containerd, Vec<Runtime>)> {
    // The shared runtime's binary name is a link to the shim, as the installer makes it.
    let links = shim_dir.join("bench-links");
    std::fs::create_dir_all(&links)?;
    let shared_link = links.join(SHARED_SHIM_BINARY);
    let _ = std::fs::remove_file(&shared_link);
    std::os::unix::fs::symlink(shim_dir.join(SHIM_BINARY), &shared_link)
        .context("link the shared-mode shim name")?;
    let mut path = vec![shim_dir.to_path_buf(), links];
    let peer_runtime = match peer {
        Some(p) => {
            let file = p
                .file_name()
                .and_then(|f| f.to_str())
                .context("PEER_SHIM has no file name")?;
            let name = file
                .strip_prefix("containerd-shim-")
                .and_then(|n| n.strip_suffix("-v1"))
                .context("PEER_SHIM must be named containerd-shim-NAME-v1")?;
            path.push(p.parent().map(PathBuf::from).unwrap_or_default());
            Some((format!("io.containerd.{name}.v1"), file.to_string()))
        }
        None => None,
    };
    // containerd inherits the bench's environment (the harness sets only PATH) and passes it
    // on to the shims. Set while the bench is still single-threaded.
    std::env::set_var(CACHE_DIR_ENV, cache_dir);
    let containerd = Containerd::start_with_path(&path);

    let hello = ImageSpec::new(
        wasmcell_test_guests::PROBE_P1,
        "docker.io/library/bench-probe:latest",
    )
    .build()
    .context("build the wasm image")?;
    let tar = containerd.dir().join("probe.tar");
    hello.write_archive(&tar)?;
    containerd.import(&tar);

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

    let wasm_image = "docker.io/library/bench-probe:latest".to_string();
    let artifact = "docker.io/library/bench-probe-artifact:latest";
    let probe = std::fs::read(wasmcell_test_guests::PROBE_P1).context("read the probe guest")?;
    containerd.import_wasm_artifact(containerd.namespace(), "wasip1", &probe, artifact);
    std::fs::create_dir_all(containerd.dir().join("empty-rootfs"))?;
    let mut runtimes = vec![
        Runtime {
            name: "wasmcell".into(),
            runtime_type: RUNTIME_TYPE.into(),
            image: wasm_image.clone(),
            run_args: vec!["--runtime".into(), RUNTIME_TYPE.into(), wasm_image.clone()],
            hello: vec!["/app.wasm".into(), "args".into()],
            sleep: vec!["/app.wasm".into(), "sleep".into(), "600000".into()],
            process_marker: SHIM_BINARY.into(),
            api_only: false,
        },
        Runtime {
            name: "wasmcell shared".into(),
            runtime_type: SHARED_RUNTIME_TYPE.into(),
            image: wasm_image.clone(),
            run_args: vec![
                "--runtime".into(),
                SHARED_RUNTIME_TYPE.into(),
                wasm_image.clone(),
            ],
            hello: vec!["/app.wasm".into(), "args".into()],
            sleep: vec!["/app.wasm".into(), "sleep".into(), "600000".into()],
            process_marker: MANAGER_MARKER.into(),
            api_only: false,
        },
        // The same module as a CNCF Wasm OCI artifact, read from containerd's content store.
        Runtime {
            name: "wasmcell artifact".into(),
            runtime_type: RUNTIME_TYPE.into(),
            image: artifact.to_string(),
            run_args: artifact_run_args(&containerd, artifact),
            hello: vec!["/app.wasm".into(), "args".into()],
            sleep: vec!["/app.wasm".into(), "sleep".into(), "600000".into()],
            process_marker: SHIM_BINARY.into(),
            api_only: false,
        },
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
    ];
    if let Some((runtime, binary)) = peer_runtime {
        runtimes.push(Runtime {
            name: format!("peer ({binary})"),
            runtime_type: runtime.clone(),
            image: wasm_image.clone(),
            run_args: vec!["--runtime".into(), runtime.clone(), wasm_image],
            hello: vec!["/app.wasm".into(), "args".into()],
            sleep: vec!["/app.wasm".into(), "sleep".into(), "600000".into()],
            process_marker: binary.clone(),
            api_only: false,
        });
        // The peer on the artifact too, as CRI runs it (ctr cannot): a peer that reads Wasm
        // layers from the content store may precompile them, where it compiles a module in a
        // rootfs on every start.
        runtimes.push(Runtime {
            name: format!("peer artifact ({binary})"),
            runtime_type: runtime,
            image: artifact.to_string(),
            run_args: Vec::new(),
            hello: vec!["/app.wasm".into(), "args".into()],
            sleep: Vec::new(),
            process_marker: binary,
            api_only: true,
        });
    }
    Ok((containerd, runtimes))
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
