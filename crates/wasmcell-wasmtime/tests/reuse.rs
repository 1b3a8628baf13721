//! One engine runs the same binaries again and again (as the shim's shared-mode manager does):
//! the compiled code and the resolved imports are reused, and each run still gets its own
//! arguments, stdio and exit status.
use std::io::{Read, Seek};
use std::path::Path;

use wasmcell_core::{Engine, GuestExit, Interrupt, RunPlan, Stdio, StdioStream, WasmBinary};
use wasmcell_test_guests as guests;
use wasmcell_wasmtime::WasmtimeEngine;

/// Run `module` with `args` on `engine`; returns the exit and what the guest wrote to stdout.
fn run(engine: &WasmtimeEngine, module: &str, args: &[&str]) -> (GuestExit, String) {
    let wasm = WasmBinary::read(Path::new(module)).expect("read");
    let args = args.iter().map(|a| a.to_string()).collect();
    let plan = RunPlan::for_module(Path::new(module), args, vec![], &[]).expect("plan");
    let mut out = tempfile::tempfile().expect("stdout file");
    let stdio = Stdio {
        stdout: StdioStream::File(out.try_clone().expect("clone")),
        ..Stdio::default()
    };
    let exit = engine
        .run(&plan, &wasm, stdio, &Interrupt::new())
        .expect("run");
    out.rewind().expect("rewind");
    let mut text = String::new();
    out.read_to_string(&mut text).expect("read stdout");
    (exit, text)
}

#[test]
fn repeated_runs_of_a_module_and_a_component_keep_their_own_args_and_exits() {
    let engine = WasmtimeEngine::new().expect("engine");
    for probe in [guests::PROBE_P1, guests::PROBE_P2] {
        for i in 0..3 {
            let word = format!("word-{i}");
            let (exit, out) = run(&engine, probe, &["args", &word]);
            assert_eq!(exit, GuestExit::Exited(0), "{probe}");
            assert!(out.lines().any(|l| l == word), "{probe}: {out:?}");
        }
        let (exit, _) = run(&engine, probe, &["exit", "3"]);
        let want = if probe == guests::PROBE_P1 { 3 } else { 1 };
        assert_eq!(exit, GuestExit::Exited(want), "{probe}");
        let (exit, _) = run(&engine, probe, &["trap"]);
        assert!(matches!(exit, GuestExit::Trapped(_)), "{probe}: {exit:?}");
    }
}
