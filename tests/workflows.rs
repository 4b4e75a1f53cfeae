//! Workflow runs end to end (DESIGN.md invariant 4, "progress is observed"): a run spawned from a
//! `[workflows.NAME]` template gets the Claude argv the daemon builds, its stdout is decoded as
//! stream-json into `Run.agent`, and its status follows the agent's own `result`. The agent is a
//! shell script that records its argv and replays a fixture transcript, as is and in variants
//! made at test time (paced, split at arbitrary bytes with pauses, garbage interleaved, a 10 MB
//! line); the expected turns, session, cost and outcome are read from the transcript itself.
//! Also: unknown workflows, ListWorkflows, and Restart{resume} of finished workflow runs.
mod common;
mod workflow_support;

use tonic::Code;
use wf_supervisor::proto::{
    ListWorkflowsRequest, RestartRequest, RestartResponse, Run, RunStatus, SpawnOverrides,
};

use common::{Daemon, Options, FAKE_AGENT, TIMEOUT};
use workflow_support::*;

/// The workflow every replay test uses: its program runs the feed script named by `WFT_FEED`
/// (set per spawn), which writes the transcript to stdout in one way or another.
fn replay_workflow(scripts: &Scripts) -> String {
    let program = scripts.agent("agent", "exec /bin/sh \"$WFT_FEED\"");
    workflow_toml("replay", &program, "")
}

async fn replay_daemon(scripts: &Scripts, more_toml: &str) -> Daemon {
    Daemon::start_with(Options {
        extra_toml: format!("{}{more_toml}", replay_workflow(scripts)),
        ..Default::default()
    })
    .await
}

/// The ways a case writes its transcript.
#[derive(Clone, Copy, Debug)]
enum Variant {
    /// `cat` at once.
    Plain,
    /// The fake agent, one line every 20 ms.
    Paced,
    /// Pieces of 1 to 777 bytes cut anywhere (mid-line, mid-character), 20 ms apart.
    Split,
    /// Non-JSON, non-object, unknown-type, blank and invalid-UTF-8 lines between the events.
    Garbage,
    /// A 10 MB line (over the 1 MiB line bound) after the first event.
    HugeLine,
}

const VARIANTS: [Variant; 5] = [
    Variant::Plain,
    Variant::Paced,
    Variant::Split,
    Variant::Garbage,
    Variant::HugeLine,
];

const GARBAGE: &[&[u8]] = &[
    b"not json at all",
    b"",
    b"[1, 2, 3]",
    b"{\"type\":\"mystery_event\",\"session_id\":\"not-the-session\"}",
    b"{\"type\":\"assistant\",\"message\":{\"id\":",
    b"\xff\xfe\x00garbage\x80",
    b"   {\"half\": ",
];

