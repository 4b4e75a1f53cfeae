//! Alerts delivered to webhooks, against HTTP receivers this test runs on loopback: a workflow
//! run stuck in init (rule action "alert") fires exactly one notification per receiver, in the
//! receiver's format (Slack text, Alertmanager v4), and its resolution one resolved
//! notification; a receiver answering 500 twice then 200 gets the alert on the third try; one
//! answering 400 is tried once, not again, and its failure is an alert of its own, delivered to
//! the receiver that takes that kind and listed by GetHealth. After a daemon restart the outbox
//! sends nothing twice. A reload changes the webhooks: an added one hears of what fires, a
//! removed one's pending deliveries are dropped.
mod common;
mod workflow_support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wf_supervisor::proto::RunStatus;

use common::*;
use workflow_support::*;

/// A webhook receiver: records every POST body (as JSON) and answers with the scripted status
/// codes in order, then 200.
#[derive(Clone)]
struct Receiver {
    port: u16,
    hits: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a receiver");
        let port = listener.local_addr().expect("addr").port();
        let hits: Arc<Mutex<Vec<Value>>> = Arc::default();
        let script = Arc::new(Mutex::new(
            script.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let recorded = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let hits = recorded.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let Some(body) = read_request(&mut s).await else {
                        return;
                    };
                    let code = script.lock().unwrap().pop_front().unwrap_or(200);
                    hits.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Receiver { port, hits }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn hits(&self) -> Vec<Value> {
        self.hits.lock().unwrap().clone()
    }

    async fn wait_hits(&self, n: usize, what: &str) -> Vec<Value> {
        wait_until(TIMEOUT, what, || self.hits.lock().unwrap().len() >= n).await;
        self.hits()
    }
}

/// One HTTP/1.1 request's body (by Content-Length).
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf[end + 4..end + 4 + len].to_vec());
        }
    }
}

fn webhook(name: &str, r: &Receiver, format: &str, kinds: &[&str]) -> String {
    let kinds: Vec<String> = kinds.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "[[alerts.webhooks]]\nname = \"{name}\"\nurl = \"{}\"\nformat = \"{format}\"\nkinds = [{}]\n\n",
        r.url(),
        kinds.join(", ")
    )
}

