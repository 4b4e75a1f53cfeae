//! Reconciliation at start (invariant 5): every run the store says was STARTING, RUNNING or
//! STOPPING belonged to a previous daemon, as did a QUEUED run whose cgroup exists (dequeued: it
//! starts while STARTING is written, the cgroup marking its start). Its leftover processes are
//! found (by the run's cgroup where one exists, else by the `WF_RUN_ID` in their environment),
//! ended with TERM, a grace, then KILL, and verified gone; the run is marked LOST with a reason naming what was found and
//! ended. Leftover run cgroups under the daemon's own cgroup root are ended and removed too. Log
//! folders with no run are removed; runs whose logs are missing are marked so.
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tracing::{info, warn};

use crate::process::cgroup::{Containment, RunCgroup};
use crate::process::pidfd::PidFd;
use crate::process::procscan;
use crate::run::{RunStatus, Survivor};
use crate::store::{AuditRecord, Caller, LoadedRun};

/// What reconciliation changed: runs to write and audit records to append.
pub struct Recovered {
    pub changed: Vec<usize>,
    pub audits: Vec<AuditRecord>,
}

/// The run id in a process's environment, if it has one.
fn run_id_of(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"WF_RUN_ID="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

struct Leftover {
    cgroup: Option<RunCgroup>,
    pids: Vec<i32>,
}

impl Leftover {
    fn alive(&self, run_id: &str) -> Vec<Survivor> {
        let mut pids: HashSet<i32> = self.pids.iter().copied().collect();
        if let Some(cg) = &self.cgroup {
            pids.extend(cg.pids().unwrap_or_default());
        }
        let needle = format!("WF_RUN_ID={run_id}");
        pids.into_iter()
            .filter_map(procscan::stat)
            .filter(|s| s.state != 'Z')
            .filter(|s| {
                procscan::environ_contains(s.pid, needle.as_bytes())
                    || self
                        .cgroup
                        .as_ref()
                        .is_some_and(|cg| cg.pids().unwrap_or_default().contains(&s.pid))
            })
            .map(|s| Survivor {
                pid: s.pid,
                state: s.state,
                comm: s.comm,
            })
            .collect()
    }

    fn signal(&self, run_id: &str, sig: Signal) {
        if let Some(cg) = &self.cgroup {
            let _ = if sig == Signal::SIGKILL {
                cg.kill()
            } else {
                cg.signal_all(sig, None).map(|_| ())
            };
        }
        let needle = format!("WF_RUN_ID={run_id}");
        for pid in &self.pids {
            // Hold it by a pidfd, then make sure it is still the run's before signalling.
            let Ok(pfd) = PidFd::open(*pid) else { continue };
            if procscan::environ_contains(*pid, needle.as_bytes()) {
                let _ = pfd.send_signal(sig);
            }
        }
    }
}

/// Reconcile the runs of an earlier daemon. Runs in `runs` are updated in place.
pub async fn recover(
    runs: &mut [LoadedRun],
    containment: &Containment,
    state_dir: &Path,
    max_grace: Duration,
    kill_deadline: Duration,
    after_quarantine: bool,
) -> Recovered {
    let sweep_unknown_cgroups = after_quarantine;
    // One look at the run cgroups under the daemon's own root, and when each was made.
    let began = std::time::SystemTime::now();
    let cgroup_dirs: HashMap<String, Option<std::time::SystemTime>> = match containment {
        Containment::Cgroup(root) => std::fs::read_dir(root.path())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| {
                let made = e.metadata().and_then(|m| m.modified()).ok();
                (e.file_name().to_string_lossy().into_owned(), made)
            })
            .filter(|(name, _)| crate::ids::is_run_id(name))
            .collect(),
        Containment::ProcessGroup { .. } => HashMap::new(),
    };
    // A QUEUED run with a cgroup was dequeued: its process starts while STARTING is written,
    // so it may have run. It is reconciled as a live one, never started again.
    let dequeued = |r: &LoadedRun| {
        r.record.status == RunStatus::Queued && cgroup_dirs.contains_key(&r.record.run_id)
    };
    let live: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(
                r.record.status,
                RunStatus::Starting | RunStatus::Running | RunStatus::Stopping
            ) || dequeued(r)
        })
        .map(|(i, _)| i)
        .collect();
    let live_ids: HashSet<String> = live
        .iter()
        .map(|i| runs[*i].record.run_id.clone())
        .collect();

    // One pass over /proc: which processes carry the id of a run that was live.
    let mut by_env: HashMap<String, Vec<i32>> = HashMap::new();
    if !live_ids.is_empty() {
        for pid in procscan::all_pids() {
            if let Some(id) = run_id_of(pid) {
                if live_ids.contains(&id) {
                    by_env.entry(id).or_default().push(pid);
                }
            }
        }
    }
    let mut leftovers: HashMap<String, Leftover> = HashMap::new();
    for id in &live_ids {
        let cgroup = match containment {
            Containment::Cgroup(root) => root.existing_run(id),
            Containment::ProcessGroup { .. } => None,
        };
        leftovers.insert(
            id.clone(),
            Leftover {
                cgroup,
                pids: by_env.remove(id).unwrap_or_default(),
            },
        );
    }
    // The other run cgroups. After a quarantine the store no longer knows which runs were live:
    // every one is then a leftover. Otherwise (another daemon could share the root) only the
    // empty cgroups of runs not live go, made before this recovery began: a daemon stopped between making a new run's cgroup and recording its
    // STARTING (the cgroup is made while that record is written; a new run's process is not
    // started before it is durable) leaves one, and so does a run that ended while its STARTING
    // could not be written (its cgroup marked its start). Nothing runs in them.
    if let Containment::Cgroup(root) = containment {
        let mut removed = 0usize;
        for (name, made) in &cgroup_dirs {
            if live_ids.contains(name) {
                continue;
            }
            let Some(cg) = root.existing_run(name) else {
                continue;
            };
            if sweep_unknown_cgroups {
                leftovers.insert(
                    name.clone(),
                    Leftover {
                        cgroup: Some(cg),
                        pids: Vec::new(),
                    },
                );
                continue;
            }
            let made_before = made.is_some_and(|t| t < began);
            // Known and not live here: a run that ended while its STARTING record could not be
            // written kept its cgroup as the mark of its start; the record decides now.
            if made_before && cg.is_empty() && cg.remove().is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            info!(
                removed,
                "removed empty cgroups of runs not live (a daemon stopped before their start was recorded, or a run ended while its start could not be written)"
            );
        }
    }

    // TERM everything at once, give it a grace, KILL what is left, verify.
    let mut found: HashMap<String, Vec<Survivor>> = HashMap::new();
    for (id, l) in &leftovers {
        found.insert(id.clone(), l.alive(id));
        l.signal(id, Signal::SIGTERM);
    }
    let any_found = found.values().any(|v| !v.is_empty());
    let mut killed: HashSet<String> = HashSet::new();
    if any_found {
        let t0 = Instant::now();
        while t0.elapsed() < max_grace && leftovers.iter().any(|(id, l)| !l.alive(id).is_empty()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (id, l) in &leftovers {
            if !l.alive(id).is_empty() {
                l.signal(id, Signal::SIGKILL);
                killed.insert(id.clone());
            }
        }
        let t1 = Instant::now();
        while t1.elapsed() < kill_deadline
            && leftovers.iter().any(|(id, l)| !l.alive(id).is_empty())
        {
            for (id, l) in &leftovers {
                if killed.contains(id) {
                    l.signal(id, Signal::SIGKILL);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut summaries: HashMap<String, String> = HashMap::new();
    for (id, l) in &leftovers {
        let before = &found[id];
        let after = l.alive(id);
        if let Some(cg) = &l.cgroup {
            if let Err(e) = cg.remove() {
                warn!(run_id = %id, error = %e, "cannot remove a leftover cgroup");
            }
        }
        let how = match &l.cgroup {
            Some(cg) => format!("in cgroup {}", cg.path().display()),
            None => "by WF_RUN_ID".to_string(),
        };
        let text = if before.is_empty() {
            "no process of the run was left".to_string()
        } else {
            let pids: Vec<String> = before
                .iter()
                .map(|s| format!("{} ({})", s.pid, s.comm))
                .collect();
            let sigs = if killed.contains(id) {
                "SIGTERM, then SIGKILL"
            } else {
                "SIGTERM"
            };
            let mut t = format!(
                "found {} process(es) {how}: {}; ended them with {sigs}",
                before.len(),
                pids.join(", ")
            );
            if !after.is_empty() {
                let s: Vec<String> = after
                    .iter()
                    .map(|s| format!("{} (state {})", s.pid, s.state))
                    .collect();
                t.push_str(&format!("; {} survived: {}", after.len(), s.join(", ")));
            }
            t
        };
        info!(run_id = %id, found = before.len(), survivors = after.len(), "reconciled a run of an earlier daemon");
        summaries.insert(id.clone(), text);
    }

    let mut out = Recovered {
        changed: Vec::new(),
        audits: Vec::new(),
    };
    let now = crate::time::now_ms();
    for i in live {
        let r = &mut runs[i].record;
        let summary = summaries
            .remove(&r.run_id)
            .unwrap_or_else(|| "no process of the run was left".into());
        // A kill in its grace when the daemon died left its reason in the record.
        let stopping_for = match r.status {
            RunStatus::Stopping if !r.end_reason.is_empty() => {
                format!(" while stopping it ({})", r.end_reason)
            }
            _ => String::new(),
        };
        let state = match r.status {
            RunStatus::Queued => "QUEUED, dequeued: its cgroup was made, so it may have started",
            s => s.as_str(),
        };
        let reason = format!(
            "the daemon that ran it ({state}) stopped without ending it{stopping_for}; at restart: {summary}"
        );
        r.status = RunStatus::Lost;
        r.ended_at = now;
        r.error = reason.clone();
        r.end_reason = "recovery after a daemon restart".into();
        out.audits.push(
            AuditRecord::new(
                Caller::Daemon,
                "recover",
                &r.run_id,
                serde_json::json!({"pid": r.pid, "containment": r.containment}),
            )
            .outcome("ok", format!("marked LOST{stopping_for}: {summary}")),
        );
        out.changed.push(i);
    }
    for (id, summary) in summaries {
        out.audits.push(
            AuditRecord::new(Caller::Daemon, "recover", &id, serde_json::json!({})).outcome(
                "ok",
                format!("leftover cgroup of a run the store does not know: {summary}"),
            ),
        );
    }

    // Log folders with no run, and runs with no log folder.
    let known: HashSet<&str> = runs.iter().map(|r| r.record.run_id.as_str()).collect();
    let mut removed = 0usize;
    // After a quarantine the fresh store knows no run: the logs are evidence, keep them all.
    let dir = if after_quarantine {
        info!("store was quarantined: keeping every log folder for the operator");
        None
    } else {
        std::fs::read_dir(state_dir.join("runs")).ok()
    };
    if let Some(dir) = dir {
        for e in dir.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !known.contains(name.as_str()) && std::fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    let mut missing = 0usize;
    for (i, r) in runs.iter_mut().enumerate() {
        let dir = state_dir.join("runs").join(&r.record.run_id);
        let printed = r.record.stdout_bytes + r.record.stderr_bytes > 0;
        if printed && !dir.is_dir() && !r.record.logs_missing {
            r.record.logs_missing = true;
            missing += 1;
            if !out.changed.contains(&i) {
                out.changed.push(i);
            }
        }
    }
    if removed > 0 || missing > 0 {
        info!(
            orphan_log_dirs_removed = removed,
            runs_with_missing_logs = missing,
            "log folders reconciled"
        );
    }
    out
}