/// Writes the feed script (and its files) for one case; returns its path and the number of
/// bytes it writes to stdout.
fn make_feed(scripts: &Scripts, case: &str, fixture_name: &str, variant: Variant) -> (String, u64) {
    let src = fixture(fixture_name);
    let bytes = fixture_bytes(fixture_name);
    let (body, len) = match variant {
        Variant::Plain => (
            format!("exec cat {}", shq(src.display().to_string())),
            bytes.len(),
        ),
        Variant::Paced => (
            format!(
                "exec {} --replay {} --replay-delay-ms 20",
                shq(FAKE_AGENT),
                shq(src.display().to_string())
            ),
            bytes.len(),
        ),
        Variant::Split => {
            let sizes = [1usize, 13, 200, 777, 64, 3, 401];
            let mut body = String::new();
            let (mut at, mut i) = (0, 0);
            while at < bytes.len() {
                let end = (at + sizes[i % sizes.len()]).min(bytes.len());
                let piece = scripts.write(&format!("{case}.piece{i}"), &bytes[at..end]);
                body.push_str(&format!(
                    "cat {}\nsleep 0.02\n",
                    shq(piece.display().to_string())
                ));
                at = end;
                i += 1;
            }
            (body, bytes.len())
        }
        Variant::Garbage => {
            let mut out = Vec::new();
            for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
                out.extend_from_slice(GARBAGE[i % GARBAGE.len()]);
                out.push(b'\n');
                out.extend_from_slice(line);
            }
            out.extend_from_slice(b"trailing garbage without a newline");
            let path = scripts.write(&format!("{case}.jsonl"), &out);
            (
                format!("exec cat {}", shq(path.display().to_string())),
                out.len(),
            )
        }
        Variant::HugeLine => {
            let mut lines = bytes.split_inclusive(|b| *b == b'\n');
            let mut out = lines.next().expect("a first line").to_vec();
            // A tool result of 10 MB, as a real agent's `cat` of a big file prints.
            out.extend_from_slice(
                b"{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":[{\"type\":\
                  \"tool_result\",\"tool_use_id\":\"toolu_huge\",\"content\":\"",
            );
            out.extend(std::iter::repeat_n(b'x', 10 << 20));
            out.extend_from_slice(b"\"}]},\"parent_tool_use_id\":null}\n");
            for line in lines {
                out.extend_from_slice(line);
            }
            let path = scripts.write(&format!("{case}.jsonl"), &out);
            (
                format!("exec cat {}", shq(path.display().to_string())),
                out.len(),
            )
        }
    };
    let feed = scripts.write(&format!("{case}.sh"), body.as_bytes());
    (feed.display().to_string(), len as u64)
}

/// The transcripts, counted by hand from the fixture files: the independent reading in
/// `facts` must agree with this before the daemon is judged by it.
#[test]
fn fixture_facts_match_a_reading_by_hand() {
    let f = facts(&fixture_bytes("success.jsonl"));
    assert_eq!(
        f.session_id.as_deref(),
        Some("4c1f9a7e-2b6d-4e83-9a15-7d0c3e8b5f21")
    );
    assert_eq!(f.turns, 4);
    let r = f.result.expect("success has a result");
    assert_eq!((r.subtype.as_str(), r.is_error), ("success", false));
    assert_eq!((r.num_turns, r.cost_usd), (Some(4), Some(0.0781245)));

    let f = facts(&fixture_bytes("max_turns.jsonl"));
    assert_eq!(
        f.turns, 2,
        "two assistant messages; the CLI says num_turns 3"
    );
    let r = f.result.expect("max_turns has a result");
    assert_eq!((r.subtype.as_str(), r.is_error), ("error_max_turns", true));
    assert_eq!((r.num_turns, r.cost_usd), (Some(3), Some(0.0613482)));

    let f = facts(&fixture_bytes("api_unreachable.jsonl"));
    assert_eq!(f.turns, 0, "its only assistant message is <synthetic>");
    assert_eq!(f.api_retries, 2);
    let r = f.result.expect("api_unreachable has a result");
    assert_eq!((r.subtype.as_str(), r.is_error), ("success", true));
    assert_eq!(r.cost_usd, Some(0.0));

    let f = facts(&fixture_bytes("interrupted_sigint.jsonl"));
    assert_eq!(f.turns, 1);
    let r = f.result.expect("interrupted_sigint has a result");
    assert_eq!(
        (r.subtype.as_str(), r.is_error),
        ("error_during_execution", true)
    );

    let f = facts(&fixture_bytes("stuck_init.jsonl"));
    assert!(f.has_init && f.result.is_none() && f.turns == 0, "{f:?}");
    assert_eq!(
        f.session_id.as_deref(),
        Some("c3e5a7b9-d1f2-4a3b-9c4d-e5f6a7b8c9d0")
    );
}

/// Every fixture in every variant: the argv the daemon built, the progress it decoded, the
/// status it concluded, the output it logged, and nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_yield_the_progress_and_status_their_transcripts_record() {
    let scripts = Scripts::new();
    let daemon = replay_daemon(&scripts, "").await;
    let api = daemon.api();

    let fixtures = [
        "success.jsonl",
        "max_turns.jsonl",
        "api_unreachable.jsonl",
        "interrupted_sigint.jsonl",
        "stuck_init.jsonl",
    ];
    struct Case {
        name: String,
        fixture: &'static str,
        prompt: String,
        stdout_bytes: u64,
        run: Run,
    }
    let mut cases = Vec::new();
    for fixture_name in fixtures {
        for variant in VARIANTS {
            let stem = fixture_name.trim_end_matches(".jsonl");
            let name = format!("{stem}-{variant:?}").to_lowercase();
            let (feed, stdout_bytes) = make_feed(&scripts, &name, fixture_name, variant);
            let prompt = format!("replay {name}");
            let run = spawn_workflow(&api, "replay", &prompt, &[("WFT_FEED", &feed)]).await;
            assert_eq!(run.workflow, "replay", "{name}: {run:?}");
            cases.push(Case {
                name,
                fixture: fixture_name,
                prompt,
                stdout_bytes,
                run,
            });
        }
    }

    for case in &cases {
        let name = &case.name;
        let run = api.wait_terminal(&case.run.run_id, TIMEOUT).await;
        let f = facts(&fixture_bytes(case.fixture));

        let args = scripts.wait_args(&run.run_id).await;
        assert_eq!(args, claude_prefix(&case.prompt), "{name}: argv");
        assert_eq!(run.argv[1..], args[..], "{name}: Run.argv");

        assert_eq!(run.exit_code, Some(0), "{name}: {run:?}");
        match &f.result {
            Some(r) if r.is_error => {
                assert_eq!(run.status(), RunStatus::Failed, "{name}: {run:?}");
                assert!(
                    run.error.contains(&r.subtype),
                    "{name}: the error names the result subtype: {:?}",
                    run.error
                );
            }
            Some(_) => {
                assert_eq!(run.status(), RunStatus::Succeeded, "{name}: {run:?}");
                assert!(run.error.is_empty(), "{name}: {:?}", run.error);
            }
            // No result at all, yet exit code 0: the agent did not finish its work.
            None => {
                assert_eq!(run.status(), RunStatus::Failed, "{name}: {run:?}");
                assert_eq!(run.error, "the agent exited without a result", "{name}");
            }
        }
        let a = agent(&run);
        assert_progress(name, a, &f);
        assert_eq!(a.prompt, case.prompt, "{name}");
        assert_eq!(
            a.health(),
            wf_supervisor::proto::Health::Ok,
            "{name}: no stuck rule is near: {a:?}"
        );
        assert!(a.health_reason.is_empty(), "{name}: {a:?}");
        assert!(a.critical.is_empty(), "{name}: {a:?}");
        assert!(a.resume_session.is_empty(), "{name}: {a:?}");
        assert_eq!(
            run.stdout_bytes, case.stdout_bytes,
            "{name}: every byte is logged"
        );
        assert!(!run.output_truncated, "{name}");
    }

    // The fixtures' specific claims, spelled out.
    let by = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.run.run_id.clone())
            .expect("case")
    };
    let api_down = api.get(&by("api_unreachable-plain")).await;
    assert_eq!(api_down.status(), RunStatus::Failed, "{api_down:?}");
    assert_eq!(api_down.exit_code, Some(0), "it exited 0 all the same");
    assert!(agent(&api_down).api_retries > 0, "{api_down:?}");
    let max_turns = api.get(&by("max_turns-split")).await;
    assert_eq!(agent(&max_turns).result_subtype, "error_max_turns");
    assert_eq!(max_turns.status(), RunStatus::Failed);
    let success = api.get(&by("success-hugeline")).await;
    assert_eq!(success.status(), RunStatus::Succeeded);
    assert_eq!(agent(&success).turns, 4);
    assert_eq!(
        agent(&success).session_id,
        "4c1f9a7e-2b6d-4e83-9a15-7d0c3e8b5f21"
    );

    let ids: Vec<&str> = cases.iter().map(|c| c.run.run_id.as_str()).collect();
    assert_all_gone(&daemon, &ids).await;

    // Last, so that a wrong phase does not hide the rest.
    for case in &cases {
        let run = api.get(&case.run.run_id).await;
        let want = expected_phase(&facts(&fixture_bytes(case.fixture)));
        assert_phase(&case.name, agent(&run), want);
    }
}

