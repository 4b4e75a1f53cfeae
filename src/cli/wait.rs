//! `wfctl wait ID... [--timeout 30m]`: block until each run has ended (through Watch, no
//! polling). Exit 0 when every run SUCCEEDED; otherwise the code of the first run, in the order
//! given, that did not: 10 FAILED, 11 KILLED, 12 CANCELLED, 13 TIMED_OUT, 14 LOST; 5 when the
//! timeout passed first. One line per run says how it ended.
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{GetRequest, Run, RunStatus, WatchRequest};

use super::{api_error, output, Client};

/// Exit code when `--timeout` passed before every run had ended.
pub const EXIT_WAIT_TIMEOUT: u8 = 5;

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The runs to wait for.
    #[arg(value_name = "ID", required = true)]
    pub run_ids: Vec<String>,

    /// Give up after this long, e.g. 30m (default: wait as long as it takes).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_age)]
    pub timeout: Option<u64>,
}

/// The exit code for a run's final status (0 for SUCCEEDED).
pub fn exit_code_for(status: RunStatus) -> u8 {
    match status {
        RunStatus::Succeeded => 0,
        RunStatus::Failed => 10,
        RunStatus::Killed => 11,
        RunStatus::Cancelled => 12,
        RunStatus::TimedOut => 13,
        RunStatus::Lost => 14,
        _ => 1,
    }
}

fn is_terminal(s: RunStatus) -> bool {
    exit_code_for(s) != 1
}

async fn watch(
    client: &mut Client,
    run_id: &str,
) -> anyhow::Result<tonic::Streaming<wf_supervisor::proto::RunEvent>> {
    Ok(client
        .watch(WatchRequest {
            run_id: run_id.to_string(),
        })
        .await
        .map_err(api_error)
        .with_context(|| format!("wait {run_id}"))?
        .into_inner())
}

/// Waits until `run_id` has ended: Watch sends a snapshot first and ends after the terminal event.
async fn wait_one(client: &mut Client, run_id: &str) -> anyhow::Result<Run> {
    let mut stream = watch(client, run_id).await?;
    loop {
        match stream.message().await.map_err(api_error) {
            Ok(Some(ev)) => {
                if let Some(run) = ev.run {
                    if is_terminal(run.status()) {
                        return Ok(run);
                    }
                }
            }
            // The stream ended (daemon restart, or the terminal event had no run): ask.
            Ok(None) | Err(_) => {
                let run = client
                    .get(GetRequest {
                        run_id: run_id.to_string(),
                    })
                    .await
                    .map_err(api_error)
                    .with_context(|| format!("wait {run_id}"))?
                    .into_inner();
                if is_terminal(run.status()) {
                    return Ok(run);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                stream = watch(client, run_id).await?;
            }
        }
    }
}

pub async fn run(client: &mut Client, args: WaitArgs, json: bool) -> anyhow::Result<ExitCode> {
    let deadline = args
        .timeout
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut first_failure: Option<u8> = None;
    for id in &args.run_ids {
        let run = match deadline {
            None => wait_one(client, id).await?,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, wait_one(client, id)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        eprintln!("wfctl: wait: {id} had not ended when the timeout passed");
                        return Ok(ExitCode::from(EXIT_WAIT_TIMEOUT));
                    }
                }
            }
        };
        if json {
            output::print_json(&output::run_json(&run), true)?;
        } else {
            let mut line = format!("{} {}", run.run_id, output::status_name(run.status));
            if !run.end_reason.is_empty() {
                line.push_str(&format!(": {}", output::one_line(&run.end_reason)));
            } else if !run.error.is_empty() {
                line.push_str(&format!(": {}", output::one_line(&run.error)));
            }
            output::print(&line)?;
        }
        let code = exit_code_for(run.status());
        if code != 0 && first_failure.is_none() {
            first_failure = Some(code);
        }
    }
    Ok(ExitCode::from(first_failure.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_end_has_its_own_code() {
        let codes: Vec<u8> = [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Killed,
            RunStatus::Cancelled,
            RunStatus::TimedOut,
            RunStatus::Lost,
        ]
        .into_iter()
        .map(exit_code_for)
        .collect();
        assert_eq!(codes, vec![0, 10, 11, 12, 13, 14]);
        assert!(!is_terminal(RunStatus::Queued));
    }
}
