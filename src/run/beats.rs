//! Heartbeat pipes (fd 3), from bytes to the core. Any line is a heartbeat; JSON lines may open
//! or close a critical section, which the run task sees through a watch channel (it lengthens a
//! graceful kill's grace).
//!
//! A quiet pipe is watched by its run's own task, which sleeps in the reactor until a line
//! arrives, reads what is there and tells the core at once. A busy pipe (one that had more
//! lines by then) is handed to the daemon's one poller: every `HEARTBEAT_BATCH` it reads every
//! busy pipe and sends the core one message for all of them, then hands back each pipe that had
//! nothing in that batch. So 200 agents beating 500 times a second cost the core about 100
//! messages a second rather than 20,000, the agents' writes wake nobody, and a watcher gets the
//! resulting events together, once per batch, rather than spread over every millisecond.
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tracing::{error, warn};

use crate::agent::heartbeat::{CriticalSection, HeartbeatState, HeartbeatTracker};
use crate::supervisor::Msg;

/// How long heartbeat lines may gather in a busy pipe between two reads, in ms.
pub const HEARTBEAT_BATCH_MS: u64 = 10;
const HEARTBEAT_BATCH: Duration = Duration::from_millis(HEARTBEAT_BATCH_MS);

/// What a run's heartbeats added since the core last heard of them.
#[derive(Debug)]
pub struct Beat {
    pub run_id: String,
    /// Heartbeats since the last report.
    pub count: u64,
    /// When they were read (ms since the epoch).
    pub at: i64,
    /// Set when the structured part (critical section, progress, message) changed.
    pub state: Option<Box<HeartbeatState>>,
}

/// The structured part of a heartbeat state, as the core last heard it.
type Said = (Option<CriticalSection>, Option<f64>, Option<String>, u64);

/// One run's heartbeat reader: the decoded state and what the core has not heard yet. It moves
/// between the run's task (pipe quiet) and the poller (pipe busy), with the pipe.
#[derive(Debug)]
struct Reader {
    run_id: String,
    tracker: HeartbeatTracker,
    critical: watch::Sender<Option<CriticalSection>>,
    /// Heartbeats read and not yet taken by the core.
    pending: u64,
    said: Option<Said>,
}

impl Reader {
    /// Read what waits in the (non-blocking) pipe: (heartbeats completed, end of file). A read
    /// shorter than the buffer emptied the pipe, so a busy pipe costs one read per batch; its
    /// end is then seen by the next batch's read.
    fn read(&mut self, fd: &OwnedFd) -> (u64, bool) {
        let mut buf = [0u8; 4096];
        let mut got = 0u64;
        let eof = loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    got += self.tracker.feed(&buf[..n], crate::time::now_ms()) as u64;
                    if n < buf.len() {
                        break false;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => break false,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warn!(run_id = self.run_id, error = %e, "heartbeat pipe read failed");
                    break true;
                }
            }
        };
        self.pending += got;
        let open = self.tracker.state().critical;
        if *self.critical.borrow() != open {
            self.critical.send_replace(open);
        }
        (got, eof)
    }

    /// The report of what is pending, and what to remember once the core has taken it.
    fn report(&self) -> (Beat, Option<Said>) {
        let s = self.tracker.state();
        let now = (
            s.critical,
            s.last_progress,
            s.last_message.clone(),
            s.malformed,
        );
        let (state, said) = if self.said.as_ref() != Some(&now) {
            (Some(Box::new(s.clone())), Some(now))
        } else {
            (None, None)
        };
        let beat = Beat {
            run_id: self.run_id.clone(),
            count: self.pending,
            at: crate::time::now_ms(),
            state,
        };
        (beat, said)
    }

    /// The core took the last report.
    fn taken(&mut self, said: Option<Said>) {
        self.pending = 0;
        if said.is_some() {
            self.said = said;
        }
    }
}

/// A busy pipe on its way to the poller, and the way back to its task.
struct Busy {
    fd: OwnedFd,
    reader: Reader,
    back: oneshot::Sender<Back>,
}

