//! A `wasi:http/incoming-handler` (WASI 0.2) component for the HTTP serving tests, one route per
//! behaviour: `/` says hello, `/echo` answers with the size of the body it read, `/slow?ms=N`
//! answers after N ms, `/trap` traps before answering, `/log` writes a line to stdout and one to
//! stderr, `/env?NAME` answers with that variable of its environment.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(HttpHello);

struct HttpHello;

impl wasip2::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (path_with_query, String::new()),
        };
        let (status, body) = match path.as_str() {
            "/" => (200, "hello from wasmcell\n".to_string()),
            "/echo" => (200, format!("{} bytes\n", read_body(request))),
            "/slow" => {
                let ms: u64 = query.strip_prefix("ms=").and_then(|v| v.parse().ok()).unwrap_or(1000);
                wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                (200, format!("slept {ms} ms\n"))
            }
            "/trap" => panic!("the guest traps on purpose"),
            "/log" => {
                println!("stdout line from the http guest");
                eprintln!("stderr line from the http guest");
                (200, "logged\n".to_string())
            }
            "/env" => (200, format!("{}\n", std::env::var(&query).unwrap_or_default())),
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, body.as_bytes());
    }
}

/// Read the whole request body; its size.
fn read_body(request: IncomingRequest) -> usize {
    let Ok(body) = request.consume() else {
        return 0;
    };
    let Ok(stream) = body.stream() else {
        return 0;
    };
    let mut total = 0;
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        total += chunk.len();
    }
    total
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
