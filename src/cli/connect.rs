//! Where the daemon is and how to reach it: the socket path is chosen from --socket, then
//! $WF_SUPERVISOR_SOCKET, then the daemon's own default ($RUNTIME_DIRECTORY/wf.sock, else
//! /run/wf-supervisor/wf.sock as root, else $XDG_RUNTIME_DIR/wf-supervisor/wf.sock); --addr picks
//! the TCP listener instead. A daemon that cannot be reached is reported in one sentence that
//! says where we looked and what to try.
//!
//! On TCP the daemon wants credentials: a bearer token (`--token-file`, else
//! `$WF_SUPERVISOR_TOKEN`) sent as `authorization: Bearer TOKEN` on every call, and/or a client
//! certificate (`--cert`/`--key`) over TLS (`--addr https://...`, with `--ca` naming the CA that
//! signed the daemon's certificate). Over the unix socket no token is sent: the kernel tells the
//! daemon who we are.
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::Client;

/// The environment variable that names the socket when --socket is not given.
pub const SOCKET_ENV: &str = "WF_SUPERVISOR_SOCKET";

/// The environment variable that holds a token when --token-file is not given.
pub const TOKEN_ENV: &str = "WF_SUPERVISOR_TOKEN";

/// What a TCP connection authenticates with.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// File whose first line is the token's secret.
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that the daemon's certificate must chain to (for https://).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mTLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Adds the bearer token (if any) to every call.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The token from the file, else from the environment; None without either.
fn token(creds: &Credentials) -> anyhow::Result<Option<String>> {
    let secret = match &creds.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --token-file {}", path.display()))?;
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .with_context(|| format!("--token-file {} is empty", path.display()))?;
            first.to_string()
        }
        None => match std::env::var(TOKEN_ENV) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => return Ok(None),
        },
    };
    Ok(Some(secret))
}

