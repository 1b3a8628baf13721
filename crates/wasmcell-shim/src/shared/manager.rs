//! Starting the manager (the `start` action in shared mode) and running it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Flags;
use wasmcell_wasmtime::{CompileCache, WasmtimeEngine};

use super::SharedMode;
use super::{Activity, IDLE_EXIT, MANAGER_ENV};
use crate::bootstrap::{ensure_server, launch_server, one_message, socket_path, with_suffix};
use crate::cgroup::Cgroup;
use crate::events::Events;
use crate::reaper::Reaper;
use crate::task::mode::Mode;
use crate::task::service::TaskService;

/// The id of manager number `n` of a containerd (`manager`, then `manager-1`, ...).
fn manager_id(n: usize) -> String {
    match n {
        0 => "manager".to_string(),
        n => format!("manager-{n}"),
    }
}

/// The address of manager `id` for the containerd at `containerd_address`, for every
/// namespace.
fn manager_address(containerd_address: &str, id: &str) -> String {
    containerd_shim::socket_address(containerd_address, "wasmcell-shared", id)
}

/// Most managers one containerd gets: `WASMCELL_MANAGERS`, else 16.
fn max_managers() -> usize {
    std::env::var("WASMCELL_MANAGERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(16)
}

/// `start` in shared mode: make sure a manager with room runs (the first that has not said it
/// is full, see capacity.rs) and answer with its address. When every one is full, the first
/// gets the container, and refuses it if it truly has no room, naming its limit.
pub(crate) fn start(flags: &Flags) -> anyhow::Result<String> {
    let bundle = std::env::current_dir().context("failed to read the bundle dir")?;
    let count = max_managers();
    let n = (0..count)
        .find(|&n| {
            let address = manager_address(&flags.address, &manager_id(n));
            !super::capacity::is_full(&socket_path(&address))
        })
        .unwrap_or(0);
    let id = manager_id(n);
    let address = manager_address(&flags.address, &id);
    let path = socket_path(&address);
    ensure_server(&path, |listener| {
        let log = with_suffix(&path, ".log");
        launch_server(flags, &id, &address, listener, Some(&log))
    })?;
    let address_file = bundle.join("address");
    std::fs::write(&address_file, &address)
        .with_context(|| format!("failed to write {}", address_file.display()))?;
    Ok(address)
}

/// Run the manager on the listening socket `start` handed over, until it has been idle.
pub(crate) fn serve(flags: &Flags, listener: OwnedFd) -> anyhow::Result<()> {
    std::env::remove_var(MANAGER_ENV);
    let Ok(ttrpc_address) = std::env::var("TTRPC_ADDRESS") else {
        anyhow::bail!("TTRPC_ADDRESS is not set; the manager must be started by containerd");
    };
    let publisher = RemotePublisher::new(&ttrpc_address)
        .map_err(one_message)
        .with_context(|| format!("failed to connect to containerd at {ttrpc_address}"))?;
    let events = Events::start(publisher, ttrpc_address.clone(), flags.namespace.clone());
    raise_file_limit();
    // Out of containerd's cgroup, before the reaper and the executor start their threads.
    let own_cgroup = enter_own_cgroup(&flags.socket);
    // Mounting a rootfs may fork a helper, which containerd-shim's monitor waits for through
    // the reaper.
    // Linux containers' init processes (runc's) are reparented to the manager and reaped here.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "failed to become a child subreaper");
    }
    let reaper = Reaper::start().context("failed to start the reaper")?;
    let cache = CompileCache::node();
    let engine = Arc::new(WasmtimeEngine::with_cache(cache).context("engine")?);
    let activity = Arc::new(Activity::new());

    let idle = idle_exit();
    let containerd_socket = PathBuf::from(
        flags
            .address
            .strip_prefix("unix://")
            .unwrap_or(&flags.address),
    );

    // Before any guest runs: a killed guest's blocked FIFO calls are interrupted with it.
    if let Err(e) = super::unpin::install_wake_handler() {
        tracing::warn!(error = %e, "failed to install the handler that wakes blocked calls of killed guests");
    }
    // Two executors: guests run on one (their file I/O on its blocking pool), the Task API and
    // everything it does (Creates' compiles, Linux containers, events) on the other, so that
    // however busy the guests are, a request is served and a kill acted on without waiting
    // behind them.
    let guests = guests_runtime()?;
    let runtime = crate::task::rpc::serving_runtime("wasmcell-manager").map_err(one_message)?;
    let capacity = Arc::new(super::capacity::Capacity::new(&socket_path(&flags.socket)));
    let mode = SharedMode::new(
        engine,
        guests.handle().clone(),
        capacity.clone(),
        activity.clone(),
        flags.address.clone(),
    );
    let service = Arc::new(TaskService::new(Mode::Shared(mode), events.clone(), reaper));
    runtime.block_on(async move {
        let mut server = crate::task::rpc::serve(listener, service)
            .await
            .map_err(one_message)?;
        tracing::info!(socket = %flags.socket, pid = std::process::id(), "manager serving");
        // The manager outlives containerd: its guests keep running while containerd is
        // stopped or restarting (their exits wait in the event queue), as runc's shims do. It
        // leaves only once it has held no container for `idle`.
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if activity.idle_for(idle) {
                tracing::info!(containerd = %containerd_socket.display(), "no container left; manager exiting");
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), server.shutdown()).await;
        anyhow::Ok(())
    })?;
    // No guest is left; a file call a killed guest left blocked must not hold the exit.
    guests.shutdown_timeout(Duration::from_secs(1));
    events.flush(Duration::from_secs(5));
    capacity.clear();
    let _ = std::fs::remove_file(socket_path(&flags.socket));
    if let Some(cgroup) = own_cgroup {
        super::own_cgroup::leave(cgroup);
    }
    Ok(())
}

