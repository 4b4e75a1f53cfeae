//! The schema and its migrations. `PRAGMA user_version` is the schema version; each migration
//! takes the database from version N to N+1 inside one transaction. A database written by a newer
//! daemon (a version above the last migration here) is refused, never guessed at.

/// Migrations in order; index i takes version i to version i+1.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, audit trail, alerts.
    r#"
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        argv TEXT NOT NULL,
        cwd TEXT NOT NULL,
        env TEXT NOT NULL,
        labels TEXT NOT NULL,
        stop_signals TEXT NOT NULL,
        grace_ms INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        pgid INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER NOT NULL,
        exit_code INTEGER,
        signal TEXT,
        error TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        restart_of TEXT NOT NULL,
        last_heartbeat_at INTEGER NOT NULL,
        heartbeats INTEGER NOT NULL,
        containment TEXT NOT NULL,
        stdout_bytes INTEGER NOT NULL,
        stderr_bytes INTEGER NOT NULL,
        end_reason TEXT NOT NULL,
        output_truncated INTEGER NOT NULL,
        logs_missing INTEGER NOT NULL
    );
    CREATE INDEX runs_status ON runs(status, ended_at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        caller TEXT NOT NULL,
        uid INTEGER,
        gid INTEGER,
        pid INTEGER,
        peer TEXT NOT NULL,
        action TEXT NOT NULL,
        run_id TEXT NOT NULL,
        request TEXT NOT NULL,
        outcome TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX audit_run ON audit(run_id, id);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        acknowledged_at INTEGER NOT NULL DEFAULT 0,
        acknowledged_by TEXT NOT NULL DEFAULT ''
    );
    "#,
    // 2: agent runs: the workflow spec and the observed progress, as JSON ('' for plain runs).
    r#"
    ALTER TABLE runs ADD COLUMN agent_spec TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN agent_state TEXT NOT NULL DEFAULT '';
    "#,
    // 3: the work queue and run policy (queue, priority, dependencies, deadlines, restart policy
    // and idempotency key as JSON; '' for runs of older daemons), and the alert model: a firing
    // alert with a dedup key is resolved (resolved_at) once its condition is gone.
    r#"
    ALTER TABLE runs ADD COLUMN policy TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN queued_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN timeout_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN policy_restarts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN restarted_as TEXT NOT NULL DEFAULT '';
    ALTER TABLE alerts ADD COLUMN resolved_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE alerts ADD COLUMN dedup_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE alerts ADD COLUMN labels TEXT NOT NULL DEFAULT '';
    CREATE INDEX alerts_dedup ON alerts(dedup_key, resolved_at);
    "#,
    // 4: access: who started each run (JSON, '' for runs from before), and the authenticated
    // identity and role of each audited call.
    r#"
    ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN identity TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN role TEXT NOT NULL DEFAULT '';
    "#,
    // 5: observability: each run's resource usage (JSON; '' for runs from before, or runs
    // that never started); when each firing alert was last seen; the webhook outbox: what
    // each webhook was sent of each alert, and what it still owes.
    r#"
    ALTER TABLE runs ADD COLUMN usage TEXT NOT NULL DEFAULT '';
    ALTER TABLE alerts ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE alert_deliveries (
        webhook TEXT NOT NULL,
        alert_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at INTEGER NOT NULL,
        sent_at INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        PRIMARY KEY (webhook, alert_id)
    );
    "#,
    // 6: queue control that outlives the daemon: the queues an operator paused (UpdateQueue),
    // so a pause for an incident holds across a restart.
    r#"
    CREATE TABLE queue_state (
        queue TEXT PRIMARY KEY,
        paused INTEGER NOT NULL
    );
    "#,
];

/// The schema version this daemon writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
