//! An HTTP guest (`wasi:http/incoming-handler`) through `wasmcell-oci create` and `start`: it
//! listens inside the container (host network here), answers, and drains on SIGTERM (a request
//! in flight completes).
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{oci, status_of, wait_for, wasm_rootfs};
use wasmcell_test_guests as guests;
use wasmcell_testing::{free_port, http_get, require_root, wait_listening};

#[test]
fn an_http_guest_is_served_and_drained_on_sigterm() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let bundle = dir.path().join("bundle");
    wasmcell_testing::hostile::spec(&bundle, Path::new("rootfs"), &["/app.wasm"], |config| {
        // The host's network, so that the test reaches it on 127.0.0.1.
        if let Some(namespaces) = config["linux"]["namespaces"].as_array_mut() {
            namespaces.retain(|ns| ns["type"] != "network");
        }
        if let Some(env) = config["process"]["env"].as_array_mut() {
            env.push(format!("WASMCELL_HTTP_LISTEN_ADDR={addr}").into());
        }
    });
    wasm_rootfs(
        &bundle,
        &std::fs::read(guests::HTTP_HELLO_P2).expect("read guest"),
    );
    let root = dir.path().join("oci-root");
    let id = format!("http-{}", std::process::id());
    let b = bundle.display().to_string();
    let out = oci(&root, &["create", "--bundle", &b, &id]);
    assert!(out.success(), "create: {out:?}");
    let out = oci(&root, &["start", &id]);
    assert!(out.success(), "start: {out:?}");
    assert!(
        wait_listening(addr, Duration::from_secs(60)),
        "nobody listens on {addr}"
    );
    assert_eq!(http_get(addr, "/"), (200, "hello from wasmcell\n".into()));

    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=1500"));
    std::thread::sleep(Duration::from_millis(300));
    let out = oci(&root, &["kill", &id, "TERM"]);
    assert!(out.success(), "kill: {out:?}");
    assert_eq!(
        slow.join().expect("slow request"),
        (200, "slept 1500 ms\n".into())
    );
    assert!(
        wait_for(Duration::from_secs(30), || status_of(oci, &root, &id)
            .as_deref()
            == Some("stopped")),
        "{id} did not stop after draining"
    );
    let out = oci(&root, &["delete", &id]);
    assert!(out.success(), "delete: {out:?}");
}
