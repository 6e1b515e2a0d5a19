//! A tiny HTTP server on loopback that serves client metadata documents exactly as told:
//! any status, headers, body, chunked or not, slow or not. Raw TCP, so a test can send what a
//! well-behaved framework never would (a lying size, a redirect, an endless body).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One canned response.
#[derive(Debug, Clone)]
pub struct Served {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sent with `Transfer-Encoding: chunked` (no size announced) in 1 KB chunks.
    pub chunked: bool,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

impl Served {
    pub fn json(doc: &Value) -> Self {
        Served {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: doc.to_string().into_bytes(),
            chunked: false,
            delay: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

#[derive(Clone)]
pub struct DocServer {
    pub port: u16,
    routes: Arc<Mutex<HashMap<String, Served>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl DocServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let server = DocServer { port, routes: Arc::default(), hits: Arc::default() };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.answer(stream).await });
            }
        });
        server
    }

    /// `http://localhost:<port><path>`: the form the loopback allowance lets through.
    pub fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }

    pub fn serve(&self, path: &str, served: Served) {
        self.routes.lock().unwrap().insert(path.to_owned(), served);
    }

    /// Serves `doc` as JSON at `path`, with `"client_id"` set to this path's URL.
    pub fn serve_document(&self, path: &str, mut doc: Value) -> String {
        let url = self.url(path);
        doc["client_id"] = Value::String(url.clone());
        self.serve(path, Served::json(&doc));
        url
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    async fn answer(&self, mut stream: tokio::net::TcpStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let served = self.routes.lock().unwrap().get(&path).cloned().unwrap_or(Served {
            status: 404,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"not found".to_vec(),
            chunked: false,
            delay: None,
        });
        if let Some(delay) = served.delay {
            tokio::time::sleep(delay).await;
        }
        let mut out = format!("HTTP/1.1 {} Canned\r\nConnection: close\r\n", served.status);
        for (name, value) in &served.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if served.chunked {
            out.push_str("Transfer-Encoding: chunked\r\n\r\n");
            if stream.write_all(out.as_bytes()).await.is_err() {
                return;
            }
            for chunk in served.body.chunks(1024) {
                let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        } else {
            out.push_str(&format!("Content-Length: {}\r\n\r\n", served.body.len()));
            let _ = stream.write_all(&[out.into_bytes(), served.body].concat()).await;
        }
        let _ = stream.shutdown().await;
    }
}
