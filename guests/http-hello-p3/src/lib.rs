//! A `wasi:http/handler` (WASI 0.3) component for the HTTP serving tests: `/` says hello,
//! `/echo` answers with the size of the body it read, `/slow?ms=N` answers after N ms (an async
//! wait: other requests of the same instance go on meanwhile), `/trap` traps before answering.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(HttpHelloP3);

struct HttpHelloP3;

impl wasip3::exports::http::handler::Guest for HttpHelloP3 {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (path_with_query, String::new()),
        };
        let (status, body) = match path.as_str() {
            "/" => (200, "hello from wasmcell (wasi 0.3)\n".to_string()),
            "/echo" => (200, format!("{} bytes\n", read_body(request).await)),
            "/slow" => {
                let ms: u64 = query
                    .strip_prefix("ms=")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                (200, format!("slept {ms} ms\n"))
            }
            "/trap" => panic!("the guest traps on purpose"),
            _ => (404, "not found\n".to_string()),
        };
        Ok(respond(status, body.into_bytes()))
    }
}

/// Read the whole request body; its size.
async fn read_body(request: Request) -> usize {
    let (_done_tx, done_rx) = wit_future::new(|| Ok(()));
    let (mut stream, _trailers) = Request::consume_body(request, done_rx);
    let mut total = 0;
    loop {
        let (result, chunk) = stream.read(Vec::with_capacity(64 * 1024)).await;
        total += chunk.len();
        if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
            return total;
        }
    }
}

fn respond(status: u16, body: Vec<u8>) -> Response {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    let _ = response.set_status_code(status);
    drop(trailers_tx);
    wit_bindgen::spawn_local(async move {
        let _ = body_tx.write_all(body).await;
    });
    response
}
