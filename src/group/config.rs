//! Everything a [`PeerGroup`](super::PeerGroup) is configured with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::policy::PolicyConfig;
use crate::addrbook::AddrBookConfig;
use crate::discovery::SeedResolver;
use crate::peer::PeerConfig;

/// How long a [`Fetch`](super::Fetch) waits for a ready peer that can serve it, by default:
/// long enough for a fresh group to dial and finish a handshake (DNS seeds included), short
/// enough that a group with no reachable peer reports it.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_secs(30);

/// Outbound connections to keep: 8, as btcd (Core keeps `MAX_OUTBOUND_FULL_RELAY_CONNECTIONS`
/// = 8 full-relay ones and 2 block-relay-only ones besides).
pub const DEFAULT_MAX_OUTBOUND: usize = 8;
/// Most inbound peers: Core's default of 125 connections (`DEFAULT_MAX_PEER_CONNECTIONS`,
/// `net.h`) minus our 8 outbound ones.
pub const DEFAULT_MAX_INBOUND: usize = 117;
/// Most inbound peers from one IP address.
pub const DEFAULT_MAX_INBOUND_PER_IP: usize = 8;
/// Seeds are queried while the address book holds fewer addresses than this.
pub const DEFAULT_MIN_BOOK_SIZE: usize = 100;
/// How often the address book and bans are saved (Core's `DUMP_PEERS_INTERVAL`: 15 min).
pub const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// How long a misbehaving address stays banned (Core's `DEFAULT_MISBEHAVING_BANTIME`: 24 h).
pub const DEFAULT_BAN_TIME: Duration = Duration::from_secs(24 * 3600);
/// First redial delay of a failed peer; it doubles per failure, with jitter.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest redial delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Everything the group needs. Start from [`GroupConfig::for_network`] (peers found through the
/// network's DNS seeds) or [`GroupConfig::connect_to`] (only the peers you name); both use the
/// same defaults as `btcpeerd` (`config/default.toml`), except that BIP324 v2 stays off until
/// [`PeerConfig::v2_transport`](crate::peer::PeerConfig::v2_transport) turns it on.
///
/// ```
/// use btcpeer::group::GroupConfig;
/// use btcpeer::Network;
/// let cfg = GroupConfig::connect_to(Network::Regtest, ["127.0.0.1:18444".parse().unwrap()]);
/// assert!(cfg.policy.connect_only);
/// assert!(cfg.dns_seeds.is_empty());
/// let mainnet = GroupConfig::for_network(Network::Mainnet);
/// assert!(!mainnet.dns_seeds.is_empty());
/// ```
#[derive(Clone)]
pub struct GroupConfig {
    /// Settings for every connection.
    pub peer: PeerConfig,
    /// Outbound targets and retry rules.
    pub policy: PolicyConfig,
    /// Addresses to accept inbound peers on.
    pub listen: Vec<SocketAddr>,
    /// Most inbound peers at once.
    pub max_inbound: usize,
    /// Most inbound peers from one IP (0 = no limit).
    pub max_inbound_per_ip: usize,
    /// DNS seed host names (queried when the address book runs low).
    pub dns_seeds: Vec<String>,
    /// Resolver for the seeds; `None` disables seeding.
    pub resolver: Option<Arc<dyn SeedResolver>>,
    /// Query seeds while the address book holds fewer addresses than this.
    pub min_book_size: usize,
    /// Where the address book and bans are saved; `None` keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// How often state is saved.
    pub save_interval: Duration,
    /// How long a misbehaving address stays banned.
    pub ban_time: Duration,
    /// Our public addresses (Core's `-externalip`). While the group listens and offers blocks
    /// (`NODE_NETWORK`, as `--serve` does), each outbound peer hears one of them with our
    /// listening port after the handshake and every 24 h on average; empty, the address the
    /// peer says it sees us at, when publicly routable and no proxy is set (see
    /// [`MachineConfig::advertise`](crate::peer::MachineConfig::advertise)).
    pub external: Vec<std::net::IpAddr>,
    /// Ban local addresses (127.0.0.0/8, 0.0.0.0/8, ::1) for misbehaviour too. Off by default,
    /// as in Core, which disconnects a misbehaving local peer but never discourages it: every
    /// inbound Tor peer arrives from the local Tor daemon, so a ban would shut them all out
    /// (`net_processing.cpp`, `MaybeDiscourageAndDisconnect`). Tests that run every peer on
    /// loopback turn it on. Bans the user asks for apply either way.
    pub ban_local: bool,
    /// Most arbiter threads for peer actors (0: one per core), started as the first peers
    /// need them; peers are spread over them round robin.
    pub arbiters: usize,
    /// Most peers of any kind (bitcoin-net's `hardLimit`): the newest above it are dropped.
    pub hard_limit: Option<usize>,
    /// Relay mode: transactions learned from one peer are announced to the others (never back
    /// to the source) and served from the broadcast cache.
    pub relay_transactions: bool,
    /// Address book sizing.
    pub addrbook: AddrBookConfig,
    /// Attempts per [`Fetch`](super::Fetch) (each on a different peer when possible) before
    /// it fails.
    pub max_request_attempts: u32,
    /// How long a [`Fetch`](super::Fetch) waits for a ready peer that can serve it before it
    /// fails with `GroupError::NoPeers` (`Duration::ZERO`: at once). [`Fetch::wait`](super::Fetch::wait)
    /// overrides it per request.
    pub fetch_wait: Duration,
}

