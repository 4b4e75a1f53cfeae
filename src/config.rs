//! Configuration: the TOML file as written (`RawConfig`), checked by `validate()` into a typed
//! `Config` with every default filled in. A bad file is refused with the file, line and key named,
//! and the daemon does not start on it. The default config is embedded in the binary, so
//! `wf-supervisor` with no arguments runs.
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::access::{Grant, Policy, Role};
use crate::agent::claude::ClaudeTemplate;
use crate::agent::health::{Action, Rule, StuckRules};
use crate::agent::heartbeat::CriticalSection;
use crate::process::signals::parse_signal;
use crate::process::spawn::SpawnMethod;
use crate::schedule::{RestartOn, RestartPolicy, DEFAULT_QUEUE};

/// The configuration the daemon runs on when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// `daemon.nice` unless set. Under contention the kernel shares CPU by weight: at -10 a daemon
/// thread weighs about nine runnable agents, so it is not left queued behind hundreds of them
/// (see the README, "CPU: the daemon outranks its runs").
pub const DEFAULT_DAEMON_NICE: i32 = -10;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: line {line}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        line: usize,
        key: String,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    runs: RawRuns,
    #[serde(default)]
    containment: RawContainment,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    workflows: BTreeMap<String, RawWorkflow>,
    #[serde(default)]
    queues: BTreeMap<String, RawQueue>,
    #[serde(default)]
    debug: RawDebug,
    #[serde(default)]
    access: RawAccess,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    alerts: RawAlerts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    repeat_interval_ms: Option<u64>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    max_attempts: Option<u32>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: Option<String>,
    url: String,
    format: Option<String>,
    #[serde(default)]
    kinds: Vec<String>,
    send_resolved: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    /// Address of the HTTP listener serving /metrics; off unless set.
    listen: Option<String>,
    /// How often live runs' usage is read for the metrics (Get reads it on demand).
    usage_sample_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default)]
    admin: Vec<String>,
    #[serde(default)]
    operator: Vec<String>,
    #[serde(default)]
    viewer: Vec<String>,
    /// "admin" (default) or "operator": who may Spawn an arbitrary argv.
    argv_spawn: Option<String>,
    operators_own_runs_only: Option<bool>,
    tokens_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    max_concurrent: Option<usize>,
    max_queued: Option<usize>,
    /// Alert when more runs than this wait in the queue.
    alert_queue_depth: Option<usize>,
    /// Alert when a run has waited longer than this.
    alert_queue_wait: Option<String>,
}

/// `restart = { on = [...], max_restarts, backoff, max_backoff, reset_after }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    #[serde(default)]
    on: Vec<String>,
    max_restarts: Option<u32>,
    backoff: Option<String>,
    max_backoff: Option<String>,
    reset_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDebug {
    /// Test-only fault switch: SIGUSR2 wedges the core task (to prove the watchdog works).
    wedge_on_sigusr2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    program: Option<String>,
    model: Option<String>,
    max_turns: Option<u32>,
    permission_mode: Option<String>,
    #[serde(default)]
    allowed_tools: Vec<String>,
    append_system_prompt: Option<String>,
    append_system_prompt_file: Option<PathBuf>,
    #[serde(default)]
    extra_args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Working directory when a spawn names none.
    cwd: Option<PathBuf>,
    /// A spawn's cwd must lie under one of these (when given).
    #[serde(default)]
    allowed_cwds: Vec<PathBuf>,
    stop_signals: Option<Vec<String>>,
    grace_ms: Option<u64>,
    init_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_runtime: Option<String>,
    on_init_timeout: Option<String>,
    on_idle_timeout: Option<String>,
    on_max_runtime: Option<String>,
    slow_after: Option<String>,
    critical_grace_git: Option<String>,
    critical_grace_db: Option<String>,
    critical_grace_files: Option<String>,
    /// The queue its runs go to (default: "default").
    queue: Option<String>,
    /// The restart policy of its runs, unless a spawn gives its own.
    restart: Option<RawRestart>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    listen: Option<String>,
    shutdown_timeout_ms: Option<u64>,
    /// Group and mode of the socket when the daemon binds it itself (not socket-activated).
    socket_group: Option<String>,
    socket_mode: Option<String>,
    /// The daemon's own nice value (-20 to 19).
    nice: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuns {
    grace_ms: Option<u64>,
    kill_deadline_ms: Option<u64>,
    stop_signals: Option<Vec<String>>,
    max_live_runs: Option<usize>,
    default_cwd: Option<PathBuf>,
    /// Run agents as this (unprivileged) user; the daemon must be root.
    user: Option<String>,
    /// cgroup limits per run (where the memory and pids controllers are available).
    memory_max_bytes: Option<u64>,
    pids_max: Option<u64>,
    /// "vfork" (default) or "fork".
    spawn_method: Option<String>,
    /// Say that agents running as root (no `user`, daemon root) is intended: no warning, no alert.
    allow_root_agents: Option<bool>,
    /// The nice value each run starts at (0 to 19).
    nice: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainment {
    mode: Option<String>,
    cgroup_root: Option<PathBuf>,
    /// "auto" (clone3 into the cgroup where the kernel can) or "procs-write".
    cgroup_entry: Option<String>,
}

/// How run leaders enter their cgroups (`containment.cgroup_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupEntryMode {
    /// Cloned into the cgroup (`clone3` with `CLONE_INTO_CGROUP`) where the kernel has it,
    /// else a write to `cgroup.procs` before exec.
    Auto,
    /// Always the write to `cgroup.procs`.
    ProcsWrite,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    max_bytes_per_stream: Option<u64>,
    max_line_bytes: Option<usize>,
}

/// The `--permission-mode` choices `PROGRAM --help` lists, or none if it cannot say within a
/// few seconds (not installed, not the Claude CLI). Only asked for a mode the daemon does not
/// know, so an ordinary config starts nothing.
fn ask_cli_permission_modes(program: &str) -> Vec<String> {
    use std::process::{Command, Stdio};
    let child = Command::new(program)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Vec::new();
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Vec::new();
            }
        }
    }
    let mut help = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read;
        let _ = out.by_ref().take(1 << 20).read_to_string(&mut help);
    }
    crate::agent::claude::parse_permission_modes(&help)
}