fn read(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// How long to wait for the connection itself.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// The target from the flags and this process's environment.
pub fn resolve_target(socket: Option<PathBuf>, addr: Option<String>) -> anyhow::Result<Target> {
    let euid_root = nix::unistd::geteuid().is_root();
    resolve(socket, addr, |k| std::env::var_os(k), euid_root)
}

/// The target from the flags, an environment lookup and whether we run as root; pure so that the
/// order of the rules can be tested.
pub fn resolve(
    socket: Option<PathBuf>,
    addr: Option<String>,
    env: impl Fn(&str) -> Option<OsString>,
    euid_root: bool,
) -> anyhow::Result<Target> {
    if let Some(a) = addr {
        let a = if a.contains("://") {
            a
        } else {
            format!("http://{a}")
        };
        return Ok(Target::Tcp(a));
    }
    if let Some(p) = socket {
        return Ok(Target::Unix(p));
    }
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(p) = non_empty(SOCKET_ENV) {
        return Ok(Target::Unix(PathBuf::from(p)));
    }
    if let Some(dirs) = non_empty("RUNTIME_DIRECTORY") {
        // systemd may pass several, separated by ':'; like the daemon, take the first.
        let dirs = dirs.to_string_lossy().into_owned();
        let first = dirs.split(':').next().unwrap_or_default();
        if !first.is_empty() {
            return Ok(Target::Unix(PathBuf::from(first).join("wf.sock")));
        }
    }
    if euid_root {
        return Ok(Target::Unix(PathBuf::from("/run/wf-supervisor/wf.sock")));
    }
    if let Some(dir) = non_empty("XDG_RUNTIME_DIR") {
        return Ok(Target::Unix(
            PathBuf::from(dir).join("wf-supervisor").join("wf.sock"),
        ));
    }
    Err(anyhow!(
        "cannot find the wf-supervisor socket: XDG_RUNTIME_DIR is not set \
         (set --socket or {SOCKET_ENV})"
    ))
}

/// The HTTP/2 stream window wfctl advertises on the unix socket (HTTP/2's default size).
const UNIX_STREAM_WINDOW: u32 = 64 * 1024;

/// Connect to the daemon; the error names the target and suggests what to check.
pub async fn connect_with(target: &Target, creds: &Credentials) -> anyhow::Result<Client> {
    let mut bearer = Bearer::default();
    let channel = match target {
        Target::Unix(path) => {
            let path: PathBuf = path.clone();
            // The URI is required by the API but unused: the connector below ignores it.
            Endpoint::from_static("http://localhost")
                .connect_timeout(CONNECT_TIMEOUT)
                // HTTP/2's own default window instead of the library's 2 MiB: on a local socket a
                // window update costs microseconds, and a Watch that falls behind (`wfctl top`
                // on a busy host) holds at most this much stale data before the daemon's merged,
                // up-to-date heartbeats.
                .initial_stream_window_size(UNIX_STREAM_WINDOW)
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(&path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(|e| unreachable(target, &e))?
        }
        Target::Tcp(addr) => {
            let mut endpoint = Endpoint::from_shared(addr.clone())
                .with_context(|| format!("--addr {addr:?} is not a URL like https://host:7443"))?
                .connect_timeout(CONNECT_TIMEOUT);
            let https = addr.starts_with("https://");
            if https {
                let Some(ca) = &creds.ca else {
                    bail!("--addr {addr} is https: give --ca FILE, the CA that signed the daemon's certificate");
                };
                let mut tls =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca", ca)?));
                match (&creds.cert, &creds.key) {
                    (Some(c), Some(k)) => {
                        tls =
                            tls.identity(Identity::from_pem(read("--cert", c)?, read("--key", k)?))
                    }
                    (None, None) => {}
                    _ => bail!("--cert and --key go together"),
                }
                endpoint = endpoint.tls_config(tls).context("cannot set up TLS")?;
            } else if creds.ca.is_some() || creds.cert.is_some() || creds.key.is_some() {
                bail!("--ca, --cert and --key need an https:// --addr");
            }
            if let Some(secret) = token(creds)? {
                if !https && !is_loopback_url(addr) {
                    bail!(
                        "refusing to send a token in cleartext to {addr}: use https:// (and --ca)"
                    );
                }
                let v: MetadataValue<Ascii> = format!("Bearer {secret}")
                    .parse()
                    .context("the token has characters a header cannot carry")?;
                bearer = Bearer(Some(v));
            }
            endpoint
                .connect()
                .await
                .map_err(|e| unreachable(target, &e))?
        }
    };
    Ok(Client::new(tonic::codegen::InterceptedService::new(
        channel, bearer,
    )))
}

/// Whether the URL's host is a loopback address (or `localhost`).
fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<tonic::transport::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The sentence for a daemon we could not reach.
fn unreachable(target: &Target, err: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let hint = match target {
        Target::Unix(p) if !Path::new(p).exists() => " (is the daemon running? set --socket or WF_SUPERVISOR_SOCKET)",
        Target::Unix(_) => " (is the daemon running, and may you open its socket? set --socket or WF_SUPERVISOR_SOCKET)",
        Target::Tcp(_) => " (is the daemon running with a TCP listener? check --addr)",
    };
    anyhow!(
        "cannot reach wf-supervisor at {target}: {}{hint}",
        innermost(err)
    )
}

/// The most specific cause in an error chain: the transport error itself only says
/// "transport error"; the OS error at the bottom says what went wrong.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn unix(p: &str) -> Target {
        Target::Unix(PathBuf::from(p))
    }

    #[test]
    fn the_flag_wins_then_the_env_then_the_daemon_default() {
        let all = env_of(&[
            (SOCKET_ENV, "/env/wf.sock"),
            ("RUNTIME_DIRECTORY", "/run/rt"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        let r = resolve(Some("/flag.sock".into()), None, &all, false).expect("resolves");
        assert_eq!(r, unix("/flag.sock"));
        let r = resolve(None, None, &all, false).expect("resolves");
        assert_eq!(r, unix("/env/wf.sock"));

        let rt = env_of(&[("RUNTIME_DIRECTORY", "/run/rt"), ("XDG_RUNTIME_DIR", "/x")]);
        assert_eq!(
            resolve(None, None, &rt, true).expect("r"),
            unix("/run/rt/wf.sock")
        );
        let two = env_of(&[("RUNTIME_DIRECTORY", "/run/a:/run/b")]);
        assert_eq!(
            resolve(None, None, &two, false).expect("r"),
            unix("/run/a/wf.sock")
        );

        let xdg = env_of(&[("XDG_RUNTIME_DIR", "/run/user/1000"), (SOCKET_ENV, "")]);
        assert_eq!(
            resolve(None, None, &xdg, true).expect("r"),
            unix("/run/wf-supervisor/wf.sock")
        );
        assert_eq!(
            resolve(None, None, &xdg, false).expect("r"),
            unix("/run/user/1000/wf-supervisor/wf.sock")
        );

        assert!(resolve(None, None, env_of(&[]), false).is_err());
    }

    #[test]
    fn addr_picks_tcp_and_gains_a_scheme() {
        let none = env_of(&[(SOCKET_ENV, "/env/wf.sock")]);
        assert_eq!(
            resolve(None, Some("http://127.0.0.1:7443".into()), &none, false).expect("r"),
            Target::Tcp("http://127.0.0.1:7443".into())
        );
        assert_eq!(
            resolve(None, Some("127.0.0.1:7443".into()), &none, false).expect("r"),
            Target::Tcp("http://127.0.0.1:7443".into())
        );
    }

    #[test]
    fn tokens_go_in_cleartext_only_to_loopback() {
        assert!(is_loopback_url("http://127.0.0.1:7443"));
        assert!(is_loopback_url("http://localhost:7443"));
        assert!(is_loopback_url("http://[::1]:7443"));
        assert!(!is_loopback_url("http://10.1.2.3:7443"));
        assert!(!is_loopback_url("http://wf.example:7443"));
    }

    #[tokio::test]
    async fn a_token_is_not_sent_in_cleartext_off_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "wf_secret\n").expect("write");
        let creds = Credentials {
            token_file: Some(file),
            ..Credentials::default()
        };
        let err = connect_with(&Target::Tcp("http://192.0.2.1:7443".into()), &creds)
            .await
            .expect_err("refused before connecting");
        assert!(
            format!("{err:#}").starts_with("refusing to send a token in cleartext"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_reported_with_a_hint() {
        let target = unix("/nonexistent/wfctl-test/wf.sock");
        let err = connect_with(&target, &Credentials::default())
            .await
            .expect_err("no daemon there");
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("cannot reach wf-supervisor at /nonexistent/wfctl-test/wf.sock: "),
            "{msg}"
        );
        assert!(msg.contains("is the daemon running?"), "{msg}");
    }
}
