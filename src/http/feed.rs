//! Where the status page's figures come from, read-only: the core's handle (List of the live
//! runs and the latest finished ones, Get, the queues' figures, a run's log files), the store
//! (alerts firing, a run's audit records) and the Watch broadcast, whose events are folded into
//! the page's [`Inputs`] by [`apply`]. Each read is one message to the core or one store read,
//! the same the API's viewers cause; nothing here changes a run.
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::run::output::Stream;
use crate::run::RunStatus;
use crate::store::{Alert, AuditRecord};
use crate::supervisor::{ApiError, LogSource, RunEvent, Selector};

use super::board::{Inputs, LastEvent, FINISHED_SHOWN};
use super::HttpContext;

/// How much of each of a run's streams its page shows first.
pub const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// The live runs, the latest finished ones, the queues and the alerts, with no events yet.
pub async fn snapshot(ctx: &HttpContext) -> Result<Inputs, ApiError> {
    let live = ctx
        .handle
        .list(
            Selector {
                statuses: RunStatus::LIVE.to_vec(),
                ..Selector::default()
            },
            0,
        )
        .await?;
    let done = ctx
        .handle
        .list(
            Selector {
                statuses: RunStatus::FINISHED.to_vec(),
                ..Selector::default()
            },
            FINISHED_SHOWN,
        )
        .await?;
    let mut inputs = Inputs {
        runs: live
            .iter()
            .chain(done.iter())
            .map(|r| (r.run_id.clone(), crate::grpc::run_to_proto(r)))
            .collect(),
        ..Inputs::default()
    };
    figures(ctx, &mut inputs).await?;
    Ok(inputs)
}

/// Refresh the queues' figures and the count of alerts firing.
pub async fn figures(ctx: &HttpContext, inputs: &mut Inputs) -> Result<(), ApiError> {
    inputs.queues = ctx
        .handle
        .queue_health()
        .await?
        .iter()
        .map(crate::grpc::queue_to_proto)
        .collect();
    let store = ctx.store.clone();
    let since = crate::time::now_ms() - 3_600_000;
    let read = tokio::task::spawn_blocking(move || {
        let open = store.open_alerts()?;
        let queue = store.alerts_of_kinds(crate::schedule::QUEUE_ALERT_KINDS, since)?;
        Ok::<_, crate::store::StoreError>((open, queue))
    })
    .await;
    let root = ctx.access.current().root_agents.is_some();
    match read {
        Ok(Ok((open, queue))) => inputs.alerts = firing(&open, &queue, root),
        _ => tracing::warn!("cannot read the alerts for the status page"),
    }
    Ok(())
}

/// Distinct alerts firing, counted as `wfctl top` counts them: the open ones (GetHealth), the
/// standing root-agents condition when it is not stored, and the unresolved queue alerts.
pub fn firing(open: &[Alert], queue: &[Alert], root_agents: bool) -> u32 {
    let mut seen: Vec<(i64, &str)> = Vec::new();
    for a in open
        .iter()
        .chain(queue.iter())
        .filter(|a| a.resolved_at == 0)
    {
        if !seen.contains(&(a.id, a.kind.as_str())) {
            seen.push((a.id, a.kind.as_str()));
        }
    }
    let stored_root = open.iter().any(|a| a.dedup_key == "agents_run_as_root");
    seen.len() as u32 + u32::from(root_agents && !stored_root)
}

/// Fold one Watch event into `inputs`; true when the board should be drawn again (a state
/// change; heartbeats only update the run's figures).
pub fn apply(inputs: &mut Inputs, ev: &RunEvent) -> bool {
    if let Some((at, n)) = ev.heartbeat {
        if let Some(r) = inputs.runs.get_mut(&ev.run_id) {
            r.last_heartbeat_at = at;
            r.heartbeats = n;
        }
        inputs
            .last_events
            .entry(ev.run_id.clone())
            .or_insert_with(|| LastEvent {
                at: ev.at,
                kind: ev.kind.to_string(),
                message: ev.message.clone(),
            });
        return false;
    }
    if let Some(run) = &ev.run {
        inputs
            .runs
            .insert(ev.run_id.clone(), crate::grpc::run_to_proto(run));
    }
    inputs.last_events.insert(
        ev.run_id.clone(),
        LastEvent {
            at: ev.at,
            kind: ev.kind.to_string(),
            message: ev.message.clone(),
        },
    );
    // Keep the finished runs to the ones the table can show.
    let shown: std::collections::BTreeSet<String> = super::board::ordered(&inputs.runs)
        .into_iter()
        .map(|r| r.run_id.clone())
        .collect();
    inputs.runs.retain(|id, _| shown.contains(id));
    inputs.last_events.retain(|id, _| shown.contains(id));
    true
}

/// The audit records of one run, newest first (at most 200).
pub async fn audit_of(ctx: &HttpContext, run_id: &str) -> Vec<AuditRecord> {
    let store = ctx.store.clone();
    let id = run_id.to_string();
    match tokio::task::spawn_blocking(move || store.list_audit(&id, 0, 200)).await {
        Ok(Ok(records)) => records,
        _ => {
            tracing::warn!(run_id, "cannot read the audit records for the status page");
            Vec::new()
        }
    }
}

