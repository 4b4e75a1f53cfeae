//! The queue family: Cancel (one run or a selector), bulk Kill by selector, UpdateQueue and
//! GetQueueHealth. Bulk calls end and audit each matching run one by one, as if it had been
//! named; a dry run only lists them.
use serde_json::json;
use tonic::Status;

use super::SupervisorService;
use super::{convert, need_run_id, refusal, run_to_proto, status_from_proto, Who};
use crate::proto;
use crate::supervisor::{ApiError, CancelOutcome, Selector};

/// A selector from the API; `None` when none was given. One that would match every run is
/// refused: a bulk call names what it is about.
pub(super) fn selector_from_proto(s: Option<proto::Selector>) -> Result<Option<Selector>, Status> {
    let Some(s) = s else { return Ok(None) };
    let mut statuses = Vec::new();
    for (i, n) in s.statuses.iter().enumerate() {
        match status_from_proto(*n) {
            Some(st) => statuses.push(st),
            None => {
                return Err(ApiError::invalid(
                    "selector.statuses",
                    format!("statuses[{i}] = {n} is not a run status"),
                )
                .into())
            }
        }
    }
    let sel = Selector {
        labels: s.labels.into_iter().collect(),
        workflow: s.workflow,
        queue: s.queue,
        statuses,
    };
    if sel.is_empty() {
        return Err(ApiError::invalid(
            "selector",
            "is empty and would match every run; name labels, a workflow, a queue or statuses",
        )
        .into());
    }
    Ok(Some(sel))
}

fn selector_json(s: &Selector) -> serde_json::Value {
    json!({"labels": s.labels, "workflow": s.workflow, "queue": s.queue,
        "statuses": s.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>()})
}

pub(super) fn cancel_to_proto(o: &CancelOutcome) -> proto::CancelResponse {
    proto::CancelResponse {
        run_id: o.run.run_id.clone(),
        killed: o.killed,
        kill: o
            .report
            .as_ref()
            .filter(|_| o.killed)
            .map(|k| proto::KillResponse {
                record_pending: o.record_pending.clone().unwrap_or_default(),
                ..convert::kill_to_proto(&o.run, k)
            }),
        run: Some(run_to_proto(&o.run)),
        results: Vec::new(),
        record_pending: o.record_pending.clone().unwrap_or_default(),
    }
}

impl SupervisorService {
    /// The runs a selector matches that are not finished, oldest first.
    async fn matching(&self, sel: &Selector) -> Result<Vec<crate::run::RunRecord>, Status> {
        let mut runs = self.handle.list(sel.clone(), 0).await?;
        runs.retain(|r| !r.status.is_terminal());
        runs.reverse();
        Ok(runs)
    }

    pub(super) async fn cancel_call(
        &self,
        who: &Who,
        request: tonic::Request<proto::CancelRequest>,
    ) -> Result<proto::CancelResponse, Status> {
        let r = request.into_inner();
        let selector = match selector_from_proto(r.selector.clone()) {
            Ok(s) => s,
            Err(st) => {
                let rec = refusal(
                    who.record("cancel", &r.run_id, json!({"reason": r.reason})),
                    &st,
                );
                self.write_audit(rec).await;
                return Err(st);
            }
        };
        let Some(sel) = selector else {
            return self.cancel_one(who, &r.run_id, &r.reason, None).await;
        };
        if !r.run_id.is_empty() {
            return Err(
                ApiError::invalid("selector", "give a run_id or a selector, not both").into(),
            );
        }
        let runs = self.matching(&sel).await?;
        let mut out = proto::CancelResponse::default();
        for run in runs {
            if r.dry_run {
                out.results.push(proto::CancelResponse {
                    run_id: run.run_id.clone(),
                    run: Some(run_to_proto(&run)),
                    ..Default::default()
                });
                continue;
            }
            // A run that ended meanwhile is simply not in the results.
            match self
                .cancel_one(who, &run.run_id, &r.reason, Some(&sel))
                .await
            {
                Ok(one) => out.results.push(one),
                Err(st) if st.code() == tonic::Code::FailedPrecondition => {}
                Err(st) => return Err(st),
            }
        }
        Ok(out)
    }

    async fn cancel_one(
        &self,
        who: &Who,
        run_id: &str,
        reason: &str,
        sel: Option<&Selector>,
    ) -> Result<proto::CancelResponse, Status> {
        let mut fields = json!({"reason": reason});
        if let Some(s) = sel {
            fields["selector"] = selector_json(s);
        }
        let result = async {
            need_run_id(run_id)?;
            Ok(self.handle.cancel(run_id, reason).await?)
        }
        .await;
        let out = self
            .audited(who, "cancel", run_id, fields, result, |o| {
                (
                    String::new(),
                    match &o.report {
                        Some(k) if o.killed => format!("CANCELLED: {:?}: {}", k.phase, k.message),
                        _ => "CANCELLED before it started: no process existed".to_string(),
                    },
                )
            })
            .await?;
        Ok(cancel_to_proto(&out))
    }