/// Move the manager into a cgroup of its own ([`super::own_cgroup`]); when it cannot, it stays
/// in containerd's, and says why.
fn enter_own_cgroup(manager_socket: &str) -> Option<Cgroup> {
    match super::own_cgroup::ManagerLimits::for_this_manager(manager_socket)
        .and_then(|limits| super::own_cgroup::enter(&limits))
    {
        Ok(cgroup) => Some(cgroup),
        Err(e) => {
            tracing::error!(error = %e, "the manager stays in containerd's cgroup");
            None
        }
    }
}

/// How long the manager stays with no container: `WASMCELL_MANAGER_IDLE_SECS`, else
/// [`IDLE_EXIT`].
fn idle_exit() -> Duration {
    std::env::var("WASMCELL_MANAGER_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(IDLE_EXIT)
}

/// The executor the guests run on. A spinning guest runs up to an epoch tick (5 ms) between
/// yields: its worker takes new tasks from the shared queue, and I/O and timer events, every
/// other turn rather than tokio's default of every 31 and 61, or a new guest and a sleeping
/// guest's wake-up would wait that many ticks behind each spinner.
fn guests_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .global_queue_interval(2)
        .event_interval(2)
        .enable_all()
        .max_blocking_threads(blocking_threads())
        .thread_name("wasmcell-guest")
        .build()
        .context("failed to start the guests' async runtime")
}

/// Threads of the guests' blocking pool (their file I/O):
/// `WASMCELL_MANAGER_BLOCKING_THREADS`, else tokio's default of 512.
fn blocking_threads() -> usize {
    std::env::var("WASMCELL_MANAGER_BLOCKING_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(512)
}

/// Raise the manager's open-file limit: to the kernel's ceiling for one process
/// (`fs.nr_open`, at most 2^20) when it may raise its hard limit (root, as containerd's own
/// service unit does with `LimitNOFILE=infinity`), else the soft limit to the hard one. The
/// manager holds descriptors for every container of the node (stdio FIFOs, rootfs, containerd's
/// connection), about seven each: a soft default of 1024, or a hard one of 20,000, would stop the
/// node at a few hundred or a few thousand containers. Past whatever limit it gets, a new
/// container is refused with a message naming it (capacity.rs).
fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20)
        .min(1 << 20);
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if hard < ceiling && setrlimit(Resource::RLIMIT_NOFILE, ceiling, ceiling).is_ok() {
                tracing::debug!(limit = ceiling, "open-file limit raised");
                return;
            }
            if soft < hard {
                if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                    tracing::warn!(soft, hard, error = %e, "failed to raise the open-file limit");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "failed to read the open-file limit"),
    }
}
