//! The settings tree `btcpeerd` loads (defaults → `config/default.toml` → network overlay →
//! `--config FILE` → `BTCPEER_…` environment → flags; see `daemon::settings`), and its
//! validation. Every key is documented in `config/default.toml`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::network::Network;
use crate::peer::dial::ProxyConfig;
use crate::peer::machine::MachineConfig;
use crate::peer::requests::RequestTimeouts;
use crate::peer::{PeerAddr, PeerConfig};
use crate::wire::limits::MAX_SUBVERSION_LENGTH;
use crate::wire::{version, ServiceFlags};

/// A configuration problem, naming the key (or file) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// The key (`peer.ping_interval_secs`) or file the problem is in.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { key: key.into(), problem: problem.into() }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Everything `btcpeerd` can be told.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Which network.
    pub network: Network,
    /// The only peers to connect to (`HOST:PORT`, Core's `-connect`): no automatic outbound.
    pub connect: Vec<String>,
    /// Peers to keep connected in addition to automatic ones (`HOST:PORT`, Core's `-addnode`).
    pub addnode: Vec<String>,
    /// DNS seeds to query when the address book runs low; unset: the network's seeds.
    pub seeds: Option<Vec<String>>,
    /// DNS server for seed queries (`IP:PORT`); unset: the system's resolver.
    pub dns_server: Option<String>,
    /// Where the address book and bans are kept; unset: the user's data directory.
    pub data_dir: Option<String>,
    /// Addresses to accept inbound peers on (`IP:PORT`).
    pub listen: Vec<String>,
    /// Addresses to accept WebSocket peers on (`IP:PORT`).
    pub listen_ws: Vec<String>,
    /// Our public IP addresses, announced to outbound peers while listening and serving
    /// (Core's `-externalip`).
    pub external: Vec<String>,
    /// WebSocket peers (`[websocket]`).
    pub websocket: WebSocketSettings,
    /// Where to write the JSON event log: a path, `-` for stdout; unset for none.
    pub events: Option<String>,
    /// How the event log keeps up (`[event_log]`).
    pub event_log: EventLogSettings,
    /// Serve the HTTP API on this `IP:PORT`; unset for none.
    pub http: Option<String>,
    /// Per-connection settings.
    pub peer: PeerSettings,
    /// SOCKS5 proxy.
    pub proxy: ProxySettings,
    /// Reconnection backoff.
    pub retry: RetrySettings,
    /// Logging.
    pub log: LogSettings,
    /// Inbound limits.
    pub inbound: InboundSettings,
    /// Outbound targets, bans, persistence.
    pub group: GroupSettings,
    /// Timeouts and retries of requests (`[requests]`).
    pub requests: RequestSettings,
    /// Header chain sync and block fetching (`[sync]`).
    pub sync: SyncSettings,
}

/// What the event log does when it falls behind the peers it records.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// Lossless: stop reading the sockets of the peers it records until it catches up.
    #[default]
    Wait,
    /// Drop what does not fit and write a `dropped` record with the counts.
    Drop,
}

/// The event log's queue (`[event_log]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventLogSettings {
    /// Bytes of notifications that may wait for the event log to write them.
    pub queue_bytes: usize,
    /// When that queue is full: `wait` (peers are read no further) or `drop`.
    pub when_full: WhenFull,
}

impl Default for EventLogSettings {
    fn default() -> Self {
        EventLogSettings { queue_bytes: crate::events::DEFAULT_SUBSCRIBER_BYTES, when_full: WhenFull::Wait }
    }
}

/// Requests to peers (`[requests]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RequestSettings {
    /// A request times out after the peer's ping latency times this.
    pub timeout_multiplier: u32,
    /// Shortest request timeout.
    pub min_timeout_ms: u64,
    /// Longest request timeout (also used before the first ping is answered).
    pub max_timeout_secs: u64,
    /// Shortest timeout for block requests.
    pub block_timeout_secs: u64,
    /// Attempts per request, each on a different peer when possible.
    pub max_attempts: u32,
}

