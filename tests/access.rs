//! Access control on the unix socket, with real users: throwaway users and groups made for the
//! test, connecting from threads that dropped to them, so the daemon sees them through
//! SO_PEERCRED and SO_PEERGROUPS exactly as it would see a real login.
//!
//! - The role matrix: every RPC of the service, for a viewer, an operator, an admin and a user
//!   with no role; every refusal is PERMISSION_DENIED naming the caller, the role and the call,
//!   and is in the audit trail with the caller's uid. The matrix is compared with the service's
//!   methods (from the generated descriptor set) and with the table at the API edge, so a new
//!   RPC without a row fails here.
//! - A supplementary group grants its role; the same user connecting without it has none.
//! - `operators_own_runs_only`: an operator cannot kill or restart another user's run, an admin
//!   can, and a restart keeps the run's owner.
//! - Spawn env keys the daemon or the loader owns need admin.
//! - `socket_group`/`socket_mode`: who may connect at all.
//! - The `agents_run_as_root` alert, and its silencing.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use tonic::transport::Channel;
use tonic::{Code, Status};
use wf_supervisor::access::Role;
use wf_supervisor::proto::supervisor_client::SupervisorClient;
use wf_supervisor::proto::*;

type Client = SupervisorClient<Channel>;

/// A run id nobody has: calls on it that are allowed answer NOT_FOUND.
const NO_RUN: &str = "run_000000000000";

/// One call of the matrix: the RPC, which form of it, and the role it needs.
struct Case {
    method: &'static str,
    form: &'static str,
    needs: Role,
}

const fn case(method: &'static str, form: &'static str, needs: Role) -> Case {
    Case {
        method,
        form,
        needs,
    }
}

/// What the table says, one row per RPC (two for Spawn and UpdateQueue).
const MATRIX: &[Case] = &[
    case("Get", "", Role::Viewer),
    case("List", "", Role::Viewer),
    case("Watch", "", Role::Viewer),
    case("Logs", "", Role::Viewer),
    case("ListAudit", "", Role::Viewer),
    case("GetHealth", "", Role::Viewer),
    case("GetQueueHealth", "", Role::Viewer),
    case("ListWorkflows", "", Role::Viewer),
    case("Spawn", "workflow", Role::Operator),
    case("Spawn", "argv", Role::Admin),
    case("Kill", "", Role::Operator),
    case("Cancel", "", Role::Operator),
    case("Restart", "", Role::Operator),
    case("ForceComplete", "", Role::Operator),
    case("UpdateQueue", "pause", Role::Operator),
    case("UpdateQueue", "max_concurrent", Role::Admin),
    case("Purge", "", Role::Admin),
    case("AckAlert", "", Role::Admin),
];

/// The methods of the Supervisor service, from the generated descriptor set.
fn service_methods() -> BTreeSet<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(wf_supervisor::proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    set.file
        .iter()
        .flat_map(|f| f.service.iter())
        .find(|s| s.name() == "Supervisor")
        .expect("Supervisor service")
        .method
        .iter()
        .map(|m| m.name().to_string())
        .collect()
}

