//! Test harness that starts a **real, private containerd** for integration tests.
//!
//! [`Containerd::start`] (or [`Containerd::start_with_path`], to let containerd find a
//! `containerd-shim-*` binary such as `containerd-shim-wasmcell-v1`) creates a temporary
//! directory holding containerd's root and state directories, its gRPC and ttrpc sockets, a
//! generated `config.toml` and its log, starts `containerd --config <file>` and waits until it
//! answers. Every instance uses its own namespace (`wasmcell-test-<pid>-<n>`), because the runc
//! shim keeps its runc state under `/run/containerd/runc/<namespace>` whatever containerd's
//! state directory is; instances are therefore fully independent and can run concurrently.
//!
//! [`Containerd::ctr`] and [`Containerd::run_ctr`] drive that containerd through `ctr`; every
//! `ctr` run has a deadline and never hangs a test. Dropping a [`Containerd`] kills and deletes
//! every task and container of its namespace, stops containerd, kills any process still
//! referring to its socket (a stray shim), unmounts whatever is still mounted under the
//! temporary directory and removes it.
//!
//! The snapshotter is `overlayfs` when an overlay mount works on the filesystem holding the
//! temporary directory (and containerd's overlayfs plugin loaded), `native` otherwise; it can be
//! forced with the environment variable `WASMCELL_TEST_SNAPSHOTTER`. It is set both as the
//! namespace's default snapshotter (label `containerd.io/defaults/snapshotter`) and as
//! `CONTAINERD_SNAPSHOTTER` in the environment of every `ctr` command.
//!
//! [`Containerd::start_cri`] starts one with containerd's **CRI plugin** enabled instead (for
//! CRI-level tests, the calls kubelet makes): a runtime handler `wasmcell` of type
//! `io.containerd.wasmcell.v1`, the given pod sandbox image, no CNI configuration (host-network
//! pods need none), its streaming server on a random loopback port, and everything under the
//! temporary directory. [`Containerd::start_cri_with_pod_network`] adds a private CNI network
//! ([`PodNetwork`]: a bridge and a `10.217.<n>.0/24` subnet of its own, `host-local` state
//! under the temporary directory), so pods with their own network namespace get an address.
//! CRI works in the fixed namespace [`CRI_NAMESPACE`] (`k8s.io`): images for it are imported
//! with [`Containerd::import_into`], and the drop also stops and removes every pod sandbox,
//! task and container there (containerd then removes the pods' network namespaces).
//! [`ImageBuilder`], [`pause_image`] and [`busybox_image`] build Linux images from files, since
//! nothing can be pulled. [`ArtifactLayout`] and [`wasm_artifact`] write CNCF Wasm OCI
//! artifacts (OCI layouts with a raw Wasm layer) by hand. With the cargo feature `cri`,
//! [`Containerd::cri`] returns a blocking CRI client ([`cri::CriClient`]).
//!
//! The tests using this harness must run as root; they are never skipped (see [`require_root`]).
#![warn(missing_docs)]

mod artifact;
mod cni;
#[cfg(feature = "cri")]
pub mod cri;
pub mod hostile;
mod image;
pub mod parity;

pub use artifact::{wasm_artifact, ArtifactLayout};
pub use cni::{PodNetwork, CNI_PLUGINS, CNI_PLUGIN_DIRS, POD_SUBNET_PREFIX};