impl GroupConfig {
    /// A group on `network` that finds peers through the network's DNS seeds (the system's
    /// resolver) and the addresses peers gossip, keeping 8 outbound connections; no listener,
    /// state in memory (set `data_dir` to keep the address book and bans).
    pub fn for_network(network: crate::Network) -> Self {
        let mut cfg = GroupConfig::new(PeerConfig::new(network));
        cfg.dns_seeds = network.dns_seeds().iter().map(|s| (*s).to_owned()).collect();
        match crate::discovery::DnsResolver::system() {
            Ok(resolver) => cfg.resolver = Some(Arc::new(resolver)),
            // The group then lives on gossip and configured peers; say why seeding is off.
            Err(e) => tracing::warn!(error = %e, "no system DNS resolver: DNS seeds disabled"),
        }
        cfg
    }

    /// A group that connects only to `peers` (Core's `-connect`): each is redialed forever with
    /// backoff, no automatic outbound peers, no DNS seeds.
    pub fn connect_to(
        network: crate::Network,
        peers: impl IntoIterator<Item = crate::peer::PeerAddr>,
    ) -> Self {
        let mut cfg = GroupConfig::new(PeerConfig::new(network));
        cfg.policy.static_peers = peers.into_iter().collect();
        cfg.policy.connect_only = true;
        cfg
    }

    /// Defaults around `peer`: 8 outbound, 117 inbound, no listeners, no seeds (see
    /// [`for_network`](Self::for_network)), state in memory.
    pub fn new(peer: PeerConfig) -> Self {
        GroupConfig {
            // Regtest peers live on local networks; elsewhere gossip must not point us there.
            addrbook: AddrBookConfig {
                accept_local: peer.network == crate::Network::Regtest,
                ..AddrBookConfig::default()
            },
            peer,
            policy: PolicyConfig {
                max_outbound: DEFAULT_MAX_OUTBOUND,
                static_peers: Vec::new(),
                connect_only: false,
                diverse_netgroups: true,
                initial_backoff: DEFAULT_INITIAL_BACKOFF,
                max_backoff: DEFAULT_MAX_BACKOFF,
            },
            listen: Vec::new(),
            max_inbound: DEFAULT_MAX_INBOUND,
            max_inbound_per_ip: DEFAULT_MAX_INBOUND_PER_IP,
            dns_seeds: Vec::new(),
            resolver: None,
            min_book_size: DEFAULT_MIN_BOOK_SIZE,
            data_dir: None,
            save_interval: DEFAULT_SAVE_INTERVAL,
            ban_time: DEFAULT_BAN_TIME,
            ban_local: false,
            external: Vec::new(),
            arbiters: 0,
            hard_limit: None,
            relay_transactions: false,
            max_request_attempts: super::requests::DEFAULT_MAX_ATTEMPTS,
            fetch_wait: DEFAULT_FETCH_WAIT,
        }
    }
}

impl std::fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConfig")
            .field("policy", &self.policy)
            .field("listen", &self.listen)
            .field("max_inbound", &self.max_inbound)
            .field("dns_seeds", &self.dns_seeds)
            .field("data_dir", &self.data_dir)
            .field("fetch_wait", &self.fetch_wait)
            .finish_non_exhaustive()
    }
}
