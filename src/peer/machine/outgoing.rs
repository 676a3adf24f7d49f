//! What goes to the peer on the application's behalf: the check of messages it wants to send
//! ([`PeerMachine::check_send`], refused with a typed [`SendRefused`]), announcements through the
//! trickle, and the `getheaders`/`getblocks`/`reject` helpers.

use bitcoin::hashes::Hash as _;
use bitcoin::p2p::ServiceFlags;
use bitcoin::BlockHash;
use serde::Serialize;
use tokio::time::Instant;

use super::PeerMachine;
use crate::peer::bloom::{BloomFilter, MAX_BLOOM_FILTER_SIZE, MAX_HASH_FUNCS, MAX_SCRIPT_ELEMENT_SIZE};
use crate::peer::relay::{Announcement, InboundTrickle, PeerView};
use crate::peer::requests::MSG_FILTERED_BLOCK;
use crate::peer::Link;
use crate::peer::PeerState;
use crate::wire::limits::{
    MAX_ADDR_TO_SEND, MAX_HEADERS_RESULTS, MAX_INV_SZ, MAX_LOCATOR_SZ, REJECT_VERSION,
};
use crate::wire::{
    GetBlocksMessage, GetCFCheckpt, GetCFHeaders, GetCFilters, GetHeadersMessage, Inventory, Message,
};

/// Why a message the application wanted to send was refused: sending it would break the
/// protocol with this peer (Core would disconnect us, or the answer could not be told apart
/// from misbehaviour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum SendRefused {
    /// `version`, `verack`, `wtxidrelay` and `sendaddrv2` belong to the handshake, which the
    /// machine already did.
    #[error("{command} is sent by the handshake itself")]
    Handshake {
        /// The refused command.
        command: String,
    },
    /// A `getdata` for `MSG_FILTERED_BLOCK`: its `merkleblock` answer would look unsolicited.
    #[error("getdata for filtered blocks: ask for them with Fetch(Request::FilteredBlocks)")]
    FilteredBlocks,
    /// A list longer than Core accepts (`MAX_INV_SZ`, `MAX_HEADERS_RESULTS`, `MAX_ADDR_TO_SEND`).
    #[error("{command} with {count} entries exceeds the limit of {max}")]
    TooManyEntries {
        /// The refused command.
        command: String,
        /// Entries in the message.
        count: usize,
        /// The limit for this command.
        max: usize,
    },
    /// Transactions (or their announcements) to a peer that asked not to get them (`relay=0`
    /// in its `version`, and no BIP37 filter loaded).
    #[error("{command} carries transactions but the peer asked not to get them (relay=0)")]
    TxRelayOff {
        /// The refused command.
        command: String,
    },
    /// A message only a peer offering a service may get. Core disconnects a peer that sends
    /// BIP37 messages (`filterload`, `filteradd`, `filterclear`, `mempool`) when it does not
    /// offer `NODE_BLOOM`, and BIP157 requests when it does not offer `NODE_COMPACT_FILTERS`
    /// (`net_processing.cpp`, `ProcessMessage` and `PrepareBlockFilterRequest`).
    #[error("{command} needs a peer that offers {service}")]
    ServiceNotOffered {
        /// The refused command.
        command: String,
        /// The service bit the peer lacks.
        service: String,
    },
    /// A filter message Core refuses: `filterload` over 36,000 bytes or 50 hash functions,
    /// `filteradd` over 520 bytes or with no filter loaded (`net_processing.cpp`: Core
    /// discourages the sender), a BIP157 request for a filter type other than basic (0; Core
    /// disconnects).
    #[error("{command}: {problem}")]
    BadFilter {
        /// The refused command.
        command: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The encoded frame exceeds the protocol's message limit (`MAX_PROTOCOL_MESSAGE_LENGTH`,
    /// `net.h`, plus the header).
    #[error("{command} of {len} bytes exceeds the protocol's limit of {max} bytes")]
    TooLarge {
        /// The refused command.
        command: String,
        /// Encoded size, header included.
        len: usize,
        /// The limit, header included.
        max: usize,
    },
}

