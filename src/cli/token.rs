//! `wfctl token create NAME --role ROLE`: a new token for TCP callers. The secret goes on the
//! first line of stdout (hand it to the caller: `--token-file` or `WF_SUPERVISOR_TOKEN`), the
//! line for the daemon's tokens file (`NAME ROLE SHA256`) on the second; the daemon keeps only
//! the hash. Nothing is sent to the daemon: add the line to `[access] tokens_file` and reload.
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use wf_supervisor::access::{tokens, Role};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new secret (line 1) and its tokens-file line (line 2).
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The token's name, as the audit trail will show it (e.g. ci-bot).
    pub name: String,
    /// viewer, operator or admin.
    #[arg(long, value_parser = ["viewer", "operator", "admin"])]
    pub role: String,
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create(a) => {
            let role = Role::parse(&a.role).ok_or_else(|| anyhow!("unknown role {}", a.role))?;
            let (secret, line) = tokens::create(&a.name, role).map_err(|e| anyhow!(e))?;
            println!("{secret}");
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
