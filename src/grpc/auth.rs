//! Authorization at the API edge: [`TABLE`], the one list of every RPC of the service and the
//! role it needs, and [`Access::authorize`], the one check every handler makes first. The check
//! turns the connection's [`Peer`] (and, on TCP, the request's bearer token) into an
//! authenticated [`Subject`], asks `access::decide` whether its role suffices for the call, and
//! on refusal writes the audit record and answers PERMISSION_DENIED naming the caller, the role
//! it lacks and the call. An unknown token is UNAUTHENTICATED after a fixed delay.
//!
//! [`Access`] holds what a reload (SIGHUP) may change: the `[access]` policy and the tokens
//! file. A unit test compares [`TABLE`] with the methods of the generated service, so an RPC
//! cannot be added without a row here.
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::{Request, Status};

use crate::access::tokens::{Tokens, TokensError};
use crate::access::{self, Facts, Policy, Role, Rule, RunOwner, Subject};
use crate::config::Config;
use crate::store::{AuditRecord, Caller, Store};

use super::listen::Peer;

/// Every RPC of `wf.supervisor.v1.Supervisor` and what it needs.
pub const TABLE: &[(&str, Rule)] = &[
    // Reading.
    ("Get", Rule::Role(Role::Viewer)),
    ("List", Rule::Role(Role::Viewer)),
    ("Watch", Rule::Role(Role::Viewer)),
    ("Logs", Rule::Role(Role::Viewer)),
    ("ListAudit", Rule::Role(Role::Viewer)),
    ("GetHealth", Rule::Role(Role::Viewer)),
    ("GetQueueHealth", Rule::Role(Role::Viewer)),
    ("ListWorkflows", Rule::Role(Role::Viewer)),
    // Operating runs: a workflow spawn is operator's, an argv spawn `[access] argv_spawn`'s.
    ("Spawn", Rule::Spawn),
    ("Kill", Rule::Role(Role::Operator)),
    ("Cancel", Rule::Role(Role::Operator)),
    ("Restart", Rule::Role(Role::Operator)),
    ("ForceComplete", Rule::Role(Role::Operator)),
    // Pause/resume is operator's, a new max_concurrent admin's.
    ("UpdateQueue", Rule::UpdateQueue),
    // Changing the daemon itself.
    ("Purge", Rule::Role(Role::Admin)),
    ("AckAlert", Rule::Role(Role::Admin)),
];

/// The rule for `method`; a method missing from the table needs admin.
pub fn rule_for(method: &str) -> Rule {
    TABLE
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, r)| *r)
        .unwrap_or(Rule::Role(Role::Admin))
}

/// How long an unknown token waits before UNAUTHENTICATED, so guessing is slow.
pub const UNKNOWN_TOKEN_DELAY: Duration = Duration::from_millis(500);

/// The audit action of a method: `ForceComplete` -> `force_complete`.
pub fn action_of(method: &str) -> String {
    let mut out = String::with_capacity(method.len() + 4);
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a reload may change.
#[derive(Debug)]
pub struct AccessState {
    pub policy: Policy,
    pub tokens: Tokens,
    /// Set when agents run as root and the config does not say that is intended.
    pub root_agents: Option<String>,
}

/// Why access settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Tokens(#[from] TokensError),
}

/// The access settings in force; cheap to clone.
#[derive(Clone)]
pub struct Access {
    state: Arc<RwLock<Arc<AccessState>>>,
    daemon_uid: u32,
    daemon_root: bool,
}

/// The message of the `agents_run_as_root` alert, when it applies.
pub fn root_agents(config: &Config, daemon_root: bool) -> Option<String> {
    (daemon_root && config.user.is_none() && !config.allow_root_agents).then(|| {
        "agents run as root: the daemon is root and runs.user is not set, so every run has \
         root's powers; set runs.user (e.g. \"wf-agent\"), or runs.allow_root_agents = true if \
         that is intended"
            .to_string()
    })
}

impl Access {
    pub fn new(config: &Config, daemon_uid: u32, daemon_root: bool) -> Result<Access, AccessError> {
        let a = Access {
            state: Arc::new(RwLock::new(Arc::new(AccessState {
                policy: Policy::new(daemon_uid),
                tokens: Tokens::default(),
                root_agents: None,
            }))),
            daemon_uid,
            daemon_root,
        };
        a.reload(config)?;
        Ok(a)
    }