/// The whole argv from a template with every field set, and per-spawn overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_argv_is_built_from_the_template_and_overrides() {
    let scripts = Scripts::new();
    let success = fixture("success.jsonl");
    let program = scripts.agent(
        "full-agent",
        &format!("exec cat {}", shq(success.display().to_string())),
    );
    let full = workflow_toml(
        "full",
        &program,
        "model = \"claude-sonnet-4-5\"\nmax_turns = 40\npermission_mode = \"acceptEdits\"\n\
         allowed_tools = [\"Read\", \"Bash(git log:*)\"]\n\
         append_system_prompt = \"Write a heartbeat to fd 3.\"\n\
         extra_args = [\"--add-dir\", \"../shared\"]",
    );
    let daemon = replay_daemon(&scripts, &full).await;
    let api = daemon.api();

    let plain = spawn_workflow(&api, "full", "fix the build", &[]).await;
    let mut request = workflow_request("full", "-starts with a dash", &[]);
    request.overrides = Some(SpawnOverrides {
        model: Some("claude-opus-4".into()),
        max_turns: Some(3),
        allowed_tools: vec!["Edit".into()],
        replace_allowed_tools: true,
        ..Default::default()
    });
    let overridden = api.try_spawn(request).await.expect("Spawn with overrides");

    // The argv of the `full` template with `model`, `max_turns` and the allowed tools as given.
    let full_argv = |prompt: &str, model: &str, max_turns: &str, tools: &[&str]| {
        let mut argv = claude_prefix(prompt);
        argv.extend(
            [
                "--model",
                model,
                "--max-turns",
                max_turns,
                "--permission-mode",
                "acceptEdits",
                "--append-system-prompt",
                "Write a heartbeat to fd 3.",
                "--add-dir",
                "../shared",
                "--allowedTools",
            ]
            .into_iter()
            .chain(tools.iter().copied())
            .map(String::from),
        );
        argv
    };
    assert_eq!(
        scripts.wait_args(&plain.run_id).await,
        full_argv(
            "fix the build",
            "claude-sonnet-4-5",
            "40",
            &["Read", "Bash(git log:*)"]
        )
    );

    // A prompt starting with '-' gets a leading space, so it is not read as an option.
    assert_eq!(
        scripts.wait_args(&overridden.run_id).await,
        full_argv(" -starts with a dash", "claude-opus-4", "3", &["Edit"])
    );

    for run in [&plain, &overridden] {
        let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
        assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
        assert_eq!(agent(&run).turns, 4);
    }
    assert_all_gone(&daemon, &[&plain.run_id, &overridden.run_id]).await;
}

