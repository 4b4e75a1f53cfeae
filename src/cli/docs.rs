//! The generated documentation the package ships, kept under `doc/`: a man page for wfctl and one
//! for each of its subcommands (section 1), wf-supervisor(8), wf-supervisor.conf(5), and wfctl's
//! bash, zsh and fish completion scripts. The pages for the two programs come from their clap
//! definitions (clap_mangen); the configuration page comes from the documented default config
//! `src/default-config.toml`, read by `parse_documented_config` below (a comment block documents
//! the key under it; a commented-out key is one with no default, shown as an example).
//!
//! The files are committed so that `cargo deb` alone can package them. `generated_docs_are_current`
//! fails when a definition changed and the files were not regenerated;
//! `WF_REGENERATE_DOCS=1 cargo test --bin wfctl generated_docs` rewrites them.
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use roff::{bold, italic, roman, Roff};

use super::Cli;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The `.TH` manual name shared by every page.
const MANUAL: &str = "wf-supervisor";

/// Every generated file, as (path under `doc/`, content), in a stable order.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut wfctl = Cli::command().disable_help_subcommand(true);
    wfctl.build();
    wfctl_pages(&wfctl, &mut files);
    files.push((
        PathBuf::from("man/wf-supervisor.8"),
        daemon_page(wf_supervisor::daemon::Args::command()),
    ));
    files.push((
        PathBuf::from("man/wf-supervisor.conf.5"),
        conf_page(wf_supervisor::config::DEFAULT_CONFIG).into_bytes(),
    ));
    for (shell, name) in [
        (Shell::Bash, "wfctl.bash"),
        (Shell::Zsh, "_wfctl"),
        (Shell::Fish, "wfctl.fish"),
    ] {
        files.push((
            Path::new("completions").join(name),
            super::completions::script(shell),
        ));
    }
    files
}

/// `cmd`'s page and, recursively, those of its subcommands (`wfctl-spawn.1`, ...), each with a
/// SEE ALSO section.
fn wfctl_pages(cmd: &clap::Command, files: &mut Vec<(PathBuf, Vec<u8>)>) {
    let man = Man::new(cmd.clone())
        .section("1")
        .source(format!("wfctl {VERSION}"))
        .manual(MANUAL);
    let mut page = Vec::new();
    render(&man, &mut page);
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let mut see_also = if name == "wfctl" {
        vec![]
    } else {
        vec![("wfctl", "1")]
    };
    see_also.extend([("wf-supervisor", "8"), ("wf-supervisor.conf", "5")]);
    page.extend(see_also_section(&see_also).into_bytes());
    files.push((PathBuf::from(format!("man/{}", man.get_filename())), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        wfctl_pages(sub, files);
    }
}

fn render(man: &Man, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    man.render(out).expect("render a man page into memory");
}

/// wf-supervisor(8): the clap page plus what an operator needs around it.
fn daemon_page(cmd: clap::Command) -> Vec<u8> {
    let man = Man::new(cmd)
        .section("8")
        .source(format!("wf-supervisor {VERSION}"))
        .manual(MANUAL);
    let mut page = Vec::new();
    render(&man, &mut page);
    let mut r = Roff::new();
    r.control("SH", ["SIGNALS"]);
    term(&mut r, "SIGTERM, SIGINT");
    r.text([roman(
        "Stop accepting calls, end every live run through the kill state machine (stop \
         signals, grace, KILL, verify), bounded by daemon.shutdown_timeout_ms, and exit 0.",
    )]);
    term(&mut r, "SIGHUP");
    r.text([roman(
        "Read the config file again: limits, timeouts and workflow templates change live; a bad \
         file is refused with a logged error and the old config stays.",
    )]);
    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/wf-supervisor/config.toml",
            "The config file of the packaged service (wf-supervisor.conf(5)).",
        ),
        (
            "/run/wf-supervisor/wf.sock",
            "The API socket; under systemd, wf-supervisor.socket holds it.",
        ),
        (
            "/var/lib/wf-supervisor",
            "The state directory: the store wf-supervisor.db, run logs, the agents' home.",
        ),
    ] {
        term(&mut r, path);
        r.text([roman(what)]);
    }
    page.extend(r.render().into_bytes());
    page.extend(
        see_also_section(&[
            ("wfctl", "1"),
            ("wf-supervisor.conf", "5"),
            ("systemd.service", "5"),
        ])
        .into_bytes(),
    );
    page
}

/// A `.TP` paragraph's bold term.
fn term(r: &mut Roff, text: &str) {
    r.control("TP", []).text([bold(text)]);
}

fn see_also_section(pages: &[(&str, &str)]) -> String {
    let mut r = Roff::new();
    r.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, (name, section)) in pages.iter().enumerate() {
        line.push(bold(*name));
        let sep = if i + 1 < pages.len() { "), " } else { ")" };
        line.push(roman(format!("({section}{sep}")));
    }
    r.text(line);
    r.render()
}