/// A pipe the poller hands back: quiet again, or at its end (`eof`).
struct Back {
    fd: OwnedFd,
    reader: Reader,
    eof: bool,
}

/// The daemon's heartbeat poller (see the module's comment). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Poller {
    tx: mpsc::UnboundedSender<Busy>,
}

impl Poller {
    /// Start the poller task on the current runtime, reporting to `core`. It ends once every
    /// handle is gone and no pipe is left with it.
    pub fn start(core: mpsc::Sender<Msg>) -> Poller {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(poll(rx, core));
        Poller { tx }
    }
}

impl std::fmt::Debug for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Busy")
            .field("run_id", &self.reader.run_id)
            .finish()
    }
}

/// What one batch found in one busy pipe.
#[derive(Clone, Copy)]
struct Found {
    got: u64,
    eof: bool,
}

async fn poll(mut rx: mpsc::UnboundedReceiver<Busy>, core: mpsc::Sender<Msg>) {
    let mut busy: Vec<Busy> = Vec::new();
    let mut found: Vec<Found> = Vec::new();
    let mut tick = tokio::time::interval(HEARTBEAT_BATCH);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if busy.is_empty() {
            match rx.recv().await {
                Some(b) => busy.push(b),
                None => return,
            }
            // The first batch one period after the hand-over, which followed a read.
            tick.reset();
        }
        tick.tick().await;
        while let Ok(b) = rx.try_recv() {
            busy.push(b);
        }
        found.clear();
        let mut beats = Vec::new();
        let mut reported = Vec::new();
        for (i, b) in busy.iter_mut().enumerate() {
            let (got, eof) = b.reader.read(&b.fd);
            found.push(Found { got, eof });
            if b.reader.pending > 0 {
                let (beat, said) = b.reader.report();
                beats.push(beat);
                reported.push((i, said));
            }
        }
        let mut core_gone = false;
        if !beats.is_empty() {
            match core.try_send(Msg::Heartbeats(beats)) {
                Ok(()) => {
                    for (i, said) in reported {
                        busy[i].reader.taken(said);
                    }
                }
                // The core is busy: the counts stay pending and go with the next batch.
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => core_gone = true,
            }
        }
        // Hand back the pipes that were quiet in this batch (nothing read, nothing pending) and
        // those at their end; everything goes back when the core is gone.
        let mut i = 0;
        while i < busy.len() {
            let f = found[i];
            let quiet = f.got == 0 && busy[i].reader.pending == 0;
            if f.eof || quiet || core_gone {
                let b = busy.swap_remove(i);
                found.swap_remove(i);
                // A task that is gone (its run was torn down) drops the pipe with this.
                let _ = b.back.send(Back {
                    fd: b.fd,
                    reader: b.reader,
                    eof: f.eof || core_gone,
                });
            } else {
                i += 1;
            }
        }
    }
}

