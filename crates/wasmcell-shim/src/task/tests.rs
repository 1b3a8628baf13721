//! Unit tests of the Task service, with a fake event sink (a queue the test reads) and real
//! Wasm guests: a shared-mode service runs them in this process, so every RPC's state check,
//! wire shape and event is exercised without containerd. (The guest-process and runc backends
//! need a shim binary and root: the integration tests under tests/ run them.)

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim::api::{CreateTaskRequest, Status};
use containerd_shim::protos::events::task::TaskExit;
use tokio::sync::Notify;
use wasmcell_core::WasmBinary;
use wasmcell_wasmtime::{CompileCache, WasmtimeEngine};

use crate::events::{Events, Queued};
use crate::reaper::Reaper;
use crate::shared::capacity::Capacity;
use crate::shared::{Activity, SharedMode};
use crate::task::mode::{Mode, NormalMode};
use crate::task::service::TaskService;
use crate::ShimError;

const NS: &str = "k8s.io";

/// Exits with status 3.
const EXIT_3: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))"#;

/// Spins until it is killed.
const SPIN: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

/// Asks for 4 GiB more memory than it has and traps when refused.
const GREEDY: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 65535)) (i32.const -1)) (then unreachable))))"#;

struct Harness {
    service: TaskService,
    events: Receiver<Queued>,
    engine: Arc<WasmtimeEngine>,
    dir: tempfile::TempDir,
}

impl Harness {
    /// A shared-mode service whose guests run on the test's executor.
    fn shared() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = CompileCache::new(dir.path().join("cache"), 1 << 30);
        let engine = Arc::new(WasmtimeEngine::with_cache(cache).expect("engine"));
        let capacity = Arc::new(Capacity::new(&dir.path().join("manager.sock")));
        let mode = SharedMode::new(
            engine.clone(),
            tokio::runtime::Handle::current(),
            capacity,
            Arc::new(Activity::new()),
            format!("unix://{}", dir.path().join("no-containerd.sock").display()),
        );
        let (events, rx) = Events::recording(NS);
        let service = TaskService::new(Mode::Shared(mode), events, Reaper::default());
        Harness {
            service,
            events: rx,
            engine,
            dir,
        }
    }

    /// A bundle for container `id` running `wat` (its compiled code put in the cache, so that
    /// no compile helper is needed), with a memory limit when given.
    fn bundle(&self, id: &str, wat: &str, memory_limit: Option<u64>) -> CreateTaskRequest {
        let bundle = self.dir.path().join(NS).join(id);
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("rootfs");
        let module = wat::parse_str(wat).expect("wat");
        std::fs::write(rootfs.join("app.wasm"), module).expect("module");
        let mut spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "args": ["/app.wasm"], "cwd": "/", "env": ["PATH=/"],
                "user": {"uid": 0, "gid": 0}
            },
            "root": {"path": "rootfs"},
        });
        if let Some(limit) = memory_limit {
            spec["linux"] = serde_json::json!({"resources": {"memory": {"limit": limit}}});
        }
        std::fs::write(bundle.join("config.json"), spec.to_string()).expect("config");
        let wasm = WasmBinary::read_in_root(&rootfs, Path::new("/app.wasm")).expect("read");
        self.engine.precompile(&wasm).expect("precompile");
        CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            ..Default::default()
        }
    }

    async fn create(&self, id: &str, wat: &str) -> u32 {
        let req = self.bundle(id, wat, None);
        let created = self.service.create(Some(NS), req).await.expect("create");
        created.pid
    }

    /// The topics of the next `n` events, each of container `id`.
    fn next_events(&self, n: usize) -> Vec<&'static str> {
        (0..n)
            .map(|_| {
                let (namespace, topic, _, _) = self
                    .events
                    .recv_timeout(Duration::from_secs(10))
                    .expect("an event");
                assert_eq!(namespace, NS);
                topic
            })
            .collect()
    }

    fn no_more_events(&self) {
        let extra: Vec<&str> = self
            .events
            .try_iter()
            .map(|(_, topic, _, _)| topic)
            .collect();
        assert!(extra.is_empty(), "unexpected events: {extra:?}");
    }
}

