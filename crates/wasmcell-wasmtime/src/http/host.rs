//! The store of one HTTP request: WASI 0.2 and `wasi:http` for the guest, with the container's
//! grants (its plan) and its memory budget.

use wasmcell_core::{EngineError, WasmBinary};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::exit::link_error;
use crate::limits::GuestLimits;
use crate::run::Pres;

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

/// The WASI 0.2 + `wasi:http` linker and the HTTP components pre-instantiated on it.
pub(crate) type HttpPres = Pres<Linker<HttpHost>, ProxyPre<HttpHost>>;

/// Link `component` against WASI 0.2 and `wasi:http` (once per digest): the instance-pre every
/// request of the container instantiates.
pub(crate) fn proxy_pre(
    engine: &wasmtime::Engine,
    component: &Component,
    pres: &HttpPres,
    digest: &[u8; 32],
    wasm: &WasmBinary,
) -> Result<ProxyPre<HttpHost>, EngineError> {
    let new_linker = || {
        let mut linker: Linker<HttpHost> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Ok(linker)
    };
    pres.get(digest, new_linker, |l| {
        ProxyPre::new(l.instantiate_pre(component)?)
    })
    .map_err(|e| link_error(wasm, format!("{e:#}")))
}
