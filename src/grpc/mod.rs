//! The gRPC API: `wf.supervisor.v1.Supervisor`. Each handler first authorizes the call through
//! `auth` (one table of RPC -> role), then checks the request's shape, turns it into a message
//! for the core through `SupervisorHandle`, and converts the answer; errors become statuses in
//! `status.rs` only.
pub mod auth;
pub mod bounds;
mod convert;
pub mod listen;
mod logs;
mod queue;
mod status;
mod uds_authority;
mod watch_queue;

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use crate::access::{self, Facts, Role};
use crate::process::limits::{self, Host};
use crate::proto;
use crate::proto::supervisor_server::Supervisor;
use crate::run::RunStatus;
use crate::store::{AuditRecord, Store};
use crate::supervisor::{ApiError, Overrides, SpawnRequest, SupervisorHandle};

pub use auth::{Access, Who};
pub use convert::{queue_to_proto, run_to_proto, status_from_proto, status_to_proto};
pub use uds_authority::{rewrite_authority, rewrite_bytes, AuthorityRewrite};

/// Events a Watch stream hands the transport ahead of what it has sent: few, so that a watcher
/// that falls behind leaves its backlog where its runs' heartbeats merge.
const WATCH_IN_FLIGHT: usize = 16;
/// State changes a Watch stream keeps for a watcher that falls behind before it tells it how
/// many it missed (heartbeats merge and take one place per run).
const WATCH_BACKLOG: usize = 16_384;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct SupervisorService {
    handle: SupervisorHandle,
    store: Store,
    containment: &'static str,
    /// Fired at shutdown so that endless streams (Watch, Logs --follow) end.
    shutdown: CancellationToken,
    access: Access,
    /// The host's limits for GetHealth's capacity fields.
    host: Option<Arc<Host>>,
}

impl SupervisorService {
    pub fn new(
        handle: SupervisorHandle,
        store: Store,
        containment: &'static str,
        shutdown: CancellationToken,
        access: Access,
    ) -> Self {
        SupervisorService {
            handle,
            store,
            containment,
            shutdown,
            access,
            host: None,
        }
    }

    /// Report the host's capacity in GetHealth.
    pub fn with_host(mut self, host: Arc<Host>) -> Self {
        self.host = Some(host);
        self
    }

    /// A mutating call past a field's bound is refused and audited like any refusal, with none
    /// of its (over-long) fields in the record.
    async fn within_bounds(
        &self,
        who: &Who,
        action: &str,
        run_id: &str,
        checked: Result<(), bounds::Violation>,
    ) -> Result<(), Status> {
        let Err(v) = checked else { return Ok(()) };
        let st = Status::from(v);
        let run_id = if run_id.len() <= bounds::MAX_RUN_ID_BYTES {
            run_id
        } else {
            ""
        };
        let rec = who.record(action, run_id, json!({"out_of_bounds": true}));
        self.write_audit(refusal(rec, &st)).await;
        Err(st)
    }

