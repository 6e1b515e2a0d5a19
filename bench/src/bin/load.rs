//! Closed-loop load generator for the throughput figures (latency figures use `oha` at a
//! fixed rate). Each worker keeps one HTTP/1.1 connection and sends requests back to back.
//!
//!   load mcp     --url U --body-file F --tool NAME --tokens-file T [--once] --concurrency C --seconds S
//!   load issue   --url U --basic ID:SECRET --form F --concurrency C --seconds S [--out FILE]
//!   load refresh --url U --chains-file F --seconds S        (a line per chain: client_id refresh_token)
//!   load sse     --url U --count N [--token T] [--session]  (opens N idle streams, holds until stdin closes)
//!
//! Prints one JSON object with counts, statuses and the rate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

type Sender = SendRequest<Full<Bytes>>;

struct Target {
    host: String,
    addr: String,
    path: String,
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("only http:// URLs"))?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok(Target { host: addr.to_owned(), addr: addr.to_owned(), path: path.to_owned() })
}

async fn connect(target: &Target) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(&target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request on the worker's connection (reconnecting if it closed); returns the
/// status and body.
async fn send(sender: &mut Option<Sender>, target: &Target, req: Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(target).await?);
    }
    let s = sender.as_mut().ok_or_else(|| anyhow!("no connection"))?;
    s.ready().await?;
    let res = s.send_request(req).await?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn post(target: &Target, content_type: &str, body: Bytes) -> hyper::http::request::Builder {
    let _ = body;
    Request::post(&target.path)
        .header("host", &target.host)
        .header("content-type", content_type)
        .header("accept", "application/json, text/event-stream")
}

#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
    }
    fn record(&mut self, result: &anyhow::Result<(u16, Bytes)>) {
        self.requests += 1;
        match result {
            Ok((status, _)) => *self.statuses.entry(*status).or_default() += 1,
            Err(_) => self.errors += 1,
        }
    }
    fn report(&self, elapsed: Duration, extra: Value) -> Value {
        let ok = self.statuses.get(&200).copied().unwrap_or(0);
        let mut out = json!({
            "requests": self.requests,
            "ok": ok,
            "errors": self.errors,
            "statuses": self.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "seconds": elapsed.as_secs_f64(),
            "ok_per_sec": ok as f64 / elapsed.as_secs_f64(),
        });
        if let (Value::Object(o), Value::Object(e)) = (&mut out, extra) {
            o.extend(e);
        }
        out
    }
}

fn read_lines(path: &str) -> anyhow::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

async fn mcp(args: &gatehouse_bench::Args) -> anyhow::Result<Value> {
    let target = Arc::new(parse_url(&args.str_or("--url", ""))?);
    let body = Bytes::from(std::fs::read(args.str_or("--body-file", ""))?);
    let tokens = Arc::new(read_lines(&args.str_or("--tokens-file", ""))?);
    let once = args.has("--once");
    let tool = Arc::new(args.str_or("--tool", "echo"));
    let concurrency: usize = args.num_or("--concurrency", 32);
    let seconds = args.secs_or("--seconds", 5.0);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (target, body, tokens, next, tool) = (target.clone(), body.clone(), tokens.clone(), next.clone(), tool.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut sender = None;
            while start.elapsed() < seconds {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if once && i >= tokens.len() {
                    break;
                }
                let token = &tokens[i % tokens.len()];
                let req = post(&target, "application/json", body.clone())
                    .header("authorization", format!("Bearer {token}"))
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", tool.as_str())
                    .body(Full::new(body.clone()))
                    .expect("request");
                let result = send(&mut sender, &target, req).await;
                if result.is_err() {
                    sender = None;
                }
                tally.record(&result);
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for w in workers {
        total.add(w.await?);
    }
    let elapsed = start.elapsed();
    Ok(total.report(elapsed, json!({"exhausted_tokens": once && next.load(Ordering::Relaxed) >= tokens.len()})))
}

async fn issue(args: &gatehouse_bench::Args) -> anyhow::Result<Value> {
    let target = Arc::new(parse_url(&args.str_or("--url", ""))?);
    let basic = args.str_or("--basic", "");
    let auth = format!("Basic {}", base64(basic.as_bytes()));
    let form = Bytes::from(args.str_or("--form", ""));
    let concurrency: usize = args.num_or("--concurrency", 8);
    let seconds = args.secs_or("--seconds", 3.0);
    let keep = args.get("--out").is_some();
    let max: usize = args.num_or("--max", usize::MAX);
    let sent = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (target, form, auth, sent) = (target.clone(), form.clone(), auth.clone(), sent.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut tokens = Vec::new();
            let mut sender = None;
            while start.elapsed() < seconds && sent.fetch_add(1, Ordering::Relaxed) < max {
                let req = post(&target, "application/x-www-form-urlencoded", form.clone())
                    .header("authorization", &auth)
                    .body(Full::new(form.clone()))
                    .expect("request");
                let result = send(&mut sender, &target, req).await;
                if let (true, Ok((200, body))) = (keep, &result)
                    && let Ok(v) = serde_json::from_slice::<Value>(body)
                    && let Some(t) = v["access_token"].as_str()
                {
                    tokens.push(t.to_owned());
                }
                if result.is_err() {
                    sender = None;
                }
                tally.record(&result);
            }
            (tally, tokens)
        }));
    }
    let mut total = Tally::default();
    let mut tokens = Vec::new();
    for w in workers {
        let (t, mut k) = w.await?;
        total.add(t);
        tokens.append(&mut k);
    }
    let elapsed = start.elapsed();
    if let Some(out) = args.get("--out") {
        std::fs::write(out, tokens.join("\n"))?;
    }
    Ok(total.report(elapsed, json!({})))
}

