//! `--metrics-addr HOST:PORT`: the job's progress as Prometheus text at
//! `/metrics`, for the monitoring the team already has.

use crate::control::JobControl;
use crate::error::{Error, Result};
use crate::planner::lock;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The metrics in Prometheus' text exposition format (0.0.4).
pub fn render(control: &JobControl) -> String {
    let s = control.snapshot();
    let phase = escape(s.phase);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP rowferry_{name} {help}");
        let _ = writeln!(out, "# TYPE rowferry_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "rowferry_{name}{{{labels}}} {}", number(*value));
        }
    };
    let job = format!("phase=\"{phase}\"");
    let one = |v: f64| vec![(job.clone(), v)];
    metric(
        "rows_done",
        "gauge",
        "Rows done so far, earlier runs of the job included.",
        &one(s.rows_done as f64),
    );
    metric(
        "rows_total_estimate",
        "gauge",
        "The catalog's estimate of the rows in the job.",
        &one(s.rows_total_estimate as f64),
    );
    metric(
        "rows_per_second",
        "gauge",
        "Rows per second in this run.",
        &one(s.rows_per_sec),
    );
    metric(
        "chunks_done",
        "gauge",
        "Chunks committed so far, earlier runs included.",
        &one(s.chunks_done as f64),
    );
    metric(
        "retries_total",
        "counter",
        "Chunk attempts retried (deadlocks, lock timeouts, lost connections).",
        &one(s.retries as f64),
    );
    metric(
        "eta_seconds",
        "gauge",
        "Estimated seconds to go (NaN until a rate is known).",
        &one(s.eta_s.unwrap_or(f64::NAN)),
    );
    let throttled = s.throttled.is_some();
    metric(
        "throttled",
        "gauge",
        "1 while chunks are held back.",
        &one(f64::from(u8::from(throttled))),
    );
    let reason = s.throttled.as_deref().map(escape).unwrap_or_default();
    metric(
        "throttle_reason",
        "gauge",
        "1, labelled with why chunks are held back (empty when they are not).",
        &[(format!("{job},reason=\"{reason}\""), 1.0)],
    );
    metric(
        "paused",
        "gauge",
        "1 while the operator paused the job.",
        &one(f64::from(u8::from(control.throttle.paused()))),
    );
    let lags: Vec<(String, f64)> = control
        .replica_lags
        .iter()
        .map(|(label, lag)| {
            (
                format!("{job},replica=\"{}\"", escape(label)),
                lock(lag).unwrap_or(f64::NAN),
            )
        })
        .collect();
    if !lags.is_empty() {
        metric(
            "replica_lag_seconds",
            "gauge",
            "Replay lag of each --replica (NaN when it cannot be measured).",
            &lags,
        );
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// A label value: backslash, quote and newline escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Listen on `addr` (before the job writes anything: a bad address is an
/// input error).
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::input(format!(
            "--metrics-addr {addr}: cannot listen there ({e}); give a free HOST:PORT such as \
             127.0.0.1:9187"
        ))
    })
}

/// Serve `/metrics` until the returned task is aborted.
pub fn serve(
    listener: tokio::net::TcpListener,
    control: Arc<JobControl>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let control = control.clone();
            tokio::spawn(async move {
                // One request per connection; the head is all we read.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                let read = tokio::time::timeout(Duration::from_secs(5), async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                })
                .await;
                if read.is_err() {
                    return;
                }
                let request = String::from_utf8_lossy(&head);
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if path == "/metrics" || path == "/" {
                    ("200 OK", render(&control))
                } else {
                    (
                        "404 Not Found",
                        "not found: metrics are at /metrics\n".into(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::ChunkSizer;
    use crate::progress::Stats;
    use crate::throttle::Throttle;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn renders_every_metric_with_escaped_labels() {
        let throttle = Arc::new(Throttle::new(None, None));
        throttle.hold(Some("replica lag 3.2s on \"db2\"".into()));
        let stats = Arc::new(Stats::default());
        stats
            .rows_done
            .store(1234, std::sync::atomic::Ordering::Relaxed);
        let control = JobControl::new(
            "copy",
            throttle.clone(),
            Arc::new(Mutex::new(ChunkSizer::new(
                10,
                Duration::ZERO,
                10,
                1 << 20,
                10,
            ))),
            stats,
            CancellationToken::new(),
            Arc::new(AtomicU64::new(1000)),
            vec![("db2:5433".into(), Arc::new(Mutex::new(None)))],
            2,
            5000,
        );
        // The reason shows once a worker has been held.
        let stop = CancellationToken::new();
        stop.cancel();
        let text = render(&control);
        assert!(
            text.contains("rowferry_rows_done{phase=\"copy\"} 1234\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE rowferry_retries_total counter"));
        assert!(
            text.contains("rowferry_replica_lag_seconds{phase=\"copy\",replica=\"db2:5433\"} NaN")
        );
        assert!(text.contains("rowferry_eta_seconds{phase=\"copy\"} NaN"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("sample");
            assert!(value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
