//! The per-connection protocol state machine: handshake, feature negotiation, keep-alive,
//! timeouts and inbound limits. It does no I/O and never reads the clock: every input carries
//! `now`, and decisions come out as [`Action`]s for the actor to execute.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use super::bloom::{BloomError, BloomFilter};
use super::reason::{DisconnectReason, Misbehavior};
use super::relay::{Announcement, PeerView, Relay};
use super::requests::{
    PeerRequests, Request, RequestError, RequestEvent, RequestId, RequestTimeouts, Response,
};
use super::{Link, NonceSet, PeerState};
use crate::wire::limits::{
    BIP0031_VERSION, MAX_ADDR_TO_SEND, MAX_GETDATA_SZ, MAX_HEADERS_RESULTS, MAX_INV_SZ, MAX_LOCATOR_SZ,
    MAX_SUBVERSION_LENGTH, MIN_PEER_PROTO_VERSION, PROTOCOL_VERSION, REJECT_VERSION, SENDHEADERS_VERSION,
    WTXID_RELAY_VERSION,
};
use crate::wire::version::{self, LocalVersion};
use bitcoin::hashes::Hash as _;
use bitcoin::BlockHash;

use crate::wire::{
    AddrV2Message, CodecError, GetBlocksMessage, GetHeadersMessage, Inventory, Message, ServiceFlags,
};

/// Core's handshake window (`DEFAULT_PEER_CONNECT_TIMEOUT`, `net.h`): 60 s from connect.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Core's ping interval (`PING_INTERVAL`, `net_processing.cpp`): 2 min.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
/// Core drops a peer whose ping is unanswered for 20 min (`TIMEOUT_INTERVAL`, `net.h`).
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Core drops a peer silent for 20 min (`TIMEOUT_INTERVAL` in `InactivityCheck`).
pub const DEFAULT_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How many requested transaction ids we remember per peer so one announcement is fetched once;
/// Core tracks 5,000 announcements per peer (`MAX_PEER_TX_ANNOUNCEMENTS`).
pub const MAX_REQUESTED_TXS: usize = 5_000;

/// Address token bucket refill (`MAX_ADDR_RATE_PER_SECOND`, `net_processing.cpp`).
pub const MAX_ADDR_RATE_PER_SECOND: f64 = 0.1;
/// Address token bucket size (`MAX_ADDR_PROCESSING_TOKEN_BUCKET`, `net_processing.cpp`).
pub const MAX_ADDR_PROCESSING_TOKEN_BUCKET: f64 = 1_000.0;

/// Addresses remembered as known to the peer (Core's per-peer known-address filter: 5,000).
pub const MAX_KNOWN_ADDRS: usize = 5_000;

/// Protocol settings of one connection.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Protocol version we advertise.
    pub protocol_version: u32,
    /// Service bits we advertise.
    pub services: ServiceFlags,
    /// Our BIP14 user agent (at most 256 bytes).
    pub user_agent: String,
    /// Ask the peer to announce transactions to us.
    pub relay: bool,
    /// Peers below this protocol version are disconnected.
    pub min_peer_version: u32,
    /// Outbound peers must offer all of these service bits.
    pub required_services: ServiceFlags,
    /// Time from connect until the handshake must be complete.
    pub handshake_timeout: Duration,
    /// Time between our pings.
    pub ping_interval: Duration,
    /// Time a ping may stay unanswered.
    pub ping_timeout: Duration,
    /// Time without any received byte before we give up.
    pub inactivity_timeout: Duration,
    /// Send one `getaddr` when the handshake completes.
    pub send_getaddr: bool,
    /// Answer transaction announcements with `getdata`, so `tx` messages arrive.
    pub request_announced_txs: bool,
    /// How long requests (headers, blocks) may wait for an answer.
    pub request_timeouts: RequestTimeouts,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            protocol_version: PROTOCOL_VERSION,
            services: ServiceFlags::NONE,
            user_agent: version::user_agent(None),
            relay: true,
            min_peer_version: MIN_PEER_PROTO_VERSION,
            required_services: ServiceFlags::NONE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            send_getaddr: false,
            request_announced_txs: false,
            request_timeouts: RequestTimeouts::default(),
        }
    }
}

