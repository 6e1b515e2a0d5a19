//! The bare axum echo on one core: POST /echo answers with the request body, as JSON.
//! The throughput baseline for the gateway on one core.

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;

async fn echo(body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

fn main() -> anyhow::Result<()> {
    let args = gatehouse_bench::Args::from_env();
    let addr = args.str_or("--listen", "127.0.0.1:0");
    gatehouse_bench::current_thread().block_on(async move {
        let app = axum::Router::new().route("/echo", axum::routing::post(echo));
        axum::serve(gatehouse_bench::listen(&addr).await?, app).await?;
        Ok(())
    })
}
