//! `[sink.nats]`: where and how the daemon publishes its events to NATS JetStream. Every key is
//! documented in `config/default.toml`.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::network::Network;

/// Every event name a record can carry (the `--events` log's `event` field), plus `dropped`,
/// which only the NATS sink publishes.
pub const EVENT_NAMES: [&str; 14] = [
    "state",
    "ready",
    "disconnected",
    "inv",
    "tx",
    "addr",
    "headers",
    "block",
    "synced",
    "block_failed",
    "block_disconnected",
    "banned",
    "unbanned",
    "dropped",
];

/// The `[sink]` table: event sinks besides the `--events` log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkSettings {
    /// `[sink.nats]`.
    pub nats: NatsSettings,
}

/// `[sink.nats]`: publishing every event to a JetStream stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`); empty: the sink is off.
    pub servers: Vec<String>,
    /// Names this daemon in every record (`daemon` field) and in per-peer message ids; unset:
    /// the host name.
    pub daemon_id: Option<String>,
    /// A `.creds` file (JWT and NKey seed) to authenticate with.
    pub creds_file: Option<String>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// Refuse servers that do not offer TLS.
    pub tls_required: bool,
    /// PEM file of the CA certificates to trust (besides the system's web roots).
    pub tls_ca_file: Option<String>,
    /// PEM client certificate for mutual TLS (with `tls_client_key`).
    pub tls_client_cert: Option<String>,
    /// PEM private key of `tls_client_cert`.
    pub tls_client_key: Option<String>,
    /// JetStream stream the events go to; created if missing, checked if present.
    pub stream: String,
    /// Subject prefix: events go to `<prefix>.<event>`; unset: `btcpeer.<network>`.
    pub subject_prefix: Option<String>,
    /// Events to publish by name, or `["*"]` for all of them.
    pub events: Vec<String>,
    /// JetStream de-duplication window, seconds (several daemons publish each tx and block
    /// once within it).
    pub duplicate_window_secs: u64,
    /// Retention of a stream the daemon creates: messages older than this are removed, seconds.
    pub max_age_secs: u64,
    /// Most bytes the on-disk spool (`<data_dir>/nats-spool`) keeps while the server is
    /// unreachable; beyond it the oldest events are dropped.
    pub spool_max_bytes: u64,
    /// Most publishes waiting for their JetStream ack at once. 1 (the default) keeps every
    /// subject's order across an outage: with more, a publish lost on a dying connection can be
    /// replayed after a later one that the client still delivered once it reconnected.
    pub max_in_flight: usize,
    /// How long a publish waits for its ack before the link counts as down, milliseconds.
    pub ack_timeout_ms: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            servers: Vec::new(),
            daemon_id: None,
            creds_file: None,
            user: None,
            password: None,
            token: None,
            tls_required: false,
            tls_ca_file: None,
            tls_client_cert: None,
            tls_client_key: None,
            stream: "BTCPEER".into(),
            subject_prefix: None,
            events: vec!["*".into()],
            duplicate_window_secs: 120,
            max_age_secs: 7 * 24 * 3600,
            spool_max_bytes: 256 * 1024 * 1024,
            max_in_flight: 1,
            ack_timeout_ms: 5_000,
        }
    }
}

/// A subject token or stream name: no spaces, dots or wildcards (NATS's naming rules).
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '.' | '*' | '>'))
}

fn key(name: &str) -> String {
    format!("sink.nats.{name}")
}

