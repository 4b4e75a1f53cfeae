//! Where `top`'s events come from and where its commands go, all through the public gRPC API as
//! the user who runs it: the Watch stream of every run plus a poll once a second (List of the
//! live runs and the latest finished ones, GetQueueHealth, GetHealth), the terminal's keys and
//! resizes (a thread blocked on crossterm's reader), the clock, the log follower of the run on
//! screen, and the answers to the actions. Every source sends [`Event`]s on the one channel the
//! main loop reads. A lost connection is reported as [`Event::Disconnected`] and retried every
//! second until the daemon answers again.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::StreamExt;
use wf_supervisor::proto::{
    CancelRequest, GetHealthRequest, GetQueueHealthRequest, GetRequest, KillRequest, ListRequest,
    LogsRequest, RestartRequest, RunStatus, WatchRequest,
};

use super::super::connect::{self, Credentials, Target};
use super::super::{api_error, Client};
use super::app::{Cmd, Event, Key, Outcome, Snapshot};

/// How often the runs, queues and health are polled, and the clock ticks.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How many finished runs the table shows besides the live ones.
pub const FINISHED_SHOWN: u32 = 50;

/// How much of the followed run's output is shown first.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// The client of the current connection, shared with the action runner; None while lost.
pub type SharedClient = Arc<Mutex<Option<Client>>>;

fn current(shared: &SharedClient) -> Option<Client> {
    shared.lock().ok().and_then(|c| c.clone())
}

