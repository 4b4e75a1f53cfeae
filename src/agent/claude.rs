//! The argv of a Claude Code CLI run in headless mode, built from a workflow template.
//!
//! The shape is fixed: `PROGRAM -p PROMPT --output-format stream-json --verbose [--resume ID]
//! [--model M] [--max-turns N] [--permission-mode MODE] [--append-system-prompt TEXT]
//! [EXTRA_ARGS...] [--allowedTools T1 T2 ...]`.
//! - The prompt goes right after `-p`: flags that take a list (`--allowedTools`, `--add-dir`, ...)
//!   would otherwise swallow it as one more list item.
//! - `stream-json` output needs `--verbose` in print mode; it is what the progress model reads.
//! - `--append-system-prompt` is passed on every start and on every resume: a resumed session
//!   does not keep it.
//! - `--allowedTools` comes last, so that its list ends where the argv ends.
//!
//! A prompt that starts with `-` would be read as an option; it gets one leading space.
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Flags the builder sets itself; `extra_args` must not repeat them.
const RESERVED_FLAGS: &[&str] = &[
    "-p",
    "--print",
    "--output-format",
    "--input-format",
    "-r",
    "--resume",
    "-c",
    "--continue",
    "--model",
    "--max-turns",
    "--permission-mode",
    "--allowedTools",
    "--allowed-tools",
    "--append-system-prompt",
];

/// The values `--permission-mode` takes in the Claude Code CLI this daemon is tested with
/// (2.1.197's `--help`: "choices: ..."). A CLI that lists more is asked at config load (see
/// `parse_permission_modes`), so a newer CLI's modes work without a new daemon.
pub const PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

/// The `--permission-mode` choices a CLI's `--help` lists:
/// `--permission-mode <mode>  ... (choices: "acceptEdits", "auto", ...)`, possibly wrapped
/// over several lines. Empty when the help has no such option.
pub fn parse_permission_modes(help: &str) -> Vec<String> {
    let Some(at) = help.find("--permission-mode") else {
        return Vec::new();
    };
    let rest = &help[at..];
    let Some(open) = rest.find("(choices:") else {
        return Vec::new();
    };
    // The choices end at the closing parenthesis; never look past the next option.
    let next_option = rest[2..].find("\n  -").map_or(rest.len(), |i| i + 2);
    if open > next_option {
        return Vec::new();
    }
    let list = &rest[open + "(choices:".len()..];
    let list = &list[..list.find(')').unwrap_or(list.len())];
    list.split(',')
        .map(|c| c.trim().trim_matches('"').to_string())
        .filter(|c| !c.is_empty() && !c.contains(char::is_whitespace))
        .collect()
}

/// How a workflow runs the Claude Code CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClaudeTemplate {
    /// The executable (default `claude`).
    pub program: String,
    /// `--model`.
    pub model: Option<String>,
    /// `--max-turns`.
    pub max_turns: Option<u32>,
    /// `--permission-mode` (`default`, `acceptEdits`, `plan`, `bypassPermissions`, ...).
    pub permission_mode: Option<String>,
    /// `--allowedTools`, one argv item per tool or rule (e.g. `Read`, `Bash(git log:*)`).
    pub allowed_tools: Vec<String>,
    /// `--append-system-prompt`.
    pub append_system_prompt: Option<String>,
    /// Passed as they are, before `--allowedTools`.
    pub extra_args: Vec<String>,
    /// `--permission-mode` values the installed CLI listed beyond `PERMISSION_MODES` (asked at
    /// config load; not stored with runs).
    #[serde(skip)]
    pub cli_permission_modes: Vec<String>,
}

impl Default for ClaudeTemplate {
    fn default() -> Self {
        ClaudeTemplate {
            program: "claude".into(),
            model: None,
            max_turns: None,
            permission_mode: None,
            allowed_tools: Vec::new(),
            append_system_prompt: None,
            extra_args: Vec::new(),
            cli_permission_modes: Vec::new(),
        }
    }
}

/// A template that would build a broken argv.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    #[error("program is empty")]
    EmptyProgram,
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} {value:?} starts with '-' and would be read as an option")]
    LooksLikeFlag { field: &'static str, value: String },
    #[error("max_turns must be at least 1")]
    ZeroMaxTurns,
    #[error("extra_args sets {arg:?}, which the template sets itself; use its own field")]
    ReservedFlag { arg: String },
    #[error("permission_mode {value:?} is not one the Claude CLI accepts ({accepted})")]
    UnknownPermissionMode { value: String, accepted: String },
}

impl TemplateError {
    /// The template field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            TemplateError::EmptyProgram => "program",
            TemplateError::Empty { field } | TemplateError::LooksLikeFlag { field, .. } => field,
            TemplateError::ZeroMaxTurns => "max_turns",
            TemplateError::ReservedFlag { .. } => "extra_args",
            TemplateError::UnknownPermissionMode { .. } => "permission_mode",
        }
    }
}

