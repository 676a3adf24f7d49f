//! Inbound connections: the listeners (and what outbound peers are told of them), admission of
//! each newcomer, and executing eviction when the inbound slots are full (the decisions are
//! [`inbound`](super::inbound)'s).

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::actor::{unix_now, Entry};
use super::inbound::{self, Admission, Candidate};
use super::messages::GetListenAddrs;
use super::PeerGroup;
use crate::addrbook::netgroup::netgroup;
use crate::peer::dial::PeerStream;
use crate::peer::messages::{Disconnect, GetStats, SetAdvertise};
use crate::peer::{Advertise, DisconnectReason, Link, PeerActor, PeerAddr};
use crate::wire::ServiceFlags;

/// Pause after a failed `accept` (out of file descriptors and similar) instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A listener accepted a connection.
#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(tokio::net::TcpStream, SocketAddr);

/// A listener is bound.
#[derive(Message)]
#[rtype(result = "()")]
struct Listening(SocketAddr);

impl PeerGroup {
    /// What outbound peers hear of us: the port of our first configured listener (and the
    /// configured public addresses) while it is bound and we offer blocks; nothing otherwise,
    /// since an address that serves no blocks only fills other nodes' address tables.
    fn advertise(&self) -> Option<Advertise> {
        let services = self.config.peer.machine.services;
        if !(services.has(ServiceFlags::NETWORK) || services.has(ServiceFlags::NETWORK_LIMITED)) {
            return None;
        }
        let first = self.config.listen.first()?;
        // Port 0 asks the system for one: the bound address tells it.
        let bound = self
            .listening
            .iter()
            .find(|a| a.ip() == first.ip() && (first.port() == 0 || a.port() == first.port()))?;
        Some(Advertise {
            port: bound.port(),
            services,
            external: self.config.external.clone(),
            // Behind a proxy the peer sees the proxy's address (Core: `-proxy` turns
            // `-discover` off).
            discover: self.config.peer.proxy.is_none(),
        })
    }

    /// Recomputes [`advertise`](Self::advertise) after a listener was bound or the service bits
    /// changed, and tells the live outbound peers when it differs.
    pub(super) fn refresh_advertise(&mut self) {
        let now = self.advertise();
        if now == self.advertised {
            return;
        }
        self.advertised = now;
        for entry in self.peers.values().filter(|e| e.link == Link::Outbound) {
            entry.actor.do_send(SetAdvertise(self.advertised.clone()));
        }
    }

