//! Access control, decided: who a caller is ([`Subject`]), which [`Role`] the config grants it
//! ([`Policy`]), whether that role may make a call ([`decide`]), whether it may act on a given
//! run ([`may_act_on`]), which Spawn env keys need admin ([`restricted_env_key`]), and whether a
//! TCP listener may start at all ([`check_tcp`]). Every function here is pure: the identity is
//! gathered at connect time (`grpc::listen`), the table of which RPC needs which role lives at
//! the API edge (`grpc::auth`), and this module only answers. It keeps design invariant 7:
//! callers are authenticated and every call is authorized by role.
//!
//! Roles include each other: `viewer` < `operator` < `admin`. The daemon's own uid and root
//! always hold admin (they own the daemon's files anyway); the `[access]` lists grant roles to
//! users (`uid:N` or a name), groups (`gid:N`, `group:NAME`, matched against the caller's primary
//! and supplementary groups) and TLS client certificates (`cert:NAME`). Everyone else has no
//! role and is refused everything.
pub mod tokens;

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A role; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of an `[access]` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Uid(u32),
    User(String),
    Gid(u32),
    Group(String),
    Cert(String),
}

impl Grant {
    /// `uid:N`, `gid:N`, `group:NAME`, `cert:NAME`, or a user name.
    pub fn parse(s: &str) -> Result<Grant, String> {
        let number = |v: &str, what: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{s:?}: {v:?} is not a {what} (a number)"))
        };
        let named = |v: &str| {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == ':') {
                Err(format!("{s:?}: the name is empty or has spaces or ':'"))
            } else {
                Ok(v.to_string())
            }
        };
        Ok(match s.split_once(':') {
            Some(("uid", v)) => Grant::Uid(number(v, "uid")?),
            Some(("gid", v)) => Grant::Gid(number(v, "gid")?),
            Some(("group", v)) => Grant::Group(named(v)?),
            Some(("cert", v)) => Grant::Cert(named(v)?),
            Some((k, _)) => {
                return Err(format!(
                    "{s:?}: {k:?} is not one of uid:N, gid:N, group:NAME, cert:NAME or a user name"
                ))
            }
            None => Grant::User(named(s)?),
        })
    }
}

/// Who holds which role, from `[access]`, and the access switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The daemon's own uid: always admin, like root.
    pub daemon_uid: u32,
    pub admin: Vec<Grant>,
    pub operator: Vec<Grant>,
    pub viewer: Vec<Grant>,
    /// The role a Spawn of an arbitrary argv needs (admin unless the site opens it to operators).
    pub argv_spawn: Role,
    /// Operators may kill, cancel, restart or force-complete only runs they started.
    pub operators_own_runs_only: bool,
}

impl Policy {
    /// Root and `daemon_uid` are admin; nobody else has a role.
    pub fn new(daemon_uid: u32) -> Policy {
        Policy {
            daemon_uid,
            admin: Vec::new(),
            operator: Vec::new(),
            viewer: Vec::new(),
            argv_spawn: Role::Admin,
            operators_own_runs_only: false,
        }
    }

    /// The highest role the subject holds, if any.
    pub fn role_of(&self, subject: &Subject) -> Option<Role> {
        if let Subject::Unix(u) = subject {
            if u.uid == 0 || u.uid == self.daemon_uid {
                return Some(Role::Admin);
            }
        }
        if let Subject::Token { role, .. } = subject {
            return Some(*role);
        }
        [
            (Role::Admin, &self.admin),
            (Role::Operator, &self.operator),
            (Role::Viewer, &self.viewer),
        ]
        .into_iter()
        .find(|(_, list)| list.iter().any(|g| grants(g, subject)))
        .map(|(role, _)| role)
    }
}

