//! Where one start of a module spends its time, step by step, the way a guest process starts
//! it (through the precompile cache in `$WASMCELL_CACHE_DIR` or the default directory):
//!
//! ```text
//! cargo run --release -p wasmcell-wasmtime --example start_timing -- app.wasm [ARG...]
//! read=2.70 engine=0.21 load=0.95 run=0.50 drop=0.14 (ms)
//! ```
//!
//! `read`: header check and digest (the module streamed once); `engine`: building the engine;
//! `load`: compiled code from the cache (or compiling it and filling the cache); `run`:
//! instantiating and running the guest; `drop`: tearing the engine down.

use std::path::PathBuf;
use std::time::Instant;

use wasmcell_core::{Engine, Interrupt, RunPlan, Stdio, WasmBinary};
use wasmcell_wasmtime::{CompileCache, WasmtimeEngine, DEFAULT_MAX_BYTES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .ok_or("usage: start_timing MODULE.wasm [ARG...]")?,
    );
    let mut steps = Vec::new();
    let mut last = Instant::now();
    let mut mark = |step: &'static str| {
        let now = Instant::now();
        steps.push(format!("{step}={:.2}", (now - last).as_secs_f64() * 1000.0));
        last = now;
    };

    let wasm = WasmBinary::read(&path)?;
    wasm.digest();
    mark("read");
    let cache = CompileCache::new(CompileCache::default_dir(), DEFAULT_MAX_BYTES);
    let engine = WasmtimeEngine::with_cache(cache)?;
    mark("engine");
    let plan = RunPlan::for_module(&path, args.collect(), vec![], &[])?;
    engine.prepare(&plan, &wasm)?;
    mark("load");
    let exit = engine.run(&plan, &wasm, Stdio::inherit(), &Interrupt::new())?;
    mark("run");
    drop(engine);
    mark("drop");
    eprintln!(
        "{} (ms); guest exit status {}",
        steps.join(" "),
        exit.code()
    );
    Ok(())
}
