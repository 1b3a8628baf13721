//! Serving a `wasi:http/incoming-handler@0.2` component (guests/http-hello) in process on
//! 127.0.0.1: answers, limits (413, 503, 504), a trap as a 500, the drain on a stop request,
//! and the errors of an unusable listen address; the same for a `wasi:http/handler@0.3` one
//! (guests/http-hello-p3), whose instances are reused; a WASI 0.3 command run.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmcell_core::{Engine, EngineError, GuestExit, Interrupt, RunPlan, Stdio, WasmBinary};
use wasmcell_test_guests as guests;
use wasmcell_testing::{free_port, http_get, http_request, wait_listening};
use wasmcell_wasmtime::http::options::LISTEN_ADDR_ENV;
use wasmcell_wasmtime::WasmtimeEngine;

/// A guest being served, on `addr`.
struct Served {
    addr: SocketAddr,
    interrupt: Interrupt,
    run: JoinHandle<Result<GuestExit, EngineError>>,
}

fn run_with_env(env: Vec<(String, String)>) -> JoinHandle<Result<GuestExit, EngineError>> {
    let plan =
        RunPlan::for_module(Path::new(guests::HTTP_HELLO_P2), vec![], env, &[]).expect("plan");
    let wasm = WasmBinary::read(Path::new(guests::HTTP_HELLO_P2)).expect("read");
    let interrupt = Interrupt::new();
    let engine = Arc::new(WasmtimeEngine::new().expect("engine"));
    std::thread::spawn(move || engine.run(&plan, &wasm, Stdio::inherit(), &interrupt))
}

/// Serve the WASI 0.2 guest with `env` (its listen address added) and wait until it answers.
fn serve(env: &[(&str, &str)]) -> Served {
    serve_guest(guests::HTTP_HELLO_P2, env)
}

/// Serve `guest` with `env` (its listen address added) and wait until it answers.
fn serve_guest(guest: &str, env: &[(&str, &str)]) -> Served {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.push((LISTEN_ADDR_ENV.into(), addr.to_string()));
    let plan = RunPlan::for_module(Path::new(guest), vec![], vars, &[]).expect("plan");
    let wasm = WasmBinary::read(Path::new(guest)).expect("read");
    let interrupt = Interrupt::new();
    let stop = interrupt.clone();
    let engine = WasmtimeEngine::new().expect("engine");
    let run = std::thread::spawn(move || engine.run(&plan, &wasm, Stdio::inherit(), &stop));
    assert!(
        wait_listening(addr, Duration::from_secs(60)),
        "nobody listens on {addr} (the server ended: {})",
        run.is_finished()
    );
    Served {
        addr,
        interrupt,
        run,
    }
}

impl Served {
    fn stop(self) -> GuestExit {
        self.interrupt.trigger(15);
        self.run
            .join()
            .expect("the server thread")
            .expect("served without error")
    }
}

#[test]
fn a_handler_answers_each_request_with_its_own_instance() {
    let served = serve(&[("GREETING", "hi there")]);
    assert_eq!(
        http_get(served.addr, "/"),
        (200, "hello from wasmcell\n".into())
    );
    let body = vec![b'x'; 100_000];
    let echoed = http_request(served.addr, "POST", "/echo", &body);
    assert_eq!(echoed, (200, "100000 bytes\n".into()));
    assert_eq!(
        http_get(served.addr, "/env?GREETING"),
        (200, "hi there\n".into())
    );
    assert_eq!(http_get(served.addr, "/nowhere").0, 404);
    assert_eq!(served.stop(), GuestExit::Exited(0));
}

#[test]
fn a_body_over_the_limit_is_refused_before_the_guest_runs() {
    let served = serve(&[("WASMCELL_HTTP_MAX_BODY_BYTES", "1000")]);
    let (status, body) = http_request(served.addr, "POST", "/echo", &[b'x'; 5000]);
    assert_eq!((status, body.as_str()), (413, "request body too large\n"));
    assert_eq!(
        http_request(served.addr, "POST", "/echo", &[b'x'; 500]).0,
        200
    );
    served.stop();
}