impl PeerMachine {
    /// Checks a message the application wants to send. Handshake messages are the machine's
    /// own; transactions go only to peers that asked for them; lists stay within Core's limits.
    pub fn check_send(&self, msg: &Message) -> Result<(), SendRefused> {
        let command = || msg.cmd().to_owned();
        let too_many = |count: usize, max: usize| {
            if count > max {
                Err(SendRefused::TooManyEntries { command: command(), count, max })
            } else {
                Ok(())
            }
        };
        let relay_off = || Err(SendRefused::TxRelayOff { command: command() });
        match msg {
            Message::Version(_) | Message::Verack | Message::WtxidRelay | Message::SendAddrV2 => {
                Err(SendRefused::Handshake { command: command() })
            }
            Message::GetData(items)
                if items
                    .iter()
                    .any(|i| matches!(i, Inventory::Unknown { inv_type: MSG_FILTERED_BLOCK, .. })) =>
            {
                Err(SendRefused::FilteredBlocks)
            }
            Message::Inv(items) | Message::GetData(items) | Message::NotFound(items) => {
                too_many(items.len(), MAX_INV_SZ)?;
                let announces_tx = matches!(msg, Message::Inv(_))
                    && items.iter().any(|i| {
                        matches!(
                            i,
                            Inventory::Transaction(_) | Inventory::WTx(_) | Inventory::WitnessTransaction(_)
                        )
                    });
                if announces_tx && !self.peer_wants_txs() {
                    return relay_off();
                }
                Ok(())
            }
            Message::Tx(_) if !self.peer_wants_txs() => relay_off(),
            Message::Headers(h) => too_many(h.len(), MAX_HEADERS_RESULTS),
            Message::Addr(a) => too_many(a.len(), MAX_ADDR_TO_SEND),
            Message::AddrV2(a) => too_many(a.len(), MAX_ADDR_TO_SEND),
            // Core disconnects a peer whose locator is longer (`net_processing.cpp`,
            // `ProcessMessage`, GETHEADERS and GETBLOCKS).
            Message::GetHeaders(m) => too_many(m.locator_hashes.len(), MAX_LOCATOR_SZ),
            Message::GetBlocks(m) => too_many(m.locator_hashes.len(), MAX_LOCATOR_SZ),
            Message::FilterLoad(_) | Message::FilterAdd(_) | Message::FilterClear | Message::MemPool
                if !self.peer_has(ServiceFlags::BLOOM) =>
            {
                Err(SendRefused::ServiceNotOffered { command: command(), service: "NODE_BLOOM".into() })
            }
            Message::FilterLoad(load) if !BloomFilter::within_limits(load) => Err(SendRefused::BadFilter {
                command: command(),
                problem: format!(
                    "{} bytes and {} hash functions (at most {MAX_BLOOM_FILTER_SIZE} and {MAX_HASH_FUNCS})",
                    load.filter.len(),
                    load.hash_funcs
                ),
            }),
            Message::FilterAdd(add) if add.data.len() > MAX_SCRIPT_ELEMENT_SIZE => {
                Err(SendRefused::BadFilter {
                    command: command(),
                    problem: format!(
                        "an element of {} bytes (at most {MAX_SCRIPT_ELEMENT_SIZE})",
                        add.data.len()
                    ),
                })
            }
            Message::FilterAdd(_) if !self.filter_at_peer => Err(SendRefused::BadFilter {
                command: command(),
                problem: "no filter loaded at the peer (send filterload first)".into(),
            }),
            Message::GetCFilters(_) | Message::GetCFHeaders(_) | Message::GetCFCheckpt(_)
                if !self.peer_has(ServiceFlags::COMPACT_FILTERS) =>
            {
                Err(SendRefused::ServiceNotOffered {
                    command: command(),
                    service: "NODE_COMPACT_FILTERS".into(),
                })
            }
            // Core serves the basic filter type (0) only and disconnects for any other
            // (`PrepareBlockFilterRequest`).
            Message::GetCFilters(GetCFilters { filter_type, .. })
            | Message::GetCFHeaders(GetCFHeaders { filter_type, .. })
            | Message::GetCFCheckpt(GetCFCheckpt { filter_type, .. })
                if *filter_type != 0 =>
            {
                Err(SendRefused::BadFilter {
                    command: command(),
                    problem: format!("filter type {filter_type} (Core serves only type 0, basic)"),
                })
            }
            _ => Ok(()),
        }
    }

    /// Notes a message the application sent (after [`check_send`](Self::check_send) passed):
    /// whether a BIP37 filter is now loaded at the peer.
    pub fn note_sent(&mut self, msg: &Message) {
        match msg {
            Message::FilterLoad(_) => self.filter_at_peer = true,
            Message::FilterClear => self.filter_at_peer = false,
            _ => {}
        }
    }

