//! Sockets: none unless granted (`--net`); granted, a WASI 0.2 component reaches the network.
mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use common::run_module;
use wasmcell_test_guests as guests;

#[test]
fn a_component_connects_only_when_granted() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("addr").to_string();

    let out = run_module(&[], guests::PROBE_P2, &["connect", &addr, "denied"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.starts_with("error: PermissionDenied"), "{out:?}");

    let out = run_module(&["--net"], guests::PROBE_P2, &["connect", &addr, "granted"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "sent\n"), "{out:?}");
    listener.set_nonblocking(false).expect("blocking");
    let (mut conn, _) = listener.accept().expect("the guest connected");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = String::new();
    conn.read_to_string(&mut got).expect("read");
    assert_eq!(got, "granted");
}

#[test]
fn wasi_0_1_modules_have_no_sockets_even_when_granted() {
    let out = run_module(
        &["--net"],
        guests::PROBE_P1,
        &["connect", "127.0.0.1:9", "x"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.starts_with("error: Unsupported"), "{out:?}");
}
