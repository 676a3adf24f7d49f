//! One peer connection: [`PeerActor`] (an actix actor around a pure, crate-private state
//! machine), the messages it accepts ([`messages`]), requests to one peer ([`requests`]), its
//! configuration ([`PeerConfig`]), statistics ([`PeerStats`]) and why it ended
//! ([`DisconnectReason`]).

pub(crate) mod actor;
mod ban;
pub(crate) mod bloom;
mod config;
pub(crate) mod dial;
pub(crate) mod machine;
pub mod messages;
pub(crate) mod nonce;
pub(crate) mod outbound;
pub(crate) mod reason;
pub(crate) mod relay;
pub mod requests;
pub(crate) mod stats;
pub(crate) mod trace;
pub(crate) mod transport;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

pub use actor::{PeerActor, PeerConfig, TipHeight};
pub use ban::{Ban, BanTarget};
pub use dial::DEFAULT_CONNECT_TIMEOUT;
pub use dial::{DialError, ProxyConfig};
pub use machine::{
    Advertise, CompactBlocks, Features, MachineConfig, PeerInfo, SendRefused, DEFAULT_REQUEST_ANNOUNCED_TXS,
    DEFAULT_SEND_GETADDR,
};
pub use nonce::NonceSet;
pub use outbound::DEFAULT_MAX_SEND_QUEUE_BYTES;
pub use outbound::{SendError, CLOSE_TIMEOUT};
pub use reason::{CoreReaction, CoreRule, DisconnectReason, Misbehavior, ReasonKind};
pub use relay::Announcement;
pub use stats::{Counter, PeerStats};
pub use transport::{TransportVersion, V2Error};

/// Process-unique identifier of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl PeerId {
    /// A fresh id, never reused within the process.
    pub fn next() -> PeerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        PeerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// The remote connected to our listener.
    Inbound,
    /// We dialed the remote.
    Outbound,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// No connection (initial for a dial that has not started, and final).
    Disconnected,
    /// TCP or SOCKS5 connect in progress.
    Connecting,
    /// Connected; version/verack exchange in progress.
    Handshaking,
    /// Handshake complete; normal messages flow.
    Ready,
}

/// A peer's address: an IP socket address, or a host name with a port (resolved by DNS when
/// dialing directly, or by the SOCKS5 proxy — as Tor needs for `.onion` names).
///
/// ```
/// use btcpeer::peer::PeerAddr;
/// let a: PeerAddr = "127.0.0.1:18444".parse().unwrap();
/// assert!(a.socket_addr().is_some());
/// let b: PeerAddr = "example.onion:8333".parse().unwrap();
/// assert_eq!(b.to_string(), "example.onion:8333");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A literal IP address and port.
    Ip(SocketAddr),
    /// A host name and port.
    Host(Arc<str>, u16),
}

impl PeerAddr {
    /// The socket address, if this is a literal IP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(a) => Some(*a),
            PeerAddr::Host(..) => None,
        }
    }

    /// Parses `HOST:PORT`, `IP:PORT`, `[IPv6]:PORT`, or a bare host with `default_port`.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<PeerAddr, AddrParseError> {
        let s = s.trim();
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(PeerAddr::Ip(sa));
        }
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            return Ok(PeerAddr::Ip(SocketAddr::new(ip, default_port)));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port = p.parse::<u16>().map_err(|_| AddrParseError(s.to_owned()))?;
                (h, port)
            }
            None => (s, default_port),
        };
        let valid = !host.is_empty()
            && host.len() <= 255
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid || port == 0 {
            return Err(AddrParseError(s.to_owned()));
        }
        Ok(PeerAddr::Host(Arc::from(host), port))
    }
}

/// `HOST:PORT` could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid peer address {0:?} (expected HOST:PORT, IP:PORT or [IPv6]:PORT)")]
pub struct AddrParseError(pub String);

impl std::str::FromStr for PeerAddr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().rsplit_once(':') {
            Some((_, p)) if p.parse::<u16>().is_ok() => PeerAddr::parse_with_default_port(s, 0),
            _ => Err(AddrParseError(s.to_owned())),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

impl Serialize for PeerAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        PeerAddr::Ip(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addr_parsing() {
        assert_eq!("1.2.3.4:8333".parse::<PeerAddr>().unwrap().to_string(), "1.2.3.4:8333");
        assert_eq!("[::1]:8333".parse::<PeerAddr>().unwrap().to_string(), "[::1]:8333");
        assert_eq!("node.example:18444".parse::<PeerAddr>().unwrap().to_string(), "node.example:18444");
        assert!("node.example".parse::<PeerAddr>().is_err());
        assert!("bad host:1".parse::<PeerAddr>().is_err());
        assert!(":1".parse::<PeerAddr>().is_err());
        assert!("h:0".parse::<PeerAddr>().is_err());
        assert!("h:99999".parse::<PeerAddr>().is_err());
        assert_eq!(PeerAddr::parse_with_default_port("10.0.0.1", 8333).unwrap().to_string(), "10.0.0.1:8333");
        assert_eq!(
            PeerAddr::parse_with_default_port("seed.example", 8333).unwrap().to_string(),
            "seed.example:8333"
        );
    }
}
