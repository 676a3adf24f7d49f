//! Serving peers ([`ChainSyncConfig::serve`](super::ChainSyncConfig)): answering their
//! `getheaders` and announcing new tips with Core's rules from [`crate::chain::serve`], and
//! their `getdata` for blocks through the [`BlockProxy`], fetching from upstream peers. The
//! chain sync owns the chain, so it answers; the messages go out through the group
//! ([`SendToPeer`]). `NODE_NETWORK | NODE_WITNESS` (and `NODE_BLOOM` when configured) is
//! advertised (to peers connecting from then on) only while a full-node peer is connected to
//! fetch blocks from. A filtered block goes to the peer whole ([`ServeFilteredBlock`]): the
//! peer's BIP37 filter lives with it, and it builds the `merkleblock`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use bitcoin::BlockHash;
use tracing::{debug, info, warn};

use super::ChainSync;
use crate::chain::serve::{announce, answer_getheaders, Announce, ServePeer};
use crate::events::{GetDataReceived, MessageReceived, Notice};
use crate::group::{Fetch, SendToPeer, SetServiceBits};
use crate::peer::messages::ServeFilteredBlock;
use crate::peer::requests::{Request, Response};
use crate::peer::PeerId;
use crate::sync::proxy::{BlockProxy, Form, ProxyAction};
use crate::wire::{Inventory, Message, ServiceFlags};

/// Longest wait for an upstream peer able to serve a proxied block (the group's request
/// timeouts and retries apply once one is found).
const PROXY_FETCH_WAIT: Duration = Duration::from_secs(10);

/// What we advertise while serving blocks (`bloom`: BIP37 filtered blocks too).
fn served_bits(bloom: bool) -> ServiceFlags {
    let bits = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
    if bloom {
        bits | ServiceFlags::BLOOM
    } else {
        bits
    }
}

/// What a full-node upstream peer must offer for us to serve blocks through it.
fn upstream_bits() -> ServiceFlags {
    ServiceFlags::NETWORK | ServiceFlags::WITNESS
}

/// Core's `UpdatedBlockTip` queues at most this many of the newest blocks per tip change
/// (`MAX_BLOCKS_TO_ANNOUNCE`): [`announce`] then sends them as headers or falls back to `inv`.
const QUEUED_PER_TIP: usize = crate::chain::serve::MAX_BLOCKS_TO_ANNOUNCE;

/// What the chain sync knows of each peer it serves.
#[derive(Debug, Default)]
pub(super) struct Server {
    peers: HashMap<PeerId, Entry>,
    proxy: BlockProxy,
    /// Ready peers offering full blocks with witnesses: where proxied blocks come from.
    full_nodes: HashSet<PeerId>,
    /// Whether the group advertises `served_bits` now.
    advertising: bool,
    /// Offer `NODE_BLOOM` with the rest (BIP37 filters, filtered blocks).
    bloom: bool,
}

#[derive(Debug, Default)]
struct Entry {
    /// Handshake done: announcements may go out.
    ready: bool,
    view: ServePeer,
}

impl Server {
    /// A server that offers `NODE_BLOOM` with the rest when `bloom`.
    pub(super) fn with_bloom(bloom: bool) -> Self {
        Server { bloom, ..Server::default() }
    }

    /// The peer completed its handshake; `services` are its service bits.
    pub(super) fn ready(&mut self, peer: PeerId, services: u64) {
        self.peers.entry(peer).or_default().ready = true;
        if ServiceFlags::from(services).has(upstream_bits()) {
            self.full_nodes.insert(peer);
        }
    }

    /// The peer is gone.
    pub(super) fn gone(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        self.full_nodes.remove(&peer);
        self.proxy.peer_gone(peer);
    }
}