/// Whether one list entry covers the subject.
fn grants(g: &Grant, subject: &Subject) -> bool {
    match (g, subject) {
        (Grant::Uid(n), Subject::Unix(u)) => u.uid == *n,
        (Grant::User(name), Subject::Unix(u)) => u.user.as_deref() == Some(name.as_str()),
        (Grant::Gid(n), Subject::Unix(u)) => u.groups.iter().any(|(gid, _)| gid == n),
        (Grant::Group(name), Subject::Unix(u)) => u
            .groups
            .iter()
            .any(|(_, n)| n.as_deref() == Some(name.as_str())),
        (Grant::Cert(name), Subject::Cert { names }) => names.iter().any(|n| n == name),
        _ => false,
    }
}

/// A unix-socket peer as resolved at connect time: SO_PEERCRED, the user's name, and its
/// primary and supplementary groups (SO_PEERGROUPS) with their names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixPeer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    pub user: Option<String>,
    /// Primary group first, then the supplementary ones; names where they resolve.
    pub groups: Vec<(u32, Option<String>)>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Unix(UnixPeer),
    /// A bearer token from the tokens file (its role is the file's).
    Token {
        name: String,
        role: Role,
    },
    /// A TLS client certificate: its subject CN and SAN names.
    Cert {
        names: Vec<String>,
    },
}

impl Subject {
    /// Who this is in words: "uid 1001 (alice)", "token ci-bot", "cert alice".
    pub fn describe(&self) -> String {
        match self {
            Subject::Unix(u) => match &u.user {
                Some(name) => format!("uid {} ({name})", u.uid),
                None => format!("uid {}", u.uid),
            },
            Subject::Token { name, .. } => format!("token {name}"),
            Subject::Cert { names } => format!("cert {}", names.first().map_or("?", |n| n)),
        }
    }

    /// The owner a run started by this subject records.
    pub fn owner(&self) -> RunOwner {
        match self {
            Subject::Unix(u) => RunOwner {
                kind: "unix".into(),
                uid: Some(u.uid),
                name: u.user.clone().unwrap_or_default(),
            },
            Subject::Token { name, .. } => RunOwner {
                kind: "token".into(),
                uid: None,
                name: name.clone(),
            },
            Subject::Cert { names } => RunOwner {
                kind: "cert".into(),
                uid: None,
                name: names.first().cloned().unwrap_or_default(),
            },
        }
    }
}

/// Who started a run: kind "unix" (uid and name), "token" or "cert" (name), or "daemon".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOwner {
    pub kind: String,
    pub uid: Option<u32>,
    pub name: String,
}

/// What a call needs, from the table at the API edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// This role, whatever the request says.
    Role(Role),
    /// Spawn: operator for a workflow template, `argv_spawn` (admin by default) for an argv.
    Spawn,
    /// UpdateQueue: operator to pause or resume, admin to change max_concurrent.
    UpdateQueue,
}

/// The parts of a request a [`Rule`] looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Spawn: the request gives an argv rather than a workflow.
    pub argv: bool,
    /// UpdateQueue: the request changes max_concurrent.
    pub changes_limit: bool,
}

/// The role a call needs under `policy`.
pub fn required(rule: Rule, facts: Facts, policy: &Policy) -> Role {
    match rule {
        Rule::Role(r) => r,
        Rule::Spawn if facts.argv => policy.argv_spawn,
        Rule::Spawn => Role::Operator,
        Rule::UpdateQueue if facts.changes_limit => Role::Admin,
        Rule::UpdateQueue => Role::Operator,
    }
}

/// A refused call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub needs: Role,
    pub message: String,
}

/// Whether `subject` holding `held` may make the call `method` under `rule`; the refusal says
/// who, the role lacking and the call: "uid 1001 (alice) needs role operator for Kill".
pub fn decide(
    subject: &Subject,
    held: Option<Role>,
    method: &str,
    rule: Rule,
    facts: Facts,
    policy: &Policy,
) -> Result<(), Denied> {
    let needs = required(rule, facts, policy);
    if held.is_some_and(|h| h >= needs) {
        return Ok(());
    }
    let what = match (rule, facts.argv, facts.changes_limit) {
        (Rule::Spawn, true, _) => format!("{method} of an argv (a workflow needs operator)"),
        (Rule::UpdateQueue, _, true) => format!("{method} of max_concurrent"),
        _ => method.to_string(),
    };
    let has = match held {
        Some(r) => format!(", and has {r}"),
        None => ", and has no role".to_string(),
    };
    Err(Denied {
        needs,
        message: format!("{} needs role {needs} for {what}{has}", subject.describe()),
    })
}

