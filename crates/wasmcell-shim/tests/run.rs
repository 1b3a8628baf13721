//! `ctr run` through the shim against a real containerd: output, args, env, exit codes, mounts.
mod common;

use common::{assert_clean, containerd, import_image, run, RUNTIME};
use wasmcell_test_guests as guests;

#[test]
fn hello_args_env_and_exit_code() {
    let c = containerd();
    let hello = import_image(&c, guests::HELLO_P1, "hello");
    let out = run(&c, &[], &hello, "hello-1", &[]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n"),
        "{out:?}"
    );
    assert_start_path_is_traced(&c, "hello-1");

    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let out = run(
        &c,
        &[],
        &probe,
        "args-1",
        &["/app.wasm", "args", "two words", "-x"],
    );
    assert_eq!(out.stdout, "/app.wasm\nargs\ntwo words\n-x\n", "{out:?}");

    let out = run(
        &c,
        &["--env", "GREETING=hi"],
        &probe,
        "env-1",
        &["/app.wasm", "env"],
    );
    assert!(out.stdout.lines().any(|l| l == "GREETING=hi"), "{out:?}");
    assert!(
        out.stdout.lines().all(|l| !l.starts_with("HOME=")),
        "host env leaked: {out:?}"
    );

    let out = run(&c, &[], &probe, "exit-1", &["/app.wasm", "exit", "42"]);
    assert_eq!(out.code, 42, "{out:?}");
    assert_clean(&c);
}

/// With `-debug` (containerd at debug level), each step of the start path logs its duration
/// when its span closes, and the guest process's own steps come with `guest prepared`.
fn assert_start_path_is_traced(c: &wasmcell_testing::Containerd, id: &str) {
    let log = c.log();
    let closed = |span: &str| {
        log.lines().any(|l| {
            l.contains(&format!("create{{container={id}}}"))
                && l.contains(span)
                && l.contains("close time.busy=")
        })
    };
    for span in ["rootfs", "spec", "spawn_guest", "cgroup", "prepare{pid="] {
        assert!(closed(span), "no closed span {span} for {id} in:\n{log}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("start{{container={id}}}"))
                && l.contains("close time.busy=")),
        "no closed start span for {id} in:\n{log}"
    );
    let prepared = log
        .lines()
        .find(|l| l.contains("guest prepared") && l.contains(&format!("container={id}")))
        .unwrap_or_else(|| panic!("no guest timings for {id} in:\n{log}"));
    for step in [
        "namespaces=",
        "module=",
        "engine=",
        "compile=",
        "root=",
        "confine=",
    ] {
        assert!(prepared.contains(step), "{step} missing in {prepared}");
    }
}

#[test]
fn component_image_runs() {
    let c = containerd();
    let hello = import_image(&c, guests::HELLO_P2, "hello-p2");
    let out = run(&c, &[], &hello, "hello-p2", &[]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n"),
        "{out:?}"
    );
    assert_clean(&c);
}

#[test]
fn trap_reaches_ctr_as_134_with_the_message_on_stderr() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let out = run(&c, &[], &probe, "trap-1", &["/app.wasm", "trap"]);
    assert_eq!(out.code, 134, "{out:?}");
    assert!(
        out.stderr
            .contains("wasmcell: guest trapped: wasm trap: wasm `unreachable`"),
        "{out:?}"
    );
    assert_clean(&c);
}

#[test]
fn bind_mounts_rw_and_ro() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let data = c.dir().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("in.txt"), "data file\n").expect("write");
    let ro = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        data.display()
    );
    let rw = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        data.display()
    );

    let out = run(
        &c,
        &["--mount", &ro],
        &probe,
        "ro-read",
        &["/app.wasm", "read", "/data/in.txt"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "data file\n"),
        "{out:?}"
    );
    let out = run(
        &c,
        &["--mount", &ro],
        &probe,
        "ro-write",
        &["/app.wasm", "write", "/data/new.txt", "x"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.starts_with("error: PermissionDenied"), "{out:?}");
    assert!(!data.join("new.txt").exists());

    let out = run(
        &c,
        &["--mount", &rw],
        &probe,
        "rw-write",
        &["/app.wasm", "write", "/data/new.txt", "x"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(data.join("new.txt")).expect("landed"),
        "x"
    );
    assert_clean(&c);
}

#[test]
fn rootfs_flag_runs_a_directory() {
    let c = containerd();
    let bytes = std::fs::read(guests::HELLO_P1).expect("read guest");
    let dir = common::rootfs_with(&c, "hello", &bytes);
    let dir = dir.display().to_string();
    let out = c.run_ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--rootfs",
        &dir,
        "rootfs-1",
        "/app.wasm",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n"),
        "{out:?}"
    );
    assert_clean(&c);
}

#[test]
fn twenty_containers_at_once_all_report_their_exit_codes() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let results: Vec<(i32, i32)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let c = &c;
                let probe = &probe;
                s.spawn(move || {
                    let code = (i % 7 + 1).to_string();
                    let out = run(
                        c,
                        &[],
                        probe,
                        &format!("many-{i}"),
                        &["/app.wasm", "exit", &code],
                    );
                    (i % 7 + 1, out.code)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (want, got) in results {
        assert_eq!(want, got);
    }
    assert_clean(&c);
}
