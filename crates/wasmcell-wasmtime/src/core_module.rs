use wasmcell_core::{EngineError, GuestExit, RunPlan, WasmBinary};
use wasmtime::{InstancePre, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiView;

use crate::exit::{classify, link_error};
use crate::limits::GuestLimits;
use crate::run::{GuestRun, Pres};

pub(crate) struct Host {
    wasi: WasiP1Ctx,
    limits: GuestLimits,
}

/// The WASI 0.1 linker and pre-instantiated modules of an engine.
pub(crate) type CorePres = Pres<Linker<Host>, InstancePre<Host>>;

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

/// Resolve the module's imports against the WASI 0.1 linker (once per digest), checking first
/// that it exports what the plan calls.
pub(crate) fn pre(
    module: &Module,
    pres: &CorePres,
    digest: &[u8; 32],
    plan: &RunPlan,
    wasm: &WasmBinary,
) -> Result<InstancePre<Host>, EngineError> {
    check_entry(module, plan, wasm)?;
    let new_linker = || {
        let mut l: Linker<Host> = Linker::new(module.engine());
        wasmtime_wasi::p1::add_to_linker_async(&mut l, |h: &mut Host| &mut h.wasi)?;
        Ok(l)
    };
    pres.get(digest, new_linker, |l| l.instantiate_pre(module))
        .map_err(|e| link_error(wasm, format!("{e:#}")))
}

/// Run a linked core module on WASI 0.1: its `_start`, or the export the plan names (after
/// `_initialize` when the module is a reactor).
pub(crate) async fn run(
    pre: &InstancePre<Host>,
    plan: &RunPlan,
    wasm: &WasmBinary,
    guest: GuestRun<'_>,
) -> Result<GuestExit, EngineError> {
    let link_err = |reason: String| link_error(wasm, reason);
    let export = plan.export.as_deref().unwrap_or("_start");

    let mut wasi = crate::wasi::builder(plan, guest.stdio, guest.may_block_thread)?.build_p1();
    // Every descriptor the guest opens is an entry of this table: its length is the guest's
    // open-file limit (a guest past it traps; the manager's own descriptors stay available).
    wasi.ctx().table.set_max_capacity(guest.open_files);
    let limits = GuestLimits::new(plan.memory_limit, guest.meter.clone());
    let mut store = Store::new(pre.module().engine(), Host { wasi, limits });
    store.limiter(|h| &mut h.limits);
    crate::exit::watch_interrupt(&mut store, guest.interrupt, guest.meter, |h| {
        h.wasi.ctx().table.iter_mut().count()
    });

    let instance = match pre.instantiate_async(&mut store).await {
        Ok(i) => i,
        Err(e) => return Ok(classify(e, &store.data().limits)),
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
            if let Err(e) = init.call_async(&mut store, ()).await {
                return Ok(classify(e, &store.data().limits));
            }
        }
    }
    Ok(match func.call_async(&mut store, ()).await {
        Ok(()) => GuestExit::Exited(0),
        Err(e) => classify(e, &store.data().limits),
    })
}