/// Compact-block mode the peer asked for (BIP152 `sendcmpct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CompactBlocks {
    /// The peer wants unsolicited `cmpctblock` announcements.
    pub high_bandwidth: bool,
    /// Compact-block version.
    pub version: u64,
}

/// What was negotiated with the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Features {
    /// Both sides sent `wtxidrelay` (BIP339): transactions are announced by wtxid.
    pub wtxid_relay: bool,
    /// The peer sent `sendaddrv2` (BIP155): it wants `addrv2`.
    pub addr_v2: bool,
    /// The peer sent `sendheaders` (BIP130): announce blocks to it with `headers`.
    pub send_headers: bool,
    /// The peer's `sendcmpct`, if any.
    pub compact_blocks: Option<CompactBlocks>,
    /// The peer's `feefilter` in sat/kvB, if any.
    pub fee_filter: Option<i64>,
}

/// What the peer told us in its `version`, plus negotiated features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// Who opened the connection.
    pub link: Link,
    /// The peer's protocol version.
    pub version: u32,
    /// The peer's service bits.
    pub services: u64,
    /// The peer's user agent.
    pub user_agent: String,
    /// The peer's best height when it connected.
    pub start_height: i32,
    /// Whether the peer wants transactions announced.
    pub relay: bool,
    /// Negotiated features.
    pub features: Features,
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Queue this message for the peer.
    Send(Message),
    /// The connection state changed.
    State(PeerState),
    /// The handshake completed.
    Ready(PeerInfo),
    /// Close the connection for this reason (always follows `State(Disconnected)`).
    Disconnect(DisconnectReason),
    /// A ping round trip was measured.
    Latency(Duration),
    /// A request started with [`PeerMachine::request`] finished.
    Answer(RequestId, Result<Response, RequestError>),
}

/// Whether a received message should reach typed subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ordinary traffic after the handshake: publish it.
    Deliver,
    /// An `addr`/`addrv2` over the peer's rate budget: publish only the first `n` entries.
    DeliverFirst(usize),
    /// Handshake/control traffic or dropped input: only the catch-all sees it.
    Consumed,
}

/// Bounded set of recently seen 32-byte ids, oldest evicted first.
#[derive(Debug)]
pub(crate) struct RecentSet {
    order: VecDeque<[u8; 32]>,
    set: HashSet<[u8; 32]>,
    cap: usize,
}

impl RecentSet {
    pub(crate) fn new(cap: usize) -> Self {
        RecentSet { order: VecDeque::new(), set: HashSet::new(), cap }
    }

    /// True if `id` is remembered.
    pub(crate) fn contains(&self, id: &[u8; 32]) -> bool {
        self.set.contains(id)
    }

    /// Inserts; returns false if already present.
    pub(crate) fn insert(&mut self, id: [u8; 32]) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct PeerMachine {
    config: MachineConfig,
    link: Link,
    state: PeerState,
    nonces: NonceSet,
    rng: StdRng,
    our_nonce: Option<u64>,
    connected_at: Option<Instant>,
    last_recv: Option<Instant>,
    remote: Option<PeerInfo>,
    sent_verack: bool,
    got_verack: bool,
    pending_version: Option<(i64, i32, Option<std::net::SocketAddr>)>,
    closed: bool,
    ping: Option<(u64, Instant)>,
    next_ping_at: Option<Instant>,
    latency: Option<Duration>,
    requested_txs: RecentSet,
    relay: Relay,
    known_addrs: RecentSet,
    last_getheaders: Option<([u8; 32], BlockHash)>,
    last_getblocks: Option<([u8; 32], BlockHash)>,
    addr_tokens: f64,
    addr_tokens_at: Instant,
    addr_rate_limited: u64,
    dropped_frames: u64,
    requests: PeerRequests,
    bloom: Option<BloomFilter>,
    actions: VecDeque<Action>,
}

impl PeerMachine {
    /// A machine for a connection that has not started.
    pub fn new(config: MachineConfig, link: Link, nonces: NonceSet, rng: StdRng) -> Self {
        let block_timeout = config.request_timeouts.block;
        PeerMachine {
            config,
            link,
            state: PeerState::Disconnected,
            nonces,
            rng,
            our_nonce: None,
            connected_at: None,
            last_recv: None,
            remote: None,
            sent_verack: false,
            got_verack: false,
            pending_version: None,
            closed: false,
            ping: None,
            next_ping_at: None,
            latency: None,
            requested_txs: RecentSet::new(MAX_REQUESTED_TXS),
            relay: Relay::new(link),
            known_addrs: RecentSet::new(MAX_KNOWN_ADDRS),
            last_getheaders: None,
            last_getblocks: None,
            addr_tokens: 1.0,
            addr_tokens_at: Instant::now(),
            addr_rate_limited: 0,
            dropped_frames: 0,
            requests: PeerRequests::with_block_timeout(block_timeout),
            bloom: None,
            actions: VecDeque::new(),
        }
    }

