//! `wfctl top`: a full-screen live view of the daemon (ratatui on crossterm): the host's counts
//! and one line per queue, the runs table (live first, then the latest finished; stuck runs in
//! red), one run's detail with its live log, and keys to kill, force-kill, restart or cancel the
//! selected run. It is a client of the public API only, so every action runs as the user who runs
//! `top`, with that user's role and an audit record; a refusal is shown in the footer.
//!
//! Theory of operation, the Elm way: `app.rs` holds the state as plain data and `update(app,
//! event)` changes it; `view.rs` draws it and changes nothing; `feed.rs` is everything with I/O
//! (the Watch stream and the polls, the keyboard, the clock, the log follower, the actions),
//! each sending [`app::Event`]s on one channel. The loop here reads that channel, folds every
//! waiting event in, draws once, and hands the commands `update` returned to the runner.
mod app;
mod feed;
mod view;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;

use super::connect::{Credentials, Target};
use app::{App, Cmd, Event};

#[derive(Debug, Args)]
#[command(
    after_help = "Keys: j/k or the arrows select a run; Enter shows its detail and \
                        follows its log (q or Esc goes back); K kills it (asks y/N, then shows \
                        the kill report); F force-kills it (KILL at once, no grace); R restarts \
                        it (a workflow run resumes its Claude session); C cancels a queued run; \
                        / filters by text (Enter keeps the filter, Esc clears it); s cycles the \
                        sort (live first, oldest first, cost, memory); q quits (also Ctrl-C).\n\
                        Every action is an API call as the user who runs top: roles and the \
                        audit trail apply, and a refusal is shown in the footer. While the \
                        daemon cannot be reached a red banner says so, and top reconnects by \
                        itself every second."
)]
pub struct TopArgs {}

/// Runs until `q` (or Ctrl-C); the terminal is given back as it was, also after a panic.
pub async fn run(target: Target, creds: Credentials, _args: TopArgs) -> anyhow::Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("top needs a terminal (use `wfctl ps` or `wfctl watch` in scripts)");
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let shared: feed::SharedClient = Arc::new(Mutex::new(None));
    let input = tx.clone();
    std::thread::Builder::new()
        .name("wfctl-top-input".into())
        .spawn(move || feed::terminal_input(input))
        .context("cannot start the keyboard reader")?;
    let clock = tokio::spawn(feed::clock(tx.clone()));
    let daemon = tokio::spawn(feed::daemon(
        target.clone(),
        creds,
        shared.clone(),
        tx.clone(),
    ));
    let mut runner = feed::Runner::new(shared, tx);

    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            // Raw mode may be on already: give the terminal back before saying why.
            ratatui::restore();
            return Err(e).context("cannot set up the terminal");
        }
    };
    let size = terminal
        .size()
        .map(|s| (s.width, s.height))
        .unwrap_or((80, 24));
    let mut app = App::new(target.to_string(), wf_supervisor::time::now_ms(), size);
    let result = async {
        loop {
            terminal
                .draw(|f| view::draw(f, &app))
                .context("cannot draw")?;
            let Some(first) = rx.recv().await else {
                return Ok(());
            };
            // Fold in everything that is waiting, then draw once.
            let mut events: Vec<Event> = vec![first];
            while let Ok(ev) = rx.try_recv() {
                events.push(ev);
            }
            for ev in events {
                for cmd in app::update(&mut app, ev) {
                    if cmd == Cmd::Quit {
                        return Ok(());
                    }
                    runner.run(cmd);
                }
            }
        }
    }
    .await;
    ratatui::restore();
    clock.abort();
    daemon.abort();
    result.map(|()| ExitCode::SUCCESS)
}
