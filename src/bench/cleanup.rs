//! Leaving nothing behind. Every process the benchmark starts carries `WF_BENCH_TAG=<session>`
//! in its environment (raw runs directly, daemon runs through the Spawn request), so one /proc
//! scan finds whatever any error path missed. The daemons and raw leaders are "owned": their
//! owners reap them (a raw leader only after its group is empty, so its group id cannot be
//! reused), and the orphan sweep leaves them alone. Temp dirs are removed by `TempDir`'s drop.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::procs;

static OWNED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn owned() -> MutexGuard<'static, Option<HashSet<i32>>> {
    // A poisoned lock only means a thread panicked while holding it; the set is still whole.
    OWNED.lock().unwrap_or_else(|p| p.into_inner())
}

/// A child that its owner reaps; the orphan sweep must not.
pub fn own(pid: i32) {
    owned().get_or_insert_with(HashSet::new).insert(pid);
}

/// The owner has reaped `pid`.
pub fn disown(pid: i32) {
    if let Some(s) = owned().as_mut() {
        s.remove(&pid);
    }
}

/// Reap exited orphans re-parented to the benchmark.
pub fn reap_orphans() -> usize {
    let keep = owned().clone().unwrap_or_default();
    procs::reap_orphans(&keep)
}

/// The last line of defence: SIGKILL whatever still carries the session tag, then reap.
/// Returns how many processes were found alive.
pub fn sweep(tag_needle: &[u8]) -> usize {
    let mut total = 0;
    for _ in 0..50 {
        let n = procs::kill_all_with_env(tag_needle);
        total += n;
        reap_orphans();
        if n == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    total
}

/// A directory removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// A fresh directory `wf-bench-<pid>-<n>` under the system temp dir.
    pub fn new(keep: bool) -> std::io::Result<TempDir> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for i in 0..100u32 {
            let path = base.join(format!("wf-bench-{pid}-{:x}", nanos.wrapping_add(i)));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path, keep }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("cannot create a temp dir"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("wf-bench: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
