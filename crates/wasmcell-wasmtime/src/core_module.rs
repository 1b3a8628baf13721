use wasmcell_core::{EngineError, GuestExit, Interrupt, RunPlan, Stdio, WasmBinary};
use wasmtime::{Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::exit::{classify, link_error, watch_interrupt};
use crate::limits::MemoryCap;

struct Host {
    wasi: WasiP1Ctx,
    cap: MemoryCap,
}

/// The module must export the function the plan calls.
pub(crate) fn check_entry(
    module: &Module,
    plan: &RunPlan,
    wasm: &WasmBinary,
) -> Result<(), EngineError> {
    let export = plan.export.as_deref().unwrap_or("_start");
    match module.get_export(export) {
        Some(_) => Ok(()),
        None => Err(link_error(wasm, format!("module has no export {export}"))),
    }
}

pub(crate) fn run(
    engine: &wasmtime::Engine,
    module: &Module,
    plan: &RunPlan,
    wasm: &WasmBinary,
    stdio: Stdio,
    interrupt: &Interrupt,
) -> Result<GuestExit, EngineError> {
    let link_err = |reason: String| link_error(wasm, reason);

    check_entry(module, plan, wasm)?;
    let export = plan.export.as_deref().unwrap_or("_start");

    let mut linker: Linker<Host> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)
        .map_err(|e| link_err(format!("{e:#}")))?;

    let wasi = crate::wasi::builder(plan, stdio)?.build_p1();
    let mut store = Store::new(
        engine,
        Host {
            wasi,
            cap: MemoryCap::new(plan.memory_limit),
        },
    );
    store.limiter(|h| &mut h.cap);
    watch_interrupt(&mut store, interrupt);

    let pre = linker
        .instantiate_pre(module)
        .map_err(|e| link_err(format!("{e:#}")))?;
    let instance = match pre.instantiate(&mut store) {
        Ok(i) => i,
        Err(e) => return Ok(classify(e, &store.data().cap)),
    };
    let func = instance
        .get_typed_func::<(), ()>(&mut store, export)
        .map_err(|e| {
            link_err(format!(
                "export {export} is not a function taking no arguments: {e:#}"
            ))
        })?;
    if plan.export.is_some() {
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            if let Err(e) = init.call(&mut store, ()) {
                return Ok(classify(e, &store.data().cap));
            }
        }
    }
    Ok(match func.call(&mut store, ()) {
        Ok(()) => GuestExit::Exited(0),
        Err(e) => classify(e, &store.data().cap),
    })
}