    /// Authenticate and authorize a call (see `auth`); a refusal is audited with `run_id` and
    /// `fields`.
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &str,
        facts: Facts,
        run_id: &str,
        fields: impl FnOnce() -> serde_json::Value,
    ) -> Result<Who, Status> {
        self.access
            .authorize(request, method, facts, run_id, fields, &self.store)
            .await
    }

    /// With `[access] operators_own_runs_only`, an operator may act on its own runs only. An
    /// unknown run passes (the call itself reports NOT_FOUND).
    async fn check_owner(&self, who: &Who, method: &str, run_id: &str) -> Result<(), Status> {
        let state = self.access.current();
        if who.role == Some(Role::Admin) || !state.policy.operators_own_runs_only {
            return Ok(());
        }
        if run_id.is_empty() {
            return Err(Status::permission_denied(format!(
                "{} needs role admin for {method} of more than one run: operators act only on \
                 their own runs ([access] operators_own_runs_only)",
                who.identity
            )));
        }
        let run = match self.handle.get(run_id).await {
            Ok(run) => run,
            Err(_) => return Ok(()),
        };
        let owner = run.spec.owner.as_ref();
        if access::may_act_on(&who.subject, who.role, owner, &state.policy) {
            return Ok(());
        }
        let whose = match owner {
            Some(o) if o.kind == "unix" => match o.uid {
                Some(uid) if o.name.is_empty() => format!("uid {uid}"),
                Some(uid) => format!("uid {uid} ({})", o.name),
                None => o.name.clone(),
            },
            Some(o) => format!("{} {}", o.kind, o.name),
            None => "nobody on record".to_string(),
        };
        Err(Status::permission_denied(format!(
            "{} may not {method} run {run_id}: it was started by {whose}, and operators act only \
             on their own runs ([access] operators_own_runs_only)",
            who.identity
        )))
    }

    /// Record a mutating call (accepted or refused) durably, then hand back its result.
    async fn audited<T>(
        &self,
        who: &Who,
        action: &str,
        run_id: &str,
        request: serde_json::Value,
        result: Result<T, Status>,
        describe: impl FnOnce(&T) -> (String, String),
    ) -> Result<T, Status> {
        let mut rec = who.record(action, run_id, request);
        match &result {
            Ok(v) => {
                let (id, message) = describe(v);
                if !id.is_empty() {
                    rec.run_id = id;
                }
                rec = rec.outcome("ok", message);
            }
            Err(st) => rec = refusal(rec, st),
        }
        self.write_audit(rec).await;
        result
    }

    async fn write_audit(&self, rec: AuditRecord) {
        let (action, run_id) = (rec.action.clone(), rec.run_id.clone());
        if let Err(e) = self.store.audit(rec).await {
            tracing::error!(action, run_id, error = %e, "cannot write the audit record");
        }
    }
}

/// The audit record of a refused or failed call.
fn refusal(rec: AuditRecord, st: &Status) -> AuditRecord {
    let outcome = match st.code() {
        Code::Internal | Code::Unknown => "failed",
        _ => "refused",
    };
    rec.outcome(outcome, format!("{:?}: {}", st.code(), st.message()))
}

/// The key fields of a Spawn for its audit record. Env values may hold secrets: only their names
/// are recorded, and of a prompt only its length.
fn spawn_fields(r: &proto::SpawnRequest) -> serde_json::Value {
    let env_keys: Vec<&String> = r.env.keys().collect();
    let mut f = json!({"argv": r.argv, "cwd": r.cwd, "env_keys": env_keys, "labels": r.labels,
        "stop_signals": r.stop_signals, "grace_ms": r.grace_ms});
    if !r.workflow.is_empty() {
        f["workflow"] = json!(r.workflow);
        f["prompt_chars"] = json!(r.prompt.chars().count());
    }
    if !r.queue.is_empty() {
        f["queue"] = json!(r.queue);
    }
    if r.priority != 0 {
        f["priority"] = json!(r.priority);
    }
    if !r.after.is_empty() {
        f["after"] = json!(r.after);
    }
    for (k, v) in [
        ("not_before", r.not_before.max(0) as u64),
        ("timeout_ms", r.timeout_ms),
        ("queue_timeout_ms", r.queue_timeout_ms),
    ] {
        if v != 0 {
            f[k] = json!(v);
        }
    }
    if let Some(p) = &r.restart {
        f["restart"] = json!({"on": p.on, "max_restarts": p.max_restarts,
            "backoff_ms": p.backoff_ms, "max_backoff_ms": p.max_backoff_ms,
            "reset_after_ms": p.reset_after_ms});
    }
    if !r.idempotency_key.is_empty() {
        f["idempotency_key"] = json!(r.idempotency_key);
    }
    f
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A List page's token: the cursor (the last answered run's place in spawn order), tagged so a
/// token from anywhere else is told apart.
fn page_token(cursor: u64) -> String {
    format!("p1.{cursor:x}")
}