    /// Next action to execute, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Current state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// Direction of the link.
    pub fn link(&self) -> Link {
        self.link
    }

    /// The peer's version information, once received (features are live).
    pub fn peer_info(&self) -> Option<&PeerInfo> {
        self.remote.as_ref()
    }

    /// Last measured ping round trip.
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// Our nonce for this connection.
    pub fn nonce(&self) -> Option<u64> {
        self.our_nonce
    }

    /// Frames dropped for bad checksum, invalid command, malformed payload or arriving out of order.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// The dial has started.
    pub fn connecting(&mut self) {
        if self.state == PeerState::Disconnected && self.connected_at.is_none() {
            self.set_state(PeerState::Connecting);
        }
    }

    /// The byte stream is up: start the handshake. Outbound links speak first.
    pub fn connected(
        &mut self,
        now: Instant,
        unix_time: i64,
        start_height: i32,
        remote: Option<std::net::SocketAddr>,
    ) {
        if self.connected_at.is_some() {
            return;
        }
        self.connected_at = Some(now);
        self.last_recv = Some(now);
        self.addr_tokens_at = now;
        let rng = &mut self.rng;
        self.our_nonce = Some(self.nonces.issue(|| rng.gen()));
        self.set_state(PeerState::Handshaking);
        match self.link {
            Link::Outbound => self.send_version(unix_time, start_height, remote),
            // Inbound: we answer their version with ours (Core waits for the initiator).
            Link::Inbound => self.pending_version = Some((unix_time, start_height, remote)),
        }
    }

    fn send_version(&mut self, unix_time: i64, start_height: i32, remote: Option<std::net::SocketAddr>) {
        let local = LocalVersion {
            version: self.config.protocol_version,
            services: self.config.services,
            user_agent: self.config.user_agent.clone(),
            start_height,
            relay: self.config.relay,
            nonce: self.our_nonce.unwrap_or_default(),
            timestamp: unix_time,
        };
        self.send(Message::Version(version::build(&local, remote)));
    }

    /// A frame could not be decoded; it is dropped (as Core does) but still counts as activity.
    pub fn on_invalid_frame(&mut self, now: Instant, _error: &CodecError) {
        self.last_recv = Some(now);
        self.dropped_frames += 1;
    }

    /// Queues announcements for this peer: blocks go out at once, transactions with the next
    /// trickle (see [`super::relay`]).
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

    /// Queues transactions for announcement; to a peer that loaded a BIP37 filter only those
    /// the filter matches (updating it as Core does).
    pub fn queue_transactions(&mut self, now: Instant, txs: &[std::sync::Arc<bitcoin::Transaction>]) {
        for tx in txs {
            if let Some(filter) = self.bloom.as_mut() {
                if !filter.is_relevant_and_update(tx) {
                    continue;
                }
            }
            self.relay.queue(Announcement::Tx {
                txid: tx.compute_txid(),
                wtxid: tx.compute_wtxid(),
                fee_rate: None,
            });
        }
        self.flush_inventory(now);
    }

    /// True while the peer has a BIP37 filter loaded.
    pub fn has_bloom_filter(&self) -> bool {
        self.bloom.is_some()
    }

