//! `wfctl watch [ID]`: one line per state change of one run, or of every run, until the daemon
//! ends the stream (or the user presses Ctrl-C); with --json, one object per line.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio_stream::StreamExt;
use wf_supervisor::proto::WatchRequest;

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this run; without it, every run.
    #[arg(value_name = "ID")]
    pub run_id: Option<String>,
}

pub async fn run(client: &mut Client, args: WatchArgs, json: bool) -> anyhow::Result<ExitCode> {
    let run_id = args.run_id.unwrap_or_default();
    let what = || {
        if run_id.is_empty() {
            "watch".to_string()
        } else {
            format!("watch {run_id}")
        }
    };
    let mut stream = client
        .watch(WatchRequest {
            run_id: run_id.clone(),
        })
        .await
        .map_err(api_error)
        .with_context(what)?
        .into_inner();
    while let Some(item) = stream.next().await {
        let event = item.map_err(api_error).with_context(what)?;
        if json {
            output::print_json(&output::event_json(&event), true)?;
        } else {
            output::print(&output::event_line(&event))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