/// `block` without witness data, as `MSG_BLOCK` asks (Core: `TX_NO_WITNESS`).
fn without_witness(block: &bitcoin::Block) -> bitcoin::Block {
    let mut b = block.clone();
    for tx in &mut b.txdata {
        for input in &mut tx.input {
            input.witness.clear();
        }
    }
    b
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

impl ChainSync {
    /// Advertises `NODE_NETWORK | NODE_WITNESS` (`| NODE_BLOOM` when configured) only while a
    /// full-node peer can supply the blocks we would be asked for; says so in the log when
    /// that changes.
    pub(super) fn update_services(&mut self) {
        let Some(server) = self.server.as_mut() else { return };
        let can_serve = !server.full_nodes.is_empty();
        if can_serve == server.advertising {
            return;
        }
        server.advertising = can_serve;
        let bits = served_bits(server.bloom);
        if can_serve {
            info!(
                upstream = server.full_nodes.len(),
                services = %bits,
                "advertising block service: blocks are served through upstream full nodes"
            );
            self.group.do_send(SetServiceBits { add: bits, remove: ServiceFlags::NONE });
        } else {
            warn!(services = %bits, "no upstream full node: no longer advertising block service to new peers");
            self.group.do_send(SetServiceBits { add: ServiceFlags::NONE, remove: bits });
        }
    }

    /// Executes the block proxy's actions.
    fn run_proxy(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.server.as_mut().and_then(|s| s.proxy.poll_action()) {
            match action {
                ProxyAction::Send { peer, block, form } => match form {
                    Form::Block => {
                        let message = Message::Block(without_witness(&block));
                        self.group.do_send(SendToPeer { peer, message });
                    }
                    Form::Witness => {
                        self.group.do_send(SendToPeer { peer, message: Message::Block((*block).clone()) });
                    }
                    Form::Filtered => self.group.do_send(ServeFilteredBlock { peer, block }),
                },
                ProxyAction::NotFound { peer, items } => {
                    self.group.do_send(SendToPeer { peer, message: Message::NotFound(items) });
                }
                ProxyAction::Fetch { hash, exclude } => {
                    let fetch = Fetch::new(Request::Blocks { hashes: vec![hash] })
                        .exclude(exclude)
                        .wait(PROXY_FETCH_WAIT);
                    self.group
                        .send(fetch)
                        .into_actor(self)
                        .map(move |result, this: &mut Self, ctx| {
                            let block = match result {
                                Ok(Ok(f)) => match f.response {
                                    Response::Blocks(mut b) if b.len() == 1 => {
                                        b.pop().filter(|b| b.block_hash() == hash)
                                    }
                                    _ => None,
                                },
                                Ok(Err(e)) => {
                                    debug!(%hash, error = %e, "proxied block not fetched");
                                    None
                                }
                                Err(_) => None,
                            };
                            if let Some(server) = this.server.as_mut() {
                                server.proxy.on_fetched(hash, block);
                            }
                            this.run_proxy(ctx);
                        })
                        .spawn(ctx);
                }
            }
        }
    }
}

impl Handler<Notice<GetDataReceived>> for ChainSync {
    type Result = ();

    fn handle(&mut self, Notice(m): Notice<GetDataReceived>, ctx: &mut Context<Self>) {
        let Some(server) = self.server.as_mut() else { return };
        let chain = self.machine.chain();
        server.proxy.on_getdata(m.peer, &m.items, |h| chain.is_on_best_chain(h));
        self.run_proxy(ctx);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_is_offered_only_when_configured_and_never_asked_of_upstream() {
        assert_eq!(served_bits(false), ServiceFlags::NETWORK | ServiceFlags::WITNESS);
        assert!(served_bits(true).has(ServiceFlags::BLOOM));
        let mut s = Server::with_bloom(true);
        // An upstream full node without NODE_BLOOM still supplies blocks (we filter them).
        s.ready(PeerId(1), (ServiceFlags::NETWORK | ServiceFlags::WITNESS).to_u64());
        assert!(s.full_nodes.contains(&PeerId(1)));
        s.ready(PeerId(2), ServiceFlags::NETWORK.to_u64());
        assert!(!s.full_nodes.contains(&PeerId(2)));
    }
}
