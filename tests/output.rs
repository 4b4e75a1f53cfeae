//! Output and progress: a flooding agent is drained to the end with the daemon's memory flat and
//! the exact tail served by Logs; heartbeat lines on fd 3 move the run's heartbeat fields; the
//! agent sees exactly fds 0-3 and its WF_* environment; replayed stream-json reaches the logs
//! unchanged; a quiet run holds no log file open.
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wf_supervisor::proto::{LogStream, LogsRequest, RunStatus};

const FLOOD_BYTES: u64 = 200_000_000;
const TAIL_BYTES: u64 = 100_003;
/// The daemon may grow by this much while draining the flood; output must not be held in memory.
const MAX_RSS_GROWTH_KIB: u64 = 32 * 1024;
/// A Claude stream-json transcript the fake agent replays.
const STREAM_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/claude-stream.jsonl"
);

/// Bytes `[from, to)` of the fake agent's flood stream: 64-byte lines `flood <57 digits>\n`.
fn flood_bytes(from: u64, to: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((to - from) as usize);
    for line in from / 64..to.div_ceil(64) {
        let text = format!("flood {line:057}\n");
        let start = line * 64;
        let lo = from.saturating_sub(start) as usize;
        let hi = (to - start).min(64) as usize;
        out.extend_from_slice(&text.as_bytes()[lo..hi]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_flood_completes_with_flat_memory_and_exact_tail() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let baseline = daemon.rss_kib().expect("daemon VmRSS");

    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), daemon.pid);
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let run = api
        .spawn(&fake(&["--flood", &FLOOD_BYTES.to_string()]))
        .await;
    let run = api
        .wait_terminal(&run.run_id, Duration::from_secs(300))
        .await;
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "daemon VmRSS: baseline {baseline} KiB, peak {peak} KiB, growth {} KiB",
        peak - baseline
    );

    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.stdout_bytes, FLOOD_BYTES, "{run:?}");
    assert!(
        run.output_truncated,
        "200 MB is over the default cap: {run:?}"
    );
    assert!(
        peak - baseline < MAX_RSS_GROWTH_KIB,
        "the daemon grew by {} KiB while draining {FLOOD_BYTES} bytes (baseline {baseline} KiB, \
         peak {peak} KiB)",
        peak - baseline
    );

    let (out, err) = api.logs(&run.run_id, TAIL_BYTES).await;
    eprintln!("agent stderr: {}", String::from_utf8_lossy(&err).trim());
    assert_eq!(
        out.len() as u64,
        TAIL_BYTES,
        "Logs returned {} bytes",
        out.len()
    );
    let expected = flood_bytes(FLOOD_BYTES - TAIL_BYTES, FLOOD_BYTES);
    assert!(
        out == expected,
        "the tail differs; got ...{:?}, expected ...{:?}",
        String::from_utf8_lossy(&out[out.len().saturating_sub(80)..]),
        String::from_utf8_lossy(&expected[expected.len() - 80..])
    );
    assert!(
        String::from_utf8_lossy(&err).contains(&format!("flood: {FLOOD_BYTES} bytes in")),
        "stderr: {}",
        String::from_utf8_lossy(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_on_fd3_move_last_heartbeat_and_count() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api
        .spawn(&fake(&[
            "--heartbeats",
            "5",
            "--heartbeat-interval-ms",
            "300",
            "--hang",
        ]))
        .await;

    // (heartbeats, last_heartbeat_at) as seen by polling Get until all five have arrived.
    let mut seen: Vec<(u64, i64)> = Vec::new();
    let mut latest = api.get(&run.run_id).await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while latest.heartbeats < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "five heartbeats within {TIMEOUT:?}; seen {seen:?}"
        );
        seen.push((latest.heartbeats, latest.last_heartbeat_at));
        tokio::time::sleep(POLL).await;
        latest = api.get(&latest.run_id).await;
    }
    seen.push((latest.heartbeats, latest.last_heartbeat_at));

    assert_eq!(latest.heartbeats, 5, "{latest:?}");
    assert!(
        latest.last_heartbeat_at >= latest.started_at && latest.started_at > 0,
        "{latest:?}"
    );
    for pair in seen.windows(2) {
        assert!(
            pair[1].0 >= pair[0].0 && pair[1].1 >= pair[0].1,
            "heartbeat fields went backwards: {seen:?}"
        );
    }
    let stamps = count_by(seen.iter().filter(|s| s.0 > 0).map(|s| s.1));
    assert!(
        stamps.len() >= 2,
        "last_heartbeat_at should move between heartbeats: {seen:?}"
    );
    for (count, at) in &seen {
        assert_eq!(*count == 0, *at == 0, "count and time disagree: {seen:?}");
    }

    let response = api.kill(&latest.run_id).await;
    assert!(response.success, "{response:?}");
    daemon.assert_run_gone(&latest.run_id, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sees_exactly_fds_0_to_3_and_its_environment() {
    agent_sees_exactly_fds_0_to_3(Daemon::start().await).await;
}

/// The fork + pre-exec spawn (`runs.spawn_method = "fork"`) sets the child up the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fork_spawn_method_gives_the_same_child() {
    let daemon = Daemon::start_with(Options {
        runs_toml: "spawn_method = \"fork\"\n".into(),
        ..Options::default()
    })
    .await;
    agent_sees_exactly_fds_0_to_3(daemon).await;
}