fn status_of(h: &Harness, id: &str) -> Status {
    let state = h.service.state(Some(NS), id).expect("state");
    state.status.enum_value_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_lives_created_running_stopped_and_each_step_is_reported_once() {
    let h = Harness::shared();
    let pid = h.create("c1", EXIT_3).await;
    assert_eq!(
        pid,
        std::process::id(),
        "an instance's task pid is the manager's"
    );
    assert_eq!(status_of(&h, "c1"), Status::CREATED);
    assert_eq!(h.next_events(1), ["/tasks/create"]);

    assert_eq!(
        h.service.start(Some(NS), "c1", "").await.expect("start"),
        pid
    );
    let waited = h.service.wait(Some(NS), "c1", "").await.expect("wait");
    assert_eq!(waited.exit_status, 3);
    let state = h.service.state(Some(NS), "c1").expect("state");
    assert_eq!(state.status.enum_value_or_default(), Status::STOPPED);
    assert_eq!((state.exit_status, state.exited_at.is_some()), (3, true));
    let pids = h.service.pids(Some(NS), "c1").expect("pids");
    assert!(
        pids.processes.is_empty(),
        "a stopped container has no process"
    );
    let err = h
        .service
        .start(Some(NS), "c1", "")
        .await
        .expect_err("again");
    assert_eq!(err.to_string(), "container c1 has already exited");

    let deleted = h.service.delete(Some(NS), "c1", "").await.expect("delete");
    assert_eq!((deleted.exit_status, deleted.pid), (3, pid));
    assert_eq!(
        h.next_events(3),
        ["/tasks/start", "/tasks/exit", "/tasks/delete"]
    );
    h.no_more_events();
    let gone = h.service.state(Some(NS), "c1").expect_err("deleted");
    assert!(matches!(gone, ShimError::NotFound(_)), "{gone}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_killed_or_deleted_before_it_starts_exits_137_without_a_start() {
    let h = Harness::shared();
    h.create("c2", EXIT_3).await;
    h.service.kill(Some(NS), "c2", "", 9).expect("kill");
    assert_eq!(
        h.service
            .wait(Some(NS), "c2", "")
            .await
            .expect("wait")
            .exit_status,
        137
    );
    let again = h.service.kill(Some(NS), "c2", "", 9).expect_err("stopped");
    assert_eq!(
        again.to_string(),
        "container process of container c2 already finished not found"
    );
    h.service.delete(Some(NS), "c2", "").await.expect("delete");

    h.create("c3", EXIT_3).await;
    let deleted = h
        .service
        .delete(Some(NS), "c3", "")
        .await
        .expect("delete created");
    assert_eq!(deleted.exit_status, 137);
    assert_eq!(
        h.next_events(6),
        [
            "/tasks/create",
            "/tasks/exit",
            "/tasks/delete",
            "/tasks/create",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    h.no_more_events();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_container_is_deleted_only_once_a_signal_has_ended_it() {
    let h = Harness::shared();
    h.create("spin", SPIN).await;
    h.service.start(Some(NS), "spin", "").await.expect("start");
    let err = h
        .service
        .delete(Some(NS), "spin", "")
        .await
        .expect_err("running");
    assert_eq!(
        err.to_string(),
        "cannot delete running container spin: kill it first"
    );
    let bad = h
        .service
        .kill(Some(NS), "spin", "", 65)
        .expect_err("no signal 65");
    assert!(matches!(bad, ShimError::InvalidArgument(_)), "{bad}");
    // Signal 0 and signals ignored by default leave it running.
    for signal in [0, 17, 28] {
        h.service
            .kill(Some(NS), "spin", "", signal)
            .expect("harmless");
    }
    assert_eq!(status_of(&h, "spin"), Status::RUNNING);
    let pids = h.service.pids(Some(NS), "spin").expect("pids");
    assert_eq!(pids.processes.len(), 1);

    h.service.kill(Some(NS), "spin", "", 15).expect("SIGTERM");
    let waited = h.service.wait(Some(NS), "spin", "").await.expect("wait");
    assert_eq!(waited.exit_status, 143);
    h.service
        .delete(Some(NS), "spin", "")
        .await
        .expect("delete");
    let topics = h.next_events(4);
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_memory_is_reported_before_the_exit() {
    let h = Harness::shared();
    let req = h.bundle("greedy", GREEDY, Some(16 << 20));
    h.service.create(Some(NS), req).await.expect("create");
    h.service
        .start(Some(NS), "greedy", "")
        .await
        .expect("start");
    let waited = h.service.wait(Some(NS), "greedy", "").await.expect("wait");
    assert_eq!(waited.exit_status, 137);
    let mut exit = None;
    let mut topics = Vec::new();
    for _ in 0..4 {
        let (_, topic, event, _) = h
            .events
            .recv_timeout(Duration::from_secs(10))
            .expect("event");
        if let Some(e) = event.downcast_ref::<TaskExit>() {
            exit = Some(e.exit_status);
        }
        topics.push(topic);
    }
    assert_eq!(
        topics,
        ["/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit"]
    );
    assert_eq!(exit, Some(137));
    let stats = h.service.stats(Some(NS), "greedy").expect("stats");
    assert_eq!(
        stats.stats.type_url, "io.containerd.cgroups.v1.Metrics",
        "stats are the same message in every mode"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_checked_before_anything_is_built() {
    let h = Harness::shared();
    let mut tty = h.bundle("tty", EXIT_3, None);
    tty.terminal = true;
    let err = h.service.create(Some(NS), tty).await.expect_err("tty");
    assert!(matches!(err, ShimError::InvalidArgument(_)), "{err}");

    h.create("same", EXIT_3).await;
    let twice = h.bundle("same", EXIT_3, None);
    let err = h
        .service
        .create(Some(NS), twice.clone())
        .await
        .expect_err("twice");
    assert_eq!(err.to_string(), "container same already exists");
    // The same id in another namespace is another container ...
    h.service
        .create(Some("other"), twice)
        .await
        .expect("other namespace");
    // ... so a request naming no namespace cannot tell which it means.
    let err = h.service.state(None, "same").expect_err("ambiguous");
    assert!(matches!(err, ShimError::FailedPrecondition(_)), "{err}");
    assert!(h.service.state(Some("other"), "same").is_ok());

    let err = h
        .service
        .start(Some(NS), "same", "exec-1")
        .await
        .expect_err("exec");
    assert_eq!(
        err.to_string(),
        "container exec exec-1 in container same not found"
    );
    let err = h.service.state(Some(NS), "nobody").expect_err("unknown");
    assert!(matches!(err, ShimError::NotFound(_)), "{err}");
    assert_eq!(h.service.connect(Some(NS), "nobody").task_pid, 0);
    assert_eq!(
        h.service.connect(Some(NS), "same").task_pid,
        std::process::id()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_module_fails_create_naming_the_container_once() {
    let h = Harness::shared();
    let req = h.bundle("broken", EXIT_3, None);
    // Named as Wasm, but not Wasm: refused as the module is read, before any compile.
    std::fs::write(
        Path::new(&req.bundle).join("rootfs/app.wasm"),
        b"not a module",
    )
    .expect("corrupt");
    let err = h
        .service
        .create(Some(NS), req)
        .await
        .expect_err("bad module");
    let msg = err.to_string();
    assert!(msg.starts_with("container broken: "), "{msg}");
    assert_eq!(msg.matches("container broken").count(), 1, "{msg}");
    assert!(
        h.service.state(Some(NS), "broken").is_err(),
        "nothing is left of it"
    );
    // The id is free again.
    h.create("broken", EXIT_3).await;
}

#[tokio::test]
async fn a_normal_mode_shim_leaves_on_shutdown_only_once_it_has_no_container() {
    let exit = Arc::new(Notify::new());
    let mode = Mode::Normal(NormalMode {
        containerd_address: String::new(),
        exit: exit.clone(),
    });
    mode.shutdown(1);
    let early = tokio::time::timeout(Duration::from_millis(50), exit.notified()).await;
    assert!(early.is_err(), "a shim with a container stays");
    mode.shutdown(0);
    let left = tokio::time::timeout(Duration::from_secs(5), exit.notified()).await;
    assert!(left.is_ok(), "a shim with no container leaves");
}