    /// Take the policy and tokens of `config` (a bad tokens file is refused and the old
    /// settings stay).
    pub fn reload(&self, config: &Config) -> Result<(), AccessError> {
        let new = self.prepare(config)?;
        self.install(new);
        Ok(())
    }

    /// The settings `config` gives, read but not yet in force.
    pub fn prepare(&self, config: &Config) -> Result<AccessState, AccessError> {
        let tokens = match &config.access.tokens_file {
            Some(path) => Tokens::load(path)?,
            None => Tokens::default(),
        };
        Ok(AccessState {
            policy: config.access.policy(self.daemon_uid),
            tokens,
            root_agents: root_agents(config, self.daemon_root),
        })
    }

    /// Put prepared settings in force (for the next call).
    pub fn install(&self, new: AccessState) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
    }

    pub fn current(&self) -> Arc<AccessState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Authenticate the caller of `request` and check that it may make the call `method` with
    /// these `facts`. A refusal is audited (action, `run_id`, `fields`) before it is returned.
    pub async fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &str,
        facts: Facts,
        run_id: &str,
        fields: impl FnOnce() -> serde_json::Value,
        store: &Store,
    ) -> Result<Who, Status> {
        let state = self.current();
        let peer = request.extensions().get::<Peer>().cloned();
        let (caller, subject, extra) = match self.authenticate(request, peer, &state).await {
            Ok(x) => x,
            Err((caller, identity, st)) => {
                let rec = AuditRecord::new(caller, &action_of(method), run_id, fields())
                    .by(identity, "")
                    .outcome("refused", format!("{:?}: {}", st.code(), st.message()));
                write_refusal(store, rec).await;
                return Err(st);
            }
        };
        let role = state.policy.role_of(&subject);
        let who = Who {
            caller,
            identity: format!("{}{extra}", subject.describe()),
            subject,
            role,
        };
        if let Err(d) = access::decide(
            &who.subject,
            role,
            method,
            rule_for(method),
            facts,
            &state.policy,
        ) {
            let st = Status::permission_denied(d.message);
            let rec = who
                .record(&action_of(method), run_id, fields())
                .outcome("refused", format!("{:?}: {}", st.code(), st.message()));
            write_refusal(store, rec).await;
            return Err(st);
        }
        Ok(who)
    }

    /// The caller, its subject and what else the audit should say of it; or the caller, what is
    /// known of it and the refusal.
    async fn authenticate<T>(
        &self,
        request: &Request<T>,
        peer: Option<Peer>,
        state: &AccessState,
    ) -> Result<(Caller, Subject, String), (Caller, String, Status)> {
        match peer {
            Some(Peer::Unix(u)) => Ok((
                Caller::Unix {
                    uid: u.uid,
                    gid: u.gid,
                    pid: u.pid,
                },
                Subject::Unix((*u).clone()),
                String::new(),
            )),
            Some(Peer::UnixUnknown(why)) => Err((
                Caller::Unknown,
                String::new(),
                Status::unauthenticated(format!("cannot tell who is calling: {why}")),
            )),
            Some(Peer::Tcp {
                addr,
                tls: _,
                cert_names,
            }) => {
                let caller = Caller::Tcp(addr);
                let cert = cert_names
                    .first()
                    .map(|n| format!(" (cert {n})"))
                    .unwrap_or_default();
                match bearer(request) {
                    Ok(Some(secret)) => match state.tokens.verify(secret) {
                        Some(t) => Ok((
                            caller,
                            Subject::Token {
                                name: t.name.clone(),
                                role: t.role,
                            },
                            cert,
                        )),
                        None => {
                            tokio::time::sleep(UNKNOWN_TOKEN_DELAY).await;
                            Err((
                                caller,
                                cert.trim().to_string(),
                                Status::unauthenticated("unknown token"),
                            ))
                        }
                    },
                    Ok(None) if !cert_names.is_empty() => Ok((
                        caller,
                        Subject::Cert {
                            names: (*cert_names).clone(),
                        },
                        String::new(),
                    )),
                    Ok(None) => Err((
                        caller,
                        String::new(),
                        Status::unauthenticated(
                            "no credentials: TCP callers send a token (authorization: Bearer \
                             TOKEN; wfctl --token-file or WF_SUPERVISOR_TOKEN) or a client \
                             certificate",
                        ),
                    )),
                    Err(st) => Err((caller, cert.trim().to_string(), st)),
                }
            }
            None => Err((
                Caller::Unknown,
                String::new(),
                Status::unauthenticated("cannot tell who is calling"),
            )),
        }
    }
}