/// Whether `subject` (holding `held`) may kill, cancel, restart or force-complete a run owned by
/// `owner`: admins always; operators only their own runs when `operators_own_runs_only` is on.
pub fn may_act_on(
    subject: &Subject,
    held: Option<Role>,
    owner: Option<&RunOwner>,
    policy: &Policy,
) -> bool {
    if held == Some(Role::Admin) || !policy.operators_own_runs_only {
        return true;
    }
    let Some(owner) = owner else {
        return false;
    };
    let mine = subject.owner();
    match (mine.kind.as_str(), owner.kind.as_str()) {
        ("unix", "unix") => mine.uid.is_some() && mine.uid == owner.uid,
        (a, b) => a == b && !mine.name.is_empty() && mine.name == owner.name,
    }
}

/// Env keys the daemon owns or the loader reads: only an admin may set them.
pub const RESTRICTED_ENV: &[&str] = &[
    "WF_RUN_ID",
    "WF_HEARTBEAT_FD",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
];

/// The first key of `keys` a caller holding `held` may not set, if any.
pub fn restricted_env_key<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    held: Option<Role>,
) -> Option<&'a str> {
    if held == Some(Role::Admin) {
        return None;
    }
    keys.into_iter()
        .map(String::as_str)
        .find(|k| RESTRICTED_ENV.contains(k))
}

