//! The one reaper (invariant 2). The daemon is a child subreaper, so setsid escapees and other
//! orphans of its runs are re-parented to it. SIGCHLD wakes this task; it reaps every exited child
//! that is *not* a registered run leader. Run leaders are reaped by their run task only after
//! their whole run is gone, so a leader's pid (and with it the run's process-group id) cannot be
//! reused while anything of the run lives.
//!
//! Nothing here calls `waitpid(-1)`: the reaper walks the daemon's children by pid, so it never
//! steals a leader's status. Spawning holds the registry lock from fork until the new leader is
//! registered, so a child that exits at once is never mistaken for an orphan; the sweep takes the
//! lock only to check and reap what its walk of /proc found, never for the walk.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, warn};

use crate::process::procscan;

/// How long the orphan sweep waits after a SIGCHLD, so that the SIGCHLDs of a busy spell share
/// one walk of /proc.
const ORPHAN_GATHER: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Registry {
    leaders: HashSet<i32>,
}

/// Shared handle on the leader registry; cheap to clone.
#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<Mutex<Registry>>,
}

/// Held while forking a leader: the reaper cannot run until the leader is registered.
pub struct SpawnGuard<'a> {
    guard: MutexGuard<'a, Registry>,
}

impl SpawnGuard<'_> {
    /// Register a freshly spawned leader; from now on only its run task reaps it.
    pub fn register(&mut self, pid: i32) {
        self.guard.leaders.insert(pid);
    }
}

impl Reaper {
    pub fn new() -> Reaper {
        Reaper::default()
    }

    /// Make this process a child subreaper. Call once at start, before any spawn.
    pub fn become_subreaper() -> nix::Result<()> {
        nix::sys::prctl::set_child_subreaper(true)
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A poisoned lock only means another thread panicked while holding it; the set is
        // still consistent (inserts and removes are single operations).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the lock for a spawn. Never held across an await.
    pub fn spawn_guard(&self) -> SpawnGuard<'_> {
        SpawnGuard { guard: self.lock() }
    }

    /// The run task has reaped its leader (or given it up): orphans rules apply again.
    pub fn unregister(&self, pid: i32) {
        self.lock().leaders.remove(&pid);
    }

    /// Reap every exited child that is not a registered leader. Returns how many were reaped.
    pub fn reap_orphans(&self) -> usize {
        // The walk of /proc goes first, without the lock, so a spawn never waits for it. A child
        // it finds is either registered by the time the lock is taken (a spawn holds the lock
        // from fork to registration) or not a leader; one forked after the walk waits for the
        // next sweep.
        let children = procscan::own_children();
        let guard = self.lock();
        let mut reaped = 0;
        for pid in children {
            if guard.leaders.contains(&pid) {
                continue;
            }
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    reaped += 1;
                    debug!(pid, ?status, "reaped orphan");
                }
                Err(nix::errno::Errno::ECHILD) => {}
                Err(e) => warn!(pid, error = %e, "waitpid on orphan failed"),
            }
        }
        reaped
    }

    /// Run forever: reap shortly after every SIGCHLD, and sweep every few seconds in case a signal was
    /// coalesced with one that arrived while a sweep was running.
    pub async fn run(self) {
        let mut signals = match signal_hook_tokio::Signals::new([signal_hook::consts::SIGCHLD]) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot watch SIGCHLD; falling back to sweeping every 100 ms");
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.reap_orphans();
                }
            }
        };
        let mut sweep = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                s = signals.next() => {
                    if s.is_none() {
                        return;
                    }
                    // Run leaders are noticed through their pidfds, not here: this sweep is only
                    // for adopted orphans, which can wait a moment. Gather the SIGCHLDs of a busy
                    // spell into one walk of /proc.
                    tokio::time::sleep(ORPHAN_GATHER).await;
                }
                _ = sweep.tick() => {}
            }
            let this = self.clone();
            // /proc reads and waitpid are quick; keep them off the async workers anyway.
            let _ = tokio::task::spawn_blocking(move || this.reap_orphans()).await;
        }
    }
}