/// An unknown workflow is INVALID_ARGUMENT naming the known ones; ListWorkflows lists them as
/// configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_workflows_are_refused_and_known_ones_are_listed() {
    let scripts = Scripts::new();
    let other = scripts.agent("other-agent", "exit 0");
    let daemon = replay_daemon(
        &scripts,
        &workflow_toml(
            "nightly-review",
            &other,
            "model = \"claude-haiku-4-5\"\nmax_turns = 7\ninit_timeout = \"90s\"\n\
             on_init_timeout = \"restart\"\nidle_timeout = \"off\"\nmax_runtime = \"2h\"\n\
             on_max_runtime = \"alert\"\nstop_signals = [\"TERM\"]\ngrace_ms = 1500",
        ),
    )
    .await;
    let api = daemon.api();

    let refused = api
        .try_spawn(workflow_request("no-such-workflow", "do it", &[]))
        .await;
    let status = refused.expect_err("an unknown workflow is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    for needle in ["workflow", "no-such-workflow", "replay", "nightly-review"] {
        assert!(message.contains(needle), "{needle:?} in {message:?}");
    }

    let list = api
        .client
        .clone()
        .list_workflows(ListWorkflowsRequest {})
        .await
        .expect("ListWorkflows")
        .into_inner()
        .workflows;
    let mut names: Vec<&str> = list.iter().map(|w| w.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["nightly-review", "replay"]);
    let w = list
        .iter()
        .find(|w| w.name == "nightly-review")
        .expect("nightly-review");
    assert_eq!(w.program, other.display().to_string());
    assert_eq!((w.model.as_str(), w.max_turns), ("claude-haiku-4-5", 7));
    assert_eq!(
        (w.init_timeout_ms, w.on_init_timeout.as_str()),
        (90_000, "restart")
    );
    assert_eq!(w.idle_timeout_ms, 0, "idle_timeout = \"off\"");
    assert_eq!(
        (w.max_runtime_ms, w.on_max_runtime.as_str()),
        (7_200_000, "alert")
    );
    assert_eq!(
        (w.stop_signals.clone(), w.grace_ms),
        (vec!["TERM".into()], 1500)
    );
    let r = list.iter().find(|w| w.name == "replay").expect("replay");
    assert_eq!(
        r.stop_signals,
        ["INT", "TERM"],
        "the workflow default stop signals"
    );
    assert_eq!(
        (r.init_timeout_ms, r.on_init_timeout.as_str()),
        (30 * 60_000, "kill"),
        "the default init rule"
    );

    // Nothing was started by the refused spawn.
    let runs = api.list().await;
    assert!(runs.is_empty(), "{runs:?}");
    daemon.assert_reaped(&[]).await;
}

