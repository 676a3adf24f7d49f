//! Handlers about the peers themselves: their lifecycle notices, adoption, subscriptions,
//! queries, disconnects and waiting for ready peers.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;

use crate::events::Notice;
use futures_util::future::join_all;
use rand::seq::IteratorRandom;
use rand::Rng;
use tokio::time::Instant;

use super::{is_tx, own_subscriptions, unix_now, Entry, PeerGroup};
use crate::events::{AddrReceived, PeerDisconnected, PeerReady};
use crate::group::messages::*;
use crate::group::waiters::Want;
use crate::peer::messages::{
    Disconnect, GetStats, SubscribeAs, SubscribePeer as PeerSubscribe, UnsubscribePeer as PeerUnsubscribe,
};
use crate::peer::transport::V1OnlySnapshot;
use crate::peer::{DisconnectReason, Link, PeerAddr, PeerInfo, PeerState, PeerStats, ReasonKind};
use crate::wire::{self, AddrV2};

/// BIP324 support (`NODE_P2P_V2`, 1 << 11, `protocol.h`).
const NODE_P2P_V2: u64 = 1 << 11;

impl Handler<Notice<PeerReady>> for PeerGroup {
    type Result = ();
    fn handle(&mut self, Notice(msg): Notice<PeerReady>, _: &mut Context<Self>) {
        // A peer remembered v1-only that now advertises BIP324 (it upgraded): try v2 again
        // next time.
        if msg.info.services & NODE_P2P_V2 != 0 {
            self.config.peer.v1_only.remove(&msg.addr);
        }
        // A v2 attempt that fell back was just remembered by the peer: save it.
        self.save_v1_only();
        self.mark_ready(msg.peer, msg.info);
    }
}

impl Handler<Notice<PeerDisconnected>> for PeerGroup {
    type Result = ();
    fn handle(&mut self, Notice(msg): Notice<PeerDisconnected>, ctx: &mut Context<Self>) {
        let Some(entry) = self.forget(msg.peer) else { return };
        self.save_v1_only();
        let unit: f64 = self.rng.gen();
        let verdict = match entry.link {
            Link::Outbound => self.policy.on_disconnected(msg.peer, &msg.reason, Instant::now(), unit),
            Link::Inbound => self.policy.on_inbound_disconnected(&entry.addr, &msg.reason),
        };
        if let Some(addr) = &verdict.failed {
            self.book.failed(addr, unix_now());
        }
        let reported = self.punish.remove(&msg.peer);
        if let Some(addr) = verdict.ban {
            if !self.closing {
                let reason = msg.reason.to_string();
                self.discourage(&addr, &reason);
            }
        } else if let Some(reason) = reported {
            self.ban_unless_configured(&entry.addr, &reason);
        }
        self.run_tx_requests(ctx);
        if msg.reason.kind() != ReasonKind::Local || !self.closing {
            self.run_policy(ctx);
        }
        self.finish_if_closed();
    }
}

impl Handler<Notice<AddrReceived>> for PeerGroup {
    type Result = ();
    fn handle(&mut self, Notice(msg): Notice<AddrReceived>, _: &mut Context<Self>) {
        let unix = unix_now();
        for a in msg.addrs.iter() {
            let addr = match &a.addr {
                AddrV2::Ipv4(_) | AddrV2::Ipv6(_) => match wire::addr_ip(&a.addr) {
                    Some(ip) => PeerAddr::Ip(SocketAddr::new(ip, a.port)),
                    None => continue,
                },
                AddrV2::TorV3(_) => PeerAddr::Host(wire::addr_host(&a.addr).into(), a.port),
                _ => continue,
            };
            // Gossip saying the address speaks BIP324 again ends its v1-only memory.
            if a.services.to_u64() & NODE_P2P_V2 != 0 {
                self.config.peer.v1_only.remove(&addr);
            }
            self.book.add(&addr, a.services.to_u64(), u64::from(a.time), Some(&msg.addr), unix);
        }
        self.save_v1_only();
    }
}

/// Where the addresses remembered v1-only are kept, in the data directory.
pub const V1_ONLY_FILE: &str = "transport.json";

impl PeerGroup {
    /// Loads the addresses remembered v1-only (before the first dial reads them).
    pub(in crate::group) fn load_v1_only(&self) {
        let Some(dir) = &self.config.data_dir else { return };
        let loaded = crate::persist::load_json::<V1OnlySnapshot>(&dir.join(V1_ONLY_FILE));
        for problem in &loaded.problems {
            tracing::warn!(%problem, "v1-only addresses");
        }
        if let Some(saved) = loaded.value.filter(|s| s.version == 1) {
            let n = self.config.peer.v1_only.restore(&saved);
            tracing::debug!(addresses = n, "loaded v1-only addresses");
        }
    }

    /// Saves the v1-only addresses when they changed (in the background; saves are serialised).
    fn save_v1_only(&self) {
        let Some(dir) = self.config.data_dir.clone() else { return };
        let Some(saved) = self.config.peer.v1_only.take_changes() else { return };
        let lock = self.save_lock.clone();
        tokio::task::spawn_blocking(move || {
            let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = crate::persist::save_json(&dir.join(V1_ONLY_FILE), &saved) {
                tracing::error!(error = %e, "cannot save the v1-only addresses");
            }
        });
    }
}

impl Handler<AddPeer> for PeerGroup {
    type Result = ResponseActFuture<Self, ()>;

