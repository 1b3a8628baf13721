//! Shared mode holds many tenants: a guest that asks for too much (memory spread over many
//! memories, tables and instances; descriptors; a huge module) is refused alone, and containerd
//! stopped for a while loses no container and no exit. Each test keeps a sleeping neighbour that
//! must stay RUNNING and answer afterwards, and prints the manager's peak RSS.
mod common;
#[path = "common/process_state.rs"]
mod process_state;

use std::path::Path;
use std::time::Duration;

use common::shared_mode::{assert_no_containers, kill_and_reap, manager, run, run_detached, HELLO};
use common::{import_artifact, import_image, task_status, wait_exit};
use process_state::{
    cgroup_dir, limit_open_files, manager_log, open_descriptors, read_trimmed, status_kib,
    threads_opening_a_fifo,
};
use wasmcell_test_guests as guests;
use wasmcell_testing::Containerd;

/// The manager's memory limit in these tests (`WASMCELL_MANAGER_MEMORY_MAX`): its peak RSS must
/// stay under it, whatever its guests ask for.
const MANAGER_MEMORY_MAX: u64 = 512 << 20;

/// A private containerd for shared mode, its manager limited to [`MANAGER_MEMORY_MAX`], with
/// `extra` in its environment.
fn containerd_with(extra: &[(&str, &str)]) -> (Containerd, tempfile::TempDir) {
    let memory_max = MANAGER_MEMORY_MAX.to_string();
    let mut env = vec![("WASMCELL_MANAGER_MEMORY_MAX", memory_max.as_str())];
    env.extend_from_slice(extra);
    common::shared_containerd_with_env(&env)
}

fn containerd() -> (Containerd, tempfile::TempDir) {
    containerd_with(&[])
}

/// Print the manager's peak RSS and check it against its limit, [`MANAGER_MEMORY_MAX`].
fn check_manager_peak(c: &Containerd, test: &str) {
    let peak = status_kib(manager(c), "VmHWM");
    let limit = MANAGER_MEMORY_MAX / 1024;
    eprintln!("{test}: manager peak RSS {peak} KiB, its limit {limit} KiB");
    assert!(
        peak < limit,
        "manager peak RSS {peak} KiB, its limit {limit} KiB"
    );
}

fn start_neighbour(c: &Containerd, probe: &str) {
    run_detached(c, probe, "neighbour", &["/app.wasm", "sleep", "600000"]);
}

/// The neighbour still runs, answers a signal, and a new container still starts.
fn neighbour_answers(c: &Containerd, hello: &str) {
    assert_eq!(task_status(c, "neighbour").as_deref(), Some("RUNNING"));
    let out = run(c, &[], hello, "next", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    assert_eq!(kill_and_reap(c, "neighbour", "SIGTERM"), 143);
}

fn bind(src: &Path, dst: &str) -> String {
    format!("type=bind,src={},dst={dst},options=rbind:ro", src.display())
}

/// A directory holding the file `f` ("data"), to mount into guests.
fn files_dir(c: &Containerd) -> std::path::PathBuf {
    let files = c.dir().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::write(files.join("f"), "data").expect("write file");
    files
}

/// `ctr run -d` in shared mode with `mount` (a `--mount` value).
fn run_detached_with_mount(
    c: &Containerd,
    mount: &str,
    image: &str,
    id: &str,
    args: &[&str],
) -> wasmcell_testing::CtrOutput {
    let shared = common::shared_mode::SHARED;
    let mut argv = vec![
        "run",
        "-d",
        "--runtime",
        shared,
        "--mount",
        mount,
        image,
        id,
    ];
    argv.extend_from_slice(args);
    c.run_ctr(&argv)
}

#[test]
fn memory_spread_over_memories_tables_and_instances_counts_against_one_budget() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    start_neighbour(&c, &probe);
    let limit = (256u64 << 20).to_string();
    let images = [
        (guests::WAT_MANY_MEMORIES, "many-memories"),
        (
            guests::WAT_MANY_MEMORIES_COMPONENT,
            "many-memories-component",
        ),
    ];
    for (module, name) in images {
        // Eight memories of 48 MiB: each under the limit, together over it.
        let image = import_image(&c, module, name);
        let out = run(&c, &["--memory-limit", &limit], &image, name, &[]);
        assert_eq!(out.code, 137, "{name}: {out:?}");
        assert!(
            out.stderr
                .contains("guest ran out of memory: memory limit of 268435456 bytes"),
            "{name}: {out:?}"
        );
    }
    // 2^31 table elements, with only the manager's default budget: table.grow is refused (the
    // guest exits 3 when it sees the refusal).
    let table = import_image(&c, guests::WAT_TABLE_GROW, "table-grow");
    let out = run(&c, &[], &table, "table-grow", &[]);
    assert_eq!(out.code, 3, "{out:?}");
    neighbour_answers(&c, &hello);
    check_manager_peak(&c, "memory budget");
    assert_no_containers(&c);
}