impl Default for RequestSettings {
    fn default() -> Self {
        let t = crate::peer::requests::RequestTimeouts::default();
        RequestSettings {
            timeout_multiplier: t.multiplier,
            min_timeout_ms: t.min.as_millis() as u64,
            max_timeout_secs: t.max.as_secs(),
            block_timeout_secs: t.block.as_secs(),
            max_attempts: crate::group::requests::DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// Header sync (`[sync]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSettings {
    /// Follow the best header chain (kept in `<data_dir>/headers.dat`).
    pub headers: bool,
    /// Fetch each new block once synced (implies `headers`).
    pub fetch_blocks: bool,
    /// No new header for this long while a peer claims more: replace the sync peer.
    pub stale_tip_timeout_secs: u64,
    /// Start from this trusted header instead of genesis: `HEIGHT:HEADER_HEX` (80 bytes).
    pub checkpoint: Option<String>,
    /// Serve peers: answer `getheaders`, announce new tips, proxy blocks (needs `headers`).
    pub serve: bool,
    /// While serving blocks, offer `NODE_BLOOM` too: accept BIP37 filters and serve filtered
    /// blocks (needs `serve`).
    pub serve_bloom: bool,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            headers: false,
            fetch_blocks: false,
            stale_tip_timeout_secs: 30 * 60,
            checkpoint: None,
            serve: false,
            serve_bloom: false,
        }
    }
}

/// The peer group (`[group]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    /// Outbound connections to keep.
    pub max_outbound: usize,
    /// At most one automatic outbound peer per network group (/16 IPv4, /32 IPv6).
    pub one_per_netgroup: bool,
    /// How long a misbehaving address stays banned.
    pub ban_time_secs: u64,
    /// Ban misbehaving local addresses (127.0.0.0/8, ::1) too; Core only disconnects them.
    pub ban_local: bool,
    /// How often the address book and bans are saved.
    pub save_interval_secs: u64,
    /// Query DNS seeds while the address book holds fewer addresses than this.
    pub min_addresses: usize,
    /// Threads for peer actors (0: one per core).
    pub threads: usize,
    /// Relay mode: announce transactions learned from one peer to the others.
    pub relay: bool,
    /// How long a request waits for a ready peer that can serve it before it fails.
    pub fetch_wait_secs: u64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            max_outbound: crate::group::DEFAULT_MAX_OUTBOUND,
            one_per_netgroup: true,
            ban_time_secs: crate::group::DEFAULT_BAN_TIME.as_secs(),
            ban_local: false,
            save_interval_secs: crate::group::DEFAULT_SAVE_INTERVAL.as_secs(),
            min_addresses: crate::group::DEFAULT_MIN_BOOK_SIZE,
            threads: 0,
            relay: false,
            fetch_wait_secs: crate::group::DEFAULT_FETCH_WAIT.as_secs(),
        }
    }
}

/// Per-connection settings (`[peer]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PeerSettings {
    /// Service bits we advertise.
    pub services: u64,
    /// Ask peers to announce transactions to us.
    pub relay: bool,
    /// Appended to our BIP14 user agent: `/btcpeer:x.y.z/<comment>/`.
    pub user_agent_comment: Option<String>,
    /// Lowest peer protocol version accepted.
    pub min_peer_version: u32,
    /// Service bits outbound peers must offer.
    pub required_services: u64,
    /// TCP/SOCKS5 connect timeout.
    pub connect_timeout_secs: u64,
    /// Handshake must complete within this time after connect.
    pub handshake_timeout_secs: u64,
    /// Time between our pings.
    pub ping_interval_secs: u64,
    /// Disconnect when a ping stays unanswered this long.
    pub ping_timeout_secs: u64,
    /// Disconnect when nothing is received this long.
    pub inactivity_timeout_secs: u64,
    /// Cap on bytes waiting to be written to one peer.
    pub max_send_queue_bytes: usize,
    /// Request announced transactions so `tx` events arrive.
    pub request_transactions: bool,
    /// Send one `getaddr` after the handshake.
    pub getaddr: bool,
    /// BIP324 v2 encrypted transport (Core's `-v2transport`).
    pub v2_transport: bool,
    /// BIP324 v2 only: no v1 retry, v1 inbound peers disconnected (needs `v2_transport`).
    pub v2_only: bool,
}

/// SOCKS5 proxy (`[proxy]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySettings {
    /// Proxy `HOST:PORT`; unset for direct connections.
    pub addr: Option<String>,
    /// Username for proxy authentication.
    pub username: Option<String>,
    /// Password for proxy authentication.
    pub password: Option<String>,
}

/// Reconnection backoff (`[retry]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// First delay after a failure.
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts.
    pub max_backoff_secs: u64,
}

/// Logging (`[log]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter (overridden by `RUST_LOG`).
    pub filter: String,
    /// Output format.
    pub format: LogFormat,
}

