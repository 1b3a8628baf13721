//! Serve an HTTP component as a normal-mode guest process does (pooling engine, an executor of
//! N workers), for profiling outside containerd:
//! `serve_http MODULE ADDR [WORKERS [DIR...]]` (each DIR preopened as itself, read-write).

use std::path::Path;

use wasmcell_core::{DirGrant, Interrupt, RunPlan, Stdio, WasmBinary};
use wasmcell_wasmtime::{CompileCache, WasmtimeEngine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let module = args
        .next()
        .ok_or("usage: serve_http MODULE ADDR [WORKERS]")?;
    let addr = args
        .next()
        .ok_or("usage: serve_http MODULE ADDR [WORKERS]")?;
    let workers: usize = args.next().map_or(Ok(1), |w| w.parse())?;
    let dirs = args
        .map(|d| DirGrant::parse(&d))
        .collect::<Result<Vec<_>, _>>()?;
    let env = vec![("WASMCELL_HTTP_LISTEN_ADDR".to_string(), addr)];
    let plan = RunPlan::for_module(Path::new(&module), vec![], env, &dirs)?;
    let wasm = WasmBinary::read(Path::new(&module))?;
    let cache = CompileCache::new(std::env::temp_dir().join("serve-http-cache"), 1 << 30);
    let engine = WasmtimeEngine::for_serving(cache, 256)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let _entered = runtime.enter();
    let exit = engine.run_listening(&plan, &wasm, Stdio::inherit(), &Interrupt::new(), None)?;
    println!("{exit:?}");
    Ok(())
}
