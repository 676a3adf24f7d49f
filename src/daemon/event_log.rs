//! The event records: one JSON object per lifecycle change and per received inv, tx, addr,
//! headers and block, built once here and written to the `--events` log (one line each, flushed
//! per line) and/or handed to the NATS sink ([`super::nats`]), which publishes the same JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use serde_json::{json, Value};
use tracing::error;

use crate::events::*;
use crate::peer::{Link, PeerAddr, PeerId};
use crate::wire::{self, Inventory};

/// Mailbox room: the log must keep up with bursts from many peers.
const MAILBOX: usize = 1_024;

/// Builds event records and writes them as JSON lines (and/or feeds them to the NATS sink).
pub struct EventLog {
    out: Option<Box<dyn Write + Send>>,
    nats: Option<super::nats::Feed>,
    failed: bool,
    /// A dropping budget whose gaps are written as `dropped` records (with `when_full = "drop"`).
    drops: Option<(Budget, BTreeMap<&'static str, u64>)>,
}

/// How often gaps of a dropping event log are written down.
const DROPPED_INTERVAL: Duration = Duration::from_secs(1);
/// What identifies a record across daemons, for the NATS sink's `Nats-Msg-Id`: network-wide
/// facts (a transaction, a block) by their hashes, what one daemon saw by daemon and sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordKey {
    /// A transaction, by wtxid.
    Tx {
        /// Display hex.
        wtxid: String,
    },
    /// A block, by hash.
    Block {
        /// Display hex.
        hash: String,
    },
    /// A block leaving the best chain, by hash and height.
    BlockDisconnected {
        /// Display hex.
        hash: String,
        /// Its height.
        height: u32,
    },
    /// Something one peer of this daemon said or did.
    Peer(u64),
    /// A group- or chain-level event of this daemon.
    Group,
}

/// Flushes and answers (used at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl EventLog {
    /// A log writing to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        EventLog { out: Some(out), nats: None, failed: false, drops: None }
    }

    /// Records go to `out` (the `--events` log) and/or `nats`. With a dropping `budget` (the
    /// subscriptions' budget), the gaps are written as `dropped` records
    /// (`{"event":"dropped","counts":[{"kind":"inv","count":12}],"total":12}`, counts since the
    /// previous record).
    pub(crate) fn with_outputs(
        out: Option<Box<dyn Write + Send>>,
        nats: Option<super::nats::Feed>,
        budget: &Budget,
    ) -> Self {
        let drops = (!budget.is_backpressure()).then(|| (budget.clone(), BTreeMap::new()));
        EventLog { out, nats, failed: false, drops }
    }

    fn write_drops(&mut self) {
        let Some((budget, seen)) = &mut self.drops else { return };
        let now = budget.dropped_by_kind();
        let counts: BTreeMap<&str, u64> = now
            .iter()
            .filter_map(|(kind, n)| {
                let new = n - seen.get(kind).copied().unwrap_or(0);
                (new > 0).then_some((*kind, new))
            })
            .collect();
        if counts.is_empty() {
            return;
        }
        *seen = now;
        let total: u64 = counts.values().sum();
        let counts: Vec<Value> = counts.iter().map(|(kind, n)| json!({"kind": kind, "count": n})).collect();
        self.write_group("dropped", json!({"counts": counts, "total": total}));
    }

    fn write(&mut self, event: &str, peer: PeerId, addr: &PeerAddr, fields: Value) {
        self.write_keyed(event, peer, addr, fields, RecordKey::Peer(peer.0));
    }

    fn write_keyed(&mut self, event: &str, peer: PeerId, addr: &PeerAddr, mut fields: Value, key: RecordKey) {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if let Value::Object(map) = &mut fields {
            map.insert("ts".into(), json!(ts));
            map.insert("event".into(), json!(event));
            map.insert("peer".into(), json!(addr.to_string()));
            map.insert("peer_id".into(), json!(peer.0));
        }
        self.emit(event, fields, &key);
    }

    fn emit(&mut self, event: &str, fields: Value, key: &RecordKey) {
        if let Some(nats) = &mut self.nats {
            nats.publish(event, key, &fields);
        }
        let Some(out) = &mut self.out else { return };
        let mut line = fields.to_string();
        line.push('\n');
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|_| out.flush()) {
            if !self.failed {
                error!(error = %e, "cannot write event log");
                self.failed = true;
            }
        }
    }
}

