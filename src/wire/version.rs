//! Building our `version` message and reading a peer's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bitcoin::consensus::encode::Decodable;

use super::limits::{MAX_SUBVERSION_LENGTH, PROTOCOL_VERSION};
use super::{Address, ServiceFlags, VersionMessage};

/// Everything that goes into our `version`.
#[derive(Debug, Clone)]
pub struct LocalVersion {
    /// Protocol version we advertise (default 70016, see [`PROTOCOL_VERSION`]).
    pub version: u32,
    /// Service bits we advertise; a client that serves nothing advertises none.
    pub services: ServiceFlags,
    /// BIP14 user agent, e.g. `/btcpeer:0.1.0/`.
    pub user_agent: String,
    /// Height of our best block.
    pub start_height: i32,
    /// Whether the peer should announce transactions to us.
    pub relay: bool,
    /// Per-connection random nonce (self-connection detection).
    pub nonce: u64,
    /// Unix time in seconds.
    pub timestamp: i64,
}

/// Builds the BIP14 user agent: `/btcpeer:<version>/` or `/btcpeer:<version>/<comment>/`.
///
/// ```
/// let ua = btcpeer::wire::version::user_agent(Some("myapp:2.0"));
/// assert!(ua.starts_with("/btcpeer:") && ua.ends_with("/myapp:2.0/"));
/// ```
pub fn user_agent(sub_agent: Option<&str>) -> String {
    let base = format!("/btcpeer:{}/", env!("CARGO_PKG_VERSION"));
    match sub_agent {
        Some(s) if !s.is_empty() => format!("{base}{s}/"),
        _ => base,
    }
}

/// Builds our `version`. The struct is filled in by hand on purpose: `VersionMessage::new` in
/// bitcoin 0.32 advertises protocol 70001 and `relay = false`.
pub fn build(local: &LocalVersion, remote: Option<SocketAddr>) -> VersionMessage {
    debug_assert!(local.user_agent.len() <= MAX_SUBVERSION_LENGTH);
    let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    // Core sends the receiver's address when it is routable and direct; through a proxy (no
    // socket address known) it sends zeros. The sender address is always zero.
    let receiver = Address::new(&remote.unwrap_or(unspecified), ServiceFlags::NONE);
    let sender = Address::new(&unspecified, local.services);
    VersionMessage {
        version: local.version,
        services: local.services,
        timestamp: local.timestamp,
        receiver,
        sender,
        nonce: local.nonce,
        user_agent: local.user_agent.clone(),
        start_height: local.start_height,
        relay: local.relay,
    }
}

impl Default for LocalVersion {
    fn default() -> Self {
        LocalVersion {
            version: PROTOCOL_VERSION,
            services: ServiceFlags::NONE,
            user_agent: user_agent(None),
            start_height: 0,
            relay: true,
            nonce: 0,
            timestamp: 0,
        }
    }
}

/// Decodes a `version` payload that the strict decoder refused because it lacks the trailing
/// relay byte (pre-BIP37 peers). Core treats a missing relay byte as `relay = true`.
pub(crate) fn decode_lenient(payload: &[u8]) -> Option<VersionMessage> {
    let mut padded = Vec::with_capacity(payload.len() + 1);
    padded.extend_from_slice(payload);
    padded.push(1);
    let mut reader = padded.as_slice();
    let msg = VersionMessage::consensus_decode_from_finite_reader(&mut reader).ok()?;
    reader.is_empty().then_some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::consensus::encode::serialize;

    #[test]
    fn build_sets_our_fields_not_the_crate_defaults() {
        let local =
            LocalVersion { nonce: 42, timestamp: 1_700_000_000, start_height: 7, ..Default::default() };
        let v = build(&local, Some("127.0.0.1:18444".parse().unwrap()));
        assert_eq!(v.version, 70_016);
        assert!(v.relay);
        assert_eq!(v.nonce, 42);
        assert_eq!(v.start_height, 7);
        assert_eq!(v.receiver.port, 18444);
        assert!(v.user_agent.starts_with("/btcpeer:"));
    }

    #[test]
    fn missing_relay_byte_means_relay_true() {
        let v = build(&LocalVersion { relay: false, ..Default::default() }, None);
        let mut bytes = serialize(&v);
        bytes.pop();
        let decoded = decode_lenient(&bytes).expect("decodes without relay byte");
        assert!(decoded.relay);
        // Truncated further (inside start_height) is still refused.
        bytes.pop();
        assert!(decode_lenient(&bytes).is_none());
    }
}
