//! HTTP guests (`wasi:http/incoming-handler@0.2` and `wasi:http/handler@0.3` components)
//! through containerd, in normal and shared mode: served on the address their env names,
//! drained on SIGTERM (a request in flight completes, the task exits 0), and a port in use
//! failing the Create, naming it.
mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::shared_mode::SHARED;
use common::{import_image, wait_exit, RUNTIME};
use wasmcell_test_guests as guests;
use wasmcell_testing::{free_port, http_get, wait_listening, Containerd, CtrOutput};

/// `ctr run -d --net-host` of the HTTP guest as `id`, listening on `addr`.
fn run_http(
    c: &Containerd,
    runtime: &str,
    image: &str,
    id: &str,
    addr: SocketAddr,
    rm: bool,
) -> CtrOutput {
    let env = format!("WASMCELL_HTTP_LISTEN_ADDR={addr}");
    let mode = if rm { "--rm" } else { "-d" };
    c.run_ctr(&[
        "run",
        mode,
        "--net-host",
        "--runtime",
        runtime,
        "--env",
        &env,
        image,
        id,
    ])
}

/// Serve, answer, then drain on SIGTERM with a request in flight: it completes and the task
/// exits 0.
fn serves_and_drains(c: &Containerd, runtime: &str) {
    let image = import_image(c, guests::HTTP_HELLO_P2, "http-hello");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let out = run_http(c, runtime, &image, "http-1", addr, false);
    assert!(out.success(), "{out:?}");
    assert!(
        wait_listening(addr, Duration::from_secs(60)),
        "nobody listens on {addr}"
    );
    assert_eq!(http_get(addr, "/"), (200, "hello from wasmcell\n".into()));
    if runtime == RUNTIME {
        // The guest process serves with the pooling allocator: its pool of linear memories
        // is reserved address space (terabytes, nothing resident).
        let pid = wasmcell_testing::hostile::task_pid(c, "http-1");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let vm_size_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmSize");
        assert!(
            vm_size_kib > 1 << 30,
            "no memory pool reserved: VmSize {vm_size_kib} KiB"
        );
    }
    assert_eq!(
        http_get(addr, "/env?WASMCELL_HTTP_LISTEN_ADDR"),
        (200, format!("{addr}\n"))
    );

    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=1500"));
    // Let the slow request arrive; one that came after the stop would be refused instead.
    std::thread::sleep(Duration::from_millis(300));
    let out = c.run_ctr(&["tasks", "kill", "-s", "SIGTERM", "http-1"]);
    assert!(out.success(), "{out:?}");
    assert_eq!(
        slow.join().expect("slow request"),
        (200, "slept 1500 ms\n".into())
    );
    assert_eq!(wait_exit(c, "http-1"), 0, "drained in time: exit 0");
}

/// The WASI 0.3 handler: served (requests at once share an instance), drained on SIGTERM.
fn serves_wasi_03(c: &Containerd, runtime: &str) {
    let image = import_image(c, guests::HTTP_HELLO_P3, "http-hello-p3");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let out = run_http(c, runtime, &image, "http-p3", addr, false);
    assert!(out.success(), "{out:?}");
    assert!(
        wait_listening(addr, Duration::from_secs(60)),
        "nobody listens on {addr}"
    );
    assert_eq!(
        http_get(addr, "/"),
        (200, "hello from wasmcell (wasi 0.3)\n".into())
    );
    let slow: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || http_get(addr, "/slow?ms=1500")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let out = c.run_ctr(&["tasks", "kill", "-s", "SIGTERM", "http-p3"]);
    assert!(out.success(), "{out:?}");
    for request in slow {
        let answer = request.join().expect("slow request");
        assert_eq!(answer, (200, "slept 1500 ms\n".into()));
    }
    assert_eq!(wait_exit(c, "http-p3"), 0, "drained in time: exit 0");
}

#[test]
fn a_wasi_03_handler_is_served_and_drained_in_both_modes() {
    let c = common::containerd();
    serves_wasi_03(&c, RUNTIME);
    common::assert_clean(&c);
    drop(c);
    let (c, _links) = common::shared_containerd();
    serves_wasi_03(&c, SHARED);
    common::shared_mode::assert_no_containers(&c);
}

#[test]
fn normal_mode_serves_http_and_drains_on_sigterm() {
    let c = common::containerd();
    serves_and_drains(&c, RUNTIME);
    common::assert_clean(&c);
}

#[test]
fn shared_mode_serves_http_and_drains_on_sigterm() {
    let (c, _links) = common::shared_containerd();
    serves_and_drains(&c, SHARED);
    common::shared_mode::assert_no_containers(&c);
}

#[test]
fn a_port_in_use_fails_the_create_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let refused = |c: &Containerd, runtime: &str| {
        let image = import_image(c, guests::HTTP_HELLO_P2, "http-hello");
        let out = run_http(c, runtime, &image, "busy-1", addr, true);
        assert!(!out.success(), "{runtime}: {out:?}");
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(
            said.contains(&addr.to_string()) && said.contains("in use"),
            "{runtime}: {out:?}"
        );
    };
    refused(&common::containerd(), RUNTIME);
    let (shared, _links) = common::shared_containerd();
    refused(&shared, SHARED);
}
