//! Who is calling, established once per connection when it is accepted: on the unix socket the
//! kernel's record of the peer (SO_PEERCRED and SO_PEERGROUPS, taken at connect time) resolved to
//! the user's name and its groups' names; on TCP the peer's address and, over TLS, the names in
//! its client certificate. Each accepted stream is wrapped in a [`PeerStream`] whose
//! `ConnectInfo` is that [`Peer`], so tonic hands it to every request of the connection and
//! `auth` reads it from there. TLS handshakes run one task per connection (a slow client holds
//! up nobody) against the current [`TlsSettings`], which a reload replaces, so rotated
//! certificates apply to the next connection.
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::access::UnixPeer;
use crate::config::TlsConfig;

/// How long a TLS client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer of one connection.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A unix-socket peer as the kernel recorded it at connect time.
    Unix(Arc<UnixPeer>),
    /// A unix-socket peer whose credentials could not be read.
    UnixUnknown(String),
    /// A TCP peer; `cert_names` are the subject CN and SAN names of its verified client
    /// certificate (empty without one, and on plaintext TCP).
    Tcp {
        addr: SocketAddr,
        tls: bool,
        cert_names: Arc<Vec<String>>,
    },
}

/// An accepted connection and who is on the other end.
#[derive(Debug)]
pub struct PeerStream<S> {
    inner: S,
    peer: Peer,
}

impl<S> Connected for PeerStream<S> {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PeerStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PeerStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A unix-socket connection with its peer resolved: credentials from the socket, names from
/// the user and group databases.
pub fn unix_peer(stream: UnixStream) -> PeerStream<UnixStream> {
    let peer = match crate::process::peercred::peer_cred(&stream) {
        Ok(c) => {
            let user = nix::unistd::User::from_uid(c.uid.into())
                .ok()
                .flatten()
                .map(|u| u.name);
            let mut gids = vec![c.gid];
            gids.extend(c.groups.iter().copied().filter(|g| *g != c.gid));
            let groups = gids
                .into_iter()
                .map(|g| {
                    let name = nix::unistd::Group::from_gid(g.into())
                        .ok()
                        .flatten()
                        .map(|g| g.name);
                    (g, name)
                })
                .collect();
            Peer::Unix(Arc::new(UnixPeer {
                uid: c.uid,
                gid: c.gid,
                pid: c.pid,
                user,
                groups,
            }))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the credentials of a unix-socket peer");
            Peer::UnixUnknown(e.to_string())
        }
    };
    PeerStream {
        inner: stream,
        peer,
    }
}

/// How many unix connections may have their peers resolved at once.
const RESOLVING: usize = 64;

/// Every connection of a unix listener, with its peer. The user and group names come from the
/// system's databases (NSS, which may ask a directory server), so each connection is resolved
/// on a blocking thread and a slow lookup holds up neither the runtime nor other connections.
pub fn unix_incoming(
    incoming: impl Stream<Item = io::Result<UnixStream>>,
) -> impl Stream<Item = io::Result<PeerStream<UnixStream>>> {
    use futures::StreamExt;
    incoming
        .map(|conn| async move {
            let stream = conn?;
            tokio::task::spawn_blocking(move || unix_peer(stream))
                .await
                .map_err(io::Error::other)
        })
        .buffer_unordered(RESOLVING)
}

/// Plaintext TCP connections, with their peer addresses.
pub fn tcp_incoming(
    listener: TcpListener,
) -> impl Stream<Item = io::Result<PeerStream<TcpStream>>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let stream = conn?;
        let addr = stream.peer_addr()?;
        let _ = stream.set_nodelay(true);
        Ok(PeerStream {
            inner: stream,
            peer: Peer::Tcp {
                addr,
                tls: false,
                cert_names: Arc::default(),
            },
        })
    })
}

/// Why TLS settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.{key} {path}: {message}")]
    File {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("tls: {0}")]
    Config(String),
}

