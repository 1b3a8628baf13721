//! The runtimes under comparison, each with a workload that prints one line and exits.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use wasmcell_image::ImageSpec;
use wasmcell_testing::Containerd;

/// One runtime and how to run its hello and sleeping workloads with `ctr run`.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    pub(crate) name: String,
    /// Arguments between `ctr run --rm` and the container id.
    pub(crate) run_args: Vec<String>,
    /// Command after the id for the hello workload.
    pub(crate) hello: Vec<String>,
    /// Command after the id for a sleeping workload.
    pub(crate) sleep: Vec<String>,
    /// Text that identifies this runtime's processes (shim binary name).
    pub(crate) process_marker: String,
}

/// Start containerd with wasmcell's shim (and the peer's) on its PATH and prepare workloads.
pub(crate) fn prepare(
    shim_dir: &Path,
    peer: Option<&Path>,
) -> anyhow::Result<(Containerd, Vec<Runtime>)> {
    let mut path = vec![shim_dir.to_path_buf()];
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

    let wasm_image = "docker.io/library/bench-probe:latest".to_string();
    let mut runtimes = vec![
        Runtime {
            name: "wasmcell".into(),
            run_args: vec![
                "--runtime".into(),
                "io.containerd.wasmcell.v1".into(),
                wasm_image.clone(),
            ],
            hello: vec!["/app.wasm".into(), "args".into()],
            sleep: vec!["/app.wasm".into(), "sleep".into(), "600000".into()],
            process_marker: "containerd-shim-wasmcell-v1".into(),
        },
        Runtime {
            name: "runc + busybox".into(),
            run_args: vec![
                "--runtime".into(),
                "io.containerd.runc.v2".into(),
                "--rootfs".into(),
                rootfs.display().to_string(),
            ],
            hello: vec!["/bin/busybox".into(), "echo".into(), "/app.wasm".into()],
            sleep: vec!["/bin/busybox".into(), "sleep".into(), "600".into()],
            process_marker: "containerd-shim-runc-v2".into(),
        },
    ];
    if let Some((runtime, binary)) = peer_runtime {
        runtimes.push(Runtime {
            name: format!("peer ({binary})"),
            run_args: vec!["--runtime".into(), runtime, wasm_image],
            hello: vec!["/app.wasm".into(), "args".into()],
            sleep: vec!["/app.wasm".into(), "sleep".into(), "600000".into()],
            process_marker: binary,
        });
    }
    Ok((containerd, runtimes))
}
