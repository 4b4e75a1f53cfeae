//! `wfctl kill ID`: end a live run through the daemon's kill state machine and print what
//! happened: phase, signals, duration, survivors, cleanup steps and message. Exits 3 when the
//! daemon reports the run was not seen empty (`success: false`). A queued run is cancelled.
//! `wfctl kill --selector SEL` lists the matching runs and kills nothing unless `--yes` is given
//! (the selector syntax is `cancel`'s); each run is then killed and audited one by one.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::KillRequest;

use super::{api_error, output, Client, EXIT_KILL_INCOMPLETE};

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The run id.
    #[arg(
        value_name = "ID",
        required_unless_present = "selector",
        conflicts_with = "selector"
    )]
    pub run_id: Option<String>,

    /// Every queued or live run that matches, e.g. workflow=builder,status=running (see
    /// `wfctl cancel --help`).
    #[arg(long, value_name = "SEL", value_parser = super::cancel::parse_selector)]
    pub selector: Option<wf_supervisor::proto::Selector>,

    /// With --selector: do it (without, the matching runs are only listed).
    #[arg(long, requires = "selector")]
    pub yes: bool,

    /// Straight to KILL, no stop signals and no grace.
    #[arg(long, short = 'f', conflicts_with = "grace")]
    pub force: bool,

    /// Grace for this kill, e.g. 5s (default: the run's own grace).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_grace)]
    pub grace: Option<u64>,

    /// Why, for the record.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

pub async fn run(client: &mut Client, args: KillArgs, json: bool) -> anyhow::Result<ExitCode> {
    let bulk = args.selector.is_some();
    let yes = args.yes;
    let run_id = args.run_id.clone().unwrap_or_else(|| "--selector".into());
    let response = client
        .kill(KillRequest {
            run_id: args.run_id.clone().unwrap_or_default(),
            force: args.force,
            grace_ms: args.grace.unwrap_or(0),
            reason: args.reason.unwrap_or_default(),
            selector: args.selector,
            dry_run: bulk && !args.yes,
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("kill {run_id}"))?
        .into_inner();
    if bulk && !json {
        let now = wf_supervisor::time::now_ms();
        let runs: Vec<_> = response
            .results
            .iter()
            .filter_map(|r| r.run.clone())
            .collect();
        let head = if yes {
            format!("killed {} run(s):", runs.len())
        } else {
            format!(
                "would kill {} run(s) (dry run; add --yes to kill them):",
                runs.len()
            )
        };
        output::print(&format!(
            "{head}\n{}",
            output::runs_table(&runs, now, false)
        ))?;
        for r in response.results.iter().filter(|r| yes && !r.success) {
            eprintln!("wfctl: kill {}: not complete: {}", r.run_id, r.message);
        }
    } else if json {
        output::print_json(&output::kill_json(&response), false)?;
    } else {
        output::print(&output::kill_report(&response))?;
    }
    if response.success {
        Ok(ExitCode::SUCCESS)
    } else {
        if json {
            // The table already says so; with --json, keep stderr informative for scripts' logs.
            eprintln!(
                "wfctl: kill {}: not complete: {}",
                run_id,
                if response.message.is_empty() {
                    "the run was not seen empty"
                } else {
                    &response.message
                }
            );
        }
        Ok(ExitCode::from(EXIT_KILL_INCOMPLETE))
    }
}
