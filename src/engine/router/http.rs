//! The router's HTTP endpoint: `GET /metrics` (Prometheus text), `GET /stats` (the same as
//! JSON, for `gwctl status`) and `GET /locations/DEVICE` (JSON). Plain HTTP/1.1, one request per connection: a scraper and `gwctl router lookup`
//! are its only clients.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::stats::{self, Shared};

/// Binds `addr` (fails at once when taken) and serves until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    shared: Shared,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                // Out of file descriptors, most likely: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(Some(request)) =
                    tokio::time::timeout(Duration::from_secs(5), read_head(&mut socket)).await
                else {
                    return;
                };
                let (status, kind, body) = answer(&request, &shared);
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    }))
}

/// The request up to its blank line (a request may come in several segments); `None` when
/// the peer closes first or sends more than a request line and a few headers.
async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn answer(request: &str, shared: &Shared) -> (&'static str, &'static str, String) {
    let path = request
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("");
    if path == "/stats" {
        let body = serde_json::to_string(&shared.snapshot()).unwrap_or_default();
        return ("200 OK", "application/json", body);
    }
    if path == "/metrics" {
        let text = stats::prometheus(&shared.snapshot());
        return ("200 OK", "text/plain; version=0.0.4", text);
    }
    if let Some(device) = path.strip_prefix("/locations/")
        && crate::spec::tls::valid_device_id(device)
    {
        let found = {
            let guard = shared.lock();
            stats::lookup(&guard.0, device, stats::now_ms())
        };
        let body = serde_json::to_string(&found).unwrap_or_default();
        return ("200 OK", "application/json", body);
    }
    (
        "404 Not Found",
        "text/plain",
        "GET /metrics or /locations/DEVICE\n".into(),
    )
}