impl ClaudeTemplate {
    /// Check that the template builds a well-formed argv.
    pub fn validate(&self) -> Result<(), TemplateError> {
        if self.program.trim().is_empty() {
            return Err(TemplateError::EmptyProgram);
        }
        if self.max_turns == Some(0) {
            return Err(TemplateError::ZeroMaxTurns);
        }
        for (field, value) in [
            ("model", &self.model),
            ("permission_mode", &self.permission_mode),
        ] {
            if let Some(v) = value {
                check_value(field, v)?;
            }
        }
        if let Some(mode) = &self.permission_mode {
            if !self.accepts_permission_mode(mode) {
                let mut accepted: Vec<&str> = PERMISSION_MODES.to_vec();
                accepted.extend(self.cli_permission_modes.iter().map(String::as_str));
                accepted.sort_unstable();
                accepted.dedup();
                return Err(TemplateError::UnknownPermissionMode {
                    value: mode.clone(),
                    accepted: accepted.join(", "),
                });
            }
        }
        for tool in &self.allowed_tools {
            check_value("allowed_tools", tool)?;
        }
        for arg in &self.extra_args {
            let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
            if RESERVED_FLAGS.contains(&name) {
                return Err(TemplateError::ReservedFlag { arg: arg.clone() });
            }
        }
        Ok(())
    }
}

impl ClaudeTemplate {
    /// Whether `--permission-mode MODE` is one this daemon knows or the installed CLI listed.
    pub fn accepts_permission_mode(&self, mode: &str) -> bool {
        PERMISSION_MODES.contains(&mode) || self.cli_permission_modes.iter().any(|m| m == mode)
    }
}

