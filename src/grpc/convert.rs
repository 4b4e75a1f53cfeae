//! Conversions between the daemon's records and the API's messages.
use crate::proto;
use crate::run::{KillPhase, KillReport, RunRecord, RunStatus};
use crate::supervisor::RunEvent;

pub fn status_to_proto(s: RunStatus) -> proto::RunStatus {
    use proto::RunStatus as P;
    match s {
        RunStatus::Queued => P::Queued,
        RunStatus::Starting => P::Starting,
        RunStatus::Running => P::Running,
        RunStatus::Stopping => P::Stopping,
        RunStatus::Succeeded => P::Succeeded,
        RunStatus::Failed => P::Failed,
        RunStatus::Killed => P::Killed,
        RunStatus::Cancelled => P::Cancelled,
        RunStatus::TimedOut => P::TimedOut,
        RunStatus::Lost => P::Lost,
    }
}

/// The daemon's status for an API status; None for UNSPECIFIED or unknown numbers.
pub fn status_from_proto(n: i32) -> Option<RunStatus> {
    use proto::RunStatus as P;
    Some(match P::try_from(n).ok()? {
        P::Unspecified => return None,
        P::Queued => RunStatus::Queued,
        P::Starting => RunStatus::Starting,
        P::Running => RunStatus::Running,
        P::Stopping => RunStatus::Stopping,
        P::Succeeded => RunStatus::Succeeded,
        P::Failed => RunStatus::Failed,
        P::Killed => RunStatus::Killed,
        P::Cancelled => RunStatus::Cancelled,
        P::TimedOut => RunStatus::TimedOut,
        P::Lost => RunStatus::Lost,
    })
}

pub fn run_to_proto(r: &RunRecord) -> proto::Run {
    proto::Run {
        run_id: r.run_id.clone(),
        status: status_to_proto(r.status) as i32,
        argv: r.spec.argv.clone(),
        cwd: r.spec.cwd.display().to_string(),
        labels: r.spec.labels.clone().into_iter().collect(),
        pid: r.pid,
        pgid: r.pgid,
        created_at: r.created_at,
        started_at: r.started_at,
        ended_at: r.ended_at,
        exit_code: r.exit_code,
        signal: r.signal.clone().unwrap_or_default(),
        error: r.error.clone(),
        attempt: r.attempt,
        restart_of: r.restart_of.clone(),
        last_heartbeat_at: r.last_heartbeat_at,
        containment: r.containment.clone(),
        stop_signals: r.spec.stop_signals.clone(),
        grace_ms: r.spec.grace.as_millis() as u64,
        env: r.spec.env.clone().into_iter().collect(),
        heartbeats: r.heartbeats,
        stdout_bytes: r.stdout_bytes,
        stderr_bytes: r.stderr_bytes,
        end_reason: r.end_reason.clone(),
        output_truncated: r.output_truncated,
        logs_missing: r.logs_missing,
    }
}

pub fn kill_to_proto(run: &RunRecord, k: &KillReport) -> proto::KillResponse {
    proto::KillResponse {
        success: k.survivors.is_empty(),
        run_id: run.run_id.clone(),
        killed_at: k.killed_at,
        phase: match k.phase {
            KillPhase::Term => proto::KillPhase::Term,
            KillPhase::Kill => proto::KillPhase::Kill,
            KillPhase::Survivors => proto::KillPhase::Survivors,
            KillPhase::AlreadyExited => proto::KillPhase::AlreadyExited,
        } as i32,
        signals_sent: k.signals_sent.clone(),
        duration_ms: k.duration.as_millis() as u64,
        survivors: k.survivors.len() as u32,
        cleanup: k
            .cleanup
            .iter()
            .map(|c| proto::CleanupStep {
                step: c.step.to_string(),
                ok: c.ok,
                detail: c.detail.clone(),
            })
            .collect(),
        message: k.message.clone(),
        survivor_pids: k
            .survivors
            .iter()
            .map(|s| proto::Survivor {
                pid: s.pid,
                state: s.state.to_string(),
                comm: s.comm.clone(),
            })
            .collect(),
        run: Some(run_to_proto(run)),
    }
}

pub fn event_to_proto(e: &RunEvent) -> proto::RunEvent {
    proto::RunEvent {
        run_id: e.run_id.clone(),
        at: e.at,
        kind: e.kind.to_string(),
        status: status_to_proto(e.run.status) as i32,
        message: e.message.clone(),
        run: Some(run_to_proto(&e.run)),
    }
}

pub fn audit_to_proto(a: &crate::store::AuditRecord) -> proto::AuditRecord {
    use crate::store::Caller;
    let (uid, gid, pid, peer) = match &a.caller {
        Caller::Unix { uid, gid, pid } => (Some(*uid), Some(*gid), *pid, String::new()),
        Caller::Tcp(addr) => (None, None, None, addr.to_string()),
        _ => (None, None, None, String::new()),
    };
    proto::AuditRecord {
        id: a.id,
        at: a.at,
        caller: a.caller.describe(),
        uid,
        gid,
        pid,
        peer,
        action: a.action.clone(),
        run_id: a.run_id.clone(),
        request: a.request.clone(),
        outcome: a.outcome.clone(),
        message: a.message.clone(),
    }
}

pub fn alert_to_proto(a: &crate::store::Alert) -> proto::Alert {
    proto::Alert {
        id: a.id,
        at: a.at,
        kind: a.kind.clone(),
        message: a.message.clone(),
        acknowledged_at: a.acknowledged_at,
        acknowledged_by: a.acknowledged_by.clone(),
    }
}
