use wasmcell_core::{EngineError, GuestExit, RunPlan, WasmBinary};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::exit::{classify, link_error, watch_interrupt};
use crate::limits::GuestLimits;
use crate::run::{GuestRun, Pres};

pub(crate) struct Host {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: GuestLimits,
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

/// What a component is run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The export the plan names.
    Named,
    /// A command: its `wasi:cli/run`.
    Command,
    /// An HTTP server: its `wasi:http/incoming-handler` (WASI 0.2), served (see http/).
    Http,
}

/// What the component is run as, from its exports: the export the plan names; else a WASI 0.2
/// HTTP handler, else a `wasi:cli/run` command. Anything else fails, naming what it exports.
pub(crate) fn entry(
    engine: &wasmtime::Engine,
    component: &Component,
    plan: &RunPlan,
    wasm: &WasmBinary,
) -> Result<Entry, EngineError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let has = |prefix: &str| exports.iter().any(|name| name.starts_with(prefix));
    if let Some(export) = plan.export.as_deref() {
        if exports.iter().any(|name| name == export) {
            return Ok(Entry::Named);
        }
        return Err(link_error(
            wasm,
            format!("component has no export {export}"),
        ));
    }
    if has(crate::http::HANDLER_03) {
        return Err(link_error(
            wasm,
            "component exports wasi:http/handler@0.3 (a WASI 0.3 HTTP handler), which this \
             wasmcell does not serve yet; build it for WASI 0.2 (wasi:http/incoming-handler)",
        ));
    }
    if has(crate::http::INCOMING_HANDLER_02) {
        return Ok(Entry::Http);
    }
    if has("wasi:cli/run@0.2") {
        return Ok(Entry::Command);
    }
    if has("wasi:cli/run@") {
        return Err(link_error(
            wasm,
            "component exports a wasi:cli/run this wasmcell cannot run (not WASI 0.2)",
        ));
    }
    let listed = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports.join(", ")
    };
    Err(link_error(
        wasm,
        format!(
            "component exports neither wasi:http/incoming-handler nor wasi:cli/run (it exports {listed})"
        ),
    ))
}

/// The component must export the function the plan calls, or something it can be run as.
pub(crate) fn check_entry(
    engine: &wasmtime::Engine,
    component: &Component,
    plan: &RunPlan,
    wasm: &WasmBinary,
) -> Result<(), EngineError> {
    entry(engine, component, plan, wasm).map(|_| ())
}

/// Resolve the component's imports against the WASI 0.2 linker (once per digest).
pub(crate) fn pre(
    engine: &wasmtime::Engine,
    component: &Component,
    pres: &ComponentPres,
    digest: &[u8; 32],
    plan: &RunPlan,
    wasm: &WasmBinary,
) -> Result<InstancePre<Host>, EngineError> {
    check_entry(engine, component, plan, wasm)?;
    let new_linker = || {
        let mut l: Linker<Host> = Linker::new(engine);
        // `wasi:cli/exit.exit` says only success (0) or failure (1); components that call
        // `exit-with-code` (wasi:cli 0.2.6) get their full status.
        wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
        Ok(l)
    };
    pres.get(digest, new_linker, |l| l.instantiate_pre(component))
        .map_err(|e| link_error(wasm, format!("{e:#}")))
}

/// Run a linked component on WASI 0.2: its `wasi:cli/run`, or the export the plan names.
pub(crate) async fn run(
    pre: &InstancePre<Host>,
    plan: &RunPlan,
    wasm: &WasmBinary,
    guest: GuestRun<'_>,
) -> Result<GuestExit, EngineError> {
    let link_err = |reason: String| link_error(wasm, reason);

    let wasi = crate::wasi::builder(plan, guest.stdio, guest.may_block_thread)?.build();
    let mut table = ResourceTable::new();
    // Descriptors, streams and pollables are entries of this table: its length caps what the
    // guest holds open (a guest past it traps).
    table.set_max_capacity(guest.open_files);
    let mut store = Store::new(
        pre.component().engine(),
        Host {
            wasi,
            table,
            limits: GuestLimits::new(plan.memory_limit, guest.meter.clone()),
        },
    );
    store.limiter(|h| &mut h.limits);
    watch_interrupt(&mut store, guest.interrupt, guest.meter, |h| {
        h.table.iter_mut().count()
    });

    if let Some(export) = plan.export.as_deref() {
        let instance = match pre.instantiate_async(&mut store).await {
            Ok(i) => i,
            Err(e) => return Ok(classify(e, &store.data().limits)),
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
            Err(e) => classify(e, &store.data().limits),
        });
    }

    let command = CommandPre::new(pre.clone()).map_err(|e| {
        link_err(format!(
            "component does not export wasi:cli/run (is it a wasi:cli/command?): {e:#}"
        ))
    })?;
    let command = match command.instantiate_async(&mut store).await {
        Ok(c) => c,
        Err(e) => return Ok(classify(e, &store.data().limits)),
    };
    Ok(match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => GuestExit::Exited(0),
        Ok(Err(())) => GuestExit::Exited(1),
        Err(e) => classify(e, &store.data().limits),
    })
}
