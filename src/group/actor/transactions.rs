//! Handlers that move transactions and messages to peers: `Broadcast`,
//! `BroadcastTransaction`, serving `getdata`, and confirmation by a block (relay mode is in
//! `txrequests`, with the other handling of received transactions). The
//! decisions are the broadcast cache's ([`crate::group::broadcast`]).

use std::sync::Arc;

use actix::prelude::*;

use crate::events::Notice;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{deliver, PeerGroup, LONGEST_WAIT};
use crate::events::GetDataReceived;
use crate::group::broadcast::Origin;
use crate::group::messages::*;
use crate::peer::messages::{QueueTransactions, SendMessage};
use crate::peer::{PeerActor, PeerId};
use crate::wire::Message;

impl PeerGroup {
    /// The ready peers, except `but`.
    pub(super) fn ready_actors(&self, but: Option<PeerId>) -> Vec<Addr<PeerActor>> {
        self.peers
            .iter()
            .filter(|(id, e)| e.ready && Some(**id) != but)
            .map(|(_, e)| e.actor.clone())
            .collect()
    }
}

impl Handler<Broadcast> for PeerGroup {
    type Result = Result<usize, GroupError>;
    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Err(GroupError::Closed);
        }
        let ready = self.ready_actors(None);
        if ready.is_empty() && !msg.allow_none {
            return Err(GroupError::NoPeers);
        }
        for actor in &ready {
            actor.do_send(SendMessage(msg.message.clone()));
        }
        Ok(ready.len())
    }
}

impl Handler<BroadcastTransaction> for PeerGroup {
    type Result = ResponseFuture<Result<BroadcastOutcome, BroadcastError>>;

    /// Announces the transaction to every ready peer and waits, until this caller's own
    /// deadline, for enough peers to ask for it.
    fn handle(&mut self, msg: BroadcastTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        let answer: Self::Result =
            Box::pin(async move { answer.await.unwrap_or(Err(BroadcastError::Group(GroupError::Closed))) });
        if self.closing {
            let _ = reply.send(Err(BroadcastError::Group(GroupError::Closed)));
            return answer;
        }
        let ready = self.ready_actors(None);
        if ready.is_empty() {
            let _ = reply.send(Err(BroadcastError::Group(GroupError::NoPeers)));
            return answer;
        }
        let now = Instant::now();
        let tx = Arc::new(msg.tx);
        let txid = tx.compute_txid();
        if let Err(e) = self.broadcasts.admit(tx, Origin::Ours, now) {
            let _ = reply.send(Err(e));
            return answer;
        }
        if let Some(tx) = self.broadcasts.get(&txid) {
            for actor in &ready {
                actor.do_send(QueueTransactions(vec![tx.clone()]));
            }
        }
        self.broadcasts.announced(&txid, ready.len());
        let timeout = msg.timeout.min(LONGEST_WAIT);
        let answers = self.broadcasts.wait(&txid, msg.min_peers, now + timeout, reply, now);
        if answers.is_empty() {
            ctx.run_later(timeout, |act, _| deliver(act.broadcasts.expire_waiters(Instant::now())));
        }
        deliver(answers);
        answer
    }
}

impl Handler<BlockConnected> for PeerGroup {
    type Result = ();

    /// A broadcast seen in a block of the best chain is done: waiters get their outcome and
    /// rebroadcasting stops. Only a chain sync sends this, for blocks it requested and checked
    /// (an unsolicited block from a peer proves nothing).
    fn handle(&mut self, msg: BlockConnected, _: &mut Context<Self>) {
        let (confirmed, answers) = self.broadcasts.confirm(&msg.0);
        if !confirmed.is_empty() {
            let block = msg.0.block_hash();
            for txid in confirmed {
                info!(%txid, %block, "broadcast transaction confirmed");
            }
        }
        deliver(answers);
    }
}

impl Handler<Notice<GetDataReceived>> for PeerGroup {
    type Result = ();

    fn handle(&mut self, Notice(msg): Notice<GetDataReceived>, _: &mut Context<Self>) {
        let Some(entry) = self.peers.get(&msg.peer) else { return };
        let actor = entry.actor.clone();
        let served = self.broadcasts.get_data(msg.peer, &msg.items);
        for tx in served.txs {
            actor.do_send(SendMessage(Message::Tx(tx)));
        }
        if served.stripped_segwit {
            warn!(peer = %msg.addr, "peer asked for a segwit transaction without witness; advertise NODE_WITNESS (peer.services = 8)");
        }
        if !served.not_found.is_empty() {
            // Core moves on to another announcer when told `notfound`.
            actor.do_send(SendMessage(Message::NotFound(served.not_found)));
        }
        deliver(served.answers);
    }
}