#[test]
fn a_request_past_its_timeout_is_answered_504_and_the_server_goes_on() {
    let served = serve(&[("WASMCELL_HTTP_REQUEST_TIMEOUT_MS", "300")]);
    assert_eq!(http_get(served.addr, "/slow?ms=20000").0, 504);
    assert_eq!(http_get(served.addr, "/").0, 200);
    served.stop();
}

#[test]
fn past_the_concurrency_and_its_queue_a_request_is_answered_503() {
    let served = serve(&[
        ("WASMCELL_HTTP_MAX_CONCURRENT", "1"),
        ("WASMCELL_HTTP_QUEUE", "0"),
    ]);
    let addr = served.addr;
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=3000").0);
    // Whichever of the two takes the one slot, the other is refused at once.
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !slow.is_finished() && Instant::now() < deadline {
        let (status, _) = http_get(addr, "/slow?ms=10");
        statuses.push(status);
        if status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = slow.join().expect("slow request");
    assert!(
        statuses.contains(&503) || first == 503,
        "no 503 with one slot busy: {statuses:?}, the slow one got {first}"
    );
    served.stop();
}

#[test]
fn a_trap_before_the_response_is_a_500_with_a_short_body() {
    let served = serve(&[]);
    assert_eq!(
        http_get(served.addr, "/trap"),
        (500, "internal server error\n".into())
    );
    assert_eq!(
        http_get(served.addr, "/").0,
        200,
        "the next request is served"
    );
    served.stop();
}

#[test]
fn a_stop_lets_a_slow_request_finish_and_refuses_new_connections() {
    let served = serve(&[]);
    let addr = served.addr;
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=1500"));
    // Give the slow request time to arrive (it is answered either way; a late one is refused).
    std::thread::sleep(Duration::from_millis(300));
    served.interrupt.trigger(15);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after the stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        slow.join().expect("slow request"),
        (200, "slept 1500 ms\n".into())
    );
    let exit = served.run.join().expect("server thread").expect("served");
    assert_eq!(exit, GuestExit::Exited(0), "drained in time: status 0");
}

#[test]
fn an_unusable_listen_address_fails_naming_it() {
    let bad = vec![(LISTEN_ADDR_ENV.to_string(), "not-an-address".to_string())];
    let err = run_with_env(bad)
        .join()
        .expect("thread")
        .expect_err("bad address");
    assert!(matches!(err, EngineError::Serve { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("WASMCELL_HTTP_LISTEN_ADDR=\"not-an-address\""),
        "{err}"
    );

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let in_use = vec![(LISTEN_ADDR_ENV.to_string(), addr.clone())];
    let err = run_with_env(in_use)
        .join()
        .expect("thread")
        .expect_err("in use");
    let msg = err.to_string();
    assert!(msg.contains(&addr) && msg.contains("in use"), "{msg}");
}

#[test]
fn a_component_neither_command_nor_handler_is_refused_naming_its_exports() {
    let path = Path::new(guests::WAT_EXPORTS_NOTHING_RUNNABLE);
    let plan = RunPlan::for_module(path, vec![], vec![], &[]).expect("plan");
    let wasm = WasmBinary::read(path).expect("read");
    let engine = WasmtimeEngine::new().expect("engine");
    let err = engine.prepare(&plan, &wasm).expect_err("nothing to run");
    assert!(err.to_string().contains("it exports greet"), "{err}");
    let http = WasmBinary::read(Path::new(guests::HTTP_HELLO_P2)).expect("read");
    let plan =
        RunPlan::for_module(Path::new(guests::HTTP_HELLO_P2), vec![], vec![], &[]).expect("plan");
    let prepared = engine.prepare_guest(&plan, &http).expect("prepare");
    assert!(prepared.serves_http());
    let probe = WasmBinary::read(Path::new(guests::PROBE_P2)).expect("read");
    let plan = RunPlan::for_module(Path::new(guests::PROBE_P2), vec![], vec![], &[]).expect("plan");
    assert!(!engine
        .prepare_guest(&plan, &probe)
        .expect("prepare")
        .serves_http());
}

#[test]
fn a_drain_that_runs_out_of_time_ends_as_killed_by_the_signal() {
    let served = serve(&[("WASMCELL_HTTP_DRAIN_TIMEOUT_MS", "200")]);
    let addr = served.addr;
    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=30000"));
    std::thread::sleep(Duration::from_millis(300));
    let exit = served.stop();
    assert_eq!(exit, GuestExit::Interrupted(15));
    assert_eq!(exit.code(), 143);
    // Its connection was closed without an answer.
    assert_eq!(slow.join().expect("slow request").0, 0);
}

#[test]
fn a_wasi_03_handler_is_served_with_its_instances_reused() {
    let served = serve_guest(guests::HTTP_HELLO_P3, &[]);
    let addr = served.addr;
    assert_eq!(
        http_get(addr, "/"),
        (200, "hello from wasmcell (wasi 0.3)\n".into())
    );
    let echoed = http_request(addr, "POST", "/echo", &vec![b'x'; 300_000]);
    assert_eq!(echoed, (200, "300000 bytes\n".into()));
    // Several slow requests at once: one instance takes them together (async waits), and
    // all are answered.
    let slow: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || http_get(addr, "/slow?ms=500")))
        .collect();
    for request in slow {
        let answer = request.join().expect("slow request");
        assert_eq!(answer, (200, "slept 500 ms\n".into()));
    }
    for _ in 0..200 {
        assert_eq!(
            http_get(addr, "/").0,
            200,
            "more requests than one instance takes"
        );
    }
    assert_eq!(served.stop(), GuestExit::Exited(0));
}