    /// Binds every configured listen address; each accepted connection comes to the group as
    /// an [`Accepted`].
    pub(super) fn listen(&self, ctx: &mut Context<Self>) {
        for addr in self.config.listen.clone() {
            let me = ctx.address();
            actix::spawn(async move {
                let listener = match TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        error!(%addr, error = %e, "cannot listen");
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
                            tokio::time::sleep(ACCEPT_RETRY).await;
                        }
                    }
                }
            });
        }
    }

    /// Whether an inbound connection from `remote` may start (TCP and WebSocket alike).
    pub(super) fn admission(&self, remote: SocketAddr) -> Admission {
        let limits = inbound::Limits {
            accepting: self.accepting && !self.closing,
            inbound: self.inbound_count(),
            max_inbound: self.config.max_inbound,
            max_per_ip: self.config.max_inbound_per_ip,
        };
        let banned = self.bans.is_banned(&PeerAddr::Ip(remote), unix_now());
        inbound::admit(remote.ip(), banned, &self.inbound_per_ip, limits)
    }

    /// Inbound connections (the per-IP counters add up to it).
    pub(super) fn inbound_count(&self) -> usize {
        self.inbound_per_ip.values().sum()
    }

    /// Starts an admitted inbound peer over any stream (TCP here, WebSocket in `ws_listener`:
    /// `websocket`, whose transport is then `ws`).
    pub(super) fn start_inbound(
        &mut self,
        stream: impl PeerStream,
        remote: SocketAddr,
        websocket: bool,
        ctx: &mut Context<Self>,
    ) {
        *self.inbound_per_ip.entry(remote.ip()).or_default() += 1;
        let actor = PeerActor::inbound(self.config.peer.clone(), remote, stream, self.subscribers(ctx));
        let actor = if websocket { actor.over_websocket() } else { actor };
        let id = actor.id();
        let addr = self.start_peer(actor);
        self.peers.insert(
            id,
            Entry {
                actor: addr,
                addr: PeerAddr::Ip(remote),
                link: Link::Inbound,
                ready: false,
                connected_at: Instant::now(),
                info: None,
            },
        );
        self.enforce_hard_limit();
    }

    /// Admits an inbound newcomer (TCP or WebSocket alike): started at once while there is
    /// room; when the inbound slots are full, started only if eviction finds a peer to make
    /// room (Core's `SelectNodeToEvict`); else closed.
    pub(super) fn admit_inbound(
        &mut self,
        stream: impl PeerStream,
        remote: SocketAddr,
        websocket: bool,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ()> {
        let done = || -> ResponseActFuture<Self, ()> { Box::pin(actix::fut::ready(())) };
        match self.admission(remote) {
            Admission::Accept => {
                self.start_inbound(stream, remote, websocket, ctx);
                return done();
            }
            Admission::Refuse(why) => {
                info!(%remote, ?why, websocket, "refusing inbound connection");
                return done();
            }
            Admission::EvictFirst => {}
        }
        // Full: ask the inbound peers for their latency, then evict one or refuse the newcomer.
        Box::pin(self.eviction_candidates(false).into_actor(self).map(move |candidates, act, ctx| {
            // Things may have changed while the peers answered.
            match act.admission(remote) {
                Admission::Accept => return act.start_inbound(stream, remote, websocket, ctx),
                Admission::Refuse(_) => return,
                Admission::EvictFirst => {}
            }
            if act.evict_for(candidates, remote, "inbound slots full") {
                act.start_inbound(stream, remote, websocket, ctx);
            } else {
                info!(%remote, websocket, "inbound slots full and all protected: refusing");
            }
        }))
    }

    /// The inbound peers eviction chooses from, each asked for its latency (`websocket_only`:
    /// the WebSocket peers alone, when their own cap is what is full).
    pub(super) fn eviction_candidates(
        &self,
        websocket_only: bool,
    ) -> impl std::future::Future<Output = Vec<Candidate>> + 'static {
        let asks: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, e)| e.link == Link::Inbound)
            .map(|(id, e)| {
                let group = netgroup(&e.addr);
                let connected_at = e.connected_at;
                let id = *id;
                let ask = e.actor.send(GetStats);
                async move {
                    let stats = ask.await.ok();
                    if websocket_only && stats.as_ref().map(|s| s.transport) != Some("ws") {
                        return None;
                    }
                    let ping =
                        stats.and_then(|s| s.ping_latency_ms).map(|ms| Duration::from_secs_f64(ms / 1000.0));
                    Some(Candidate { id, group, connected_at, ping })
                }
            })
            .collect();
        async move { join_all(asks).await.into_iter().flatten().collect() }
    }

    /// Disconnects the peer eviction picks among `candidates` (those still here) to make room
    /// for `newcomer`; false when every one is protected.
    pub(super) fn evict_for(&mut self, candidates: Vec<Candidate>, newcomer: SocketAddr, why: &str) -> bool {
        let candidates = candidates.into_iter().filter(|c| self.peers.contains_key(&c.id)).collect();
        let Some(victim) = inbound::select_eviction(candidates) else { return false };
        // Forget the victim now so the count never exceeds the limit while it closes.
        if let Some(e) = self.forget(victim) {
            info!(victim = %e.addr, %newcomer, why, "evicting an inbound peer");
            e.actor.do_send(Disconnect(DisconnectReason::Evicted));
        }
        true
    }
}

impl Handler<Listening> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: Listening, _: &mut Context<Self>) {
        self.listening.push(msg.0);
        self.refresh_advertise();
    }
}

impl Handler<GetListenAddrs> for PeerGroup {
    type Result = MessageResult<GetListenAddrs>;
    fn handle(&mut self, _: GetListenAddrs, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.listening.clone())
    }
}

impl Handler<Accepted> for PeerGroup {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, Accepted(stream, remote): Accepted, ctx: &mut Context<Self>) -> Self::Result {
        let _ = stream.set_nodelay(true);
        self.admit_inbound(stream, remote, false, ctx)
    }
}
