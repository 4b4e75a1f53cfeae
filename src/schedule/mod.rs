//! The queue's decisions, apart from I/O: which queued runs start now, which are cancelled
//! without ever starting (a failed dependency, a passed `queue_timeout`), why each of the others
//! waits, and when the next time-based change is due. The core owns the queue (invariant 6) and
//! carries a [`Plan`] out; this module only decides, from the state it is given, so every rule is
//! unit-tested without a daemon.
//!
//! Theory of operation: waiting runs are considered highest priority first, then oldest first,
//! across all queues; a run starts when it is eligible (every dependency SUCCEEDED,
//! `not_before` passed, its queue not paused) and both its queue's `max_concurrent` and the
//! host-wide ceiling (`runs.max_live_runs`) have room. A queue that is full holds back only its
//! own runs. [`plan`] decides that over every queued run at once: the reference. The core
//! decides it after anything that can change the answer (a spawn, a run ending, a cancel, a
//! config reload, UpdateQueue, or a wake-up time passing), never on a poll, and incrementally:
//! [`classify`] judges a run whose standing changed and [`index::Index`] keeps it in its place,
//! so a dispatch costs what changed, not the number of queued runs; a property test in
//! `index.rs` holds that decision to [`plan`]'s. Why a run waits ([`wait_reason`]) is read when
//! someone asks.
pub mod backoff;
pub mod index;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The queue a run goes to when neither the spawn nor its workflow names one.
pub const DEFAULT_QUEUE: &str = "default";

/// Alert kinds of the queue and its runs, as GetQueueHealth lists them.
pub const QUEUE_ALERT_KINDS: &[&str] =
    &["queue_depth", "queue_wait", "stuck_run", "restart_gave_up"];

/// Terminal statuses a restart policy can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartOn {
    Failed,
    TimedOut,
    Lost,
}

impl RestartOn {
    pub fn parse(s: &str) -> Option<RestartOn> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "failed" => Some(RestartOn::Failed),
            "timed_out" => Some(RestartOn::TimedOut),
            "lost" => Some(RestartOn::Lost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartOn::Failed => "failed",
            RestartOn::TimedOut => "timed_out",
            RestartOn::Lost => "lost",
        }
    }
}

/// Retry a run that FAILED, TIMED_OUT or was LOST, as a new linked run after a backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    pub on: Vec<RestartOn>,
    pub max_restarts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A run that lived this long starts the count of restarts again (0: never).
    pub reset_after_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            on: Vec::new(),
            max_restarts: 3,
            backoff_ms: 10_000,
            max_backoff_ms: 300_000,
            reset_after_ms: 600_000,
        }
    }
}

/// Where and when a run may start, and what happens to it afterwards; fixed at spawn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunPolicy {
    pub queue: String,
    pub priority: i32,
    /// Run ids that must all have SUCCEEDED first.
    pub after: Vec<String>,
    /// Unix ms: not started earlier (0: no such limit).
    pub not_before: i64,
    /// Wall-clock limit once running (0: none): the run ends TIMED_OUT.
    pub timeout_ms: u64,
    /// Longest wait to start (0: none): past it the run ends CANCELLED, never started.
    pub queue_timeout_ms: u64,
    pub restart: Option<RestartPolicy>,
    pub idempotency_key: String,
}

/// A queue's limits as they are in force now (config plus live changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_concurrent: usize,
    pub paused: bool,
}

/// What became of one dependency, following restarts by policy to the newest attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dep {
    Succeeded,
    /// Queued or live (or ended and about to be restarted by policy).
    Pending {
        run_id: String,
    },
    /// Ended in anything but SUCCEEDED, with no restart to come.
    Failed {
        run_id: String,
        status: String,
    },
    /// Purged: nothing to wait for.
    Missing {
        run_id: String,
    },
}

/// One queued run as the planner sees it (borrowed from the caller's run table).
#[derive(Debug, Clone)]
pub struct Waiting<'a> {
    pub queue: &'a str,
    pub priority: i32,
    /// Spawn order: lower is older.
    pub seq: u64,
    pub not_before: i64,
    /// Unix ms when its queue_timeout passes (0: never).
    pub expires_at: i64,
    /// How long it had waited when it expires, for the reason.
    pub queue_timeout_ms: u64,
    pub deps: Vec<Dep>,
}

/// How full things are now.
#[derive(Debug, Clone, Default)]
pub struct Occupancy {
    /// Live runs per queue.
    pub running: HashMap<String, usize>,
    pub host_live: usize,
    pub host_max: usize,
}

