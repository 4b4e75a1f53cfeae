//! Access control on TCP: never without authentication, never in cleartext off loopback.
//!
//! - Start is refused for plaintext on a non-loopback address and for plaintext on loopback
//!   without tokens, with the setting to change named.
//! - The exploit of the issue (an unprivileged user runs `wfctl --addr http://127.0.0.1:PORT
//!   spawn -- sh -c id`) fails: no token is UNAUTHENTICATED, a viewer's token is
//!   PERMISSION_DENIED for an argv; a wrong token is UNAUTHENTICATED; the audit names the token
//!   and the peer address, never the secret. Tokens come from `wfctl token create`, and a reload
//!   (SIGHUP) picks up a rotated tokens file.
//! - TLS with certificates made here (rcgen): a client that trusts another CA is refused; a
//!   client certificate maps to a role through `cert:NAME`, one from another CA is refused; a
//!   reload picks up a rotated server certificate.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::codegen::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use wf_supervisor::proto::supervisor_client::SupervisorClient;
use wf_supervisor::proto::*;

const WFCTL: &str = env!("CARGO_BIN_EXE_wfctl");

/// Sends `authorization: Bearer TOKEN` when it has one.
#[derive(Clone)]
struct Token(Option<String>);

impl Interceptor for Token {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        Ok(req)
    }
}

type TcpClient = SupervisorClient<InterceptedService<Channel, Token>>;

async fn plain_client(port: u16, token: Option<&str>) -> TcpClient {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("url")
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect");
    SupervisorClient::with_interceptor(channel, Token(token.map(str::to_string)))
}

async fn tls_client(
    port: u16,
    ca_pem: &str,
    identity: Option<&(String, String)>,
    token: Option<&str>,
) -> Result<TcpClient, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("url")
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(SupervisorClient::with_interceptor(
        channel,
        Token(token.map(str::to_string)),
    ))
}

fn options(daemon: &str, extra: &str) -> Options {
    Options {
        containment: Containment::ProcessGroup,
        daemon_toml: daemon.to_string(),
        extra_toml: format!("[workflows.w]\nprogram = \"/bin/true\"\n\n{extra}"),
        ..Options::default()
    }
}

#[test]
fn plaintext_tcp_is_refused_at_start_off_loopback_and_without_tokens() {
    let port = free_port();
    let site = Site::new(options(&format!("listen = \"127.0.0.1:{port}\"\n"), "")).expect("site");
    let err = start_refused(&site);
    assert!(
        err.contains(&format!(
            "refusing plaintext TCP on 127.0.0.1:{port} without authentication"
        )) && err.contains("[access] tokens_file"),
        "{err}"
    );

    let tokens = site.dir.path().join("tokens");
    std::fs::write(&tokens, "").expect("tokens");
    let site2 = Site::new(options(
        &format!("listen = \"0.0.0.0:{port}\"\n"),
        &format!(
            "[access]\ntokens_file = {}\n",
            toml_str(tokens.display().to_string())
        ),
    ))
    .expect("site");
    let err = start_refused(&site2);
    assert!(
        err.contains(&format!("refusing plaintext TCP on 0.0.0.0:{port}"))
            && err.contains("not a loopback address")
            && err.contains("[tls] cert and key"),
        "{err}"
    );
}

/// `wfctl token create NAME --role ROLE`: (secret, tokens-file line).
fn token_create(name: &str, role: &str) -> (String, String) {
    let out = Command::new(WFCTL)
        .args(["token", "create", name, "--role", role])
        .output()
        .expect("wfctl token create");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    let secret = lines.next().expect("secret line").to_string();
    let line = lines.next().expect("tokens-file line").to_string();
    assert!(line.starts_with(&format!("{name} {role} ")), "{line}");
    (secret, line)
}

