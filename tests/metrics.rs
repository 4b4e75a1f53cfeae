//! `/metrics` on `[metrics] listen`: the body parses as Prometheus text (with a parser crate,
//! not by pattern), its counters move as runs start and end, scrape-time gauges follow the live
//! runs, and no metric carries a run id; a reload cannot move the listener and says so.
mod common;

use std::collections::HashMap;

use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wf_supervisor::proto::RunStatus;

/// GET `path` over plain HTTP/1.1; returns the status code, the headers and the body.
async fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the metrics listener");
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, head.to_string(), dechunk(head, body))
}

/// The body of a chunked response, or the body as is.
fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

struct Scraped {
    samples: Vec<Sample>,
}

impl Scraped {
    /// The value of the sample `name` whose labels include `labels`; None when absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(b) => b.last().map(|b| b.count).unwrap_or(0.0),
                Value::Summary(_) => f64::NAN,
            })
    }

    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

async fn scrape(port: u16) -> Scraped {
    let (code, head, body) = http_get(port, "/metrics").await;
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = Scrape::parse(lines).expect("the body parses as Prometheus text");
    // The parser skips what it cannot read: every sample line must have become a sample (the
    // buckets, sum and count of a histogram fold into one).
    let sample_lines = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| !l.contains("_bucket{") && !l.contains("_sum") && !l.contains("_created"))
        .count();
    assert!(
        parsed.samples.len() >= sample_lines / 2 && !parsed.samples.is_empty(),
        "{} samples from {sample_lines} lines:\n{body}",
        parsed.samples.len()
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    for s in &parsed.samples {
        assert!(
            !s.labels.keys().any(|k| k.contains("run")),
            "a run label on {}: {:?}",
            s.metric,
            s.labels
        );
        assert!(
            !s.labels.values().any(|v| v.starts_with("run_")),
            "a run id on {}: {:?}",
            s.metric,
            s.labels
        );
    }
    Scraped {
        samples: parsed.samples,
    }
}

fn by_name(s: &Scraped) -> HashMap<String, usize> {
    count_by(s.samples.iter().map(|s| s.metric.clone()))
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_runs_and_carry_no_run_ids() {
    let port = free_port();
    let daemon = Daemon::start_with(Options {
        extra_toml: format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\nusage_sample_interval_ms = 100\n"
        ),
        grace_ms: 1000,
        ..Default::default()
    })
    .await;
    let api = daemon.api();

    let first = scrape(port).await;
    assert_eq!(first.count("wf_runs_started_total", &[]), 0.0);
    assert!(
        first
            .value("wf_process_resident_memory_bytes", &[])
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(first.value("wf_process_open_fds", &[]).unwrap_or(0.0) > 0.0);
    assert!(
        first
            .value("wf_process_start_time_seconds", &[])
            .unwrap_or(0.0)
            > 1.6e9
    );

    // A run that hangs: live, started.
    let hang = api.spawn(&fake(&["--hang"])).await;
    api.wait_running(&hang.run_id).await;
    let live = scrape(port).await;
    assert_eq!(
        live.count(
            "wf_runs_live",
            &[("status", "running"), ("queue", "default")]
        ),
        1.0,
        "{:?}",
        by_name(&live)
    );
    assert_eq!(
        live.count("wf_runs_started_total", &[("workflow", "")]),
        1.0
    );
    assert_eq!(live.count("wf_spawn_latency_seconds_count", &[]), 1.0);

    // It is killed, and a second run ends on its own.
    api.kill(&hang.run_id).await;
    let ok = api.spawn(&fake(&["--exit", "0"])).await;
    assert_eq!(
        api.wait_terminal(&ok.run_id, TIMEOUT).await.status(),
        RunStatus::Succeeded
    );
    let after = scrape(port).await;
    assert_eq!(
        after.count("wf_runs_started_total", &[("workflow", "")]),
        2.0
    );
    assert_eq!(
        after.count("wf_runs_ended_total", &[("status", "killed")]),
        1.0
    );
    assert_eq!(
        after.count("wf_runs_ended_total", &[("status", "succeeded")]),
        1.0
    );
    assert_eq!(after.count("wf_runs_live", &[("status", "running")]), 0.0);
    assert!(after.count("wf_kill_duration_seconds_count", &[]) >= 1.0);
    assert!(after.count("wf_store_commit_seconds_count", &[]) >= 1.0);
    assert!(after.value("wf_run_cpu_seconds_total", &[]).is_some());

    // Only /metrics is served.
    let (code, _, _) = http_get(port, "/nothing-here").await;
    assert_eq!(code, 404);
    daemon.assert_run_gone(&hang.run_id, &[]).await;
}

/// `metrics.listen` is bound once, at start: a reload that changes it says in the log that it
/// needs a restart, and `/metrics` stays where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_metrics_listen_says_it_needs_a_restart() {
    let (port, moved) = (free_port(), free_port());
    let daemon = Daemon::start_with(Options {
        extra_toml: format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Default::default()
    })
    .await;
    let text = std::fs::read_to_string(&daemon.config).expect("config");
    std::fs::write(
        &daemon.config,
        text.replace(&format!(":{port}\""), &format!(":{moved}\"")),
    )
    .expect("config");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(
        TIMEOUT,
        "the reload names metrics.listen as needing a restart",
        || {
            let log = daemon.current_log();
            log.lines().any(|l| {
                l.contains("metrics.listen changed; it needs a restart")
                    && l.contains(&format!("running=\"127.0.0.1:{port}\""))
                    && l.contains(&format!("configured=\"127.0.0.1:{moved}\""))
            }) && log
                .lines()
                .any(|l| l.contains("apply only after a restart") && l.contains("metrics.listen"))
        },
    )
    .await;
    // Still served (and parsed) on the address the daemon started with.
    assert!(!scrape(port).await.samples.is_empty());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", moved))
            .await
            .is_err(),
        "nothing listens on the new address before a restart"
    );
}