/// The server's current TLS configuration; [`TlsSettings::reload`] swaps in a new one, which
/// the next handshake uses.
#[derive(Clone)]
pub struct TlsSettings {
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl TlsSettings {
    pub fn load(config: &TlsConfig) -> Result<TlsSettings, TlsError> {
        Ok(TlsSettings {
            current: Arc::new(RwLock::new(Arc::new(server_config(config)?))),
        })
    }

    /// Read the certificate, key and client CA again (a bad set is refused and the old one
    /// stays).
    pub fn reload(&self, config: &TlsConfig) -> Result<(), TlsError> {
        let new = Self::prepare(config)?;
        self.install(new);
        Ok(())
    }

    /// The settings `config` gives, read but not yet in force.
    pub fn prepare(config: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        Ok(Arc::new(server_config(config)?))
    }

    /// Put prepared settings in force (for the next handshake).
    pub fn install(&self, new: Arc<rustls::ServerConfig>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let cfg = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(cfg)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem<T: rustls::pki_types::pem::PemObject>(
    key: &'static str,
    path: &Path,
    what: &str,
) -> Result<Vec<T>, TlsError> {
    let bad = |message: String| TlsError::File {
        key,
        path: path.display().to_string(),
        message,
    };
    let items = T::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if items.is_empty() {
        return Err(bad(format!("holds no {what} (PEM)")));
    }
    Ok(items)
}

fn server_config(config: &TlsConfig) -> Result<rustls::ServerConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = read_pem("cert", &config.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| TlsError::File {
        key: "key",
        path: config.key.display().to_string(),
        message: e.to_string(),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_pem::<CertificateDer<'static>>("client_ca", ca, "certificate")? {
                roots.add(c).map_err(|e| TlsError::File {
                    key: "client_ca",
                    path: ca.display().to_string(),
                    message: e.to_string(),
                })?;
            }
            // A client without a certificate may still come in with a token; a certificate that
            // does not chain to this CA fails the handshake.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(format!("client_ca: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("cert and key: {e}")))?;
    // h2 for gRPC; http/1.1 too for the metrics listener's scrapers (gRPC clients offer h2 only).
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The subject CN and the SAN names (DNS, email, URI) of a certificate.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    names.push(s.to_string())
                }
                _ => {}
            }
        }
    }
    names.dedup();
    names
}

/// TLS connections of `listener`: each handshake in its own task, against the settings current
/// when the connection came in. Failed handshakes are logged and dropped.
pub fn tls_incoming(
    listener: TcpListener,
    tls: TlsSettings,
) -> impl Stream<Item = io::Result<PeerStream<TlsStream<TcpStream>>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, addr) = tokio::select! {
                _ = tx.closed() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                let tls_stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(peer = %addr, "TLS handshake timed out");
                            return;
                        }
                    };
                let names = tls_stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| cert_names(c.as_ref()))
                    .unwrap_or_default();
                let peer = Peer::Tcp {
                    addr,
                    tls: true,
                    cert_names: Arc::new(names),
                };
                let _ = tx
                    .send(Ok(PeerStream {
                        inner: tls_stream,
                        peer,
                    }))
                    .await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("key");
        let c = p.self_signed(&key).expect("cert");
        (c.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_names_its_cn_then_its_sans() {
        let (pem, _) = cert("dash", &["dash.example", "127.0.0.1"]);
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
        assert_eq!(cert_names(der.as_ref()), vec!["dash", "dash.example"]);
        assert!(cert_names(b"not a certificate").is_empty());
    }

    #[test]
    fn tls_settings_name_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, k) = cert("wf", &["localhost"]);
        let cert_path = dir.path().join("c.pem");
        let key_path = dir.path().join("k.pem");
        std::fs::write(&cert_path, c).expect("write");
        std::fs::write(&key_path, k).expect("write");
        let mut cfg = TlsConfig {
            cert: cert_path.clone(),
            key: key_path.clone(),
            client_ca: None,
        };
        let settings = TlsSettings::load(&cfg).expect("valid");
        cfg.client_ca = Some(dir.path().join("missing.pem"));
        let e = settings.reload(&cfg).expect_err("missing CA");
        assert!(e.to_string().starts_with("tls.client_ca "), "{e}");
        cfg.client_ca = None;
        std::fs::write(&key_path, "junk").expect("write");
        let e = TlsSettings::load(&cfg).err().expect("bad key");
        assert!(e.to_string().starts_with("tls.key "), "{e}");
        std::fs::write(&cert_path, "").expect("write");
        let e = TlsSettings::load(&cfg).err().expect("no cert");
        assert!(e.to_string().contains("holds no certificate"), "{e}");
    }
}