/// How runs are contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainmentMode {
    /// A cgroup per run where the daemon can create one, else process groups plus /proc tracking.
    Auto,
    /// Cgroups are required: the daemon refuses to start without a writable cgroup v2 root.
    Cgroup,
    /// Never use cgroups: process group, subreaper and /proc tracking only.
    ProcessGroup,
}

/// The validated configuration with every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub listen: Option<std::net::SocketAddr>,
    pub shutdown_timeout: Duration,
    pub grace: Duration,
    pub kill_deadline: Duration,
    pub stop_signals: Vec<String>,
    pub max_live_runs: usize,
    pub default_cwd: Option<PathBuf>,
    pub containment: ContainmentMode,
    pub cgroup_root: Option<PathBuf>,
    /// Read at start, like the containment mode.
    pub cgroup_entry: CgroupEntryMode,
    pub log_max_bytes_per_stream: u64,
    pub max_line_bytes: usize,
    pub workflows: BTreeMap<String, Workflow>,
    /// Every queue by name; `default` is always there.
    pub queues: BTreeMap<String, QueueConfig>,
    pub debug_wedge_on_sigusr2: bool,
    pub user: Option<String>,
    pub memory_max_bytes: Option<u64>,
    pub pids_max: Option<u64>,
    pub spawn_method: SpawnMethod,
    pub allow_root_agents: bool,
    /// `daemon.nice`: the daemon's own threads' nice value, so that its agents, however busy,
    /// never keep it from reading heartbeats, answering calls and ending runs.
    pub daemon_nice: i32,
    /// `runs.nice`: the nice value each run starts at (its processes inherit it).
    pub run_nice: i32,
    /// Group of the socket the daemon binds itself (default: the daemon's group).
    pub socket_group: Option<String>,
    /// Mode of the socket the daemon binds itself (default 0660).
    pub socket_mode: u32,
    pub access: AccessConfig,
    /// TLS for the TCP listener (cert and key; client_ca asks for client certificates).
    pub tls: Option<TlsConfig>,
    /// `[metrics]`: the HTTP listener and usage sampling.
    pub metrics: MetricsConfig,
    /// `[alerts]`: where alerts are delivered, and how.
    pub alerts: AlertsConfig,
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub repeat_interval: Duration,
    pub retry: crate::alerts::retry::RetryPolicy,
    /// How long one delivery attempt may take.
    pub timeout: Duration,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            repeat_interval: Duration::from_secs(4 * 3600),
            retry: crate::alerts::retry::RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            webhooks: Vec::new(),
        }
    }
}

/// One `[[alerts.webhooks]]`. The URL is a secret (a Slack webhook's is its credential): it is
/// never logged; logs and the failure alert name the webhook by `name`.
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    pub format: crate::alerts::format::Format,
    /// Alert kinds it takes; empty: every kind.
    pub kinds: Vec<String>,
    pub send_resolved: bool,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &"<redacted>")
            .field("format", &self.format)
            .field("kinds", &self.kinds)
            .field("send_resolved", &self.send_resolved)
            .finish()
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where /metrics is served; None: no HTTP listener.
    pub listen: Option<std::net::SocketAddr>,
    pub usage_sample_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            usage_sample_interval: Duration::from_secs(5),
        }
    }
}

/// `[access]`: who holds which role, and the access switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    pub admin: Vec<Grant>,
    pub operator: Vec<Grant>,
    pub viewer: Vec<Grant>,
    pub argv_spawn: Role,
    pub operators_own_runs_only: bool,
    pub tokens_file: Option<PathBuf>,
}

impl AccessConfig {
    /// The policy this config gives a daemon running as `daemon_uid`.
    pub fn policy(&self, daemon_uid: u32) -> Policy {
        Policy {
            daemon_uid,
            admin: self.admin.clone(),
            operator: self.operator.clone(),
            viewer: self.viewer.clone(),
            argv_spawn: self.argv_spawn,
            operators_own_runs_only: self.operators_own_runs_only,
        }
    }
}

/// `[tls]`: the server's certificate and key (PEM), and the CA that client certificates must
/// chain to (mTLS) when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// One queue's limits and alert thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub alert_queue_depth: usize,
    pub alert_queue_wait: Duration,
}

/// The longest duration a policy field may have.
pub const MAX_POLICY_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Parse a policy duration ("10s", "5m"); over 30 days or zero is refused.
pub fn policy_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as \"10s\" or \"5m\" ({e})"))?;
    if d.is_zero() {
        return Err(format!("{s:?} is zero"));
    }
    if d > MAX_POLICY_DURATION {
        return Err(format!("{s:?} is over the limit of 30 days"));
    }
    Ok(d)
}