async fn restart(api: &common::Api, run_id: &str, resume: bool) -> RestartResponse {
    api.try_restart_req(RestartRequest {
        run_id: run_id.to_string(),
        reason: "integration test".to_string(),
        resume,
    })
    .await
    .unwrap_or_else(|s| panic!("Restart {run_id} (resume {resume}) failed: {s:?}"))
}

/// Restart{resume} of finished workflow runs: with a session id the new run gets
/// `--resume SESSION`; without one it starts fresh and the note says why; without `resume` it
/// starts fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_resume_continues_the_session_or_says_why_not() {
    let scripts = Scripts::new();
    let daemon = replay_daemon(&scripts, "").await;
    let api = daemon.api();
    let (with_session, _) = make_feed(&scripts, "session", "success.jsonl", Variant::Plain);
    let silent = scripts
        .write("silent.sh", b"echo 'no stream-json here' >&2\nexit 0\n")
        .display()
        .to_string();
    let session = init_session("success.jsonl");

    // A finished run with a session id.
    let first = spawn_workflow(
        &api,
        "replay",
        "fix the build",
        &[("WFT_FEED", &with_session)],
    )
    .await;
    let first = api.wait_terminal(&first.run_id, TIMEOUT).await;
    assert_eq!(first.status(), RunStatus::Succeeded, "{first:?}");
    assert_eq!(agent(&first).session_id, session);

    let resumed = restart(&api, &first.run_id, true).await;
    let new = resumed.run.clone().expect("RestartResponse.run");
    assert_eq!(resumed.old_run_id, first.run_id);
    assert!(
        resumed.note.contains("resum") && resumed.note.contains(&session),
        "note: {:?}",
        resumed.note
    );
    assert_eq!(new.restart_of, first.run_id);
    assert_eq!(new.attempt, first.attempt + 1);
    assert_eq!(new.workflow, "replay");
    let mut want = claude_prefix("fix the build");
    want.extend(["--resume".to_string(), session.clone()]);
    assert_eq!(scripts.wait_args(&new.run_id).await, want);
    let new = api.wait_terminal(&new.run_id, TIMEOUT).await;
    assert_eq!(agent(&new).resume_session, session, "{new:?}");
    assert_eq!(new.status(), RunStatus::Succeeded, "{new:?}");

    // The resumed run restarted without resume starts fresh (a run has one successor, so this
    // is how an operator drops the session).
    let fresh = restart(&api, &new.run_id, false).await;
    let fresh_run = fresh.run.clone().expect("RestartResponse.run");
    assert!(fresh.note.contains("fresh"), "note: {:?}", fresh.note);
    assert_eq!(
        scripts.wait_args(&fresh_run.run_id).await,
        claude_prefix("fix the build")
    );
    let fresh_run = api.wait_terminal(&fresh_run.run_id, TIMEOUT).await;
    assert!(agent(&fresh_run).resume_session.is_empty());

    // A finished run that never printed a session id.
    let quiet = spawn_workflow(&api, "replay", "say nothing", &[("WFT_FEED", &silent)]).await;
    let quiet = api.wait_terminal(&quiet.run_id, TIMEOUT).await;
    assert!(agent(&quiet).session_id.is_empty(), "{quiet:?}");
    let again = restart(&api, &quiet.run_id, true).await;
    let again_run = again.run.clone().expect("RestartResponse.run");
    assert!(
        again.note.contains("no session id") && again.note.contains("fresh"),
        "note: {:?}",
        again.note
    );
    assert_eq!(
        scripts.wait_args(&again_run.run_id).await,
        claude_prefix("say nothing")
    );
    assert_eq!(again_run.restart_of, quiet.run_id);
    let again_run = api.wait_terminal(&again_run.run_id, TIMEOUT).await;
    assert!(agent(&again_run).resume_session.is_empty());

    for id in [&first.run_id, &new.run_id] {
        let restarts = audit(&api, id).await;
        let notes: Vec<&str> = restarts
            .iter()
            .filter(|r| r.action == "restart")
            .map(|r| r.message.as_str())
            .collect();
        assert_eq!(notes.len(), 1, "one audited restart of {id}: {restarts:?}");
    }

    assert_all_gone(
        &daemon,
        &[
            &first.run_id,
            &new.run_id,
            &fresh_run.run_id,
            &quiet.run_id,
            &again_run.run_id,
        ],
    )
    .await;
}

