//! Glue between the machine and the peer's request tracker ([`crate::peer::requests`]):
//! starting requests, turning tracker events into messages and answers, and fetching the
//! transactions the peer announces.

use std::sync::Arc;

use bitcoin::hashes::Hash as _;
use bitcoin::BlockHash;
use tokio::time::Instant;

use super::{Action, PeerMachine, Verdict};
use crate::peer::reason::{DisconnectReason, Misbehavior};
use crate::peer::requests::{Request, RequestError, RequestEvent, RequestId, MSG_FILTERED_BLOCK};
use crate::peer::PeerState;
use crate::wire::limits::MAX_GETDATA_SZ;
use crate::wire::{GetHeadersMessage, Inventory, Message, ServiceFlags};

impl PeerMachine {
    /// Starts a request; the answer comes later as [`Action::Answer`] with the returned id. The
    /// timeout scales with the peer's measured latency
    /// ([`RequestTimeouts`](crate::peer::requests::RequestTimeouts)).
    pub fn request(&mut self, now: Instant, request: Request) -> Result<RequestId, RequestError> {
        if self.state != PeerState::Ready || self.closed {
            return Err(RequestError::NotReady);
        }
        if matches!(request, Request::FilteredBlocks { .. }) && !self.peer_has(ServiceFlags::BLOOM) {
            // Core disconnects a peer asking for filtered blocks without NODE_BLOOM.
            return Err(RequestError::Unsupported { service: ServiceFlags::BLOOM });
        }
        let timeout = self.config.request_timeouts.for_latency(self.latency);
        let id = self.requests.start(now, request, timeout)?;
        self.run_requests();
        Ok(id)
    }

    /// True if a `block` with this hash answers one of our requests (the actor then parses it
    /// and calls [`on_requested_block`](Self::on_requested_block)).
    pub fn wants_block(&self, hash: &BlockHash) -> bool {
        self.requests.wants_block(hash)
    }

    /// A requested block arrived, parsed.
    pub fn on_requested_block(&mut self, now: Instant, block: Arc<bitcoin::Block>) {
        if self.closed {
            return;
        }
        self.requests.on_block(now, block);
        self.run_requests();
    }

    /// Turns request events into actions. `Consumed` when the peer was dropped for them.
    pub(super) fn run_requests(&mut self) -> Verdict {
        self.run_requests_answering().0
    }

    /// [`run_requests`](Self::run_requests), also saying whether a request was answered
    /// successfully (the message that triggered it was an answer, not an announcement).
    pub(super) fn run_requests_answering(&mut self) -> (Verdict, bool) {
        let mut verdict = Verdict::Deliver;
        let mut answered = false;
        while let Some(event) = self.requests.poll_event() {
            match event {
                RequestEvent::SendGetHeaders { locator, stop } => {
                    self.send(Message::GetHeaders(GetHeadersMessage::new(locator, stop)))
                }
                RequestEvent::SendGetData(hashes) => {
                    let witness = self.peer_has(ServiceFlags::WITNESS);
                    let items = hashes
                        .into_iter()
                        .map(|h| if witness { Inventory::WitnessBlock(h) } else { Inventory::Block(h) })
                        .collect();
                    self.send(Message::GetData(items));
                }
                RequestEvent::SendGetFiltered(hashes) => {
                    let items = hashes
                        .into_iter()
                        .map(|h| Inventory::Unknown { inv_type: MSG_FILTERED_BLOCK, hash: h.to_byte_array() })
                        .collect();
                    self.send(Message::GetData(items));
                }
                RequestEvent::Done(id, result) => {
                    answered |= result.is_ok();
                    self.actions.push_back(Action::Answer(id, result));
                }
                RequestEvent::Misbehaved(reason) => {
                    verdict = self.misbehaving(Misbehavior::InvalidData { reason: reason.to_string() });
                }
                RequestEvent::Stalled { after } => {
                    self.disconnect(DisconnectReason::Stalled { after });
                    verdict = Verdict::Consumed;
                }
            }
        }
        (verdict, answered)
    }

    /// Hands the choice of which announced transactions to request to a group, which asks one
    /// announcer per transaction for the whole network ([`crate::group::txrequest`]); this
    /// machine stops answering announcements itself.
    pub(crate) fn hand_tx_requests_to_group(&mut self) {
        self.txs_by_group = true;
    }

    /// Answers announced transactions with `getdata` (once per id), when configured to and no
    /// group decides instead.
    pub(super) fn request_transactions(&mut self, items: &[Inventory]) {
        if !(self.config.request_announced_txs && self.config.relay) || self.txs_by_group {
            return;
        }
        let witness = self.peer_has(ServiceFlags::WITNESS);
        let mut wanted = Vec::new();
        for item in items {
            let request = match item {
                Inventory::Transaction(txid) | Inventory::WitnessTransaction(txid) => {
                    if !self.requested_txs.insert(txid.to_byte_array()) {
                        continue;
                    }
                    if witness {
                        Inventory::WitnessTransaction(*txid)
                    } else {
                        Inventory::Transaction(*txid)
                    }
                }
                Inventory::WTx(wtxid) => {
                    if !self.requested_txs.insert(wtxid.to_byte_array()) {
                        continue;
                    }
                    Inventory::WTx(*wtxid)
                }
                _ => continue,
            };
            wanted.push(request);
            if wanted.len() == MAX_GETDATA_SZ {
                self.send(Message::GetData(std::mem::take(&mut wanted)));
            }
        }
        if !wanted.is_empty() {
            self.send(Message::GetData(wanted));
        }
    }

    /// Whether the peer's `version` offered all of these service bits.
    pub(super) fn peer_has(&self, flags: ServiceFlags) -> bool {
        self.remote.as_ref().is_some_and(|r| ServiceFlags::from(r.services).has(flags))
    }
}
