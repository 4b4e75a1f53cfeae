//! `wfctl ps`: list runs, newest first, optionally only those in some statuses, of a queue or
//! workflow, with some labels, or the newest N; a table by default, `{"runs": [...]}` with --json.
//! Every matching run is fetched a page at a time (List paging), the newest N in one answer.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::{ListRequest, RunStatus};

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Only runs in these statuses (repeatable or comma-separated): queued, starting, running,
    /// stopping, succeeded, failed, killed, cancelled, timed_out, lost.
    #[arg(
        long,
        short = 's',
        value_name = "STATUS",
        value_delimiter = ',',
        value_parser = super::parse_status
    )]
    pub status: Vec<RunStatus>,

    /// At most this many runs (the newest).
    #[arg(long, short = 'n', value_name = "N")]
    pub limit: Option<u32>,

    /// Every run, whatever its status and however many (the default; overrides nothing else).
    #[arg(long, short = 'a', conflicts_with_all = ["status", "limit"])]
    pub all: bool,

    /// Only runs of this queue.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,

    /// Only runs of this workflow.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,

    /// Only runs with this label; repeatable (all must match).
    #[arg(long = "label", short = 'l', value_name = "K=V", value_parser = super::parse_key_val)]
    pub labels: Vec<(String, String)>,

    /// Show whole commands instead of cutting them at 60 characters.
    #[arg(long)]
    pub no_trunc: bool,
}

/// Runs per List answer while `ps` pages through every matching run.
const PAGE_SIZE: u32 = 500;

pub async fn run(client: &mut Client, args: PsArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut request = ListRequest {
        statuses: args.status.iter().map(|s| *s as i32).collect(),
        limit: args.limit.unwrap_or(0),
        queue: args.queue.clone().unwrap_or_default(),
        workflow: args.workflow.clone().unwrap_or_default(),
        labels: args.labels.iter().cloned().collect(),
        ..Default::default()
    };
    if request.limit == 0 {
        // Every matching run, a page at a time: each answer stays small however many there are.
        request.page_size = PAGE_SIZE;
    }
    let mut runs = Vec::new();
    loop {
        let page = client
            .list(request.clone())
            .await
            .map_err(api_error)
            .context("ps")?
            .into_inner();
        runs.extend(page.runs);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    // The API promises newest first; keep that order even if a daemon does not.
    runs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    if json {
        let list: Vec<_> = runs.iter().map(output::run_json).collect();
        output::print_json(&serde_json::json!({ "runs": list }), false)?;
    } else {
        let now = wf_supervisor::time::now_ms();
        output::print(&output::runs_table(&runs, now, args.no_trunc))?;
    }
    Ok(ExitCode::SUCCESS)
}