/// A run's output as its page follows it: how far each stream has been read, and the bytes of
/// a character cut in two by a read, kept for the next one.
pub struct LogTail {
    dir: PathBuf,
    offsets: [u64; 2],
    partial: [Vec<u8>; 2],
}

const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

impl LogTail {
    /// The last `tail` bytes of each stream (stdout, then stderr), and the follower.
    pub fn open(source: &LogSource, tail: u64) -> (LogTail, String) {
        let mut t = LogTail {
            dir: source.dir.clone(),
            offsets: [0; 2],
            partial: [Vec::new(), Vec::new()],
        };
        let mut text = String::new();
        for i in 0..2 {
            let len = std::fs::metadata(t.path(i)).map_or(0, |m| m.len());
            let from = len.saturating_sub(tail);
            t.offsets[i] = from;
            let chunk = t.read(i);
            if from > 0 {
                // A tail that starts inside a character starts at the next one.
                text.push_str(chunk.trim_start_matches('\u{fffd}'));
            } else {
                text.push_str(&chunk);
            }
        }
        (t, text)
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(STREAMS[i].file_name())
    }

    /// What was written to either stream since the last read.
    pub fn more(&mut self) -> String {
        let mut text = self.read(0);
        text.push_str(&self.read(1));
        text
    }

    fn read(&mut self, i: usize) -> String {
        let Ok(mut f) = std::fs::File::open(self.path(i)) else {
            return String::new();
        };
        let len = f.metadata().map_or(0, |m| m.len());
        // The cap moved the file aside: its new segment starts from the beginning.
        if len < self.offsets[i] {
            self.offsets[i] = 0;
            self.partial[i].clear();
        }
        let want = (len - self.offsets[i]).min(1 << 20);
        let mut buf = std::mem::take(&mut self.partial[i]);
        if want > 0 && f.seek(SeekFrom::Start(self.offsets[i])).is_ok() {
            let start = buf.len();
            buf.resize(start + want as usize, 0);
            let n = f.read(&mut buf[start..]).unwrap_or(0);
            buf.truncate(start + n);
            self.offsets[i] += n as u64;
        }
        // Keep an incomplete last character for the next read.
        let cut = match std::str::from_utf8(&buf) {
            Ok(_) => buf.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => buf.len(),
        };
        self.partial[i] = buf.split_off(cut);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunRecord;
    use std::sync::Arc;

    fn alert(id: i64, kind: &str, resolved_at: i64) -> Alert {
        Alert {
            id,
            at: 1,
            kind: kind.into(),
            message: String::new(),
            acknowledged_at: 0,
            acknowledged_by: String::new(),
            resolved_at,
            dedup_key: format!("{kind}:{id}"),
            labels: Default::default(),
            last_seen: 1,
        }
    }

    #[test]
    fn alerts_are_counted_once_and_resolved_ones_not_at_all() {
        let open = [alert(1, "stuck_run", 0), alert(2, "queue_depth", 0)];
        let queue = [alert(2, "queue_depth", 0), alert(3, "queue_wait", 99)];
        assert_eq!(firing(&open, &queue, false), 2);
        assert_eq!(firing(&open, &queue, true), 3);
    }

    #[test]
    fn events_replace_runs_and_heartbeats_only_touch_figures() {
        let mut inputs = Inputs::default();
        let mut rec = RunRecord::for_test("run_5fbae44ab6f0", RunStatus::Running);
        let ev = |kind: &'static str, rec: &RunRecord| RunEvent {
            run_id: rec.run_id.clone(),
            at: 5,
            kind,
            message: String::new(),
            status: rec.status,
            run: Some(Arc::new(rec.clone())),
            heartbeat: None,
        };
        assert!(apply(&mut inputs, &ev("started", &rec)));
        let hb = RunEvent {
            run: None,
            heartbeat: Some((7, 3)),
            ..ev("heartbeat", &rec)
        };
        assert!(!apply(&mut inputs, &hb));
        assert_eq!(inputs.runs["run_5fbae44ab6f0"].heartbeats, 3);
        assert_eq!(inputs.last_events["run_5fbae44ab6f0"].kind, "started");
        rec.status = RunStatus::Killed;
        assert!(apply(&mut inputs, &ev("ended", &rec)));
        assert_eq!(
            inputs.runs["run_5fbae44ab6f0"].status,
            crate::proto::RunStatus::Killed as i32
        );
    }

    #[test]
    fn the_log_tail_keeps_characters_whole_across_reads() {
        let dir = tempfile::tempdir().expect("a dir");
        let out = dir.path().join("stdout.log");
        std::fs::write(&out, "héllo\n".as_bytes()).expect("write");
        let (progress_tx, progress) = tokio::sync::watch::channel(Default::default());
        let source = LogSource {
            dir: dir.path().to_path_buf(),
            progress,
            queued: false,
        };
        let (mut tail, text) = LogTail::open(&source, 1024);
        assert_eq!(text, "héllo\n");
        // "é" written in two halves.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&out)
            .expect("open");
        f.write_all(&[b'c', 0xc3]).expect("write");
        assert_eq!(tail.more(), "c");
        f.write_all(&[0xa9, b'\n']).expect("write");
        assert_eq!(tail.more(), "é\n");
        std::fs::write(dir.path().join("stderr.log"), "warn\n").expect("write");
        assert_eq!(tail.more(), "warn\n");
        drop(progress_tx);
    }
}
