//! The log cap (`[logs] max_bytes_per_stream`): a run that prints far more than the cap runs to
//! its end, only the newest output is kept on disk within the cap, the run says its output was
//! truncated, and Logs with `tail_bytes` returns exactly the newest bytes.
mod common;

use std::path::Path;

use common::*;
use wf_supervisor::proto::RunStatus;

const CAP: u64 = 65_536;
const FLOOD: u64 = 1_000_000;
/// The size of one read from the pipe and of one flood write: the slack the brief allows.
const CHUNK: u64 = 64 * 1024;

/// The fake agent's flood (see its module doc): the first `len` bytes of the concatenated
/// 64-byte lines `flood <line number, 57 digits zero-padded>\n`.
fn flood_bytes(len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize + 64);
    let mut line = 0u64;
    while (out.len() as u64) < len {
        out.extend_from_slice(format!("flood {line:057}\n").as_bytes());
        line += 1;
    }
    out.truncate(len as usize);
    out
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A daemon whose log cap is [`CAP`] bytes a stream.
async fn capped_daemon() -> Daemon {
    Daemon::start_with(Options {
        extra_toml: format!("[logs]\nmax_bytes_per_stream = {CAP}\n"),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_cap_keeps_the_newest_output() {
    let daemon = capped_daemon().await;
    let api = daemon.api();
    let flood = flood_bytes(FLOOD);
    assert_eq!(&flood[..64], format!("flood {:057}\n", 0).as_bytes());

    let run = api.spawn(&fake(&["--flood", &FLOOD.to_string()])).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.exit_code, Some(0), "{run:?}");
    assert!(
        run.output_truncated,
        "1 MB through a 64 KiB cap, yet output_truncated is false: {run:?}"
    );

    // On disk: at most the cap (plus one chunk), and it is the end of the flood.
    let dir = daemon.run_dir(&run.run_id);
    let current = dir.join("stdout.log");
    let older = dir.join("stdout.log.1");
    let on_disk = file_len(&current) + file_len(&older);
    assert!(
        on_disk <= CAP + CHUNK,
        "{on_disk} bytes of stdout on disk under a cap of {CAP}"
    );
    assert!(
        on_disk >= CAP / 2,
        "only {on_disk} bytes of stdout kept under a cap of {CAP}"
    );
    let mut kept = std::fs::read(&older).unwrap_or_default();
    kept.extend(std::fs::read(&current).expect("stdout.log"));
    assert!(
        flood.ends_with(&kept),
        "the {} bytes on disk are not the end of the flood",
        kept.len()
    );
    let entries: Vec<String> = std::fs::read_dir(&dir)
        .expect("the run's log folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("stdout"))
        .collect();
    assert!(
        entries.len() <= 2,
        "more stdout segments than the current and one older: {entries:?}"
    );

    // Logs with a tail returns exactly the newest bytes.
    let (out, err) = api.logs(&run.run_id, 1000).await;
    assert_eq!(
        out.len(),
        1000,
        "Logs tail 1000 returned {} bytes",
        out.len()
    );
    assert!(
        out == flood[flood.len() - 1000..],
        "Logs tail 1000 is not the last 1000 bytes of the flood: {:?}",
        String::from_utf8_lossy(&out[..out.len().min(128)])
    );
    assert!(
        String::from_utf8_lossy(&err).contains(&format!("flood: {FLOOD} bytes")),
        "stderr: {:?}",
        String::from_utf8_lossy(&err)
    );
    // A tail longer than what is kept returns all that is kept.
    let (all, _) = api.logs(&run.run_id, 10 * CAP).await;
    assert_eq!(all.len() as u64, on_disk, "Logs of everything kept");
    assert!(all == kept, "Logs of everything kept differs from the disk");

    daemon.assert_run_gone(&run.run_id, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_under_the_cap_is_kept_whole_and_not_truncated() {
    let daemon = capped_daemon().await;
    let api = daemon.api();
    // More than half the cap (one segment), so the output spans both segments, but under it.
    let small = 50_000u64;
    let run = api.spawn(&fake(&["--flood", &small.to_string()])).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert!(!run.output_truncated, "{run:?}");
    let (out, _) = api.logs(&run.run_id, 10 * CAP).await;
    assert!(out == flood_bytes(small), "{} bytes came back", out.len());
    daemon.assert_run_gone(&run.run_id, &[]).await;
}