#[test]
fn a_guest_opening_files_until_refused_harms_no_one_else() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    let mount = bind(&files_dir(&c), "/data");
    start_neighbour(&c, &probe);
    let before = open_descriptors(manager(&c));
    // ctr's spec sets RLIMIT_NOFILE to 1024: the guest's table holds no more.
    let out = run(
        &c,
        &["--mount", &mount],
        &probe,
        "hog",
        &["/app.wasm", "open-many", "/data/f"],
    );
    assert_eq!(out.code, 134, "{out:?}");
    assert!(out.stderr.contains("guest trapped"), "{out:?}");
    // Its descriptors went with it.
    let after = open_descriptors(manager(&c));
    assert!(
        after <= before + 8,
        "the manager holds {after} descriptors, {before} before the hog"
    );
    let out = run(
        &c,
        &["--mount", &mount],
        &probe,
        "reader",
        &["/app.wasm", "open", "/data/f"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "opened /data/f, read 4 bytes\n"),
        "{out:?}"
    );
    neighbour_answers(&c, &hello);
    check_manager_peak(&c, "open files");
    assert_no_containers(&c);
}

#[test]
fn a_four_gib_module_is_refused_unread() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    let big = c.dir().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    // A Wasm header, then 4 GiB of holes.
    let huge = std::fs::File::create(big.join("huge.wasm")).expect("create");
    std::io::Write::write_all(&mut &huge, b"\0asm\x01\0\0\0").expect("header");
    huge.set_len(4 << 30).expect("grow");
    start_neighbour(&c, &probe);
    let pid = manager(&c);
    let rss_before = status_kib(pid, "VmRSS");
    let out = run(
        &c,
        &["--mount", &bind(&big, "/big")],
        &probe,
        "huge",
        &["/big/huge.wasm"],
    );
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("is 4294967296 bytes, more than the 536870912 bytes a module may have"),
        "{out:?}"
    );
    let rss_after = status_kib(pid, "VmRSS");
    eprintln!("manager RSS {rss_before} KiB before the huge module, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "manager RSS grew from {rss_before} to {rss_after} KiB"
    );
    neighbour_answers(&c, &hello);
    check_manager_peak(&c, "module size cap");
    assert_no_containers(&c);
}

#[test]
fn at_the_managers_open_file_limit_only_the_new_container_is_refused() {
    // One manager at most: no other takes the containers it has no room for.
    let (c, _bin) = containerd_with(&[("WASMCELL_MANAGERS", "1")]);
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    start_neighbour(&c, &probe);
    let pid = manager(&c);
    // A manager with few descriptors: it fills up after some tens of containers.
    let limit = open_descriptors(pid) + 160;
    limit_open_files(pid, limit);
    // One container holding many files: the refusal names it.
    let out = run_detached_with_mount(
        &c,
        &bind(&files_dir(&c), "/data"),
        &probe,
        "holder",
        &["/app.wasm", "hold", "/data/f", "40", "600000"],
    );
    assert!(out.success(), "{out:?}");
    let mut sleepers = Vec::new();
    let refused = loop {
        let id = format!("sleeper-{}", sleepers.len());
        let out = c.run_ctr(&[
            "run",
            "-d",
            "--runtime",
            common::shared_mode::SHARED,
            &probe,
            &id,
            "/app.wasm",
            "sleep",
            "600000",
        ]);
        if !out.success() {
            let _ = c.run_ctr(&["containers", "delete", &id]);
            break out;
        }
        sleepers.push(id);
        assert!(sleepers.len() < 200, "never refused at {limit} open files");
    };
    eprintln!(
        "{} containers under a limit of {limit} open files, then: {}",
        sleepers.len(),
        refused.stderr.trim()
    );
    assert!(!sleepers.is_empty());
    assert!(
        refused.stderr.contains("open files of its limit of")
            && refused.stderr.contains("RLIMIT_NOFILE"),
        "{refused:?}"
    );
    assert!(
        refused.stderr.contains("most held by holder ("),
        "the refusal names who holds most: {refused:?}"
    );
    // Every running one still runs and answers; once one leaves, a new one starts.
    for id in &sleepers {
        assert_eq!(task_status(&c, id).as_deref(), Some("RUNNING"), "{id}");
    }
    let first = sleepers.remove(0);
    assert_eq!(kill_and_reap(&c, &first, "SIGKILL"), 137);
    neighbour_answers(&c, &hello);
    for id in sleepers.iter().chain([&"holder".to_string()]) {
        assert_eq!(kill_and_reap(&c, id, "SIGKILL"), 137, "{id}");
    }
    assert_no_containers(&c);
}