/// Read a run's heartbeat pipe until its end (see the module's comment); returns the number of
/// heartbeats.
pub async fn drain_heartbeats(
    fd: OwnedFd,
    run_id: String,
    core: mpsc::Sender<Msg>,
    poller: Poller,
    max_line_bytes: usize,
    critical: watch::Sender<Option<CriticalSection>>,
) -> u64 {
    let mut reader = Reader {
        run_id: run_id.clone(),
        tracker: HeartbeatTracker::new(max_line_bytes.min(64 * 1024)),
        critical,
        pending: 0,
        said: None,
    };
    let mut fd = fd;
    loop {
        let rx = match pipe::Receiver::from_owned_fd(fd) {
            Ok(rx) => rx,
            Err(e) => {
                warn!(run_id, error = %e, "cannot watch heartbeat pipe");
                return reader.tracker.state().count;
            }
        };
        // A report the core could not take yet is tried again after a batch.
        let ready = if reader.pending > 0 {
            tokio::time::timeout(HEARTBEAT_BATCH, rx.readable())
                .await
                .ok()
        } else {
            Some(rx.readable().await)
        };
        if let Some(Err(e)) = ready {
            warn!(run_id, error = %e, "heartbeat pipe poll failed");
            break;
        }
        fd = match rx.into_nonblocking_fd() {
            Ok(fd) => fd,
            Err(e) => {
                warn!(run_id, error = %e, "cannot take the heartbeat pipe off the reactor");
                return reader.tracker.state().count;
            }
        };
        let (got, eof) = reader.read(&fd);
        if reader.pending > 0 {
            let (beat, said) = reader.report();
            match core.try_send(Msg::Heartbeat(beat)) {
                Ok(()) => reader.taken(said),
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        if eof {
            break;
        }
        if got == 0 && reader.pending == 0 {
            continue;
        }
        // Busy: the poller reads the pipe with the other busy ones until a batch finds nothing.
        let known = reader.tracker.state().count;
        let (back_tx, back_rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(b)) = poller.tx.send(Busy {
            fd,
            reader,
            back: back_tx,
        }) {
            // No poller (the daemon is stopping): read on alone, a batch at a time.
            (fd, reader) = (b.fd, b.reader);
            tokio::time::sleep(HEARTBEAT_BATCH).await;
            continue;
        }
        match back_rx.await {
            Ok(b) => {
                (fd, reader) = (b.fd, b.reader);
                if b.eof {
                    break;
                }
            }
            Err(_) => {
                error!(run_id, "the heartbeat poller dropped the pipe");
                return known;
            }
        }
    }
    reader.pending += reader.tracker.finish(crate::time::now_ms()) as u64;
    if reader.pending > 0 {
        let (beat, _) = reader.report();
        let _ = core.send(Msg::Heartbeat(beat)).await;
    }
    reader.tracker.state().count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write as _;
    use tokio::task::JoinHandle;

    fn pipe() -> (OwnedFd, std::fs::File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
        (r, std::fs::File::from(w))
    }

    fn drain(
        id: &str,
        fd: OwnedFd,
        core: &mpsc::Sender<Msg>,
        poller: &Poller,
    ) -> (JoinHandle<u64>, watch::Receiver<Option<CriticalSection>>) {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(drain_heartbeats(
            fd,
            id.to_string(),
            core.clone(),
            poller.clone(),
            1024,
            tx,
        ));
        (task, rx)
    }

    /// Every heartbeat message the core got so far: (single reports, batches as run lists).
    #[derive(Default)]
    struct Heard {
        counts: HashMap<String, u64>,
        singles: Vec<String>,
        batches: Vec<Vec<String>>,
    }

    impl Heard {
        fn take(&mut self, rx: &mut mpsc::Receiver<Msg>) {
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Heartbeat(b) => {
                        *self.counts.entry(b.run_id.clone()).or_default() += b.count;
                        self.singles.push(b.run_id);
                    }
                    Msg::Heartbeats(bs) => {
                        let mut ids = Vec::new();
                        for b in bs {
                            *self.counts.entry(b.run_id.clone()).or_default() += b.count;
                            ids.push(b.run_id);
                        }
                        self.batches.push(ids);
                    }
                    _ => {}
                }
            }
        }
    }

    #[tokio::test]
    async fn busy_pipes_are_read_together_and_a_quiet_one_goes_back_to_its_task() {
        let (core, mut rx) = mpsc::channel(1024);
        let poller = Poller::start(core.clone());
        let (ra, mut wa) = pipe();
        let (rb, mut wb) = pipe();
        let (ta, _) = drain("run_a", ra, &core, &poller);
        let (tb, _) = drain("run_b", rb, &core, &poller);
        let mut heard = Heard::default();
        for _ in 0..100 {
            wa.write_all(b"beat\n").expect("write a");
            wb.write_all(b"{\"progress\": 0.5}\n").expect("write b");
            tokio::time::sleep(Duration::from_millis(2)).await;
            heard.take(&mut rx);
        }
        assert!(
            heard.batches.iter().any(|ids| ids.len() == 2),
            "both busy pipes went to the core in one message: {:?}",
            heard.batches
        );
        // Quiet for many batches: both pipes are back with their tasks, so the next line is
        // reported by the task itself.
        tokio::time::sleep(Duration::from_millis(100)).await;
        heard.take(&mut rx);
        let singles = heard.singles.len();
        wa.write_all(b"beat\n").expect("write a");
        tokio::time::sleep(Duration::from_millis(50)).await;
        heard.take(&mut rx);
        assert_eq!(
            heard.singles.len(),
            singles + 1,
            "the quiet pipe's task reported it"
        );
        assert_eq!(heard.singles.last().map(String::as_str), Some("run_a"));
        drop((wa, wb));
        assert_eq!(ta.await.expect("drain a"), 101);
        assert_eq!(tb.await.expect("drain b"), 100);
        heard.take(&mut rx);
        assert_eq!(
            heard.counts.get("run_a"),
            Some(&101),
            "every line of a, once"
        );
        assert_eq!(
            heard.counts.get("run_b"),
            Some(&100),
            "every line of b, once"
        );
    }

    #[tokio::test]
    async fn a_critical_section_is_seen_while_the_pipe_is_busy_and_the_last_line_counts() {
        let (core, mut rx) = mpsc::channel(1024);
        let poller = Poller::start(core.clone());
        let (r, mut w) = pipe();
        let (task, mut critical) = drain("run_c", r, &core, &poller);
        // Keep the pipe busy so that the poller holds it when the section opens and closes.
        let beat = |w: &mut std::fs::File, line: &[u8]| {
            w.write_all(line).expect("write");
        };
        for _ in 0..10 {
            beat(&mut w, b"beat\n");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        beat(&mut w, b"{\"critical\": \"git\"}\n");
        tokio::time::timeout(Duration::from_secs(5), critical.wait_for(|c| c.is_some()))
            .await
            .expect("the section opened within 5 s")
            .expect("watch");
        assert_eq!(*critical.borrow(), Some(CriticalSection::Git));
        beat(&mut w, b"beat\n");
        beat(&mut w, b"{\"critical\": null}\n");
        tokio::time::timeout(Duration::from_secs(5), critical.wait_for(|c| c.is_none()))
            .await
            .expect("the section closed within 5 s")
            .expect("watch");
        // A last line without a newline, then the end.
        beat(&mut w, b"bye");
        drop(w);
        assert_eq!(task.await.expect("drain"), 14);
        let mut heard = Heard::default();
        heard.take(&mut rx);
        assert_eq!(heard.counts.get("run_c"), Some(&14));
    }

    #[tokio::test]
    async fn counts_the_core_cannot_take_yet_wait_and_none_is_lost() {
        // A core channel with room for one message, filled: every report finds it full.
        let (core, mut rx) = mpsc::channel(1);
        core.try_send(Msg::Wedge).expect("fill");
        let poller = Poller::start(core.clone());
        let (ra, mut wa) = pipe();
        let (rb, mut wb) = pipe();
        let (ta, _) = drain("run_a", ra, &core, &poller);
        let (tb, _) = drain("run_b", rb, &core, &poller);
        for _ in 0..30 {
            wa.write_all(b"beat\n").expect("write a");
            wb.write_all(b"beat\nbeat\n").expect("write b");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            matches!(rx.try_recv(), Ok(Msg::Wedge)),
            "nothing got past the full channel"
        );
        drop((wa, wb));
        // Now the core takes messages one at a time, as a slow core would.
        let mut heard = Heard::default();
        let both = async {
            let (a, b) = tokio::join!(ta, tb);
            (a.expect("drain a"), b.expect("drain b"))
        };
        tokio::pin!(both);
        let counts = loop {
            tokio::select! {
                c = &mut both => break c,
                m = rx.recv() => {
                    if let Some(m) = m {
                        let (tx, mut one) = mpsc::channel(1);
                        tx.try_send(m).expect("relay");
                        heard.take(&mut one);
                    }
                }
            }
        };
        assert_eq!(counts, (30, 60));
        heard.take(&mut rx);
        assert_eq!(heard.counts.get("run_a"), Some(&30));
        assert_eq!(heard.counts.get("run_b"), Some(&60));
    }
}
