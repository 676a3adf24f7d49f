//! Prometheus metrics shared by every peer of a process (counters are atomics: peers on any
//! arbiter update them without messages). The daemon serves them at `GET /metrics`.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::peer::{DisconnectReason, Link};

/// All of btcpeer's metrics and their registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    messages: IntCounterVec,
    bytes: IntCounterVec,
    connects: IntCounterVec,
    disconnects: IntCounterVec,
    dials: IntCounterVec,
    ping: Histogram,
    handshake: HistogramVec,
    v2_fallbacks: prometheus::IntCounter,
    /// Peers by direction and state (set at scrape time).
    pub peers: IntGaugeVec,
    /// Active bans (set at scrape time).
    pub bans: IntGauge,
    /// Address book entries by table (set at scrape time).
    pub addrbook: IntGaugeVec,
    /// Notifications dropped for full subscriber mailboxes, over current peers (set at scrape time).
    pub subscriber_dropped: IntGauge,
    /// Best header height (set at scrape time; absent without header sync).
    pub header_height: IntGauge,
    /// 1 when headers are synced to the best tip peers know (set at scrape time).
    pub headers_synced: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn link_label(link: Link) -> &'static str {
    match link {
        Link::Inbound => "inbound",
        Link::Outbound => "outbound",
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry.register(Box::new(c.clone())).expect("metric names are unique");
            c
        };
        let messages = counter(
            "btcpeer_messages_total",
            "Messages by direction and command.",
            &["direction", "command"],
        );
        let bytes = counter(
            "btcpeer_message_bytes_total",
            "Wire bytes by direction and command.",
            &["direction", "command"],
        );
        let connects = counter(
            "btcpeer_handshakes_total",
            "Completed handshakes by direction and transport (v1, v2).",
            &["direction", "transport"],
        );
        let disconnects = counter(
            "btcpeer_disconnects_total",
            "Ended connections by direction, reason and reason kind.",
            &["direction", "reason", "kind"],
        );
        let dials = counter("btcpeer_dials_total", "Outbound connection attempts by outcome.", &["outcome"]);
        let buckets = vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        let ping = Histogram::with_opts(
            HistogramOpts::new("btcpeer_ping_latency_seconds", "Ping round trips.").buckets(buckets.clone()),
        )
        .expect("valid histogram");
        registry.register(Box::new(ping.clone())).expect("metric names are unique");
        let handshake = HistogramVec::new(
            HistogramOpts::new("btcpeer_handshake_duration_seconds", "Connect to handshake completion.")
                .buckets(buckets),
            &["direction", "transport"],
        )
        .expect("valid histogram");
        registry.register(Box::new(handshake.clone())).expect("metric names are unique");
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry.register(Box::new(g.clone())).expect("metric names are unique");
            g
        };
        let peers =
            gauge_vec("btcpeer_peers", "Connections by direction and state.", &["direction", "state"]);
        let addrbook = gauge_vec("btcpeer_addrbook_addresses", "Address book entries by table.", &["table"]);
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric definition");
            registry.register(Box::new(g.clone())).expect("metric names are unique");
            g
        };
        let bans = gauge("btcpeer_bans", "Active bans.");
        let v2_fallbacks = prometheus::IntCounter::new(
            "btcpeer_v2_fallbacks_total",
            "Outbound BIP324 attempts closed before the handshake and retried with v1.",
        )
        .expect("valid metric definition");
        registry.register(Box::new(v2_fallbacks.clone())).expect("metric names are unique");
        let subscriber_dropped = gauge(
            "btcpeer_subscriber_dropped",
            "Notifications dropped for full subscriber mailboxes (current peers).",
        );
        let header_height = gauge("btcpeer_header_height", "Best header chain height.");
        let headers_synced =
            gauge("btcpeer_headers_synced", "1 when the header chain is at the best known tip.");
        Metrics {
            header_height,
            headers_synced,
            registry,
            messages,
            bytes,
            connects,
            disconnects,
            dials,
            ping,
            handshake,
            v2_fallbacks,
            peers,
            bans,
            addrbook,
            subscriber_dropped,
        }
    }

    /// A frame went out or came in.
    pub fn message(&self, outbound: bool, command: &str, bytes: usize) {
        let direction = if outbound { "sent" } else { "received" };
        self.messages.with_label_values(&[direction, command]).inc();
        self.bytes.with_label_values(&[direction, command]).inc_by(bytes as u64);
    }

    /// A handshake over v1 completed after `took`.
    pub fn handshake(&self, link: Link, took: Duration) {
        self.handshake_over(link, "v1", took);
    }

    /// A handshake over `transport` (`"v1"`, `"v2"`) completed after `took` (from connect, the
    /// BIP324 handshake included).
    pub fn handshake_over(&self, link: Link, transport: &str, took: Duration) {
        self.connects.with_label_values(&[link_label(link), transport]).inc();
        self.handshake.with_label_values(&[link_label(link), transport]).observe(took.as_secs_f64());
    }

    /// An outbound v2 attempt fell back to v1.
    pub fn v2_fallback(&self) {
        self.v2_fallbacks.inc();
    }

    /// A connection ended.
    pub fn disconnect(&self, link: Link, reason: &DisconnectReason) {
        let name = reason_name(reason);
        let kind = match reason.kind() {
            crate::peer::ReasonKind::Local => "local",
            crate::peer::ReasonKind::Network => "network",
            crate::peer::ReasonKind::Incompatible => "incompatible",
            crate::peer::ReasonKind::Misbehavior => "misbehavior",
        };
        self.disconnects.with_label_values(&[link_label(link), name, kind]).inc();
    }

    /// A dial finished.
    pub fn dial(&self, success: bool) {
        self.dials.with_label_values(&[if success { "success" } else { "failure" }]).inc();
    }

    /// A ping round trip was measured.
    pub fn ping(&self, latency: Duration) {
        self.ping.observe(latency.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A bounded label for a reason (its variant name).
fn reason_name(reason: &DisconnectReason) -> &'static str {
    use DisconnectReason::*;
    match reason {
        Requested => "requested",
        Shutdown => "shutdown",
        Evicted => "evicted",
        Banned => "banned",
        ConnectFailed { .. } => "connect_failed",
        ClosedByPeer => "closed_by_peer",
        Io { .. } => "io",
        HandshakeTimeout { .. } => "handshake_timeout",
        PingTimeout { .. } => "ping_timeout",
        InactivityTimeout { .. } => "inactivity_timeout",
        SendQueueFull { .. } => "send_queue_full",
        Stalled { .. } => "stalled",
        ObsoleteVersion { .. } => "obsolete_version",
        MissingServices { .. } => "missing_services",
        WrongNetwork => "wrong_network",
        SelfConnection => "self_connection",
        V2Transport(_) => "v2_transport",
        Misbehaving(_) => "misbehaving",
    }
}
