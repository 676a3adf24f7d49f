//! The `PeerGroup` actor.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::backoff::Backoff;
use crate::events::{PeerDisconnected, PeerReady, SubscriberId, Subscribers, Subscription};
use crate::peer::messages::{Disconnect, GetStats};
use crate::peer::{DisconnectReason, PeerActor, PeerAddr, PeerConfig, PeerId, PeerStats};

/// How long shutdown waits for peers to say goodbye.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the group keeps connected.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Settings for every connection.
    pub peer: PeerConfig,
    /// Peers to keep connected, redialed forever.
    pub static_peers: Vec<PeerAddr>,
    /// Addresses to accept inbound peers on.
    pub listen: Vec<SocketAddr>,
    /// Most inbound peers at once.
    pub max_inbound: usize,
    /// First redial delay.
    pub initial_backoff: Duration,
    /// Longest redial delay.
    pub max_backoff: Duration,
}

/// Adds a subscriber to every present and future peer of the group.
#[derive(Message)]
#[rtype(result = "SubscriberId")]
pub struct Subscribe(pub Subscription);

/// Statistics of every connected peer.
#[derive(Message)]
#[rtype(result = "Vec<PeerStats>")]
pub struct GetPeers;

/// Closes every peer, waits for their goodbyes (bounded by [`SHUTDOWN_GRACE`]), then answers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Local addresses the listeners are bound to (useful with port 0).
#[derive(Message)]
#[rtype(result = "Vec<SocketAddr>")]
pub struct GetListenAddrs;

#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(tokio::net::TcpStream, SocketAddr);

#[derive(Message)]
#[rtype(result = "()")]
struct Listening(SocketAddr);

struct Entry {
    addr: Addr<PeerActor>,
    slot: Option<usize>,
}

struct Slot {
    target: PeerAddr,
    backoff: Backoff,
    peer: Option<PeerId>,
}

/// Supervisor of all connections.
pub struct PeerGroup {
    config: GroupConfig,
    subscriptions: Vec<(SubscriberId, Subscription)>,
    peers: HashMap<PeerId, Entry>,
    slots: Vec<Slot>,
    inbound: usize,
    listening: Vec<SocketAddr>,
    closing: bool,
    waiting: Vec<oneshot::Sender<()>>,
}

impl PeerGroup {
    /// A group with these settings and initial subscriptions.
    pub fn new(config: GroupConfig, subscriptions: Vec<Subscription>) -> Self {
        let slots = config
            .static_peers
            .iter()
            .map(|t| Slot {
                target: t.clone(),
                backoff: Backoff::new(config.initial_backoff, config.max_backoff),
                peer: None,
            })
            .collect();
        let mut group = PeerGroup {
            config,
            subscriptions: Vec::new(),
            peers: HashMap::new(),
            slots,
            inbound: 0,
            listening: Vec::new(),
            closing: false,
            waiting: Vec::new(),
        };
        for s in subscriptions {
            group.add_subscription(s);
        }
        group
    }

    fn add_subscription(&mut self, s: Subscription) -> SubscriberId {
        let mut probe = Subscribers::new();
        let id = probe.add(s.clone());
        self.subscriptions.push((id, s));
        id
    }

    fn subscribers(&self, ctx: &Context<Self>) -> Subscribers {
        let mut subs = Subscribers::new();
        for (id, s) in &self.subscriptions {
            subs.add_with_id(*id, s.clone());
        }
        // The group's own bookkeeping rides on the same bounded fan-out; its mailbox is sized
        // for every peer's lifecycle notices.
        subs.add(Subscription::Disconnected(ctx.address().recipient()));
        subs.add(Subscription::Ready(ctx.address().recipient()));
        subs
    }

    fn dial(&mut self, slot: usize, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let target = self.slots[slot].target.clone();
        let actor = PeerActor::outbound(self.config.peer.clone(), target, self.subscribers(ctx));
        let id = actor.id();
        self.slots[slot].peer = Some(id);
        self.peers.insert(id, Entry { addr: actor.start(), slot: Some(slot) });
    }

