//! The messages a [`PeerActor`] accepts (see `peer::messages`), each a thin call into the
//! machine or the writer.

use super::*;
use crate::peer::messages::{ServeFilteredBlock, SetAdvertise};

impl Handler<SendMessage> for PeerActor {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, msg: SendMessage, _ctx: &mut Context<Self>) -> Self::Result {
        let state = self.machine.state();
        if state != PeerState::Ready {
            return Box::pin(future::ready(Err(SendError::NotReady { state })));
        }
        if let Err(refused) = self.machine.check_send(&msg.0) {
            return Box::pin(future::ready(Err(SendError::Refused(refused))));
        }
        let (tx, rx) = oneshot::channel();
        match self.enqueue(&msg.0, Some(tx)) {
            Ok(()) => {
                self.machine.note_sent(&msg.0);
                Box::pin(rx.map(|r| r.unwrap_or(Err(SendError::Disconnected))))
            }
            Err(e) => Box::pin(future::ready(Err(e))),
        }
    }
}

impl Handler<ServeFilteredBlock> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: ServeFilteredBlock, ctx: &mut Context<Self>) {
        self.machine.serve_filtered_block(&msg.block);
        self.run_actions(ctx);
    }
}

impl Handler<FetchFromPeer> for PeerActor {
    type Result = ResponseFuture<Result<Response, RequestError>>;

    fn handle(&mut self, msg: FetchFromPeer, ctx: &mut Context<Self>) -> Self::Result {
        let started = self.machine.request(Instant::now(), msg.0);
        // Register the answer before running the actions: sending may already end the
        // connection, and its answer (Disconnected) must reach this caller.
        let reply = started.map(|id| {
            let (tx, rx) = oneshot::channel();
            self.answers.insert(id, tx);
            rx
        });
        self.run_actions(ctx);
        match reply {
            Ok(rx) => Box::pin(rx.map(|r| r.unwrap_or(Err(RequestError::NotReady)))),
            Err(e) => Box::pin(future::ready(Err(e))),
        }
    }
}

impl Handler<Disconnect> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        self.machine.disconnect(msg.0);
        self.run_actions(ctx);
    }
}

impl Handler<GetStats> for PeerActor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot())
    }
}

impl Handler<SubscribePeer> for PeerActor {
    type Result = MessageResult<SubscribePeer>;

    fn handle(&mut self, msg: SubscribePeer, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.subscribers.add(msg.0))
    }
}

impl Handler<QueueInventory> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: QueueInventory, ctx: &mut Context<Self>) {
        self.machine.queue_inventory(Instant::now(), &msg.0);
        self.run_actions(ctx);
        self.arm_trickle(ctx);
    }
}

impl Handler<QueueTransactions> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: QueueTransactions, ctx: &mut Context<Self>) {
        self.machine.queue_transactions(Instant::now(), &msg.0);
        self.run_actions(ctx);
        self.arm_trickle(ctx);
    }
}

impl Handler<SetAdvertise> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: SetAdvertise, ctx: &mut Context<Self>) {
        self.machine.set_advertise(Instant::now(), msg.0);
        self.run_actions(ctx);
    }
}

impl Handler<PushAddr> for PeerActor {
    type Result = usize;

    fn handle(&mut self, msg: PushAddr, ctx: &mut Context<Self>) -> usize {
        let n = self.machine.push_addr(&msg.0);
        self.run_actions(ctx);
        n
    }
}

impl Handler<PushGetHeaders> for PeerActor {
    type Result = bool;

    fn handle(&mut self, msg: PushGetHeaders, ctx: &mut Context<Self>) -> bool {
        let sent = self.machine.push_getheaders(msg.locator, msg.stop);
        self.run_actions(ctx);
        sent
    }
}

impl Handler<PushReject> for PeerActor {
    type Result = bool;

    fn handle(&mut self, msg: PushReject, ctx: &mut Context<Self>) -> bool {
        let sent = self.machine.push_reject(&msg.command, msg.code, &msg.reason, msg.hash);
        self.run_actions(ctx);
        sent
    }
}

impl Handler<PushGetBlocks> for PeerActor {
    type Result = bool;

    fn handle(&mut self, msg: PushGetBlocks, ctx: &mut Context<Self>) -> bool {
        let sent = self.machine.push_getblocks(msg.locator, msg.stop);
        self.run_actions(ctx);
        sent
    }
}

impl Handler<SubscribeAs> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: SubscribeAs, _ctx: &mut Context<Self>) {
        self.subscribers.add_with_id(msg.0, msg.1);
    }
}

impl Handler<HandTxRequestsToGroup> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: HandTxRequestsToGroup, _ctx: &mut Context<Self>) {
        self.machine.hand_tx_requests_to_group();
        self.tx_notfound = Some(msg.0);
    }
}

impl Handler<UnsubscribePeer> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: UnsubscribePeer, _ctx: &mut Context<Self>) {
        self.subscribers.remove(msg.0);
    }
}

impl Handler<WriterReport> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: WriterReport, ctx: &mut Context<Self>) {
        match msg.0 {
            WriteEvent::Written { command, len } => {
                self.budget.release(len);
                self.stats.sent(command, len, SystemTime::now());
                self.count(|m| m.message(true, command, len));
            }
            // A reset while our v2 key goes out is the v1 peer closing on us: retry with v1.
            // The v2 attempt's writer, already replaced by the v1 retry's.
            WriteEvent::Failed { writer, .. } if writer != self.writer_gen => {}
            WriteEvent::Failed { .. } if self.should_retry_v1(None) => self.retry_v1(ctx),
            WriteEvent::Failed { error, .. } => {
                self.machine.disconnect(DisconnectReason::Io { error });
                self.run_actions(ctx);
            }
        }
    }
}