/// Why a queued run waits; words only when someone reads them ([`Wait::describe`]), so that
/// planning thousands of waiting runs formats nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// For these dependencies to succeed.
    Deps(Vec<String>),
    NotBefore(i64),
    Paused,
    QueueFull {
        busy: usize,
        max: usize,
    },
    HostFull {
        live: usize,
        max: usize,
    },
    Unconfigured,
}

impl Wait {
    /// "queue heavy full: 2/2 running", "waiting for run_x", "not before 14:05:00 UTC".
    pub fn describe(&self, queue: &str) -> String {
        match self {
            Wait::Deps(ids) => format!("waiting for {}", ids.join(", ")),
            Wait::NotBefore(at) => format!("not before {}", clock(*at)),
            Wait::Paused => format!("queue {queue} is paused"),
            Wait::QueueFull { busy, max } => format!("queue {queue} full: {busy}/{max} running"),
            Wait::HostFull { live, max } => {
                format!("host full: {live}/{max} live runs (runs.max_live_runs)")
            }
            Wait::Unconfigured => format!("queue {queue} is not configured (any more)"),
        }
    }
}

/// What the caller is to do; runs are named by their index in the planner's input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Start these, in this order.
    pub start: Vec<usize>,
    /// End these CANCELLED, never started, for the given reason.
    pub cancel: Vec<(usize, String)>,
    /// For each input run: why it stays queued (None: it starts or is cancelled).
    pub waiting: Vec<Option<Wait>>,
    /// Plan again at this Unix ms (the earliest `not_before` or queue deadline among the waiting).
    pub wake_at: Option<i64>,
}

/// What a queued run's own state says, before its queue is asked: the first of these that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// End it CANCELLED, never started (its queue_timeout passed, or a dependency failed or is
    /// gone), for this reason.
    Cancel(String),
    /// Wait for these dependencies (still queued or live).
    Deps(Vec<String>),
    /// Wait until this Unix ms.
    NotBefore(i64),
    /// It may start once its queue and the host have room.
    Eligible,
}

/// Judge one queued run by its deadline, dependencies and `not_before` (not by its queue).
pub fn classify(now: i64, w: &Waiting<'_>) -> Verdict {
    if w.expires_at > 0 && now >= w.expires_at {
        return Verdict::Cancel(format!(
            "waited {} in queue {} without starting, past its queue_timeout; never started",
            human_ms(w.queue_timeout_ms),
            w.queue
        ));
    }
    let ended = w.deps.iter().find_map(|d| match d {
        Dep::Failed { run_id, status } => {
            Some(format!("dependency {run_id} ended {status}; never started"))
        }
        Dep::Missing { run_id } => Some(format!(
            "dependency {run_id} no longer exists (purged); never started"
        )),
        _ => None,
    });
    if let Some(reason) = ended {
        return Verdict::Cancel(reason);
    }
    let pending: Vec<String> = w
        .deps
        .iter()
        .filter_map(|d| match d {
            Dep::Pending { run_id } => Some(run_id.clone()),
            _ => None,
        })
        .collect();
    if !pending.is_empty() {
        return Verdict::Deps(pending);
    }
    if w.not_before > now {
        return Verdict::NotBefore(w.not_before);
    }
    Verdict::Eligible
}

/// Why an eligible run cannot start now, from its queue's limits and how full things are (None:
/// it may start).
fn held_by_queue(
    queue: &str,
    queues: &BTreeMap<String, QueueLimits>,
    busy: usize,
    host_live: usize,
    host_max: usize,
) -> Option<Wait> {
    let Some(limits) = queues.get(queue) else {
        return Some(Wait::Unconfigured);
    };
    if limits.paused {
        return Some(Wait::Paused);
    }
    if busy >= limits.max_concurrent {
        return Some(Wait::QueueFull {
            busy,
            max: limits.max_concurrent,
        });
    }
    if host_live >= host_max {
        return Some(Wait::HostFull {
            live: host_live,
            max: host_max,
        });
    }
    None
}

/// Why a run that stays queued waits, read from the state as it is (after the starts of the
/// last decision): the reason [`plan`] gives it. For a run the decision would cancel, the reason
/// it would have waited for otherwise; for one that could start, that its queue is full (it is
/// about to start).
pub fn wait_reason(
    now: i64,
    w: &Waiting<'_>,
    queues: &BTreeMap<String, QueueLimits>,
    occupancy: &Occupancy,
) -> Wait {
    match classify(now, w) {
        Verdict::Deps(ids) => Wait::Deps(ids),
        Verdict::NotBefore(at) => Wait::NotBefore(at),
        Verdict::Cancel(_) | Verdict::Eligible => {
            let busy = occupancy.running.get(w.queue).copied().unwrap_or(0);
            held_by_queue(
                w.queue,
                queues,
                busy,
                occupancy.host_live,
                occupancy.host_max,
            )
            .unwrap_or(Wait::QueueFull {
                busy,
                max: queues.get(w.queue).map_or(0, |l| l.max_concurrent),
            })
        }
    }
}