pub use image::{
    busybox_image, host_architecture, pause_image, ImageBuilder, HOST_BUSYBOX, PAUSE_IMAGE,
};

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Deadline of [`Containerd::run_ctr`].
pub const DEFAULT_CTR_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Containerd::start`] and [`Containerd::restart`] wait for containerd to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long containerd gets to exit after SIGTERM before it is sent SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable forcing the snapshotter (`overlayfs` or `native`).
pub const SNAPSHOTTER_ENV: &str = "WASMCELL_TEST_SNAPSHOTTER";
/// The namespace containerd's CRI plugin works in.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The CRI runtime handler [`Containerd::start_cri`] configures (`RunPodSandbox`'s
/// `runtime_handler`).
pub const CRI_RUNTIME_HANDLER: &str = "wasmcell";
/// The runtime type behind [`CRI_RUNTIME_HANDLER`]: the wasmcell shim.
pub const CRI_RUNTIME_TYPE: &str = "io.containerd.wasmcell.v1";
/// The CRI runtime handler of the shim's shared mode (one manager process for every container).
pub const CRI_SHARED_RUNTIME_HANDLER: &str = "wasmcell-shared";
/// The runtime type [`CRI_SHARED_RUNTIME_HANDLER`] runs (the binary
/// `containerd-shim-wasmcell-shared-v1`, a link to the shim, must be on the PATH).
pub const CRI_SHARED_RUNTIME_TYPE: &str = "io.containerd.wasmcell-shared.v1";

/// Deadline of each `ctr` command run while cleaning up in `Drop`.
const CLEANUP_CTR_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the drop keeps trying to remove the instance's cgroups.
const CGROUP_REMOVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines of containerd's log quoted in panic messages.
const LOG_TAIL_LINES: usize = 80;
/// Longest socket path we accept (`sun_path` holds 108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 100;
/// Namespace label naming the namespace's default snapshotter, honoured by containerd clients.
const DEFAULT_SNAPSHOTTER_LABEL: &str = "containerd.io/defaults/snapshotter";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The result of one `ctr` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrOutput {
    /// Exit code; `128 + signal` when `ctr` was killed by a signal.
    pub code: i32,
    /// Everything `ctr` wrote to stdout (lossily decoded).
    pub stdout: String,
    /// Everything `ctr` wrote to stderr (lossily decoded).
    pub stderr: String,
}

impl CtrOutput {
    /// Whether `ctr` exited with code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// A private containerd, running as a child process of the test, with its own root, state,
/// sockets and namespace. Stopped and cleaned up on drop.
#[derive(Debug)]
pub struct Containerd {
    child: Option<Child>,
    root: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    ttrpc_socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
    namespace: String,
    snapshotter: &'static str,
    path_env: OsString,
    /// Added to containerd's environment ([`Containerd::start_with_env`]).
    env: Vec<(String, String)>,
    /// The pod sandbox image when the CRI plugin is enabled ([`Containerd::start_cri`]).
    sandbox_image: Option<String>,
    /// The CNI network of pods ([`Containerd::start_cri_with_pod_network`]); dropped (its
    /// bridge deleted) after `Drop::drop` has removed the pods and stopped containerd.
    pod_network: Option<PodNetwork>,
    // Declared last: removed after `Drop::drop` has stopped containerd and unmounted everything.
    dir: TempDir,
}

impl Containerd {
    /// Start a private containerd with the current `PATH`; see [`Containerd::start_with_path`].
    ///
    /// # Panics
    /// When not running as root, when containerd cannot be started or does not answer within
    /// [`START_TIMEOUT`] (the message then quotes the tail of containerd's log).
    pub fn start() -> Containerd {
        Containerd::start_with_path(&[])
    }

    /// Start a private containerd whose `PATH` is `extra_path_dirs` followed by the current
    /// `PATH`, so that it finds shims (`containerd-shim-<name>-v1`) built by the test.
    ///
    /// # Panics
    /// As [`Containerd::start`].
    pub fn start_with_path(extra_path_dirs: &[PathBuf]) -> Containerd {
        Containerd::start_inner(extra_path_dirs, None, false, &[])
    }

    /// As [`Containerd::start_with_path`], with `env` added to containerd's environment (which
    /// its shims inherit), e.g. a shim's tuning variables.
    ///
    /// # Panics
    /// As [`Containerd::start`].
    pub fn start_with_env(extra_path_dirs: &[PathBuf], env: &[(&str, &str)]) -> Containerd {
        Containerd::start_inner(extra_path_dirs, None, false, env)
    }

    /// Start a private containerd with its **CRI plugin** enabled (see the crate docs), whose
    /// `PATH` is `extra_path_dirs` followed by the current `PATH`. `sandbox_image` is the CRI
    /// `sandbox_image`; it cannot be pulled, so import it (into [`CRI_NAMESPACE`]) before the
    /// first `RunPodSandbox`, or use [`Containerd::start_cri_with_pause`].
    ///
    /// The CRI plugin serves on [`Containerd::socket`]. Its runtime handler
    /// [`CRI_RUNTIME_HANDLER`] runs the shim [`CRI_RUNTIME_TYPE`]; the default handler stays
    /// `runc` (`io.containerd.runc.v2`), as in containerd's own default configuration. The
    /// namespace [`CRI_NAMESPACE`] is created with the chosen snapshotter as its default, so
    /// `ctr` imports unpack where CRI looks.
    ///
    /// # Panics
    /// As [`Containerd::start`].
    pub fn start_cri(extra_path_dirs: &[PathBuf], sandbox_image: &str) -> Containerd {
        Containerd::start_inner(extra_path_dirs, Some(sandbox_image.to_string()), false, &[])
    }

    /// [`Containerd::start_cri`] with the sandbox image [`PAUSE_IMAGE`], built by
    /// [`pause_image`] from the host's busybox and imported into [`CRI_NAMESPACE`].
    ///
    /// # Panics
    /// As [`Containerd::start`], and when `/bin/busybox` (Debian package `busybox-static`) is
    /// missing or the import fails.
    pub fn start_cri_with_pause(extra_path_dirs: &[PathBuf]) -> Containerd {
        Containerd::start_inner(extra_path_dirs, Some(PAUSE_IMAGE.to_string()), false, &[])
            .with_pause_image()
    }

    /// [`Containerd::start_cri_with_pause`] with a private CNI network for pods (see
    /// [`PodNetwork`]): a pod whose network namespace mode is `POD` gets a network namespace
    /// with an address from [`PodNetwork::subnet`] on the bridge [`PodNetwork::bridge`], where
    /// the host has [`PodNetwork::host_address`]. Host-network pods run as before.
    ///
    /// # Panics
    /// As [`Containerd::start_cri_with_pause`], and when the CNI plugins (Debian package
    /// `containernetworking-plugins`) or `ip` (`iproute2`) are missing or no subnet is free.
    pub fn start_cri_with_pod_network(extra_path_dirs: &[PathBuf]) -> Containerd {
        Containerd::start_inner(extra_path_dirs, Some(PAUSE_IMAGE.to_string()), true, &[])
            .with_pause_image()
    }

    /// Build [`PAUSE_IMAGE`] and import it into [`CRI_NAMESPACE`].
    fn with_pause_image(self) -> Containerd {
        let tar = self.dir().join("pause-image.tar");
        pause_image(PAUSE_IMAGE)
            .write_archive(&tar)
            .unwrap_or_else(|e| {
                panic!(
                    "wasmcell-testing: cannot build the pause image from {HOST_BUSYBOX} (is the \
                 Debian package `busybox-static` installed?): {e}"
                )
            });
        self.import_into(CRI_NAMESPACE, &tar);
        self
    }

    fn start_inner(
        extra_path_dirs: &[PathBuf],
        sandbox_image: Option<String>,
        pod_network: bool,
        env: &[(&str, &str)],
    ) -> Containerd {
        require_root();
        let dir = make_temp_dir();
        let base = dir.path().to_path_buf();
        let pod_network = pod_network.then(|| PodNetwork::create(&base));
        let root = base.join("root");
        let state = base.join("state");
        let opt = base.join("opt");
        for d in [&root, &state, &opt] {
            fs::create_dir_all(d)
                .unwrap_or_else(|e| panic!("wasmcell-testing: cannot create {}: {e}", d.display()));
        }
        let socket = base.join("containerd.sock");
        let ttrpc_socket = base.join("containerd-ttrpc.sock");
        let config = base.join("config.toml");
        let log = base.join("containerd.log");

        let namespace = format!(
            "wasmcell-test-{}-{}",
            std::process::id(),
            INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut containerd = Containerd {
            child: None,
            root,
            state,
            socket,
            ttrpc_socket,
            config,
            log,
            namespace,
            snapshotter: "native",
            path_env: path_with(extra_path_dirs),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sandbox_image,
            pod_network,
            dir,
        };
        // CRI names its snapshotter in the configuration: guess before starting, and restart
        // below if containerd's own checks disagree.
        if containerd.sandbox_image.is_some() {
            containerd.snapshotter = containerd.preliminary_snapshotter();
        }
        containerd.write_config();
        containerd.spawn_and_wait();
        let chosen = containerd.choose_snapshotter();
        if containerd.sandbox_image.is_some() && chosen != containerd.snapshotter {
            containerd.snapshotter = chosen;
            containerd.write_config();
            containerd.restart();
        }
        containerd.snapshotter = chosen;
        if containerd.sandbox_image.is_some() {
            containerd.check_cri_loaded();
        }
        let mut namespaces = vec![containerd.namespace.clone()];
        if containerd.sandbox_image.is_some() {
            namespaces.push(CRI_NAMESPACE.to_string());
        }
        let label = format!("{DEFAULT_SNAPSHOTTER_LABEL}={}", containerd.snapshotter);
        for ns in namespaces {
            let out = containerd.run_ctr(&["namespaces", "create", &ns, &label]);
            let exists = out.stderr.contains("already exists");
            if !out.success() && !exists {
                panic!(
                    "wasmcell-testing: `ctr namespaces create {ns} {label}` failed:\n{}",
                    describe(&out)
                );
            }
            if exists {
                // CRI may have created it first: set the label instead.
                let out = containerd.run_ctr(&["namespaces", "label", &ns, &label]);
                if !out.success() {
                    panic!(
                        "wasmcell-testing: `ctr namespaces label {ns} {label}` failed:\n{}",
                        describe(&out)
                    );
                }
            }
        }
        containerd
    }

    /// Panic unless `ctr plugins ls` shows the CRI plugin loaded (containerd only logs a
    /// warning when its configuration is refused).
    fn check_cri_loaded(&self) {
        let out = self.run_ctr(&["plugins", "ls"]);
        let loaded = out.stdout.lines().any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.first() == Some(&"io.containerd.grpc.v1")
                && cols.get(1) == Some(&"cri")
                && cols.last() == Some(&"ok")
        });
        if !loaded {
            let log = self.log();
            let why: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("io.containerd.grpc.v1.cri") && l.contains("level=warn"))
                .collect();
            panic!(
                "wasmcell-testing: containerd's CRI plugin did not load:\n{}\n`ctr plugins ls`:\n{}",
                why.join("\n"),
                describe(&out)
            );
        }
    }

    fn write_config(&self) {
        let mut text = config_toml(
            &self.root,
            &self.state,
            &self.socket,
            &self.ttrpc_socket,
            &self.dir.path().join("opt"),
            self.sandbox_image.is_none(),
        );
        if let Some(image) = &self.sandbox_image {
            let cni = match &self.pod_network {
                Some(network) => CniDirs {
                    comment: "# The private CNI network of this instance (PodNetwork).",
                    bin: network.plugin_dir().to_path_buf(),
                    conf: network.conf_dir().to_path_buf(),
                },
                None => {
                    let cni = self.dir.path().join("cni");
                    let dirs = CniDirs {
                        comment: "# No CNI configuration: host-network pods need none; other \
                                  pods fail to get a network.",
                        bin: cni.join("bin"),
                        conf: cni.join("net.d"),
                    };
                    for d in [&dirs.bin, &dirs.conf] {
                        fs::create_dir_all(d).unwrap_or_else(|e| {
                            panic!("wasmcell-testing: cannot create {}: {e}", d.display())
                        });
                    }
                    dirs
                }
            };
            text.push_str(&cri_config_toml(image, self.snapshotter, &cni));
        }
        fs::write(&self.config, text).unwrap_or_else(|e| {
            panic!(
                "wasmcell-testing: cannot write {}: {e}",
                self.config.display()
            )
        });
    }

    /// Whether the CRI plugin is enabled ([`Containerd::start_cri`]).
    pub fn cri_enabled(&self) -> bool {
        self.sandbox_image.is_some()
    }

    /// The private CNI network of pods, when started with
    /// [`Containerd::start_cri_with_pod_network`].
    pub fn pod_network(&self) -> Option<&PodNetwork> {
        self.pod_network.as_ref()
    }

    /// The CRI `sandbox_image`, when the CRI plugin is enabled.
    pub fn sandbox_image(&self) -> Option<&str> {
        self.sandbox_image.as_deref()
    }

    /// A cgroup parent for a pod, as kubelet (cgroupfs driver) gives it in
    /// `LinuxPodSandboxConfig.cgroup_parent`: `/<namespace>/pod<pod_uid>`. Everything under
    /// `/<namespace>` is removed (when empty) by the drop.
    pub fn pod_cgroup_parent(&self, pod_uid: &str) -> String {
        format!("/{}/pod{pod_uid}", self.namespace)
    }

    /// A blocking client of the CRI plugin on [`Containerd::socket`] (feature `cri`).
    ///
    /// # Panics
    /// When the CRI plugin is not enabled or the client cannot connect.
    #[cfg(feature = "cri")]
    pub fn cri(&self) -> cri::CriClient {
        assert!(
            self.cri_enabled(),
            "wasmcell-testing: the CRI plugin is disabled; start with Containerd::start_cri"
        );
        cri::CriClient::connect(&self.socket).unwrap_or_else(|e| {
            panic!(
                "wasmcell-testing: cannot connect a CRI client to {}: {e}\nlog tail:\n{}",
                self.socket.display(),
                self.log_tail(LOG_TAIL_LINES)
            )
        })
    }

    /// A `ctr` command pre-filled with `--address <socket> --namespace <namespace>` (and
    /// `CONTAINERD_SNAPSHOTTER` in its environment); add the subcommand and its arguments.
    pub fn ctr(&self) -> Command {
        self.ctr_in(&self.namespace)
    }

    /// [`Containerd::ctr`] in the namespace `namespace` (e.g. [`CRI_NAMESPACE`]).
    pub fn ctr_in(&self, namespace: &str) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.env("PATH", &self.path_env)
            .env("CONTAINERD_SNAPSHOTTER", self.snapshotter)
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace);
        cmd
    }

    /// [`Containerd::run_ctr`] in the namespace `namespace` (e.g. [`CRI_NAMESPACE`]).
    ///
    /// # Panics
    /// When `ctr` cannot be started or does not finish in time (it is then killed).
    pub fn run_ctr_in(&self, namespace: &str, args: &[&str]) -> CtrOutput {
        let mut cmd = self.ctr_in(namespace);
        cmd.args(args);
        run_with_deadline(cmd, DEFAULT_CTR_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "wasmcell-testing: `ctr --namespace {namespace} {}`: {e}",
                args.join(" ")
            )
        })
    }

    /// Run `ctr <args>` (see [`Containerd::ctr`]) with a deadline of [`DEFAULT_CTR_TIMEOUT`].
    /// A non-zero exit is reported in [`CtrOutput::code`], not as a panic.
    ///
    /// # Panics
    /// When `ctr` cannot be started or does not finish in time (it is then killed).
    pub fn run_ctr(&self, args: &[&str]) -> CtrOutput {
        self.run_ctr_with_timeout(args, DEFAULT_CTR_TIMEOUT)
    }

    /// [`Containerd::run_ctr`] with a deadline of `timeout`.
    ///
    /// # Panics
    /// When `ctr` cannot be started or does not finish within `timeout` (it is then killed).
    pub fn run_ctr_with_timeout(&self, args: &[&str], timeout: Duration) -> CtrOutput {
        match self.try_run_ctr(args, timeout) {
            Ok(out) => out,
            Err(e) => panic!("wasmcell-testing: `ctr {}`: {e}", args.join(" ")),
        }
    }

    /// `ctr images import --all-platforms <tar>` (which also unpacks the image into the
    /// snapshotter).
    ///
    /// # Panics
    /// When the import fails; the message holds `ctr`'s output.
    pub fn import(&self, tar: &Path) {
        self.import_into(&self.namespace, tar);
    }

    /// [`Containerd::import`] into the namespace `namespace`: [`CRI_NAMESPACE`] for images
    /// that CRI is to run (CRI's image store picks them up shortly after; see
    /// `cri::CriClient::wait_for_image`).
    ///
    /// # Panics
    /// When the import fails; the message holds `ctr`'s output.
    pub fn import_into(&self, namespace: &str, tar: &Path) {
        self.import_with(namespace, &["--all-platforms"], tar);
    }

    /// Write `module` as a CNCF Wasm OCI artifact for `os` (see [`ArtifactLayout`]) tagged
    /// `reference`, and import it into `namespace` without unpacking: the only way `ctr` takes
    /// such an image. Returns the digest of its Wasm layer.
    ///
    /// # Panics
    /// When the artifact cannot be written or the import fails.
    pub fn import_wasm_artifact(
        &self,
        namespace: &str,
        os: &str,
        module: &[u8],
        reference: &str,
    ) -> String {
        let name = reference.replace(['/', ':'], "_");
        let layout = ArtifactLayout::new(&self.dir().join("artifacts").join(&name));
        let layer = layout.blob("application/wasm", module);
        let digest = layer["digest"].as_str().unwrap_or_default().to_string();
        let mut manifest = layout.manifest(os, vec![layer]);
        manifest["annotations"] =
            serde_json::json!({ "org.opencontainers.image.ref.name": reference });
        layout.write_index(vec![manifest]);
        let tar = self.dir().join("artifacts").join(format!("{name}.tar"));
        layout.write_tar(&tar);
        self.import_with(namespace, &["--no-unpack", "--all-platforms"], &tar);
        digest
    }

    fn import_with(&self, namespace: &str, flags: &[&str], tar: &Path) {
        let mut cmd = self.ctr_in(namespace);
        cmd.args(["images", "import"]).args(flags).arg(tar);
        let out = run_with_deadline(cmd, DEFAULT_CTR_TIMEOUT)
            .unwrap_or_else(|e| panic!("wasmcell-testing: importing {}: {e}", tar.display()));
        if !out.success() {
            panic!(
                "wasmcell-testing: `ctr --namespace {namespace} images import {} {}` \
                 failed:\n{}",
                flags.join(" "),
                tar.display(),
                describe(&out)
            );
        }
    }

    /// containerd's log so far (stdout and stderr, across restarts), including what the shims
    /// logged through containerd.
    pub fn log(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("<cannot read {}: {e}>", self.log.display()),
        }
    }

    /// The last `lines` lines of [`Containerd::log`].
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// containerd's gRPC socket (what `ctr --address` takes).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// containerd's ttrpc socket.
    pub fn ttrpc_socket(&self) -> &Path {
        &self.ttrpc_socket
    }

    /// The namespace this instance uses, unique per instance.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// containerd's `root` directory (content store, metadata, snapshots).
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// containerd's `state` directory (sockets of the runtime, task bundles).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The temporary directory holding everything of this instance.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated `config.toml`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The file containerd's stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The snapshotter in use: `"overlayfs"` or `"native"`.
    pub fn snapshotter(&self) -> &str {
        self.snapshotter
    }

    /// The process id of the running containerd, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop containerd (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and start it again with
    /// the same configuration, waiting until it answers. Shims are separate processes and keep
    /// running; the new containerd reconnects to them.
    ///
    /// # Panics
    /// When containerd does not answer again within [`START_TIMEOUT`].
    pub fn restart(&mut self) {
        if let Err(e) = self.stop() {
            panic!("wasmcell-testing: stopping containerd for a restart: {e}");
        }
        self.spawn_and_wait();
    }

    /// Stop containerd, keep it stopped for `down`, then start it again with the same
    /// configuration (shims keep running meanwhile, as in [`Containerd::restart`]).
    ///
    /// # Panics
    /// As [`Containerd::restart`].
    pub fn stop_for(&mut self, down: Duration) {
        if let Err(e) = self.stop() {
            panic!("wasmcell-testing: stopping containerd: {e}");
        }
        std::thread::sleep(down);
        self.spawn_and_wait();
    }

    fn ctr_with<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = self.ctr();
        cmd.args(args);
        cmd
    }

    fn try_run_ctr(&self, args: &[&str], timeout: Duration) -> Result<CtrOutput, String> {
        run_with_deadline(self.ctr_with(args), timeout)
    }

    fn spawn_and_wait(&mut self) {
        // A previous containerd killed with SIGKILL leaves its sockets behind.
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_file(&self.ttrpc_socket);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| {
                panic!("wasmcell-testing: cannot open {}: {e}", self.log.display())
            });
        let log_err = log
            .try_clone()
            .expect("wasmcell-testing: cannot duplicate the log file handle");
        let child = Command::new("containerd")
            .env("PATH", &self.path_env)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "wasmcell-testing: cannot start `containerd` (is the Debian package \
                     `containerd` installed?): {e}"
                )
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        let mut last_error = String::from("socket not created yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "wasmcell-testing: containerd exited during startup ({status}); log \
                         tail:\n{}",
                        self.log_tail(LOG_TAIL_LINES)
                    );
                }
            }
            if self.socket.exists() {
                let probe = self.ctr_with(&["--connect-timeout", "2s", "version"]);
                match run_with_deadline(probe, Duration::from_secs(5)) {
                    Ok(out) if out.success() => return,
                    Ok(out) => last_error = describe(&out),
                    Err(e) => last_error = e,
                }
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = self.stop();
                panic!(
                    "wasmcell-testing: containerd did not answer on {} within {:?} (last \
                     `ctr version`: {last_error}); log tail:\n{}",
                    self.socket.display(),
                    START_TIMEOUT,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The snapshotter to configure before containerd runs: the forced one, else `overlayfs`
    /// when an overlay mount works here, else `native`.
    fn preliminary_snapshotter(&self) -> &'static str {
        if let Ok(forced) = std::env::var(SNAPSHOTTER_ENV) {
            return match forced.as_str() {
                "overlayfs" => "overlayfs",
                "native" => "native",
                other => panic!(
                    "wasmcell-testing: {SNAPSHOTTER_ENV}={other:?}: expected `overlayfs` or \
                     `native`"
                ),
            };
        }
        if overlay_mount_works(self.dir.path().parent().unwrap_or(Path::new("/tmp"))) {
            "overlayfs"
        } else {
            "native"
        }
    }

    fn choose_snapshotter(&self) -> &'static str {
        let preliminary = self.preliminary_snapshotter();
        if preliminary == "native" || std::env::var_os(SNAPSHOTTER_ENV).is_some() {
            return preliminary;
        }
        // containerd's overlayfs plugin does its own checks (d_type, ...) and may be skipped.
        match self.try_run_ctr(&["plugins", "ls"], Duration::from_secs(10)) {
            Ok(out) if out.success() => {
                let ok = out.stdout.lines().any(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    cols.first() == Some(&"io.containerd.snapshotter.v1")
                        && cols.get(1) == Some(&"overlayfs")
                        && cols.last() == Some(&"ok")
                });
                if ok {
                    "overlayfs"
                } else {
                    "native"
                }
            }
            _ => "native",
        }
    }

    /// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Never panics.
    fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        let pid = child.id().to_string();
        let _ = run_with_deadline(kill_command("-TERM", &pid), Duration::from_secs(5));
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for containerd (pid {pid}): {e}")),
            }
        }
        eprintln!(
            "wasmcell-testing: containerd (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT:?}; \
             sending SIGKILL"
        );
        child
            .kill()
            .map_err(|e| format!("SIGKILL to containerd (pid {pid}): {e}"))?;
        child
            .wait()
            .map(|_| ())
            .map_err(|e| format!("waiting for containerd (pid {pid}): {e}"))
    }

    /// Kill and delete every task, delete every container of `namespace`. Never panics.
    fn delete_tasks_and_containers(&self, namespace: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for id in self.cleanup_list(namespace, &["tasks", "ls", "-q"], &mut problems) {
            // Fails harmlessly when the task already stopped: the result is not checked.
            let _ = self.try_run_ctr_in(
                namespace,
                &["tasks", "kill", "--all", "-s", "SIGKILL", &id],
                CLEANUP_CTR_TIMEOUT,
            );
            self.cleanup_run(
                namespace,
                &["tasks", "delete", "--force", &id],
                &mut problems,
            );
        }
        for id in self.cleanup_list(namespace, &["containers", "ls", "-q"], &mut problems) {
            self.cleanup_run(namespace, &["containers", "delete", &id], &mut problems);
        }
        problems
    }

    fn try_run_ctr_in(
        &self,
        namespace: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<CtrOutput, String> {
        let mut cmd = self.ctr_in(namespace);
        cmd.args(args);
        run_with_deadline(cmd, timeout)
    }

    fn cleanup_run(
        &self,
        namespace: &str,
        args: &[&str],
        problems: &mut Vec<String>,
    ) -> Option<CtrOutput> {
        match self.try_run_ctr_in(namespace, args, CLEANUP_CTR_TIMEOUT) {
            Ok(out) if out.success() => Some(out),
            // Gone meanwhile (CRI reacting to the same exits): nothing left to do.
            Ok(out) if out.stderr.contains("not found") => None,
            Ok(out) => {
                problems.push(format!(
                    "`ctr --namespace {namespace} {}`: {}",
                    args.join(" "),
                    describe(&out)
                ));
                None
            }
            Err(e) => {
                problems.push(format!(
                    "`ctr --namespace {namespace} {}`: {e}",
                    args.join(" ")
                ));
                None
            }
        }
    }

    fn cleanup_list(
        &self,
        namespace: &str,
        args: &[&str],
        problems: &mut Vec<String>,
    ) -> Vec<String> {
        self.cleanup_run(namespace, args, problems)
            .map(|out| {
                out.stdout
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        if thread::panicking() {
            eprintln!(
                "wasmcell-testing: containerd log tail ({}):\n{}",
                self.log.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running {
            if self.cri_enabled() {
                // Pods first, the way kubelet removes them, so CRI unmounts and forgets them.
                #[cfg(feature = "cri")]
                problems.extend(cri::remove_all_pods(&self.socket));
                problems.extend(self.delete_tasks_and_containers(CRI_NAMESPACE));
            }
            problems.extend(self.delete_tasks_and_containers(&self.namespace));
        }
        if let Err(e) = self.stop() {
            problems.push(e);
        }
        // Anything still referring to our socket is a shim that outlived its task.
        let needle = self.socket.to_string_lossy().into_owned();
        let strays = pids_with_cmdline_containing(&needle);
        // A shared-mode manager (a stray once containerd is gone) leaves its own cgroup and
        // its capacity mark behind when killed: noted here, removed once it is gone.
        let manager_leftovers: Vec<(Vec<String>, Option<PathBuf>)> =
            strays.iter().map(|pid| manager_leftovers(*pid)).collect();
        if !strays.is_empty() {
            problems.push(format!("killed stray processes {strays:?}"));
            for pid in &strays {
                let _ = run_with_deadline(
                    kill_command("-KILL", &pid.to_string()),
                    Duration::from_secs(5),
                );
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !pids_with_cmdline_containing(&needle).is_empty() {
                thread::sleep(Duration::from_millis(20));
            }
        }
        for (cgroups, socket) in manager_leftovers {
            for cgroup in cgroups {
                remove_empty_cgroups(&cgroup);
            }
            if let Some(socket) = socket {
                let mut full = socket.into_os_string();
                full.push(".full");
                let _ = fs::remove_file(full);
            }
        }
        for mount in mounts_under(self.dir.path()) {
            let mut umount = Command::new("umount");
            umount.arg("-l").arg(&mount);
            match run_with_deadline(umount, Duration::from_secs(10)) {
                Ok(out) if out.success() => {}
                Ok(out) => problems.push(format!(
                    "`umount -l {}`: {}",
                    mount.display(),
                    describe(&out)
                )),
                Err(e) => problems.push(format!("`umount -l {}`: {e}", mount.display())),
            }
        }
        // Per-namespace leftovers outside the temporary directory; removed only when empty.
        let _ = fs::remove_dir(Path::new("/run/containerd/runc").join(&self.namespace));
        remove_empty_cgroups(&self.namespace);
        if !problems.is_empty() {
            eprintln!(
                "wasmcell-testing: cleanup of containerd in {}:\n  {}",
                self.dir.path().display(),
                problems.join("\n  ")
            );
        }
        // `self.dir` (the TempDir) is removed when the fields are dropped, right after this.
    }
}

/// Panic with a clear message unless the effective user is root. The integration tests using
/// [`Containerd`] are meant to run as root and are never skipped.
///
/// # Panics
/// When the effective uid is not 0.
pub fn require_root() {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => panic!(
            "wasmcell-testing: these tests start a real containerd and must run as root, but the \
             effective uid is {uid}; run them as root (e.g. `sudo -E cargo test`); they are never \
             skipped"
        ),
        None => panic!(
            "wasmcell-testing: cannot read the effective uid from /proc/self/status; these tests \
             must run as root"
        ),
    }
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Mount points at or below `dir`, deepest first, read from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// Process ids (other than ours) whose command line contains `needle`, e.g. a socket path.
pub fn pids_with_cmdline_containing(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let cmdline: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
                String::from_utf8_lossy(&cmdline).contains(needle)
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Decode the octal escapes (`\040` for a space, ...) of a `/proc/self/mountinfo` field.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] = bytes[i..] {
            out.push((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Remove `/sys/fs/cgroup/<namespace>` and `/sys/fs/cgroup/<controller>/<namespace>` with
/// every cgroup below them, deepest first; a cgroup still holding a process stays. Processes
/// killed a moment ago may still be leaving: tries again for up to [`CGROUP_REMOVE_TIMEOUT`].
/// What a wasmcell shared-mode manager `pid` would leave when killed: its own cgroup (relative
/// to each hierarchy) and its socket path (whose `.full` mark it keeps beside it).
fn manager_leftovers(pid: u32) -> (Vec<String>, Option<PathBuf>) {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let socket = args
        .iter()
        .position(|a| a == "-socket")
        .and_then(|i| args.get(i + 1))
        .map(|s| PathBuf::from(s.trim_start_matches("unix://")));
    let mut cgroups: Vec<String> = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter(|path| path.contains("/wasmcell/manager-"))
        .map(|path| path.trim_start_matches('/').to_string())
        .collect();
    cgroups.sort();
    cgroups.dedup();
    (cgroups, socket)
}

fn remove_empty_cgroups(namespace: &str) {
    let base = Path::new("/sys/fs/cgroup");
    let deadline = Instant::now() + CGROUP_REMOVE_TIMEOUT;
    loop {
        let mut dirs = vec![base.join(namespace)];
        if let Ok(entries) = fs::read_dir(base) {
            dirs.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path().join(namespace)),
            );
        }
        dirs.retain(|d| d.exists());
        for dir in &dirs {
            remove_cgroup_tree(dir, 0);
        }
        if dirs.iter().all(|d| !d.exists()) || Instant::now() > deadline {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn remove_cgroup_tree(dir: &Path, depth: usize) {
    if depth > 16 {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path(), depth + 1);
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn kill_command(signal: &str, pid: &str) -> Command {
    let program = if Path::new("/bin/kill").exists() {
        "/bin/kill"
    } else {
        "kill"
    };
    let mut cmd = Command::new(program);
    cmd.arg(signal).arg(pid);
    cmd
}

/// Whether an overlay mount works on the filesystem of `base` (tested once per process).
fn overlay_mount_works(base: &Path) -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        let Ok(probe) = tempfile::Builder::new()
            .prefix("wasmcell-overlay-probe-")
            .tempdir_in(base)
        else {
            return false;
        };
        let p = probe.path();
        let (lower, upper, work, merged) = (p.join("l"), p.join("u"), p.join("w"), p.join("m"));
        for d in [&lower, &upper, &work, &merged] {
            if fs::create_dir(d).is_err() {
                return false;
            }
        }
        if fs::write(lower.join("probe"), b"ok").is_err() {
            return false;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let mut mount = Command::new("mount");
        mount
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged);
        let mounted =
            run_with_deadline(mount, Duration::from_secs(10)).is_ok_and(|out| out.success());
        if !mounted {
            return false;
        }
        let works = fs::read(merged.join("probe")).is_ok_and(|b| b == b"ok")
            && fs::write(merged.join("written"), b"ok").is_ok();
        let mut umount = Command::new("umount");
        umount.arg(&merged);
        if !run_with_deadline(umount, Duration::from_secs(10)).is_ok_and(|out| out.success()) {
            let mut lazy = Command::new("umount");
            lazy.arg("-l").arg(&merged);
            let _ = run_with_deadline(lazy, Duration::from_secs(10));
        }
        works
    })
}

fn make_temp_dir() -> TempDir {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("wasmcell-cd-");
        b
    };
    let dir = builder
        .tempdir()
        .unwrap_or_else(|e| panic!("wasmcell-testing: cannot create a temporary directory: {e}"));
    // Unix socket paths must fit in `sun_path`; fall back to /tmp for a long TMPDIR.
    let longest = dir.path().join("containerd-ttrpc.sock");
    if longest.as_os_str().len() <= MAX_SOCKET_PATH {
        return dir;
    }
    builder
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("wasmcell-testing: cannot create a directory in /tmp: {e}"))
}

fn path_with(extra: &[PathBuf]) -> OsString {
    let current = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    let dirs: Vec<PathBuf> = extra
        .iter()
        .cloned()
        .chain(std::env::split_paths(&current))
        .collect();
    std::env::join_paths(dirs).unwrap_or_else(|e| {
        panic!("wasmcell-testing: cannot build PATH from {extra:?} and the current PATH: {e}")
    })
}

fn toml_string(path: &Path) -> String {
    let s = path
        .to_str()
        .unwrap_or_else(|| panic!("wasmcell-testing: path {} is not UTF-8", path.display()));
    toml_str(s)
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn config_toml(
    root: &Path,
    state: &Path,
    socket: &Path,
    ttrpc: &Path,
    opt: &Path,
    disable_cri: bool,
) -> String {
    let (cri_comment, cri_plugin) = if disable_cri {
        (
            "# CRI is not needed and slows startup; the other snapshotters cannot work here anyway.",
            "\n  \"io.containerd.grpc.v1.cri\",",
        )
    } else {
        (
            "# CRI is enabled (see the end); the other snapshotters cannot work here anyway.",
            "",
        )
    };
    format!(
        r#"# Generated by wasmcell-testing: a private containerd for one test.
version = 2
root = {root}
state = {state}
{cri_comment}
disabled_plugins = [{cri_plugin}
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

# Debug level also starts shims with `-debug`; their log ends up in containerd's log.
[debug]
  level = "debug"

[plugins]
  # Keep containerd from creating /opt/containerd on the host.
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}
"#,
        root = toml_string(root),
        state = toml_string(state),
        socket = toml_string(socket),
        ttrpc = toml_string(ttrpc),
        opt = toml_string(opt),
    )
}

/// Where the CRI plugin looks for CNI plugins and configuration, and why.
struct CniDirs {
    comment: &'static str,
    bin: PathBuf,
    conf: PathBuf,
}

/// The CRI plugin's section (containerd 1.6, config version 2).
fn cri_config_toml(sandbox_image: &str, snapshotter: &str, cni: &CniDirs) -> String {
    format!(
        r#"
  # containerd's CRI plugin, as kubelet talks to it; its root and state live under containerd's.
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = {sandbox_image}
    # No CAP_SYS_RESOURCE here: never lower an oom_score_adj below containerd's own.
    restrict_oom_score_adj = true
    # Tests run in parallel: a random loopback port for exec/attach/port-forward streams.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    # Loading an AppArmor profile would change the host; SELinux is off by default.
    disable_apparmor = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = {snapshotter}
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{handler}]
        runtime_type = {runtime_type}
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{shared_handler}]
        runtime_type = {shared_runtime_type}
    {cni_comment}
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = {cni_bin}
      conf_dir = {cni_conf}
"#,
        sandbox_image = toml_str(sandbox_image),
        snapshotter = toml_str(snapshotter),
        handler = CRI_RUNTIME_HANDLER,
        runtime_type = toml_str(CRI_RUNTIME_TYPE),
        shared_handler = CRI_SHARED_RUNTIME_HANDLER,
        shared_runtime_type = toml_str(CRI_SHARED_RUNTIME_TYPE),
        cni_comment = cni.comment,
        cni_bin = toml_string(&cni.bin),
        cni_conf = toml_string(&cni.conf),
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn describe(out: &CtrOutput) -> String {
    format!(
        "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.code,
        out.stdout.trim_end(),
        out.stderr.trim_end()
    )
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => match buf.lock() {
                    Ok(mut b) => b.extend_from_slice(&chunk[..n]),
                    Err(_) => break,
                },
            }
        }
    })
}

fn take_string(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    match buf.lock() {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    }
}

/// Run `cmd` with stdin closed and stdout/stderr captured; kill it after `timeout`.
/// Never panics: spawn failures and timeouts are errors.
fn run_with_deadline(mut cmd: Command, timeout: Duration) -> Result<CtrOutput, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let out_buf = Arc::new(Mutex::new(Vec::new()));
    let err_buf = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, Arc::clone(&out_buf)));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, Arc::clone(&err_buf)));
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            // 1 ms: the bench times commands with this, so the poll must not round them up.
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown} did not finish within {timeout:?} and was killed\n--- stdout ---\n{}\n\
                     --- stderr ---\n{}",
                    take_string(&out_buf).trim_end(),
                    take_string(&err_buf).trim_end()
                ));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for {shown}: {e}"));
            }
        }
    };
    // A grandchild holding the pipes open must not hang us: give the readers a short grace.
    let grace = Instant::now() + Duration::from_secs(5);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < grace {
        thread::sleep(Duration::from_millis(1));
    }
    for reader in readers {
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(CtrOutput {
        code,
        stdout: take_string(&out_buf),
        stderr: take_string(&err_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/tmp/a\134b"), r"/tmp/a\b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(Path::new("/a/b")), "\"/a/b\"");
        assert_eq!(toml_string(Path::new("/a\"b\\c")), "\"/a\\\"b\\\\c\"");
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn deadline_kills_slow_commands() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let err = run_with_deadline(cmd, Duration::from_millis(200))
            .expect_err("sleep 30 must exceed a 200 ms deadline");
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_and_exit_code_are_captured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run_with_deadline(cmd, Duration::from_secs(10)).expect("sh runs");
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }
}
