//! Serving the header chain to peers ([`ChainSyncConfig::serve`](super::ChainSyncConfig)):
//! answering their `getheaders` and announcing new tips, with Core's rules from
//! [`crate::chain::serve`]. The chain sync owns the chain, so it answers; the messages go out
//! through the group ([`SendToPeer`]).

use std::collections::HashMap;

use actix::prelude::*;
use bitcoin::BlockHash;
use tracing::debug;

use super::ChainSync;
use crate::chain::serve::{announce, answer_getheaders, Announce, ServePeer};
use crate::events::{MessageReceived, Notice};
use crate::group::SendToPeer;
use crate::peer::PeerId;
use crate::wire::{Inventory, Message};

/// Core's `UpdatedBlockTip` queues at most this many of the newest blocks per tip change
/// (`MAX_BLOCKS_TO_ANNOUNCE`): [`announce`] then sends them as headers or falls back to `inv`.
const QUEUED_PER_TIP: usize = crate::chain::serve::MAX_BLOCKS_TO_ANNOUNCE;

/// What the chain sync knows of each peer it serves.
#[derive(Debug, Default)]
pub(super) struct Server {
    peers: HashMap<PeerId, Entry>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Handshake done: announcements may go out.
    ready: bool,
    view: ServePeer,
}

impl Server {
    /// The peer completed its handshake.
    pub(super) fn ready(&mut self, peer: PeerId) {
        self.peers.entry(peer).or_default().ready = true;
    }

    /// The peer is gone.
    pub(super) fn gone(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
    }
}

impl ChainSync {
    /// Announces the new best-chain headers (`connected`, ascending) to every ready peer, as
    /// Core's `UpdatedBlockTip` and `SendMessages` do: not while still catching up (Core skips
    /// announcements in initial block download).
    pub(super) fn announce_tip(&mut self, connected: &[(BlockHash, u32)]) {
        let Some(server) = self.server.as_mut() else { return };
        if !self.machine.is_synced() || connected.is_empty() {
            return;
        }
        let from = connected.len().saturating_sub(QUEUED_PER_TIP);
        let hashes: Vec<BlockHash> = connected[from..].iter().map(|(h, _)| *h).collect();
        let chain = self.machine.chain();
        for (peer, entry) in server.peers.iter_mut().filter(|(_, e)| e.ready) {
            let message = match announce(chain, &mut entry.view, &hashes) {
                Announce::Nothing => continue,
                Announce::Headers(h) => Message::Headers(h),
                Announce::Inv(hash) => Message::Inv(vec![Inventory::Block(hash)]),
            };
            self.group.do_send(SendToPeer { peer: *peer, message });
        }
    }
}

impl Handler<Notice<MessageReceived>> for ChainSync {
    type Result = ();

    fn handle(&mut self, Notice(m): Notice<MessageReceived>, _: &mut Context<Self>) {
        let Some(server) = self.server.as_mut() else { return };
        let entry = server.peers.entry(m.peer).or_default();
        match &*m.message {
            Message::SendHeaders => entry.view.prefers_headers = true,
            // Core's `UpdateBlockAvailability`: the last header of a `headers`, a block `inv`.
            Message::Headers(h) => {
                if let Some(last) = h.last() {
                    entry.view.best_known = Some(last.block_hash());
                }
            }
            Message::Inv(items) => {
                let last = items.iter().rev().find_map(|i| match i {
                    Inventory::Block(h) | Inventory::WitnessBlock(h) => Some(*h),
                    _ => None,
                });
                if last.is_some() {
                    entry.view.best_known = last;
                }
            }
            Message::GetHeaders(req) => {
                let chain = self.machine.chain();
                let Some((headers, sent)) = answer_getheaders(chain, &req.locator_hashes, req.stop_hash)
                else {
                    debug!(peer = %m.peer, stop = %req.stop_hash, "getheaders for an unknown or forked stop hash; ignored as Core does");
                    return;
                };
                entry.view.best_sent = Some(sent);
                debug!(peer = %m.peer, headers = headers.len(), "serving getheaders");
                self.group.do_send(SendToPeer { peer: m.peer, message: Message::Headers(headers) });
            }
            _ => {}
        }
    }
}