/// Runs wfctl as `user` (no supplementary groups) with `args` and extra env; (exit code,
/// stdout, stderr).
fn wfctl_as(user: &TestUser, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(WFCTL);
    cmd.args(args)
        .env_remove("WF_SUPERVISOR_TOKEN")
        .env_remove("WF_SUPERVISOR_SOCKET")
        .uid(user.uid)
        .gid(user.gid)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run wfctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn write_tokens(path: &Path, lines: &[&str]) {
    std::fs::write(path, format!("# name role sha256\n{}\n", lines.join("\n"))).expect("tokens");
    // The secrets' hashes are no secret, but the file need not be world-readable.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exploit_fails_tokens_authenticate_their_roles_apply_and_rotate_on_reload() {
    let Some(mut users) = Users::new() else {
        return;
    };
    let mallory = users.user("ma", &[]);
    let port = free_port();
    let (viewer, viewer_line) = token_create("ci-viewer", "viewer");
    let (operator, operator_line) = token_create("ci-operator", "operator");
    let (admin, admin_line) = token_create("ci-admin", "admin");
    let mut site =
        Site::new(options(&format!("listen = \"127.0.0.1:{port}\"\n"), "")).expect("site");
    let tokens = site.dir.path().join("tokens");
    write_tokens(&tokens, &[&viewer_line, &operator_line, &admin_line]);
    site.add_config(&format!(
        "[access]\ntokens_file = {}\n",
        toml_str(tokens.display().to_string())
    ));
    // wfctl must be able to read a token file of mallory's own.
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod");
    let root = site.start().await;
    let addr = format!("http://127.0.0.1:{port}");
    let exploit = ["--addr", addr.as_str(), "spawn", "--", "sh", "-c", "id"];

    // The exploit: no credentials at all.
    let (code, _, err) = wfctl_as(&mallory, &exploit, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unauthenticated: no credentials"), "{err}");
    // A viewer's token does not make an argv spawn.
    let (code, _, err) = wfctl_as(&mallory, &exploit, &[("WF_SUPERVISOR_TOKEN", &viewer)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("permission denied: token ci-viewer needs role admin for Spawn of an argv"),
        "{err}"
    );
    // Nor an operator's (argv is admin's by default).
    let (code, _, err) = wfctl_as(&mallory, &exploit, &[("WF_SUPERVISOR_TOKEN", &operator)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("token ci-operator needs role admin"), "{err}");
    // A wrong token, from a file.
    let bad = site.dir.path().join("bad-token");
    std::fs::write(&bad, "wf_0123456789\n").expect("write");
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let bad_s = bad.display().to_string();
    let mut args = vec!["--token-file", bad_s.as_str()];
    args.extend_from_slice(&exploit);
    let (code, _, err) = wfctl_as(&mallory, &args, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unauthenticated: unknown token"), "{err}");
    assert!(
        root.list().await.is_empty(),
        "nothing ran: {:?}",
        root.list().await
    );

    // The operator's token spawns a workflow; the admin's an argv, owned by the token.
    let (code, out, err) = wfctl_as(
        &mallory,
        &["--addr", &addr, "spawn", "w", "hello"],
        &[("WF_SUPERVISOR_TOKEN", &operator)],
    );
    assert_eq!(code, 0, "{err}");
    let wf_run = root.get(out.trim()).await;
    let owner = wf_run.owner.expect("owner");
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid),
        ("token", "ci-operator", None)
    );
    let mut adm = plain_client(port, Some(&admin)).await;
    let run = adm
        .spawn(SpawnRequest {
            argv: vec!["/bin/true".into()],
            ..Default::default()
        })
        .await
        .expect("admin spawns an argv")
        .into_inner()
        .run
        .expect("run");
    root.wait_terminal(&run.run_id, TIMEOUT).await;

    // The audit names tokens and peers, never a secret.
    let audit = root
        .audit_req(ListAuditRequest {
            limit: 1000,
            ..Default::default()
        })
        .await;
    let refused = audit
        .iter()
        .find(|r| r.identity == "token ci-viewer" && r.outcome == "refused")
        .expect("the viewer's refusal is audited");
    assert!(refused.peer.starts_with("127.0.0.1:"), "{refused:?}");
    assert_eq!(refused.role, "viewer");
    assert!(
        audit.iter().any(|r| r.action == "spawn"
            && r.outcome == "refused"
            && r.message.contains("unknown token")),
        "the unknown token's refusal is audited: {audit:#?}"
    );
    let all = format!("{audit:?}");
    for secret in [&viewer, &operator, &admin] {
        assert!(
            !all.contains(secret.as_str()),
            "a secret reached the audit trail"
        );
    }

    // Rotation: a new admin token replaces the old one on reload.
    let (admin2, admin2_line) = token_create("ci-admin-2", "admin");
    write_tokens(&tokens, &[&viewer_line, &admin2_line]);
    site.signal(Signal::SIGHUP);
    let mut old = plain_client(port, Some(&admin)).await;
    wait_for(
        TIMEOUT,
        "the old token to be refused after the reload",
        || {
            let mut old = old.clone();
            async move {
                match old.get_health(GetHealthRequest {}).await {
                    Err(st) if st.code() == Code::Unauthenticated => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
    let st = old
        .get_health(GetHealthRequest {})
        .await
        .expect_err("rotated out");
    assert_eq!(st.message(), "unknown token");
    let mut new = plain_client(port, Some(&admin2)).await;
    new.get_health(GetHealthRequest {})
        .await
        .expect("the new token works");
    let (code, _, err) = wfctl_as(
        &mallory,
        &["--addr", &addr, "ps"],
        &[("WF_SUPERVISOR_TOKEN", &viewer)],
    );
    assert_eq!(code, 0, "the viewer token still lists: {err}");
}

/// A CA made here.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (certificate PEM, key PEM) for `cn` with `sans`, for a server or a client.
    fn leaf(&self, cn: &str, sans: &[&str], server: bool) -> (String, String) {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_the_wrong_ca_maps_client_certificates_to_roles_and_rotates_on_reload() {
    let ca = Ca::new("wf test CA");
    let other = Ca::new("another CA");
    let server = ca.leaf("wf-supervisor", &["localhost", "127.0.0.1"], true);
    let dash = ca.leaf("dash", &[], false);
    let ops = ca.leaf("ops-bot", &["ops-bot.example"], false);
    let evil = other.leaf("dash", &[], false);
    let (operator, operator_line) = token_create("tls-operator", "operator");

    let port = free_port();
    let mut site =
        Site::new(options(&format!("listen = \"127.0.0.1:{port}\"\n"), "")).expect("site");
    let d = site.dir.path().to_path_buf();
    let file = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let (cert, key) = (file("server.pem", &server.0), file("server.key", &server.1));
    let client_ca = file("ca.pem", &ca.pem());
    let tokens = d.join("tokens");
    write_tokens(&tokens, &[&operator_line]);
    site.add_config(&format!(
        "[access]\ntokens_file = {}\nviewer = [\"cert:dash\"]\noperator = [\"cert:ops-bot.example\"]\n\n\
         [tls]\ncert = {}\nkey = {}\nclient_ca = {}\n",
        toml_str(tokens.display().to_string()),
        toml_str(&cert),
        toml_str(&key),
        toml_str(&client_ca)
    ));
    let root = site.start().await;

    // A token over TLS.
    let mut c = tls_client(port, &ca.pem(), None, Some(&operator))
        .await
        .expect("TLS with the right CA");
    c.list(ListRequest::default())
        .await
        .expect("the operator lists");
    let run = c
        .spawn(SpawnRequest {
            workflow: "w".into(),
            prompt: "p".into(),
            ..Default::default()
        })
        .await
        .expect("the operator spawns a workflow")
        .into_inner()
        .run
        .expect("run");
    root.wait_terminal(&run.run_id, TIMEOUT).await;
    // TLS alone is no credential.
    let mut anon = tls_client(port, &ca.pem(), None, None).await.expect("TLS");
    assert_code(
        anon.list(ListRequest::default()).await,
        Code::Unauthenticated,
        "no token, no cert",
    );

    // A client that trusts another CA does not get through the handshake.
    assert!(
        tls_client(port, &other.pem(), None, Some(&operator))
            .await
            .is_err(),
        "a client with the wrong CA must be refused"
    );

    // mTLS: the certificate's CN or SAN maps to a role.
    let mut v = tls_client(port, &ca.pem(), Some(&dash), None)
        .await
        .expect("mTLS");
    v.list(ListRequest::default())
        .await
        .expect("cert:dash is a viewer");
    let st = v
        .kill(KillRequest {
            run_id: "run_000000000000".into(),
            ..Default::default()
        })
        .await
        .expect_err("a viewer may not kill");
    assert_eq!(st.code(), Code::PermissionDenied);
    assert!(
        st.message()
            .starts_with("cert dash needs role operator for Kill"),
        "{}",
        st.message()
    );
    let mut o = tls_client(port, &ca.pem(), Some(&ops), None)
        .await
        .expect("mTLS");
    assert_code(
        o.kill(KillRequest {
            run_id: "run_000000000000".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "cert:ops-bot.example (a SAN) is an operator",
    );
    // A certificate from another CA is refused, whatever its name.
    // (TLS 1.3 may finish the client's side of the handshake before the server checks the
    // certificate: then the first call fails on the closed connection, not with a status of
    // the daemon's.)
    let refused = match tls_client(port, &ca.pem(), Some(&evil), None).await {
        Err(_) => true,
        Ok(mut e) => match e.list(ListRequest::default()).await {
            Ok(_) => false,
            Err(st) => !matches!(st.code(), Code::Unauthenticated | Code::PermissionDenied),
        },
    };
    assert!(
        refused,
        "a client certificate from another CA must be refused"
    );
    let audit = root.audit("").await;
    assert!(
        audit
            .iter()
            .any(|r| r.identity == "cert dash" && r.outcome == "refused" && r.action == "kill"),
        "{audit:#?}"
    );

    // wfctl over TLS: --ca, and --cert/--key for mTLS.
    let dash_cert = file("dash.pem", &dash.0);
    let dash_key = file("dash.key", &dash.1);
    let https = format!("https://127.0.0.1:{port}");
    let out = Command::new(WFCTL)
        .args([
            "--addr", &https, "--ca", &client_ca, "--cert", &dash_cert, "--key", &dash_key, "ps",
        ])
        .env_remove("WF_SUPERVISOR_TOKEN")
        .output()
        .expect("wfctl");
    assert!(
        out.status.success(),
        "wfctl ps with a viewer's certificate: {out:?}"
    );
    let out = Command::new(WFCTL)
        .args(["--addr", &https, "ps"])
        .env_remove("WF_SUPERVISOR_TOKEN")
        .output()
        .expect("wfctl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("give --ca FILE"),
        "{err}"
    );

    // Rotation: the server's new certificate (from the other CA) is served after a reload.
    let rotated = other.leaf("wf-supervisor", &["localhost", "127.0.0.1"], true);
    std::fs::write(&cert, &rotated.0).expect("write");
    std::fs::write(&key, &rotated.1).expect("write");
    assert!(
        tls_client(port, &other.pem(), None, Some(&operator))
            .await
            .is_err(),
        "the old certificate until the reload"
    );
    site.signal(Signal::SIGHUP);
    let mut c = wait_for(TIMEOUT, "the rotated certificate to be served", || {
        let pem = other.pem();
        let token = operator.clone();
        async move { tls_client(port, &pem, None, Some(&token)).await.ok() }
    })
    .await;
    c.list(ListRequest::default())
        .await
        .expect("a call over the rotated certificate");
}
