//! `wfctl audit [ID] [--since DURATION] [-n N]`: the daemon's audit trail, newest first: every
//! mutating call (accepted or refused) and every automatic action, optionally only of one run or
//! from the last DURATION. A table by default; with --json, one object per record per line.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wf_supervisor::proto::ListAuditRequest;

use super::{api_error, output, Client};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records of this run (purged runs' records are kept).
    #[arg(value_name = "ID")]
    pub run_id: Option<String>,

    /// Only records from the last DURATION, e.g. 1h, 30m, 7d.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_age)]
    pub since: Option<u64>,

    /// At most this many records, the newest (default: the daemon's, 1000).
    #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,

    /// Show whole messages instead of cutting them at 60 characters.
    #[arg(long)]
    pub no_trunc: bool,
}

/// The `since` of the request: `age` milliseconds before `now`, never before the epoch (0 would
/// read as "from the start", which is what an age reaching back that far means anyway).
pub fn since_ms(now: i64, age_ms: Option<u64>) -> i64 {
    match age_ms {
        None => 0,
        Some(age) => now
            .saturating_sub(i64::try_from(age).unwrap_or(i64::MAX))
            .max(0),
    }
}

pub async fn run(client: &mut Client, args: AuditArgs, json: bool) -> anyhow::Result<ExitCode> {
    let run_id = args.run_id.unwrap_or_default();
    let what = if run_id.is_empty() {
        "audit".to_string()
    } else {
        format!("audit {run_id}")
    };
    let mut records = client
        .list_audit(ListAuditRequest {
            run_id,
            since: since_ms(wf_supervisor::time::now_ms(), args.since),
            limit: args.limit.unwrap_or(0),
        })
        .await
        .map_err(api_error)
        .context(what)?
        .into_inner()
        .records;
    // The API promises newest first; keep that order even if a daemon does not.
    records.sort_by_key(|a| std::cmp::Reverse((a.at, a.id)));
    if json {
        for record in &records {
            output::print_json(&output::audit_json(record), true)?;
        }
    } else {
        output::print(&output::audit_table(&records, args.no_trunc))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_counts_back_from_now() {
        assert_eq!(since_ms(1_700_000_000_000, None), 0);
        assert_eq!(
            since_ms(1_700_000_000_000, Some(3_600_000)),
            1_699_996_400_000
        );
        assert_eq!(since_ms(1_000, Some(5_000)), 0);
        assert_eq!(since_ms(1_000, Some(u64::MAX)), 0);
    }
}
