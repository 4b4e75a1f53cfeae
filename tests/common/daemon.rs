//! [`Daemon`]: a [`Site`] with one daemon, started once, and a client connected to it.

use std::ops::Deref;
use std::process::ExitStatus;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use wf_supervisor::proto::supervisor_client::SupervisorClient;

use super::api::unix_connector;
use super::site::DAEMON_LOG;
use super::{Api, Containment, Options, Site};

/// A running daemon with its own directory, socket and cgroup root: its [`Site`] (which it
/// derefs to, for `dir`, `pid`, `cgroup_root`, `run_dir`, `assert_run_gone` and the rest) and a
/// client connected once the socket served. Dropping it ends the daemon and whatever it left.
pub struct Daemon {
    api: Api,
    site: Site,
}

impl Daemon {
    /// Starts a daemon with the default options.
    pub async fn start() -> Daemon {
        Daemon::start_with(Options::default()).await
    }

    /// Starts a daemon; `None` when the options ask for cgroups and the machine has none to
    /// give (the reason is printed).
    pub async fn try_start_with(options: Options) -> Option<Daemon> {
        Some(Daemon::start_on(Site::new(options)?).await)
    }

    /// Starts a daemon with the default options but `containment`; `None` where
    /// [`Daemon::try_start_with`] would skip.
    pub async fn try_start_in(containment: Containment) -> Option<Daemon> {
        Daemon::try_start_with(Options {
            containment,
            ..Default::default()
        })
        .await
    }

    /// Starts a daemon; panics where [`Daemon::try_start_with`] would skip.
    pub async fn start_with(options: Options) -> Daemon {
        Daemon::try_start_with(options)
            .await
            .expect("the daemon needs cgroups here")
    }

    /// Starts the daemon on a site the test has prepared (e.g. with [`Site::add_config`]), waits
    /// until it serves, and connects to it.
    pub async fn start_on(mut site: Site) -> Daemon {
        site.log_filter = DAEMON_LOG;
        site.launch().await;
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(unix_connector(&site.socket))
            .await
            .expect("connecting to the daemon's socket");
        Daemon {
            api: site.api_on(SupervisorClient::new(channel)),
            site,
        }
    }

    /// A client on a connection of its own that advertises `window` bytes as its HTTP/2 stream
    /// window: the daemon may send at most that much of a stream ahead of what it has read.
    pub async fn client_with_window(&self, window: u32) -> SupervisorClient<Channel> {
        let channel = Endpoint::from_static("http://[::]:50051")
            .initial_stream_window_size(window)
            .connect_with_connector(unix_connector(&self.site.socket))
            .await
            .expect("connecting to the daemon's socket");
        SupervisorClient::new(channel)
    }

    /// A client handle; cheap to clone and `'static`, for use from spawned tasks.
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// Waits for the daemon to exit on its own (after [`Site::signal`]).
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.site.wait_exit(timeout).await
    }
}

impl Deref for Daemon {
    type Target = Site;

    fn deref(&self) -> &Site {
        &self.site
    }
}