/// Inbound limits (`[inbound]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InboundSettings {
    /// Most inbound peers at once.
    pub max_peers: usize,
    /// Most inbound peers from one IP (0: no limit).
    pub max_per_ip: usize,
}

/// WebSocket peers (`[websocket]`; listeners in `listen_ws`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    /// Most WebSocket connections at once.
    pub max_peers: usize,
    /// Largest WebSocket frame or message accepted, in bytes.
    pub max_message_bytes: usize,
    /// `Origin`s a browser page may connect from; empty: any.
    pub allowed_origins: Vec<String>,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            max_peers: crate::group::DEFAULT_MAX_WS_PEERS,
            max_message_bytes: crate::group::DEFAULT_MAX_WS_MESSAGE_BYTES,
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            network: Network::Mainnet,
            connect: Vec::new(),
            addnode: Vec::new(),
            seeds: None,
            dns_server: None,
            data_dir: None,
            listen: Vec::new(),
            listen_ws: Vec::new(),
            external: Vec::new(),
            websocket: WebSocketSettings::default(),
            events: None,
            event_log: EventLogSettings::default(),
            http: None,
            peer: PeerSettings::default(),
            proxy: ProxySettings::default(),
            retry: RetrySettings::default(),
            log: LogSettings::default(),
            inbound: InboundSettings::default(),
            group: GroupSettings::default(),
            requests: RequestSettings::default(),
            sync: SyncSettings::default(),
        }
    }
}

impl Default for PeerSettings {
    fn default() -> Self {
        let m = MachineConfig::default();
        PeerSettings {
            services: 0,
            relay: m.relay,
            user_agent_comment: None,
            min_peer_version: m.min_peer_version,
            required_services: 0,
            connect_timeout_secs: crate::peer::dial::DEFAULT_CONNECT_TIMEOUT.as_secs(),
            handshake_timeout_secs: m.handshake_timeout.as_secs(),
            ping_interval_secs: m.ping_interval.as_secs(),
            ping_timeout_secs: m.ping_timeout.as_secs(),
            inactivity_timeout_secs: m.inactivity_timeout.as_secs(),
            max_send_queue_bytes: crate::peer::outbound::DEFAULT_MAX_SEND_QUEUE_BYTES,
            request_transactions: m.request_announced_txs,
            getaddr: m.send_getaddr,
            // On, as in Core since v26; the library's own default is off (see PeerConfig).
            v2_transport: true,
            v2_only: false,
        }
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            initial_backoff_ms: crate::group::DEFAULT_INITIAL_BACKOFF.as_millis() as u64,
            max_backoff_secs: crate::group::DEFAULT_MAX_BACKOFF.as_secs(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { filter: "info".into(), format: LogFormat::Pretty }
    }
}

impl Default for InboundSettings {
    fn default() -> Self {
        InboundSettings {
            max_peers: crate::group::DEFAULT_MAX_INBOUND,
            max_per_ip: crate::group::DEFAULT_MAX_INBOUND_PER_IP,
        }
    }
}

impl Settings {
    /// The `connect` then `addnode` entries as peer addresses (the network's default port when
    /// omitted).
    pub fn static_peers(&self) -> Result<Vec<PeerAddr>, ConfigError> {
        let parse = |key: &'static str, list: &[String]| -> Result<Vec<PeerAddr>, ConfigError> {
            list.iter()
                .map(|s| {
                    PeerAddr::parse_with_default_port(s, self.network.default_port())
                        .map_err(|e| ConfigError::new(key, e.to_string()))
                })
                .collect()
        };
        let mut all = parse("connect", &self.connect)?;
        all.extend(parse("addnode", &self.addnode)?);
        Ok(all)
    }

    /// True when only the `connect` peers are used (Core's `-connect`).
    pub fn connect_only(&self) -> bool {
        !self.connect.is_empty()
    }