/// A key of the documented default config.
#[derive(Debug, PartialEq)]
struct Key {
    name: String,
    value: String,
    /// false: the default file has it commented out (no default; the value is an example).
    set: bool,
    doc: Vec<String>,
}

/// A `[table]` of the documented default config with its keys, in file order.
#[derive(Debug, PartialEq)]
struct Section {
    name: String,
    intro: Vec<String>,
    keys: Vec<Key>,
}

/// `key = value` (or the text after `#` of a commented-out one), when the key is a bare TOML key.
fn key_line(s: &str) -> Option<(String, String)> {
    let (k, v) = s.split_once('=')?;
    let (k, v) = (k.trim(), v.trim());
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (bare && !v.is_empty()).then(|| (k.to_string(), v.to_string()))
}

/// Reads the layout of `src/default-config.toml`: the comment lines above the first table are the
/// preamble; a comment block directly above a key documents it (and the keys right below it that
/// have none of their own, as with `memory_max_bytes` and `pids_max`); one above a table header,
/// or followed by a blank line, introduces the table.
fn parse_documented_config(text: &str) -> (Vec<String>, Vec<Section>) {
    let mut preamble = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    // Whether the line before was a key (set or commented out).
    let mut after_key = false;
    for line in text.lines().map(str::trim) {
        let key = match line.strip_prefix('#') {
            Some(comment) => key_line(comment.trim()).map(|(n, v)| (n, v, false)),
            None => key_line(line).map(|(n, v)| (n, v, true)),
        };
        let was_after_key = std::mem::replace(&mut after_key, false);
        if line.is_empty() {
            let block = std::mem::take(&mut pending);
            match sections.last_mut() {
                Some(s) => s.intro.extend(block),
                None => preamble.extend(block),
            }
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let intro = std::mem::take(&mut pending);
            sections.push(Section {
                name: name.trim().to_string(),
                intro,
                keys: Vec::new(),
            });
        } else if let (Some((name, value, set)), Some(s)) = (key, sections.last_mut()) {
            let mut doc = std::mem::take(&mut pending);
            if doc.is_empty() && was_after_key {
                doc = s.keys.last().map(|k| k.doc.clone()).unwrap_or_default();
            }
            s.keys.push(Key {
                name,
                value,
                set,
                doc,
            });
            after_key = true;
        } else if let Some(comment) = line.strip_prefix('#') {
            pending.push(comment.trim().to_string());
        }
    }
    match sections.last_mut() {
        Some(s) => s.intro.extend(pending),
        None => preamble.extend(pending),
    }
    (preamble, sections)
}

