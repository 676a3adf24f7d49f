//! The NATS JetStream sink (`[sink.nats]`): every event record the `--events` log writes is
//! also published, as the same JSON plus a `daemon` field, on `<prefix>.<event>`, with a
//! `Nats-Msg-Id` that lets JetStream store each transaction and block once however many
//! daemons publish it. Publishes wait for their ack; while the server is unreachable events go
//! to an on-disk `spool` and are flushed in order when it returns.
//!
//! Shape: the event log actor hands records to a `Feed` (non-blocking); the `sink` task, on
//! its own arbiter, owns the client, the in-flight acks and the spool; `status` is what the
//! HTTP API reads.

pub mod settings;
pub(crate) mod sink;
pub(crate) mod spool;
pub(crate) mod status;
pub(crate) mod stream;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use settings::{NatsSettings, SinkSettings};

use crate::daemon::event_log::RecordKey;
use spool::SpoolRecord;
use status::SinkStatus;

/// Events waiting between the event log and the sink task. Beyond it events are dropped (and
/// reported in the next `dropped` event): the log's thread never blocks on the network.
pub(crate) const QUEUE: usize = 16_384;

/// The event log's handle on the sink: builds subject, message id and payload per record.
pub(crate) struct Feed {
    tx: mpsc::Sender<SpoolRecord>,
    settings: NatsSettings,
    prefix: String,
    daemon: String,
    /// Start time (ms): per-daemon message ids stay unique across restarts of one daemon id.
    boot: u128,
    seq: u64,
    status: Arc<SinkStatus>,
    /// Events the queue had no room for; the sink reports them in a `dropped` event.
    overflow: Arc<AtomicU64>,
}

impl Feed {
    /// Publishes one record (already carrying `ts` and `event`).
    pub fn publish(&mut self, event: &str, key: &RecordKey, fields: &Value) {
        if !self.settings.publishes(event) {
            return;
        }
        self.seq += 1;
        let msg_id = match key {
            // Network-wide facts: the same id from every daemon, so JetStream keeps one.
            RecordKey::Tx { wtxid } => format!("tx.{wtxid}"),
            RecordKey::Block { hash } => format!("block.{hash}"),
            RecordKey::BlockDisconnected { hash, height } => format!("block_disconnected.{hash}.{height}"),
            // What this daemon saw: unique per daemon, run and record.
            RecordKey::Peer(peer) => format!("{}.{}.{peer}.{}", self.daemon, self.boot, self.seq),
            RecordKey::Group => format!("{}.{}.-.{}", self.daemon, self.boot, self.seq),
        };
        let mut payload = fields.clone();
        if let Value::Object(map) = &mut payload {
            map.insert("daemon".into(), json!(self.daemon));
        }
        let record = SpoolRecord {
            subject: format!("{}.{event}", self.prefix),
            msg_id,
            payload: payload.to_string().into_bytes(),
        };
        match self.tx.try_send(record) {
            Ok(()) => {
                self.status.queued.fetch_add(1, Relaxed);
            }
            Err(_) => {
                self.overflow.fetch_add(1, Relaxed);
                self.status.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// The `dropped` record the sink publishes when the link returns after losing events.
pub(crate) fn dropped_record(prefix: &str, daemon: &str, boot: u128, nth: u64, count: u64) -> SpoolRecord {
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    SpoolRecord {
        subject: format!("{prefix}.dropped"),
        msg_id: format!("{daemon}.{boot}.dropped.{nth}"),
        payload: json!({"ts": ts, "event": "dropped", "count": count, "daemon": daemon})
            .to_string()
            .into_bytes(),
    }
}

/// A running sink: the feed for the event log, the status for the API, and the handle that
/// stops it.
pub(crate) struct Running {
    /// For the event log.
    pub feed: Feed,
    /// For `/status` and `/metrics`.
    pub status: Arc<SinkStatus>,
    /// Stops the sink (flushing what it can) and waits for it.
    pub stop: sink::StopHandle,
}

pub(crate) use sink::start;