/// The event log's subscriptions. With `chain` (header sync on), per-message `headers` and
/// `block` events give way to the chain's own (`headers` with height/tip/count, `block` for
/// fetched blocks), so a sync does not log every header hash.
/// All of them share `budget` (the `[event_log]` queue).
pub fn subscriptions(log: &Addr<EventLog>, chain: bool, budget: &Budget) -> Vec<Subscription> {
    let mut subs = Subscription::common(log);
    if chain {
        subs.retain(|s| !matches!(s, Subscription::Headers(_) | Subscription::Block(_)));
    }
    subs.push(Subscription::Banned(log.clone().recipient()));
    subs.push(Subscription::Unbanned(log.clone().recipient()));
    subs.into_iter().map(|s| s.with_budget(budget)).collect()
}

/// Writes a group-level event (no peer).
impl EventLog {
    fn write_group(&mut self, event: &str, fields: Value) {
        self.write_group_keyed(event, fields, RecordKey::Group);
    }

    fn write_group_keyed(&mut self, event: &str, mut fields: Value, key: RecordKey) {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if let Value::Object(map) = &mut fields {
            map.insert("ts".into(), json!(ts));
            map.insert("event".into(), json!(event));
        }
        self.emit(event, fields, &key);
    }
}

impl Handler<AddressBanned> for EventLog {
    type Result = ();
    fn handle(&mut self, m: AddressBanned, _: &mut Context<Self>) {
        let b = &m.ban;
        self.write_group(
            "banned",
            json!({"addr": b.target.to_string(), "until": b.until, "reason": b.reason}),
        );
    }
}

impl Handler<AddressUnbanned> for EventLog {
    type Result = ();
    fn handle(&mut self, m: AddressUnbanned, _: &mut Context<Self>) {
        let b = &m.ban;
        self.write_group("unbanned", json!({"addr": b.target.to_string(), "expired": m.expired}));
    }
}

impl Actor for EventLog {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        if self.drops.is_some() {
            ctx.run_interval(DROPPED_INTERVAL, |log, _| log.write_drops());
        }
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.write_drops();
        Running::Stop
    }
}

impl Handler<Flush> for EventLog {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        self.write_drops();
        if let Some(out) = &mut self.out {
            let _ = out.flush();
        }
    }
}

/// Inventory type name as in Core's `GetDataMsg` (lower case).
fn inv_json(item: &Inventory) -> Value {
    let (kind, hash) = match item {
        Inventory::Transaction(h) => ("tx", h.to_string()),
        Inventory::Block(h) => ("block", h.to_string()),
        Inventory::CompactBlock(h) => ("compact_block", h.to_string()),
        Inventory::WTx(h) => ("wtx", h.to_string()),
        Inventory::WitnessTransaction(h) => ("witness_tx", h.to_string()),
        Inventory::WitnessBlock(h) => ("witness_block", h.to_string()),
        Inventory::Unknown { inv_type, hash } => {
            let mut rev = *hash;
            rev.reverse();
            return json!({"type": format!("unknown({inv_type})"), "hash": rev.iter().map(|b| format!("{b:02x}")).collect::<String>()});
        }
        Inventory::Error => ("error", String::new()),
    };
    json!({"type": kind, "hash": hash})
}

impl Handler<PeerStateChanged> for EventLog {
    type Result = ();
    fn handle(&mut self, m: PeerStateChanged, _: &mut Context<Self>) {
        self.write("state", m.peer, &m.addr, json!({"state": m.state}));
    }
}

impl Handler<PeerReady> for EventLog {
    type Result = ();
    fn handle(&mut self, m: PeerReady, _: &mut Context<Self>) {
        let i = &m.info;
        self.write(
            "ready",
            m.peer,
            &m.addr,
            json!({
                "inbound": i.link == Link::Inbound,
                "version": i.version,
                "user_agent": i.user_agent,
                "services": i.services,
                "start_height": i.start_height,
                "relay": i.relay,
                "features": i.features,
                "transport": i.transport,
            }),
        );
    }
}