    /// The configured header-sync checkpoint, checked against the network's rules.
    pub fn checkpoint(&self) -> Result<Option<crate::chain::Checkpoint>, ConfigError> {
        let Some(raw) = &self.sync.checkpoint else { return Ok(None) };
        let bad = |problem: String| ConfigError::new("sync.checkpoint", problem);
        let (height, hex) = raw.split_once(':').ok_or_else(|| bad("expected HEIGHT:HEADER_HEX".into()))?;
        let height: u32 = height.trim().parse().map_err(|_| bad(format!("invalid height {height:?}")))?;
        let hex = hex.trim();
        if hex.len() != 160 {
            return Err(bad(format!("header must be 80 bytes (160 hex digits), got {} digits", hex.len())));
        }
        let header: bitcoin::block::Header = bitcoin::consensus::encode::deserialize_hex(hex)
            .map_err(|e| bad(format!("invalid header: {e}")))?;
        let checkpoint = crate::chain::Checkpoint { height, header };
        crate::chain::HeaderChain::with_checkpoint(self.network, checkpoint)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Some(checkpoint))
    }

    /// The DNS seeds to use.
    pub fn dns_seeds(&self) -> Vec<String> {
        match &self.seeds {
            Some(s) => s.clone(),
            None => self.network.dns_seeds().iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Where the HTTP API listens, if configured.
    pub fn http_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.http
            .as_ref()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new("http", format!("invalid address {s:?} (expected IP:PORT)"))
                })
            })
            .transpose()
    }

    /// The DNS server for seed queries, if configured.
    pub fn dns_server(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.dns_server
            .as_ref()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new("dns_server", format!("invalid address {s:?} (expected IP:PORT)"))
                })
            })
            .transpose()
    }

    /// The `listen` entries.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.listen
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new("listen", format!("invalid address {s:?} (expected IP:PORT)"))
                })
            })
            .collect()
    }

    /// The public addresses to announce (`external`).
    pub fn external_ips(&self) -> Result<Vec<std::net::IpAddr>, ConfigError> {
        self.external
            .iter()
            .map(|s| s.parse().map_err(|_| ConfigError::new("external", format!("invalid IP address {s:?}"))))
            .collect()
    }

    /// The WebSocket listener settings (`listen_ws` and `[websocket]`).
    pub fn websocket(&self) -> Result<crate::group::WsConfig, ConfigError> {
        let listen = self
            .listen_ws
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new("listen_ws", format!("invalid address {s:?} (expected IP:PORT)"))
                })
            })
            .collect::<Result<_, _>>()?;
        if self.websocket.max_message_bytes < 1024 {
            return Err(ConfigError::new("websocket.max_message_bytes", "must be at least 1024"));
        }
        Ok(crate::group::WsConfig {
            listen,
            max_peers: self.websocket.max_peers,
            max_message_bytes: self.websocket.max_message_bytes,
            allowed_origins: self.websocket.allowed_origins.clone(),
        })
    }

    /// The proxy, if configured.
    pub fn proxy(&self) -> Result<Option<ProxyConfig>, ConfigError> {
        let Some(addr) = &self.proxy.addr else { return Ok(None) };
        let addr = addr.parse::<PeerAddr>().map_err(|e| ConfigError::new("proxy.addr", e.to_string()))?;
        let credentials = match (&self.proxy.username, &self.proxy.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(ConfigError::new("proxy.username", "username and password must be set together"));
            }
        };
        Ok(Some(ProxyConfig { addr, credentials }))
    }

    /// The per-connection configuration these settings describe.
    pub fn peer_config(&self) -> Result<PeerConfig, ConfigError> {
        let p = &self.peer;
        let mut cfg = PeerConfig::new(self.network);
        cfg.machine = MachineConfig {
            services: ServiceFlags::from(p.services),
            user_agent: version::user_agent(p.user_agent_comment.as_deref()),
            relay: p.relay,
            min_peer_version: p.min_peer_version,
            required_services: ServiceFlags::from(p.required_services),
            handshake_timeout: Duration::from_secs(p.handshake_timeout_secs),
            ping_interval: Duration::from_secs(p.ping_interval_secs),
            ping_timeout: Duration::from_secs(p.ping_timeout_secs),
            inactivity_timeout: Duration::from_secs(p.inactivity_timeout_secs),
            send_getaddr: p.getaddr,
            request_announced_txs: p.request_transactions,
            request_timeouts: RequestTimeouts {
                multiplier: self.requests.timeout_multiplier,
                min: Duration::from_millis(self.requests.min_timeout_ms),
                max: Duration::from_secs(self.requests.max_timeout_secs),
                block: Duration::from_secs(self.requests.block_timeout_secs),
            },
            ..MachineConfig::default()
        };
        cfg.connect_timeout = Duration::from_secs(p.connect_timeout_secs);
        cfg.max_send_queue_bytes = p.max_send_queue_bytes;
        cfg.v2_transport = p.v2_transport;
        cfg.v2_only = p.v2_only;
        cfg.proxy = self.proxy()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests;
mod validate;
