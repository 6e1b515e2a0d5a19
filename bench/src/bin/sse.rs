//! The bare axum SSE server: GET /sse answers with an event stream that stays open and idle
//! (a keep-alive comment every 15 s), the baseline for memory per idle proxied SSE stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};

async fn sse() -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(stream::pending()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn main() -> anyhow::Result<()> {
    let args = gatehouse_bench::Args::from_env();
    let addr = args.str_or("--listen", "127.0.0.1:0");
    gatehouse_bench::current_thread().block_on(async move {
        let app = axum::Router::new().route("/sse", axum::routing::get(sse));
        axum::serve(gatehouse_bench::listen(&addr).await?, app).await?;
        Ok(())
    })
}