/// Makes the call of `case`; Ok(()) for any answer the call itself gave.
async fn call(c: &mut Client, case: &Case, tag: &str) -> Result<(), Status> {
    let env: std::collections::BTreeMap<String, String> =
        [("WF_TEST_TAG".to_string(), tag.to_string())].into();
    match (case.method, case.form) {
        ("Get", _) => c
            .get(GetRequest {
                run_id: NO_RUN.into(),
            })
            .await
            .map(drop),
        ("List", _) => c.list(ListRequest::default()).await.map(drop),
        ("Watch", _) => c
            .watch(WatchRequest {
                run_id: NO_RUN.into(),
            })
            .await
            .map(drop),
        ("Logs", _) => c
            .logs(LogsRequest {
                run_id: NO_RUN.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ("ListAudit", _) => c
            .list_audit(ListAuditRequest {
                limit: 1,
                ..Default::default()
            })
            .await
            .map(drop),
        ("GetHealth", _) => c.get_health(GetHealthRequest {}).await.map(drop),
        ("GetQueueHealth", _) => c.get_queue_health(GetQueueHealthRequest {}).await.map(drop),
        ("ListWorkflows", _) => c.list_workflows(ListWorkflowsRequest {}).await.map(drop),
        ("Spawn", "workflow") => c
            .spawn(SpawnRequest {
                workflow: "w".into(),
                prompt: "hello".into(),
                env,
                ..Default::default()
            })
            .await
            .map(drop),
        ("Spawn", "argv") => c
            .spawn(SpawnRequest {
                argv: vec!["/bin/true".into()],
                env,
                ..Default::default()
            })
            .await
            .map(drop),
        ("Kill", _) => c
            .kill(KillRequest {
                run_id: NO_RUN.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ("Cancel", _) => c
            .cancel(CancelRequest {
                run_id: NO_RUN.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ("Restart", _) => c
            .restart(RestartRequest {
                run_id: NO_RUN.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ("ForceComplete", _) => c
            .force_complete(ForceCompleteRequest {
                run_id: NO_RUN.into(),
                outcome: Outcome::Failed as i32,
                reason: "test".into(),
            })
            .await
            .map(drop),
        ("UpdateQueue", "pause") => c
            .update_queue(UpdateQueueRequest {
                queue: "default".into(),
                paused: Some(true),
                max_concurrent: None,
            })
            .await
            .map(drop),
        ("UpdateQueue", "max_concurrent") => c
            .update_queue(UpdateQueueRequest {
                queue: "default".into(),
                paused: None,
                max_concurrent: Some(3),
            })
            .await
            .map(drop),
        ("Purge", _) => c
            .purge(PurgeRequest {
                run_id: NO_RUN.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ("AckAlert", _) => c
            .ack_alert(AckAlertRequest {
                id: 999_999,
                note: String::new(),
            })
            .await
            .map(drop),
        (m, f) => panic!("the matrix has no call for {m} {f}"),
    }
}

/// What the refusal of `case` says after the caller's name.
fn what(case: &Case) -> String {
    match (case.method, case.form) {
        ("Spawn", "argv") => "Spawn of an argv".into(),
        ("UpdateQueue", "max_concurrent") => "UpdateQueue of max_concurrent".into(),
        (m, _) => m.into(),
    }
}

fn action_of(method: &str) -> String {
    wf_supervisor::grpc::auth::action_of(method)
}

/// Lets throwaway users reach the socket in the site's (root-only) temp dir.
fn open_site_dir(site: &Site) {
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod the site dir");
}

fn access_options(access: &str, daemon: &str, runs: &str) -> Options {
    Options {
        containment: Containment::ProcessGroup,
        daemon_toml: daemon.to_string(),
        runs_toml: runs.to_string(),
        extra_toml: format!("[workflows.w]\nprogram = \"/bin/true\"\n\n[access]\n{access}"),
        ..Options::default()
    }
}

async fn start(options: Options) -> (Site, Api) {
    let mut site = Site::new(options).expect("site");
    open_site_dir(&site);
    let api = site.start().await;
    (site, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_is_allowed_or_refused_by_role_and_refusals_are_audited() {
    // The matrix covers the service and the table at the edge, row for row.
    let in_matrix: BTreeSet<String> = MATRIX.iter().map(|c| c.method.to_string()).collect();
    let in_table: BTreeSet<String> = wf_supervisor::grpc::auth::TABLE
        .iter()
        .map(|(m, _)| m.to_string())
        .collect();
    assert_eq!(
        in_matrix,
        service_methods(),
        "every RPC of the service needs a row in MATRIX (and in grpc::auth::TABLE)"
    );
    assert_eq!(
        in_table,
        service_methods(),
        "grpc::auth::TABLE vs the service"
    );

    let Some(mut users) = Users::new() else {
        return;
    };
    let admins = users.group("adm");
    let viewer = users.user("vw", &[]);
    let operator = users.user("op", &[]);
    // Admin through a supplementary group.
    let admin = users.user("ad", &[&admins]);
    let nobody = users.user("no", &[]);
    let access = format!(
        "admin = [{}]\noperator = [{}]\nviewer = [\"uid:{}\"]\n",
        toml_str(format!("group:{}", admins.name)),
        toml_str(&operator.name),
        viewer.uid
    );
    let (site, root) = start(access_options(&access, "socket_mode = \"0666\"\n", "")).await;
    let tag = unique("tag");

    let who: [(&TestUser, Option<Role>); 4] = [
        (&viewer, Some(Role::Viewer)),
        (&operator, Some(Role::Operator)),
        (&admin, Some(Role::Admin)),
        (&nobody, None),
    ];
    let mut refusals: BTreeMap<u32, Vec<&Case>> = BTreeMap::new();
    for (user, role) in who {
        let mut c = client_as(&site.socket, &user.creds());
        for case in MATRIX {
            let allowed = role.is_some_and(|r| r >= case.needs);
            let got = call(&mut c, case, &tag).await;
            let label = format!("{} {} as {} ({role:?})", case.method, case.form, user.name);
            if allowed {
                if let Err(st) = &got {
                    assert!(
                        !matches!(st.code(), Code::PermissionDenied | Code::Unauthenticated),
                        "{label}: should be allowed, got {st:?}"
                    );
                }
                continue;
            }
            let st = got.expect_err(&format!("{label}: should be refused"));
            assert_eq!(st.code(), Code::PermissionDenied, "{label}: {st:?}");
            let expected = format!(
                "uid {} ({}) needs role {} for {}",
                user.uid,
                user.name,
                case.needs,
                what(case)
            );
            assert!(
                st.message().starts_with(&expected),
                "{label}: {:?} should start with {expected:?}",
                st.message()
            );
            refusals.entry(user.uid).or_default().push(case);
        }
    }
    // Who was refused what: the viewer the operator's and admin's calls, the operator the
    // admin's, the admin nothing, the user without a role everything.
    assert!(
        !refusals.contains_key(&admin.uid),
        "the admin was refused nothing"
    );
    assert_eq!(refusals[&nobody.uid].len(), MATRIX.len());
    assert_eq!(
        refusals[&operator.uid].len(),
        MATRIX.iter().filter(|c| c.needs == Role::Admin).count()
    );

    // Every refusal is on record with the caller's uid and identity.
    let audit = root
        .audit_req(ListAuditRequest {
            limit: 10_000,
            ..Default::default()
        })
        .await;
    for (uid, cases) in &refusals {
        let mine: Vec<&AuditRecord> = audit
            .iter()
            .filter(|r| {
                r.uid == Some(*uid)
                    && r.outcome == "refused"
                    && r.message.starts_with("PermissionDenied: ")
            })
            .collect();
        assert_eq!(
            mine.len(),
            cases.len(),
            "refusals of uid {uid} in the audit: {mine:#?}"
        );
        for case in cases {
            assert!(
                mine.iter().any(|r| r.action == action_of(case.method)
                    && r.message.starts_with("PermissionDenied: ")
                    && r.identity.starts_with(&format!("uid {uid} ("))),
                "no audited refusal of {} {} for uid {uid}: {mine:#?}",
                case.method,
                case.form
            );
        }
    }
    // An allowed call records the identity and the role it held.
    let spawn = audit
        .iter()
        .find(|r| r.action == "spawn" && r.uid == Some(admin.uid) && r.outcome == "ok")
        .expect("the admin's spawn is audited");
    assert_eq!(spawn.role, "admin");
    assert_eq!(
        spawn.identity,
        format!("uid {} ({})", admin.uid, admin.name)
    );
    drop(site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supplementary_group_grants_its_role_and_only_while_held() {
    let Some(mut users) = Users::new() else {
        return;
    };
    let ops = users.group("ops");
    let viewers = users.group("vws");
    let carol = users.user("ca", &[&ops]);
    let dave = users.user("da", &[&viewers]);
    let access = format!(
        "operator = [{}]\nviewer = [\"gid:{}\"]\n",
        toml_str(format!("group:{}", ops.name)),
        viewers.gid
    );
    let (site, _root) = start(access_options(&access, "socket_mode = \"0666\"\n", "")).await;

    let mut c = client_as(&site.socket, &carol.creds());
    let kill = KillRequest {
        run_id: NO_RUN.into(),
        ..Default::default()
    };
    assert_code(
        c.kill(kill.clone()).await,
        Code::NotFound,
        "operator's Kill",
    );
    let st = c
        .purge(PurgeRequest {
            run_id: NO_RUN.into(),
            ..Default::default()
        })
        .await
        .expect_err("Purge is admin's");
    assert_eq!(st.code(), Code::PermissionDenied);
    assert!(
        st.message()
            .ends_with("needs role admin for Purge, and has operator"),
        "{}",
        st.message()
    );

    // The same user, connecting without the group: no role.
    let mut bare = client_as(&site.socket, &carol.creds_without_groups());
    let st = bare.kill(kill).await.expect_err("no group, no role");
    assert_eq!(st.code(), Code::PermissionDenied);
    assert_eq!(
        st.message(),
        format!(
            "uid {} ({}) needs role operator for Kill, and has no role",
            carol.uid, carol.name
        )
    );

    // A group by gid.
    let mut d = client_as(&site.socket, &dave.creds());
    d.list(ListRequest::default())
        .await
        .expect("a viewer lists runs");
    drop(site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_own_runs_only_keeps_operators_to_their_runs_and_restarts_keep_the_owner() {
    let Some(mut users) = Users::new() else {
        return;
    };
    let ops = users.group("own");
    let alice = users.user("al", &[&ops]);
    let bob = users.user("bo", &[&ops]);
    let admin = users.user("ad", &[]);
    let access = format!(
        "admin = [{}]\noperator = [{}]\nargv_spawn = \"operator\"\noperators_own_runs_only = true\n",
        toml_str(&admin.name),
        toml_str(format!("group:{}", ops.name)),
    );
    let (site, _root) = start(access_options(&access, "socket_mode = \"0666\"\n", "")).await;
    let mut a = client_as(&site.socket, &alice.creds());
    let mut b = client_as(&site.socket, &bob.creds());
    let mut adm = client_as(&site.socket, &admin.creds());
    let tag = unique("tag");
    let sleeper = |c: &mut Client| {
        let mut c = c.clone();
        let tag = tag.clone();
        async move {
            c.spawn(SpawnRequest {
                argv: fake(&["--sleep-ms", "600000"]),
                env: [("WF_TEST_TAG".to_string(), tag)].into(),
                ..Default::default()
            })
            .await
            .expect("spawn")
            .into_inner()
            .run
            .expect("run")
        }
    };
    let r1 = sleeper(&mut a).await;
    let owner = r1.owner.clone().expect("the run records its owner");
    assert_eq!(
        (owner.kind.as_str(), owner.uid, owner.name.as_str()),
        ("unix", Some(alice.uid), alice.name.as_str())
    );

    let kill = |id: &str| KillRequest {
        run_id: id.to_string(),
        grace_ms: 1000,
        ..Default::default()
    };
    let st = b.kill(kill(&r1.run_id)).await.expect_err("not bob's run");
    assert_eq!(st.code(), Code::PermissionDenied);
    assert!(
        st.message().starts_with(&format!(
            "uid {} ({}) may not Kill run {}: it was started by uid {} ({})",
            bob.uid, bob.name, r1.run_id, alice.uid, alice.name
        )),
        "{}",
        st.message()
    );
    let st = b
        .restart(RestartRequest {
            run_id: r1.run_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("not bob's run");
    assert_eq!(st.code(), Code::PermissionDenied);
    let st = b
        .kill(KillRequest {
            grace_ms: 1000,
            ..Default::default()
        })
        .await
        .expect_err("no run id: refused before anything else");
    assert!(
        matches!(st.code(), Code::PermissionDenied | Code::InvalidArgument),
        "{st:?}"
    );

    // The admin restarts alice's run: the new run is still alice's, and bob still may not.
    let r2 = adm
        .restart(RestartRequest {
            run_id: r1.run_id.clone(),
            reason: "admin".into(),
            ..Default::default()
        })
        .await
        .expect("an admin restarts anyone's run")
        .into_inner()
        .run
        .expect("run");
    assert_eq!(r2.owner, r1.owner, "a restart keeps the owner");
    assert_code(
        b.kill(kill(&r2.run_id)).await,
        Code::PermissionDenied,
        "bob on r2",
    );
    let out = a
        .kill(kill(&r2.run_id))
        .await
        .expect("alice kills her own run")
        .into_inner();
    assert!(out.success, "{out:?}");
    wait_no_env(&r2.run_id).await;
    wait_no_env(&r1.run_id).await;

    // Bob's own run is his to kill; an admin's kill of anyone's works.
    let r3 = sleeper(&mut b).await;
    let r4 = sleeper(&mut b).await;
    assert!(
        b.kill(kill(&r3.run_id))
            .await
            .expect("own run")
            .into_inner()
            .success
    );
    assert!(
        adm.kill(kill(&r4.run_id))
            .await
            .expect("admin")
            .into_inner()
            .success
    );
    wait_no_env(&r3.run_id).await;
    wait_no_env(&r4.run_id).await;

    // The refusals are on record against bob.
    let audit = site.client().audit(&r1.run_id).await;
    assert!(
        audit.iter().any(|r| r.uid == Some(bob.uid)
            && r.action == "kill"
            && r.outcome == "refused"
            && r.message.contains("operators act only on their own runs")),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_and_loader_env_keys_need_admin() {
    let Some(mut users) = Users::new() else {
        return;
    };
    let op = users.user("ev", &[]);
    let access = format!("operator = [\"uid:{}\"]\n", op.uid);
    let (site, root) = start(access_options(&access, "socket_mode = \"0666\"\n", "")).await;
    let mut c = client_as(&site.socket, &op.creds());
    for key in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "WF_RUN_ID",
        "WF_HEARTBEAT_FD",
    ] {
        let st = c
            .spawn(SpawnRequest {
                workflow: "w".into(),
                prompt: "p".into(),
                env: [(key.to_string(), "/tmp/x".to_string())].into(),
                ..Default::default()
            })
            .await
            .expect_err("restricted key");
        assert_eq!(st.code(), Code::InvalidArgument, "{key}: {st:?}");
        assert!(
            st.message()
                .starts_with(&format!("env: {key} may be set only by an admin")),
            "{key}: {}",
            st.message()
        );
    }
    // An admin may (root here); the run starts.
    let run = root
        .spawn_req(SpawnRequest {
            argv: vec!["/bin/true".into()],
            env: [("LD_LIBRARY_PATH".to_string(), "/nonexistent".to_string())].into(),
            ..Default::default()
        })
        .await;
    root.wait_terminal(&run.run_id, TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_group_and_mode_decide_who_may_connect() {
    let Some(mut users) = Users::new() else {
        return;
    };
    let group = users.group("sock");
    let member = users.user("in", &[&group]);
    let outsider = users.user("out", &[]);
    let daemon = format!(
        "socket_group = {}\nsocket_mode = \"0660\"\n",
        toml_str(&group.name)
    );
    let (site, _root) = start(access_options("", &daemon, "")).await;
    let meta = std::fs::metadata(&site.socket).expect("socket");
    assert_eq!(meta.gid(), group.gid, "the socket's group");
    assert_eq!(meta.mode() & 0o777, 0o660, "the socket's mode");

    let err = connect_as(&site.socket, &outsider.creds()).expect_err("not in the group");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    connect_as(&site.socket, &member.creds()).expect("a member connects");
    // Connecting is not a role: the member has none.
    let mut c = client_as(&site.socket, &member.creds());
    assert_code(
        c.get_health(GetHealthRequest {}).await,
        Code::PermissionDenied,
        "a member without a role",
    );
}

fn root_alert(h: &GetHealthResponse) -> Option<&Alert> {
    h.alerts.iter().find(|a| a.kind == "agents_run_as_root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_running_as_root_raise_an_alert_unless_that_is_intended() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs a daemon running as root");
        return;
    }
    let (site, api) = start(access_options("", "", "allow_root_agents = false\n")).await;
    let health = api.health().await;
    let alert = root_alert(&health).expect("an agents_run_as_root alert");
    assert!(alert.message.contains("runs.user"), "{alert:?}");
    assert!(
        site.current_log().contains("agents run as root"),
        "the daemon warns at start"
    );
    drop(site);

    let (_site, api) = start(access_options("", "", "allow_root_agents = true\n")).await;
    assert!(root_alert(&api.health().await).is_none(), "silenced");
    let (_site, api) = start(access_options("", "", "user = \"nobody\"\n")).await;
    assert!(
        root_alert(&api.health().await).is_none(),
        "agents run as nobody"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_by_a_stuck_rule_keeps_the_runs_owner() {
    let Some(mut users) = Users::new() else {
        return;
    };
    let op = users.user("st", &[]);
    let access = format!("operator = [\"uid:{}\"]\n", op.uid);
    let mut site =
        Site::new(access_options(&access, "socket_mode = \"0666\"\n", "")).expect("site");
    open_site_dir(&site);
    // An agent that starts up and never takes a turn: the init_timeout rule restarts it.
    let agent = site.dir.path().join("silent-agent");
    std::fs::write(
        &agent,
        "#!/bin/sh\necho '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-1\",\"model\":\"m\",\"cwd\":\"/\",\"tools\":[]}'\nexec sleep 600\n",
    )
    .expect("write");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    site.add_config(&format!(
        "\n[workflows.silent]\nprogram = {}\ninit_timeout = \"1s\"\non_init_timeout = \"restart\"\nidle_timeout = \"off\"\n",
        toml_str(agent.display().to_string())
    ));
    let root = site.start().await;
    let mut c = client_as(&site.socket, &op.creds());
    let first = c
        .spawn(SpawnRequest {
            workflow: "silent".into(),
            prompt: "p".into(),
            ..Default::default()
        })
        .await
        .expect("an operator spawns a workflow")
        .into_inner()
        .run
        .expect("run");
    let next = wait_for(TIMEOUT, "the stuck rule's restart", || {
        let root = root.clone();
        let id = first.run_id.clone();
        async move { root.list().await.into_iter().find(|r| r.restart_of == id) }
    })
    .await;
    let owner = next.owner.clone().expect("the restarted run has an owner");
    assert_eq!(
        (owner.kind.as_str(), owner.uid, owner.name.as_str()),
        ("unix", Some(op.uid), op.name.as_str()),
        "the daemon's restart keeps the owner"
    );
    let out = c
        .kill(KillRequest {
            run_id: next.run_id.clone(),
            force: true,
            ..Default::default()
        })
        .await
        .expect("the operator kills the restarted run")
        .into_inner();
    assert!(out.success, "{out:?}");
    wait_no_env(&next.run_id).await;
    wait_no_env(&first.run_id).await;
}
