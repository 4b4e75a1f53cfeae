//! The daemon's Prometheus metrics: one [`Metrics`] struct holding every metric as a typed field,
//! registered once in one `Registry` at start (no global registry). Label sets are small structs
//! whose values are bounded (status, queue and workflow names from the config, kill phases,
//! alert kinds); no metric carries a run id, whose cardinality would be unbounded.
//!
//! Two kinds of figures: events counted where they happen (a run started or ended, a kill's
//! duration, a store commit, a webhook delivery), by the core or the store calling the methods
//! here; and state read at scrape time (live runs by status and queue, stuck runs, memory of
//! live runs, alerts firing, the daemon's own process), which the HTTP handler gathers and hands
//! to [`Metrics::set_live`] before encoding. [`live_figures`] folds run records into those
//! figures and is a pure function.
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::run::{KillPhase, KillReport, RunRecord};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusQueue {
    pub status: String,
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabel {
    /// The workflow's name; empty for runs of a plain argv.
    pub workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowStatus {
    pub workflow: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowTokens {
    pub workflow: String,
    /// input, output, cache_creation_input, cache_read_input.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    /// slack, alertmanager or json.
    pub format: String,
    /// delivered, retried, failed or dropped.
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub runs_live: Family<StatusQueue, Gauge>,
    pub runs_started: Family<WorkflowLabel, Counter>,
    pub runs_ended: Family<WorkflowStatus, Counter>,
    pub spawn_latency: Histogram,
    pub kill_duration: HistogramFamily<PhaseLabel>,
    pub runs_stuck: Gauge,
    pub alerts_firing: Family<KindLabel, Gauge>,
    pub agent_turns: Family<WorkflowLabel, Counter>,
    pub agent_tokens: Family<WorkflowTokens, Counter>,
    pub agent_cost: Family<WorkflowLabel, Counter<f64, AtomicU64>>,
    pub run_cpu: Family<WorkflowLabel, Counter<f64, AtomicU64>>,
    pub run_memory: Family<WorkflowLabel, Gauge>,
    pub store_commit: Histogram,
    pub webhook_deliveries: Family<DeliveryLabel, Counter>,
    pub process_cpu: Gauge<f64, AtomicU64>,
    pub process_memory: Gauge,
    pub process_fds: Gauge,
    pub process_threads: Gauge,
    pub process_start_time: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let runs_live = Family::<StatusQueue, Gauge>::default();
        registry.register(
            "wf_runs_live",
            "Runs not yet ended (QUEUED, STARTING, RUNNING, STOPPING), by status and queue",
            runs_live.clone(),
        );
        let runs_started = Family::<WorkflowLabel, Counter>::default();
        registry.register(
            "wf_runs_started",
            "Runs whose process was started (restarts count again), by workflow (empty for argv runs)",
            runs_started.clone(),
        );
        let runs_ended = Family::<WorkflowStatus, Counter>::default();
        registry.register(
            "wf_runs_ended",
            "Runs that reached a terminal status, by workflow and status",
            runs_ended.clone(),
        );
        let spawn_latency = latency_histogram();
        registry.register_with_unit(
            "wf_spawn_latency",
            "From the moment a run was let start (spawned or dequeued) to its process running",
            Unit::Seconds,
            spawn_latency.clone(),
        );
        let kill_duration: HistogramFamily<PhaseLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "wf_kill_duration",
            "How long ending a run took, from the first signal to nothing left, by the phase \
             that ended it (term, kill, survivors, already_exited)",
            Unit::Seconds,
            kill_duration.clone(),
        );
        let runs_stuck = Gauge::default();
        registry.register(
            "wf_runs_stuck",
            "Live workflow runs whose health is STUCK (a stuck rule fired)",
            runs_stuck.clone(),
        );
        let alerts_firing = Family::<KindLabel, Gauge>::default();
        registry.register(
            "wf_alerts_firing",
            "Alerts firing now (not resolved; acknowledged ones included), by kind",
            alerts_firing.clone(),
        );
        let agent_turns = Family::<WorkflowLabel, Counter>::default();
        registry.register(
            "wf_agent_turns",
            "Agent turns (assistant messages) of workflow runs that ended, by workflow",
            agent_turns.clone(),
        );
        let agent_tokens = Family::<WorkflowTokens, Counter>::default();
        registry.register(
            "wf_agent_tokens",
            "Tokens the stream-json result reported for workflow runs that ended, by workflow \
             and kind (input, output, cache_creation_input, cache_read_input)",
            agent_tokens.clone(),
        );
        let agent_cost = Family::<WorkflowLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "wf_agent_cost_usd",
            "Cost in US dollars the stream-json result reported (total_cost_usd) for workflow \
             runs that ended, by workflow",
            agent_cost.clone(),
        );
        let run_cpu = Family::<WorkflowLabel, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "wf_run_cpu",
            "CPU time (user and system) of runs that ended, by workflow",
            Unit::Seconds,
            run_cpu.clone(),
        );
        let run_memory = Family::<WorkflowLabel, Gauge>::default();
        registry.register_with_unit(
            "wf_run_memory",
            "Memory in use by live runs as last sampled, summed by workflow",
            Unit::Bytes,
            run_memory.clone(),
        );
        let store_commit = latency_histogram();
        registry.register_with_unit(
            "wf_store_commit",
            "How long one group commit of the SQLite store took",
            Unit::Seconds,
            store_commit.clone(),
        );
        let webhook_deliveries = Family::<DeliveryLabel, Counter>::default();
        registry.register(
            "wf_webhook_deliveries",
            "Alert notification attempts to webhooks, by format and outcome (delivered, \
             retried, failed, dropped)",
            webhook_deliveries.clone(),
        );
        let process_cpu = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "wf_process_cpu",
            "CPU time (user and system) the daemon itself used",
            Unit::Seconds,
            process_cpu.clone(),
        );
        let process_memory = Gauge::default();
        registry.register_with_unit(
            "wf_process_resident_memory",
            "The daemon's resident memory (VmRSS)",
            Unit::Bytes,
            process_memory.clone(),
        );
        let process_fds = Gauge::default();
        registry.register(
            "wf_process_open_fds",
            "File descriptors the daemon has open",
            process_fds.clone(),
        );
        let process_threads = Gauge::default();
        registry.register(
            "wf_process_threads",
            "Threads of the daemon",
            process_threads.clone(),
        );
        let process_start_time = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "wf_process_start_time",
            "When the daemon started, in seconds since the Unix epoch",
            Unit::Seconds,
            process_start_time.clone(),
        );
        process_start_time.set(crate::time::now_ms() as f64 / 1000.0);
        Metrics {
            registry,
            runs_live,
            runs_started,
            runs_ended,
            spawn_latency,
            kill_duration,
            runs_stuck,
            alerts_firing,
            agent_turns,
            agent_tokens,
            agent_cost,
            run_cpu,
            run_memory,
            store_commit,
            webhook_deliveries,
            process_cpu,
            process_memory,
            process_fds,
            process_threads,
            process_start_time,
        }
    }

    /// The run's process is running; `latency_ms` since it was let start.
    pub fn run_started(&self, r: &RunRecord, latency_ms: i64) {
        self.runs_started
            .get_or_create(&WorkflowLabel {
                workflow: workflow_of(r),
            })
            .inc();
        self.spawn_latency
            .observe(latency_ms.max(0) as f64 / 1000.0);
    }

    /// A run's process tree was ended (on its own or by a kill) as `report` says.
    pub fn run_stopped(&self, report: &KillReport) {
        if report.phase != KillPhase::NotStarted {
            self.kill_duration
                .get_or_create(&PhaseLabel {
                    phase: phase_name(report.phase).to_string(),
                })
                .observe(report.duration.as_secs_f64());
        }
    }

    /// The run reached its terminal status.
    pub fn run_ended(&self, r: &RunRecord) {
        let workflow = workflow_of(r);
        self.runs_ended
            .get_or_create(&WorkflowStatus {
                workflow: workflow.clone(),
                status: r.status.as_str().to_ascii_lowercase(),
            })
            .inc();
        let label = WorkflowLabel {
            workflow: workflow.clone(),
        };
        if let Some(u) = &r.usage {
            self.run_cpu.get_or_create(&label).inc_by(u.cpu_seconds());
        }
        if let Some(a) = &r.agent {
            self.agent_turns
                .get_or_create(&label)
                .inc_by(u64::from(a.turns));
            if let Some(c) = a.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
                self.agent_cost.get_or_create(&label).inc_by(c);
            }
            if let Some(t) = a.tokens {
                for (kind, n) in [
                    ("input", t.input),
                    ("output", t.output),
                    ("cache_creation_input", t.cache_creation_input),
                    ("cache_read_input", t.cache_read_input),
                ] {
                    self.agent_tokens
                        .get_or_create(&WorkflowTokens {
                            workflow: workflow.clone(),
                            kind: kind.to_string(),
                        })
                        .inc_by(n);
                }
            }
        }
    }

    /// One store commit took `secs`.
    pub fn store_committed(&self, secs: f64) {
        self.store_commit.observe(secs);
    }

    /// One webhook notification attempt ended so.
    pub fn webhook_delivery(&self, format: &str, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabel {
                format: format.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Replace the scrape-time figures.
    pub fn set_live(&self, live: &LiveFigures, alerts_firing: &BTreeMap<String, i64>) {
        self.runs_live.clear();
        for ((status, queue), n) in &live.by_status_queue {
            self.runs_live
                .get_or_create(&StatusQueue {
                    status: status.clone(),
                    queue: queue.clone(),
                })
                .set(*n);
        }
        self.runs_stuck.set(live.stuck);
        self.run_memory.clear();
        for (workflow, bytes) in &live.memory_by_workflow {
            self.run_memory
                .get_or_create(&WorkflowLabel {
                    workflow: workflow.clone(),
                })
                .set(i64::try_from(*bytes).unwrap_or(i64::MAX));
        }
        self.alerts_firing.clear();
        for (kind, n) in alerts_firing {
            self.alerts_firing
                .get_or_create(&KindLabel { kind: kind.clone() })
                .set(*n);
        }
        if let Some(p) = crate::process::usage::proc_figures(std::process::id() as i32) {
            let tick = crate::process::usage::clock_ticks().max(1) as f64;
            self.process_cpu
                .set((p.user_ticks + p.system_ticks) as f64 / tick);
            self.process_memory
                .set(i64::try_from(p.rss_bytes).unwrap_or(i64::MAX));
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            self.process_fds.set(d.count() as i64);
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/task") {
            self.process_threads.set(d.count() as i64);
        }
    }

    /// The registry in the OpenMetrics text format (which Prometheus reads).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn workflow_of(r: &RunRecord) -> String {
    r.spec
        .agent
        .as_ref()
        .map(|a| a.workflow.clone())
        .unwrap_or_default()
}

fn phase_name(p: KillPhase) -> &'static str {
    match p {
        KillPhase::Term => "term",
        KillPhase::Kill => "kill",
        KillPhase::Survivors => "survivors",
        KillPhase::AlreadyExited => "already_exited",
        KillPhase::NotStarted => "not_started",
    }
}

