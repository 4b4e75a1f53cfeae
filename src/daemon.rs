//! The daemon's life: arguments -> config -> state dir and socket -> core, reaper and API ->
//! serve until SIGTERM/SIGINT -> end every live run through the kill state machine -> exit 0.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use futures::StreamExt;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::grpc::listen::{self, TlsSettings};
use crate::grpc::{Access, SupervisorService};
use crate::process::cgroup::{CgroupEntry, Containment};
use crate::process::reaper::Reaper;
use crate::proto::supervisor_server::SupervisorServer;
use crate::store::Store;
use crate::supervisor::{self, CoreSettings};

/// wf-supervisor: runs AI-agent workflows as its own children and ends them completely on demand.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// TOML config file; without it the embedded default config is used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Unix socket for the API (overrides the config).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Directory for run logs and state (overrides the config).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Also serve the API on this TCP address, e.g. 127.0.0.1:7443.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Log format: text (stderr), json (stderr), or journald. Default: journald when stderr is
    /// the journal (under systemd), else text.
    #[arg(long, value_name = "FORMAT")]
    pub log: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
    Journald,
}

/// The first folder of a systemd directory variable (systemd may pass several, separated by
/// ':'; the first is ours).
fn first_dir(var: &str) -> Option<PathBuf> {
    let v = std::env::var_os(var)?;
    let first = v
        .to_string_lossy()
        .split(':')
        .next()
        .unwrap_or("")
        .to_string();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The socket path: flag, config, `$RUNTIME_DIRECTORY/wf.sock`, `/run/wf-supervisor/wf.sock` as
/// root, else `$XDG_RUNTIME_DIR/wf-supervisor/wf.sock`.
pub fn default_socket() -> anyhow::Result<PathBuf> {
    if let Some(first) = first_dir("RUNTIME_DIRECTORY") {
        return Ok(first.join("wf.sock"));
    }
    if is_root() {
        return Ok(PathBuf::from("/run/wf-supervisor/wf.sock"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Ok(Path::new(&d).join("wf-supervisor").join("wf.sock")),
        None => bail!("no socket path: set --socket, RUNTIME_DIRECTORY or XDG_RUNTIME_DIR"),
    }
}

/// The state dir: flag, config, `$STATE_DIRECTORY`, `/var/lib/wf-supervisor` as root, else
/// `$XDG_STATE_HOME/wf-supervisor` (or `~/.local/state/wf-supervisor`).
fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(first) = first_dir("STATE_DIRECTORY") {
        return Ok(first);
    }
    if is_root() {
        return Ok(PathBuf::from("/var/lib/wf-supervisor"));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(Path::new(&d).join("wf-supervisor"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(Path::new(&h).join(".local/state/wf-supervisor")),
        None => bail!("no state dir: set --state-dir, STATE_DIRECTORY or HOME"),
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WF_LOG")
        .or_else(|_| EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Journald => match tracing_journald::layer() {
            // Fields go to the journal under their own names in capitals: RUN_ID, PID, PHASE.
            Ok(j) => registry
                .with(
                    j.with_field_prefix(None)
                        .with_syslog_identifier("wf-supervisor".into()),
                )
                .init(),
            Err(e) => {
                registry
                    .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                    .init();
                warn!(error = %e, "journald is not reachable; logging to stderr");
            }
        },
    }
}

/// Entry point of the `wf-supervisor` binary.
pub fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Refuse a bad config before anything else happens.
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    let format = args.log.unwrap_or(if crate::systemd::stderr_is_journal() {
        LogFormat::Journald
    } else {
        LogFormat::Text
    });
    init_logging(format);
    // Before the runtime exists, so that every thread it starts inherits the value.
    apply_nice(config.daemon_nice);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wf-supervisor")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, config))
}

/// Give the daemon's threads `daemon.nice`; a refusal is logged and the daemon goes on at the
/// priority it has.
fn apply_nice(nice: i32) {
    let before = crate::process::priority::nice_of(0).ok();
    if before == Some(nice) {
        return;
    }
    match crate::process::priority::set_own_nice(nice) {
        Ok(threads) => info!(
            nice,
            was = before,
            threads,
            "scheduling priority set (daemon.nice); runs start at runs.nice"
        ),
        Err(e) => warn!(
            nice,
            current = before,
            error = %e,
            "cannot set daemon.nice (it needs CAP_SYS_NICE to go below the current value); \
             the daemon keeps its priority and may wait for the CPU behind busy agents"
        ),
    }
}

/// Bind the API socket with the configured mode and group (`[daemon] socket_mode`,
/// `socket_group`): who may connect at all; roles then decide what each caller may do.
async fn bind_socket(path: &Path, config: &Config) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create socket directory {}", parent.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "another daemon is already serving {}; stop it or pick another --socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind socket {}", path.display()))?;
    if let Some(group) = &config.socket_group {
        let g = nix::unistd::Group::from_name(group)
            .with_context(|| format!("cannot look up daemon.socket_group {group:?}"))?
            .with_context(|| format!("daemon.socket_group {group:?} does not exist"))?;
        nix::unistd::chown(path, None, Some(g.gid)).with_context(|| {
            format!(
                "cannot give socket {} to group {group} (daemon.socket_group)",
                path.display()
            )
        })?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.socket_mode))
        .with_context(|| format!("cannot set permissions on {}", path.display()))?;
    Ok(listener)
}

async fn serve(args: Args, config: Config) -> anyhow::Result<()> {
    let socket = match args.socket.clone().or(config.socket.clone()) {
        Some(p) => p,
        None => default_socket()?,
    };
    let state_dir = match args.state_dir.clone().or(config.state_dir.clone()) {
        Some(p) => p,
        None => default_state_dir()?,
    };
    let listen = args.listen.or(config.listen);
    // Refuse an unauthenticated or cleartext TCP listener before anything else happens.
    if let Some(addr) = listen {
        crate::access::check_tcp(
            addr,
            config.tls.is_some(),
            config.access.tokens_file.is_some(),
        )
        .map_err(anyhow::Error::msg)?;
    }
    // So is a metrics listener off loopback without TLS.
    if let Some(addr) = config.metrics.listen {
        crate::http::mode_for(addr, config.tls.is_some()).map_err(anyhow::Error::msg)?;
    }
    let access = Access::new(&config, nix::unistd::geteuid().as_raw(), is_root())
        .context("cannot load the access settings")?;
    let metrics_tls = config.metrics.listen.is_some_and(|a| !a.ip().is_loopback());
    let tls = match (&config.tls, listen.is_some() || metrics_tls) {
        (Some(t), true) => Some(TlsSettings::load(t).context("cannot load the TLS settings")?),
        _ => None,
    };
    if listen.is_some()
        && config.access.tokens_file.is_none()
        && config.tls.as_ref().is_none_or(|t| t.client_ca.is_none())
    {
        warn!("the TCP listener has no way to authenticate callers: every TCP call will be UNAUTHENTICATED (set [access] tokens_file or [tls] client_ca)");
    }
    if let Some(m) = &access.current().root_agents {
        warn!(reason = m.as_str(), "agents run as root");
    }
    for d in [
        state_dir.clone(),
        state_dir.join("runs"),
        state_dir.join("work"),
    ] {
        std::fs::create_dir_all(&d)
            .with_context(|| format!("cannot create state directory {}", d.display()))?;
    }
    let default_cwd = config
        .default_cwd
        .clone()
        .unwrap_or_else(|| state_dir.join("work"));

    let agent_user = match &config.user {
        None => None,
        Some(name) => {
            if !is_root() {
                bail!("runs.user = {name:?} needs the daemon to run as root");
            }
            let u = nix::unistd::User::from_name(name)
                .with_context(|| format!("cannot look up runs.user {name:?}"))?
                .with_context(|| format!("runs.user {name:?} does not exist"))?;
            // The default work folder must be the agents' to write in.
            let work = state_dir.join("work");
            let _ = nix::unistd::chown(&work, Some(u.uid), Some(u.gid));
            info!(
                user = name.as_str(),
                uid = u.uid.as_raw(),
                "agents run as an unprivileged user"
            );
            Some(supervisor::AgentUser {
                name: name.clone(),
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir,
            })
        }
    };
    if let Err(e) = Reaper::become_subreaper() {
        warn!(error = %e, "cannot become a child subreaper; orphans of runs will go to init");
    }
    let reaper = Reaper::new();
    tokio::spawn(reaper.clone().run());

    let containment = Containment::detect(&config).map_err(anyhow::Error::msg)?;
    let opened = Store::open(&state_dir).context("cannot open the store")?;
    let store = opened.store;
    let mut history = opened.runs;
    if let Some(q) = &opened.quarantined {
        error!(moved_to = %q.display(), "the store was corrupt; started with a fresh one (see GetHealth alerts)");
    }
    // Reconcile what an earlier daemon left before serving anyone.
    let recovered = supervisor::recover::recover(
        &mut history,
        &containment,
        &state_dir,
        config.grace.min(Duration::from_secs(10)),
        config.kill_deadline,
        opened.quarantined.is_some(),
    )
    .await;
    if !recovered.changed.is_empty() || !recovered.audits.is_empty() {
        let batch = crate::store::Batch {
            runs: recovered
                .changed
                .iter()
                .map(|i| (history[*i].seq, history[*i].record.clone()))
                .collect(),
            audits: recovered.audits,
            ..Default::default()
        };
        store
            .write_and_wait(batch)
            .await
            .context("cannot record the reconciled runs")?;
    }
    match &containment {
        Containment::Cgroup(root) => match root.entry() {
            CgroupEntry::Clone3 => info!(
                cgroup_root = %root.path().display(),
                cgroup_entry = "clone3",
                "containment: a cgroup per run, each leader cloned into it (CLONE_INTO_CGROUP)"
            ),
            CgroupEntry::ProcsWrite { reason } => info!(
                cgroup_root = %root.path().display(),
                cgroup_entry = "procs-write",
                reason = reason.as_str(),
                "containment: a cgroup per run, each leader writes itself into cgroup.procs before exec"
            ),
        },
        Containment::ProcessGroup { reason } => warn!(
            reason = reason.as_str(),
            "containment: process group and /proc tracking only (no cgroups)"
        ),
    }
    if let Containment::Cgroup(root) = &containment {
        log_memory_controller(root);
    }

    let host = std::sync::Arc::new(crate::process::limits::start(
        containment.entry_name(),
        containment.memory_controller_name(),
        config.max_live_runs,
    ));

    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    {
        let metrics = metrics.clone();
        store.observe_commits(move |d| metrics.store_committed(d.as_secs_f64()));
    }
    let handle = supervisor::start(CoreSettings {
        metrics: metrics.clone(),
        config: config.clone(),
        state_dir: state_dir.clone(),
        default_cwd,
        containment: containment.clone(),
        reaper,
        store: store.clone(),
        history,
        watchdog: crate::systemd::watchdog_period(),
        agent_user,
    });

    // Two steps at shutdown: stop accepting calls at once; end open streams (Watch, Logs
    // --follow) only after every run has ended, so that watchers see how their runs ended.
    let shutdown = CancellationToken::new();
    let end_streams = CancellationToken::new();
    let service = SupervisorService::new(
        handle.clone(),
        store.clone(),
        containment.name(),
        end_streams.clone(),
        access.clone(),
    )
    .with_host(host.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SupervisorServer<SupervisorService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("cannot build the reflection service")?;
    let routes = tonic::service::Routes::new(
        SupervisorServer::new(service)
            .max_decoding_message_size(crate::grpc::bounds::MAX_MESSAGE_BYTES),
    )
    .add_service(health_service)
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha);

    // The signals are watched before anyone can see the socket: a SIGTERM or SIGHUP sent as
    // soon as the daemon answers waits for the loop below instead of ending the daemon by the
    // signal's default action.
    let mut signals = signal_hook_tokio::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR2,
    ])
    .context("cannot watch SIGTERM/SIGINT/SIGHUP")?;

    // Socket activation: systemd holds the socket, so clients wait through a daemon restart.
    let activated = crate::systemd::activated_listener();
    let we_bound = activated.is_none();
    let listener = match activated {
        Some(l) => {
            info!("using the socket systemd passed (socket activation)");
            UnixListener::from_std(l).context("cannot use the socket systemd passed")?
        }
        None => bind_socket(&socket, &config).await?,
    };
    info!(socket = %socket.display(), state_dir = %state_dir.display(), "listening");
    // Every API listener is bound before any serves: a client that sees the unix socket answer
    // can reach the TCP one too.
    let tcp = match listen {
        Some(addr) => Some((
            addr,
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        )),
        None => None,
    };
    // The HTTP listener too (it serves as soon as it is bound: its pages read the core, which
    // runs already).
    let http = if let Some(addr) = config.metrics.listen {
        let ctx = crate::http::HttpContext::new(
            handle.clone(),
            store.clone(),
            metrics.clone(),
            access.clone(),
        );
        let tls = tls.clone().filter(|_| !addr.ip().is_loopback());
        // Served until the open streams end (after every run has ended), as Watch is: a status
        // page shows the runs the shutdown kills as KILLED before it says the daemon stopped.
        Some(
            crate::http::serve(addr, tls, ctx, end_streams.clone())
                .await
                .with_context(|| format!("cannot listen on metrics.listen {addr}"))?,
        )
    } else {
        None
    };
    let mut servers = tokio::task::JoinSet::new();
    {
        let routes = routes.clone();
        let stop = shutdown.clone();
        servers.spawn(async move {
            tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(
                    routes,
                    // Clients that send the socket path as :authority would be refused by h2.
                    // Each connection's peer is resolved (SO_PEERCRED, groups) when accepted.
                    crate::grpc::rewrite_authority(listen::unix_incoming(UnixListenerStream::new(
                        listener,
                    ))),
                    stop.cancelled_owned(),
                )
                .await
        });
    }
    if let Some((addr, tcp)) = tcp {
        let stop = shutdown.clone();
        match tls.clone() {
            Some(tls) => {
                info!(%addr, "listening on TCP with TLS");
                servers.spawn(async move {
                    tonic::transport::Server::builder()
                        .serve_with_incoming_shutdown(
                            routes,
                            listen::tls_incoming(tcp, tls),
                            stop.cancelled_owned(),
                        )
                        .await
                });
            }
            None => {
                info!(%addr, "listening on TCP (plaintext, loopback, tokens required)");
                servers.spawn(async move {
                    tonic::transport::Server::builder()
                        .serve_with_incoming_shutdown(
                            routes,
                            listen::tcp_incoming(tcp),
                            stop.cancelled_owned(),
                        )
                        .await
                });
            }
        }
    }

    // Agents running as root is a standing condition of the config: an alert of the one
    // model (so webhooks hear of it), resolved once a config without it is running.
    {
        let root_agents = access.current().root_agents.clone();
        let batch = match root_agents {
            Some(message) => crate::store::Batch {
                fire: vec![crate::store::AlertFire {
                    kind: "agents_run_as_root".into(),
                    dedup_key: "agents_run_as_root".into(),
                    message,
                    labels: Default::default(),
                }],
                ..Default::default()
            },
            None => crate::store::Batch {
                resolve: vec!["agents_run_as_root".into()],
                ..Default::default()
            },
        };
        store.write(batch, None);
    }
    let mut deliveries = crate::alerts::start(
        &config.alerts,
        store.clone(),
        metrics.clone(),
        shutdown.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let _retention = crate::alerts::retention::start(store.clone(), shutdown.clone());

    crate::systemd::ready("0 running, 0 queued, 0 stuck");
    info!("ready");
    loop {
        tokio::select! {
            sig = signals.next() => match sig {
                Some(signal_hook::consts::SIGHUP) => {
                    let running = Running {
                        metrics_listen: config.metrics.listen,
                    };
                    reload(&args, &handle, &host, &access, tls.as_ref(), &mut deliveries, &running)
                        .await
                }
                Some(signal_hook::consts::SIGUSR2) => {
                    if config.debug_wedge_on_sigusr2 {
                        handle.wedge().await;
                    } else {
                        info!("SIGUSR2 ignored (debug.wedge_on_sigusr2 is off)");
                    }
                }
                other => {
                    info!(signal = ?other, "stop requested");
                    break;
                }
            },
            r = servers.join_next() => {
                if let Some(Ok(Err(e))) = r {
                    error!(error = %e, "the API server failed; stopping");
                }
                break;
            }
        }
    }

    // Stop accepting calls; end every live run; then exit.
    crate::systemd::stopping("stopping: ending every live run");
    shutdown.cancel();
    health
        .set_not_serving::<SupervisorServer<SupervisorService>>()
        .await;
    let bound = config.shutdown_timeout;
    match tokio::time::timeout(bound, handle.shutdown()).await {
        Ok(_) => info!("every run has ended"),
        Err(_) => error!(
            timeout_ms = bound.as_millis() as u64,
            "runs were still ending when the shutdown bound passed"
        ),
    }
    // The runs' ends are durable before the daemon exits; on a full disk, for a few seconds.
    if let Err(e) = store.settle(Duration::from_secs(5)).await {
        error!(error = %e, "stopping with changes the store could not write; the next start recovers those runs from their last record");
    }
    end_streams.cancel();
    if let Some(http) = http {
        // Its streams send their last event and close (bounded inside).
        let _ = http.await;
    }
    // Let in-flight calls (e.g. kills that just completed) finish answering, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    // A socket systemd passed us is systemd's: it stays for the next start.
    if we_bound {
        let _ = std::fs::remove_file(&socket);
    }
    info!("stopped");
    Ok(())
}

/// What the daemon started with that a reload cannot change (the core keeps the rest).
struct Running {
    /// The `/metrics` listener is bound once, at start.
    metrics_listen: Option<std::net::SocketAddr>,
}

/// SIGHUP: re-read the config file and apply what can change live; a bad file is refused with a
/// logged error and the daemon keeps running on the old config. The webhooks are handed to the
/// delivery tasks; a changed `metrics.listen` is named as needing a restart.
async fn reload(
    args: &Args,
    handle: &supervisor::SupervisorHandle,
    host: &crate::process::limits::Host,
    access: &Access,
    tls: Option<&TlsSettings>,
    deliveries: &mut crate::alerts::deliver::Deliveries,
    running: &Running,
) {
    crate::systemd::reloading();
    let loaded = match &args.config {
        Some(path) => Config::load(path),
        None => Config::embedded(),
    };
    let loaded = loaded.map_err(anyhow::Error::from).and_then(|new| {
        // A bad tokens file or certificate refuses the whole reload: read both, then apply.
        let new_access = access
            .prepare(&new)
            .context("refusing the new access settings")?;
        let new_tls = match (tls, &new.tls) {
            (Some(_), Some(t)) => {
                Some(TlsSettings::prepare(t).context("refusing the new TLS settings")?)
            }
            _ => None,
        };
        access.install(new_access);
        if let (Some(tls), Some(cfg)) = (tls, new_tls) {
            tls.install(cfg);
        }
        Ok(new)
    });
    match loaded {
        Ok(new) => {
            apply_nice(new.daemon_nice);
            let max_live_runs = new.max_live_runs;
            let alerts = new.alerts.clone();
            let metrics_listen = new.metrics.listen;
            let result = handle.reload(new).await;
            let result = result.map(|mut needs_restart| {
                if metrics_listen != running.metrics_listen {
                    let show = |a: Option<std::net::SocketAddr>| {
                        a.map_or("off".to_string(), |a| a.to_string())
                    };
                    warn!(
                        running = show(running.metrics_listen).as_str(),
                        configured = show(metrics_listen).as_str(),
                        "metrics.listen changed; it needs a restart: /metrics stays where it \
                         is until the daemon is restarted"
                    );
                    needs_restart.push("metrics.listen".to_string());
                }
                needs_restart
            });
            if result.is_ok() {
                match deliveries.reload(&alerts).await {
                    Ok(r) if r.plan.start.is_empty() && r.plan.stop.is_empty() => {}
                    Ok(r) => info!(
                        started = ?r.plan.start,
                        stopped = ?r.plan.stop,
                        removed = ?r.plan.removed,
                        webhooks = ?deliveries.webhooks(),
                        "alert webhooks reloaded"
                    ),
                    Err(e) => {
                        error!(error = %e, "cannot reload the alert webhooks; the old ones still deliver")
                    }
                }
            }
            if result.is_ok() {
                // GetHealth's capacity follows the new limit.
                host.max_live_runs
                    .store(max_live_runs, std::sync::atomic::Ordering::Relaxed);
            }
            match result {
                Ok(needs_restart) if needs_restart.is_empty() => info!("config reloaded"),
                Ok(needs_restart) => warn!(
                    keys = ?needs_restart,
                    "config reloaded; these keys changed but apply only after a restart"
                ),
                Err(e) => error!(error = %e, "reload failed"),
            }
        }
        Err(e) => error!(
            error = format!("{e:#}"),
            "refusing the new config; still running on the old one"
        ),
    }
    // READY=1 alone: the STATUS line with the live counts stays as the core last set it.
    crate::systemd::ready_again();
}

/// Say which memory controller run cgroups have, and sweep the v1 memory cgroups of runs no
/// longer live (reconciliation ended every earlier run, so none of them is).
fn log_memory_controller(root: &crate::process::cgroup::CgroupRoot) {
    use crate::process::cgroup_v1::MemoryController;
    match root.memory() {
        MemoryController::V2 => info!(
            memory_controller = "cgroup v2",
            "memory: runs.memory_max_bytes is memory.max of each run cgroup"
        ),
        MemoryController::V1(v1) => {
            info!(
                memory_controller = "cgroup v1",
                memory_v1_root = %v1.path().display(),
                "memory: cgroup v2 has no memory controller here; each run also gets a v1 memory \
                 cgroup (memory.limit_in_bytes, memory.max_usage_in_bytes, memory.oom_control)"
            );
            let sweep = root.sweep_memory_v1(&|_| false);
            if !sweep.removed.is_empty() {
                info!(
                    removed = sweep.removed.len(),
                    runs = ?sweep.removed,
                    "removed v1 memory cgroups left by runs of an earlier daemon"
                );
            }
            for kept in &sweep.kept {
                warn!(
                    cgroup = kept.as_str(),
                    "cannot remove a leftover v1 memory cgroup"
                );
            }
        }
        MemoryController::Unavailable { reason } => warn!(
            memory_controller = "none",
            reason = reason.as_str(),
            "memory: no memory controller for run cgroups; runs.memory_max_bytes cannot be \
             applied and memory figures come from /proc"
        ),
    }
}
