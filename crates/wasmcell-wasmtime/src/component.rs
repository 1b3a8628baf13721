use wasmcell_core::{EngineError, GuestExit, RunPlan, WasmBinary};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p3::bindings::CommandPre as CommandPre3;
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

/// The WASI 0.2 + 0.3 linker and pre-instantiated components of an engine.
pub(crate) type ComponentPres = Pres<Linker<Host>, InstancePre<Host>>;

/// The WASI release a component's entry point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wasi {
    /// WASI 0.2: synchronous exports.
    P2,
    /// WASI 0.3: async exports (the component model's async ABI).
    P3,
}

/// What a component is run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The export the plan names.
    Named,
    /// A command: its `wasi:cli/run`.
    Command(Wasi),
    /// An HTTP server: its `wasi:http/handler` (0.3) or `wasi:http/incoming-handler` (0.2),
    /// served (see http/).
    Http(Wasi),
}

/// What the component is run as, from its exports: the export the plan names; else a WASI 0.3
/// HTTP handler, else a WASI 0.2 one, else a `wasi:cli/run` command (0.3, else 0.2). Anything
/// else fails, naming what it exports.
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
        return Ok(Entry::Http(Wasi::P3));
    }
    if has(crate::http::INCOMING_HANDLER_02) {
        return Ok(Entry::Http(Wasi::P2));
    }
    if has("wasi:cli/run@0.3") {
        return Ok(Entry::Command(Wasi::P3));
    }
    if has("wasi:cli/run@0.2") {
        return Ok(Entry::Command(Wasi::P2));
    }
    if has("wasi:cli/run@") || has("wasi:http/") {
        return Err(link_error(
            wasm,
            format!(
                "component exports a WASI release this wasmcell cannot run (0.2 and 0.3 only; \
                 it exports {})",
                exports.join(", ")
            ),
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

/// Resolve the component's imports against the WASI 0.2 + 0.3 linker (once per digest). A
/// component built for WASI 0.3 by today's toolchains imports WASI 0.2 too (its standard
/// library's), so both are always linked.
pub(crate) fn pre(
    engine: &wasmtime::Engine,
    component: &Component,
    pres: &ComponentPres,
    digest: &[u8; 32],
    wasm: &WasmBinary,
) -> Result<InstancePre<Host>, EngineError> {
    let new_linker = || {
        let mut l: Linker<Host> = Linker::new(engine);
        // `wasi:cli/exit.exit` says only success (0) or failure (1); components that call
        // `exit-with-code` (wasi:cli 0.2.6) get their full status.
        wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
        wasmtime_wasi::p3::add_to_linker(&mut l)?;
        Ok(l)
    };
    pres.get(digest, new_linker, |l| l.instantiate_pre(component))
        .map_err(|e| link_error(wasm, format!("{e:#}")))
}

/// Run a linked component: its `wasi:cli/run` (0.2 or 0.3, as `entry` says), or the export
/// the plan names.
pub(crate) async fn run(
    pre: &InstancePre<Host>,
    entry: Entry,
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

    if entry == Entry::Command(Wasi::P3) {
        return run_command_p3(pre, store, wasm).await;
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

/// Run a WASI 0.3 command: its async `wasi:cli/run` inside the store's event loop, which also
/// runs the tasks the guest spawned (they end with it).
async fn run_command_p3(
    pre: &InstancePre<Host>,
    mut store: Store<Host>,
    wasm: &WasmBinary,
) -> Result<GuestExit, EngineError> {
    let command = CommandPre3::new(pre.clone()).map_err(|e| {
        link_error(
            wasm,
            format!("component does not export wasi:cli/run@0.3: {e:#}"),
        )
    })?;
    let command = match command.instantiate_async(&mut store).await {
        Ok(c) => c,
        Err(e) => return Ok(classify(e, &store.data().limits)),
    };
    let ran = store
        .run_concurrent(async |store| command.wasi_cli_run().call_run(store).await)
        .await;
    Ok(match ran {
        Ok(Ok(Ok(()))) => GuestExit::Exited(0),
        Ok(Ok(Err(()))) => GuestExit::Exited(1),
        Ok(Err(e)) | Err(e) => classify(e, &store.data().limits),
    })
}
