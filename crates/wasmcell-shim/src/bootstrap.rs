//! The shim binary's three roles: `start` (find or launch the shim server for a container's
//! group and print its ttrpc address), `delete` (clean up after a shim that died), and the
//! server itself (no action).
//!
//! These are the binary's edge: their errors are `anyhow` errors with the context of each step,
//! printed with their whole chain; below them the shim's errors are [`crate::ShimError`]s.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use command_fds::{CommandFdExt, FdMapping};
use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Flags;
use nix::sys::signal::Signal;
use tokio::sync::Notify;

use crate::cgroup::Cgroup;
use crate::events::Events;
use crate::reaper::Reaper;
use crate::rootfs::unmount_rootfs;
use crate::state_file::{read_state_file, remove_state_file, StateRecord};
use crate::task::mode::{Mode, NormalMode};
use crate::task::service::TaskService;
use crate::task::wire::timestamp;

/// Env var naming the fd of the listening socket `start` hands to the server it launches.
const LISTEN_FD_ENV: &str = "WASMCELL_SHIM_LISTEN_FD";
const LISTEN_FD: i32 = 3;
/// Annotation that groups the containers of one Kubernetes pod into one shim.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

pub(crate) fn main(args: &[String]) -> i32 {
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("containerd-shim-wasmcell-v1: {e}");
            return 2;
        }
    };
    if flags.version {
        println!("containerd-shim-wasmcell-v1 {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    if flags.namespace.is_empty() {
        eprintln!("containerd-shim-wasmcell-v1: -namespace is required");
        return 2;
    }
    let shared = crate::shared::invoked_as_shared(&args[0]);
    let result = match flags.action.as_str() {
        "start" if shared => crate::shared::start(&flags).map(|address| {
            print!("{address}");
            let _ = std::io::stdout().flush();
        }),
        "start" => start(&flags).map(|address| {
            print!("{address}");
            let _ = std::io::stdout().flush();
        }),
        "delete" => delete(&flags),
        "" => serve(&flags),
        other => Err(anyhow::anyhow!("unknown action {other:?}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("containerd-shim-wasmcell-v1: {e:#}");
            1
        }
    }
}

/// `e` as one anyhow error, its message alone: for an error whose message already ends with
/// its causes' (`"...: {source}"`, as the shim's, the wasmcell crates' and containerd-shim's
/// errors do), whose chain `{:#}` would otherwise print twice.
pub(crate) fn one_message(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The group a container's shim serves: its pod (sandbox id) or itself.
fn grouping(bundle: &Path, id: &str) -> String {
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).ok();
    spec.as_ref()
        .and_then(|s| s.annotations().as_ref())
        .and_then(|a| a.get(SANDBOX_ID))
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| id.to_string())
}

fn start(flags: &Flags) -> anyhow::Result<String> {
    let bundle = std::env::current_dir().context("failed to read the bundle dir")?;
    let group = grouping(&bundle, &flags.id);
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, &group);
    let path = socket_path(&address);

    ensure_server(&path, |listener| {
        launch_server(flags, &group, &address, listener, None)
    })?;
    let address_file = bundle.join("address");
    std::fs::write(&address_file, &address)
        .with_context(|| format!("failed to write {}", address_file.display()))?;
    Ok(address)
}