    /// Subscribes the adopted peer, then asks it how far it is: a peer that finished its
    /// handshake before adoption is registered ready with its info (requests can use it once
    /// this answers); one still handshaking becomes ready through its `PeerReady`.
    fn handle(&mut self, msg: AddPeer, ctx: &mut Context<Self>) -> Self::Result {
        for (id, s) in self.peer_subscriptions() {
            msg.actor.do_send(SubscribeAs(*id, s.clone()));
        }
        for s in own_subscriptions(ctx, self.requests_txs(), &self.own_budget) {
            msg.actor.do_send(PeerSubscribe(s));
        }
        self.hand_tx_requests_over(&msg.actor);
        if msg.link == Link::Inbound {
            if let Some(ip) = msg.addr.socket_addr().map(|a| a.ip()) {
                *self.inbound_per_ip.entry(ip).or_default() += 1;
            }
        }
        let ask = msg.actor.send(GetStats);
        let id = msg.id;
        self.peers.insert(
            msg.id,
            Entry {
                actor: msg.actor,
                addr: msg.addr,
                link: msg.link,
                ready: false,
                connected_at: Instant::now(),
                info: None,
            },
        );
        self.enforce_hard_limit();
        Box::pin(ask.into_actor(self).map(move |stats, act, _| {
            // An actor that is gone is reaped by the next tick.
            if let Ok(stats) = stats {
                if stats.state == PeerState::Ready {
                    act.mark_ready(id, Arc::new(info_of(&stats)));
                }
            }
        }))
    }
}

/// What a ready peer told us, as its statistics report it.
fn info_of(stats: &PeerStats) -> PeerInfo {
    PeerInfo {
        link: stats.link,
        version: stats.version,
        services: stats.services,
        user_agent: stats.user_agent.clone(),
        start_height: stats.start_height,
        relay: stats.relay,
        features: stats.features.clone(),
        transport: match stats.transport {
            "v2" => crate::peer::TransportVersion::V2,
            "ws" => crate::peer::TransportVersion::Ws,
            _ => crate::peer::TransportVersion::V1,
        },
    }
}

impl Handler<WaitForPeers> for PeerGroup {
    type Result = ResponseFuture<Result<usize, GroupError>>;
    fn handle(&mut self, msg: WaitForPeers, ctx: &mut Context<Self>) -> Self::Result {
        let answer = self.wait_for_ready(Want::AtLeast(msg.min), msg.timeout, ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(GroupError::Closed)) })
    }
}

impl Handler<Subscribe> for PeerGroup {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let id = self.add_subscription(msg.0.clone());
        if is_tx(&msg.0) {
            // Delivered by the group, once per transaction.
            return MessageResult(id);
        }
        for entry in self.peers.values() {
            entry.actor.do_send(SubscribeAs(id, msg.0.clone()));
        }
        MessageResult(id)
    }
}

impl Handler<Unsubscribe> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        self.subscriptions.retain(|(id, _)| *id != msg.0);
        self.group_events.remove(msg.0);
        self.tx_events.remove(msg.0);
        for entry in self.peers.values() {
            entry.actor.do_send(PeerUnsubscribe(msg.0));
        }
    }
}

impl Handler<GetPeers> for PeerGroup {
    type Result = ResponseFuture<Vec<PeerStats>>;
    fn handle(&mut self, _: GetPeers, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self.peers.values().map(|e| e.actor.send(GetStats)).collect();
        Box::pin(async move { join_all(asks).await.into_iter().filter_map(Result::ok).collect() })
    }
}

impl Handler<GetRandomPeer> for PeerGroup {
    type Result = MessageResult<GetRandomPeer>;
    fn handle(&mut self, _: GetRandomPeer, _: &mut Context<Self>) -> Self::Result {
        let choice = self.peers.iter().filter(|(_, e)| e.ready).choose(&mut self.rng);
        MessageResult(choice.map(|(id, e)| PeerHandle {
            id: *id,
            addr: e.addr.clone(),
            link: e.link,
            actor: e.actor.clone(),
        }))
    }
}

impl Handler<DisconnectPeer> for PeerGroup {
    type Result = Result<(), GroupError>;
    fn handle(&mut self, msg: DisconnectPeer, _: &mut Context<Self>) -> Self::Result {
        let entry = self.peers.get(&msg.0).ok_or(GroupError::UnknownPeer { peer: msg.0 })?;
        entry.actor.do_send(Disconnect(DisconnectReason::Requested));
        Ok(())
    }
}

impl Handler<DisconnectPeerWith> for PeerGroup {
    type Result = Result<(), GroupError>;
    fn handle(&mut self, msg: DisconnectPeerWith, _: &mut Context<Self>) -> Self::Result {
        if let Some(entry) = self.peers.get(&msg.peer) {
            if !msg.reason.is_misbehavior() && self.policy.is_configured_host(&entry.addr) {
                // Replacing a configured peer only redials it: keep it.
                return Ok(());
            }
            if msg.reason.is_misbehavior() {
                // If it is already closing for another reason, its departure still bans it.
                self.punish.insert(msg.peer, msg.reason.to_string());
            }
            entry.actor.do_send(Disconnect(msg.reason));
            return Ok(());
        }
        // Gone already (it may have hung up right after misbehaving): its address still pays.
        let addr = self.recently_gone.iter().find(|(id, _)| *id == msg.peer).map(|(_, a)| a.clone());
        let addr = addr.ok_or(GroupError::UnknownPeer { peer: msg.peer })?;
        if msg.reason.is_misbehavior() {
            self.ban_unless_configured(&addr, &msg.reason.to_string());
        }
        Ok(())
    }
}
