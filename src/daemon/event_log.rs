//! The `--events` log: one JSON object per line, flushed per line, for every lifecycle change and
//! every received inv, tx, addr, headers and block.

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

/// Writes events as JSON lines.
pub struct EventLog {
    out: Box<dyn Write + Send>,
    failed: bool,
    /// A dropping budget whose gaps are written as `dropped` records (with `when_full = "drop"`).
    drops: Option<(Budget, BTreeMap<&'static str, u64>)>,
}

/// How often gaps of a dropping event log are written down.
const DROPPED_INTERVAL: Duration = Duration::from_secs(1);

/// Flushes and answers (used at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl EventLog {
    /// A log writing to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        EventLog { out, failed: false, drops: None }
    }

    /// A log whose subscriptions use `budget`: when it drops, the gaps are written as
    /// `dropped` records (`{"event":"dropped","counts":[{"kind":"inv","count":12}],"total":12}`,
    /// counts since the previous record).
    pub fn with_budget(out: Box<dyn Write + Send>, budget: &Budget) -> Self {
        let drops = (!budget.is_backpressure()).then(|| (budget.clone(), BTreeMap::new()));
        EventLog { out, failed: false, drops }
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

    fn write(&mut self, event: &str, peer: PeerId, addr: &PeerAddr, mut fields: Value) {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if let Value::Object(map) = &mut fields {
            map.insert("ts".into(), json!(ts));
            map.insert("event".into(), json!(event));
            map.insert("peer".into(), json!(addr.to_string()));
            map.insert("peer_id".into(), json!(peer.0));
        }
        self.write_line(fields);
    }

    fn write_line(&mut self, fields: Value) {
        let mut line = fields.to_string();
        line.push('\n');
        if let Err(e) = self.out.write_all(line.as_bytes()).and_then(|_| self.out.flush()) {
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
    fn write_group(&mut self, event: &str, mut fields: Value) {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if let Value::Object(map) = &mut fields {
            map.insert("ts".into(), json!(ts));
            map.insert("event".into(), json!(event));
        }
        self.write_line(fields);
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
        let _ = self.out.flush();
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
        let fields =
            json!({"txid": m.tx.compute_txid().to_string(), "wtxid": m.tx.compute_wtxid().to_string()});
        self.write("tx", m.peer, &m.addr, fields);
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
            ChainEvent::Block { hash, height, txs, size, peer, .. } => self.write_group(
                "block",
                json!({"hash": hash.to_string(), "height": height, "txs": txs, "size": size, "peer_id": peer.0}),
            ),
            ChainEvent::BlockDisconnected { hash, height } => {
                self.write_group("block_disconnected", json!({"hash": hash.to_string(), "height": height}))
            }
        }
    }
}

impl Handler<BlockReceived> for EventLog {
    type Result = ();
    fn handle(&mut self, m: BlockReceived, _: &mut Context<Self>) {
        let fields = json!({"hash": m.block.block_hash().to_string(), "txs": m.block.txdata.len()});
        self.write("block", m.peer, &m.addr, fields);
    }
}
