//! [`Settings::validate`]: every value checked, the error naming the first bad key.

use super::*;

fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(ConfigError::new(key, "must be greater than 0"));
    }
    Ok(())
}

/// Positive and at most `max` (timer arithmetic must never overflow).
fn within(key: &str, v: u64, max: u64) -> Result<(), ConfigError> {
    positive(key, v)?;
    if v > max {
        return Err(ConfigError::new(key, format!("must be at most {max}")));
    }
    Ok(())
}

const DAY_SECS: u64 = 24 * 3600;

impl Settings {
    /// Checks every value; the error names the first bad key. `log.filter` is checked by the
    /// daemon when it loads or runs the settings: the filter syntax belongs to
    /// `tracing-subscriber`, a daemon-only dependency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.static_peers()?;
        self.listen_addrs()?;
        self.external_ips()?;
        self.websocket()?;
        self.dns_server()?;
        self.http_addr()?;
        if let Some(seeds) = &self.seeds {
            for seed in seeds {
                if PeerAddr::parse_with_default_port(seed, 1)
                    .map(|a| a.socket_addr().is_some())
                    .unwrap_or(true)
                {
                    return Err(ConfigError::new("seeds", format!("invalid seed host name {seed:?}")));
                }
            }
        }
        if self.peer.v2_only && !self.peer.v2_transport {
            return Err(ConfigError::new("peer.v2_only", "needs peer.v2_transport = true"));
        }
        if self.sync.serve && !(self.sync.headers || self.sync.fetch_blocks) {
            return Err(ConfigError::new("sync.serve", "needs sync.headers (--sync-headers)"));
        }
        if self.sync.serve_bloom && !self.sync.serve {
            return Err(ConfigError::new("sync.serve_bloom", "needs sync.serve (--serve)"));
        }
        if self.group.max_outbound > 1_000 {
            return Err(ConfigError::new("group.max_outbound", "must be at most 1000"));
        }
        within("group.ban_time_secs", self.group.ban_time_secs, 10 * 365 * DAY_SECS)?;
        within("group.save_interval_secs", self.group.save_interval_secs, DAY_SECS)?;
        if self.group.fetch_wait_secs > 3600 {
            return Err(ConfigError::new("group.fetch_wait_secs", "must be at most 3600"));
        }
        if !(64 << 10..=4 << 30).contains(&self.event_log.queue_bytes) {
            return Err(ConfigError::new(
                "event_log.queue_bytes",
                "must be between 65536 (64 KiB) and 4294967296 (4 GiB)",
            ));
        }
        if self.data_dir.as_deref() == Some("") {
            return Err(ConfigError::new("data_dir", "must not be empty"));
        }
        self.proxy()?;
        let p = &self.peer;
        within("peer.connect_timeout_secs", p.connect_timeout_secs, DAY_SECS)?;
        within("peer.handshake_timeout_secs", p.handshake_timeout_secs, DAY_SECS)?;
        within("peer.ping_interval_secs", p.ping_interval_secs, DAY_SECS)?;
        within("peer.ping_timeout_secs", p.ping_timeout_secs, DAY_SECS)?;
        within("peer.inactivity_timeout_secs", p.inactivity_timeout_secs, DAY_SECS)?;
        within("retry.initial_backoff_ms", self.retry.initial_backoff_ms, 3600 * 1000)?;
        within("retry.max_backoff_secs", self.retry.max_backoff_secs, DAY_SECS)?;
        if !(1_000..=1 << 30).contains(&p.max_send_queue_bytes) {
            return Err(ConfigError::new("peer.max_send_queue_bytes", "must be between 1000 and 1073741824"));
        }
        if self.group.threads > 1_024 {
            return Err(ConfigError::new("group.threads", "must be at most 1024"));
        }
        if self.inbound.max_peers > 1_000_000 {
            return Err(ConfigError::new("inbound.max_peers", "must be at most 1000000"));
        }
        if let Some(comment) = &p.user_agent_comment {
            if comment.chars().any(|c| matches!(c, '/' | '(' | ')') || c.is_control()) {
                return Err(ConfigError::new(
                    "peer.user_agent_comment",
                    "must not contain '/', '(', ')' or control characters (BIP14)",
                ));
            }
            let ua = version::user_agent(Some(comment));
            if ua.len() > MAX_SUBVERSION_LENGTH {
                return Err(ConfigError::new(
                    "peer.user_agent_comment",
                    format!(
                        "user agent would be {} bytes; Core ignores versions above {MAX_SUBVERSION_LENGTH}",
                        ua.len()
                    ),
                ));
            }
        }
        let r = &self.requests;
        if !(1..=1_000).contains(&r.timeout_multiplier) {
            return Err(ConfigError::new("requests.timeout_multiplier", "must be between 1 and 1000"));
        }
        within("requests.min_timeout_ms", r.min_timeout_ms, 3600 * 1000)?;
        within("requests.max_timeout_secs", r.max_timeout_secs, 3600)?;
        within("requests.block_timeout_secs", r.block_timeout_secs, 3600)?;
        if r.max_timeout_secs * 1000 < r.min_timeout_ms {
            return Err(ConfigError::new(
                "requests.max_timeout_secs",
                "must not be below requests.min_timeout_ms",
            ));
        }
        if !(1..=100).contains(&r.max_attempts) {
            return Err(ConfigError::new("requests.max_attempts", "must be between 1 and 100"));
        }
        within("sync.stale_tip_timeout_secs", self.sync.stale_tip_timeout_secs, DAY_SECS)?;
        self.checkpoint()?;
        if let Some(events) = &self.events {
            if events.is_empty() {
                return Err(ConfigError::new("events", "must be a path or '-'"));
            }
        }
        Ok(())
    }
}
