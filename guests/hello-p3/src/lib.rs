//! A WASI 0.3 command (`wasi:cli/run@0.3`): writes `hello from wasmcell (wasi 0.3)` and its
//! arguments to stdout, and fails (exit 1) when its first argument is `fail`.

wasip3::cli::command::export!(HelloP3);

struct HelloP3;

impl wasip3::exports::cli::run::Guest for HelloP3 {
    async fn run() -> Result<(), ()> {
        let args = wasip3::cli::environment::get_arguments();
        let line = format!("hello from wasmcell (wasi 0.3) {}\n", args.join(" "));
        let (mut tx, rx) = wasip3::wit_stream::new();
        let write = async {
            let _ = tx.write_all(line.into_bytes()).await;
            drop(tx);
        };
        let (written, ()) = futures_join(
            std::future::IntoFuture::into_future(wasip3::cli::stdout::write_via_stream(rx)),
            write,
        ).await;
        if written.is_err() {
            return Err(());
        }
        if args.get(1).map(String::as_str) == Some("fail") {
            return Err(());
        }
        Ok(())
    }
}

/// Both futures to completion (the stream's reader and its writer must run together).
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let mut out_a = None;
    let mut out_b = None;
    std::future::poll_fn(|cx| {
        if out_a.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    match (out_a, out_b) {
        (Some(a), Some(b)) => (a, b),
        _ => unreachable!("both futures completed"),
    }
}
