//! Streaming a run's log files: the tail of each stream, then (with follow) new output as the
//! drains write it, until the run's drains are done. A follow of a queued run first waits for
//! it to start.
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::proto::{LogChunk, LogStream};
use crate::run::output::{CappedLog, Stream};
use crate::run::RunStatus;
use crate::supervisor::{LogSource, SupervisorHandle};
use tokio::sync::broadcast;

const CHUNK: usize = 64 * 1024;

/// Send `[from, len)` of a file in chunks; returns the new offset, or None if the client left.
async fn send_range(
    path: &Path,
    from: u64,
    stream: LogStream,
    tx: &mpsc::Sender<Result<LogChunk, Status>>,
) -> Option<u64> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Some(from);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // A file that shrank was rotated: the rest of what we were reading is now the older
    // segment; send its remainder, then start the new segment from its beginning.
    let mut off = from;
    if from > len {
        let older = CappedLog::older(path);
        let olen = std::fs::metadata(&older).map(|m| m.len()).unwrap_or(0);
        if from < olen {
            Box::pin(send_range(&older, from, stream, tx)).await?;
        }
        off = 0;
    }
    if f.seek(SeekFrom::Start(off)).is_err() {
        return Some(off);
    }
    while off < len {
        let want = ((len - off) as usize).min(CHUNK);
        let mut buf = vec![0u8; want];
        let n = match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.truncate(n);
        off += n as u64;
        let chunk = LogChunk {
            stream: stream as i32,
            data: buf,
        };
        if tx.send(Ok(chunk)).await.is_err() {
            return None;
        }
    }
    Some(off)
}

/// For a follow of a queued run: wait until the run has left QUEUED (started, or ended without
/// starting), then its log source. None when the client left, the daemon is stopping, or the
/// run is gone. Event driven: the run's own events wake it; a lagging subscription asks again.
pub async fn wait_until_started(
    handle: &SupervisorHandle,
    run_id: &str,
    tx: &mpsc::Sender<Result<LogChunk, Status>>,
    shutdown: &CancellationToken,
) -> Option<LogSource> {
    // Subscribed before asking, so a start between the two is not missed.
    let mut events = handle.subscribe();
    loop {
        match handle.logs(run_id).await {
            Ok(s) if !s.queued => return Some(s),
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return None;
            }
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tx.closed() => return None,
                ev = events.recv() => match ev {
                    Ok(ev) if ev.run_id == run_id && ev.status != RunStatus::Queued => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

pub async fn stream_logs(
    mut source: LogSource,
    tail: u64,
    follow: bool,
    tx: mpsc::Sender<Result<LogChunk, Status>>,
    shutdown: CancellationToken,
) {
    let streams = [
        (Stream::Stdout, LogStream::Stdout),
        (Stream::Stderr, LogStream::Stderr),
    ];
    let mut offsets = [0u64; 2];
    for (i, (s, ls)) in streams.iter().enumerate() {
        let path = source.dir.join(s.file_name());
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // The tail may reach back into the older segment of a capped log.
        if tail > len {
            let older = CappedLog::older(&path);
            let olen = std::fs::metadata(&older).map(|m| m.len()).unwrap_or(0);
            let want = (tail - len).min(olen);
            if want > 0 && send_range(&older, olen - want, *ls, &tx).await.is_none() {
                return;
            }
        }
        match send_range(&path, len.saturating_sub(tail), *ls, &tx).await {
            Some(o) => offsets[i] = o,
            None => return,
        }
    }
    if !follow {
        return;
    }
    loop {
        let done = source.progress.borrow_and_update().done;
        for (i, (s, ls)) in streams.iter().enumerate() {
            let path = source.dir.join(s.file_name());
            match send_range(&path, offsets[i], *ls, &tx).await {
                Some(o) => offsets[i] = o,
                None => return,
            }
        }
        if done {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            changed = source.progress.changed() => {
                if changed.is_err() {
                    // The run task is gone: one last read above on the next turn, then stop.
                    for (i, (s, ls)) in streams.iter().enumerate() {
                        let path = source.dir.join(s.file_name());
                        if send_range(&path, offsets[i], *ls, &tx).await.map(|o| offsets[i] = o).is_none() {
                            return;
                        }
                    }
                    return;
                }
            }
        }
    }
}