/// How long a critical section declared on the heartbeat pipe holds off KILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriticalGraces {
    pub git: Duration,
    pub db: Duration,
    pub files: Duration,
}

impl Default for CriticalGraces {
    fn default() -> Self {
        CriticalGraces {
            git: Duration::from_secs(30),
            db: Duration::from_secs(15),
            files: Duration::from_secs(10),
        }
    }
}

impl CriticalGraces {
    pub fn for_section(&self, s: CriticalSection) -> Duration {
        match s {
            CriticalSection::Git => self.git,
            CriticalSection::Db => self.db,
            CriticalSection::Files => self.files,
        }
    }
}

/// A workflow template: how to start the Claude CLI for it and how to watch it.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub template: ClaudeTemplate,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub allowed_cwds: Vec<PathBuf>,
    pub stop_signals: Vec<String>,
    pub grace: Duration,
    pub rules: StuckRules,
    pub critical: CriticalGraces,
    /// The queue its runs go to.
    pub queue: String,
    pub restart: Option<RestartPolicy>,
}

impl Config {
    /// The embedded default configuration.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_CONFIG, "(embedded default)")
    }

    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_with(
            &text,
            &path.display().to_string(),
            &ask_cli_permission_modes,
        )
    }

    /// Parse and validate config text; `origin` names it in errors. Pure: a permission mode
    /// the daemon does not know is refused without asking the CLI (see `load`).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, origin, &|_| Vec::new())
    }

    /// `parse`, asking `PROGRAM --help` through `ask` for a permission mode it does not know.
    fn parse_with(
        text: &str,
        origin: &str,
        ask: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = match e.path().to_string() {
                k if k == "." || k.is_empty() => "(syntax)".to_string(),
                k => k,
            };
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| line_of_offset(text, s.start))
                .unwrap_or_else(|| find_key_line(text, &key));
            ConfigError::Invalid {
                origin: origin.to_string(),
                line,
                key,
                message: inner.message().to_string(),
            }
        })?;
        raw.validate(text, origin, ask)
    }
}

