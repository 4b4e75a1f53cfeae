//! Per-run resource usage: what a run costs the host (CPU, memory, processes, I/O), kept as the
//! run goes and recorded with its terminal status. Theory of operation: the run task attaches a
//! [`UsageProbe`] to the run's containment once its leader is spawned; a sampler reads it every
//! `metrics.usage_sample_interval`, Get reads it on demand, and the run task takes the final
//! reading before the cgroup is removed and freezes it, so a finished run keeps its figures.
//! How readings fold into the figures (peaks only grow, CPU never goes back, what this host cannot
//! give is named) is [`fold`], a pure function; the files are read in `process::usage`.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::process::usage::{read_cgroup, read_procs, Reading};

/// The figures of one run, as stored and as `Run.usage` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub processes: u32,
    pub processes_peak: u32,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// "cgroup" or "proc".
    pub source: String,
    /// Figures this host cannot give, and those estimated from /proc instead.
    pub unavailable: Vec<String>,
    pub sampled_at: i64,
    pub oom_killed: bool,
    pub pids_limit_hit: bool,
}

impl Usage {
    /// CPU time in seconds (user and system).
    pub fn cpu_seconds(&self) -> f64 {
        (self.cpu_user_ms + self.cpu_system_ms) as f64 / 1000.0
    }
}

/// Fold a reading into the figures so far: counts and peaks never go back (a process that
/// exited takes its CPU and its memory peak with it from /proc, but not from what was seen),
/// current figures are the reading's, and what the reading lacks is named in `unavailable`.
pub fn fold(prev: &Usage, r: &Reading, source: &str, now_ms: i64) -> Usage {
    let mut u = prev.clone();
    let mut unavailable = Vec::new();
    let mut missing = |name: &str, present: bool| {
        if !present {
            unavailable.push(name.to_string());
        }
    };
    missing("cpu", r.cpu_user_usec.is_some());
    missing("memory", r.memory_bytes.is_some());
    missing("io", r.io_read_bytes.is_some());
    missing("oom_kill", r.oom_kills.is_some());
    missing("pids_limit", r.pids_max_hits.is_some());
    u.cpu_user_ms = u.cpu_user_ms.max(r.cpu_user_usec.unwrap_or(0) / 1000);
    u.cpu_system_ms = u.cpu_system_ms.max(r.cpu_system_usec.unwrap_or(0) / 1000);
    u.memory_bytes = r.memory_bytes.unwrap_or(0);
    u.memory_peak_bytes = u
        .memory_peak_bytes
        .max(r.memory_peak_bytes.unwrap_or(0))
        .max(u.memory_bytes);
    u.processes = r.processes.unwrap_or(0);
    u.processes_peak = u
        .processes_peak
        .max(r.processes_peak.unwrap_or(0))
        .max(u.processes);
    u.io_read_bytes = u.io_read_bytes.max(r.io_read_bytes.unwrap_or(0));
    u.io_write_bytes = u.io_write_bytes.max(r.io_write_bytes.unwrap_or(0));
    u.oom_killed |= r.oom_kills.unwrap_or(0) > 0;
    u.pids_limit_hit |= r.pids_max_hits.unwrap_or(0) > 0;
    u.source = source.to_string();
    u.unavailable = unavailable;
    u.sampled_at = now_ms;
    u
}

