//! `wfctl logs ID`: a run's output, the tail first and (with --follow) new output until the run
//! ends. Stdout chunks go to our stdout and stderr chunks to our stderr, byte for byte; with
//! --json, one object per chunk per line on stdout.
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio_stream::StreamExt;
use wf_supervisor::proto::{LogStream, LogsRequest};

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id.
    #[arg(value_name = "ID")]
    pub run_id: String,

    /// Keep printing new output until the run ends.
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// How much of the end of each stream to print first, e.g. 4096, 64K, 1M (default: 64K).
    #[arg(long, value_name = "BYTES", value_parser = super::parse_bytes)]
    pub tail: Option<u64>,
}

pub async fn run(client: &mut Client, args: LogsArgs, json: bool) -> anyhow::Result<ExitCode> {
    let what = || format!("logs {}", args.run_id);
    let mut stream = client
        .logs(LogsRequest {
            run_id: args.run_id.clone(),
            follow: args.follow,
            tail_bytes: args.tail.unwrap_or(0),
        })
        .await
        .map_err(api_error)
        .with_context(what)?
        .into_inner();
    while let Some(item) = stream.next().await {
        let chunk = item.map_err(api_error).with_context(what)?;
        if json {
            output::print_json(&output::chunk_json(&chunk), true)?;
        } else if chunk.stream == LogStream::Stderr as i32 {
            let mut err = std::io::stderr().lock();
            err.write_all(&chunk.data)?;
            err.flush()?;
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk.data)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
