//! `wfctl`: the command-line client of wf-supervisor. This file is only the entry point; the
//! command line, the connection to the daemon and every subcommand live in `src/cli/`.
#![deny(unsafe_code)]

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