    /// Kill with a selector: each matching run killed (a queued one cancelled) and audited.
    pub(super) async fn kill_selected(
        &self,
        who: &Who,
        sel: Selector,
        r: &proto::KillRequest,
    ) -> Result<proto::KillResponse, Status> {
        let runs = self.matching(&sel).await?;
        let grace = (r.grace_ms > 0).then(|| std::time::Duration::from_millis(r.grace_ms));
        let mut out = proto::KillResponse {
            success: true,
            ..Default::default()
        };
        for run in runs {
            if r.dry_run {
                out.results.push(proto::KillResponse {
                    run: Some(run_to_proto(&run)),
                    ..Default::default()
                });
                continue;
            }
            let fields = json!({"force": r.force, "grace_ms": r.grace_ms, "reason": r.reason,
                "selector": selector_json(&sel)});
            let result = self
                .handle
                .kill(&run.run_id, r.force, grace, &r.reason)
                .await
                .map_err(Status::from);
            let result = self
                .audited(who, "kill", &run.run_id, fields, result, |o| {
                    (
                        String::new(),
                        format!("{:?}: {}", o.report.phase, o.report.message),
                    )
                })
                .await;
            match result {
                Ok(o) => {
                    let one = convert::kill_outcome_to_proto(&o);
                    out.success &= one.success;
                    out.results.push(one);
                }
                Err(st) if st.code() == tonic::Code::FailedPrecondition => {}
                Err(st) => return Err(st),
            }
        }
        Ok(out)
    }

    pub(super) async fn update_queue_call(
        &self,
        who: &Who,
        request: tonic::Request<proto::UpdateQueueRequest>,
    ) -> Result<proto::QueueHealth, Status> {
        let r = request.into_inner();
        let fields =
            json!({"queue": r.queue, "paused": r.paused, "max_concurrent": r.max_concurrent});
        let result = async {
            if r.queue.is_empty() {
                return Err(ApiError::invalid("queue", "is required").into());
            }
            if r.paused.is_none() && r.max_concurrent.is_none() {
                return Err(ApiError::invalid(
                    "paused",
                    "nothing to change: give paused and/or max_concurrent",
                )
                .into());
            }
            Ok(self
                .handle
                .update_queue(&r.queue, r.paused, r.max_concurrent.map(|m| m as usize))
                .await?)
        }
        .await;
        let f = self
            .audited(who, "update_queue", "", fields, result, |f| {
                (
                    String::new(),
                    format!(
                        "queue {}: {}, max_concurrent {}",
                        f.name,
                        if f.paused { "paused" } else { "running" },
                        f.max_concurrent
                    ),
                )
            })
            .await?;
        Ok(convert::queue_to_proto(&f))
    }

    pub(super) async fn queue_health_call(&self) -> Result<proto::GetQueueHealthResponse, Status> {
        let figures = self.handle.queue_health().await?;
        let mut total = proto::QueueHealth::default();
        for f in &figures {
            total.running += f.running as u32;
            total.queued += f.queued as u32;
            total.max_concurrent += f.max_concurrent as u32;
            total.max_queued = total.max_queued.saturating_add(f.max_queued as u32);
            for (k, v) in &f.ended_last_hour {
                *total.ended_last_hour.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &f.ended_last_day {
                *total.ended_last_day.entry(k.clone()).or_default() += v;
            }
            total.oldest_running_ms = total.oldest_running_ms.max(f.oldest_running_ms);
            total.longest_queued_wait_ms =
                total.longest_queued_wait_ms.max(f.longest_queued_wait_ms);
            total.stuck += f.stuck as u32;
        }
        let store = self.store.clone();
        let since = crate::time::now_ms() - 3_600_000;
        let alerts = tokio::task::spawn_blocking(move || {
            store.alerts_of_kinds(crate::schedule::QUEUE_ALERT_KINDS, since)
        })
        .await
        .map_err(|e| Status::internal(format!("alert query failed: {e}")))?
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(proto::GetQueueHealthResponse {
            queues: figures.iter().map(convert::queue_to_proto).collect(),
            total: Some(total),
            alerts: alerts.iter().map(convert::alert_to_proto).collect(),
        })
    }
}