/// What the core adds to a run's `error` from its final usage, if anything.
pub fn end_note(u: &Usage, memory_max: Option<u64>, pids_max: Option<u64>) -> Option<String> {
    let mut notes = Vec::new();
    if u.oom_killed {
        notes.push(match memory_max {
            Some(m) => format!("the kernel's OOM killer ended a process of the run (runs.memory_max_bytes {m}, peak {} bytes)", u.memory_peak_bytes),
            None => "the kernel's OOM killer ended a process of the run".to_string(),
        });
    }
    if u.pids_limit_hit {
        notes.push(match pids_max {
            Some(p) => format!("the run hit its process limit (pids.max {p}): a fork failed"),
            None => "the run hit its process limit (pids.max): a fork failed".to_string(),
        });
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// Where a run's processes are.
#[derive(Debug, Clone)]
pub enum Source {
    /// The run's cgroup, and its v1 memory cgroup where memory is on a v1 hierarchy.
    Cgroup {
        dir: PathBuf,
        memory_v1: Option<PathBuf>,
    },
    /// Process-group containment: the leader and its descendants (walked from the leader,
    /// not by a scan of all of /proc, so that sampling costs the size of the run).
    Procs { leader: i32 },
}

impl Source {
    /// The source of a run contained in `cg`.
    pub fn of_cgroup(cg: &crate::process::cgroup::RunCgroup) -> Source {
        Source::Cgroup {
            dir: cg.path().to_path_buf(),
            memory_v1: cg.memory_v1_path().map(|p| p.to_path_buf()),
        }
    }
}

#[derive(Debug, Default)]
struct ProbeState {
    source: Option<Source>,
    usage: Option<Usage>,
    finished: bool,
}

/// A run's usage, shared by its run task (which attaches, samples and finishes it) and the core
/// (which reads it). The lock is held only to copy figures in or out, never while reading files.
#[derive(Debug, Clone, Default)]
pub struct UsageProbe(Arc<Mutex<ProbeState>>);

impl UsageProbe {
    pub fn new() -> UsageProbe {
        UsageProbe::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Say where the run's processes are; the first reading is taken at once.
    pub fn attach(&self, source: Source) {
        self.lock().source = Some(source);
        self.sample();
    }

    /// The figures as last read (None before the run was spawned).
    pub fn latest(&self) -> Option<Usage> {
        self.lock().usage.clone()
    }

    /// Whether the final reading was taken.
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// Read the run's figures now (no-op once finished); returns them.
    pub fn sample(&self) -> Option<Usage> {
        let source = {
            let st = self.lock();
            if st.finished {
                return st.usage.clone();
            }
            st.source.clone()?
        };
        let (reading, name) = read_source(&source);
        let mut st = self.lock();
        if st.finished {
            return st.usage.clone();
        }
        let prev = st.usage.clone().unwrap_or_default();
        let u = fold(&prev, &reading, name, crate::time::now_ms());
        st.usage = Some(u.clone());
        Some(u)
    }

    /// Take the final reading (before the cgroup is removed) and keep it from then on.
    pub fn finish(&self) -> Option<Usage> {
        let u = self.sample();
        self.lock().finished = true;
        u
    }
}

fn read_source(source: &Source) -> (Reading, &'static str) {
    match source {
        Source::Cgroup { dir, memory_v1 } => {
            let members: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect();
            (read_cgroup(dir, memory_v1.as_deref(), &members), "cgroup")
        }
        Source::Procs { leader } => {
            // The leader stays unreaped until the run is empty: as a zombie its stat still
            // carries its own CPU and that of the children it reaped, but it is not counted
            // as a live process.
            let pids = crate::process::usage::tree_of(*leader);
            let live = pids
                .iter()
                .filter(|p| {
                    crate::process::procscan::stat(**p)
                        .is_some_and(|s| s.state != 'Z' && s.state != 'X')
                })
                .count() as u32;
            let mut r = read_procs(&pids);
            r.processes = Some(live);
            (r, "proc")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(cpu_ms: u64, mem: u64, peak: u64, procs: u32) -> Reading {
        Reading {
            cpu_user_usec: Some(cpu_ms * 1000),
            cpu_system_usec: Some(0),
            memory_bytes: Some(mem),
            memory_peak_bytes: Some(peak),
            processes: Some(procs),
            ..Reading::default()
        }
    }

    #[test]
    fn peaks_and_cpu_never_go_back() {
        let u = fold(&Usage::default(), &reading(500, 100, 120, 3), "proc", 1);
        let u = fold(&u, &reading(200, 10, 10, 1), "proc", 2);
        assert_eq!(u.cpu_user_ms, 500);
        assert_eq!(u.memory_bytes, 10);
        assert_eq!(u.memory_peak_bytes, 120);
        assert_eq!((u.processes, u.processes_peak), (1, 3));
        assert_eq!(u.sampled_at, 2);
        assert_eq!(u.source, "proc");
    }

    #[test]
    fn missing_figures_are_named() {
        let u = fold(&Usage::default(), &reading(1, 1, 1, 1), "cgroup", 1);
        assert_eq!(u.unavailable, vec!["io", "oom_kill", "pids_limit"]);
        let full = Reading {
            io_read_bytes: Some(1),
            io_write_bytes: Some(2),
            oom_kills: Some(0),
            pids_max_hits: Some(0),
            ..reading(1, 1, 1, 1)
        };
        let u = fold(&u, &full, "cgroup", 2);
        assert!(u.unavailable.is_empty());
        assert_eq!((u.io_read_bytes, u.io_write_bytes), (1, 2));
    }

    #[test]
    fn oom_and_pids_flags_stick_and_explain_the_end() {
        let hit = Reading {
            oom_kills: Some(1),
            pids_max_hits: Some(2),
            ..reading(1, 1, 1, 1)
        };
        let u = fold(&Usage::default(), &hit, "cgroup", 1);
        let u = fold(&u, &reading(1, 0, 0, 0), "cgroup", 2);
        assert!(u.oom_killed && u.pids_limit_hit);
        let note = end_note(&u, Some(64 << 20), Some(10)).expect("a note");
        assert!(
            note.contains("OOM killer") && note.contains("67108864"),
            "{note}"
        );
        assert!(note.contains("pids.max 10"), "{note}");
        assert_eq!(end_note(&Usage::default(), None, None), None);
    }

    #[test]
    fn a_finished_probe_keeps_its_figures() {
        let p = UsageProbe::new();
        assert_eq!(p.sample(), None);
        p.attach(Source::Procs {
            leader: std::process::id() as i32,
        });
        let first = p.finish().expect("a reading");
        assert_eq!(first.source, "proc");
        assert!(first.memory_peak_bytes > 0);
        assert!(p.is_finished());
        assert_eq!(p.sample(), Some(first));
    }
}
