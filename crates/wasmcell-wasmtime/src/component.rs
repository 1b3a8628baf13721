use wasmcell_core::{EngineError, GuestExit, RunPlan, WasmBinary};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::exit::{classify, link_error, watch_interrupt};
use crate::limits::MemoryCap;
use crate::run::{GuestRun, Pres};

pub(crate) struct Host {
    wasi: WasiCtx,
    table: ResourceTable,
    cap: MemoryCap,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The WASI 0.2 linker and pre-instantiated components of an engine.
pub(crate) type ComponentPres = Pres<Linker<Host>, InstancePre<Host>>;

/// The component must export the function the plan calls, or `wasi:cli/run`.
pub(crate) fn check_entry(
    engine: &wasmtime::Engine,
    component: &Component,
    plan: &RunPlan,
    wasm: &WasmBinary,
) -> Result<(), EngineError> {
    let ty = component.component_type();
    let mut exports = ty.exports(engine).map(|(name, _)| name);
    let found = match plan.export.as_deref() {
        Some(export) => exports.any(|name| name == export),
        None => exports.any(|name| name.starts_with("wasi:cli/run@")),
    };
    if found {
        return Ok(());
    }
    let wanted = plan.export.as_deref().unwrap_or("wasi:cli/run");
    Err(link_error(
        wasm,
        format!("component has no export {wanted}"),
    ))
}

/// Run a component on WASI 0.2: its `wasi:cli/run`, or the export the plan names.
pub(crate) async fn run(
    engine: &wasmtime::Engine,
    component: &Component,
    pres: &ComponentPres,
    digest: &[u8; 32],
    plan: &RunPlan,
    wasm: &WasmBinary,
    guest: GuestRun<'_>,
) -> Result<GuestExit, EngineError> {
    let link_err = |reason: String| link_error(wasm, reason);

    let new_linker = || {
        let mut l: Linker<Host> = Linker::new(engine);
        // `wasi:cli/exit.exit` says only success (0) or failure (1); components that call
        // `exit-with-code` (wasi:cli 0.2.6) get their full status.
        wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
        Ok(l)
    };
    let pre = pres
        .get(digest, new_linker, |l| l.instantiate_pre(component))
        .map_err(|e| link_err(format!("{e:#}")))?;
    let wasi = crate::wasi::builder(plan, guest.stdio, guest.may_block_thread)?.build();
    let mut store = Store::new(
        engine,
        Host {
            wasi,
            table: ResourceTable::new(),
            cap: MemoryCap::new(plan.memory_limit, guest.meter.clone()),
        },
    );
    store.limiter(|h| &mut h.cap);
    watch_interrupt(&mut store, guest.interrupt);

    if let Some(export) = plan.export.as_deref() {
        let instance = match pre.instantiate_async(&mut store).await {
            Ok(i) => i,
            Err(e) => return Ok(classify(e, &store.data().cap)),
        };
        let func = instance
            .get_typed_func::<(), ()>(&mut store, export)
            .map_err(|e| {
                link_err(format!(
                    "component has no export {export} taking no arguments: {e:#}"
                ))
            })?;
        return Ok(match func.call_async(&mut store, ()).await {
            Ok(()) => GuestExit::Exited(0),
            Err(e) => classify(e, &store.data().cap),
        });
    }

    let command = CommandPre::new(pre).map_err(|e| {
        link_err(format!(
            "component does not export wasi:cli/run (is it a wasi:cli/command?): {e:#}"
        ))
    })?;
    let command = match command.instantiate_async(&mut store).await {
        Ok(c) => c,
        Err(e) => return Ok(classify(e, &store.data().cap)),
    };
    Ok(match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => GuestExit::Exited(0),
        Ok(Err(())) => GuestExit::Exited(1),
        Err(e) => classify(e, &store.data().cap),
    })
}
