//! A prepared guest runs without compiling, reading or linking again, however many other
//! modules were prepared since: a host may keep it from a container's Create to its Start.
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use wasmcell_core::{GuestExit, Interrupt, ModuleKind, RunPlan, Stdio, WasmBinary};
use wasmcell_wasmtime::{GuestMeter, RunWith, WasmtimeEngine};

fn exit_module(code: i32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const {code}))))"#
    ))
    .expect("wat")
}

#[test]
fn a_prepared_guest_starts_after_seventy_other_modules_without_fetching_its_bytes() {
    let engine = WasmtimeEngine::new().expect("engine");
    // A binary whose bytes come from elsewhere (an artifact's layer in containerd): count the
    // fetches, and fail every fetch after the first.
    let bytes = exit_module(7);
    let digest = *blake3::hash(&bytes).as_bytes();
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let fetch = Box::new(move || match counted.fetch_add(1, Ordering::SeqCst) {
        0 => Ok(bytes.clone()),
        _ => Err("the registry is gone".to_string()),
    });
    let name = Path::new("artifact.wasm");
    let wasm = WasmBinary::deferred(name, ModuleKind::Core, digest, fetch);
    let plan = RunPlan::for_module(name, vec![], vec![], &[]).expect("plan");
    let prepared = engine.prepare_guest(&plan, &wasm).expect("prepare");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // More distinct modules than the engine keeps compiled in memory.
    for code in 0..70 {
        let other = WasmBinary::from_bytes(Path::new("other.wasm"), exit_module(100 + code))
            .expect("other module");
        engine.prepare_guest(&plan, &other).expect("prepare other");
    }

    let (interrupt, meter) = (Interrupt::new(), GuestMeter::new());
    let with = RunWith {
        stdio: Stdio::default(),
        interrupt: &interrupt,
        meter: &meter,
        listener: None,
    };
    let exit = wasmtime_wasi::runtime::in_tokio(engine.run_prepared(&prepared, &plan, &wasm, with))
        .expect("run");
    assert_eq!(exit, GuestExit::Exited(7));
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the start fetched the module again"
    );
}
