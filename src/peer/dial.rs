//! Opening a connection: direct TCP or through a SOCKS5 proxy, with a timeout.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::PeerAddr;

/// Core's connect timeout for outbound links (`DEFAULT_CONNECT_TIMEOUT`, `netbase.h`): 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Any byte stream a peer can run over (TCP, SOCKS5 over TCP, an in-memory duplex in tests).
pub trait PeerStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerStream for T {}

/// A boxed [`PeerStream`].
pub type BoxStream = Pin<Box<dyn PeerStream>>;

/// A SOCKS5 proxy (e.g. Tor's `127.0.0.1:9050`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The proxy's address.
    pub addr: PeerAddr,
    /// Username and password, if the proxy wants them (Tor uses them for stream isolation).
    pub credentials: Option<(String, String)>,
}

/// Why a dial failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// No connection within the timeout.
    #[error("connect to {target} timed out after {}s", after.as_secs_f32())]
    Timeout {
        /// Target.
        target: String,
        /// The limit.
        after: Duration,
    },
    /// The TCP connect failed.
    #[error("connect to {target} failed: {error}")]
    Io {
        /// Target.
        target: String,
        /// The OS error.
        error: String,
    },
    /// The proxy refused or failed.
    #[error("socks5 proxy {proxy} could not reach {target}: {error}")]
    Proxy {
        /// Proxy address.
        proxy: String,
        /// Target.
        target: String,
        /// What the proxy said.
        error: String,
    },
}

/// Connects to `target`, directly or through `proxy`. Host names are resolved by the system
/// resolver when direct, and by the proxy otherwise (never locally, as Tor requires). Returns the
/// stream and the remote socket address when one is known.
pub async fn dial(
    target: &PeerAddr,
    proxy: Option<&ProxyConfig>,
    timeout: Duration,
) -> Result<(BoxStream, Option<SocketAddr>), DialError> {
    let attempt = async {
        match proxy {
            None => {
                let stream = match target {
                    PeerAddr::Ip(addr) => TcpStream::connect(addr).await,
                    PeerAddr::Host(host, port) => TcpStream::connect((host.as_ref(), *port)).await,
                }
                .map_err(|e| DialError::Io { target: target.to_string(), error: e.to_string() })?;
                let _ = stream.set_nodelay(true);
                let remote = stream.peer_addr().ok();
                Ok((Box::pin(stream) as BoxStream, remote))
            }
            Some(proxy) => {
                let proxy_stream = match &proxy.addr {
                    PeerAddr::Ip(addr) => TcpStream::connect(addr).await,
                    PeerAddr::Host(host, port) => TcpStream::connect((host.as_ref(), *port)).await,
                }
                .map_err(|e| DialError::Proxy {
                    proxy: proxy.addr.to_string(),
                    target: target.to_string(),
                    error: e.to_string(),
                })?;
                let _ = proxy_stream.set_nodelay(true);
                let proxy_err = |e: tokio_socks::Error| DialError::Proxy {
                    proxy: proxy.addr.to_string(),
                    target: target.to_string(),
                    error: e.to_string(),
                };
                let stream = match (target, &proxy.credentials) {
                    (PeerAddr::Ip(addr), None) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_socket(proxy_stream, *addr).await
                    }
                    (PeerAddr::Host(host, port), None) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_socket(
                            proxy_stream,
                            (host.as_ref(), *port),
                        )
                        .await
                    }
                    (PeerAddr::Ip(addr), Some((user, pass))) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(
                            proxy_stream,
                            *addr,
                            user,
                            pass,
                        )
                        .await
                    }
                    (PeerAddr::Host(host, port), Some((user, pass))) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(
                            proxy_stream,
                            (host.as_ref(), *port),
                            user,
                            pass,
                        )
                        .await
                    }
                }
                .map_err(proxy_err)?;
                // Through a proxy the remote's socket address is not ours to know.
                Ok((Box::pin(stream) as BoxStream, None))
            }
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| DialError::Timeout { target: target.to_string(), after: timeout })?
}
