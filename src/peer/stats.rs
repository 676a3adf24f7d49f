//! Per-connection counters and the [`PeerStats`] snapshot.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::machine::Features;
use super::{Link, PeerAddr, PeerId, PeerState};
use crate::events::SubscriberStats;

/// Message and byte counts for one command in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counter {
    /// Messages.
    pub messages: u64,
    /// Bytes on the wire, headers included.
    pub bytes: u64,
}

/// Running counters kept by the actor. Keys are static command names, so the maps are bounded by
/// the number of known commands (unknown ones count as `*other*`).
#[derive(Debug, Default)]
pub struct StatsRecorder {
    sent: BTreeMap<&'static str, Counter>,
    recv: BTreeMap<&'static str, Counter>,
    connected_since: Option<SystemTime>,
    last_send: Option<SystemTime>,
    last_recv: Option<SystemTime>,
}

impl StatsRecorder {
    /// The stream came up.
    pub fn connected(&mut self, at: SystemTime) {
        self.connected_since = Some(at);
    }

    /// A frame was written to the socket.
    pub fn sent(&mut self, command: &'static str, bytes: usize, at: SystemTime) {
        let c = self.sent.entry(command).or_default();
        c.messages += 1;
        c.bytes += bytes as u64;
        self.last_send = Some(at);
    }

    /// A frame was read from the socket.
    pub fn received(&mut self, command: &'static str, bytes: usize, at: SystemTime) {
        let c = self.recv.entry(command).or_default();
        c.messages += 1;
        c.bytes += bytes as u64;
        self.last_recv = Some(at);
    }

    /// Total bytes written.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.values().map(|c| c.bytes).sum()
    }

    /// Total bytes read.
    pub fn bytes_recv(&self) -> u64 {
        self.recv.values().map(|c| c.bytes).sum()
    }

    /// Fills the counter part of a snapshot.
    pub fn snapshot(&self, base: PeerStats) -> PeerStats {
        PeerStats {
            connected_since: self.connected_since.map(unix_secs),
            last_send: self.last_send.map(unix_secs),
            last_recv: self.last_recv.map(unix_secs),
            bytes_sent: self.bytes_sent(),
            bytes_recv: self.bytes_recv(),
            sent_per_command: self.sent.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            recv_per_command: self.recv.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            ..base
        }
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A snapshot of one connection (answer to `GetStats`).
#[derive(Debug, Clone, Serialize)]
pub struct PeerStats {
    /// Connection id.
    pub id: PeerId,
    /// Remote address.
    pub addr: PeerAddr,
    /// Direction.
    pub link: Link,
    /// Current state.
    pub state: PeerState,
    /// The peer's service bits (0 before its `version`).
    pub services: u64,
    /// The peer's protocol version (0 before its `version`).
    pub version: u32,
    /// The peer's user agent.
    pub user_agent: String,
    /// The peer's height at connect.
    pub start_height: i32,
    /// The peer's relay flag.
    pub relay: bool,
    /// Negotiated features.
    pub features: Features,
    /// Transport in use: `"v1"`, `"v2"` (BIP324), or `"ws"` for a WebSocket peer (the v1
    /// byte stream in binary frames, as bitcoin-net's browser transport speaks it).
    pub transport: &'static str,
    /// BIP324 session id in hex (v2 only), as Core's `getpeerinfo` shows it: equal at both ends
    /// unless someone is in the middle.
    pub session_id: Option<String>,
    /// Unix time (seconds) the stream came up.
    pub connected_since: Option<f64>,
    /// Unix time of the last frame written.
    pub last_send: Option<f64>,
    /// Unix time of the last frame read.
    pub last_recv: Option<f64>,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Bytes read.
    pub bytes_recv: u64,
    /// Per command, written.
    pub sent_per_command: BTreeMap<String, Counter>,
    /// Per command, read.
    pub recv_per_command: BTreeMap<String, Counter>,
    /// Last ping round trip in milliseconds.
    pub ping_latency_ms: Option<f64>,
    /// Bytes queued and not yet written.
    pub send_queue_bytes: usize,
    /// Frames dropped (bad checksum, malformed, out of order).
    pub dropped_frames: u64,
    /// Addresses dropped by the address rate limit.
    pub addr_rate_limited: u64,
    /// Delivery counters per subscription.
    pub subscribers: Vec<SubscriberStats>,
}
