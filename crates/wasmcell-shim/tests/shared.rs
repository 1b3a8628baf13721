//! Shared mode against a real containerd: every container of the runtime
//! `io.containerd.wasmcell-shared.v1` runs inside one manager process.
mod common;

use std::time::{Duration, Instant};

use common::shared_mode::{
    assert_no_containers, children_of, containerd, kill_and_reap, manager, run, run_detached,
    HELLO, SHARED,
};
use common::{events_during, import_artifact, import_image, run_artifact, task_status, tasks};
use wasmcell_test_guests as guests;
use wasmcell_testing::CtrOutput;

#[test]
fn hello_components_and_exit_codes_in_one_manager() {
    let (c, _bin) = containerd();
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    let out = run(&c, &[], &hello, "hello", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    let first = manager(&c);

    let hello2 = import_image(&c, guests::HELLO_P2, "hello-p2");
    let out = run(&c, &[], &hello2, "hello-p2", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");

    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let out = run(&c, &[], &probe, "exit", &["/app.wasm", "exit", "42"]);
    assert_eq!(out.code, 42, "{out:?}");
    let out = run(
        &c,
        &["--env", "GREETING=hi"],
        &probe,
        "env",
        &["/app.wasm", "env"],
    );
    assert!(out.stdout.lines().any(|l| l == "GREETING=hi"), "{out:?}");
    assert!(
        out.stdout.lines().all(|l| !l.starts_with("HOME=")),
        "{out:?}"
    );
    let out = run(&c, &[], &probe, "trap", &["/app.wasm", "trap"]);
    assert_eq!(out.code, 134, "{out:?}");

    // A Wasm OCI artifact, its module read from containerd's content store.
    let artifact = "docker.io/library/hello-artifact:p2";
    import_artifact(&c, guests::HELLO_P2, "wasip2", artifact);
    let out = run_artifact(&c, SHARED, artifact, "artifact", &["hello", "a"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest! args: a\n"),
        "{out:?}"
    );

    assert_eq!(
        manager(&c),
        first,
        "every container ran in the first manager"
    );
    assert_no_containers(&c);
}

#[test]
fn kill_stops_spinning_and_sleeping_guests_and_stats_come_from_the_manager() {
    let (c, _bin) = containerd();
    // containerd, and so the manager it starts, with a soft open-file limit below the hard one.
    let ctd = c.pid().expect("containerd pid").to_string();
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &ctd, "--nofile=1024:"])
        .status()
        .expect("run prlimit");
    assert!(lowered.success(), "prlimit");
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "spin", &["/app.wasm", "spin"]);
    run_detached(&c, &probe, "sleeper", &["/app.wasm", "sleep", "600000"]);
    run_detached(&c, &probe, "sleeper-2", &["/app.wasm", "sleep", "600000"]);
    assert_eq!(task_status(&c, "spin").as_deref(), Some("RUNNING"));

    // One process for all three, and no process per container under it.
    let pid = manager(&c);
    // Its soft open-file limit raised to the hard one (it holds descriptors for every guest).
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open-file limit");
    let words: Vec<&str> = files.split_whitespace().collect();
    assert_eq!(
        words[3], words[4],
        "soft and hard open-file limits: {files}"
    );
    assert_eq!(
        children_of(pid),
        Vec::<u32>::new(),
        "per-container processes"
    );

    std::thread::sleep(Duration::from_millis(300));
    let metrics = c.run_ctr(&["tasks", "metrics", "spin"]);
    assert!(metrics.success(), "{metrics:?}");
    assert!(
        metrics.stdout.contains("memory.usage_in_bytes"),
        "{metrics:?}"
    );

    let started = Instant::now();
    assert_eq!(kill_and_reap(&c, "spin", "SIGKILL"), 137);
    eprintln!(
        "spinning guest reaped {:?} after SIGKILL",
        started.elapsed()
    );
    assert_eq!(kill_and_reap(&c, "sleeper", "SIGTERM"), 143);
    // The other sleeper is untouched by both kills.
    assert_eq!(task_status(&c, "sleeper-2").as_deref(), Some("RUNNING"));
    assert_eq!(kill_and_reap(&c, "sleeper-2", "SIGKILL"), 137);
    assert_no_containers(&c);
}