fn page_cursor(token: &str) -> Result<u64, Status> {
    token
        .strip_prefix("p1.")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "page_token",
                "is not a token from an earlier List answer of this daemon",
            )
            .into()
        })
}

fn need_run_id(run_id: &str) -> Result<(), Status> {
    if run_id.is_empty() {
        return Err(ApiError::invalid("run_id", "is required").into());
    }
    Ok(())
}

#[tonic::async_trait]
impl Supervisor for SupervisorService {
    async fn spawn(
        &self,
        request: Request<proto::SpawnRequest>,
    ) -> Result<Response<proto::SpawnResponse>, Status> {
        let r = request.get_ref();
        let checked = bounds::spawn(r);
        // An over-long request is audited without its fields.
        let fields = if checked.is_ok() {
            spawn_fields(r)
        } else {
            json!({"out_of_bounds": true})
        };
        let facts = Facts {
            argv: r.workflow.is_empty(),
            ..Facts::default()
        };
        let who = self
            .authorize(&request, "Spawn", facts, "", || fields.clone())
            .await?;
        self.within_bounds(&who, "spawn", "", checked).await?;
        let r = request.into_inner();
        if let Some(key) = access::restricted_env_key(r.env.keys(), who.role) {
            let st: Status = ApiError::invalid(
                "env",
                format!("{key} may be set only by an admin (the daemon or the loader owns it)"),
            )
            .into();
            self.write_audit(refusal(who.record("spawn", "", fields), &st))
                .await;
            return Err(st);
        }
        let o = r.overrides.unwrap_or_default();
        let restart = match &r.restart {
            None => Ok(None),
            Some(p) => crate::supervisor::restart_policy(
                &p.on,
                p.max_restarts,
                p.backoff_ms,
                p.max_backoff_ms,
                p.reset_after_ms,
            ),
        };
        let result = async {
            self.handle
                .spawn(SpawnRequest {
                    argv: r.argv,
                    cwd: r.cwd,
                    env: r.env.into_iter().collect(),
                    labels: r.labels.into_iter().collect(),
                    stop_signals: r.stop_signals,
                    grace_ms: r.grace_ms,
                    restart_of: None,
                    workflow: r.workflow,
                    prompt: r.prompt,
                    overrides: Overrides {
                        model: o.model,
                        max_turns: o.max_turns,
                        permission_mode: o.permission_mode,
                        allowed_tools: o.replace_allowed_tools.then_some(o.allowed_tools),
                        append_system_prompt: o.append_system_prompt,
                    },
                    resume_session: None,
                    owner: Some(who.owner()),
                    audit: Some(who.record("spawn", "", fields.clone())),
                    queue: r.queue,
                    priority: r.priority,
                    after: r.after,
                    not_before: r.not_before,
                    timeout_ms: r.timeout_ms,
                    queue_timeout_ms: r.queue_timeout_ms,
                    restart: restart?,
                    idempotency_key: r.idempotency_key,
                    policy_restarts: 0,
                })
                .await
        }
        .await
        .map_err(Status::from);
        // An answered spawn was audited by the core in the same commit as the run's start.
        let run = match result {
            Ok(run) => run,
            Err(st) => {
                let rec = refusal(who.record("spawn", "", fields), &st);
                self.write_audit(rec).await;
                return Err(st);
            }
        };
        Ok(Response::new(proto::SpawnResponse {
            run: Some(run_to_proto(&run)),
        }))
    }

    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::Run>, Status> {
        let id = request.get_ref().run_id.clone();
        self.authorize(&request, "Get", Facts::default(), &id, || json!({}))
            .await?;
        let r = request.into_inner();
        bounds::get(&r)?;
        need_run_id(&r.run_id)?;
        let run = self.handle.get(&r.run_id).await?;
        Ok(Response::new(run_to_proto(&run)))
    }

    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        self.authorize(&request, "List", Facts::default(), "", || json!({}))
            .await?;
        let r = request.into_inner();
        bounds::list(&r)?;
        let mut statuses = Vec::new();
        for (i, s) in r.statuses.iter().enumerate() {
            match status_from_proto(*s) {
                Some(st) => statuses.push(st),
                None => {
                    return Err(ApiError::invalid(
                        "statuses",
                        format!("statuses[{i}] = {s} is not a run status"),
                    )
                    .into())
                }
            }
        }
        let filter = crate::supervisor::Selector {
            labels: r.labels.into_iter().collect(),
            workflow: r.workflow,
            queue: r.queue,
            statuses,
        };
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(page_cursor(&r.page_token)?)
        };
        let size = if r.page_size > 0 {
            r.page_size
        } else {
            r.limit
        };
        let (runs, next) = self.handle.list_page(filter, size as usize, after).await?;
        Ok(Response::new(proto::ListResponse {
            runs: runs.iter().map(run_to_proto).collect(),
            // A limit (no paging) asks for the newest N, not for pages.
            next_page_token: next
                .filter(|_| r.page_size > 0)
                .map(page_token)
                .unwrap_or_default(),
        }))
    }

    async fn kill(
        &self,
        request: Request<proto::KillRequest>,
    ) -> Result<Response<proto::KillResponse>, Status> {
        let r = request.get_ref();
        let fields = json!({"force": r.force, "grace_ms": r.grace_ms, "reason": r.reason});
        let id = r.run_id.clone();
        let who = self
            .authorize(&request, "Kill", Facts::default(), &id, || fields.clone())
            .await?;
        let r = request.into_inner();
        self.within_bounds(&who, "kill", &r.run_id, bounds::kill(&r))
            .await?;
        let selector = if r.grace_ms > 3_600_000 {
            Err(ApiError::invalid("grace_ms", "is over the limit of 3600000 (one hour)").into())
        } else if r.run_id.is_empty() {
            queue::selector_from_proto(r.selector.clone())
        } else if r.selector.is_some() {
            Err(ApiError::invalid("selector", "give a run_id or a selector, not both").into())
        } else {
            Ok(None)
        };
        let selector = match selector {
            Ok(s) => s,
            Err(st) => {
                self.write_audit(refusal(who.record("kill", &r.run_id, fields), &st))
                    .await;
                return Err(st);
            }
        };
        if let Some(sel) = selector {
            // Many runs at once: with operators_own_runs_only, for admins only.
            if let Err(st) = self.check_owner(&who, "Kill", "").await {
                self.write_audit(refusal(who.record("kill", "", fields), &st))
                    .await;
                return Err(st);
            }
            return Ok(Response::new(self.kill_selected(&who, sel, &r).await?));
        }
        let result = async {
            need_run_id(&r.run_id)?;
            self.check_owner(&who, "Kill", &r.run_id).await?;
            if r.grace_ms > 3_600_000 {
                return Err(ApiError::invalid(
                    "grace_ms",
                    "is over the limit of 3600000 (one hour)",
                )
                .into());
            }
            let grace = (r.grace_ms > 0).then(|| Duration::from_millis(r.grace_ms));
            Ok(self
                .handle
                .kill(&r.run_id, r.force, grace, &r.reason)
                .await?)
        }
        .await;
        let out = self
            .audited(&who, "kill", &r.run_id, fields, result, |o| {
                (
                    String::new(),
                    format!("{:?}: {}", o.report.phase, o.report.message),
                )
            })
            .await?;
        Ok(Response::new(convert::kill_outcome_to_proto(&out)))
    }

    async fn restart(
        &self,
        request: Request<proto::RestartRequest>,
    ) -> Result<Response<proto::RestartResponse>, Status> {
        let r = request.get_ref();
        let fields = json!({"reason": r.reason, "resume": r.resume});
        let id = r.run_id.clone();
        let who = self
            .authorize(&request, "Restart", Facts::default(), &id, || {
                fields.clone()
            })
            .await?;
        let r = request.into_inner();
        self.within_bounds(&who, "restart", &r.run_id, bounds::restart(&r))
            .await?;
        let result = async {
            need_run_id(&r.run_id)?;
            self.check_owner(&who, "Restart", &r.run_id).await?;
            Ok(self.handle.restart(&r.run_id, &r.reason, r.resume).await?)
        }
        .await;
        let (run, note) = self
            .audited(&who, "restart", &r.run_id, fields, result, |(run, note)| {
                (
                    String::new(),
                    format!("new run {} (attempt {}): {note}", run.run_id, run.attempt),
                )
            })
            .await?;
        Ok(Response::new(proto::RestartResponse {
            old_run_id: r.run_id,
            run: Some(run_to_proto(&run)),
            note,
        }))
    }

    async fn force_complete(
        &self,
        request: Request<proto::ForceCompleteRequest>,
    ) -> Result<Response<proto::Run>, Status> {
        let r = request.get_ref();
        let fields = json!({"outcome": r.outcome, "reason": r.reason});
        let id = r.run_id.clone();
        let who = self
            .authorize(&request, "ForceComplete", Facts::default(), &id, || {
                fields.clone()
            })
            .await?;
        let r = request.into_inner();
        self.within_bounds(
            &who,
            "force_complete",
            &r.run_id,
            bounds::force_complete(&r),
        )
        .await?;
        let result = async {
            need_run_id(&r.run_id)?;
            self.check_owner(&who, "ForceComplete", &r.run_id).await?;
            let outcome = match proto::Outcome::try_from(r.outcome) {
                Ok(proto::Outcome::Succeeded) => RunStatus::Succeeded,
                Ok(proto::Outcome::Failed) => RunStatus::Failed,
                _ => {
                    return Err(ApiError::invalid(
                        "outcome",
                        "must be OUTCOME_SUCCEEDED or OUTCOME_FAILED",
                    )
                    .into())
                }
            };
            Ok(self
                .handle
                .force_complete(&r.run_id, outcome, &r.reason)
                .await?)
        }
        .await;
        let run = self
            .audited(&who, "force_complete", &r.run_id, fields, result, |run| {
                (String::new(), run.status.as_str().to_string())
            })
            .await?;
        Ok(Response::new(run_to_proto(&run)))
    }

    async fn purge(
        &self,
        request: Request<proto::PurgeRequest>,
    ) -> Result<Response<proto::PurgeResponse>, Status> {
        let r = request.get_ref();
        let status_name = status_from_proto(r.status)
            .map(|s| s.as_str())
            .unwrap_or("");
        let fields = json!({"force": r.force, "status": status_name, "older_than_ms": r.older_than_ms,
            "reason": r.reason});
        let id = r.run_id.clone();
        let who = self
            .authorize(&request, "Purge", Facts::default(), &id, || fields.clone())
            .await?;
        let r = request.into_inner();
        self.within_bounds(&who, "purge", &r.run_id, bounds::purge(&r))
            .await?;
        let result: Result<Vec<String>, Status> = async {
            if !r.run_id.is_empty() {
                return Ok(self.handle.purge_run(&r.run_id, r.force, &r.reason).await?);
            }
            let status = match status_from_proto(r.status) {
                Some(s) if s.is_terminal() => s,
                Some(s) => {
                    return Err(ApiError::invalid(
                        "status",
                        format!(
                            "{} is not a finished status; only finished runs are purged",
                            s.as_str()
                        ),
                    )
                    .into())
                }
                None => {
                    return Err(ApiError::invalid(
                        "status",
                        "a status (or a run_id) is required; there is no purge-everything",
                    )
                    .into())
                }
            };
            let before =
                crate::time::now_ms().saturating_sub(r.older_than_ms.min(i64::MAX as u64) as i64);
            Ok(self.handle.purge_where(status, before).await?)
        }
        .await;
        let ids = self
            .audited(&who, "purge", &r.run_id, fields.clone(), result, |ids| {
                (
                    String::new(),
                    format!("purged {}: {}", ids.len(), ids.join(" ")),
                )
            })
            .await?;
        // A purge by status is also on record under each run it removed.
        if r.run_id.is_empty() && !ids.is_empty() {
            let batch = crate::store::Batch {
                audits: ids
                    .iter()
                    .map(|id| {
                        who.record("purge", id, fields.clone())
                            .outcome("ok", "purged by status")
                    })
                    .collect(),
                ..Default::default()
            };
            if let Err(e) = self.store.write_and_wait(batch).await {
                tracing::error!(error = %e, "cannot write the per-run purge audit records");
            }
        }
        Ok(Response::new(proto::PurgeResponse {
            purged: ids.len() as u32,
            run_ids: ids,
        }))
    }

    async fn list_audit(
        &self,
        request: Request<proto::ListAuditRequest>,
    ) -> Result<Response<proto::ListAuditResponse>, Status> {
        self.authorize(&request, "ListAudit", Facts::default(), "", || json!({}))
            .await?;
        let r = request.into_inner();
        bounds::list_audit(&r)?;
        let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
        // Read-your-writes: the audit records of calls answered before this one (a Spawn is
        // answered as soon as its run starts, its record queued just before) are in the store.
        self.store.settled().await;
        let store = self.store.clone();
        let records =
            tokio::task::spawn_blocking(move || store.list_audit(&r.run_id, r.since, limit))
                .await
                .map_err(|e| Status::internal(format!("audit query failed: {e}")))?
                .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(proto::ListAuditResponse {
            records: records.iter().map(convert::audit_to_proto).collect(),
        }))
    }

    async fn get_health(
        &self,
        request: Request<proto::GetHealthRequest>,
    ) -> Result<Response<proto::GetHealthResponse>, Status> {
        self.authorize(&request, "GetHealth", Facts::default(), "", || json!({}))
            .await?;
        let (live, total, queued) = self.handle.counts().await?;
        let store = self.store.clone();
        let alerts = tokio::task::spawn_blocking(move || store.open_alerts())
            .await
            .map_err(|e| Status::internal(format!("alert query failed: {e}")))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut response = proto::GetHealthResponse {
            queued_runs: queued as u32,
            live_runs: live as u32,
            total_runs: total as u32,
            containment: self.containment.to_string(),
            alerts: alerts
                .iter()
                .map(convert::alert_to_proto)
                .chain(
                    self.access
                        .current()
                        .root_agents
                        .as_ref()
                        .filter(|_| {
                            // Stored since the alert model has it; older stores' daemons did not.
                            !alerts.iter().any(|a| a.dedup_key == "agents_run_as_root")
                        })
                        .map(|m| {
                            // A standing condition of the config, not a stored alert: it goes only when
                            // runs.user or runs.allow_root_agents is set.
                            proto::Alert {
                                kind: "agents_run_as_root".into(),
                                dedup_key: "agents_run_as_root".into(),
                                message: m.clone(),
                                ..Default::default()
                            }
                        }),
                )
                .collect(),
            ..Default::default()
        };
        if let Some(host) = &self.host {
            let sample = limits::sample();
            let c = limits::capacity(&sample, live, host.max_live_runs.load(Ordering::Relaxed));
            response.cgroup_entry = host.cgroup_entry.to_string();
            response.memory_controller = host.memory_controller.to_string();
            response.fd_limit = sample.fd_limit;
            response.fds_open = sample.fds_open;
            response.fds_per_run = limits::FDS_PER_RUN as u32;
            response.runs_left_by_fds = c.by_fds;
            response.pids_max = sample.pids.map(|(max, _)| max);
            response.runs_left_by_pids = c.by_pids;
            response.runs_left_by_max_live_runs = c.by_max_live_runs;
            response.runs_left = c.left;
        }
        Ok(Response::new(response))
    }

    async fn ack_alert(
        &self,
        request: Request<proto::AckAlertRequest>,
    ) -> Result<Response<proto::Alert>, Status> {
        let r = request.get_ref();
        let fields = json!({"alert_id": r.id, "note": r.note});
        let who = self
            .authorize(&request, "AckAlert", Facts::default(), "", || {
                fields.clone()
            })
            .await?;
        let r = request.into_inner();
        self.within_bounds(&who, "ack_alert", "", bounds::ack_alert(&r))
            .await?;
        let store = self.store.clone();
        // The connection (uid/gid/pid, or the peer address) and the authenticated identity.
        let by = format!("{} [{}]", who.caller.describe(), who.identity);
        let by = if r.note.is_empty() {
            by
        } else {
            format!("{by}: {}", r.note)
        };
        let id = r.id;
        let result: Result<proto::Alert, Status> = async {
            let s2 = store.clone();
            let existing = tokio::task::spawn_blocking(move || s2.alert(id))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::internal(e.to_string()))?;
            let Some(existing) = existing else {
                return Err(Status::not_found(format!("no alert {id}")));
            };
            if existing.acknowledged_at != 0 {
                return Err(Status::failed_precondition(format!(
                    "alert {id} was already acknowledged by {}",
                    existing.acknowledged_by
                )));
            }
            store
                .write_and_wait(crate::store::Batch {
                    acks: vec![(id, by)],
                    ..Default::default()
                })
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            let s3 = store.clone();
            let alert = tokio::task::spawn_blocking(move || s3.alert(id))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::internal(e.to_string()))?
                .ok_or_else(|| Status::not_found(format!("no alert {id}")))?;
            Ok(convert::alert_to_proto(&alert))
        }
        .await;
        let alert = self
            .audited(&who, "ack_alert", "", fields, result, |a| {
                (String::new(), a.kind.clone())
            })
            .await?;
        Ok(Response::new(alert))
    }

    async fn list_workflows(
        &self,
        request: Request<proto::ListWorkflowsRequest>,
    ) -> Result<Response<proto::ListWorkflowsResponse>, Status> {
        self.authorize(
            &request,
            "ListWorkflows",
            Facts::default(),
            "",
            || json!({}),
        )
        .await?;
        let workflows = self.handle.workflows().await?;
        Ok(Response::new(proto::ListWorkflowsResponse {
            workflows: workflows.iter().map(convert::workflow_to_proto).collect(),
        }))
    }

    type WatchStream = BoxStream<proto::RunEvent>;

    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let id = request.get_ref().run_id.clone();
        self.authorize(&request, "Watch", Facts::default(), &id, || json!({}))
            .await?;
        let r = request.into_inner();
        bounds::watch(&r)?;
        // Subscribe first, then look the run up, so no change falls between the two.
        let mut events = self.handle.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_IN_FLIGHT);
        let only = if r.run_id.is_empty() {
            None
        } else {
            let run = self.handle.get(&r.run_id).await?;
            let first = proto::RunEvent {
                run_id: run.run_id.clone(),
                at: crate::time::now_ms(),
                kind: "snapshot".into(),
                status: status_to_proto(run.status) as i32,
                message: String::new(),
                run: Some(run_to_proto(&run)),
            };
            let terminal = run.status.is_terminal();
            let _ = tx.send(Ok(first)).await;
            if terminal {
                return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
            }
            Some(run.run_id)
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            // Events wait here, not in the channel to the transport, so that while the watcher
            // cannot take more its runs' heartbeats merge (see `watch_queue`).
            let mut waiting = watch_queue::WatchQueue::new(WATCH_BACKLOG);
            let mut open = true;
            while open || !waiting.is_empty() {
                tokio::select! {
                    // Take every event as it comes, so the broadcast never overflows for a
                    // slow watcher; send when the transport has room.
                    biased;
                    _ = shutdown.cancelled() => break,
                    ev = events.recv(), if open => match ev {
                        Ok(ev) => {
                            if only.as_deref().is_none_or(|id| id == ev.run_id) {
                                waiting.push(ev);
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(missed = n, "a Watch stream fell behind");
                            waiting.skipped(n);
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => open = false,
                    },
                    permit = tx.reserve(), if !waiting.is_empty() => {
                        let Ok(permit) = permit else { break };
                        match waiting.pop() {
                            Some(watch_queue::Item::Event(ev)) => {
                                let done = only.is_some() && ev.status.is_terminal();
                                permit.send(Ok(convert::event_to_proto(&ev)));
                                if done {
                                    break;
                                }
                            }
                            Some(watch_queue::Item::Skipped(n)) => {
                                // Tell the watcher it missed events, so it can re-list.
                                permit.send(Ok(proto::RunEvent {
                                    at: crate::time::now_ms(),
                                    kind: "lagged".into(),
                                    message: format!(
                                        "{n} event(s) were skipped; List or Get to resync"
                                    ),
                                    ..Default::default()
                                }));
                            }
                            None => {}
                        }
                    }
                    _ = tx.closed() => break,
                }
            }
            if waiting.merged() > 0 {
                tracing::debug!(
                    merged = waiting.merged(),
                    "a Watch stream ended; heartbeats merged while it was behind"
                );
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type LogsStream = BoxStream<proto::LogChunk>;

    async fn logs(
        &self,
        request: Request<proto::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let id = request.get_ref().run_id.clone();
        self.authorize(&request, "Logs", Facts::default(), &id, || json!({}))
            .await?;
        let r = request.into_inner();
        bounds::logs(&r)?;
        need_run_id(&r.run_id)?;
        let source = self.handle.logs(&r.run_id).await?;
        let tail = if r.tail_bytes == 0 {
            64 * 1024
        } else {
            r.tail_bytes
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (handle, shutdown) = (self.handle.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            // Following a queued run waits for it to start (or to end without starting).
            let source = if r.follow && source.queued {
                match logs::wait_until_started(&handle, &r.run_id, &tx, &shutdown).await {
                    Some(s) => s,
                    None => return,
                }
            } else {
                source
            };
            logs::stream_logs(source, tail, r.follow, tx, shutdown).await
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel(
        &self,
        request: Request<proto::CancelRequest>,
    ) -> Result<Response<proto::CancelResponse>, Status> {
        let r = request.get_ref();
        let fields = json!({"reason": r.reason, "dry_run": r.dry_run});
        let id = r.run_id.clone();
        let who = self
            .authorize(&request, "Cancel", Facts::default(), &id, || fields.clone())
            .await?;
        self.within_bounds(&who, "cancel", &id, bounds::cancel(request.get_ref()))
            .await?;
        // A selector (no run id) acts on many runs: with operators_own_runs_only, admins only.
        if let Err(st) = self.check_owner(&who, "Cancel", &id).await {
            self.write_audit(refusal(who.record("cancel", &id, fields), &st))
                .await;
            return Err(st);
        }
        Ok(Response::new(self.cancel_call(&who, request).await?))
    }

    async fn update_queue(
        &self,
        request: Request<proto::UpdateQueueRequest>,
    ) -> Result<Response<proto::QueueHealth>, Status> {
        let r = request.get_ref();
        let fields =
            json!({"queue": r.queue, "paused": r.paused, "max_concurrent": r.max_concurrent});
        let facts = Facts {
            changes_limit: r.max_concurrent.is_some(),
            ..Facts::default()
        };
        let who = self
            .authorize(&request, "UpdateQueue", facts, "", || fields.clone())
            .await?;
        self.within_bounds(
            &who,
            "update_queue",
            "",
            bounds::update_queue(request.get_ref()),
        )
        .await?;
        Ok(Response::new(self.update_queue_call(&who, request).await?))
    }

    async fn get_queue_health(
        &self,
        request: Request<proto::GetQueueHealthRequest>,
    ) -> Result<Response<proto::GetQueueHealthResponse>, Status> {
        self.authorize(&request, "GetQueueHealth", Facts::default(), "", || {
            json!({})
        })
        .await?;
        bounds::get_queue_health(request.get_ref())?;
        Ok(Response::new(self.queue_health_call().await?))
    }
}