#[test]
fn when_a_manager_is_nearly_full_the_next_containers_go_to_another() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    start_neighbour(&c, &probe);
    let first = manager(&c);
    // Room for a few containers before the first manager says it is full (512 free).
    let limit = open_descriptors(first) + 512 + 40;
    limit_open_files(first, limit);
    let sleepers: Vec<String> = (0..20).map(|i| format!("sleeper-{i}")).collect();
    for id in &sleepers {
        run_detached(&c, &probe, id, &["/app.wasm", "sleep", "600000"]);
    }
    let managers = common::shims_of(&c);
    assert_eq!(managers.len(), 2, "managers: {managers:?}");
    assert!(managers.contains(&first));
    for id in &sleepers {
        assert_eq!(task_status(&c, id).as_deref(), Some("RUNNING"), "{id}");
    }
    for id in &sleepers {
        assert_eq!(kill_and_reap(&c, id, "SIGKILL"), 137, "{id}");
    }
    neighbour_answers(&c, &hello);
    assert_no_containers(&c);
}

#[test]
fn guests_killed_while_blocked_on_a_fifo_give_their_threads_back() {
    // A blocking pool of four threads; ten guests in turn block on a FIFO and are killed.
    let (c, _bin) = containerd_with(&[("WASMCELL_MANAGER_BLOCKING_THREADS", "4")]);
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    let dir = c.dir().join("fifos");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let fifo = dir.join("p");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let mount = bind(&dir, "/fifo");
    start_neighbour(&c, &probe);
    let pid = manager(&c);
    let wait_for = |want: usize, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while threads_opening_a_fifo(pid) != want {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    for i in 0..10 {
        let id = format!("fifo-{i}");
        let out =
            run_detached_with_mount(&c, &mount, &probe, &id, &["/app.wasm", "open", "/fifo/p"]);
        assert!(out.success(), "{id}: {out:?}");
        wait_for(1, &format!("{id} never blocked opening the FIFO"));
        assert_eq!(kill_and_reap(&c, &id, "SIGKILL"), 137, "{id}");
        wait_for(0, &format!("the open of killed {id} still holds a thread"));
    }
    neighbour_answers(&c, &hello);
    check_manager_peak(&c, "blocked on a FIFO");
    assert_no_containers(&c);
}

#[test]
fn the_manager_runs_in_its_own_cgroup_with_its_limits_and_oom_score() {
    let memory_max = MANAGER_MEMORY_MAX;
    let (c, _bin) = containerd_with(&[("WASMCELL_MANAGER_CPU_SHARES", "512")]);
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    start_neighbour(&c, &probe);
    let pid = manager(&c);
    let containerd = c.pid().expect("containerd pid");
    assert_ne!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("manager cgroup"),
        std::fs::read_to_string(format!("/proc/{containerd}/cgroup")).expect("containerd cgroup"),
        "the manager left containerd's cgroup"
    );
    let memory = cgroup_dir(pid, "memory");
    assert!(
        memory.to_string_lossy().contains("/wasmcell/manager-"),
        "{}",
        memory.display()
    );
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (limit_file, cpu_file, want_cpu) = if v2 {
        ("memory.max", "cpu.weight", "20")
    } else {
        ("memory.limit_in_bytes", "cpu.shares", "512")
    };
    assert_eq!(
        read_trimmed(&memory.join(limit_file)),
        memory_max.to_string()
    );
    assert_eq!(
        read_trimmed(&cgroup_dir(pid, "cpu").join(cpu_file)),
        want_cpu
    );
    let score = |p: u32| -> i32 {
        read_trimmed(Path::new(&format!("/proc/{p}/oom_score_adj")))
            .parse()
            .expect("score")
    };
    assert_eq!(score(pid), score(containerd) + 1);
    neighbour_answers(&c, &hello);
    check_manager_peak(&c, "own cgroup");
    assert_no_containers(&c);
}