/// Connects, watches and polls until the channel closes; reconnects after every loss.
pub async fn daemon(
    target: Target,
    creds: Credentials,
    shared: SharedClient,
    tx: UnboundedSender<Event>,
) {
    loop {
        let error = match connect::connect_with(&target, &creds).await {
            Ok(client) => {
                if let Ok(mut c) = shared.lock() {
                    *c = Some(client.clone());
                }
                if tx.send(Event::Connected).is_err() {
                    return;
                }
                let error = session(client, &tx).await;
                if let Ok(mut c) = shared.lock() {
                    *c = None;
                }
                error
            }
            Err(e) => format!("{e:#}"),
        };
        if tx.send(Event::Disconnected(error)).is_err() {
            return;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// One connection's life: the Watch stream and the polls, until either fails (the error).
async fn session(mut client: Client, tx: &UnboundedSender<Event>) -> String {
    let mut watch = match client.watch(WatchRequest::default()).await {
        Ok(s) => s.into_inner(),
        Err(s) => return format!("watch: {:#}", api_error(s)),
    };
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = watch.next() => match item {
                Some(Ok(ev)) => {
                    if tx.send(Event::Watch(Box::new(ev))).is_err() {
                        return String::new();
                    }
                }
                Some(Err(s)) => return format!("watch: {:#}", api_error(s)),
                None => return "the daemon ended the watch stream".to_string(),
            },
            _ = poll.tick() => match snapshot(&mut client).await {
                Ok(snap) => {
                    if tx.send(Event::Snapshot(Box::new(snap))).is_err() {
                        return String::new();
                    }
                }
                Err(e) => return e,
            },
        }
    }
}

/// One poll. The runs are required (their failure is a lost connection); queues and health are
/// shown when the daemon answers them.
async fn snapshot(client: &mut Client) -> Result<Snapshot, String> {
    let live = [
        RunStatus::Queued,
        RunStatus::Starting,
        RunStatus::Running,
        RunStatus::Stopping,
    ];
    let mut runs = client
        .list(ListRequest {
            statuses: live.iter().map(|s| *s as i32).collect(),
            ..ListRequest::default()
        })
        .await
        .map_err(|s| format!("list: {:#}", api_error(s)))?
        .into_inner()
        .runs;
    let finished = client
        .list(ListRequest {
            statuses: super::super::purge::FINISHED
                .iter()
                .map(|s| *s as i32)
                .collect(),
            limit: FINISHED_SHOWN,
            ..ListRequest::default()
        })
        .await
        .map_err(|s| format!("list: {:#}", api_error(s)))?
        .into_inner()
        .runs;
    runs.extend(finished);
    let queues = client
        .get_queue_health(GetQueueHealthRequest {})
        .await
        .ok()
        .map(|r| r.into_inner());
    let health = client
        .get_health(GetHealthRequest {})
        .await
        .ok()
        .map(|r| r.into_inner());
    Ok(Snapshot {
        runs,
        queues,
        health,
    })
}

/// Ticks the clock once a second until the channel closes.
pub async fn clock(tx: UnboundedSender<Event>) {
    let mut every = tokio::time::interval(POLL_EVERY);
    loop {
        every.tick().await;
        if tx.send(Event::Tick(wf_supervisor::time::now_ms())).is_err() {
            return;
        }
    }
}

/// Reads the terminal (blocking; run on its own thread) until it fails or the channel closes.
pub fn terminal_input(tx: UnboundedSender<Event>) {
    use crossterm::event::{read, Event as Term};
    loop {
        let ev = match read() {
            Ok(Term::Key(k)) if k.kind != KeyEventKind::Release => match map_key(k) {
                Some(key) => Event::Key(key),
                None => continue,
            },
            Ok(Term::Resize(w, h)) => Event::Resize(w, h),
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

fn map_key(k: crossterm::event::KeyEvent) -> Option<Key> {
    if k.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(k.code, KeyCode::Char('c') | KeyCode::Char('d')).then_some(Key::Interrupt);
    }
    Some(match k.code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

/// Carries out the app's commands; holds the log follower of the run on screen.
pub struct Runner {
    shared: SharedClient,
    tx: UnboundedSender<Event>,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl Runner {
    pub fn new(shared: SharedClient, tx: UnboundedSender<Event>) -> Runner {
        Runner {
            shared,
            tx,
            follower: None,
        }
    }

    /// Starts `cmd`; its answer arrives later as an event. `Quit` is the caller's.
    pub fn run(&mut self, cmd: Cmd) {
        let tx = self.tx.clone();
        let refused =
            |what: String, why: String| Event::Done(Box::new(Outcome::Refused { what, why }));
        let Some(mut client) = current(&self.shared) else {
            let what = match &cmd {
                Cmd::Kill { run_id, .. } => Some(format!("kill {run_id}")),
                Cmd::Restart { run_id, .. } => Some(format!("restart {run_id}")),
                Cmd::Cancel { run_id } => Some(format!("cancel {run_id}")),
                _ => None,
            };
            if let Some(what) = what {
                let _ = tx.send(refused(
                    what,
                    "not sent: the daemon is not connected".into(),
                ));
            }
            if matches!(cmd, Cmd::StopLogs) {
                self.stop_logs();
            }
            return;
        };
        match cmd {
            Cmd::Quit => {}
            Cmd::Kill { run_id, force } => {
                tokio::spawn(async move {
                    let ev = match client
                        .kill(KillRequest {
                            run_id: run_id.clone(),
                            force,
                            reason: "wfctl top".into(),
                            ..KillRequest::default()
                        })
                        .await
                    {
                        Ok(r) => Event::Done(Box::new(Outcome::Killed(r.into_inner()))),
                        Err(s) => refused(format!("kill {run_id}"), format!("{:#}", api_error(s))),
                    };
                    let _ = tx.send(ev);
                });
            }
            Cmd::Restart { run_id, resume } => {
                tokio::spawn(async move {
                    let ev = match client
                        .restart(RestartRequest {
                            run_id: run_id.clone(),
                            reason: "wfctl top".into(),
                            resume,
                        })
                        .await
                    {
                        Ok(r) => {
                            let r = r.into_inner();
                            Event::Done(Box::new(Outcome::Restarted {
                                old_run_id: r.old_run_id,
                                run: r.run,
                                note: r.note,
                            }))
                        }
                        Err(s) => {
                            refused(format!("restart {run_id}"), format!("{:#}", api_error(s)))
                        }
                    };
                    let _ = tx.send(ev);
                });
            }
            Cmd::Cancel { run_id } => {
                tokio::spawn(async move {
                    let ev = match client
                        .cancel(CancelRequest {
                            run_id: run_id.clone(),
                            reason: "wfctl top".into(),
                            ..CancelRequest::default()
                        })
                        .await
                    {
                        Ok(r) => {
                            let r = r.into_inner();
                            Event::Done(Box::new(Outcome::Cancelled {
                                run: r.run,
                                run_id: r.run_id,
                                killed: r.killed,
                            }))
                        }
                        Err(s) => {
                            refused(format!("cancel {run_id}"), format!("{:#}", api_error(s)))
                        }
                    };
                    let _ = tx.send(ev);
                });
            }
            Cmd::GetRun(run_id) => {
                tokio::spawn(async move {
                    if let Ok(r) = client.get(GetRequest { run_id }).await {
                        let _ = tx.send(Event::Run(Box::new(r.into_inner())));
                    }
                });
            }
            Cmd::FollowLogs(run_id) => {
                self.stop_logs();
                self.follower = Some(tokio::spawn(follow(client, run_id, tx)));
            }
            Cmd::StopLogs => self.stop_logs(),
        }
    }

    fn stop_logs(&mut self) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
    }
}

/// Follows one run's output until it ends or the call fails.
async fn follow(mut client: Client, run_id: String, tx: UnboundedSender<Event>) {
    let error = match client
        .logs(LogsRequest {
            run_id: run_id.clone(),
            follow: true,
            tail_bytes: LOG_TAIL_BYTES,
        })
        .await
    {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        let ev = Event::Log {
                            run_id: run_id.clone(),
                            data: chunk.data,
                        };
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    Some(Err(s)) => break Some(format!("{:#}", api_error(s))),
                    None => break None,
                }
            }
        }
        Err(s) => Some(format!("{:#}", api_error(s))),
    };
    let _ = tx.send(Event::LogEnded { run_id, error });
}