impl Handler<PeerDisconnected> for EventLog {
    type Result = ();
    fn handle(&mut self, m: PeerDisconnected, _: &mut Context<Self>) {
        self.write(
            "disconnected",
            m.peer,
            &m.addr,
            json!({
                "reason": m.reason.to_string(),
                "reason_kind": m.reason.kind(),
                "misbehavior": m.reason.is_misbehavior(),
            }),
        );
    }
}

impl Handler<InvReceived> for EventLog {
    type Result = ();
    fn handle(&mut self, m: InvReceived, _: &mut Context<Self>) {
        let items: Vec<Value> = m.items.iter().map(inv_json).collect();
        self.write("inv", m.peer, &m.addr, json!({ "items": items }));
    }
}

impl Handler<TxReceived> for EventLog {
    type Result = ();
    fn handle(&mut self, m: TxReceived, _: &mut Context<Self>) {
        let wtxid = m.tx.compute_wtxid().to_string();
        let fields = json!({"txid": m.tx.compute_txid().to_string(), "wtxid": wtxid});
        self.write_keyed("tx", m.peer, &m.addr, fields, RecordKey::Tx { wtxid });
    }
}

impl Handler<AddrReceived> for EventLog {
    type Result = ();
    fn handle(&mut self, m: AddrReceived, _: &mut Context<Self>) {
        let addrs: Vec<Value> = m
            .addrs
            .iter()
            .map(|a| {
                json!({
                    "addr": wire::addr_host(&a.addr),
                    "network": wire::addr_network(&a.addr),
                    "port": a.port,
                    "services": a.services.to_u64(),
                    "time": a.time,
                })
            })
            .collect();
        self.write("addr", m.peer, &m.addr, json!({ "addrs": addrs, "v2": m.v2 }));
    }
}

impl Handler<HeadersReceived> for EventLog {
    type Result = ();
    fn handle(&mut self, m: HeadersReceived, _: &mut Context<Self>) {
        let hashes: Vec<String> = m.headers.iter().map(|h| h.block_hash().to_string()).collect();
        self.write("headers", m.peer, &m.addr, json!({ "hashes": hashes }));
    }
}

impl Handler<crate::sync::ChainEvent> for EventLog {
    type Result = ();
    fn handle(&mut self, m: crate::sync::ChainEvent, _: &mut Context<Self>) {
        use crate::sync::ChainEvent;
        match m {
            ChainEvent::Headers { height, tip, count, reorged, peer } => self.write_group(
                "headers",
                json!({"height": height, "tip": tip.to_string(), "count": count, "reorged": reorged, "peer_id": peer.0}),
            ),
            ChainEvent::Synced { height, tip } => {
                self.write_group("synced", json!({"height": height, "tip": tip.to_string()}))
            }
            ChainEvent::BlockFailed { hash, height, error } => self.write_group(
                "block_failed",
                json!({"hash": hash.to_string(), "height": height, "error": error}),
            ),
            ChainEvent::Block { hash, height, txs, size, peer, .. } => self.write_group_keyed(
                "block",
                json!({"hash": hash.to_string(), "height": height, "txs": txs, "size": size, "peer_id": peer.0}),
                RecordKey::Block { hash: hash.to_string() },
            ),
            ChainEvent::BlockDisconnected { hash, height } => self.write_group_keyed(
                "block_disconnected",
                json!({"hash": hash.to_string(), "height": height}),
                RecordKey::BlockDisconnected { hash: hash.to_string(), height },
            ),
        }
    }
}

impl Handler<BlockReceived> for EventLog {
    type Result = ();
    fn handle(&mut self, m: BlockReceived, _: &mut Context<Self>) {
        let hash = m.block.block_hash().to_string();
        let fields = json!({"hash": hash, "txs": m.block.txdata.len()});
        self.write_keyed("block", m.peer, &m.addr, fields, RecordKey::Block { hash });
    }
}