async fn agent_sees_exactly_fds_0_to_3(daemon: Daemon) {
    let api = daemon.api();
    let run = api.spawn(&fake(&["--print-fds", "--hang"])).await;
    let fds = api.wait_line(&run.run_id, "fds: ").await;
    let env = api.wait_line(&run.run_id, "env: ").await;
    assert_eq!(fds, "0 1 2 3");
    assert_eq!(env, format!("WF_RUN_ID={} WF_HEARTBEAT_FD=3", run.run_id));

    let run = api.wait_running(&run.run_id).await;
    let link = |fd: i32| {
        std::fs::read_link(format!("/proc/{}/fd/{fd}", run.pid))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("<{e}>"))
    };
    assert_eq!(link(0), "/dev/null", "stdin");
    for fd in 1..=3 {
        assert!(link(fd).starts_with("pipe:"), "fd {fd} is {}", link(fd));
    }

    let response = api.kill(&run.run_id).await;
    assert!(response.success, "{response:?}");
    daemon.assert_run_gone(&run.run_id, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_stream_json_reaches_logs_unchanged() {
    let fixture = STREAM_FIXTURE;
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api
        .spawn(&fake(&["--replay", fixture, "--replay-delay-ms", "20"]))
        .await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    let expected = std::fs::read_to_string(fixture).expect("fixture");
    assert_eq!(api.stdout(&run.run_id).await, expected);
    assert_eq!(run.stdout_bytes, expected.len() as u64, "{run:?}");
}

/// Logs with follow sends the output as it is written and ends once the run has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_output_until_the_run_ends() {
    let fixture = STREAM_FIXTURE;
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api
        .spawn(&fake(&[
            "--marker",
            "first",
            "--sleep-ms",
            "300",
            "--replay",
            fixture,
            "--replay-delay-ms",
            "100",
        ]))
        .await;
    api.wait_line(&run.run_id, "first").await;
    let mut stream = api
        .client
        .clone()
        .logs(LogsRequest {
            run_id: run.run_id.clone(),
            follow: true,
            tail_bytes: 0,
        })
        .await
        .expect("Logs")
        .into_inner();
    let mut out = Vec::new();
    let read = async {
        while let Some(chunk) = stream.message().await.expect("Logs stream") {
            if chunk.stream() == LogStream::Stdout {
                out.extend_from_slice(&chunk.data);
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("the followed stream ends after the run");
    let expected = format!(
        "first\n{}",
        std::fs::read_to_string(fixture).expect("fixture")
    );
    assert_eq!(String::from_utf8_lossy(&out), expected);
    assert!(is_terminal(api.get(&run.run_id).await.status()));
}

/// Every pipe is drained whatever the agent prints: ten MB on stderr, and a heartbeat pipe
/// written as fast as the agent can, each line counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_and_heartbeat_floods_are_drained_and_counted() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let stderr_run = api
        .spawn(&sh("head -c 10000000 /dev/zero >&2; echo done"))
        .await;
    let beats_run = api
        .spawn(&fake(&[
            "--heartbeats",
            "20000",
            "--heartbeat-interval-ms",
            "0",
        ]))
        .await;

    let run = api.wait_terminal(&stderr_run.run_id, TIMEOUT * 2).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.stderr_bytes, 10_000_000, "{run:?}");
    assert_eq!(api.stdout(&run.run_id).await, "done\n");

    let run = api.wait_terminal(&beats_run.run_id, TIMEOUT * 2).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    // The count may trail the exit by a moment, but must reach every line.
    let run = wait_for(TIMEOUT, "all 20000 heartbeats counted", || async {
        let run = api.get(&beats_run.run_id).await;
        (run.heartbeats >= 20_000).then_some(run)
    })
    .await;
    assert_eq!(run.heartbeats, 20_000, "{run:?}");
}

/// A line far longer than `logs.max_line_bytes` (1 MiB by default) is still logged in full and
/// does not stop the run or the lines after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_line_is_logged_in_full() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api
        .spawn(&sh(
            "head -c 5000000 /dev/zero | tr '\\0' a; echo; echo after",
        ))
        .await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.stdout_bytes, 5_000_000 + 1 + 6, "{run:?}");
    let (out, _) = api.logs(&run.run_id, 1000).await;
    let mut expected = vec![b'a'; 1000 - 7];
    expected.extend_from_slice(b"\nafter\n");
    assert_eq!(out, expected);
}

/// The daemon keeps a run's log file open only while output flows: once the agent goes quiet it
/// is closed (an idle run holds no log fd), and output that comes later is appended to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_run_holds_no_log_file_open() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let go = tempfile::tempdir().expect("tempdir");
    let go = go.path().join("go");
    let script = format!(
        "echo first; while [ ! -e {0} ]; do sleep 0.05; done; echo second; sleep 60",
        go.display()
    );
    let run = api
        .spawn(&["sh".to_string(), "-c".to_string(), script])
        .await;
    api.wait_line(&run.run_id, "first").await;
    let dir = daemon.run_dir(&run.run_id);
    let open_logs = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", daemon.pid))
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .filter(|t| t.starts_with(&dir))
                    .map(|t| t.display().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(
        TIMEOUT,
        "the daemon closes the quiet run's log file",
        || open_logs().is_empty(),
    )
    .await;
    std::fs::write(&go, b"").expect("go file");
    api.wait_line(&run.run_id, "second").await;
    assert_eq!(api.stdout(&run.run_id).await, "first\nsecond\n");
    let response = api.kill(&run.run_id).await;
    assert!(response.success, "{response:?}");
    wait_until(TIMEOUT, "the ended run's log file is closed", || {
        open_logs().is_empty()
    })
    .await;
}