impl NatsSettings {
    /// Whether the sink is on (some server is configured).
    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }

    /// `<prefix>`: the configured one or `btcpeer.<network>`.
    pub fn prefix(&self, network: Network) -> String {
        self.subject_prefix.clone().unwrap_or_else(|| format!("btcpeer.{}", network.name()))
    }

    /// Whether `event` is published.
    pub fn publishes(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event)
    }

    /// The daemon id: the configured one, else the host name, else `btcpeerd`.
    pub fn daemon_id(&self) -> String {
        if let Some(id) = &self.daemon_id {
            return id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| valid_name(h))
            .unwrap_or_else(|| "btcpeerd".into())
    }

    /// Checks every key, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for server in &self.servers {
            if server.parse::<async_nats::ServerAddr>().is_err() {
                return Err(ConfigError::new(key("servers"), format!("invalid server URL {server:?}")));
            }
        }
        if let Some(id) = &self.daemon_id {
            if !valid_name(id) {
                return Err(ConfigError::new(
                    key("daemon_id"),
                    "must be non-empty, without spaces, '.', '*' or '>'",
                ));
            }
        }
        if !valid_name(&self.stream) || self.stream.contains(['/', '\\']) {
            return Err(ConfigError::new(key("stream"), format!("invalid stream name {:?}", self.stream)));
        }
        if let Some(prefix) = &self.subject_prefix {
            if !prefix.split('.').all(valid_name) {
                return Err(ConfigError::new(
                    key("subject_prefix"),
                    format!("invalid subject prefix {prefix:?} (dot-separated tokens, no wildcards)"),
                ));
            }
        }
        if self.events.is_empty() {
            return Err(ConfigError::new(key("events"), "must name at least one event (or \"*\" for all)"));
        }
        for event in &self.events {
            if event != "*" && !EVENT_NAMES.contains(&event.as_str()) {
                return Err(ConfigError::new(
                    key("events"),
                    format!("unknown event {event:?} (expected \"*\" or some of {})", EVENT_NAMES.join(", ")),
                ));
            }
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(ConfigError::new(key("password"), "set user and password together"));
        }
        let methods = [self.creds_file.is_some(), self.user.is_some(), self.token.is_some()];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(ConfigError::new(key("creds_file"), "use one of creds_file, user/password or token"));
        }
        if self.tls_client_cert.is_some() != self.tls_client_key.is_some() {
            return Err(ConfigError::new(
                key("tls_client_key"),
                "set tls_client_cert and tls_client_key together",
            ));
        }
        for (name, file) in [
            ("creds_file", &self.creds_file),
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_client_cert", &self.tls_client_cert),
            ("tls_client_key", &self.tls_client_key),
        ] {
            if let Some(path) = file {
                if let Err(e) = std::fs::metadata(path) {
                    return Err(ConfigError::new(key(name), format!("cannot read {path}: {e}")));
                }
            }
        }
        if !(1..=24 * 3600).contains(&self.duplicate_window_secs) {
            return Err(ConfigError::new(key("duplicate_window_secs"), "must be between 1 and 86400"));
        }
        if self.max_age_secs > 0 && self.max_age_secs < self.duplicate_window_secs {
            return Err(ConfigError::new(
                key("max_age_secs"),
                "must be 0 (no limit) or at least duplicate_window_secs",
            ));
        }
        if !(1 << 16..=1 << 40).contains(&self.spool_max_bytes) {
            return Err(ConfigError::new(key("spool_max_bytes"), "must be between 65536 and 1099511627776"));
        }
        if !(1..=65_536).contains(&self.max_in_flight) {
            return Err(ConfigError::new(key("max_in_flight"), "must be between 1 and 65536"));
        }
        if !(100..=600_000).contains(&self.ack_timeout_ms) {
            return Err(ConfigError::new(key("ack_timeout_ms"), "must be between 100 and 600000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let s = NatsSettings::default();
        s.validate().unwrap();
        assert!(!s.enabled());
        assert_eq!(s.prefix(Network::Regtest), "btcpeer.regtest");
        assert!(s.publishes("tx") && s.publishes("dropped"));
    }

    #[test]
    fn bad_values_name_their_key() {
        type Change = fn(&mut NatsSettings);
        let cases: [(&str, Change); 9] = [
            ("sink.nats.servers", |s| s.servers = vec!["nats://[::1".into()]),
            ("sink.nats.stream", |s| s.stream = "A.B".into()),
            ("sink.nats.subject_prefix", |s| s.subject_prefix = Some("a..b".into())),
            ("sink.nats.events", |s| s.events = vec!["blocks".into()]),
            ("sink.nats.password", |s| s.user = Some("u".into())),
            ("sink.nats.spool_max_bytes", |s| s.spool_max_bytes = 10),
            ("sink.nats.max_in_flight", |s| s.max_in_flight = 0),
            ("sink.nats.tls_ca_file", |s| s.tls_ca_file = Some("/nonexistent/ca.pem".into())),
            ("sink.nats.daemon_id", |s| s.daemon_id = Some("a b".into())),
        ];
        for (key, change) in cases {
            let mut s = NatsSettings::default();
            change(&mut s);
            assert_eq!(s.validate().unwrap_err().key, key);
        }
    }
}