/// What scrape-time gauges show of the runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LiveFigures {
    /// (status, queue) -> live runs.
    pub by_status_queue: BTreeMap<(String, String), i64>,
    pub stuck: i64,
    /// workflow -> bytes in use now (as last sampled).
    pub memory_by_workflow: BTreeMap<String, u64>,
}

/// Fold the live runs' records into the scrape-time figures (terminal ones are skipped).
pub fn live_figures<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> LiveFigures {
    let mut f = LiveFigures::default();
    for r in runs {
        if r.status.is_terminal() {
            continue;
        }
        *f.by_status_queue
            .entry((
                r.status.as_str().to_ascii_lowercase(),
                r.spec.policy.queue.clone(),
            ))
            .or_default() += 1;
        if r.agent.as_ref().is_some_and(|a| a.health == "STUCK") {
            f.stuck += 1;
        }
        if let Some(u) = &r.usage {
            *f.memory_by_workflow.entry(workflow_of(r)).or_default() += u.memory_bytes;
        }
    }
    f
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::run::RunStatus;
    use std::sync::Arc;

    pub(crate) fn record(status: RunStatus, queue: &str, _workflow: Option<()>) -> RunRecord {
        let mut r = RunRecord::for_test("run_000000000001", status);
        Arc::make_mut(&mut r.spec).policy.queue = queue.into();
        r
    }

    #[test]
    fn live_figures_count_live_runs_only() {
        let mut stuck = record(RunStatus::Running, "default", None);
        stuck.agent = Some(crate::run::agent::AgentState {
            health: "STUCK".into(),
            ..Default::default()
        });
        stuck.usage = Some(crate::usage::Usage {
            memory_bytes: 100,
            ..Default::default()
        });
        let runs = [
            stuck,
            record(RunStatus::Running, "default", None),
            record(RunStatus::Queued, "batch", None),
            record(RunStatus::Succeeded, "default", None),
        ];
        let f = live_figures(&runs);
        assert_eq!(
            f.by_status_queue.get(&("running".into(), "default".into())),
            Some(&2)
        );
        assert_eq!(
            f.by_status_queue.get(&("queued".into(), "batch".into())),
            Some(&1)
        );
        assert_eq!(f.by_status_queue.len(), 2);
        assert_eq!(f.stuck, 1);
        assert_eq!(f.memory_by_workflow.get(""), Some(&100));
    }

    #[test]
    fn ended_runs_move_counters_without_run_ids() {
        let m = Metrics::new();
        let mut r = record(RunStatus::Succeeded, "default", None);
        r.agent = Some(crate::run::agent::AgentState {
            turns: 3,
            cost_usd: Some(0.25),
            tokens: Some(crate::agent::stream_json::Tokens {
                input: 10,
                output: 20,
                ..Default::default()
            }),
            ..Default::default()
        });
        r.usage = Some(crate::usage::Usage {
            cpu_user_ms: 1500,
            ..Default::default()
        });
        m.run_started(&r, 12);
        m.run_ended(&r);
        m.set_live(&LiveFigures::default(), &BTreeMap::new());
        let text = m.encode().expect("encode");
        for want in [
            "wf_runs_started_total{workflow=\"\"} 1",
            "wf_runs_ended_total{workflow=\"\",status=\"succeeded\"} 1",
            "wf_agent_turns_total{workflow=\"\"} 3",
            "wf_agent_tokens_total{workflow=\"\",kind=\"output\"} 20",
            "wf_agent_cost_usd_total{workflow=\"\"} 0.25",
            "wf_run_cpu_seconds_total{workflow=\"\"} 1.5",
            "wf_spawn_latency_seconds_count 1",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert!(
            !text.contains("run_id") && !text.contains("run_0"),
            "{text}"
        );
    }
}