/// Whether a TCP listener on `addr` may start: TLS anywhere; plaintext only on loopback with
/// tokens configured. The refusal names the setting to change.
pub fn check_tcp(addr: SocketAddr, tls: bool, tokens: bool) -> Result<(), String> {
    if tls {
        return Ok(());
    }
    if !addr.ip().is_loopback() {
        return Err(format!(
            "refusing plaintext TCP on {addr}: it is not a loopback address, so callers would \
             send tokens in the clear; set [tls] cert and key (or listen on 127.0.0.1)"
        ));
    }
    if !tokens {
        return Err(format!(
            "refusing plaintext TCP on {addr} without authentication: set [access] tokens_file \
             (make a token with `wfctl token create NAME --role ROLE`) or [tls] with client_ca"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(uid: u32, user: &str, groups: &[(u32, &str)]) -> Subject {
        Subject::Unix(UnixPeer {
            uid,
            gid: groups.first().map_or(uid, |g| g.0),
            pid: Some(42),
            user: Some(user.to_string()),
            groups: groups
                .iter()
                .map(|(g, n)| (*g, Some(n.to_string())))
                .collect(),
        })
    }

    fn policy() -> Policy {
        let mut p = Policy::new(0);
        p.admin = vec![Grant::Group("wf-admins".into()), Grant::Uid(1500)];
        p.operator = vec![
            Grant::Group("wf-operators".into()),
            Grant::User("olga".into()),
        ];
        p.viewer = vec![Grant::Gid(3000), Grant::Cert("dash".into())];
        p
    }

    #[test]
    fn grants_parse_and_bad_ones_are_named() {
        assert_eq!(Grant::parse("uid:0"), Ok(Grant::Uid(0)));
        assert_eq!(Grant::parse("gid:27"), Ok(Grant::Gid(27)));
        assert_eq!(
            Grant::parse("group:wf-ops"),
            Ok(Grant::Group("wf-ops".into()))
        );
        assert_eq!(Grant::parse("cert:ci"), Ok(Grant::Cert("ci".into())));
        assert_eq!(Grant::parse("alice"), Ok(Grant::User("alice".into())));
        let e = Grant::parse("uid:alice").expect_err("not a number");
        assert!(e.contains("not a uid"), "{e}");
        let e = Grant::parse("role:x").expect_err("unknown kind");
        assert!(e.contains("\"role\" is not one of"), "{e}");
        assert!(Grant::parse("group:").is_err());
        assert!(Grant::parse("").is_err());
    }

    #[test]
    fn root_and_the_daemon_user_are_admin_and_nobody_else_has_a_role_by_default() {
        let p = Policy::new(990);
        assert_eq!(
            p.role_of(&unix(0, "root", &[(0, "root")])),
            Some(Role::Admin)
        );
        assert_eq!(
            p.role_of(&unix(990, "wfd", &[(990, "wfd")])),
            Some(Role::Admin)
        );
        assert_eq!(p.role_of(&unix(1001, "alice", &[(1001, "alice")])), None);
        assert_eq!(
            p.role_of(&Subject::Cert {
                names: vec!["x".into()]
            }),
            None
        );
    }

    #[test]
    fn roles_come_from_users_groups_supplementary_groups_and_certs_highest_first() {
        let p = policy();
        assert_eq!(
            p.role_of(&unix(1500, "a", &[(1500, "a")])),
            Some(Role::Admin)
        );
        assert_eq!(
            p.role_of(&unix(1600, "olga", &[(1600, "olga")])),
            Some(Role::Operator)
        );
        // A supplementary group counts like the primary one.
        let s = unix(1700, "bob", &[(1700, "bob"), (4000, "wf-operators")]);
        assert_eq!(p.role_of(&s), Some(Role::Operator));
        let s = unix(
            1700,
            "bob",
            &[(1700, "bob"), (3000, "x"), (4100, "wf-admins")],
        );
        assert_eq!(p.role_of(&s), Some(Role::Admin));
        assert_eq!(
            p.role_of(&unix(1800, "v", &[(3000, "v")])),
            Some(Role::Viewer)
        );
        assert_eq!(
            p.role_of(&Subject::Cert {
                names: vec!["cn".into(), "dash".into()]
            }),
            Some(Role::Viewer)
        );
        // A user name never matches a cert of that name, nor the other way round.
        let mut q = Policy::new(0);
        q.admin = vec![Grant::User("dash".into())];
        assert_eq!(
            q.role_of(&Subject::Cert {
                names: vec!["dash".into()]
            }),
            None
        );
        let t = Subject::Token {
            name: "ci".into(),
            role: Role::Operator,
        };
        assert_eq!(q.role_of(&t), Some(Role::Operator));
    }

    #[test]
    fn the_rules_need_what_the_issue_says() {
        let p = policy();
        let argv = Facts {
            argv: true,
            ..Facts::default()
        };
        let wf = Facts::default();
        assert_eq!(required(Rule::Spawn, argv, &p), Role::Admin);
        assert_eq!(required(Rule::Spawn, wf, &p), Role::Operator);
        let mut open = p.clone();
        open.argv_spawn = Role::Operator;
        assert_eq!(required(Rule::Spawn, argv, &open), Role::Operator);
        let limit = Facts {
            changes_limit: true,
            ..Facts::default()
        };
        assert_eq!(required(Rule::UpdateQueue, limit, &p), Role::Admin);
        assert_eq!(required(Rule::UpdateQueue, wf, &p), Role::Operator);
        assert_eq!(required(Rule::Role(Role::Viewer), argv, &p), Role::Viewer);
    }

    #[test]
    fn a_refusal_names_the_caller_the_role_and_the_call() {
        let p = policy();
        let alice = unix(1001, "alice", &[(1001, "alice")]);
        let d = decide(
            &alice,
            None,
            "Kill",
            Rule::Role(Role::Operator),
            Facts::default(),
            &p,
        )
        .expect_err("no role");
        assert_eq!(d.needs, Role::Operator);
        assert_eq!(
            d.message,
            "uid 1001 (alice) needs role operator for Kill, and has no role"
        );
        let d = decide(
            &alice,
            Some(Role::Operator),
            "Spawn",
            Rule::Spawn,
            Facts {
                argv: true,
                ..Facts::default()
            },
            &p,
        )
        .expect_err("argv is admin's");
        assert!(
            d.message
                .starts_with("uid 1001 (alice) needs role admin for Spawn of an argv"),
            "{}",
            d.message
        );
        assert!(d.message.ends_with("and has operator"), "{}", d.message);
        assert!(decide(
            &alice,
            Some(Role::Operator),
            "Kill",
            Rule::Role(Role::Operator),
            Facts::default(),
            &p
        )
        .is_ok());
        assert!(decide(
            &alice,
            Some(Role::Admin),
            "Purge",
            Rule::Role(Role::Admin),
            Facts::default(),
            &p
        )
        .is_ok());
        assert!(decide(
            &alice,
            Some(Role::Viewer),
            "Purge",
            Rule::Role(Role::Admin),
            Facts::default(),
            &p
        )
        .is_err());
    }

    #[test]
    fn operators_act_on_their_own_runs_only_when_the_switch_is_on() {
        let mut p = policy();
        let alice = unix(1001, "alice", &[(1001, "alice")]);
        let bob = unix(1002, "bob", &[(1002, "bob")]);
        let alices = alice.owner();
        assert_eq!(
            alices,
            RunOwner {
                kind: "unix".into(),
                uid: Some(1001),
                name: "alice".into()
            }
        );
        let op = Some(Role::Operator);
        assert!(
            may_act_on(&bob, op, Some(&alices), &p),
            "switch off: anyone's"
        );
        p.operators_own_runs_only = true;
        assert!(may_act_on(&alice, op, Some(&alices), &p));
        assert!(!may_act_on(&bob, op, Some(&alices), &p));
        assert!(may_act_on(&bob, Some(Role::Admin), Some(&alices), &p));
        assert!(
            !may_act_on(&bob, op, None, &p),
            "an ownerless run is admin's"
        );
        let daemon = RunOwner {
            kind: "daemon".into(),
            uid: None,
            name: "daemon".into(),
        };
        assert!(!may_act_on(&bob, op, Some(&daemon), &p));
        let ci = Subject::Token {
            name: "ci".into(),
            role: Role::Operator,
        };
        assert!(may_act_on(&ci, op, Some(&ci.owner()), &p));
        let other = Subject::Token {
            name: "cd".into(),
            role: Role::Operator,
        };
        assert!(!may_act_on(&other, op, Some(&ci.owner()), &p));
        // A token and a cert of the same name are different owners.
        let cert = Subject::Cert {
            names: vec!["ci".into()],
        };
        assert!(!may_act_on(&cert, op, Some(&ci.owner()), &p));
    }

    #[test]
    fn daemon_and_loader_env_keys_need_admin() {
        let keys: Vec<String> = vec!["HOME".into(), "LD_PRELOAD".into()];
        assert_eq!(
            restricted_env_key(&keys, Some(Role::Operator)),
            Some("LD_PRELOAD")
        );
        assert_eq!(restricted_env_key(&keys, Some(Role::Admin)), None);
        let keys: Vec<String> = vec!["WF_RUN_ID".into()];
        assert_eq!(restricted_env_key(&keys, None), Some("WF_RUN_ID"));
        let keys: Vec<String> = vec!["PATH".into(), "LD_LIBRARY_PATHX".into()];
        assert_eq!(restricted_env_key(&keys, Some(Role::Operator)), None);
    }

    #[test]
    fn plaintext_tcp_only_on_loopback_with_tokens() {
        let lo: SocketAddr = "127.0.0.1:7443".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:7443".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:7443".parse().expect("addr");
        assert!(check_tcp(lo, false, true).is_ok());
        assert!(check_tcp(lo6, false, true).is_ok());
        let e = check_tcp(lo, false, false).expect_err("no tokens");
        assert!(e.contains("tokens_file"), "{e}");
        let e = check_tcp(any, false, true).expect_err("not loopback");
        assert!(e.contains("[tls] cert and key"), "{e}");
        assert!(check_tcp(any, true, false).is_ok());
    }
}