    /// Inbound: trickle transactions at the instants all inbound peers share.
    pub(crate) fn with_inbound_trickle(mut self, shared: InboundTrickle) -> Self {
        if self.link == Link::Inbound {
            self.relay.share_inbound_trickle(shared);
        }
        self
    }

    fn peer_wants_txs(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.relay)
    }

    /// Queues announcements for this peer: blocks go out at once, transactions with the next
    /// trickle (see [`crate::peer::relay`]).
    pub fn queue_inventory(&mut self, now: Instant, items: &[Announcement]) {
        for item in items {
            // A filtered peer gets only transactions its filter matches, which needs the
            // transaction itself: see `queue_transactions`.
            if self.bloom.is_some() && matches!(item, Announcement::Tx { .. }) {
                continue;
            }
            self.relay.queue(*item);
        }
        self.flush_inventory(now);
    }

    /// When queued inventory is next due (for a precise timer; `tick` also flushes): `now` when
    /// blocks wait, the trickle's instant when only transactions do.
    pub fn next_inventory_due(&self, now: Instant) -> Option<Instant> {
        self.relay.next_due(now)
    }

    /// Sends the inventory that is due.
    pub fn flush_inventory(&mut self, now: Instant) {
        if self.state != PeerState::Ready {
            return;
        }
        let Some(remote) = &self.remote else { return };
        let view = PeerView {
            relay: remote.relay,
            wtxid_relay: remote.features.wtxid_relay,
            fee_filter: remote.features.fee_filter,
            send_headers: remote.features.send_headers,
        };
        for msg in self.relay.poll(now, &mut self.rng, view) {
            self.send(msg);
        }
    }

    /// Sends `getheaders` (btcd's `PushGetHeadersMsg`), unless it repeats the previous request
    /// (same first locator hash and stop hash). Returns whether it was sent.
    pub fn push_getheaders(&mut self, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        let ready = self.state == PeerState::Ready;
        if !is_new_request(&mut self.last_getheaders, ready, &locator, stop) {
            return false;
        }
        self.send(Message::GetHeaders(GetHeadersMessage::new(capped_locator(locator), stop)));
        true
    }

    /// Sends `getblocks`, unless it repeats the previous request. Returns whether it was sent.
    pub fn push_getblocks(&mut self, locator: Vec<BlockHash>, stop: BlockHash) -> bool {
        let ready = self.state == PeerState::Ready;
        if !is_new_request(&mut self.last_getblocks, ready, &locator, stop) {
            return false;
        }
        self.send(Message::GetBlocks(GetBlocksMessage::new(capped_locator(locator), stop)));
        true
    }

    /// Sends a BIP61 `reject` (btcd's `PushRejectMsg`), kept for old peers: only to peers at or
    /// above protocol 70002, and the hash only for `block` and `tx` rejections. Returns whether
    /// it was sent.
    pub fn push_reject(
        &mut self,
        command: &str,
        code: crate::wire::RejectReason,
        reason: &str,
        hash: Option<[u8; 32]>,
    ) -> bool {
        let version = self.remote.as_ref().map_or(0, |r| r.version);
        if self.state != PeerState::Ready || version < REJECT_VERSION {
            return false;
        }
        let hash = match (command, hash) {
            ("block" | "tx", Some(h)) => bitcoin::hashes::sha256d::Hash::from_byte_array(h),
            _ => bitcoin::hashes::sha256d::Hash::all_zeros(),
        };
        self.send(Message::Reject(crate::wire::Reject {
            message: command.to_owned().into(),
            ccode: code,
            reason: reason.to_owned().into(),
            hash,
        }));
        true
    }
}

/// Records a locator request unless it repeats the last one (btcd's duplicate suppression).
fn is_new_request(
    last: &mut Option<([u8; 32], BlockHash)>,
    ready: bool,
    locator: &[BlockHash],
    stop: BlockHash,
) -> bool {
    let key = (locator.first().map(|h| h.to_byte_array()).unwrap_or_default(), stop);
    if !ready || *last == Some(key) {
        return false;
    }
    *last = Some(key);
    true
}

/// At most Core's 101 locator entries.
fn capped_locator(mut locator: Vec<BlockHash>) -> Vec<BlockHash> {
    locator.truncate(MAX_LOCATOR_SZ);
    locator
}
