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

/// Everything the group needs.
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
    /// Arbiter threads for peer actors (0: one per core).
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
    /// fails with `NoPeers` (`Duration::ZERO`: at once). [`Fetch::wait`](super::Fetch::wait)
    /// overrides it per request.
    pub fetch_wait: Duration,
}

impl GroupConfig {
    /// Defaults around `peer`: 8 outbound, 117 inbound, no listeners, no seeds, in memory.
    pub fn new(peer: PeerConfig) -> Self {
        GroupConfig {
            // Regtest peers live on local networks; elsewhere gossip must not point us there.
            addrbook: AddrBookConfig {
                accept_local: peer.network == crate::Network::Regtest,
                ..AddrBookConfig::default()
            },
            peer,
            policy: PolicyConfig {
                max_outbound: 8,
                static_peers: Vec::new(),
                connect_only: false,
                diverse_netgroups: true,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(300),
            },
            listen: Vec::new(),
            max_inbound: 117,
            max_inbound_per_ip: 8,
            dns_seeds: Vec::new(),
            resolver: None,
            min_book_size: 100,
            data_dir: None,
            save_interval: Duration::from_secs(15 * 60),
            ban_time: Duration::from_secs(24 * 3600),
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
