//! Spawn validation: a request as the API gave it becomes a `RunSpec` (what to run) with its
//! `RunPolicy` (where and when), or an `InvalidArgument` naming the field. Pure but for the
//! file system checks of `cwd`; the core calls it before a run exists, so bad input changes
//! nothing.
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, MAX_POLICY_DURATION};
use crate::process::signals::parse_signal;
use crate::run::agent::AgentSpec;
use crate::run::RunSpec;
use crate::schedule::{RestartOn, RestartPolicy, RunPolicy, DEFAULT_QUEUE};
use crate::supervisor::handle::{ApiError, SpawnRequest};

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

const MAX_POLICY_MS: u64 = MAX_POLICY_DURATION.as_millis() as u64;

/// Checks spawns against the config in force.
pub struct Validator<'a> {
    pub config: &'a Config,
    pub default_cwd: &'a Path,
    /// Whether a run id is in the run table (for `after`).
    pub known_run: &'a dyn Fn(&str) -> bool,
    pub now_ms: i64,
}

/// The error for a queue the config does not define, listing the ones it does.
pub fn unknown_queue(config: &Config, queue: &str) -> ApiError {
    ApiError::invalid(
        "queue",
        format!(
            "unknown queue {queue:?}; queues: {}",
            config.queues.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// A restart policy from the API's fields: zero means the default; `on` empty means none.
pub fn restart_policy(
    on: &[String],
    max_restarts: u32,
    backoff_ms: u64,
    max_backoff_ms: u64,
    reset_after_ms: u64,
) -> Result<Option<RestartPolicy>, ApiError> {
    if on.is_empty() {
        return Ok(None);
    }
    let d = RestartPolicy::default();
    let mut list = Vec::new();
    for s in on {
        let v = RestartOn::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "restart.on",
                format!("{s:?} is not one of \"failed\", \"timed_out\", \"lost\""),
            )
        })?;
        if !list.contains(&v) {
            list.push(v);
        }
    }
    for (field, v) in [
        ("restart.backoff_ms", backoff_ms),
        ("restart.max_backoff_ms", max_backoff_ms),
        ("restart.reset_after_ms", reset_after_ms),
    ] {
        if v > MAX_POLICY_MS {
            return Err(ApiError::invalid(
                field,
                format!("{v} is over the limit of {MAX_POLICY_MS} (30 days)"),
            ));
        }
    }
    if max_restarts > 1000 {
        return Err(ApiError::invalid(
            "restart.max_restarts",
            format!("{max_restarts} is over the limit of 1000"),
        ));
    }
    let or = |v: u64, d: u64| if v == 0 { d } else { v };
    Ok(Some(RestartPolicy {
        on: list,
        max_restarts: if max_restarts == 0 {
            d.max_restarts
        } else {
            max_restarts
        },
        backoff_ms: or(backoff_ms, d.backoff_ms),
        max_backoff_ms: or(max_backoff_ms, d.max_backoff_ms),
        reset_after_ms: or(reset_after_ms, d.reset_after_ms),
    }))
}

