//! The store of an HTTP guest's instance: WASI 0.2 + 0.3 and `wasi:http` for the guest, with the
//! container's grants (its plan) and its memory budget; and the instance-pre it is made from.

use wasmcell_core::{EngineError, RunPlan, WasmBinary};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::component::Wasi;
use crate::exit::link_error;
use crate::http::serve::SharedOutput;
use crate::limits::GuestLimits;
use crate::run::Pres;
use crate::GuestMeter;

/// Epoch ticks (5 ms each) a guest runs between two yields to the executor: a request is
/// never made to yield before it has run at least one whole tick.
const YIELD_AFTER_TICKS: u64 = 2;

/// What one request's store holds.
pub(crate) struct HttpHost {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: Outgoing,
    pub(crate) limits: GuestLimits,
}

impl WasiView for HttpHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The view `wasi:http` takes of a store (for Wasmtime's handler, which wants a function).
pub(crate) fn http_view(host: &mut HttpHost) -> WasiHttpCtxView<'_> {
    host.http()
}

/// Makes the stores of one container's HTTP instances.
pub(crate) struct Stores {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) plan: RunPlan,
    pub(crate) output: SharedOutput,
    pub(crate) open_files: usize,
}

impl Stores {
    /// A fresh store: the plan's WASI grants, its memory budget, and a yield to the executor
    /// once it has run [`YIELD_AFTER_TICKS`] epoch ticks, so a spinning request holds no
    /// worker (and a timed-out one can be dropped) while a short one, the usual case, never
    /// yields and waits behind the other requests.
    pub(crate) fn store(&self) -> Result<Store<HttpHost>, EngineError> {
        let wasi = crate::wasi::builder(&self.plan, self.output.for_request(), false)?.build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.open_files);
        let host = HttpHost {
            wasi,
            table,
            http: WasiHttpCtx::new(),
            hooks: Outgoing {
                network: self.plan.network,
            },
            limits: GuestLimits::new(self.plan.memory_limit, GuestMeter::new()),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limits);
        store.set_epoch_deadline(YIELD_AFTER_TICKS);
        store.epoch_deadline_async_yield_and_update(YIELD_AFTER_TICKS);
        Ok(store)
    }
}

/// Outgoing requests of the guest (`wasi:http/outgoing-handler`): sent as Wasmtime sends them
/// when the plan grants the network, refused (`HTTP-request-denied`) when it does not, as its
/// sockets are.
pub(crate) struct Outgoing {
    pub(crate) network: bool,
}

impl WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        drop(fut);
        if !self.network {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

/// An HTTP component's instance-pre: a `wasi:http/incoming-handler@0.2` one or a
/// `wasi:http/handler@0.3` one.
#[derive(Clone)]
pub(crate) enum HttpPre {
    P2(ProxyPre<HttpHost>),
    P3(ServicePre<HttpHost>),
}

impl HttpPre {
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match self {
            HttpPre::P2(pre) => pre.engine(),
            HttpPre::P3(pre) => pre.engine(),
        }
    }
}

/// The WASI 0.2 + 0.3 + `wasi:http` linker and the HTTP components pre-instantiated on it.
pub(crate) type HttpPres = Pres<Linker<HttpHost>, HttpPre>;

/// Link `component` against WASI and `wasi:http` 0.2 and 0.3 (once per digest): the
/// instance-pre the container's requests instantiate, for the handler of release `wasi`.
pub(crate) fn proxy_pre(
    engine: &wasmtime::Engine,
    component: &Component,
    wasi: Wasi,
    pres: &HttpPres,
    digest: &[u8; 32],
    wasm: &WasmBinary,
) -> Result<HttpPre, EngineError> {
    let new_linker = || {
        let mut linker: Linker<HttpHost> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        Ok(linker)
    };
    pres.get(digest, new_linker, |l| {
        let pre = l.instantiate_pre(component)?;
        Ok(match wasi {
            Wasi::P2 => HttpPre::P2(ProxyPre::new(pre)?),
            Wasi::P3 => HttpPre::P3(ServicePre::new(pre)?),
        })
    })
    .map_err(|e| link_error(wasm, format!("{e:#}")))
}