/// Make sure a server listens at `path`: when none answers, take the lock beside the socket,
/// look again (another `start` may have launched one meanwhile), and only then bind the
/// socket and `launch` a server on it. Two concurrent starts for the same socket never both
/// launch one (the loser's server would sit on an unlinked socket, orphaned).
pub(crate) fn ensure_server(
    path: &Path,
    launch: impl FnOnce(UnixListener) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if UnixStream::connect(path).is_ok() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let lock_path = with_suffix(path, ".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("failed to open {}", lock_path.display()))?;
    let _locked = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("failed to lock {}", lock_path.display()))?;
    if UnixStream::connect(path).is_ok() {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("failed to listen on {}", path.display()))?;
    launch(listener)
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Launch the server for `group` on `listener`; with `manager_log`, the shared-mode manager,
/// which lives outside any bundle (cwd `/`) and logs to that file.
pub(crate) fn launch_server(
    flags: &Flags,
    group: &str,
    address: &str,
    listener: UnixListener,
    manager_log: Option<&Path>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("failed to find the shim binary")?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "-namespace",
        &flags.namespace,
        "-id",
        group,
        "-address",
        &flags.address,
    ])
    .args(["-socket", address])
    .env(LISTEN_FD_ENV, LISTEN_FD.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .process_group(0);
    if flags.debug {
        cmd.arg("-debug");
    }
    if let Some(log) = manager_log {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("failed to open {}", log.display()))?;
        cmd.env(crate::shared::MANAGER_ENV, "1")
            .current_dir("/")
            .stderr(file);
    }
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: OwnedFd::from(listener),
        child_fd: LISTEN_FD,
    }])
    .context("failed to pass the shim socket")?;
    cmd.spawn().context("failed to launch the shim server")?;
    Ok(())
}

pub(crate) fn socket_path(address: &str) -> PathBuf {
    PathBuf::from(address.strip_prefix("unix://").unwrap_or(address))
}

