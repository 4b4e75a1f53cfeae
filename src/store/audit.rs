//! The audit trail: who asked for what, on which run, and how it went. Append-only; records of
//! purged runs are kept.
use std::net::SocketAddr;

use rusqlite::{params, Connection};

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A peer on the unix socket, by SO_PEERCRED.
    Unix {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
    /// A peer on TCP, by address (its token or certificate is the record's `identity`).
    Tcp(SocketAddr),
    /// The daemon itself (stuck rules, recovery, restart policy).
    Daemon,
    /// A connection whose peer could not be identified.
    Unknown,
}

impl Caller {
    pub fn describe(&self) -> String {
        match self {
            Caller::Unix { uid, gid, pid } => match pid {
                Some(p) => format!("uid={uid} gid={gid} pid={p}"),
                None => format!("uid={uid} gid={gid}"),
            },
            Caller::Tcp(a) => format!("tcp {a}"),
            Caller::Daemon => "daemon".into(),
            Caller::Unknown => "unknown".into(),
        }
    }
}

/// One audit record.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub caller: Caller,
    pub action: String,
    pub run_id: String,
    /// The request's key fields, as JSON.
    pub request: String,
    /// "ok", "refused" or "failed".
    pub outcome: String,
    pub message: String,
    /// The authenticated identity ("uid 1001 (alice)", "token ci-bot", "cert alice"); empty for
    /// the daemon's own actions.
    pub identity: String,
    /// The role the caller held for the call; empty for none.
    pub role: String,
}

impl AuditRecord {
    pub fn new(caller: Caller, action: &str, run_id: &str, request: serde_json::Value) -> Self {
        AuditRecord {
            id: 0,
            at: crate::time::now_ms(),
            caller,
            action: action.to_string(),
            run_id: run_id.to_string(),
            request: request.to_string(),
            outcome: "ok".into(),
            message: String::new(),
            identity: String::new(),
            role: String::new(),
        }
    }

    /// The authenticated identity of the caller and the role it held.
    pub fn by(mut self, identity: impl Into<String>, role: impl Into<String>) -> Self {
        self.identity = identity.into();
        self.role = role.into();
        self
    }

    pub fn outcome(mut self, outcome: &str, message: impl Into<String>) -> Self {
        self.outcome = outcome.to_string();
        self.message = message.into();
        self
    }
}

pub fn insert(c: &Connection, a: &AuditRecord) -> rusqlite::Result<()> {
    let (uid, gid, pid, peer) = match &a.caller {
        Caller::Unix { uid, gid, pid } => (Some(*uid), Some(*gid), *pid, String::new()),
        Caller::Tcp(addr) => (None, None, None, addr.to_string()),
        _ => (None, None, None, String::new()),
    };
    c.prepare_cached(
        "INSERT INTO audit (at, caller, uid, gid, pid, peer, action, run_id, request, outcome, message,
            identity, role)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        a.at,
        a.caller.describe(),
        uid,
        gid,
        pid,
        peer,
        a.action,
        a.run_id,
        a.request,
        a.outcome,
        a.message,
        a.identity,
        a.role
    ])?;
    Ok(())
}

pub fn list(
    c: &Connection,
    run_id: &str,
    since: i64,
    limit: usize,
) -> rusqlite::Result<Vec<AuditRecord>> {
    let mut st = c.prepare_cached(
        "SELECT id, at, caller, uid, gid, pid, peer, action, run_id, request, outcome, message,
            identity, role
         FROM audit WHERE (?1 = '' OR run_id = ?1) AND at >= ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = st.query_map(params![run_id, since, limit as i64], |r| {
        let caller_text: String = r.get(2)?;
        let uid: Option<u32> = r.get(3)?;
        let gid: Option<u32> = r.get(4)?;
        let pid: Option<i32> = r.get(5)?;
        let peer: String = r.get(6)?;
        let caller = match (uid, gid) {
            (Some(uid), Some(gid)) => Caller::Unix { uid, gid, pid },
            _ => match peer.parse() {
                Ok(addr) => Caller::Tcp(addr),
                Err(_) if caller_text == "daemon" => Caller::Daemon,
                Err(_) => Caller::Unknown,
            },
        };
        Ok(AuditRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            caller,
            action: r.get(7)?,
            run_id: r.get(8)?,
            request: r.get(9)?,
            outcome: r.get(10)?,
            message: r.get(11)?,
            identity: r.get(12)?,
            role: r.get(13)?,
        })
    })?;
    rows.collect()
}