#[test]
fn an_artifact_created_before_66_other_modules_starts_without_compiling_again() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    start_neighbour(&c, &probe);
    let reference = "docker.io/library/late-artifact:1";
    import_artifact(&c, guests::HELLO_P1, "wasip1", reference);
    let modules = c.dir().join("distinct");
    std::fs::create_dir_all(&modules).expect("mkdir");
    // Created, then more distinct modules run than the manager keeps compiled in memory, then
    // started: the start must not compile (nor fetch the layer) on the executor.
    let (status, out) = common::api::run_as_cri_does(
        &c,
        common::shared_mode::SHARED,
        reference,
        "late-artifact",
        &[],
        || {
            for i in 0..66 {
                let wasm = wat::parse_str(format!(
                    r#"(module
                         (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                         (memory (export "memory") 1)
                         (func (export "_start") (call $exit (i32.const {i}))))"#
                ))
                .expect("wat");
                let path = modules.join(format!("m{i}.wasm"));
                std::fs::write(&path, wasm).expect("write module");
                let name = format!("distinct-{i}");
                let image = import_image(&c, &path.display().to_string(), &name);
                let out = run(&c, &[], &image, &name, &[]);
                assert_eq!(out.code, i, "{name}: {out:?}");
            }
        },
    );
    assert_eq!((status, out.as_str()), (0, HELLO));
    // The manager's log has one span per compile (memory, disk cache or Cranelift) of a
    // module: the artifact's is compiled once, at Create; Start takes what Create prepared.
    let log = manager_log(manager(&c));
    let compiles = log
        .lines()
        .filter(|l| l.contains(&format!("compiled_code{{module=image {reference}@")))
        .filter(|l| l.contains(": close "))
        .count();
    assert_eq!(
        compiles, 1,
        "compiles of the artifact in the manager's log:\n{log}"
    );
    neighbour_answers(&c, &hello);
    check_manager_peak(&c, "artifact after 66 modules");
    assert_no_containers(&c);
}

#[test]
fn a_compile_past_its_memory_cap_fails_only_its_own_create() {
    // Compiles capped at 40 MiB of data: the small probe fits, the real-sized one does not.
    let (c, _bin) = containerd_with(&[("WASMCELL_COMPILE_MEMORY_MAX", "41943040")]);
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    start_neighbour(&c, &probe);
    // A module of its own, so that no earlier test left its code in the node's cache.
    let unique = c.dir().join("big-unique.wasm");
    let mut bytes = std::fs::read(guests::PROBE_BIG_P1).expect("read probe-big");
    // A custom section naming this test's containerd: same code, another digest.
    let name = c.dir().display().to_string();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    bytes.push(0);
    bytes.push(section.len() as u8);
    bytes.extend_from_slice(&section);
    std::fs::write(&unique, bytes).expect("write module");
    let big = import_image(&c, &unique.display().to_string(), "probe-big");
    let out = run(&c, &[], &big, "big", &["/app.wasm", "hello"]);
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("the compile ran out of memory (at most 41943040 bytes"),
        "{out:?}"
    );
    neighbour_answers(&c, &hello);
    check_manager_peak(&c, "compile memory cap");
    assert_no_containers(&c);
}

#[test]
fn containerd_stopped_for_ninety_seconds_loses_no_container_and_no_exit() {
    let (mut c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    start_neighbour(&c, &probe);
    let sleepers: Vec<String> = (0..20).map(|i| format!("sleeper-{i}")).collect();
    for id in &sleepers {
        run_detached(&c, &probe, id, &["/app.wasm", "sleep", "600000"]);
    }
    // These end while containerd is away: their exits wait for it.
    for i in 0..2 {
        run_detached(
            &c,
            &probe,
            &format!("short-{i}"),
            &["/app.wasm", "sleep", "15000"],
        );
    }
    let pid = manager(&c);
    c.stop_for(Duration::from_secs(90));
    assert_eq!(
        manager(&c),
        pid,
        "the same manager runs after containerd's absence"
    );
    for id in &sleepers {
        assert_eq!(task_status(&c, id).as_deref(), Some("RUNNING"), "{id}");
    }
    for i in 0..2 {
        assert_eq!(wait_exit(&c, &format!("short-{i}")), 0);
    }
    // Their exit events were kept and reach containerd at the next attempt (at most a few
    // seconds after it is back).
    let delivered = |log: &str| {
        log.lines()
            .filter(|l| l.contains("event delivered late, after waiting for containerd"))
            .filter(|l| l.contains("/tasks/exit"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while delivered(&manager_log(pid)) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the exits were not delivered after the restart; manager log:\n{}",
            manager_log(pid)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for id in &sleepers {
        assert_eq!(kill_and_reap(&c, id, "SIGKILL"), 137, "{id}");
    }
    neighbour_answers(&c, &hello);
    check_manager_peak(&c, "containerd away");
    assert_no_containers(&c);
}
