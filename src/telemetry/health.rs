//! `/healthz` and `/metrics` on a local listener, and the `healthcheck` probe.
//!
//! `/healthz` answers 200 while the receive loop is alive and its last receive succeeded, 503
//! otherwise; a busy task is healthy (saturation is a metric). Its body says which output is
//! behind and by how much: an output's outage is not the task's, and restarting the task
//! would not end it. The listener serves two fixed
//! GET routes to a local prober, so it is a few lines over a TCP socket rather than an HTTP
//! framework.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Metrics;

/// Serves `/healthz` and `/metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, max_silence: Duration) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                respond(stream, &metrics, max_silence),
            )
            .await;
        });
    }
}

async fn respond(
    mut stream: TcpStream,
    metrics: &Metrics,
    max_silence: Duration,
) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    let mut len = 0;
    // The request line is all we need; stop at its end or at 1 KiB.
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&buf[..len]);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match path {
        "/healthz" if metrics.healthy(max_silence.as_secs() as i64) => {
            ("200 OK", "text/plain", format!("ok\n{}", outputs(metrics)))
        }
        "/healthz" => (
            "503 Service Unavailable",
            "text/plain",
            format!(
                "the receive loop is stalled or its last SQS receive failed\n{}",
                outputs(metrics)
            ),
        ),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.encode(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// One line per output: its backlog, the age of its oldest delivery, and why it fails.
fn outputs(metrics: &Metrics) -> String {
    let now = metrics.clock().now();
    let mut out = String::new();
    for (name, s) in metrics.output_states() {
        let oldest = s.oldest.map_or(0, |o| (now - o).max(0));
        out.push_str(&format!(
            "output {name}: {} pending, oldest {oldest} s",
            s.pending
        ));
        if s.full {
            out.push_str(", at its bound (intake paused)");
        }
        if let Some(error) = &s.error {
            out.push_str(&format!(
                ", failing: {}",
                crate::finding::alert::clean(error)
            ));
        }
        out.push('\n');
    }
    out
}

/// `trailwarden healthcheck`: true when `/healthz` at `addr` answers 200 within 3 seconds.
pub fn probe(addr: SocketAddr) -> Result<(), String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nhost: localhost\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut response = Vec::new();
    let _ = stream.take(4096).read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let status = response.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("unhealthy: {}", status.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_answers_and_metrics_render() {
        let metrics = Metrics::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, metrics.clone(), Duration::from_secs(60)));

        let check = move || tokio::task::spawn_blocking(move || probe(addr));
        assert!(check().await.expect("join").is_err(), "no receive yet");
        metrics.loop_alive();
        metrics.received(true);
        assert!(check().await.expect("join").is_ok());
        metrics.output_backlog("pager", 3, Some(metrics.clock().now() - 90), 1000);
        metrics.output_failing("pager", Some("PagerDuty answered 503"));
        let body = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").expect("send");
            let mut r = String::new();
            s.read_to_string(&mut r).expect("read");
            r
        })
        .await
        .expect("join");
        assert!(
            body.contains("output pager: 3 pending, oldest 90 s, failing: PagerDuty answered 503"),
            "{body}"
        );
        metrics.received(false);
        assert!(check().await.expect("join").is_err());
        server.abort();
    }
}
