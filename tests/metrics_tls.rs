//! `[metrics] listen` off loopback follows the API's access rules: without `[tls]` the daemon
//! refuses to start, naming the setting; with it, /metrics is served over HTTPS to viewers only
//! (401 without credentials or with an unknown token, 200 with a viewer token).
mod common;

use std::process::Command;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

const WFCTL: &str = env!("CARGO_BIN_EXE_wfctl");

/// (CA PEM, server certificate PEM, server key PEM) for "localhost".
fn certificates() -> (String, String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "metrics test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA");
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, &ca).expect("sign");
    (ca.pem(), cert.pem(), key.serialize_pem())
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
    (secret, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_needs_tls_and_a_viewer() {
    let port = free_port();
    let listen = format!("[metrics]\nlisten = \"0.0.0.0:{port}\"\n\n");

    let bare = Site::new(Options {
        extra_toml: listen.clone(),
        ..Default::default()
    })
    .expect("a site");
    let err = start_refused(&bare);
    assert!(
        err.contains("metrics.listen") && err.contains("[tls]"),
        "the refusal names the setting: {err}"
    );
    drop(bare);

    let (ca, cert, key) = certificates();
    let (secret, line) = token_create("prometheus", "viewer");
    let site = Site::new(Options {
        extra_toml: listen,
        ..Default::default()
    })
    .expect("a site");
    let dir = site.dir.path();
    std::fs::write(dir.join("server.pem"), &cert).expect("cert");
    std::fs::write(dir.join("server.key"), &key).expect("key");
    std::fs::write(dir.join("tokens"), format!("{line}\n")).expect("tokens");
    site.add_config(&format!(
        "[tls]\ncert = {}\nkey = {}\n\n[access]\ntokens_file = {}\n",
        toml_str(dir.join("server.pem").display().to_string()),
        toml_str(dir.join("server.key").display().to_string()),
        toml_str(dir.join("tokens").display().to_string()),
    ));
    let daemon = Daemon::start_on(site).await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA"))
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client");
    let url = format!("https://localhost:{port}/metrics");
    // Plain HTTP is not served there.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true),
        "plaintext must not be served off loopback"
    );
    let none = client.get(&url).send().await.expect("a TLS answer");
    assert_eq!(none.status().as_u16(), 401);
    let wrong = client
        .get(&url)
        .bearer_auth("wf_not_a_token")
        .send()
        .await
        .expect("a TLS answer");
    assert_eq!(wrong.status().as_u16(), 401);
    let ok = client
        .get(&url)
        .bearer_auth(&secret)
        .send()
        .await
        .expect("a TLS answer");
    assert_eq!(ok.status().as_u16(), 200);
    let body = ok.text().await.expect("body");
    assert!(body.contains("wf_spawn_latency_seconds_count 0"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    drop(daemon);
}