impl RawConfig {
    fn validate(
        self,
        text: &str,
        origin: &str,
        ask: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Config, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            line: find_key_line(text, key),
            key: key.to_string(),
            message,
        };
        let listen = match self.daemon.listen {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s.parse().map_err(|e| {
                bad(
                    "daemon.listen",
                    format!("{s:?} is not an address such as 127.0.0.1:7443 ({e})"),
                )
            })?),
        };
        let grace_ms = self.runs.grace_ms.unwrap_or(5000);
        if grace_ms > 3_600_000 {
            return Err(bad(
                "runs.grace_ms",
                format!("{grace_ms} is over the limit of 3600000 (one hour)"),
            ));
        }
        let kill_deadline_ms = self.runs.kill_deadline_ms.unwrap_or(10_000);
        if kill_deadline_ms == 0 || kill_deadline_ms > 600_000 {
            return Err(bad(
                "runs.kill_deadline_ms",
                format!("{kill_deadline_ms} must be between 1 and 600000"),
            ));
        }
        let stop_signals = self
            .runs
            .stop_signals
            .unwrap_or_else(|| vec!["TERM".to_string()]);
        if stop_signals.is_empty() {
            return Err(bad(
                "runs.stop_signals",
                "needs at least one signal, e.g. [\"TERM\"]".into(),
            ));
        }
        for s in &stop_signals {
            parse_signal(s).map_err(|e| bad("runs.stop_signals", e))?;
        }
        let max_live_runs = self.runs.max_live_runs.unwrap_or(4096);
        if max_live_runs == 0 {
            return Err(bad("runs.max_live_runs", "must be at least 1".into()));
        }
        let containment = match self.containment.mode.as_deref().unwrap_or("auto") {
            "auto" => ContainmentMode::Auto,
            "cgroup" => ContainmentMode::Cgroup,
            "process-group" => ContainmentMode::ProcessGroup,
            other => {
                return Err(bad(
                    "containment.mode",
                    format!("{other:?} is not one of \"auto\", \"cgroup\", \"process-group\""),
                ))
            }
        };
        let cgroup_entry = match self.containment.cgroup_entry.as_deref().unwrap_or("auto") {
            "auto" => CgroupEntryMode::Auto,
            "procs-write" => CgroupEntryMode::ProcsWrite,
            other => {
                return Err(bad(
                    "containment.cgroup_entry",
                    format!("{other:?} is not one of \"auto\", \"procs-write\""),
                ))
            }
        };
        let log_max = self.logs.max_bytes_per_stream.unwrap_or(64 << 20);
        if log_max < 4096 {
            return Err(bad(
                "logs.max_bytes_per_stream",
                format!("{log_max} is under the minimum of 4096"),
            ));
        }
        let max_line_bytes = self.logs.max_line_bytes.unwrap_or(1 << 20);
        if !(256..=64 << 20).contains(&max_line_bytes) {
            return Err(bad(
                "logs.max_line_bytes",
                format!("{max_line_bytes} must be between 256 and 67108864"),
            ));
        }
        let mut queues = BTreeMap::new();
        for (name, q) in self.queues {
            let key = |k: &str| format!("queues.{name}.{k}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(
                    &format!("queues.{name}"),
                    format!("{name:?} is not a queue name (letters, digits, - and _)"),
                ));
            }
            let default_max = if name == DEFAULT_QUEUE {
                max_live_runs
            } else {
                1
            };
            let max_concurrent = q.max_concurrent.unwrap_or(default_max);
            if max_concurrent == 0 {
                return Err(bad(&key("max_concurrent"), "must be at least 1".into()));
            }
            let max_queued = q.max_queued.unwrap_or(10_000);
            if max_queued > 1_000_000 {
                return Err(bad(
                    &key("max_queued"),
                    format!("{max_queued} is over the limit of 1000000"),
                ));
            }
            let alert_queue_wait = match q.alert_queue_wait.as_deref() {
                None => Duration::from_secs(600),
                Some(s) => policy_duration(s).map_err(|m| bad(&key("alert_queue_wait"), m))?,
            };
            queues.insert(
                name,
                QueueConfig {
                    max_concurrent,
                    max_queued,
                    alert_queue_depth: q.alert_queue_depth.unwrap_or(10),
                    alert_queue_wait,
                },
            );
        }
        queues
            .entry(DEFAULT_QUEUE.to_string())
            .or_insert(QueueConfig {
                max_concurrent: max_live_runs,
                max_queued: 10_000,
                alert_queue_depth: 10,
                alert_queue_wait: Duration::from_secs(600),
            });
        let mut workflows = BTreeMap::new();
        for (name, w) in self.workflows {
            let wf = w.validate(&name, text, origin, ask)?;
            if !queues.contains_key(&wf.queue) {
                return Err(bad(
                    &format!("workflows.{name}.queue"),
                    format!(
                        "{:?} is not a configured queue; queues: {}",
                        wf.queue,
                        queues.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            workflows.insert(name, wf);
        }
        if let Some(u) = &self.runs.user {
            if u.is_empty() {
                return Err(bad(
                    "runs.user",
                    "is empty; leave it out to run agents as the daemon's user".into(),
                ));
            }
        }
        if self.runs.pids_max == Some(0) {
            return Err(bad("runs.pids_max", "must be at least 1".into()));
        }
        if self.runs.memory_max_bytes.is_some_and(|m| m < 1 << 20) {
            return Err(bad(
                "runs.memory_max_bytes",
                "must be at least 1048576 (1 MiB)".into(),
            ));
        }
        let daemon_nice = self.daemon.nice.unwrap_or(DEFAULT_DAEMON_NICE);
        if !(-20..=19).contains(&daemon_nice) {
            return Err(bad(
                "daemon.nice",
                format!("{daemon_nice} is not a nice value: it must be -20 to 19"),
            ));
        }
        let run_nice = self.runs.nice.unwrap_or(0);
        if !(0..=19).contains(&run_nice) {
            return Err(bad(
                "runs.nice",
                format!(
                    "{run_nice} is out of range: it must be 0 to 19 (a run never gets more than \
                     normal priority; daemon.nice is the daemon's own)"
                ),
            ));
        }
        let spawn_method = match self.runs.spawn_method.as_deref().unwrap_or("vfork") {
            "vfork" => SpawnMethod::Vfork,
            "fork" => SpawnMethod::Fork,
            other => {
                return Err(bad(
                    "runs.spawn_method",
                    format!("{other:?} is not one of \"vfork\", \"fork\""),
                ))
            }
        };
        let socket_mode = match self.daemon.socket_mode.as_deref() {
            None => 0o660,
            Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
                Ok(v) if v <= 0o777 => v,
                _ => {
                    return Err(bad(
                        "daemon.socket_mode",
                        format!("{m:?} is not an octal file mode such as \"0660\""),
                    ))
                }
            },
        };
        if self.daemon.socket_group.as_deref() == Some("") {
            return Err(bad(
                "daemon.socket_group",
                "is empty; leave it out for the daemon's own group".into(),
            ));
        }
        let grants = |key: &str, list: &[String]| -> Result<Vec<Grant>, ConfigError> {
            list.iter()
                .map(|g| Grant::parse(g).map_err(|e| bad(key, e)))
                .collect()
        };
        let access = AccessConfig {
            admin: grants("access.admin", &self.access.admin)?,
            operator: grants("access.operator", &self.access.operator)?,
            viewer: grants("access.viewer", &self.access.viewer)?,
            argv_spawn: match self.access.argv_spawn.as_deref().unwrap_or("admin") {
                "admin" => Role::Admin,
                "operator" => Role::Operator,
                other => {
                    return Err(bad(
                        "access.argv_spawn",
                        format!("{other:?} is not one of \"admin\", \"operator\""),
                    ))
                }
            },
            operators_own_runs_only: self.access.operators_own_runs_only.unwrap_or(false),
            tokens_file: self
                .access
                .tokens_file
                .filter(|p| !p.as_os_str().is_empty()),
        };
        let tls = match (self.tls.cert, self.tls.key) {
            (None, None) => {
                if self.tls.client_ca.is_some() {
                    return Err(bad(
                        "tls.client_ca",
                        "needs tls.cert and tls.key (the server's own certificate)".into(),
                    ));
                }
                None
            }
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert,
                key,
                client_ca: self.tls.client_ca,
            }),
            (Some(_), None) => return Err(bad("tls.cert", "needs tls.key beside it".into())),
            (None, Some(_)) => return Err(bad("tls.key", "needs tls.cert beside it".into())),
        };
        let metrics = MetricsConfig {
            listen: match self.metrics.listen.as_deref() {
                None | Some("") => None,
                Some(s) => Some(s.parse().map_err(|e| {
                    bad(
                        "metrics.listen",
                        format!("{s:?} is not an address such as 127.0.0.1:9464 ({e})"),
                    )
                })?),
            },
            usage_sample_interval: match self.metrics.usage_sample_interval_ms {
                None => Duration::from_secs(5),
                Some(ms) if (100..=3_600_000).contains(&ms) => Duration::from_millis(ms),
                Some(ms) => {
                    return Err(bad(
                        "metrics.usage_sample_interval_ms",
                        format!("{ms} is outside 100..=3600000"),
                    ))
                }
            },
        };
        let alerts = {
            let raw = self.alerts;
            let ms = |key: &str, v: Option<u64>, default: u64, min: u64| match v {
                None => Ok(Duration::from_millis(default)),
                Some(ms) if ms >= min && ms <= 7 * 24 * 3_600_000 => Ok(Duration::from_millis(ms)),
                Some(ms) => Err(bad(
                    key,
                    format!("{ms} is outside {min}..=604800000 (7 days)"),
                )),
            };
            let retry = crate::alerts::retry::RetryPolicy {
                initial: ms("alerts.retry_initial_ms", raw.retry_initial_ms, 1000, 1)?,
                max: ms("alerts.retry_max_ms", raw.retry_max_ms, 300_000, 1)?,
                max_attempts: match raw.max_attempts {
                    None => 10,
                    Some(n) if (1..=100).contains(&n) => n,
                    Some(n) => {
                        return Err(bad(
                            "alerts.max_attempts",
                            format!("{n} is outside 1..=100"),
                        ))
                    }
                },
            };
            let mut webhooks: Vec<WebhookConfig> = Vec::new();
            for (i, w) in raw.webhooks.into_iter().enumerate() {
                let name = w.name.unwrap_or_else(|| format!("webhook-{}", i + 1));
                let key = "alerts.webhooks";
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(bad(
                        key,
                        format!(
                            "webhook {}: name {name:?} must be letters, digits, '-', '_' or '.'",
                            i + 1
                        ),
                    ));
                }
                if webhooks.iter().any(|o| o.name == name) {
                    return Err(bad(key, format!("two webhooks are named {name:?}")));
                }
                let scheme_ok = w.url.starts_with("https://") || w.url.starts_with("http://");
                if !scheme_ok || w.url.parse::<reqwest::Url>().is_err() {
                    return Err(bad(
                        key,
                        format!("webhook {name}: url must be an http:// or https:// URL"),
                    ));
                }
                let format_name = w.format.unwrap_or_else(|| "json".into());
                let format = crate::alerts::format::Format::parse(&format_name).ok_or_else(|| {
                    bad(
                        key,
                        format!(
                            "webhook {name}: format {format_name:?} is not one of \"slack\", \"alertmanager\", \"json\""
                        ),
                    )
                })?;
                if w.kinds.iter().any(|k| k.is_empty()) {
                    return Err(bad(key, format!("webhook {name}: an empty alert kind")));
                }
                webhooks.push(WebhookConfig {
                    name,
                    url: w.url,
                    format,
                    kinds: w.kinds,
                    send_resolved: w.send_resolved.unwrap_or(true),
                });
            }
            AlertsConfig {
                repeat_interval: ms(
                    "alerts.repeat_interval_ms",
                    raw.repeat_interval_ms,
                    4 * 3_600_000,
                    1000,
                )?,
                retry,
                timeout: ms("alerts.timeout_ms", raw.timeout_ms, 10_000, 100)?,
                webhooks,
            }
        };
        Ok(Config {
            alerts,
            metrics,
            workflows,
            queues,
            spawn_method,
            allow_root_agents: self.runs.allow_root_agents.unwrap_or(false),
            daemon_nice,
            run_nice,
            socket_group: self.daemon.socket_group,
            socket_mode,
            access,
            tls,
            user: self.runs.user,
            memory_max_bytes: self.runs.memory_max_bytes,
            pids_max: self.runs.pids_max,
            debug_wedge_on_sigusr2: self.debug.wedge_on_sigusr2.unwrap_or(false),
            socket: self.daemon.socket.filter(|p| !p.as_os_str().is_empty()),
            state_dir: self.daemon.state_dir.filter(|p| !p.as_os_str().is_empty()),
            listen,
            shutdown_timeout: Duration::from_millis(
                self.daemon.shutdown_timeout_ms.unwrap_or(60_000),
            ),
            grace: Duration::from_millis(grace_ms),
            kill_deadline: Duration::from_millis(kill_deadline_ms),
            stop_signals,
            max_live_runs,
            default_cwd: self.runs.default_cwd.filter(|p| !p.as_os_str().is_empty()),
            containment,
            cgroup_entry,
            cgroup_root: self
                .containment
                .cgroup_root
                .filter(|p| !p.as_os_str().is_empty()),
            log_max_bytes_per_stream: log_max,
            max_line_bytes,
        })
    }
}

