//! `wfctl completions SHELL`: the shell completion script for wfctl, generated from the same clap
//! definition that parses the command line (clap_complete), so it cannot drift from the options it
//! completes. Needs no daemon. The package installs the bash, zsh and fish scripts; `doc/` holds
//! them as generated (see `docs`), and a test keeps those equal to what this prints.
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The completion script for `shell`, as `wfctl completions SHELL` prints it.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "wfctl", &mut out);
    out
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script(args.shell))
        .and_then(|()| stdout.flush())
        .context("completions: writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_every_subcommand() {
        let subcommands: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        assert!(subcommands.iter().any(|s| s == "completions"));
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell)).expect("utf-8");
            for sub in &subcommands {
                assert!(
                    text.contains(sub.as_str()),
                    "{shell}: no {sub} in the script"
                );
            }
            assert!(text.contains("socket"), "{shell}: no --socket");
        }
    }

    #[test]
    fn the_shell_is_required_and_checked() {
        assert!(crate::cli::try_parse_from(["wfctl", "completions", "bash"]).is_ok());
        for bad in [
            &["wfctl", "completions"][..],
            &["wfctl", "completions", "tcsh"],
        ] {
            let e = crate::cli::try_parse_from(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