#[test]
fn a_wasi_03_handler_keeps_the_limits_a_trap_is_a_500_and_a_stop_drains() {
    let served = serve_guest(
        guests::HTTP_HELLO_P3,
        &[
            ("WASMCELL_HTTP_REQUEST_TIMEOUT_MS", "2000"),
            ("WASMCELL_HTTP_MAX_BODY_BYTES", "1000"),
        ],
    );
    let addr = served.addr;
    assert_eq!(
        http_request(addr, "POST", "/echo", &[b'x'; 5000]),
        (413, "request body too large\n".into())
    );
    assert_eq!(
        http_get(addr, "/trap"),
        (500, "internal server error\n".into())
    );
    assert_eq!(http_get(addr, "/").0, 200, "served after a trap");
    assert_eq!(http_get(addr, "/slow?ms=20000").0, 504);
    assert_eq!(http_get(addr, "/").0, 200, "served after a timeout");
    // The timed-out request's instance is dropped at once, not after the rest of its timeout:
    // while it lives, the request queue may wake it rather than a working instance.
    assert_eq!(
        http_get(addr, "/slow?ms=1000").0,
        200,
        "a slow one after a timeout"
    );

    let slow = std::thread::spawn(move || http_get(addr, "/slow?ms=1000"));
    std::thread::sleep(Duration::from_millis(300));
    served.interrupt.trigger(15);
    assert_eq!(
        slow.join().expect("slow request"),
        (200, "slept 1000 ms\n".into())
    );
    let exit = served.run.join().expect("server thread").expect("served");
    assert_eq!(exit, GuestExit::Exited(0));
}

#[test]
fn a_wasi_03_command_runs_with_its_arguments_and_status() {
    let path = Path::new(guests::HELLO_P3);
    let wasm = WasmBinary::read(path).expect("read");
    let engine = WasmtimeEngine::new().expect("engine");
    let dir = tempfile::tempdir().expect("tempdir");
    for (arg, status) in [("world", 0), ("fail", 1)] {
        let plan = RunPlan::for_module(path, vec![arg.into()], vec![], &[]).expect("plan");
        let out = dir.path().join(format!("out-{status}"));
        let stdio = Stdio {
            stdin: wasmcell_core::StdioStream::Null,
            stdout: wasmcell_core::StdioStream::File(std::fs::File::create(&out).expect("out")),
            stderr: wasmcell_core::StdioStream::Inherit,
        };
        let exit = engine
            .run(&plan, &wasm, stdio, &Interrupt::new())
            .expect("run");
        assert_eq!(exit, GuestExit::Exited(status), "{arg}");
        let printed = std::fs::read_to_string(&out).expect("read out");
        let argv0 = guests::HELLO_P3;
        assert_eq!(
            printed,
            format!("hello from wasmcell (wasi 0.3) {argv0} {arg}\n")
        );
    }
}
