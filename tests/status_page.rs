//! The status page end to end. In a real browser (Debian's Chromium, headless, driven through
//! WebDriver by chromedriver): the page of a real daemon lists a run spawned through the API;
//! when that run, whose processes all ignore TERM, is killed through the API, the page shows it
//! KILLED within two seconds (the figure) without a reload, /proc shows nothing of the
//! run left, and a screenshot is written to `target/status-page.png` (and a phone-sized one to
//! `target/status-page-phone.png`). A label holding `<script>` stays text in the browser.
//! Without a browser the test says so and skips, unless `WF_TEST_BROWSER_REQUIRED=1` (CI, after
//! installing Chromium) makes that a failure.
//!
//! Off loopback (HTTPS): no token and an unknown token are refused (401), the refusals are one
//! audit record, without the token; a good token given once as `?token=` becomes a cookie that
//! the page and its event stream accept. And a run's event stream sends its output's tail, then
//! new output as it is written, and ends when the daemon stops.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wf_supervisor::proto::{ListAuditRequest, RunStatus, SpawnRequest};

const WFCTL: &str = env!("CARGO_BIN_EXE_wfctl");
/// Debian's Chromium and chromedriver; `WF_TEST_CHROMIUM` and `WF_TEST_CHROMEDRIVER` name others.
fn chromium() -> String {
    std::env::var("WF_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("WF_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

/// The bound for the page to show a kill.
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// The browser

/// Whether the browser test can run here; panics when it must and cannot.
fn browser_available() -> bool {
    let missing: Vec<String> = [chromium(), chromedriver()]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} missing (apt-get install chromium chromium-driver; .ci/run does)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("WF_TEST_BROWSER_REQUIRED").as_deref() != Ok("1"),
        "WF_TEST_BROWSER_REQUIRED=1 but {why}"
    );
    eprintln!("SKIPPED: the status page browser test needs Chromium: {why}");
    false
}

/// chromedriver in a process group of its own, the Chromium it starts, and a WebDriver session.
/// Dropping it ends every process of the group and every process that uses its profile
/// directory, even when the test failed half-way.
struct Browser {
    driver: Child,
    profile: tempfile::TempDir,
    client: Option<fantoccini::Client>,
}

/// Processes (pid, command line) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            let live = stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'));
            (live && line.contains(needle)).then_some((pid, line))
        })
        .collect()
}

impl Browser {
    async fn start() -> Browser {
        // Chromium's helpers that outlive their parent come to this process, which reaps them
        // (see `reap_orphans`), instead of staying as zombies of an init that may not.
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        let profile = tempfile::Builder::new()
            .prefix("wf-status-page-chromium-")
            .tempdir()
            .expect("a profile directory");
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let driver = {
            use std::os::unix::process::CommandExt;
            // HOME and the XDG directories in the test's directory: Chromium's profile, caches
            // and crash handler (which leaves the process group) stay there, and every process
            // of the browser names it on its command line.
            let home = profile.path();
            Command::new(chromedriver())
                .env("HOME", home)
                .env("XDG_CONFIG_HOME", home.join("config"))
                .env("XDG_CACHE_HOME", home.join("cache"))
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("starting chromedriver")
        };
        let mut browser = Browser {
            driver,
            profile,
            client: None,
        };
        let url = format!("http://127.0.0.1:{port}");
        wait_for(TIMEOUT, "chromedriver answers", || {
            let status = format!("{url}/status");
            async move {
                reqwest::get(&status)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        let data_dir = browser.profile.path().join("profile");
        let args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,720",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", data_dir.display())])
        .collect();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": chromium(), "args": args}),
        );
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "a WebDriver session: {e}; chromedriver's log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &fantoccini::Client {
        self.client.as_ref().expect("a session")
    }

    /// Runs `script` in the page and returns its value.
    async fn js(&self, script: &str) -> serde_json::Value {
        self.client()
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script:?} in the page: {e}"))
    }

    /// Waits until `script` returns `true` in the page, at most `timeout`.
    async fn wait_js(&self, timeout: Duration, what: &str, script: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.js(script).await == serde_json::Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let body = self.js("return document.body.innerText").await;
                panic!("timed out after {timeout:?} waiting until {what}; the page:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&self, path: &Path) {
        let png = self.client().screenshot().await.expect("a screenshot");
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("target dir");
        std::fs::write(path, png).expect("writing the screenshot");
        println!("screenshot: {}", path.display());
    }

    /// Ends the session (Chromium quits), then everything else, and proves through /proc that
    /// no process of the browser is left.
    async fn finish(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
        self.kill_all();
        let needle = self.profile.path().display().to_string();
        let group = self.driver.id() as i32;
        wait_until(TIMEOUT, "no process of the browser is left", || {
            let orphans = reap_orphans();
            processes_with(&needle).is_empty() && group_members(group).is_empty() && orphans == 0
        })
        .await;
    }

    /// SIGKILL to chromedriver's group and to every process using the profile; chromedriver
    /// reaped.
    fn kill_all(&mut self) {
        let group = self.driver.id() as i32;
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group),
            nix::sys::signal::Signal::SIGKILL,
        );
        for (pid, _) in processes_with(&self.profile.path().display().to_string()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Reaps the browser's processes that were handed to this process (a subreaper) and have
/// ended; returns how many of them still run.
fn reap_orphans() -> usize {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mine: Vec<(i32, char)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| stat(pid).map(|s| (pid, s)))
        .filter(|(pid, s)| s.ppid == me && comm(*pid).starts_with("chrom"))
        .map(|(pid, s)| (pid, s.state))
        .collect();
    let mut running = 0;
    for (pid, state) in mine {
        if matches!(state, 'Z' | 'X') {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        } else {
            running += 1;
        }
    }
    running
}

