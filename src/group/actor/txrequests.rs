//! Handlers that fetch announced transactions once per group: peers report `inv`, `notfound`
//! and `tx`, the tracker ([`crate::group::txrequest`], Core's `TxRequestTracker`) picks one
//! announcer per transaction, and the group sends that peer the `getdata`. A received
//! transaction reaches the group's `TxReceived` subscribers once (the first copy), through the
//! tracker's recently-seen set.

use actix::prelude::*;
use bitcoin::hashes::Hash as _;
use bitcoin::{Txid, Wtxid};
use tokio::time::Instant;

use super::PeerGroup;
use crate::events::{InvReceived, Notice, TxReceived};
use crate::group::broadcast::Origin;
use crate::group::txrequest::{Announced, TxWant};
use crate::peer::messages::{HandTxRequestsToGroup, QueueTransactions, SendMessage, TxsNotFound};
use crate::peer::{Link, PeerActor, PeerId};
use crate::wire::{Inventory, Message, ServiceFlags};

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
            let items = wants.iter().map(|w| inventory(w, witness)).collect();
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

/// The `getdata` entry for a wanted transaction: by wtxid as announced (BIP339), else by txid
/// with the witness flag when the peer offers NODE_WITNESS (Core's `GetFetchFlags`).
fn inventory(want: &TxWant, witness: bool) -> Inventory {
    if want.is_wtxid {
        Inventory::WTx(Wtxid::from_byte_array(want.hash))
    } else if witness {
        Inventory::WitnessTransaction(Txid::from_byte_array(want.hash))
    } else {
        Inventory::Transaction(Txid::from_byte_array(want.hash))
    }
}

impl Handler<Notice<InvReceived>> for PeerGroup {
    type Result = ();

    fn handle(&mut self, Notice(msg): Notice<InvReceived>, ctx: &mut Context<Self>) {
        if self.closing || !self.requests_txs() {
            return;
        }
        let Some(entry) = self.peers.get(&msg.peer) else { return };
        let wtxid_relay = entry.info.as_ref().is_some_and(|i| i.features.wtxid_relay);
        let now = Instant::now();
        let mut tracked = false;
        for item in msg.items.iter() {
            // Core ignores tx announcements of the kind the link did not negotiate
            // (`ProcessMessage`, INV: `if (peer->m_wtxid_relay != inv.IsMsgWtx()) continue`).
            let (hash, is_wtxid) = match item {
                Inventory::Transaction(txid) | Inventory::WitnessTransaction(txid) if !wtxid_relay => {
                    (txid.to_byte_array(), false)
                }
                Inventory::WTx(wtxid) if wtxid_relay => (wtxid.to_byte_array(), true),
                _ => continue,
            };
            tracked |= self.txs.announced(msg.peer, hash, is_wtxid, now) == Announced::Tracked;
        }
        if tracked {
            self.run_tx_requests(ctx);
        }
    }
}

impl Handler<TxsNotFound> for PeerGroup {
    type Result = ();

    /// Core moves on to the next announcer (`TxDownloadManagerImpl::ReceivedNotFound`).
    fn handle(&mut self, msg: TxsNotFound, ctx: &mut Context<Self>) {
        for item in &msg.items {
            let hash = match item {
                Inventory::Transaction(txid) | Inventory::WitnessTransaction(txid) => txid.to_byte_array(),
                Inventory::WTx(wtxid) => wtxid.to_byte_array(),
                _ => continue,
            };
            self.txs.not_found(msg.peer, hash);
        }
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
            self.tx_events.received(msg.peer, &msg.addr, Message::Tx((*msg.tx).clone()), true);
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
