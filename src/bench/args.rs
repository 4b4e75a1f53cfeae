//! Command line and the plan it yields: which measures run, and how many trials or how much
//! work each does (the full defaults, the `--quick` preset, `--trials N`).
use std::path::PathBuf;

use clap::Parser;

/// Every measure, in the order they run.
pub const MEASURES: &[&str] = &[
    "spawn_burst",
    "spawn_idle",
    "kill_tree",
    "kill_ignore",
    "kill_mixed",
    "kill_escapee",
    "throughput",
    "scale",
    "metrics",
    "flood",
    "heartbeats",
    "queue",
];

/// wf-bench: starts a real wf-supervisor and drives it through its gRPC socket as an
/// orchestrator would; compares every timed measure with a raw fork/exec baseline measured in
/// the same run. Prints a table; writes the raw numbers as JSON under the results dir.
#[derive(Debug, Parser)]
#[command(name = "wf-bench", version, about)]
pub struct Args {
    /// Run only these measures (comma-separated): spawn_burst, spawn_idle (or spawn for both),
    /// kill_tree, kill_ignore, kill_mixed, kill_escapee, throughput, scale, metrics, flood,
    /// heartbeats, queue.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub only: Vec<String>,
    /// Trials for each repeated measure (spawn, kill_*, List/Get latency), to scale a run down
    /// or up.
    #[arg(long, value_name = "N")]
    pub trials: Option<usize>,
    /// A quick development run: few trials, small sizes; well under a minute.
    #[arg(long)]
    pub quick: bool,
    /// The daemon binary; default: `wf-supervisor` next to this executable.
    #[arg(long, value_name = "PATH")]
    pub daemon: Option<PathBuf>,
    /// Where the JSON result goes.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
    /// The daemon's `[containment] mode`: auto, cgroup or process-group.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub containment: String,
    /// The daemon's `[containment] cgroup_entry`: auto (clone3 into the cgroup where the kernel
    /// can) or procs-write (the old route, for comparison).
    #[arg(long, value_name = "HOW", default_value = "auto")]
    pub cgroup_entry: String,
    /// The daemon's `[daemon] nice`; default: the daemon's own default (-10). 0 shows the
    /// daemon competing with its agents on equal terms.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub daemon_nice: Option<i32>,
    /// The HTTP/2 stream window (KiB) the heartbeat measure's Watch client advertises: how much
    /// the daemon may send ahead of what the client has read. Default: HTTP/2's own (64 KiB, as
    /// wfctl and grpc-go clients start with); 0: tonic's default (2 MiB).
    #[arg(long, value_name = "KIB", default_value_t = 64)]
    pub watch_window_kib: u32,
    /// Keep the temp dir (daemon logs, configs) for inspection.
    #[arg(long)]
    pub keep_temp: bool,
}

impl Args {
    /// The measures to run, checked.
    pub fn measures(&self) -> anyhow::Result<Vec<&'static str>> {
        if self.only.is_empty() {
            return Ok(MEASURES.to_vec());
        }
        let mut out = Vec::new();
        let only = self.only.iter().flat_map(|n| match n.trim() {
            // Both spawn measures.
            "spawn" => vec!["spawn_burst", "spawn_idle"],
            other => vec![other],
        });
        for name in only {
            match MEASURES.iter().find(|m| **m == name) {
                Some(m) if !out.contains(m) => out.push(*m),
                Some(_) => {}
                None => anyhow::bail!(
                    "--only: unknown measure {name:?}; the measures are {}",
                    MEASURES.join(", ")
                ),
            }
        }
        // Keep the canonical order.
        out.sort_by_key(|m| MEASURES.iter().position(|x| x == m));
        Ok(out)
    }
}

/// How much work each measure does.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub quick: bool,
    pub spawn_trials: usize,
    /// Idle spawns cost a 200 ms pause each (daemon and raw): fewer of them.
    pub spawn_idle_trials: usize,
    pub kill_tree_trials: usize,
    pub kill_grace_trials: usize,
    /// Raw baseline trials of the grace measures (each costs the full grace; the baseline's
    /// spread is small).
    pub kill_grace_raw_trials: usize,
    pub kill_escapee_trials: usize,
    pub kill_tree_children: usize,
    pub kill_mixed_children: usize,
    pub kill_grace_ms: u64,
    pub throughput_runs: usize,
    pub throughput_clients: usize,
    pub throughput_repeats: usize,
    pub scale_runs: usize,
    pub scale_latency_trials: usize,
    pub flood_bytes: u64,
    pub flood_trials: usize,
    pub hb_runs: usize,
    pub hb_rate: u64,
    pub hb_secs: u64,
}

impl Plan {
    pub fn new(quick: bool, trials: Option<usize>) -> Plan {
        let mut p = if quick {
            Plan {
                quick,
                spawn_trials: 40,
                spawn_idle_trials: 15,
                kill_tree_trials: 10,
                kill_grace_trials: 3,
                kill_grace_raw_trials: 2,
                kill_escapee_trials: 5,
                kill_tree_children: 50,
                kill_mixed_children: 20,
                kill_grace_ms: 1000,
                throughput_runs: 200,
                throughput_clients: 4,
                throughput_repeats: 1,
                scale_runs: 200,
                scale_latency_trials: 30,
                flood_bytes: 128 << 20,
                flood_trials: 2,
                hb_runs: 50,
                hb_rate: 500,
                hb_secs: 3,
            }
        } else {
            Plan {
                quick,
                spawn_trials: 300,
                spawn_idle_trials: 100,
                kill_tree_trials: 100,
                kill_grace_trials: 50,
                kill_grace_raw_trials: 20,
                kill_escapee_trials: 30,
                kill_tree_children: 50,
                kill_mixed_children: 20,
                kill_grace_ms: 1000,
                throughput_runs: 1000,
                throughput_clients: 4,
                throughput_repeats: 5,
                scale_runs: 1000,
                scale_latency_trials: 300,
                flood_bytes: 1 << 30,
                flood_trials: 7,
                hb_runs: 200,
                hb_rate: 500,
                hb_secs: 20,
            }
        };
        if let Some(n) = trials {
            let n = n.max(1);
            p.spawn_trials = n;
            p.spawn_idle_trials = n;
            p.kill_tree_trials = n;
            p.kill_grace_trials = n;
            p.kill_grace_raw_trials = p.kill_grace_raw_trials.min(n);
            p.kill_escapee_trials = n;
            p.scale_latency_trials = n;
        }
        p
    }

    /// The daemon's `max_live_runs`: room for the largest measure.
    pub fn max_live_runs(&self) -> usize {
        (self.scale_runs.max(self.throughput_runs).max(self.hb_runs) + 100).max(4096)
    }
}