/// Live processes of process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| s.pgid == pgid && !matches!(s.state, 'Z' | 'X')))
        .collect()
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Waits until the daemon's HTTP listener accepts connections (it is bound after the API's
/// socket serves).
async fn wait_listening(port: u16) {
    wait_for(
        TIMEOUT,
        "the HTTP listener accepts connections",
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        },
    )
    .await;
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

/// A JavaScript expression: the status of run `id` in the table, or "".
fn status_of(id: &str) -> String {
    format!(
        "(function () {{ var r = document.querySelector('tr[data-run=\"{id}\"]'); \
         return r ? r.getAttribute('data-status') : ''; }})()"
    )
}

/// A script: whether the table shows run `id` as `status` and the page follows its stream.
fn shown_live(id: &str, status: &str) -> String {
    format!(
        "return {} === '{status}' && document.getElementById('conn').textContent === 'live';",
        status_of(id)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_killed_run_killed_without_a_reload() {
    if !browser_available() {
        return;
    }
    let port = free_port();
    let site = Site::new(Options {
        extra_toml: format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n"),
        ..Default::default()
    })
    .expect("a site");
    // A workflow whose "agent" replays a Claude transcript and then waits: the table shows
    // its phase, turns and cost.
    let agent = site.dir.path().join("agent.sh");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\nexec {} --replay {} --hang\n",
            FAKE_AGENT,
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/claude-stream-json/success.jsonl")
                .display()
        ),
    )
    .expect("the agent script");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    site.add_config(&format!(
        "[workflows.builder]\nprogram = {}\n",
        toml_str(agent.display().to_string())
    ));
    // The screenshots show runs as an operator's look (a program found on PATH), not by the
    // path of the build that runs the test.
    let bin = site.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("a bin directory");
    std::os::unix::fs::symlink(FAKE_AGENT, bin.join("wf-fake-agent")).expect("the agent link");
    let path_env = format!("{}:/usr/bin:/bin", bin.display());
    let shown = |args: &[&str]| SpawnRequest {
        argv: std::iter::once("wf-fake-agent")
            .chain(args.iter().copied())
            .map(str::to_string)
            .collect(),
        env: [("PATH".to_string(), path_env.clone())].into(),
        ..Default::default()
    };
    let daemon = Daemon::start_on(site).await;
    let api = daemon.api();
    wait_listening(port).await;
    let done = api.spawn_req(shown(&["--exit", "0"])).await;
    let failed = api.spawn_req(shown(&["--exit", "3"])).await;
    let agent_run = api
        .spawn_req(SpawnRequest {
            workflow: "builder".into(),
            prompt: "fix the flaky test in tests/kill.rs".into(),
            ..Default::default()
        })
        .await;
    let decoy = api.spawn_req(shown(&["--hang"])).await;
    let hostile = "<script>window.injected=1</script><img src=x onerror=\"window.injected=2\">";
    let run = api
        .spawn_req(SpawnRequest {
            grace_ms: 500,
            labels: [("note".to_string(), hostile.to_string())].into(),
            ..shown(&["--ignore-term", "--children", "2", "--hang"])
        })
        .await;
    let run = api.wait_running(&run.run_id).await;
    let procs = api.fake_agent_procs(&run, true, false).await;
    assert_eq!(procs.len(), 3);
    let id = run.run_id.clone();

    api.wait_status(&done.run_id, RunStatus::Succeeded).await;
    api.wait_status(&failed.run_id, RunStatus::Failed).await;
    wait_for(TIMEOUT, "the agent's turns are counted", || {
        let api = api.clone();
        let id = agent_run.run_id.clone();
        async move {
            let r = api.get(&id).await;
            r.agent.filter(|a| a.turns > 0 && a.cost_usd.is_some())
        }
    })
    .await;

    let browser = Browser::start().await;
    let page = format!("http://127.0.0.1:{port}/");
    browser.client().goto(&page).await.expect("loading /");
    browser
        .wait_js(
            TIMEOUT,
            "the page lists the run RUNNING and follows the event stream",
            &shown_live(&id, "RUNNING"),
        )
        .await;
    assert_eq!(
        browser
            .js(&format!("return {};", status_of(&decoy.run_id)))
            .await,
        serde_json::json!("RUNNING")
    );

    // The run's own page shows the label as text; nothing of it ran.
    browser
        .client()
        .goto(&format!("{page}runs/{id}"))
        .await
        .expect("loading the run's page");
    let text = browser
        .js("return document.getElementById('run').innerText")
        .await;
    let text = text.as_str().unwrap_or_default().to_string();
    assert!(text.contains(&format!("note={hostile}")), "{text}");
    assert_eq!(
        browser.js("return typeof window.injected").await,
        serde_json::json!("undefined"),
        "a label's markup ran in the page"
    );

    // Back to the board; mark the page, so a reload would show.
    browser.client().goto(&page).await.expect("loading /");
    browser
        .wait_js(
            TIMEOUT,
            "the board follows the event stream again",
            &shown_live(&id, "RUNNING"),
        )
        .await;
    browser
        .js("window.wfMark = 'no reload'; return true;")
        .await;

    let report = api.kill(&id).await;
    let killed_at = Instant::now();
    assert_eq!(
        report.run.as_ref().map(|r| r.status()),
        Some(RunStatus::Killed)
    );
    browser
        .wait_js(
            SHOWN_WITHIN,
            "the page shows the run KILLED",
            &format!("return {} === 'KILLED';", status_of(&id)),
        )
        .await;
    println!(
        "the page showed KILLED {:?} after the kill was answered",
        killed_at.elapsed()
    );
    assert_eq!(
        browser.js("return window.wfMark || ''").await,
        serde_json::json!("no reload"),
        "the page was reloaded"
    );
    assert_eq!(
        browser
            .js(&format!("return {};", status_of(&decoy.run_id)))
            .await,
        serde_json::json!("RUNNING")
    );

    // Nothing of the run is left, and the kill is on record.
    daemon.assert_run_gone(&id, &procs).await;
    api.assert_audited(&id, "kill", "ok").await;

    browser
        .screenshot(&target_dir().join("status-page.png"))
        .await;
    browser
        .client()
        .set_window_size(390, 844)
        .await
        .expect("a phone-sized window");
    browser
        .wait_js(
            TIMEOUT,
            "the narrow table hides the minor columns",
            "var th = document.querySelector('th.p8'); return !!th && getComputedStyle(th).display === 'none';",
        )
        .await;
    browser
        .screenshot(&target_dir().join("status-page-phone.png"))
        .await;

    // The run's page has the kill report.
    browser
        .client()
        .set_window_size(1280, 1000)
        .await
        .expect("a desktop-sized window");
    browser
        .client()
        .goto(&format!("{page}runs/{id}"))
        .await
        .expect("loading the run's page");
    browser
        .wait_js(
            TIMEOUT,
            "the run's page shows the kill report",
            "var r = document.getElementById('run'); return !!r && r.innerText.indexOf('kill report') >= 0 && document.getElementById('status').textContent === 'KILLED';",
        )
        .await;
    browser
        .screenshot(&target_dir().join("status-page-run.png"))
        .await;
    browser.finish().await;
    api.kill(&decoy.run_id).await;
    api.kill(&agent_run.run_id).await;
}