#[test]
fn two_hundred_concurrent_containers_report_their_exit_codes() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let results: Vec<(usize, CtrOutput)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..25)
            .map(|w| {
                let (c, probe) = (&c, &probe);
                s.spawn(move || {
                    (0..8)
                        .map(|k| {
                            let i = w * 8 + k;
                            let code = (i % 100).to_string();
                            let out = run(
                                c,
                                &[],
                                probe,
                                &format!("many-{i}"),
                                &["/app.wasm", "exit", &code],
                            );
                            (i, out)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    assert_eq!(results.len(), 200);
    for (i, out) in results {
        assert_eq!(out.code, (i % 100) as i32, "container many-{i}: {out:?}");
    }
    manager(&c);
    assert_no_containers(&c);
}

#[test]
fn a_trap_an_oom_and_a_spin_leave_the_other_guests_alone() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    run_detached(&c, &probe, "spin", &["/app.wasm", "spin"]);
    let limit = (16 * 1024 * 1024).to_string();
    let (trap, oom, others) = std::thread::scope(|s| {
        let trap = s.spawn(|| run(&c, &[], &probe, "trap", &["/app.wasm", "trap"]));
        let oom = s.spawn(|| {
            run(
                &c,
                &["--memory-limit", &limit],
                &probe,
                "oom",
                &["/app.wasm", "alloc", "256"],
            )
        });
        let others: Vec<_> = (0..6)
            .map(|i| {
                let (c, hello, probe) = (&c, &hello, &probe);
                s.spawn(move || {
                    if i % 2 == 0 {
                        (0, run(c, &[], hello, &format!("ok-{i}"), &[]))
                    } else {
                        (
                            i,
                            run(
                                c,
                                &[],
                                probe,
                                &format!("ok-{i}"),
                                &["/app.wasm", "exit", &i.to_string()],
                            ),
                        )
                    }
                })
            })
            .collect();
        (
            trap.join().expect("trap"),
            oom.join().expect("oom"),
            others
                .into_iter()
                .map(|h| h.join().expect("other"))
                .collect::<Vec<_>>(),
        )
    });
    assert_eq!(trap.code, 134, "{trap:?}");
    assert_eq!(oom.code, 137, "{oom:?}");
    for (want, out) in others {
        assert_eq!(out.code, want, "{out:?}");
        if want == 0 {
            assert_eq!(out.stdout, HELLO, "{out:?}");
        }
    }
    // The spinning guest is still running, and still killable.
    assert_eq!(task_status(&c, "spin").as_deref(), Some("RUNNING"));
    assert_eq!(kill_and_reap(&c, "spin", "SIGKILL"), 137);
    assert_no_containers(&c);
}

#[test]
fn a_killed_manager_reports_its_tasks_exited_and_the_next_start_brings_a_fresh_one() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    for i in 0..3 {
        run_detached(
            &c,
            &probe,
            &format!("lost-{i}"),
            &["/app.wasm", "sleep", "600000"],
        );
    }
    let old = manager(&c);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill manager");

    // containerd notices the closed connections and cleans every task up through `delete`.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<_> = (0..3)
            .filter_map(|i| task_status(&c, &format!("lost-{i}")))
            .filter(|s| s != "STOPPED")
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks not reported exited: {:?}",
            tasks(&c)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..3 {
        let id = format!("lost-{i}");
        let _ = c.run_ctr(&["tasks", "delete", &id]);
        let out = c.run_ctr(&["containers", "delete", &id]);
        assert!(out.success(), "{out:?}");
    }
    assert_no_containers(&c);

    let hello = import_image(&c, guests::HELLO_P1, "hello");
    let out = run(&c, &[], &hello, "after", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    let fresh = manager(&c);
    assert_ne!(fresh, old, "a fresh manager serves the next container");
    assert_no_containers(&c);
}

#[test]
fn tasks_and_their_manager_survive_a_containerd_restart() {
    let (mut c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    run_detached(&c, &probe, "survivor", &["/app.wasm", "sleep", "600000"]);
    run_detached(&c, &probe, "survivor-2", &["/app.wasm", "sleep", "600000"]);
    let before = manager(&c);
    c.restart();
    assert_eq!(task_status(&c, "survivor").as_deref(), Some("RUNNING"));
    assert_eq!(task_status(&c, "survivor-2").as_deref(), Some("RUNNING"));
    assert_eq!(manager(&c), before, "the same manager still serves them");
    // The exit reaches the restarted containerd as an event (what CRI waits for).
    let seen = events_during(&c, || {
        assert_eq!(kill_and_reap(&c, "survivor", "SIGKILL"), 137);
    });
    assert!(
        seen.lines()
            .any(|l| l.contains("/tasks/exit") && l.contains("survivor")),
        "no exit event after the restart: {seen}"
    );
    // A container started after the restart joins the same manager.
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    let out = run(&c, &[], &hello, "after-restart", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    assert_eq!(manager(&c), before);
    assert_eq!(kill_and_reap(&c, "survivor-2", "SIGTERM"), 143);
    assert_no_containers(&c);
}

#[test]
fn guests_waiting_on_stdin_do_not_hold_up_the_others() {
    use std::io::Write;
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    // More guests blocked reading stdin than the manager has threads.
    let mut readers: Vec<_> = (0..4)
        .map(|i| {
            c.ctr()
                .args(["run", "--rm", "--runtime", SHARED, &probe])
                .arg(format!("reader-{i}"))
                .args(["/app.wasm", "cat"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("ctr run")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..4).any(|i| task_status(&c, &format!("reader-{i}")).as_deref() != Some("RUNNING")) {
        if Instant::now() >= deadline {
            for r in readers.iter_mut() {
                let _ = r.kill();
            }
            let errs: Vec<_> = readers
                .into_iter()
                .filter_map(|r| r.wait_with_output().ok())
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .collect();
            panic!("readers not running: {:?} {errs:?}", tasks(&c));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The others still run while those wait.
    for i in 0..3 {
        let out = run(&c, &[], &hello, &format!("meanwhile-{i}"), &[]);
        assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    }
    for (i, reader) in readers.iter_mut().enumerate() {
        let mut stdin = reader.stdin.take().expect("stdin");
        writeln!(stdin, "line for reader {i}").expect("write stdin");
    }
    for (i, reader) in readers.into_iter().enumerate() {
        let out = reader.wait_with_output().expect("ctr run output");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("line for reader {i}\n")
        );
    }
    assert_no_containers(&c);
}

#[test]
fn a_guest_without_a_memory_limit_is_capped_by_the_manager() {
    let (c, _bin) = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    // No --memory-limit: the manager's default cap (1 GiB) ends it as out of memory.
    let out = run(&c, &[], &probe, "greedy", &["/app.wasm", "alloc", "1200"]);
    assert_eq!(out.code, 137, "{out:?}");
    let out = run(&c, &[], &probe, "modest", &["/app.wasm", "alloc", "64"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "allocated 64 MiB\n"),
        "{out:?}"
    );
    assert_no_containers(&c);
}