async fn refresh(args: &gatehouse_bench::Args) -> anyhow::Result<Value> {
    let target = Arc::new(parse_url(&args.str_or("--url", ""))?);
    let chains = read_lines(&args.str_or("--chains-file", ""))?;
    let seconds = args.secs_or("--seconds", 3.0);
    let start = Instant::now();
    let mut workers = Vec::new();
    for line in chains {
        let (client_id, token) = line.split_once(' ').ok_or_else(|| anyhow!("bad chain line"))?;
        let (client_id, mut token) = (client_id.to_owned(), token.to_owned());
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut sender = None;
            while start.elapsed() < seconds {
                let form = Bytes::from(format!("grant_type=refresh_token&client_id={client_id}&refresh_token={token}"));
                let req = post(&target, "application/x-www-form-urlencoded", form.clone())
                    .body(Full::new(form))
                    .expect("request");
                let result = send(&mut sender, &target, req).await;
                tally.record(&result);
                match result {
                    Ok((200, body)) => {
                        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                        match v["refresh_token"].as_str() {
                            Some(t) => token = t.to_owned(),
                            None => break,
                        }
                    }
                    Ok(_) => break, // the chain is dead: stop rather than hammer it
                    Err(_) => sender = None,
                }
            }
            (tally, format!("{client_id} {token}"))
        }));
    }
    let mut total = Tally::default();
    let mut heads = Vec::new();
    for w in workers {
        let (tally, head) = w.await?;
        total.add(tally);
        heads.push(head);
    }
    let elapsed = start.elapsed();
    // The chains go on from where they stopped: the next run spends the newest tokens.
    std::fs::write(args.str_or("--chains-file", ""), heads.join("\n"))?;
    Ok(total.report(elapsed, json!({})))
}

/// Opens `count` idle SSE streams, each on its own connection: with `--session`, an MCP
/// session is opened first (initialize + initialized) and the stream is its GET stream.
/// Prints a JSON line once all are open, then holds them until stdin closes.
async fn sse(args: &gatehouse_bench::Args) -> anyhow::Result<Value> {
    let target = Arc::new(parse_url(&args.str_or("--url", ""))?);
    let count: usize = args.num_or("--count", 100);
    let token = args.get("--token").map(str::to_owned);
    let session = args.has("--session");
    let start = Instant::now();
    let mut held = Vec::with_capacity(count);
    let opened = Arc::new(AtomicUsize::new(0));
    let mut batch = Vec::new();
    for _ in 0..count {
        let (target, token, opened) = (target.clone(), token.clone(), opened.clone());
        batch.push(tokio::spawn(async move { open_stream(&target, token.as_deref(), session, &opened).await }));
        if batch.len() == 64 {
            for b in batch.drain(..) {
                held.push(b.await??);
            }
        }
    }
    for b in batch.drain(..) {
        held.push(b.await??);
    }
    let report = json!({"streams": held.len(), "seconds_to_open": start.elapsed().as_secs_f64()});
    println!("{report}");
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(held);
    Ok(report)
}

async fn open_stream(
    target: &Target,
    token: Option<&str>,
    session: bool,
    opened: &AtomicUsize,
) -> anyhow::Result<(Sender, hyper::body::Incoming)> {
    let with_auth = |b: hyper::http::request::Builder| match token {
        Some(t) => b.header("authorization", format!("Bearer {t}")),
        None => b,
    };
    let mut sender = Some(connect(target).await?);
    let mut session_id = None;
    if session {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "gatehouse-bench", "version": "0"}}})
        .to_string();
        let s = sender.as_mut().ok_or_else(|| anyhow!("no connection"))?;
        // A gateway shedding load answers 503 (with Retry-After); as a client would, wait and
        // try again, a bounded number of times, so the figure counts streams, not refusals.
        let mut attempts = 0;
        let (id, status) = loop {
            let req = with_auth(post(target, "application/json", Bytes::new()))
                .header("mcp-protocol-version", "2025-11-25")
                .body(Full::new(Bytes::from(init.clone())))?;
            s.ready().await?;
            let res = s.send_request(req).await?;
            let id = res.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let status = res.status();
            res.into_body().collect().await?;
            attempts += 1;
            if status != 503 || attempts >= 30 {
                break (id, status);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let id = id.ok_or_else(|| anyhow!("initialize answered {status} without a session"))?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        let req = with_auth(post(target, "application/json", Bytes::new()))
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &id)
            .body(Full::new(Bytes::from(note)))?;
        s.ready().await?;
        let res = s.send_request(req).await?;
        res.into_body().collect().await?;
        session_id = Some(id);
    }
    let mut get = with_auth(Request::get(&target.path).header("host", &target.host).header("accept", "text/event-stream"));
    if let Some(id) = &session_id {
        get = get.header("mcp-session-id", id).header("mcp-protocol-version", "2025-11-25");
    }
    let mut s = sender.take().ok_or_else(|| anyhow!("no connection"))?;
    s.ready().await?;
    let res = s.send_request(get.body(Full::new(Bytes::new()))?).await?;
    if res.status() != 200 {
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        return Err(anyhow!("stream answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    opened.fetch_add(1, Ordering::Relaxed);
    Ok((s, res.into_body()))
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = gatehouse_bench::Args::from_env();
    let runtime = gatehouse_bench::current_thread();
    let report = runtime.block_on(async {
        match args.positional(0) {
            Some("mcp") => mcp(&args).await,
            Some("issue") => issue(&args).await,
            Some("refresh") => refresh(&args).await,
            Some("sse") => sse(&args).await,
            _ => Err(anyhow!("usage: load mcp|issue|refresh|sse ...")),
        }
    })?;
    println!("{report}");
    Ok(())
}