// ---------------------------------------------------------------------------------------------
// Off loopback

/// A self-signed certificate for "localhost": (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
    (c.cert.pem(), c.signing_key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_page_takes_a_token_once_and_audits_refusals() {
    let port = free_port();
    let site = Site::new(Options {
        extra_toml: format!("[metrics]\nlisten = \"0.0.0.0:{port}\"\n\n"),
        ..Default::default()
    })
    .expect("a site");
    let dir = site.dir.path().to_path_buf();
    let out = Command::new(WFCTL)
        .args(["token", "create", "wallscreen", "--role", "viewer"])
        .output()
        .expect("wfctl token create");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (secret, line) = text
        .split_once('\n')
        .expect("a secret and a tokens-file line");
    let (secret, line) = (secret.trim().to_string(), line.trim().to_string());
    let (cert, key) = self_signed();
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
    let api = daemon.api();
    wait_listening(port).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).expect("cert"))
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = format!("https://localhost:{port}");

    // Refused: no credentials, an unknown token in the address, an unknown token as a cookie.
    let none = client
        .get(format!("{base}/"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(none.status().as_u16(), 401);
    let bad = client
        .get(format!("{base}/?token=wf_not_a_token"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("an answer");
    assert_eq!(bad.status().as_u16(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    let body = bad.text().await.expect("body");
    assert!(
        body.contains("401 Unauthorized") && body.contains("unknown token"),
        "{body}"
    );
    let stale = client
        .get(format!("{base}/events"))
        .header("cookie", "wf_token=wf_not_a_token")
        .send()
        .await
        .expect("an answer");
    assert_eq!(stale.status().as_u16(), 401);
    let cleared = stale
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        cleared.starts_with("wf_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // A good token in the address: a redirect without it, and the cookie.
    let once = client
        .get(format!("{base}/?token={secret}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(once.status().as_u16(), 303);
    let location = once.headers()["location"].to_str().expect("text");
    assert_eq!(location, "/");
    let cookie = once.headers()["set-cookie"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(
        cookie.starts_with(&format!("wf_token={secret};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    let with_cookie = format!("wf_token={secret}");
    let page = client
        .get(format!("{base}/"))
        .header("cookie", &with_cookie)
        .send()
        .await
        .expect("an answer");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.expect("body");
    assert!(html.contains("running <b>0</b>"), "{html}");
    let mut events = client
        .get(format!("{base}/events"))
        .header("cookie", &with_cookie)
        .send()
        .await
        .expect("an answer");
    assert_eq!(events.status().as_u16(), 200);
    let first = events.chunk().await.expect("a chunk").expect("an event");
    assert!(
        String::from_utf8_lossy(&first).starts_with("event: board\n"),
        "{first:?}"
    );
    drop(events);
    // Malformed and unknown run ids.
    for (path, code) in [
        ("/runs/run_XYZ", 400),
        ("/runs/run_000000000000", 404),
        ("/nowhere", 404),
    ] {
        let r = client
            .get(format!("{base}{path}"))
            .header("cookie", &with_cookie)
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status().as_u16(), code, "{path}");
    }

    // The three refusals from one address are one audit record, without any token.
    let records = wait_for(TIMEOUT, "the refusal is on record", || {
        let api = api.clone();
        async move {
            let r: Vec<_> = api
                .audit_req(ListAuditRequest::default())
                .await
                .into_iter()
                .filter(|r| r.action == "http_request")
                .collect();
            (!r.is_empty()).then_some(r)
        }
    })
    .await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let rec = &records[0];
    assert_eq!(rec.outcome, "refused");
    assert!(rec.peer.starts_with("127.0.0.1:"), "{rec:?}");
    assert!(
        rec.message.starts_with("401 Unauthorized: no credentials"),
        "{rec:?}"
    );
    let all = format!("{records:?}");
    assert!(
        !all.contains("wf_not_a_token") && !all.contains(&secret),
        "{all}"
    );
    assert!(
        !daemon.log_text().contains(&secret) && !daemon.log_text().contains("wf_not_a_token"),
        "a token reached the daemon's log"
    );
}

/// Reads the event stream into `seen` until it holds `want`.
async fn read_until(events: &mut reqwest::Response, seen: &mut String, want: &str) {
    let read = tokio::time::timeout(TIMEOUT, async {
        while !seen.contains(want) {
            let chunk = events.chunk().await.expect("a chunk").expect("more events");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "no {want:?} in the stream: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ends_when_the_daemon_stops() {
    let port = free_port();
    let mut site = Site::new(Options {
        extra_toml: format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Default::default()
    })
    .expect("a site");
    let api = site.start().await;
    wait_listening(port).await;
    // The run writes its second line once the test has read the first from the stream.
    let flags = tempfile::Builder::new()
        .prefix("wf-status-page-flag-")
        .tempdir()
        .expect("a directory");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(flags.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
    }
    let flag = flags.path().join("go");
    let run = api
        .spawn(&sh(&format!(
            "echo first line; while [ ! -e '{}' ]; do sleep 0.05; done; echo second line; \
             exec sleep 600",
            flag.display()
        )))
        .await;
    api.wait_line(&run.run_id, "first line").await;
    let mut events = reqwest::get(format!(
        "http://127.0.0.1:{port}/runs/{}/events",
        run.run_id
    ))
    .await
    .expect("an answer");
    assert_eq!(events.status().as_u16(), 200);
    assert_eq!(
        events.headers()["content-type"].to_str().expect("text"),
        "text/event-stream"
    );
    // The log's tail first (as a JSON string), then the run, then the output as it comes.
    let mut seen = String::new();
    read_until(&mut events, &mut seen, "event: run\n").await;
    std::fs::write(&flag, "").expect("the flag");
    read_until(
        &mut events,
        &mut seen,
        "event: log\ndata: \"second line\\n\"",
    )
    .await;
    assert!(
        seen.starts_with("event: log-reset\ndata: \"first line\\n\"\n\n"),
        "{seen}"
    );
    assert!(
        seen.contains("event: run\n") && seen.contains(&run.run_id),
        "{seen}"
    );

    // The daemon stops (ending the run); the stream says so and ends, not cut off.
    site.signal(nix::sys::signal::Signal::SIGTERM);
    let rest = tokio::time::timeout(TIMEOUT, async {
        let mut rest = String::new();
        while let Some(chunk) = events.chunk().await.expect("a clean end, not an error") {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        rest
    })
    .await
    .expect("the stream ends");
    assert!(rest.contains("event: end\n"), "{rest}");
    // The stream ends only after the shutdown has ended the run: its last fragment says so.
    let end = rest.find("event: end\n").expect("the end");
    assert!(
        rest[..end].contains("KILLED"),
        "the run's end did not reach the stream before it ended: {rest}"
    );
    let status = site.wait_exit(TIMEOUT).await;
    assert!(status.success(), "wf-supervisor exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_runs_event_stream_follows_its_output_once_it_starts() {
    let port = free_port();
    let mut site = Site::new(Options {
        extra_toml: format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[queues.one]\nmax_concurrent = 1\n"
        ),
        ..Default::default()
    })
    .expect("a site");
    let api = site.start().await;
    wait_listening(port).await;
    let in_one = |argv: Vec<String>| SpawnRequest {
        argv,
        queue: "one".into(),
        ..Default::default()
    };
    let blocker = api.spawn_req(in_one(sh("exec sleep 600"))).await;
    api.wait_running(&blocker.run_id).await;
    let run = api
        .spawn_req(in_one(sh("echo \"out$((1 + 1))put\"; exec sleep 600")))
        .await;
    assert_eq!(run.status(), RunStatus::Queued);
    let mut events = reqwest::get(format!(
        "http://127.0.0.1:{port}/runs/{}/events",
        run.run_id
    ))
    .await
    .expect("an answer");
    assert_eq!(events.status().as_u16(), 200);
    let mut seen = String::new();
    read_until(&mut events, &mut seen, "event: run\n").await;
    // The slot frees: the run starts, and its output reaches the stream opened while it waited.
    api.kill(&blocker.run_id).await;
    // (The argv is in the page's fragments too: look for what only the output holds.)
    read_until(&mut events, &mut seen, "out2put").await;
    api.kill(&run.run_id).await;
    site.stop().await;
}