fn check_value(field: &'static str, value: &str) -> Result<(), TemplateError> {
    if value.trim().is_empty() {
        return Err(TemplateError::Empty { field });
    }
    if value.starts_with('-') {
        return Err(TemplateError::LooksLikeFlag {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// The argv (program first) for a run of `t` with `prompt`, resuming `resume_session` if given.
pub fn build_argv(t: &ClaudeTemplate, prompt: &str, resume_session: Option<&str>) -> Vec<String> {
    let mut argv = Vec::with_capacity(12 + t.extra_args.len() + t.allowed_tools.len());
    argv.push(t.program.clone());
    argv.push("-p".into());
    argv.push(if prompt.starts_with('-') {
        format!(" {prompt}")
    } else {
        prompt.to_string()
    });
    argv.extend(["--output-format", "stream-json", "--verbose"].map(String::from));
    if let Some(session) = resume_session {
        argv.push("--resume".into());
        argv.push(session.to_string());
    }
    if let Some(model) = &t.model {
        argv.push("--model".into());
        argv.push(model.clone());
    }
    if let Some(n) = t.max_turns {
        argv.push("--max-turns".into());
        argv.push(n.to_string());
    }
    if let Some(mode) = &t.permission_mode {
        argv.push("--permission-mode".into());
        argv.push(mode.clone());
    }
    if let Some(text) = &t.append_system_prompt {
        argv.push("--append-system-prompt".into());
        argv.push(text.clone());
    }
    argv.extend(t.extra_args.iter().cloned());
    if !t.allowed_tools.is_empty() {
        argv.push("--allowedTools".into());
        argv.extend(t.allowed_tools.iter().cloned());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> ClaudeTemplate {
        ClaudeTemplate {
            program: "/usr/local/bin/claude".into(),
            model: Some("claude-sonnet-4-5".into()),
            max_turns: Some(40),
            permission_mode: Some("acceptEdits".into()),
            allowed_tools: vec!["Read".into(), "Bash(git log:*)".into(), "Edit".into()],
            append_system_prompt: Some("Write a heartbeat to fd 3.".into()),
            extra_args: vec!["--add-dir".into(), "../shared".into()],
            cli_permission_modes: Vec::new(),
        }
    }

    /// `claude --help` of 2.1.197, the option and its neighbours as printed.
    const HELP: &str = "  --model <model>                       Model for the current session\n\
  --permission-mode <mode>              Permission mode to use for the session\n\
                                        (choices: \"acceptEdits\", \"auto\",\n\
                                        \"bypassPermissions\", \"default\",\n\
                                        \"dontAsk\", \"plan\")\n\
  --plugin-dir <path>                   Load plugins (choices: \"x\")\n";

    #[test]
    fn permission_modes_are_read_from_the_clis_help() {
        assert_eq!(parse_permission_modes(HELP), PERMISSION_MODES);
        assert!(parse_permission_modes("  --model <m>\n").is_empty());
        // Choices of another option are not taken for the permission mode's.
        let no_choices = "  --permission-mode <mode>  Mode\n  --other <x>  (choices: \"y\")\n";
        assert!(parse_permission_modes(no_choices).is_empty());
    }

    #[test]
    fn permission_mode_must_be_one_the_cli_accepts() {
        for mode in PERMISSION_MODES {
            let t = ClaudeTemplate {
                permission_mode: Some(mode.to_string()),
                ..full()
            };
            assert_eq!(t.validate(), Ok(()), "{mode}");
        }
        let bad = ClaudeTemplate {
            permission_mode: Some("yolo".into()),
            ..full()
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.field(), "permission_mode");
        assert!(
            e.to_string().contains("\"yolo\"") && e.to_string().contains("acceptEdits, auto"),
            "{e}"
        );
        // One a newer CLI listed is accepted.
        let newer = ClaudeTemplate {
            cli_permission_modes: vec!["yolo".into()],
            ..bad
        };
        assert_eq!(newer.validate(), Ok(()));
    }

    #[test]
    fn minimal_argv() {
        assert_eq!(
            build_argv(&ClaudeTemplate::default(), "fix the build", None),
            vec![
                "claude",
                "-p",
                "fix the build",
                "--output-format",
                "stream-json",
                "--verbose"
            ]
        );
    }

    #[test]
    fn full_argv_order() {
        assert_eq!(
            build_argv(&full(), "fix the build", None),
            vec![
                "/usr/local/bin/claude",
                "-p",
                "fix the build",
                "--output-format",
                "stream-json",
                "--verbose",
                "--model",
                "claude-sonnet-4-5",
                "--max-turns",
                "40",
                "--permission-mode",
                "acceptEdits",
                "--append-system-prompt",
                "Write a heartbeat to fd 3.",
                "--add-dir",
                "../shared",
                "--allowedTools",
                "Read",
                "Bash(git log:*)",
                "Edit",
            ]
        );
    }

    #[test]
    fn resume_keeps_the_system_prompt() {
        let argv = build_argv(
            &full(),
            "continue",
            Some("4c1f9a7e-2b6d-4e83-9a15-7d0c3e8b5f21"),
        );
        assert_eq!(&argv[1..3], ["-p", "continue"]);
        assert_eq!(
            &argv[6..8],
            ["--resume", "4c1f9a7e-2b6d-4e83-9a15-7d0c3e8b5f21"]
        );
        let pos = argv.iter().position(|a| a == "--append-system-prompt");
        assert_eq!(
            pos.map(|i| argv[i + 1].as_str()),
            Some("Write a heartbeat to fd 3.")
        );
        // The tool list is last: nothing after it can be swallowed.
        assert_eq!(argv.last().map(String::as_str), Some("Edit"));
    }

    #[test]
    fn prompt_is_right_after_p_and_kept_whole() {
        let prompt = "line one\nline two --allowedTools \"x\"";
        let argv = build_argv(&full(), prompt, None);
        assert_eq!(argv[1], "-p");
        assert_eq!(argv[2], prompt);
        assert_eq!(argv.iter().filter(|a| a.as_str() == prompt).count(), 1);
    }

    #[test]
    fn dash_prompt_is_not_an_option() {
        let argv = build_argv(&ClaudeTemplate::default(), "--help me", None);
        assert_eq!(argv[2], " --help me");
    }

    #[test]
    fn validation() {
        assert_eq!(full().validate(), Ok(()));
        assert_eq!(ClaudeTemplate::default().validate(), Ok(()));
        let bad = |f: fn(&mut ClaudeTemplate)| {
            let mut t = ClaudeTemplate::default();
            f(&mut t);
            t.validate()
        };
        assert_eq!(
            bad(|t| t.program = " ".into()),
            Err(TemplateError::EmptyProgram)
        );
        assert_eq!(
            bad(|t| t.max_turns = Some(0)),
            Err(TemplateError::ZeroMaxTurns)
        );
        assert_eq!(
            bad(|t| t.model = Some(String::new())),
            Err(TemplateError::Empty { field: "model" })
        );
        assert_eq!(
            bad(|t| t.allowed_tools = vec!["--dangerously-skip-permissions".into()]),
            Err(TemplateError::LooksLikeFlag {
                field: "allowed_tools",
                value: "--dangerously-skip-permissions".into()
            })
        );
        assert_eq!(
            bad(|t| t.extra_args = vec!["--output-format=json".into()]),
            Err(TemplateError::ReservedFlag {
                arg: "--output-format=json".into()
            })
        );
        assert_eq!(
            bad(|t| t.extra_args = vec!["-p".into()]),
            Err(TemplateError::ReservedFlag { arg: "-p".into() })
        );
        assert_eq!(
            bad(|t| t.extra_args = vec!["--add-dir".into(), "x".into()]),
            Ok(())
        );
    }

    #[test]
    fn template_deserializes_with_defaults() {
        let t: ClaudeTemplate = match serde_json::from_str(r#"{"max_turns": 5}"#) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(t.program, "claude");
        assert_eq!(t.max_turns, Some(5));
    }
}