    /// When queued inventory is next due (for a precise timer; `tick` also flushes).
    pub fn next_inventory_due(&self) -> Option<Instant> {
        self.relay.next_due()
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

    /// Sends addresses (btcd's `PushAddrMsg`): entries the peer already knows are skipped, at most
    /// 1,000 go out (a random subset when there are more, without duplicates), as `addrv2` when
    /// the peer asked for it and as `addr` (IPv4/IPv6 only) otherwise. Returns how many were sent.
    pub fn push_addr(&mut self, addrs: &[AddrV2Message]) -> usize {
        if self.state != PeerState::Ready {
            return 0;
        }
        let v2 = self.remote.as_ref().is_some_and(|r| r.features.addr_v2);
        let mut seen = HashSet::new();
        let fresh: Vec<&AddrV2Message> = addrs
            .iter()
            .filter(|a| v2 || crate::wire::addr_ip(&a.addr).is_some())
            .filter(|a| {
                let key = crate::wire::addr_key(a);
                !self.known_addrs.contains(&key) && seen.insert(key)
            })
            .collect();
        let chosen: Vec<&AddrV2Message> = if fresh.len() > MAX_ADDR_TO_SEND {
            rand::seq::index::sample(&mut self.rng, fresh.len(), MAX_ADDR_TO_SEND)
                .into_iter()
                .map(|i| fresh[i])
                .collect()
        } else {
            fresh
        };
        for a in &chosen {
            self.known_addrs.insert(crate::wire::addr_key(a));
        }
        let n = chosen.len();
        if n == 0 {
            return 0;
        }
        if v2 {
            self.send(Message::AddrV2(chosen.into_iter().cloned().collect()));
        } else {
            self.send(Message::Addr(chosen.into_iter().filter_map(crate::wire::addr_v2_to_v1).collect()));
        }
        n
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

    /// Starts a request; the answer comes later as [`Action::Answer`] with the returned id. The
    /// timeout scales with the peer's measured latency ([`RequestTimeouts`]).
    pub fn request(&mut self, now: Instant, request: Request) -> Result<RequestId, RequestError> {
        if self.state != PeerState::Ready || self.closed {
            return Err(RequestError::NotReady);
        }
        if matches!(request, Request::FilteredBlocks { .. }) {
            let services = self.remote.as_ref().map_or(0, |r| r.services);
            if !ServiceFlags::from(services).has(ServiceFlags::BLOOM) {
                // Core disconnects a peer asking for filtered blocks without NODE_BLOOM.
                return Err(RequestError::Unsupported { service: "NODE_BLOOM".into() });
            }
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
    pub fn on_requested_block(&mut self, now: Instant, block: std::sync::Arc<bitcoin::Block>) {
        if self.closed {
            return;
        }
        self.requests.on_block(now, block);
        self.run_requests();
    }

    /// Turns request events into actions. `Consumed` when the peer was dropped for them.
    fn run_requests(&mut self) -> Verdict {
        let mut verdict = Verdict::Deliver;
        while let Some(event) = self.requests.poll_event() {
            match event {
                RequestEvent::SendGetHeaders { locator, stop } => {
                    self.send(Message::GetHeaders(GetHeadersMessage::new(locator, stop)))
                }
                RequestEvent::SendGetData(hashes) => {
                    let witness = self
                        .remote
                        .as_ref()
                        .is_some_and(|r| ServiceFlags::from(r.services).has(ServiceFlags::WITNESS));
                    let items = hashes
                        .into_iter()
                        .map(|h| if witness { Inventory::WitnessBlock(h) } else { Inventory::Block(h) })
                        .collect();
                    self.send(Message::GetData(items));
                }
                RequestEvent::SendGetFiltered(hashes) => {
                    let items = hashes
                        .into_iter()
                        .map(|h| Inventory::Unknown {
                            inv_type: super::requests::MSG_FILTERED_BLOCK,
                            hash: h.to_byte_array(),
                        })
                        .collect();
                    self.send(Message::GetData(items));
                }
                RequestEvent::Done(id, result) => self.actions.push_back(Action::Answer(id, result)),
                RequestEvent::Misbehaved(reason) => {
                    verdict = self.misbehaving(Misbehavior::InvalidData { reason });
                }
                RequestEvent::Stalled { after } => {
                    self.disconnect(DisconnectReason::Stalled { after });
                    verdict = Verdict::Consumed;
                }
            }
        }
        verdict
    }

    /// Checks a message the application wants to send. Handshake messages are the machine's
    /// own; transactions go only to peers that asked for them; lists stay within Core's limits.
    pub fn check_send(&self, msg: &Message) -> Result<(), String> {
        let too_long =
            |n: usize, max: usize| (n > max).then(|| format!("{} with {n} entries exceeds {max}", msg.cmd()));
        let refusal = match msg {
            Message::Version(_) | Message::Verack | Message::WtxidRelay | Message::SendAddrV2 => {
                Some(format!("{} is sent by the handshake itself", msg.cmd()))
            }
            Message::GetData(items)
                if items.iter().any(|i| {
                    matches!(i, Inventory::Unknown { inv_type: super::requests::MSG_FILTERED_BLOCK, .. })
                }) =>
            {
                // Its answer could not be told from an unsolicited merkleblock (misbehaviour).
                Some("ask for filtered blocks with Fetch(Request::FilteredBlocks)".into())
            }
            Message::Inv(items) | Message::GetData(items) | Message::NotFound(items) => {
                too_long(items.len(), MAX_INV_SZ).or_else(|| {
                    let announces_tx = matches!(msg, Message::Inv(_))
                        && items.iter().any(|i| {
                            matches!(
                                i,
                                Inventory::Transaction(_)
                                    | Inventory::WTx(_)
                                    | Inventory::WitnessTransaction(_)
                            )
                        });
                    (announces_tx && !self.peer_wants_txs())
                        .then(|| "the peer asked not to get transactions (relay=0)".into())
                })
            }
            Message::Tx(_) if !self.peer_wants_txs() => {
                Some("the peer asked not to get transactions (relay=0)".into())
            }
            Message::Headers(h) => too_long(h.len(), MAX_HEADERS_RESULTS),
            Message::Addr(a) => too_long(a.len(), MAX_ADDR_TO_SEND),
            Message::AddrV2(a) => too_long(a.len(), MAX_ADDR_TO_SEND),
            _ => None,
        };
        refusal.map_or(Ok(()), Err)
    }

    fn peer_wants_txs(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.relay)
    }

    /// The byte stream failed for good: decide why the link ends.
    pub fn on_stream_error(&mut self, error: &CodecError) {
        let reason = match error {
            CodecError::BadMagic { .. } => DisconnectReason::WrongNetwork,
            // Nothing honest sends a frame Core itself would refuse.
            CodecError::Oversized { command, len, .. } => {
                DisconnectReason::Misbehaving(Misbehavior::Oversized {
                    command: (*command).to_owned(),
                    len: *len,
                })
            }
            other => DisconnectReason::Io { error: other.to_string() },
        };
        self.disconnect(reason);
    }

    /// A message arrived.
    pub fn on_message(&mut self, now: Instant, msg: &Message) -> Verdict {
        if self.state == PeerState::Disconnected {
            return Verdict::Consumed;
        }
        self.last_recv = Some(now);
        if let Message::Version(v) = msg {
            self.on_version(v);
            return Verdict::Consumed;
        }
        if self.remote.is_none() {
            // Core ignores everything before `version`.
            self.dropped_frames += 1;
            return Verdict::Consumed;
        }
        match msg {
            Message::Verack => {
                if !self.got_verack {
                    self.got_verack = true;
                    self.maybe_ready(now);
                }
                Verdict::Consumed
            }
            Message::WtxidRelay => {
                if self.got_verack {
                    return self
                        .misbehaving(Misbehavior::NegotiationAfterVerack { command: "wtxidrelay".into() });
                }
                let their_version = self.remote.as_ref().map_or(0, |r| r.version);
                if their_version >= WTXID_RELAY_VERSION && self.config.protocol_version >= WTXID_RELAY_VERSION
                {
                    self.features_mut().wtxid_relay = true;
                }
                Verdict::Consumed
            }
            Message::SendAddrV2 => {
                if self.got_verack {
                    return self
                        .misbehaving(Misbehavior::NegotiationAfterVerack { command: "sendaddrv2".into() });
                }
                self.features_mut().addr_v2 = true;
                Verdict::Consumed
            }
            Message::SendHeaders => {
                self.features_mut().send_headers = true;
                Verdict::Consumed
            }
            Message::SendCmpct(c) => {
                self.features_mut().compact_blocks =
                    Some(CompactBlocks { high_bandwidth: c.send_compact, version: c.version });
                Verdict::Consumed
            }
            Message::FeeFilter(rate) => {
                self.features_mut().fee_filter = Some(*rate);
                Verdict::Consumed
            }
            Message::Ping(nonce) => {
                self.send(Message::Pong(*nonce));
                Verdict::Consumed
            }
            Message::Pong(nonce) => {
                self.on_pong(now, *nonce);
                Verdict::Consumed
            }
            _ if self.state != PeerState::Ready => {
                // Core acts on nothing else before the handshake completes. Unknown messages
                // (BIP434 `feature`, BIP330 `sendtxrcncl`) are legitimate there: not counted.
                if !matches!(msg, Message::Unknown { .. }) {
                    self.dropped_frames += 1;
                }
                Verdict::Consumed
            }
            Message::FilterLoad(_) | Message::FilterAdd(_) | Message::FilterClear | Message::MemPool
                if !self.config.services.has(ServiceFlags::BLOOM) =>
            {
                self.misbehaving(Misbehavior::BloomNotOffered { command: msg.cmd().to_owned() })
            }
            Message::FilterLoad(load) => match BloomFilter::load(load) {
                Ok(filter) => {
                    self.bloom = Some(filter);
                    // Core: a loaded filter turns transaction relay on (`m_relay_txs`).
                    if let Some(r) = self.remote.as_mut() {
                        r.relay = true;
                    }
                    Verdict::Deliver
                }
                Err(e) => self.misbehaving(Misbehavior::InvalidData { reason: e.to_string() }),
            },
            Message::FilterAdd(add) => {
                let result = match self.bloom.as_mut() {
                    Some(filter) => filter.add(&add.data),
                    None => Err(BloomError::NoFilter),
                };
                match result {
                    Ok(()) => Verdict::Deliver,
                    Err(e) => self.misbehaving(Misbehavior::InvalidData { reason: e.to_string() }),
                }
            }
            Message::FilterClear => {
                self.bloom = None;
                if let Some(r) = self.remote.as_mut() {
                    r.relay = true;
                }
                Verdict::Deliver
            }
            Message::Inv(items) => {
                if items.len() > MAX_INV_SZ {
                    return self.too_many("inv", items.len(), MAX_INV_SZ);
                }
                for item in items {
                    self.relay.mark_known(item);
                }
                self.request_transactions(items);
                Verdict::Deliver
            }
            Message::GetData(items) if items.len() > MAX_INV_SZ => {
                self.too_many("getdata", items.len(), MAX_INV_SZ)
            }
            // Core ignores the contents of an oversized `notfound` rather than punishing it.
            Message::NotFound(items) if items.len() > MAX_INV_SZ => {
                self.dropped_frames += 1;
                Verdict::Consumed
            }
            Message::Headers(h) if h.len() > MAX_HEADERS_RESULTS => {
                self.too_many("headers", h.len(), MAX_HEADERS_RESULTS)
            }
            Message::Headers(h) => {
                self.requests.on_headers(h);
                self.run_requests()
            }
            Message::NotFound(items) => {
                self.requests.on_notfound(now, items);
                self.run_requests()
            }
            Message::MerkleBlock(mb) => {
                self.requests.on_merkleblock(now, mb);
                self.run_requests()
            }
            Message::Tx(tx) => {
                if self.requests.on_tx(now, tx) {
                    return self.run_requests();
                }
                Verdict::Deliver
            }
            Message::Addr(a) if a.len() > MAX_ADDR_TO_SEND => {
                self.too_many("addr", a.len(), MAX_ADDR_TO_SEND)
            }
            Message::AddrV2(a) if a.len() > MAX_ADDR_TO_SEND => {
                self.too_many("addrv2", a.len(), MAX_ADDR_TO_SEND)
            }
            Message::Addr(a) => {
                for (time, entry) in a {
                    self.known_addrs.insert(crate::wire::addr_key(&crate::wire::addr_v1_to_v2(*time, entry)));
                }
                self.rate_limit_addrs(now, a.len())
            }
            Message::AddrV2(a) => {
                for entry in a {
                    self.known_addrs.insert(crate::wire::addr_key(entry));
                }
                self.rate_limit_addrs(now, a.len())
            }
            _ => Verdict::Deliver,
        }
    }

    /// A `block` arrived (kept raw by the codec; the machine only needs to know that it came).
    pub fn on_block(&mut self, now: Instant) -> Verdict {
        if self.state == PeerState::Disconnected {
            return Verdict::Consumed;
        }
        self.last_recv = Some(now);
        if self.state != PeerState::Ready {
            // Core acts on nothing but negotiation before the handshake completes.
            self.dropped_frames += 1;
            return Verdict::Consumed;
        }
        Verdict::Deliver
    }

    /// Core's address token bucket (`ProcessAddrs`): refills 0.1 per second up to 1,000, plus
    /// 1,000 when we send `getaddr`; addresses beyond the budget are dropped, not punished.
    fn rate_limit_addrs(&mut self, now: Instant, count: usize) -> Verdict {
        let elapsed = now.saturating_duration_since(self.addr_tokens_at).as_secs_f64();
        self.addr_tokens_at = now;
        if self.addr_tokens < MAX_ADDR_PROCESSING_TOKEN_BUCKET {
            self.addr_tokens =
                (self.addr_tokens + elapsed * MAX_ADDR_RATE_PER_SECOND).min(MAX_ADDR_PROCESSING_TOKEN_BUCKET);
        }
        // Whole tokens only; the budget is at most a few thousand, so the cast is exact.
        let allowed = (self.addr_tokens.floor() as usize).min(count);
        self.addr_tokens -= allowed as f64;
        let limited = count - allowed;
        self.addr_rate_limited += limited as u64;
        match (allowed, limited) {
            (_, 0) => Verdict::Deliver,
            (0, _) => Verdict::Consumed,
            (n, _) => Verdict::DeliverFirst(n),
        }
    }

    /// Addresses dropped by the rate limit so far (Core's `addr_rate_limited`).
    pub fn addr_rate_limited(&self) -> u64 {
        self.addr_rate_limited
    }

    fn on_version(&mut self, v: &crate::wire::VersionMessage) {
        if self.remote.is_some() {
            // Core ignores a second version.
            self.dropped_frames += 1;
            return;
        }
        if v.user_agent.len() > MAX_SUBVERSION_LENGTH {
            self.misbehaving(Misbehavior::UserAgentTooLong { len: v.user_agent.len() });
            return;
        }
        if v.version < self.config.min_peer_version {
            self.disconnect(DisconnectReason::ObsoleteVersion {
                version: v.version,
                min: self.config.min_peer_version,
            });
            return;
        }
        if self.link == Link::Outbound && !v.services.has(self.config.required_services) {
            self.disconnect(DisconnectReason::MissingServices {
                offered: v.services.to_u64(),
                required: self.config.required_services.to_u64(),
            });
            return;
        }
        if self.link == Link::Inbound && self.nonces.contains(v.nonce) {
            self.disconnect(DisconnectReason::SelfConnection);
            return;
        }
        self.remote = Some(PeerInfo {
            link: self.link,
            version: v.version,
            services: v.services.to_u64(),
            user_agent: v.user_agent.clone(),
            start_height: v.start_height,
            relay: v.relay,
            features: Features::default(),
        });
        if self.link == Link::Inbound {
            if let Some((unix_time, height, remote)) = self.pending_version.take() {
                self.send_version(unix_time, height, remote);
            }
        }
        // Feature negotiation goes between version and verack (peer-etiquette.md §2.3).
        if v.version >= WTXID_RELAY_VERSION && self.config.protocol_version >= WTXID_RELAY_VERSION {
            self.send(Message::WtxidRelay);
            self.send(Message::SendAddrV2);
        }
        self.send(Message::Verack);
        self.sent_verack = true;
    }

    fn maybe_ready(&mut self, now: Instant) {
        if !(self.sent_verack && self.got_verack) || self.state != PeerState::Handshaking {
            return;
        }
        let Some(remote) = self.remote.clone() else { return };
        self.set_state(PeerState::Ready);
        self.actions.push_back(Action::Ready(remote.clone()));
        if remote.version >= SENDHEADERS_VERSION {
            self.send(Message::SendHeaders);
        }
        // Core answers getaddr only on links we opened (peer-etiquette §5.3).
        if self.config.send_getaddr && self.link == Link::Outbound {
            self.send(Message::GetAddr);
            self.addr_tokens += MAX_ADDR_PROCESSING_TOKEN_BUCKET;
        }
        self.next_ping_at = Some(now);
        self.maybe_ping(now);
    }

    fn on_pong(&mut self, now: Instant, nonce: u64) {
        let Some((expected, sent)) = self.ping else { return };
        if nonce == expected {
            let latency = now.saturating_duration_since(sent);
            self.latency = Some(latency);
            self.actions.push_back(Action::Latency(latency));
            self.ping = None;
            self.next_ping_at = Some(sent + self.config.ping_interval);
        } else if nonce == 0 {
            // Core: a zero nonce cancels the outstanding ping.
            self.ping = None;
            self.next_ping_at = Some(sent + self.config.ping_interval);
        }
    }

    fn maybe_ping(&mut self, now: Instant) {
        let peer_version = self.remote.as_ref().map_or(0, |r| r.version);
        if self.state != PeerState::Ready || self.ping.is_some() || peer_version <= BIP0031_VERSION {
            return;
        }
        if self.next_ping_at.is_some_and(|at| now >= at) {
            let nonce = loop {
                let n: u64 = self.rng.gen();
                if n != 0 {
                    break n;
                }
            };
            self.ping = Some((nonce, now));
            self.send(Message::Ping(nonce));
        }
    }

    /// Periodic check of timers; call about once a second.
    pub fn tick(&mut self, now: Instant) {
        let (Some(connected_at), Some(last_recv)) = (self.connected_at, self.last_recv) else { return };
        match self.state {
            PeerState::Handshaking => {
                if now.saturating_duration_since(connected_at) >= self.config.handshake_timeout {
                    self.disconnect(DisconnectReason::HandshakeTimeout {
                        after: self.config.handshake_timeout,
                    });
                }
            }
            PeerState::Ready => {
                self.requests.tick(now);
                if self.run_requests() == Verdict::Consumed {
                    return;
                }
                if let Some((_, sent)) = self.ping {
                    if now.saturating_duration_since(sent) >= self.config.ping_timeout {
                        self.disconnect(DisconnectReason::PingTimeout { after: self.config.ping_timeout });
                        return;
                    }
                }
                if now.saturating_duration_since(last_recv) >= self.config.inactivity_timeout {
                    self.disconnect(DisconnectReason::InactivityTimeout {
                        after: self.config.inactivity_timeout,
                    });
                    return;
                }
                self.maybe_ping(now);
                self.flush_inventory(now);
            }
            PeerState::Connecting | PeerState::Disconnected => {}
        }
    }

    /// Ends the connection (idempotent): emits `State(Disconnected)` then `Disconnect(reason)`.
    pub fn disconnect(&mut self, reason: DisconnectReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(n) = self.our_nonce.take() {
            self.nonces.release(n);
        }
        self.set_state(PeerState::Disconnected);
        self.requests.close(&reason.to_string());
        while let Some(event) = self.requests.poll_event() {
            if let RequestEvent::Done(id, result) = event {
                self.actions.push_back(Action::Answer(id, result));
            }
        }
        self.actions.push_back(Action::Disconnect(reason));
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn request_transactions(&mut self, items: &[Inventory]) {
        if !(self.config.request_announced_txs && self.config.relay) {
            return;
        }
        let witness =
            self.remote.as_ref().is_some_and(|r| ServiceFlags::from(r.services).has(ServiceFlags::WITNESS));
        let mut wanted = Vec::new();
        for item in items {
            let request = match item {
                Inventory::Transaction(txid) | Inventory::WitnessTransaction(txid) => {
                    use bitcoin::hashes::Hash;
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
                    use bitcoin::hashes::Hash;
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

    fn too_many(&mut self, command: &str, count: usize, max: usize) -> Verdict {
        self.misbehaving(Misbehavior::TooManyEntries { command: command.to_owned(), count, max })
    }

    fn misbehaving(&mut self, m: Misbehavior) -> Verdict {
        self.disconnect(DisconnectReason::Misbehaving(m));
        Verdict::Consumed
    }

    fn features_mut(&mut self) -> &mut Features {
        // Only called once `remote` is set (checked by `on_message`).
        &mut self.remote.as_mut().expect("features are negotiated after version").features
    }

    fn send(&mut self, msg: Message) {
        self.actions.push_back(Action::Send(msg));
    }

    fn set_state(&mut self, state: PeerState) {
        if self.state != state {
            self.state = state;
            self.actions.push_back(Action::State(state));
        }
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

impl Drop for PeerMachine {
    fn drop(&mut self) {
        if let Some(n) = self.our_nonce.take() {
            self.nonces.release(n);
        }
    }
}

#[cfg(test)]
mod tests;