/// Decide what happens to the queued runs now, looking at every one of them: the reference
/// decision (the core decides through [`index::Index`], which a property test holds to this).
/// Cheapest when `waiting` comes in priority-then-age order already (the sort then only checks
/// it).
pub fn plan(
    now: i64,
    queues: &BTreeMap<String, QueueLimits>,
    occupancy: &Occupancy,
    waiting: &[Waiting<'_>],
) -> Plan {
    let mut out = Plan {
        waiting: vec![None; waiting.len()],
        ..Plan::default()
    };
    let mut running: HashMap<&str, usize> = occupancy
        .running
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let mut host_live = occupancy.host_live;
    let mut order: Vec<usize> = (0..waiting.len()).collect();
    order.sort_by_key(|i| (std::cmp::Reverse(waiting[*i].priority), waiting[*i].seq));
    let mut wake = |at: i64| {
        if at > now {
            out.wake_at = Some(out.wake_at.map_or(at, |w| w.min(at)));
        }
    };
    let mut reasons: Vec<(usize, Wait)> = Vec::new();
    for i in order {
        let w = &waiting[i];
        let verdict = classify(now, w);
        if let Verdict::Cancel(reason) = verdict {
            out.cancel.push((i, reason));
            continue;
        }
        if w.expires_at > 0 {
            wake(w.expires_at);
        }
        match verdict {
            Verdict::Deps(pending) => {
                reasons.push((i, Wait::Deps(pending)));
                continue;
            }
            Verdict::NotBefore(at) => {
                wake(at);
                reasons.push((i, Wait::NotBefore(at)));
                continue;
            }
            _ => {}
        }
        let busy = running.get(w.queue).copied().unwrap_or(0);
        if let Some(why) = held_by_queue(w.queue, queues, busy, host_live, occupancy.host_max) {
            reasons.push((i, why));
            continue;
        }
        *running.entry(w.queue).or_default() += 1;
        host_live += 1;
        out.start.push(i);
    }
    for (i, r) in reasons {
        out.waiting[i] = Some(r);
    }
    out
}

/// "14:05:00 UTC" for a Unix ms time.
pub fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// "1m 30s" for milliseconds.
pub fn human_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(max: usize) -> QueueLimits {
        QueueLimits {
            max_concurrent: max,
            paused: false,
        }
    }

    fn w(queue: &'static str, priority: i32, seq: u64) -> Waiting<'static> {
        Waiting {
            queue,
            priority,
            seq,
            not_before: 0,
            expires_at: 0,
            queue_timeout_ms: 0,
            deps: Vec::new(),
        }
    }

    fn occ(running: &[(&str, usize)], host_max: usize) -> Occupancy {
        Occupancy {
            running: running.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            host_live: running.iter().map(|(_, v)| v).sum(),
            host_max,
        }
    }

    fn queues(list: &[(&str, QueueLimits)]) -> BTreeMap<String, QueueLimits> {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// The reason of input `i`, in words, as a run of queue `queue` shows it.
    fn why(p: &Plan, i: usize, queue: &str) -> String {
        p.waiting[i]
            .as_ref()
            .map(|w| w.describe(queue))
            .unwrap_or_default()
    }

    #[test]
    fn priority_first_then_age() {
        let input = [
            w("default", 0, 1),
            w("default", 5, 3),
            w("default", 0, 2),
            w("default", 5, 4),
        ];
        let p = plan(0, &queues(&[("default", q(2))]), &occ(&[], 100), &input);
        assert_eq!(p.start, vec![1, 3]);
        assert_eq!(why(&p, 0, "default"), "queue default full: 2/2 running");
        assert_eq!(why(&p, 2, "default"), "queue default full: 2/2 running");
        assert_eq!(p.waiting[1], None);
        assert!(p.cancel.is_empty());
    }

    #[test]
    fn a_full_queue_never_blocks_another() {
        let input = [w("heavy", 9, 1), w("light", 0, 2)];
        let p = plan(
            0,
            &queues(&[("heavy", q(2)), ("light", q(1))]),
            &occ(&[("heavy", 2)], 100),
            &input,
        );
        assert_eq!(p.start, vec![1]);
        assert_eq!(why(&p, 0, "heavy"), "queue heavy full: 2/2 running");
    }

    #[test]
    fn the_host_ceiling_holds_over_all_queues() {
        let input = [w("a", 0, 1), w("b", 0, 2)];
        let p = plan(
            0,
            &queues(&[("a", q(10)), ("b", q(10))]),
            &occ(&[("a", 2)], 3),
            &input,
        );
        assert_eq!(p.start, vec![0]);
        assert_eq!(
            why(&p, 1, "b"),
            "host full: 3/3 live runs (runs.max_live_runs)"
        );
    }

    #[test]
    fn paused_queues_start_nothing() {
        let paused = QueueLimits {
            max_concurrent: 4,
            paused: true,
        };
        let p = plan(
            0,
            &queues(&[("a", paused)]),
            &occ(&[], 100),
            &[w("a", 0, 1)],
        );
        assert!(p.start.is_empty());
        assert_eq!(why(&p, 0, "a"), "queue a is paused");
        assert_eq!(p.wake_at, None);
    }

    #[test]
    fn not_before_waits_and_sets_the_wake_time() {
        let mut later = w("default", 0, 1);
        later.not_before = 50_000_000 + 60_000;
        let mut soon = w("default", 0, 2);
        soon.not_before = 50_000_000 + 1_000;
        let p = plan(
            50_000_000,
            &queues(&[("default", q(4))]),
            &occ(&[], 100),
            &[later.clone(), soon],
        );
        assert!(p.start.is_empty());
        assert_eq!(p.wake_at, Some(50_001_000));
        assert_eq!(why(&p, 0, "default"), "not before 13:54:20 UTC");
        // Once the time has come it starts.
        let p = plan(
            later.not_before,
            &queues(&[("default", q(4))]),
            &occ(&[], 100),
            &[later],
        );
        assert_eq!(p.start, vec![0]);
    }

    #[test]
    fn dependencies_wait_start_or_cancel() {
        let limits = queues(&[("default", q(4))]);
        let mut b = w("default", 0, 2);
        b.deps = vec![Dep::Succeeded, Dep::Pending { run_id: "a".into() }];
        let p = plan(0, &limits, &occ(&[], 100), std::slice::from_ref(&b));
        assert_eq!(why(&p, 0, "default"), "waiting for a");
        b.deps = vec![Dep::Succeeded];
        let p = plan(0, &limits, &occ(&[], 100), std::slice::from_ref(&b));
        assert_eq!(p.start, vec![0]);
        b.deps = vec![
            Dep::Pending { run_id: "z".into() },
            Dep::Failed {
                run_id: "a".into(),
                status: "FAILED".into(),
            },
        ];
        let p = plan(0, &limits, &occ(&[], 100), std::slice::from_ref(&b));
        assert_eq!(
            p.cancel,
            vec![(0, "dependency a ended FAILED; never started".into())]
        );
        assert_eq!(p.waiting[0], None);
        b.deps = vec![Dep::Missing { run_id: "a".into() }];
        let p = plan(0, &limits, &occ(&[], 100), &[b]);
        assert!(p.cancel[0].1.contains("no longer exists"), "{p:?}");
    }

    #[test]
    fn queue_timeout_cancels_and_is_a_wake_time() {
        let mut x = w("default", 0, 1);
        x.expires_at = 10_000;
        x.queue_timeout_ms = 5_000;
        let limits = queues(&[("default", q(0))]);
        let p = plan(9_000, &limits, &occ(&[], 100), std::slice::from_ref(&x));
        assert!(p.cancel.is_empty());
        assert_eq!(p.wake_at, Some(10_000));
        let p = plan(10_000, &limits, &occ(&[], 100), &[x]);
        assert_eq!(p.cancel.len(), 1);
        assert!(p.cancel[0].1.contains("queue_timeout"), "{p:?}");
        assert!(p.cancel[0].1.contains("5s"), "{p:?}");
    }

    #[test]
    fn an_unconfigured_queue_waits() {
        let p = plan(0, &queues(&[]), &occ(&[], 100), &[w("gone", 0, 1)]);
        assert!(p.start.is_empty());
        assert!(why(&p, 0, "gone").contains("not configured"), "{p:?}");
    }

    #[test]
    fn clock_is_utc() {
        assert_eq!(clock(0), "00:00:00 UTC");
        assert_eq!(clock((14 * 3600 + 5 * 60) * 1000 + 999), "14:05:00 UTC");
    }
}
