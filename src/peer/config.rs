//! What one connection is configured with: [`PeerConfig`], and the shared [`TipHeight`] our
//! `version` announces.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::dial::{ProxyConfig, DEFAULT_CONNECT_TIMEOUT};
use super::machine::MachineConfig;
use super::outbound::DEFAULT_MAX_SEND_QUEUE_BYTES;
use super::NonceSet;
#[cfg(feature = "metrics")]
use crate::metrics::Metrics;
use crate::network::Network;

/// The height we announce in `version`, shared by all peers and updated by whoever follows the
/// chain.
#[derive(Debug, Clone, Default)]
pub struct TipHeight(Arc<AtomicI32>);

impl TipHeight {
    /// A provider starting at `height`.
    pub fn new(height: i32) -> Self {
        TipHeight(Arc::new(AtomicI32::new(height)))
    }

    /// The current height.
    pub fn get(&self) -> i32 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the current height.
    pub fn set(&self, height: i32) {
        self.0.store(height, Ordering::Relaxed)
    }
}

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Which network (magic bytes).
    pub network: Network,
    /// Protocol settings.
    pub machine: MachineConfig,
    /// Dial timeout.
    pub connect_timeout: Duration,
    /// SOCKS5 proxy for outbound dials.
    pub proxy: Option<ProxyConfig>,
    /// Cap on bytes waiting for the socket.
    pub max_send_queue_bytes: usize,
    /// Height for our `version`.
    pub tip: TipHeight,
    /// Shared set of our `version` nonces (self-connection detection).
    pub nonces: NonceSet,
    /// BIP324 v2 transport (Core's `-v2transport`; off by default in the library so existing
    /// embedders keep plain v1, on by default in `btcpeerd`): an outbound connection opens
    /// with the v2 handshake (falling back to v1 once if the peer closes it), an inbound one
    /// detects v1 or v2 from its first bytes. Off: v1 only, both ways. The group clears it
    /// per dial for addresses remembered as v1-only.
    pub v2_transport: bool,
    /// With `v2_transport`: BIP324 v2 only, never plaintext. An outbound attempt is not
    /// retried with v1 (a peer that closes it or answers in v1 has failed, and addresses
    /// remembered as v1-only are still tried with v2); an inbound peer whose first bytes are
    /// v1 is disconnected. Core has no such mode (`-v2transport` prefers v2 and falls back);
    /// it is for deployments where nothing may cross the network in the clear.
    pub v2_only: bool,
    /// The trickle instant of every inbound peer made from this config (and its clones).
    pub(crate) inbound_trickle: super::relay::InboundTrickle,
    /// Addresses remembered as v1-only, shared with the group (see `peer::transport`).
    pub(crate) v1_only: super::transport::V1OnlyPeers,
    /// Where to count traffic, handshakes and disconnects (none: not counted).
    // Private so that the public fields are the same with and without the feature.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<Metrics>,
}

impl PeerConfig {
    /// Counts this connection's traffic, handshakes and disconnects in `metrics` (feature
    /// `metrics`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Defaults for `network`.
    pub fn new(network: Network) -> Self {
        PeerConfig {
            network,
            machine: MachineConfig::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            proxy: None,
            max_send_queue_bytes: DEFAULT_MAX_SEND_QUEUE_BYTES,
            tip: TipHeight::default(),
            nonces: NonceSet::default(),
            v2_transport: false,
            v2_only: false,
            inbound_trickle: Default::default(),
            v1_only: Default::default(),
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }
}