impl RawWorkflow {
    fn validate(
        self,
        name: &str,
        text: &str,
        origin: &str,
        ask: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Workflow, ConfigError> {
        let table = format!("workflows.{name}");
        let bad = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            line: find_key_line(text, &format!("{table}.{key}")),
            key: format!("{table}.{key}"),
            message,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "",
                format!("{name:?} is not a workflow name (letters, digits, - and _)"),
            ));
        }
        let append_system_prompt = match (self.append_system_prompt, self.append_system_prompt_file)
        {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "append_system_prompt_file",
                    "give append_system_prompt or append_system_prompt_file, not both".into(),
                ))
            }
            (Some(p), None) => Some(p),
            (None, Some(f)) => Some(std::fs::read_to_string(&f).map_err(|e| {
                bad(
                    "append_system_prompt_file",
                    format!("cannot read {}: {e}", f.display()),
                )
            })?),
            (None, None) => None,
        };
        let mut template = ClaudeTemplate {
            program: self.program.unwrap_or_else(|| "claude".into()),
            model: self.model,
            max_turns: self.max_turns,
            permission_mode: self.permission_mode,
            allowed_tools: self.allowed_tools,
            append_system_prompt,
            extra_args: self.extra_args,
            cli_permission_modes: Vec::new(),
        };
        // A mode this daemon does not know may be one a newer CLI has: ask the CLI itself.
        if let Some(mode) = &template.permission_mode {
            if !template.accepts_permission_mode(mode) {
                template.cli_permission_modes = ask(&template.program);
            }
        }
        template
            .validate()
            .map_err(|e| bad(e.field(), e.to_string()))?;
        let stop_signals = self
            .stop_signals
            .unwrap_or_else(|| vec!["INT".into(), "TERM".into()]);
        if stop_signals.is_empty() {
            return Err(bad("stop_signals", "needs at least one signal".into()));
        }
        for s in &stop_signals {
            parse_signal(s).map_err(|e| bad("stop_signals", e))?;
        }
        let dur = |key: &str,
                   v: Option<String>,
                   default: Option<Duration>|
         -> Result<Option<Duration>, ConfigError> {
            match v.as_deref() {
                None => Ok(default),
                Some("off") | Some("none") | Some("0") => Ok(None),
                Some(s) => humantime::parse_duration(s).map(Some).map_err(|e| {
                    bad(
                        key,
                        format!("{s:?} is not a duration such as \"30m\" or \"off\" ({e})"),
                    )
                }),
            }
        };
        let action = |key: &str, v: Option<String>| -> Result<Action, ConfigError> {
            match v.as_deref().unwrap_or("kill") {
                "alert" => Ok(Action::Alert),
                "kill" => Ok(Action::Kill),
                "restart" => Ok(Action::Restart),
                other => Err(bad(
                    key,
                    format!("{other:?} is not one of \"alert\", \"kill\", \"restart\""),
                )),
            }
        };
        let d = StuckRules::default();
        let rule = |after: Option<Duration>, action: Action| after.map(|a| Rule::new(a, action));
        let rules = StuckRules {
            init_timeout: rule(
                dur(
                    "init_timeout",
                    self.init_timeout,
                    d.init_timeout.map(|r| r.after),
                )?,
                action("on_init_timeout", self.on_init_timeout)?,
            ),
            idle_timeout: rule(
                dur(
                    "idle_timeout",
                    self.idle_timeout,
                    d.idle_timeout.map(|r| r.after),
                )?,
                action("on_idle_timeout", self.on_idle_timeout)?,
            ),
            max_runtime: rule(
                dur(
                    "max_runtime",
                    self.max_runtime,
                    d.max_runtime.map(|r| r.after),
                )?,
                action("on_max_runtime", self.on_max_runtime)?,
            ),
            slow_after: dur("slow_after", self.slow_after, Some(d.slow_after))?
                .unwrap_or(d.slow_after),
        };
        let c = CriticalGraces::default();
        let critical = CriticalGraces {
            git: dur("critical_grace_git", self.critical_grace_git, Some(c.git))?
                .unwrap_or_default(),
            db: dur("critical_grace_db", self.critical_grace_db, Some(c.db))?.unwrap_or_default(),
            files: dur(
                "critical_grace_files",
                self.critical_grace_files,
                Some(c.files),
            )?
            .unwrap_or_default(),
        };
        let grace_ms = self.grace_ms.unwrap_or(5000);
        if grace_ms > 3_600_000 {
            return Err(bad(
                "grace_ms",
                format!("{grace_ms} is over the limit of 3600000"),
            ));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.starts_with("WF_") {
                return Err(bad(
                    "env",
                    format!("{k:?} cannot be set (empty, has '=', or WF_ is the daemon's)"),
                ));
            }
        }
        for p in self.cwd.iter().chain(self.allowed_cwds.iter()) {
            if !p.is_absolute() {
                return Err(bad(
                    "cwd",
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
        let restart = match self.restart {
            None => None,
            Some(r) => Some(
                r.validate()
                    .map_err(|(k, m)| bad(&format!("restart.{k}"), m))?,
            ),
        };
        Ok(Workflow {
            queue: self.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
            restart,
            name: name.to_string(),
            template,
            env: self.env,
            cwd: self.cwd,
            allowed_cwds: self.allowed_cwds,
            stop_signals,
            grace: Duration::from_millis(grace_ms),
            rules,
            critical,
        })
    }
}

impl RawRestart {
    fn validate(self) -> Result<RestartPolicy, (&'static str, String)> {
        let d = RestartPolicy::default();
        let mut on = Vec::new();
        for s in &self.on {
            let v = RestartOn::parse(s).ok_or((
                "on",
                format!("{s:?} is not one of \"failed\", \"timed_out\", \"lost\""),
            ))?;
            on.push(v);
        }
        let ms = |k: &'static str, v: Option<String>, default: u64| match v {
            None => Ok(default),
            Some(s) => policy_duration(&s)
                .map(|d| d.as_millis() as u64)
                .map_err(|m| (k, m)),
        };
        Ok(RestartPolicy {
            on,
            max_restarts: self.max_restarts.unwrap_or(d.max_restarts),
            backoff_ms: ms("backoff", self.backoff, d.backoff_ms)?,
            max_backoff_ms: ms("max_backoff", self.max_backoff, d.max_backoff_ms)?,
            reset_after_ms: ms("reset_after", self.reset_after, d.reset_after_ms)?,
        })
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where a dotted key such as `runs.grace_ms` is set, or 0 when it is not in the text.
fn find_key_line(text: &str, dotted: &str) -> usize {
    let (table, key) = match dotted.rsplit_once('.') {
        Some((t, k)) => (t, k),
        None => ("", dotted),
    };
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            current = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        if current == table {
            if let Some((k, _)) = l.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return i + 1;
                }
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded().expect("embedded config");
        assert_eq!(c.grace, Duration::from_millis(5000));
        assert_eq!(c.stop_signals, vec!["TERM".to_string()]);
        assert_eq!(c.containment, ContainmentMode::Auto);
    }

    #[test]
    fn access_tls_and_socket_settings_parse_and_bad_ones_are_named() {
        let c = Config::embedded().expect("embedded");
        assert_eq!(
            c.access,
            AccessConfig {
                admin: vec![],
                operator: vec![],
                viewer: vec![],
                argv_spawn: Role::Admin,
                operators_own_runs_only: false,
                tokens_file: None,
            }
        );
        assert_eq!(
            (c.socket_mode, c.socket_group.as_deref(), c.tls.is_none()),
            (0o660, None, true)
        );
        assert!(!c.allow_root_agents);
        let c = Config::parse(
            "[daemon]\nsocket_group = \"wf-operators\"\nsocket_mode = \"0600\"\n\
             [runs]\nallow_root_agents = true\n\
             [access]\nadmin = [\"uid:0\", \"group:wf-admins\"]\noperator = [\"group:wf-operators\", \"alice\"]\n\
             viewer = [\"gid:3000\", \"cert:dash\"]\nargv_spawn = \"operator\"\noperators_own_runs_only = true\n\
             tokens_file = \"/etc/wf-supervisor/tokens\"\n\
             [tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nclient_ca = \"/ca.pem\"\n",
            "t.toml",
        )
        .expect("valid");
        assert_eq!(c.socket_mode, 0o600);
        assert_eq!(c.socket_group.as_deref(), Some("wf-operators"));
        assert!(c.allow_root_agents);
        assert_eq!(
            c.access.admin,
            vec![Grant::Uid(0), Grant::Group("wf-admins".into())]
        );
        assert_eq!(c.access.operator[1], Grant::User("alice".into()));
        assert_eq!(
            c.access.viewer,
            vec![Grant::Gid(3000), Grant::Cert("dash".into())]
        );
        assert_eq!(c.access.argv_spawn, Role::Operator);
        assert!(c.access.operators_own_runs_only);
        let tls = c.tls.expect("tls");
        assert_eq!(tls.client_ca, Some(PathBuf::from("/ca.pem")));

        let e = Config::parse("[access]\n\noperator = [\"uid:bob\"]\n", "t.toml").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("line 3: key `access.operator`") && e.contains("not a uid"),
            "{e}"
        );
        let e = Config::parse("[access]\nargv_spawn = \"viewer\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("access.argv_spawn"), "{e}");
        let e = Config::parse("[daemon]\nsocket_mode = \"rw\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("daemon.socket_mode"), "{e}");
        let e = Config::parse("[tls]\ncert = \"/c.pem\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("needs tls.key"), "{e}");
        let e = Config::parse("[tls]\nclient_ca = \"/c.pem\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("tls.client_ca"), "{e}");
    }

    #[test]
    fn the_shipped_systemd_config_runs_agents_as_wf_agent_and_makes_wf_operators_operators() {
        let c = Config::parse(
            include_str!("../systemd/config.toml.example"),
            "systemd/config.toml.example",
        )
        .expect("the shipped example is valid");
        assert_eq!(c.user.as_deref(), Some("wf-agent"));
        assert!(!c.allow_root_agents);
        assert_eq!(c.access.operator, vec![Grant::Group("wf-operators".into())]);
        assert_eq!(c.access.argv_spawn, Role::Admin);
        let p = c.access.policy(0);
        let member = crate::access::Subject::Unix(crate::access::UnixPeer {
            uid: 1001,
            gid: 1001,
            pid: None,
            user: Some("alice".into()),
            groups: vec![
                (1001, Some("alice".into())),
                (990, Some("wf-operators".into())),
            ],
        });
        assert_eq!(p.role_of(&member), Some(Role::Operator));
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let err = Config::parse("[runs]\n\ngrace_ms = \"soon\"\n", "t.toml").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("t.toml"), "{s}");
        assert!(s.contains("line 3"), "{s}");
        assert!(s.contains("runs.grace_ms"), "{s}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let s = Config::parse("[runs]\ngrace = 3\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(s.contains("grace"), "{s}");
        assert!(s.contains("line 2"), "{s}");
    }

    #[test]
    fn workflows_take_defaults_and_refuse_bad_values() {
        let c = Config::parse(
            "[workflows.builder]\nmodel = \"sonnet\"\ninit_timeout = \"5s\"\non_init_timeout = \"restart\"\n",
            "t.toml",
        )
        .expect("valid");
        let w = &c.workflows["builder"];
        assert_eq!(w.template.program, "claude");
        assert_eq!(w.stop_signals, vec!["INT".to_string(), "TERM".to_string()]);
        let init = w.rules.init_timeout.expect("init rule");
        assert_eq!(init.after, Duration::from_secs(5));
        assert_eq!(init.action, Action::Restart);
        assert_eq!(w.critical.git, Duration::from_secs(30));
        let s = Config::parse("[workflows.b]\n\nidle_timeout = \"soonish\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("workflows.b.idle_timeout") && s.contains("line 3"),
            "{s}"
        );
        let s = Config::parse("[workflows.b]\non_max_runtime = \"explode\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(s.contains("workflows.b.on_max_runtime"), "{s}");
        // A permission mode the CLI does not take: refused at start.
        let s = Config::parse(
            "[workflows.b]\nprogram = \"/nonexistent/claude\"\npermission_mode = \"yolo\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            s.contains("workflows.b.permission_mode")
                && s.contains("\"yolo\"")
                && s.contains("plan"),
            "{s}"
        );
        // One the configured CLI lists is accepted.
        let listed = |program: &str| {
            assert_eq!(program, "/opt/claude");
            vec!["yolo".to_string()]
        };
        let c = Config::parse_with(
            "[workflows.b]\nprogram = \"/opt/claude\"\npermission_mode = \"yolo\"\n",
            "t.toml",
            &listed,
        )
        .unwrap();
        assert_eq!(
            c.workflows["b"].template.permission_mode.as_deref(),
            Some("yolo")
        );
        let c = Config::parse("[workflows.b]\npermission_mode = \"plan\"\n", "t.toml").unwrap();
        assert_eq!(
            c.workflows["b"].template.permission_mode.as_deref(),
            Some("plan")
        );
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let c = Config::parse(
            include_str!("../systemd/config.toml.example"),
            "config.toml.example",
        )
        .expect("the example config");
        assert!(c.queues["agents"].max_concurrent >= 1);
        let b = &c.workflows["builder"];
        assert_eq!(b.queue, "agents");
        assert!(b.restart.as_ref().is_some_and(|r| r.on.len() == 3));
    }

    #[test]
    fn queues_default_and_validate() {
        let c = Config::parse("[runs]\nmax_live_runs = 7\n", "t.toml").expect("valid");
        assert_eq!(c.queues.len(), 1);
        assert_eq!(c.queues["default"].max_concurrent, 7);
        assert_eq!(c.queues["default"].max_queued, 10_000);
        let c = Config::parse(
            "[queues.agents]\nmax_concurrent = 3\n\n[workflows.b]\nqueue = \"agents\"\nrestart = { on = [\"failed\", \"lost\"], backoff = \"2s\" }\n",
            "t.toml",
        )
        .expect("valid");
        assert_eq!(c.queues["agents"].max_concurrent, 3);
        let w = &c.workflows["b"];
        assert_eq!(w.queue, "agents");
        let r = w.restart.as_ref().expect("policy");
        assert_eq!(r.on, vec![RestartOn::Failed, RestartOn::Lost]);
        assert_eq!((r.backoff_ms, r.max_restarts), (2000, 3));
        let s = Config::parse("[workflows.b]\nqueue = \"nope\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("workflows.b.queue") && s.contains("default"),
            "{s}"
        );
        let s = Config::parse("[queues.x]\nmax_concurrent = 0\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("queues.x.max_concurrent") && s.contains("line 2"),
            "{s}"
        );
        let s = Config::parse(
            "[workflows.b]\nrestart = { on = [\"sometimes\"] }\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(s.contains("restart.on") && s.contains("sometimes"), "{s}");
        let s = Config::parse("[queues.x]\nalert_queue_wait = \"90d\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(s.contains("30 days"), "{s}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let s = Config::parse("[containment]\nmode = \"jail\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("line 2") && s.contains("containment.mode"),
            "{s}"
        );
        let s = Config::parse("[runs]\nstop_signals = [\"NOPE\"]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(s.contains("runs.stop_signals") && s.contains("NOPE"), "{s}");
        let s = Config::parse("[daemon]\nlisten = \"here\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(s.contains("daemon.listen"), "{s}");
    }

    #[test]
    fn the_daemon_outranks_its_runs_unless_told_otherwise() {
        let c = Config::parse("", "t.toml").expect("valid");
        assert_eq!((c.daemon_nice, c.run_nice), (DEFAULT_DAEMON_NICE, 0));
        const { assert!(DEFAULT_DAEMON_NICE < 0) };
        let embedded = Config::embedded().expect("the embedded default");
        assert_eq!(
            (embedded.daemon_nice, embedded.run_nice),
            (DEFAULT_DAEMON_NICE, 0)
        );
        let c = Config::parse("[daemon]\nnice = 0\n[runs]\nnice = 19\n", "t.toml").expect("valid");
        assert_eq!((c.daemon_nice, c.run_nice), (0, 19));
        let e = Config::parse("[runs]\nnice = -5\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs.nice") && e.contains("0 to 19"), "{e}");
    }
}