/// Slack bodies' first lines (the part a phone shows).
fn slack_heads(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| {
            h["text"]
                .as_str()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_run_reaches_every_receiver_once_and_its_resolution_too() {
    let slack = Receiver::start(&[]).await;
    let am = Receiver::start(&[]).await;
    let flaky = Receiver::start(&[500, 500]).await;
    let refusing = Receiver::start(&[400, 400, 400, 400]).await;
    let watcher = Receiver::start(&[]).await;

    let scripts = Scripts::new();
    let success = shq(fixture("success.jsonl").display().to_string());
    let d = scripts.q();
    let program = scripts.agent(
        "agent",
        &format!(
            "head -n 1 {success}\n\
             while [ ! -e {d}/go ]; do sleep 0.05; done\n\
             tail -n +2 {success}\n\
             exit 0"
        ),
    );
    let mut toml = workflow_toml(
        "watched",
        &program,
        "init_timeout = \"1s\"\non_init_timeout = \"alert\"\nidle_timeout = \"off\"",
    );
    toml.push_str("[alerts]\nretry_initial_ms = 100\nretry_max_ms = 200\n\n");
    toml.push_str(&webhook("slack", &slack, "slack", &["stuck_run"]));
    toml.push_str(&webhook("am", &am, "alertmanager", &["stuck_run"]));
    toml.push_str(&webhook("flaky", &flaky, "json", &["stuck_run"]));
    toml.push_str(&webhook("refusing", &refusing, "json", &["stuck_run"]));
    toml.push_str(&webhook(
        "watcher",
        &watcher,
        "json",
        &["webhook_delivery_failed"],
    ));
    let mut site = Site::new(Options {
        extra_toml: toml,
        ..Default::default()
    })
    .expect("a site");
    let api = site.start().await;

    let run = spawn_workflow(&api, "watched", "build it", &[]).await;

    // Firing: one notification each, in each receiver's format.
    let hits = slack
        .wait_hits(1, "the Slack receiver hears of the stuck run")
        .await;
    let heads = slack_heads(&hits);
    assert!(
        heads[0].contains("FIRING stuck_run"),
        "the first line says what fires: {heads:?}"
    );
    assert!(
        hits[0]["text"].as_str().unwrap_or("").contains(&run.run_id),
        "{hits:?}"
    );
    let hits = am
        .wait_hits(1, "the Alertmanager receiver hears of it")
        .await;
    let a = &hits[0];
    assert_eq!(a["version"], "4", "{a}");
    assert_eq!(a["status"], "firing", "{a}");
    assert_eq!(a["alerts"][0]["labels"]["alertname"], "stuck_run", "{a}");
    assert_eq!(
        a["alerts"][0]["labels"]["run_id"],
        run.run_id.as_str(),
        "{a}"
    );
    assert_eq!(a["alerts"][0]["labels"]["workflow"], "watched", "{a}");
    assert_eq!(a["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z", "{a}");
    assert!(
        a["alerts"][0]["startsAt"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{a}"
    );
    assert!(a["groupKey"].as_str().is_some_and(|k| !k.is_empty()), "{a}");
    assert!(a["alerts"][0]["fingerprint"].as_str().is_some(), "{a}");

    // 500, 500, then 200: delivered on the third attempt.
    let hits = flaky
        .wait_hits(3, "the flaky receiver gets a third attempt")
        .await;
    assert!(
        hits.iter()
            .all(|h| h["kind"] == "stuck_run" && h["status"] == "firing"),
        "{hits:?}"
    );

    // 400: tried once; the failure is an alert of its own, listed and delivered.
    refusing
        .wait_hits(1, "the refusing receiver is tried")
        .await;
    let failed = watcher
        .wait_hits(1, "the delivery failure reaches the watcher")
        .await;
    assert_eq!(failed[0]["kind"], "webhook_delivery_failed", "{failed:?}");
    assert_eq!(failed[0]["labels"]["webhook"], "refusing", "{failed:?}");
    assert!(
        failed[0]["summary"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 400"),
        "{failed:?}"
    );
    let health = api.health().await;
    assert!(
        health
            .alerts
            .iter()
            .any(|a| a.kind == "webhook_delivery_failed" && a.dedup_key == "webhook:refusing"),
        "{:?}",
        health.alerts
    );

    // The run comes to life and ends: one resolved notification each.
    scripts.touch("go");
    let done = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(done.status(), RunStatus::Succeeded, "{done:?}");
    let hits = slack.wait_hits(2, "Slack hears of the resolution").await;
    assert!(
        slack_heads(&hits)[1].contains("RESOLVED stuck_run"),
        "{hits:?}"
    );
    let hits = am
        .wait_hits(2, "Alertmanager hears of the resolution")
        .await;
    assert_eq!(hits[1]["status"], "resolved", "{}", hits[1]);
    assert_ne!(hits[1]["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        hits[1]["alerts"][0]["fingerprint"], hits[0]["alerts"][0]["fingerprint"],
        "the resolution names the same alert"
    );
    let hits = flaky
        .wait_hits(4, "the flaky receiver hears of the resolution")
        .await;
    assert_eq!(hits[3]["status"], "resolved");
    let hits = refusing
        .wait_hits(2, "the refusing receiver is tried with the resolution")
        .await;
    assert_eq!(hits[1]["status"], "resolved");

    // The outbox survives a restart and owes nothing: no receiver hears anything again. (An
    // absence can only be watched for a while: a second after the new daemon serves.)
    site.stop().await;
    let _api = site.start().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.hits().len(), 2, "{:?}", slack.hits());
    assert_eq!(am.hits().len(), 2, "{:?}", am.hits());
    assert_eq!(flaky.hits().len(), 4, "{:?}", flaky.hits());
    assert_eq!(
        refusing.hits().len(),
        2,
        "not retried: {:?}",
        refusing.hits()
    );
    let firing_to_refusing = refusing
        .hits()
        .iter()
        .filter(|h| h["status"] == "firing")
        .count();
    assert_eq!(firing_to_refusing, 1, "a 400 is not retried");
    assert_eq!(watcher.hits().len(), 1, "{:?}", watcher.hits());
    site.assert_run_gone(&run.run_id, &[]).await;
}

/// A reload (SIGHUP) hands the delivery tasks the new webhooks: a receiver added by the reload
/// hears of the alert already firing; one removed stops hearing, and what it was still owed
/// (a delivery waiting for its retry) is dropped, with a log line saying how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_webhooks_and_drops_what_a_removed_one_was_owed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: the agents_run_as_root alert needs a daemon running as root");
        return;
    }
    // The old receiver fails every attempt; its retry waits a minute, so it is owed one.
    let old = Receiver::start(&[500; 10]).await;
    let new = Receiver::start(&[]).await;
    let settings = "[alerts]\nretry_initial_ms = 60000\nretry_max_ms = 60000\n\n";
    let before = webhook("old", &old, "json", &["agents_run_as_root"]);
    let mut site = Site::new(Options {
        containment: Containment::ProcessGroup,
        // Agents running as root: an alert that fires from the start.
        runs_toml: "allow_root_agents = false\n".into(),
        extra_toml: format!("{settings}{before}"),
        ..Default::default()
    })
    .expect("a site");
    let _api = site.start().await;
    let hits = old.wait_hits(1, "the old receiver is tried").await;
    assert_eq!(hits[0]["kind"], "agents_run_as_root", "{hits:?}");

    let text = std::fs::read_to_string(&site.config).expect("config");
    let after = webhook("new", &new, "json", &["agents_run_as_root"]);
    std::fs::write(&site.config, text.replace(&before, &after)).expect("config");
    site.signal(nix::sys::signal::Signal::SIGHUP);

    let hits = new
        .wait_hits(
            1,
            "the receiver added by the reload hears of the firing alert",
        )
        .await;
    assert_eq!(hits[0]["kind"], "agents_run_as_root", "{hits:?}");
    assert_eq!(hits[0]["status"], "firing", "{hits:?}");
    wait_until(
        TIMEOUT,
        "the reload logs what the removed webhook was owed",
        || {
            site.current_log().lines().any(|l| {
                l.contains("its pending deliveries are dropped")
                    && l.contains("webhook=\"old\"")
                    && l.contains("dropped=1")
            })
        },
    )
    .await;
    // The old receiver hears nothing more (its retry was due in a minute; watched for a
    // second), and one notification reached the new one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(old.hits().len(), 1, "{:?}", old.hits());
    assert_eq!(new.hits().len(), 1, "{:?}", new.hits());
    site.stop().await;
}