async fn write_refusal(store: &Store, rec: AuditRecord) {
    if let Err(e) = store.audit(rec).await {
        tracing::error!(error = %e, "cannot write the audit record of a refused call");
    }
}

/// The request's bearer token, if it has an `authorization` header.
fn bearer<T>(request: &Request<T>) -> Result<Option<&str>, Status> {
    let Some(v) = request.metadata().get("authorization") else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
    match v.strip_prefix("Bearer ") {
        Some(t) if !t.trim().is_empty() => Ok(Some(t.trim())),
        _ => Err(Status::unauthenticated(
            "the authorization header must be \"Bearer TOKEN\"",
        )),
    }
}

/// An authenticated, authorized caller.
#[derive(Debug, Clone)]
pub struct Who {
    pub caller: Caller,
    pub subject: Subject,
    pub role: Option<Role>,
    /// For the audit trail: "uid 1001 (alice)", "token ci-bot (cert host1)".
    pub identity: String,
}

impl Who {
    /// An audit record of this caller's call.
    pub fn record(&self, action: &str, run_id: &str, fields: serde_json::Value) -> AuditRecord {
        AuditRecord::new(self.caller.clone(), action, run_id, fields)
            .by(self.identity.clone(), self.role.map_or("", Role::as_str))
    }

    /// The owner of a run this caller starts.
    pub fn owner(&self) -> RunOwner {
        self.subject.owner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The method names of the service, from the generated file descriptor set.
    fn service_methods() -> Vec<String> {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let service = set
            .file
            .iter()
            .flat_map(|f| f.service.iter())
            .find(|s| s.name() == "Supervisor")
            .expect("the Supervisor service");
        service
            .method
            .iter()
            .map(|m| m.name().to_string())
            .collect()
    }

    #[test]
    fn every_rpc_of_the_service_has_exactly_one_row() {
        let mut methods = service_methods();
        methods.sort();
        let mut rows: Vec<String> = TABLE.iter().map(|(m, _)| m.to_string()).collect();
        rows.sort();
        assert_eq!(
            rows, methods,
            "grpc::auth::TABLE must list every RPC of the service, once"
        );
    }

    #[test]
    fn the_table_says_what_the_roles_mean() {
        for m in [
            "Get",
            "List",
            "Watch",
            "Logs",
            "ListAudit",
            "GetHealth",
            "GetQueueHealth",
            "ListWorkflows",
        ] {
            assert_eq!(rule_for(m), Rule::Role(Role::Viewer), "{m}");
        }
        for m in ["Kill", "Cancel", "Restart", "ForceComplete"] {
            assert_eq!(rule_for(m), Rule::Role(Role::Operator), "{m}");
        }
        for m in ["Purge", "AckAlert", "SomethingNew"] {
            assert_eq!(rule_for(m), Rule::Role(Role::Admin), "{m}");
        }
        assert_eq!(rule_for("Spawn"), Rule::Spawn);
        assert_eq!(rule_for("UpdateQueue"), Rule::UpdateQueue);
    }

    #[test]
    fn actions_are_snake_case() {
        assert_eq!(action_of("ForceComplete"), "force_complete");
        assert_eq!(action_of("Kill"), "kill");
        assert_eq!(action_of("GetQueueHealth"), "get_queue_health");
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let mut r = Request::new(());
        assert_eq!(bearer(&r).expect("none"), None);
        r.metadata_mut()
            .insert("authorization", "Bearer wf_abc".parse().expect("value"));
        assert_eq!(bearer(&r).expect("some"), Some("wf_abc"));
        r.metadata_mut()
            .insert("authorization", "Basic x".parse().expect("value"));
        assert!(bearer(&r).is_err());
    }
}
