//! Handlers that fetch announced transactions once per group: peers report `inv`, `notfound`
//! and `tx`, the tracker ([`crate::group::txrequest`], Core's `TxRequestTracker`) picks one
//! announcer per transaction, and the group sends that peer the `getdata`. A received
//! transaction reaches the group's `TxReceived` subscribers once (the first copy), through the
//! tracker's recently-seen set.

use actix::prelude::*;
use bitcoin::hashes::Hash as _;
use tokio::time::Instant;

use super::PeerGroup;
use crate::events::{InvReceived, Notice, TxReceived};
use crate::group::broadcast::Origin;
use crate::peer::messages::{HandTxRequestsToGroup, QueueTransactions, SendMessage, TxsNotFound};
use crate::peer::{Link, PeerActor, PeerId};
use crate::wire::{Message, ServiceFlags};

impl PeerGroup {
    /// Whether the group requests announced transactions (the peers' `request_announced_txs`
    /// with `relay`): then peers leave it to the group.
    pub(super) fn requests_txs(&self) -> bool {
        let machine = &self.config.peer.machine;
        machine.request_announced_txs && machine.relay
    }

    /// Makes `actor` leave its transaction requests to this group (before it can hear an `inv`:
    /// the message is queued ahead of any handshake).
    pub(super) fn hand_tx_requests_over(&self, actor: &Addr<PeerActor>) {
        if let (true, Some(me)) = (self.requests_txs(), &self.me) {
            actor.do_send(HandTxRequestsToGroup(me.clone().recipient()));
        }
    }

    /// Sends the `getdata`s the tracker decided on and arms a timer for its next deadline.
    pub(super) fn run_tx_requests(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for (peer, wants) in self.txs.poll(now) {
            let Some(entry) = self.peers.get(&peer) else { continue };
            let Some(info) = &entry.info else { continue };
            let witness = ServiceFlags::from(info.services).has(ServiceFlags::WITNESS);
            let items = wants.iter().map(|w| w.inventory(witness)).collect();
            entry.actor.do_send(SendMessage(Message::GetData(items)));
        }
        let Some(due) = self.txs.next_due(now) else { return };
        if self.tx_timer.as_ref().is_some_and(|(at, _)| *at <= due) {
            return;
        }
        if let Some((_, handle)) = self.tx_timer.take() {
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(due.saturating_duration_since(now), |act, ctx| {
            act.tx_timer = None;
            act.run_tx_requests(ctx);
        });
        self.tx_timer = Some((due, handle));
    }

    /// A peer became ready: its announcements count from now on (preferred if we dialed it).
    pub(super) fn track_tx_peer(&mut self, id: PeerId) {
        let Some(entry) = self.peers.get(&id) else { return };
        let wtxid_relay = entry.info.as_ref().is_some_and(|i| i.features.wtxid_relay);
        self.txs.peer_connected(id, entry.link == Link::Outbound, wtxid_relay);
    }
}

impl Handler<Notice<InvReceived>> for PeerGroup {
    type Result = ();

    fn handle(&mut self, Notice(msg): Notice<InvReceived>, ctx: &mut Context<Self>) {
        if self.closing || !self.requests_txs() {
            return;
        }
        if self.txs.announced_inv(msg.peer, &msg.items, Instant::now()) {
            self.run_tx_requests(ctx);
        }
    }
}

impl Handler<TxsNotFound> for PeerGroup {
    type Result = ();

    /// Core moves on to the next announcer (`TxDownloadManagerImpl::ReceivedNotFound`).
    fn handle(&mut self, msg: TxsNotFound, ctx: &mut Context<Self>) {
        self.txs.not_found_inv(msg.peer, &msg.items);
        self.run_tx_requests(ctx);
    }
}

impl Handler<Notice<TxReceived>> for PeerGroup {
    type Result = ();

    /// The first copy of a transaction goes to the group's `TxReceived` subscribers and, in
    /// relay mode, is kept to serve and announced to every other ready peer; the tracker
    /// forgets it so nobody is asked for it again.
    fn handle(&mut self, Notice(msg): Notice<TxReceived>, ctx: &mut Context<Self>) {
        let txid = msg.tx.compute_txid();
        let wtxid = msg.tx.compute_wtxid();
        let first = self.txs.received(txid.to_byte_array(), wtxid.to_byte_array());
        if first {
            self.tx_events.transaction(msg.peer, &msg.addr, msg.tx.clone());
        }
        self.run_tx_requests(ctx);
        if !self.config.relay_transactions || self.closing {
            return;
        }
        // Known already, or no room: nothing to pass on.
        if self.broadcasts.admit(msg.tx.clone(), Origin::Relayed, Instant::now()) != Ok(true) {
            return;
        }
        let others = self.ready_actors(Some(msg.peer));
        for actor in &others {
            actor.do_send(QueueTransactions(vec![msg.tx.clone()]));
        }
        self.broadcasts.announced(&txid, others.len());
    }
}