impl Validator<'_> {
    /// The run's queue and policy: the spawn's, else its workflow's, else the defaults.
    pub fn policy(
        &self,
        req: &SpawnRequest,
        workflow: Option<&crate::config::Workflow>,
    ) -> Result<RunPolicy, ApiError> {
        let queue = if !req.queue.is_empty() {
            req.queue.clone()
        } else {
            workflow
                .map(|w| w.queue.clone())
                .unwrap_or_else(|| DEFAULT_QUEUE.to_string())
        };
        if !self.config.queues.contains_key(&queue) {
            return Err(unknown_queue(self.config, &queue));
        }
        for (i, id) in req.after.iter().enumerate() {
            if !(self.known_run)(id) {
                return Err(ApiError::invalid(
                    "after",
                    format!("after[{i}] = {id:?} is not a known run"),
                ));
            }
        }
        if req.not_before < 0 {
            return Err(ApiError::invalid(
                "not_before",
                format!("{} is negative (Unix ms expected)", req.not_before),
            ));
        }
        if req.not_before > self.now_ms.saturating_add(MAX_POLICY_MS as i64) {
            return Err(ApiError::invalid(
                "not_before",
                format!(
                    "{} is more than 30 days from now (Unix ms expected)",
                    req.not_before
                ),
            ));
        }
        for (field, v) in [
            ("timeout_ms", req.timeout_ms),
            ("queue_timeout_ms", req.queue_timeout_ms),
        ] {
            if v > MAX_POLICY_MS {
                return Err(ApiError::invalid(
                    field,
                    format!("{v} is over the limit of {MAX_POLICY_MS} (30 days)"),
                ));
            }
        }
        if req.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(ApiError::invalid(
                "idempotency_key",
                format!(
                    "is {} bytes, over the limit of {MAX_IDEMPOTENCY_KEY}",
                    req.idempotency_key.len()
                ),
            ));
        }
        let mut after: Vec<String> = Vec::new();
        for id in &req.after {
            if !after.contains(id) {
                after.push(id.clone());
            }
        }
        Ok(RunPolicy {
            queue,
            priority: req.priority,
            after,
            not_before: req.not_before,
            timeout_ms: req.timeout_ms,
            queue_timeout_ms: req.queue_timeout_ms,
            restart: req
                .restart
                .clone()
                .or_else(|| workflow.and_then(|w| w.restart.clone())),
            idempotency_key: req.idempotency_key.clone(),
        })
    }

    pub fn validate(&self, req: &SpawnRequest) -> Result<RunSpec, ApiError> {
        if !req.workflow.is_empty() {
            return self.validate_workflow(req);
        }
        if !req.prompt.is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                "a prompt goes with a workflow; name one",
            ));
        }
        if req.argv.is_empty() {
            return Err(ApiError::invalid("argv", "must name a program to run"));
        }
        if req.argv[0].is_empty() {
            return Err(ApiError::invalid("argv", "argv[0] (the program) is empty"));
        }
        if let Some(i) = req.argv.iter().position(|a| a.contains('\0')) {
            return Err(ApiError::invalid(
                "argv",
                format!("argv[{i}] contains a NUL byte"),
            ));
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(ApiError::invalid(
                    "env",
                    format!("{k:?} is not a valid variable name"),
                ));
            }
            if v.contains('\0') {
                return Err(ApiError::invalid(
                    "env",
                    format!("the value of {k} contains a NUL byte"),
                ));
            }
            if k == "WF_RUN_ID" || k == "WF_HEARTBEAT_FD" {
                return Err(ApiError::invalid(
                    "env",
                    format!("{k} is set by the daemon"),
                ));
            }
        }
        for k in req.labels.keys() {
            if k.is_empty() {
                return Err(ApiError::invalid("labels", "a label key is empty"));
            }
        }
        let cwd = if req.cwd.is_empty() {
            self.default_cwd.to_path_buf()
        } else {
            let p = PathBuf::from(&req.cwd);
            if !p.is_absolute() {
                return Err(ApiError::invalid(
                    "cwd",
                    format!("{:?} is not an absolute path", req.cwd),
                ));
            }
            if !p.is_dir() {
                return Err(ApiError::invalid(
                    "cwd",
                    format!("{:?} is not an existing directory", req.cwd),
                ));
            }
            // Resolve `..` and symlinks: the run records (and rules check) where it really runs.
            std::fs::canonicalize(&p).map_err(|e| {
                ApiError::invalid("cwd", format!("cannot resolve {:?}: {e}", req.cwd))
            })?
        };
        let stop_signals = if req.stop_signals.is_empty() {
            self.config.stop_signals.clone()
        } else {
            req.stop_signals.clone()
        };
        let stop_signals = stop_signals
            .iter()
            .map(|s| {
                parse_signal(s)
                    .map(crate::process::signals::signal_name)
                    .map_err(|e| ApiError::invalid("stop_signals", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if req.grace_ms > 3_600_000 {
            return Err(ApiError::invalid(
                "grace_ms",
                format!("{} is over the limit of 3600000 (one hour)", req.grace_ms),
            ));
        }
        let grace = if req.grace_ms == 0 {
            self.config.grace
        } else {
            Duration::from_millis(req.grace_ms)
        };
        Ok(RunSpec {
            argv: req.argv.clone(),
            cwd,
            env: req.env.clone(),
            labels: req.labels.clone(),
            stop_signals,
            grace,
            agent: None,
            policy: self.policy(req, None)?,
            owner: req.owner.clone(),
        })
    }

    /// A spawn from a workflow template: the daemon builds the Claude argv itself.
    fn validate_workflow(&self, req: &SpawnRequest) -> Result<RunSpec, ApiError> {
        let Some(wf) = self.config.workflows.get(&req.workflow) else {
            let known: Vec<&str> = self.config.workflows.keys().map(|k| k.as_str()).collect();
            return Err(ApiError::invalid(
                "workflow",
                format!(
                    "unknown workflow {:?}; known: {}",
                    req.workflow,
                    if known.is_empty() {
                        "none configured".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        if !req.argv.is_empty() {
            return Err(ApiError::invalid(
                "argv",
                "give argv or a workflow, not both",
            ));
        }
        if req.prompt.trim().is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                format!("workflow {} needs a prompt", wf.name),
            ));
        }
        if req.prompt.contains('\0') {
            return Err(ApiError::invalid("prompt", "contains a NUL byte"));
        }
        let mut template = wf.template.clone();
        let o = &req.overrides;
        if let Some(m) = &o.model {
            template.model = Some(m.clone()).filter(|m| !m.is_empty());
        }
        if let Some(t) = o.max_turns {
            template.max_turns = Some(t).filter(|t| *t > 0);
        }
        if let Some(p) = &o.permission_mode {
            template.permission_mode = Some(p.clone()).filter(|p| !p.is_empty());
        }
        if let Some(t) = &o.allowed_tools {
            template.allowed_tools = t.clone();
        }
        if let Some(a) = &o.append_system_prompt {
            template.append_system_prompt = Some(a.clone()).filter(|a| !a.is_empty());
        }
        template
            .validate()
            .map_err(|e| ApiError::invalid("overrides", e.to_string()))?;
        let argv =
            crate::agent::claude::build_argv(&template, &req.prompt, req.resume_session.as_deref());
        // The workflow's own env (API keys, HOME) stays in the config: it is added at spawn and
        // never recorded with the run. The spec keeps only what the caller passed.
        let mut plain = req.clone();
        plain.workflow.clear();
        plain.prompt.clear();
        plain.argv = argv;
        if plain.cwd.is_empty() {
            if let Some(c) = &wf.cwd {
                plain.cwd = c.display().to_string();
            }
        }
        if plain.stop_signals.is_empty() {
            plain.stop_signals = wf.stop_signals.clone();
        }
        if plain.grace_ms == 0 {
            plain.grace_ms = wf.grace.as_millis() as u64;
        }
        let mut spec = self.validate(&plain)?;
        let allowed = |p: &PathBuf| {
            let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            spec.cwd.starts_with(real)
        };
        if !wf.allowed_cwds.is_empty() && !wf.allowed_cwds.iter().any(allowed) {
            return Err(ApiError::invalid(
                "cwd",
                format!(
                    "{} is outside the workflow's allowed directories ({})",
                    spec.cwd.display(),
                    wf.allowed_cwds
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        spec.policy = self.policy(req, Some(wf))?;
        spec.agent = Some(AgentSpec {
            workflow: wf.name.clone(),
            prompt: req.prompt.clone(),
            template,
            resume_session: req.resume_session.clone(),
        });
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[queues.agents]\nmax_concurrent = 2\n\n[workflows.builder]\nqueue = \"agents\"\nrestart = { on = [\"lost\"] }\n";

    fn check(req: &SpawnRequest) -> Result<RunSpec, ApiError> {
        let config = Config::parse(CONFIG, "t.toml").expect("config");
        let known = |id: &str| id == "run_0123456789ab";
        let v = Validator {
            config: &config,
            default_cwd: Path::new("/"),
            known_run: &known,
            now_ms: 1_000_000,
        };
        v.validate(req)
    }

    fn argv() -> SpawnRequest {
        SpawnRequest {
            argv: vec!["true".into()],
            ..SpawnRequest::default()
        }
    }

    fn field(r: Result<RunSpec, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidArgument { field, message }) => format!("{field}: {message}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn the_queue_is_the_spawns_else_the_workflows_else_default() {
        let spec = check(&argv()).expect("valid");
        assert_eq!(spec.policy.queue, "default");
        assert_eq!(spec.policy.restart, None);
        let mut req = argv();
        req.queue = "agents".into();
        assert_eq!(check(&req).expect("valid").policy.queue, "agents");
        let req = SpawnRequest {
            workflow: "builder".into(),
            prompt: "do it".into(),
            ..SpawnRequest::default()
        };
        let spec = check(&req).expect("valid");
        assert_eq!(spec.policy.queue, "agents");
        assert_eq!(
            spec.policy.restart.map(|r| r.on),
            Some(vec![RestartOn::Lost])
        );
        let mut req = argv();
        req.queue = "heavy".into();
        let e = field(check(&req));
        assert!(
            e.starts_with("queue:") && e.contains("agents, default"),
            "{e}"
        );
    }

    #[test]
    fn policy_fields_are_checked_and_named() {
        let mut req = argv();
        req.after = vec!["run_0123456789ab".into(), "run_0123456789ab".into()];
        assert_eq!(check(&req).expect("valid").policy.after.len(), 1);
        req.after.push("run_ffffffffffff".into());
        assert!(field(check(&req)).starts_with("after: after[2]"));
        let mut req = argv();
        req.timeout_ms = MAX_POLICY_MS + 1;
        assert!(field(check(&req)).starts_with("timeout_ms:"));
        let mut req = argv();
        req.queue_timeout_ms = MAX_POLICY_MS + 1;
        assert!(field(check(&req)).starts_with("queue_timeout_ms:"));
        let mut req = argv();
        req.not_before = -1;
        assert!(field(check(&req)).starts_with("not_before:"));
        req.not_before = 1_000_000 + MAX_POLICY_MS as i64 + 1;
        assert!(field(check(&req)).contains("30 days"));
        let mut req = argv();
        req.idempotency_key = "k".repeat(MAX_IDEMPOTENCY_KEY);
        assert!(check(&req).is_ok());
        req.idempotency_key.push('k');
        assert!(field(check(&req)).starts_with("idempotency_key:"));
    }

    #[test]
    fn restart_policies_from_the_api_take_defaults_for_zero() {
        assert_eq!(restart_policy(&[], 5, 1, 1, 1).expect("ok"), None);
        let p = restart_policy(&["failed".into(), "TIMED_OUT".into()], 0, 0, 0, 0)
            .expect("ok")
            .expect("some");
        assert_eq!(p.on, vec![RestartOn::Failed, RestartOn::TimedOut]);
        assert_eq!(p.max_restarts, 3);
        assert_eq!((p.backoff_ms, p.max_backoff_ms), (10_000, 300_000));
        let e = restart_policy(&["often".into()], 0, 0, 0, 0).expect_err("bad word");
        assert!(e.to_string().starts_with("restart.on:"), "{e}");
        let e = restart_policy(&["lost".into()], 0, MAX_POLICY_MS + 1, 0, 0).expect_err("long");
        assert!(e.to_string().starts_with("restart.backoff_ms:"), "{e}");
    }
}