/// A workflow run whose agent exits 0 without ever printing a stream-json `result` (it
/// crashed, was cut off, or is not the CLI) ends FAILED, saying so; the same program run by
/// argv keeps exit-code semantics, and a workflow agent that exits non-zero without a result
/// is FAILED by its exit code, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_exits_zero_without_a_result_fails() {
    let scripts = Scripts::new();
    let transcript = fixture("stuck_init.jsonl");
    assert!(facts(&fixture_bytes("stuck_init.jsonl")).result.is_none());
    let replay = |code: u8| {
        format!(
            "exec {} --replay {} --exit {code}",
            shq(FAKE_AGENT),
            shq(transcript.display().to_string())
        )
    };
    let quiet = scripts.agent("quiet-agent", &replay(0));
    let crashing = scripts.agent("crashing-agent", &replay(3));
    let daemon = replay_daemon(
        &scripts,
        &format!(
            "{}{}",
            workflow_toml("quiet", &quiet, ""),
            workflow_toml("crashing", &crashing, "")
        ),
    )
    .await;
    let api = daemon.api();

    let run = spawn_workflow(&api, "quiet", "do the work", &[]).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.exit_code, Some(0), "{run:?}");
    assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
    assert_eq!(run.error, "the agent exited without a result", "{run:?}");
    assert!(agent(&run).result_subtype.is_empty(), "{run:?}");

    let crashed = spawn_workflow(&api, "crashing", "do the work", &[]).await;
    let crashed = api.wait_terminal(&crashed.run_id, TIMEOUT).await;
    assert_eq!(crashed.status(), RunStatus::Failed, "{crashed:?}");
    assert_eq!(crashed.exit_code, Some(3), "{crashed:?}");
    assert!(
        crashed.error.contains('3'),
        "the exit code says it: {crashed:?}"
    );

    let argv = api
        .spawn(&common::fake(&[
            "--replay",
            &transcript.display().to_string(),
        ]))
        .await;
    let argv = api.wait_terminal(&argv.run_id, TIMEOUT).await;
    assert_eq!(argv.status(), RunStatus::Succeeded, "{argv:?}");

    assert_all_gone(&daemon, &[&run.run_id, &crashed.run_id, &argv.run_id]).await;
}

/// `permission_mode` is one the Claude CLI accepts: in an override, INVALID_ARGUMENT naming it
/// and the accepted values, with no run made; in a template, the config is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_modes_the_cli_does_not_take_are_refused() {
    let scripts = Scripts::new();
    let daemon = replay_daemon(&scripts, "").await;
    let api = daemon.api();
    let feed = scripts.write(
        "ok.sh",
        format!(
            "exec cat {}",
            shq(fixture("success.jsonl").display().to_string())
        )
        .as_bytes(),
    );
    let feed = feed.display().to_string();

    let mut request = workflow_request("replay", "do it", &[("WFT_FEED", &feed)]);
    request.overrides = Some(SpawnOverrides {
        permission_mode: Some("yolo".into()),
        ..Default::default()
    });
    let refused = api.try_spawn(request).await.expect_err("an unknown mode");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    for needle in [
        "permission_mode",
        "\"yolo\"",
        "acceptEdits",
        "bypassPermissions",
        "plan",
    ] {
        assert!(
            refused.message().contains(needle),
            "{needle}: {}",
            refused.message()
        );
    }
    assert!(api.list().await.is_empty(), "no run was made");

    let mut request = workflow_request("replay", "plan it", &[("WFT_FEED", &feed)]);
    request.overrides = Some(SpawnOverrides {
        permission_mode: Some("plan".into()),
        ..Default::default()
    });
    let run = api.try_spawn(request).await.expect("a known mode");
    let args = scripts.wait_args(&run.run_id).await;
    assert!(
        args.windows(2).any(|w| w == ["--permission-mode", "plan"]),
        "{args:?}"
    );
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert_all_gone(&daemon, &[&run.run_id]).await;

    // In a template: the daemon refuses the config and does not start.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[workflows.reviewer]\nprogram = \"/nonexistent/claude\"\npermission_mode = \"yolo\"\n",
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wf-supervisor"))
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("wf.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .expect("running the daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("workflows.reviewer.permission_mode") && stderr.contains("\"yolo\""),
        "{stderr}"
    );
    assert!(!dir.path().join("wf.sock").exists(), "it never served");
}