    fn finish_if_closed(&mut self) {
        if self.closing && self.peers.is_empty() {
            for w in self.waiting.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

/// Mailbox room for the group: lifecycle notices of many peers arrive in bursts.
const GROUP_MAILBOX: usize = 65_536;

impl Actor for PeerGroup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(GROUP_MAILBOX);
        for slot in 0..self.slots.len() {
            self.dial(slot, ctx);
        }
        for addr in self.config.listen.clone() {
            let me = ctx.address();
            actix::spawn(async move {
                let listener = match TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(%addr, error = %e, "cannot listen");
                        return;
                    }
                };
                let local = listener.local_addr().unwrap_or(addr);
                info!(addr = %local, "listening for inbound peers");
                if me.send(Listening(local)).await.is_err() {
                    return;
                }
                loop {
                    match listener.accept().await {
                        // `send` waits for the group to take it: accepting slows when the group is busy.
                        Ok((stream, remote)) => {
                            if me.send(Accepted(stream, remote)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
    }
}

impl Handler<Listening> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: Listening, _: &mut Context<Self>) {
        self.listening.push(msg.0);
    }
}

impl Handler<GetListenAddrs> for PeerGroup {
    type Result = MessageResult<GetListenAddrs>;
    fn handle(&mut self, _: GetListenAddrs, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.listening.clone())
    }
}

impl Handler<Accepted> for PeerGroup {
    type Result = ();
    fn handle(&mut self, Accepted(stream, remote): Accepted, ctx: &mut Context<Self>) {
        if self.closing || self.inbound >= self.config.max_inbound {
            info!(%remote, inbound = self.inbound, "refusing inbound peer: limit reached");
            return;
        }
        let _ = stream.set_nodelay(true);
        self.inbound += 1;
        let actor = PeerActor::inbound(self.config.peer.clone(), remote, stream, self.subscribers(ctx));
        let id = actor.id();
        self.peers.insert(id, Entry { addr: actor.start(), slot: None });
    }
}

impl Handler<PeerReady> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: PeerReady, _: &mut Context<Self>) {
        if let Some(slot) = self.peers.get(&msg.peer).and_then(|e| e.slot) {
            self.slots[slot].backoff.reset();
        }
    }
}

impl Handler<PeerDisconnected> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: PeerDisconnected, ctx: &mut Context<Self>) {
        let Some(entry) = self.peers.remove(&msg.peer) else { return };
        match entry.slot {
            None => self.inbound = self.inbound.saturating_sub(1),
            Some(slot) if !self.closing => {
                self.slots[slot].peer = None;
                let delay = self.slots[slot].backoff.next_delay(rand::random());
                info!(peer = %msg.addr, reason = %msg.reason, retry_in_ms = delay.as_millis() as u64, "will redial");
                ctx.run_later(delay, move |act, ctx| act.dial(slot, ctx));
            }
            Some(_) => {}
        }
        self.finish_if_closed();
    }
}

impl Handler<Subscribe> for PeerGroup {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let id = self.add_subscription(msg.0.clone());
        for entry in self.peers.values() {
            entry.addr.do_send(crate::peer::messages::Subscribe(msg.0.clone()));
        }
        MessageResult(id)
    }
}

impl Handler<GetPeers> for PeerGroup {
    type Result = ResponseFuture<Vec<PeerStats>>;
    fn handle(&mut self, _: GetPeers, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self.peers.values().map(|e| e.addr.send(GetStats)).collect();
        Box::pin(async move { join_all(asks).await.into_iter().filter_map(Result::ok).collect() })
    }
}

impl Handler<Shutdown> for PeerGroup {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        for entry in self.peers.values() {
            entry.addr.do_send(Disconnect(DisconnectReason::Shutdown));
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        self.finish_if_closed();
        ctx.run_later(SHUTDOWN_GRACE, |act, _| {
            for w in act.waiting.drain(..) {
                let _ = w.send(());
            }
        });
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