fn serve(flags: &Flags) -> anyhow::Result<()> {
    let manager = std::env::var_os(crate::shared::MANAGER_ENV).is_some();
    init_logging(flags.debug, manager);
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "failed to become a child subreaper");
    }
    let listen_fd = match std::env::var(LISTEN_FD_ENV) {
        Ok(_) => {
            // SAFETY: `start` maps the listening socket to LISTEN_FD when it launches this
            // process and sets LISTEN_FD_ENV; nothing else here owns that fd.
            #[allow(unsafe_code)]
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(LISTEN_FD) };
            std::env::remove_var(LISTEN_FD_ENV);
            // Mapped to fd 3 without close-on-exec: set it, so that no guest process or runc
            // inherits the shim's socket.
            let cloexec = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC);
            if let Err(e) = nix::fcntl::fcntl(LISTEN_FD, cloexec) {
                tracing::warn!(error = %e, "failed to set close-on-exec on the shim socket");
            }
            fd
        }
        Err(_) => {
            let path = socket_path(&flags.socket);
            let _ = std::fs::remove_file(&path);
            OwnedFd::from(
                UnixListener::bind(&path)
                    .with_context(|| format!("failed to listen on {}", path.display()))?,
            )
        }
    };

    if manager {
        return crate::shared::serve(flags, listen_fd);
    }
    let Ok(ttrpc_address) = std::env::var("TTRPC_ADDRESS") else {
        anyhow::bail!("TTRPC_ADDRESS is not set; the shim must be started by containerd");
    };
    let publisher = RemotePublisher::new(&ttrpc_address)
        .map_err(one_message)
        .with_context(|| format!("failed to connect to containerd at {ttrpc_address}"))?;
    let events = Events::start(publisher, ttrpc_address.clone(), flags.namespace.clone());
    let reaper = Reaper::start().context("failed to start the reaper")?;
    let exit = Arc::new(Notify::new());
    let mode = NormalMode {
        containerd_address: flags.address.clone(),
        exit: exit.clone(),
    };
    let service = Arc::new(TaskService::new(Mode::Normal(mode), events.clone(), reaper));
    let runtime = crate::task::rpc::serving_runtime("wasmcell-shim").map_err(one_message)?;
    runtime.block_on(async move {
        let mut server = crate::task::rpc::serve(listen_fd, service)
            .await
            .map_err(one_message)?;
        tracing::info!(socket = %flags.socket, group = %flags.id, "shim serving");
        exit.notified().await;
        // Stop serving, but never let a stuck connection keep the shim alive.
        let _ = tokio::time::timeout(Duration::from_secs(2), server.shutdown()).await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    // The last exit and delete events must reach containerd before the process is gone.
    events.flush(Duration::from_secs(5));
    let socket = socket_path(&flags.socket);
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(with_suffix(&socket, ".lock"));
    tracing::info!("shim exiting");
    Ok(())
}

/// Logs go to the `log` FIFO containerd reads in the bundle directory (never blocking the shim:
/// when containerd is not reading, lines are dropped); the manager logs to its stderr, a file.
/// At debug level the start path's spans (`create` > `rootfs`, `spec`, `spawn_guest`, `cgroup`,
/// `prepare`; `start`) log their duration when they close (`time.busy`, `time.idle`), and the
/// guest process's own steps come with `guest prepared`.
fn init_logging(debug: bool, manager: bool) {
    // libcgroups warns of every v1 controller the host lacks, on every container.
    let default = if debug {
        "debug,libcgroups=error"
    } else {
        "info,libcgroups=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let log = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open("log");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false);
    let _ = match log {
        Ok(file) if !manager => builder.with_writer(Arc::new(file)).try_init(),
        _ => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// `delete`: containerd calls this after a shim died. Kill what is left of the guest, remove
/// its cgroup and rootfs mount, and report the task as killed.
fn delete(flags: &Flags) -> anyhow::Result<()> {
    let bundle = std::env::current_dir().context("failed to read the bundle dir")?;
    let record = read_state_file(&bundle);
    let mut pid = 0;
    if let Some(record) = record {
        pid = record.pid;
        // Only the very process recorded: a guest of this bundle, started when it was. The
        // pidfd is opened first and the identity checked after, so the signal reaches the
        // process that was checked.
        let pidfd = crate::pidfd::PidFd::open(record.pid).ok();
        if let Some(pidfd) = pidfd.filter(|_| is_recorded_guest(&record, &bundle)) {
            let _ = pidfd.signal(Signal::SIGKILL as i32);
            let deadline = Instant::now() + Duration::from_secs(5);
            while is_recorded_guest(&record, &bundle) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(path) = record.cgroup {
            if let Ok(cg) = Cgroup::open(&path, &flags.id) {
                cg.remove();
            }
        }
        remove_state_file(&bundle);
    }
    if bundle.join("init.pid").exists() {
        // A Linux container: runc holds its state and cgroup.
        let status = Command::new("runc")
            .arg("--root")
            .arg(crate::linux::runc_root(&flags.namespace))
            .args(["delete", "--force", &flags.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = status {
            eprintln!("containerd-shim-wasmcell-v1: failed to run runc delete: {e}");
        }
    }
    unmount_rootfs(&bundle);
    let response = DeleteResponse {
        pid,
        exit_status: wasmcell_core::EXIT_KILLED as u32,
        exited_at: MessageField::some(timestamp(std::time::SystemTime::now())),
        ..Default::default()
    };
    let bytes = response
        .write_to_bytes()
        .context("failed to encode the delete response")?;
    std::io::stdout()
        .write_all(&bytes)
        .context("failed to write the delete response")
}

/// True when the recorded process still runs and is the guest process of `bundle` that was
/// recorded (same start time, when recorded; `guest --bundle <bundle>` on its command line), not
/// another program or another container's guest that got the pid after it.
fn is_recorded_guest(record: &StateRecord, bundle: &Path) -> bool {
    let pid = record.pid;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_guest = args.get(1) == Some(&crate::guest::SUBCOMMAND.as_bytes());
    let same_dir = |arg: &[u8]| {
        let arg = Path::new(std::ffi::OsStr::from_bytes(arg));
        arg == bundle || arg.canonicalize().ok() == bundle.canonicalize().ok()
    };
    let ours = args
        .windows(2)
        .any(|w| w[0] == b"--bundle" && same_dir(w[1]));
    let same_start = record
        .start_time
        .is_none_or(|t| crate::pidfd::start_time(pid) == Some(t));
    is_guest && ours && same_start && crate::pidfd::still_running(pid)
}
