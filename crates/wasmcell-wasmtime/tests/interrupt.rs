//! Epoch interruption: an `Interrupt` stops a guest spinning without ever calling the host.
use std::path::Path;
use std::time::{Duration, Instant};

use wasmcell_core::{Engine, GuestExit, Interrupt, RunPlan, Stdio, WasmBinary};
use wasmcell_test_guests as guests;
use wasmcell_wasmtime::WasmtimeEngine;

#[test]
fn an_interrupt_stops_a_spinning_guest() {
    let engine = WasmtimeEngine::new().expect("engine");
    let wasm = WasmBinary::read(Path::new(guests::WAT_SPIN)).expect("read");
    let plan = RunPlan::for_module(Path::new(guests::WAT_SPIN), vec![], vec![], &[]).expect("plan");
    let interrupt = Interrupt::new();
    let trigger = interrupt.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let at = Instant::now();
        trigger.trigger(9);
        at
    });
    let exit = engine
        .run(&plan, &wasm, Stdio::default(), &interrupt)
        .expect("run");
    let ended = Instant::now();
    let triggered = stopper.join().expect("stopper");
    assert_eq!(exit, GuestExit::Interrupted(9));
    assert_eq!(exit.code(), 137);
    eprintln!(
        "guest stopped {:?} after the interrupt",
        ended.duration_since(triggered)
    );
}

#[test]
fn prepare_reports_a_missing_entry_before_running() {
    let engine = WasmtimeEngine::new().expect("engine");
    let path = Path::new(guests::WAT_NO_START);
    let wasm = WasmBinary::read(path).expect("read");
    let plan = RunPlan::for_module(path, vec![], vec![], &[]).expect("plan");
    let err = engine.prepare(&plan, &wasm).expect_err("no _start");
    assert!(
        err.to_string().ends_with("module has no export _start"),
        "{err}"
    );
    let component = Path::new(guests::HELLO_P2);
    let wasm = WasmBinary::read(component).expect("read");
    let plan = RunPlan::for_module(component, vec![], vec![], &[]).expect("plan");
    engine
        .prepare(&plan, &wasm)
        .expect("a command component has wasi:cli/run");
}
