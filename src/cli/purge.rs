//! `wfctl purge ID [--force]` or `wfctl purge --status STATUS [--older-than DURATION]`: remove
//! finished runs and their logs (the daemon keeps their audit records). One run by id (a live run
//! is refused unless --force, which kills it first), or every run of one finished status that ended
//! at least DURATION ago. Prints how many runs went and their ids.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{PurgeRequest, RunStatus};

use super::{api_error, output, Client};

/// The statuses a run ends in, the only ones `--status` accepts.
pub const FINISHED: [RunStatus; 6] = [
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Killed,
    RunStatus::Cancelled,
    RunStatus::TimedOut,
    RunStatus::Lost,
];

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["run_id", "status"]))]
pub struct PurgeArgs {
    /// The run id.
    #[arg(value_name = "ID")]
    pub run_id: Option<String>,

    /// Purge the run even if it is live: force-kill it first.
    #[arg(long, short = 'f', conflicts_with = "status")]
    pub force: bool,

    /// Instead of one run, every run in this finished status: succeeded, failed, killed,
    /// cancelled, timed_out, lost.
    #[arg(long, short = 's', value_name = "STATUS", value_parser = parse_finished_status)]
    pub status: Option<RunStatus>,

    /// With --status: only runs that ended at least this long ago, e.g. 7d, 12h.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_age, conflicts_with = "run_id")]
    pub older_than: Option<u64>,

    /// Why, for the record.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// A run status that a run ends in; a live one (running, ...) is refused with the list of finished
/// ones, since only finished runs are purged by status.
pub fn parse_finished_status(s: &str) -> Result<RunStatus, String> {
    let status = super::parse_status(s)?;
    if FINISHED.contains(&status) {
        Ok(status)
    } else {
        let names: Vec<String> = FINISHED
            .iter()
            .map(|st| output::status_name(*st as i32))
            .collect();
        Err(format!(
            "{s:?} is not a finished status (one of: {})",
            names.join(", ")
        ))
    }
}

pub async fn run(client: &mut Client, args: PurgeArgs, json: bool) -> anyhow::Result<ExitCode> {
    let what = match (&args.run_id, args.status) {
        (Some(id), _) => format!("purge {id}"),
        (None, Some(st)) => format!("purge --status {}", output::status_name(st as i32)),
        (None, None) => "purge".to_string(),
    };
    let response = client
        .purge(PurgeRequest {
            run_id: args.run_id.unwrap_or_default(),
            force: args.force,
            status: args.status.map_or(0, |s| s as i32),
            older_than_ms: args.older_than.unwrap_or(0),
            reason: args.reason.unwrap_or_default(),
        })
        .await
        .map_err(api_error)
        .context(what)?
        .into_inner();
    if json {
        output::print_json(&output::purge_json(&response), false)?;
    } else {
        output::print(&output::purge_report(&response))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_statuses_are_purged() {
        assert_eq!(parse_finished_status("killed"), Ok(RunStatus::Killed));
        assert_eq!(parse_finished_status("timed-out"), Ok(RunStatus::TimedOut));
        assert_eq!(parse_finished_status("LOST"), Ok(RunStatus::Lost));
        for st in FINISHED {
            let name = output::status_name(st as i32);
            assert_eq!(parse_finished_status(&name), Ok(st), "{name}");
        }
        for live in ["queued", "starting", "running", "stopping"] {
            let e = parse_finished_status(live).expect_err(live);
            assert!(e.contains("not a finished status"), "{e}");
            assert!(e.contains("succeeded, failed, killed"), "{e}");
        }
        assert!(parse_finished_status("unspecified").is_err());
        assert!(parse_finished_status("done").is_err());
    }
}
