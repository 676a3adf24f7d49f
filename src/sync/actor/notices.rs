//! What the chain sync hears from the group's peers: peers coming and going, unsolicited
//! headers, blocks and block announcements, each handed to the pure [`HeaderSync`](super::HeaderSync).

use actix::prelude::*;
use tokio::time::Instant;

use super::{unix_now, ChainSync};
use crate::events::{BlockReceived, HeadersReceived, InvReceived, Notice, PeerDisconnected, PeerReady};
use crate::wire::Inventory;

impl Handler<Notice<PeerReady>> for ChainSync {
    type Result = ();
    fn handle(&mut self, Notice(m): Notice<PeerReady>, ctx: &mut Context<Self>) {
        if let Some(server) = self.server.as_mut() {
            server.ready(m.peer, m.info.services);
        }
        self.update_services();
        self.machine.peer_ready(Instant::now(), m.peer, m.info.start_height);
        self.run(ctx);
    }
}

impl Handler<Notice<PeerDisconnected>> for ChainSync {
    type Result = ();
    fn handle(&mut self, Notice(m): Notice<PeerDisconnected>, ctx: &mut Context<Self>) {
        if let Some(server) = self.server.as_mut() {
            server.gone(m.peer);
        }
        self.update_services();
        self.machine.peer_gone(m.peer);
        self.run(ctx);
    }
}

impl Handler<Notice<HeadersReceived>> for ChainSync {
    type Result = ();
    fn handle(&mut self, Notice(m): Notice<HeadersReceived>, ctx: &mut Context<Self>) {
        self.machine.on_headers(Instant::now(), unix_now(), m.peer, &m.headers);
        self.run(ctx);
    }
}

impl Handler<Notice<BlockReceived>> for ChainSync {
    type Result = ();
    fn handle(&mut self, Notice(m): Notice<BlockReceived>, ctx: &mut Context<Self>) {
        let hash = m.block.block_hash();
        self.machine.on_block(Instant::now(), unix_now(), m.peer, hash, &m.block.header);
        self.run(ctx);
    }
}

impl Handler<Notice<InvReceived>> for ChainSync {
    type Result = ();
    fn handle(&mut self, Notice(m): Notice<InvReceived>, ctx: &mut Context<Self>) {
        for item in m.items.iter() {
            if let Inventory::Block(h) | Inventory::WitnessBlock(h) = item {
                self.machine.on_block_inv(Instant::now(), m.peer, *h);
            }
        }
        self.run(ctx);
    }
}
