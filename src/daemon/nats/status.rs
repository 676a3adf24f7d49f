//! The NATS sink's state as `/status` and `/metrics` show it: atomics the sink task writes and
//! the HTTP API reads.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

use serde_json::{json, Value};

/// What the sink is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SinkState {
    /// Not yet connected since start.
    Connecting = 0,
    /// Publishing as events arrive.
    Live = 1,
    /// The server is unreachable (or was): events go to the spool.
    Spooling = 2,
    /// The stream exists with a configuration we cannot use: events are spooled, nothing is
    /// published until the daemon restarts with a fitting stream.
    Refused = 3,
}

impl SinkState {
    fn name(self) -> &'static str {
        match self {
            SinkState::Connecting => "connecting",
            SinkState::Live => "live",
            SinkState::Spooling => "spooling",
            SinkState::Refused => "refused",
        }
    }
}

const STATES: [SinkState; 4] =
    [SinkState::Connecting, SinkState::Live, SinkState::Spooling, SinkState::Refused];

/// Shared counters of one sink.
#[derive(Debug)]
pub(crate) struct SinkStatus {
    /// Stream name.
    pub stream: String,
    /// Subject prefix.
    pub prefix: String,
    state: AtomicU8,
    /// Whether the client is connected.
    pub connected: AtomicBool,
    /// Events acknowledged by JetStream.
    pub published: AtomicU64,
    /// Acknowledged as duplicates (another daemon, or a replay, published them first).
    pub duplicates: AtomicU64,
    /// Events handed to the sink and not yet taken from its queue.
    pub queued: AtomicU64,
    /// Publishes awaiting their ack.
    pub in_flight: AtomicU64,
    /// Events in the spool.
    pub spool_records: AtomicU64,
    /// Bytes of the spool.
    pub spool_bytes: AtomicU64,
    /// Events lost (spool or queue full, spool I/O errors) since start.
    pub dropped: AtomicU64,
    /// Unix time of the last ack, seconds (0: none yet).
    pub last_ack: AtomicU64,
}

impl SinkStatus {
    /// A fresh status.
    pub fn new(stream: String, prefix: String) -> Self {
        SinkStatus {
            stream,
            prefix,
            state: AtomicU8::new(SinkState::Connecting as u8),
            connected: AtomicBool::new(false),
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            spool_records: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_ack: AtomicU64::new(0),
        }
    }

    /// Sets the state.
    pub fn set_state(&self, state: SinkState) {
        self.state.store(state as u8, Relaxed);
    }

    /// The state.
    pub fn state(&self) -> SinkState {
        let v = self.state.load(Relaxed);
        STATES.into_iter().find(|s| *s as u8 == v).unwrap_or(SinkState::Connecting)
    }

    /// Events not yet acknowledged: queued, in flight and spooled.
    pub fn lag(&self) -> u64 {
        self.queued.load(Relaxed) + self.in_flight.load(Relaxed) + self.spool_records.load(Relaxed)
    }

    /// The `/status` object.
    pub fn json(&self) -> Value {
        json!({
            "state": self.state().name(),
            "connected": self.connected.load(Relaxed),
            "stream": self.stream,
            "subject_prefix": self.prefix,
            "published": self.published.load(Relaxed),
            "duplicates": self.duplicates.load(Relaxed),
            "lag": self.lag(),
            "in_flight": self.in_flight.load(Relaxed),
            "spool_records": self.spool_records.load(Relaxed),
            "spool_bytes": self.spool_bytes.load(Relaxed),
            "dropped": self.dropped.load(Relaxed),
            "last_ack": self.last_ack.load(Relaxed),
        })
    }

    /// Prometheus text-format lines for `/metrics`.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP btcpeer_nats_{name} {help}\n# TYPE btcpeer_nats_{name} {kind}");
            let _ = writeln!(out, "btcpeer_nats_{name} {value}");
        };
        metric(
            "connected",
            "gauge",
            "1 while the NATS client is connected.",
            self.connected.load(Relaxed).into(),
        );
        metric(
            "published_total",
            "counter",
            "Events acknowledged by JetStream.",
            self.published.load(Relaxed),
        );
        metric(
            "duplicates_total",
            "counter",
            "Publishes JetStream acknowledged as duplicates.",
            self.duplicates.load(Relaxed),
        );
        metric(
            "lag_events",
            "gauge",
            "Events not yet acknowledged (queued, in flight, spooled).",
            self.lag(),
        );
        metric("spool_records", "gauge", "Events in the on-disk spool.", self.spool_records.load(Relaxed));
        metric("spool_bytes", "gauge", "Bytes of the on-disk spool.", self.spool_bytes.load(Relaxed));
        metric(
            "dropped_total",
            "counter",
            "Events lost because the spool or queue was full.",
            self.dropped.load(Relaxed),
        );
        let _ = writeln!(out, "# HELP btcpeer_nats_state The sink's state (1 for the current one).");
        let _ = writeln!(out, "# TYPE btcpeer_nats_state gauge");
        let now = self.state();
        for s in STATES {
            let _ = writeln!(out, "btcpeer_nats_state{{state=\"{}\"}} {}", s.name(), u8::from(s == now));
        }
        out
    }
}
