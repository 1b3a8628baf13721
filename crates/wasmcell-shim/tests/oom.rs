//! A guest past its memory limit ends with 137 and containerd receives TaskOOM.
mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{assert_clean, containerd, import_image, run};
use wasmcell_test_guests as guests;

#[test]
fn memory_limit_ends_the_guest_with_137_and_a_task_oom_event() {
    let c = containerd();
    let probe = import_image(&c, guests::PROBE_P1, "probe");
    let mut events = c.ctr();
    events
        .arg("events")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut events = events.spawn().expect("ctr events");
    std::thread::sleep(Duration::from_millis(300));

    let limit = (48u64 << 20).to_string();
    let out = run(
        &c,
        &["--memory-limit", &limit],
        &probe,
        "hog",
        &["/app.wasm", "alloc", "256"],
    );
    assert_eq!(out.code, 137, "{out:?}");

    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = events.kill();
    let mut stdout = events.stdout.take().expect("events stdout");
    let _ = stdout.read_to_string(&mut log);
    let _ = events.wait();
    assert!(log.contains("/tasks/oom"), "no TaskOOM event in:\n{log}");
    assert!(log.contains("/tasks/exit"), "no TaskExit event in:\n{log}");
    assert_clean(&c);

    // Within the limit the same guest is fine.
    let out = run(
        &c,
        &["--memory-limit", &limit],
        &probe,
        "fits",
        &["/app.wasm", "alloc", "8"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "allocated 8 MiB\n"),
        "{out:?}"
    );
    assert_clean(&c);
}
