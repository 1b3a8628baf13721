//! The [`Containerd`] harness itself (see the crate docs): its constants, the structure, its
//! constructors and what it tells about itself. Its submodules add the rest of its methods:
//! the generated configuration (`config`), the containerd process (`daemon`), the snapshotter
//! choice (`snapshotter`), `ctr` commands and imports (`ctr`) and the cleanup on drop
//! (`cleanup`).

mod cleanup;
mod config;
mod ctr;
mod daemon;
mod snapshotter;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::command::describe;
#[cfg(feature = "cri")]
use crate::cri;
use crate::procfs::require_root;
use crate::{pause_image, PodNetwork, HOST_BUSYBOX, PAUSE_IMAGE};

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

/// Lines of containerd's log quoted in panic messages.
const LOG_TAIL_LINES: usize = 80;
/// Longest socket path we accept (`sun_path` holds 108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 100;
/// Namespace label naming the namespace's default snapshotter, honoured by containerd clients.
const DEFAULT_SNAPSHOTTER_LABEL: &str = "containerd.io/defaults/snapshotter";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

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
        let mut containerd = Containerd::prepare(extra_path_dirs, sandbox_image, pod_network, env);
        containerd.launch();
        containerd.create_namespaces();
        containerd
    }

    /// Everything before containerd runs: the root check, the temporary directory with
    /// containerd's root, state and `opt` directories (and the pod network when asked for), the
    /// paths of its sockets, configuration and log, and a namespace of its own.
    fn prepare(
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
        Containerd {
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
        }
    }

    /// Write the configuration and start containerd until it answers, with the snapshotter it
    /// can use (restarting it once with CRI when its own checks refuse the guess); with CRI,
    /// check that the plugin loaded.
    fn launch(&mut self) {
        // CRI names its snapshotter in the configuration: guess before starting, and restart
        // below if containerd's own checks disagree.
        if self.sandbox_image.is_some() {
            self.snapshotter = self.preliminary_snapshotter();
        }
        self.write_config();
        self.spawn_and_wait();
        let chosen = self.choose_snapshotter();
        if self.sandbox_image.is_some() && chosen != self.snapshotter {
            self.snapshotter = chosen;
            self.write_config();
            self.restart();
        }
        self.snapshotter = chosen;
        if self.sandbox_image.is_some() {
            self.check_cri_loaded();
        }
    }

    /// Create this instance's namespace (and [`CRI_NAMESPACE`] with CRI), labelled with the
    /// snapshotter as its default.
    fn create_namespaces(&self) {
        let mut namespaces = vec![self.namespace.clone()];
        if self.sandbox_image.is_some() {
            namespaces.push(CRI_NAMESPACE.to_string());
        }
        let label = format!("{DEFAULT_SNAPSHOTTER_LABEL}={}", self.snapshotter);
        for ns in namespaces {
            let out = self.run_ctr(&["namespaces", "create", &ns, &label]);
            let exists = out.stderr.contains("already exists");
            if !out.success() && !exists {
                panic!(
                    "wasmcell-testing: `ctr namespaces create {ns} {label}` failed:\n{}",
                    describe(&out)
                );
            }
            if exists {
                // CRI may have created it first: set the label instead.
                let out = self.run_ctr(&["namespaces", "label", &ns, &label]);
                if !out.success() {
                    panic!(
                        "wasmcell-testing: `ctr namespaces label {ns} {label}` failed:\n{}",
                        describe(&out)
                    );
                }
            }
        }
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