/// wf-supervisor.conf(5) from the documented default config.
fn conf_page(default_config: &str) -> String {
    let (preamble, sections) = parse_documented_config(default_config);
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "wf-supervisor.conf",
            "5",
            "",
            &format!("wf-supervisor {VERSION}"),
            MANUAL,
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman(
        "wf-supervisor.conf - configuration of the wf-supervisor daemon",
    )]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([bold("/etc/wf-supervisor/config.toml")]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(preamble.join(" "))]);
    r.control("PP", []);
    r.text([
        roman("A TOML file, read by "),
        bold("wf-supervisor --config"),
        italic(" FILE"),
        roman(
            " at start and again on SIGHUP (systemctl reload wf-supervisor). A bad file is \
             refused with the file, line and key named. ",
        ),
    ]);
    r.control("PP", []);
    r.text([roman(
        "Each key below is shown with its default value. A key marked (example) is not set by \
         default: its description says what applies without it.",
    )]);
    for s in &sections {
        r.control("SH", [format!("[{}]", s.name).as_str()]);
        if !s.intro.is_empty() {
            r.text([roman(s.intro.join(" "))]);
        }
        for k in &s.keys {
            r.control("TP", []);
            let mut head = vec![bold(&k.name), roman(" = "), roman(&k.value)];
            if !k.set {
                head.push(italic(" (example)"));
            }
            r.text(head);
            r.text([roman(k.doc.join(" "))]);
        }
    }
    r.control("SH", ["[workflows.NAME]"]);
    r.text([roman(
        "Workflow templates: a program (the Claude Code CLI or a stand-in) with its model, \
         tools, prompts, environment, allowed working directories, stop signals and stuck rules. \
         The packaged /etc/wf-supervisor/config.toml has one with every key; the README (in \
         /usr/share/doc/wf-supervisor) explains them.",
    )]);
    r.control("SH", ["FILES"]);
    term(&mut r, "/etc/wf-supervisor/config.toml");
    r.text([roman(
        "The config file of the packaged service (a conffile).",
    )]);
    let mut page = r.render();
    page.push_str(&see_also_section(&[("wf-supervisor", "8"), ("wfctl", "1")]));
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("doc")
    }

    #[test]
    fn generated_docs_are_current() {
        let regenerate = std::env::var("WF_REGENERATE_DOCS").as_deref() == Ok("1");
        let files = generated();
        let mut stale = Vec::new();
        for (rel, content) in &files {
            let path = doc_dir().join(rel);
            if std::fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
                stale.push(rel.display().to_string());
                if regenerate {
                    std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
                    std::fs::write(&path, content).expect("write");
                }
            }
        }
        // Pages of subcommands that no longer exist.
        for dir in ["man", "completions"] {
            let Ok(entries) = std::fs::read_dir(doc_dir().join(dir)) else {
                continue;
            };
            for e in entries.map(|e| e.expect("read doc/")) {
                let rel = Path::new(dir).join(e.file_name());
                if !files.iter().any(|(r, _)| *r == rel) {
                    stale.push(format!("{} (no longer generated)", rel.display()));
                    if regenerate {
                        std::fs::remove_file(e.path()).expect("remove");
                    }
                }
            }
        }
        assert!(
            regenerate || stale.is_empty(),
            "doc/ is out of date with the clap definitions or src/default-config.toml: {}; \
             run `WF_REGENERATE_DOCS=1 cargo test --bin wfctl generated_docs` and commit doc/",
            stale.join(", ")
        );
    }

    #[test]
    fn every_subcommand_has_a_page_and_the_programs_their_sections() {
        let files = generated();
        let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        for sub in Cli::command().get_subcommands() {
            let page = format!("man/wfctl-{}.1", sub.get_name());
            assert!(names.contains(&page), "no {page} in {names:?}");
        }
        for page in [
            "man/wfctl.1",
            "man/wf-supervisor.8",
            "man/wf-supervisor.conf.5",
        ] {
            assert!(names.contains(&page.to_string()), "no {page}");
        }
        let text = |name: &str| {
            let (_, c) = files
                .iter()
                .find(|(p, _)| p.display().to_string() == name)
                .expect("page");
            String::from_utf8(c.clone()).expect("utf-8")
        };
        assert!(text("man/wfctl.1").contains("\n.TH wfctl 1 "));
        assert!(text("man/wf-supervisor.8").contains("\n.TH wf-supervisor 8 "));
        assert!(text("man/wf-supervisor.8").contains("\\-\\-config"));
        assert!(text("man/wfctl-spawn.1").contains("SEE ALSO"));
    }

    #[test]
    fn the_conf_page_documents_every_key_of_the_default_config() {
        let page = conf_page(wf_supervisor::config::DEFAULT_CONFIG);
        let (_, sections) = parse_documented_config(wf_supervisor::config::DEFAULT_CONFIG);
        // Every key the file sets, as TOML reads it, is documented, with its comment.
        let parsed: toml::Table =
            toml::from_str(wf_supervisor::config::DEFAULT_CONFIG).expect("default config");
        for (table, keys) in &parsed {
            let keys = keys.as_table().expect("a table");
            let section = sections
                .iter()
                .find(|s| &s.name == table)
                .unwrap_or_else(|| panic!("no section [{table}]"));
            for name in keys.keys() {
                let key = section
                    .keys
                    .iter()
                    .find(|k| &k.name == name)
                    .unwrap_or_else(|| panic!("{table}.{name} not documented"));
                assert!(key.set, "{table}.{name}");
                assert!(
                    !key.doc.is_empty(),
                    "{table}.{name} has no comment above it"
                );
            }
            assert!(page.contains(&format!(".SH [{table}]")), "{table}");
        }
        // Keys without a default are in the page too, marked as examples.
        let user = sections
            .iter()
            .flat_map(|s| &s.keys)
            .find(|k| k.name == "user")
            .expect("runs.user");
        assert!(!user.set);
        assert!(page.contains("(example)"));
    }

    #[test]
    fn the_config_reader_attaches_comments_to_keys_and_tables() {
        let text = "# Intro line one.\n# Intro line two.\n\n# About a.\n[a]\n# Doc of x,\n# two lines.\nx = 1\n# y = \"e.g.\"\n\n# Free text = not a key.\n\n[b]\nz = true\n";
        let (preamble, sections) = parse_documented_config(text);
        assert_eq!(preamble, ["Intro line one.", "Intro line two."]);
        assert_eq!(
            sections,
            [
                Section {
                    name: "a".into(),
                    intro: vec!["About a.".into(), "Free text = not a key.".into()],
                    keys: vec![
                        Key {
                            name: "x".into(),
                            value: "1".into(),
                            set: true,
                            doc: vec!["Doc of x,".into(), "two lines.".into()],
                        },
                        // Right below x, without a comment of its own: x's.
                        Key {
                            name: "y".into(),
                            value: "\"e.g.\"".into(),
                            set: false,
                            doc: vec!["Doc of x,".into(), "two lines.".into()],
                        },
                    ],
                },
                Section {
                    name: "b".into(),
                    intro: vec![],
                    keys: vec![Key {
                        name: "z".into(),
                        value: "true".into(),
                        set: true,
                        doc: vec![],
                    }],
                },
            ]
        );
    }
}
