//! The per-connection protocol state machine: handshake, feature negotiation, keep-alive,
//! timeouts and inbound limits. It does no I/O and never reads the clock: every input carries
//! `now`, and decisions come out as [`Action`]s for the actor to execute.
//!
//! This file holds the state, the dispatch of received messages and the timers; each role has
//! its own file: `handshake` (version/verack and negotiation), `keepalive` (ping/pong),
//! `gossip` (addresses and Core's rate limit), `filters` (BIP37), `fetch` (requests) and
//! `outgoing` (what the application may send).

mod blocks;
mod fetch;
mod filters;
mod gossip;
mod handshake;
mod keepalive;
mod outgoing;

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use serde::Serialize;
use tokio::time::Instant;

use self::gossip::AddrBudget;
pub use self::gossip::Advertise;
use super::bloom::BloomFilter;
use super::reason::{DisconnectReason, Misbehavior};
use super::relay::Relay;
use super::requests::{PeerRequests, RequestError, RequestEvent, RequestId, RequestTimeouts, Response};
use super::{Link, NonceSet, PeerState};
use crate::wire::limits::{
    MAX_HEADERS_RESULTS, MAX_INV_SZ, MAX_LOCATOR_SZ, MAX_NOTFOUND_PROCESSED, MIN_PEER_PROTO_VERSION,
    PROTOCOL_VERSION,
};
use crate::wire::version;
use crate::wire::{CodecError, GetBlocksMessage, GetHeadersMessage, Message, ServiceFlags};
use bitcoin::block::Header;
use bitcoin::BlockHash;

pub use self::gossip::MAX_KNOWN_ADDRS;
pub use self::outgoing::SendRefused;

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
    /// Answer transaction announcements with `getdata`, so `tx` messages arrive. A standalone
    /// peer requests every transaction it hears of (once per id); in a
    /// [`PeerGroup`](crate::group::PeerGroup) the group decides instead and asks one announcer
    /// per transaction for all its peers, as Core's `TxRequestTracker` does.
    pub request_announced_txs: bool,
    /// How long requests (headers, blocks) may wait for an answer.
    pub request_timeouts: RequestTimeouts,
    /// Our listening address, announced to an outbound peer once the handshake is done and
    /// then every 24 h on average (Core's `MaybeSendAddr`, `net_processing.cpp`). `None`: we
    /// announce nothing. A [`PeerGroup`](crate::group::PeerGroup) sets it, and updates it on
    /// live peers (`SetAdvertise`), while it listens and offers blocks
    /// (`NODE_NETWORK`), as an address is only worth spreading then.
    pub advertise: Option<Advertise>,
}

/// Ask each peer for addresses once after the handshake (Core does so on outbound links), so
/// the address book fills; the same default as `btcpeerd`'s `peer.getaddr`.
pub const DEFAULT_SEND_GETADDR: bool = true;
/// Request the transactions peers announce (`getdata`), so `TxReceived` arrives when `relay` is
/// on; the same default as `btcpeerd`'s `peer.request_transactions`.
pub const DEFAULT_REQUEST_ANNOUNCED_TXS: bool = true;

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
            send_getaddr: DEFAULT_SEND_GETADDR,
            request_announced_txs: DEFAULT_REQUEST_ANNOUNCED_TXS,
            request_timeouts: RequestTimeouts::default(),
            advertise: None,
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
    /// The transport the connection runs (v1 plaintext or BIP324 v2).
    pub transport: crate::peer::TransportVersion,
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
    pending_version: Option<(i64, i32, Option<SocketAddr>)>,
    closed: bool,
    ping: Option<(u64, Instant)>,
    next_ping_at: Option<Instant>,
    latency: Option<Duration>,
    requested_txs: RecentSet,
    /// A group decides which announced transactions to request (its `TxRequestTracker`):
    /// announcements are no longer answered here.
    txs_by_group: bool,
    relay: Relay,
    known_addrs: RecentSet,
    last_getheaders: Option<([u8; 32], BlockHash)>,
    last_getblocks: Option<([u8; 32], BlockHash)>,
    addr_budget: AddrBudget,
    dropped_frames: u64,
    requests: PeerRequests,
    bloom: Option<BloomFilter>,
    /// The address the peer says it sees us at (its `version`'s receiver).
    peer_sees_us: Option<IpAddr>,
    /// The peer's socket address, when known (for the family of our announcement).
    remote_addr: Option<SocketAddr>,
    /// When we next announce our own address (outbound peers, with `advertise`).
    next_self_announce: Option<Instant>,
    /// Unix time at [`connected`](Self::connected), for the timestamps of our announcements.
    unix_at_connect: i64,
    /// Whether the application loaded a BIP37 filter at the peer (`filterload` sent, no
    /// `filterclear` since): Core punishes a `filteradd` without one.
    filter_at_peer: bool,
    /// The network's proof-of-work limit (Core's `powLimit`), set by `with_network`.
    pow_limit: bitcoin::pow::Target,
    actions: VecDeque<Action>,
}

impl PeerMachine {
    /// A machine for a connection that has not started. Reads no clock: timers start with
    /// [`connected`](Self::connected).
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
            txs_by_group: false,
            relay: Relay::new(link),
            known_addrs: RecentSet::new(MAX_KNOWN_ADDRS),
            last_getheaders: None,
            last_getblocks: None,
            addr_budget: AddrBudget::new(),
            dropped_frames: 0,
            requests: PeerRequests::with_block_timeout(block_timeout),
            bloom: None,
            filter_at_peer: false,
            peer_sees_us: None,
            remote_addr: None,
            next_self_announce: None,
            unix_at_connect: 0,
            pow_limit: crate::wire::pow::any_network_pow_limit(),
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

    /// Frames dropped for bad checksum, invalid command, malformed payload or arriving out of order.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// A frame could not be decoded; it is dropped (as Core does: `ProcessMessages` catches the
    /// decoder's exception) but still counts as activity. The exception is a list count Core
    /// checks before reading the entries: that is punished as if the list had arrived.
    pub fn on_invalid_frame(&mut self, now: Instant, error: &CodecError) {
        if self.state == PeerState::Disconnected {
            return;
        }
        self.last_recv = Some(now);
        self.dropped_frames += 1;
        // Core parses nothing but negotiation before `verack` ("Unsupported message prior to
        // verack"), so the count only matters on a ready link.
        if let (CodecError::TooManyEntries { command, count, max }, PeerState::Ready) = (error, self.state) {
            let count = usize::try_from(*count).unwrap_or(usize::MAX);
            self.too_many(command, count, *max);
        }
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

    /// A `headers` message arrived; [`on_message`](Self::on_message) handles it next. When it
    /// is a full answer to the sync's request, the `getheaders` for the next batch is queued
    /// now, so that the caller can put it on the wire before the batch is checked (the peer
    /// sends the next batch meanwhile). Returns whether something was queued to send.
    pub fn on_headers_arriving(&mut self, now: Instant, headers: &[Header]) -> bool {
        if self.state != PeerState::Ready || self.closed {
            return false;
        }
        if !self.requests.headers_arriving(now, headers) {
            return false;
        }
        self.run_requests();
        true
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
        if let Some(verdict) = self.on_negotiation(now, msg).or_else(|| self.on_keepalive(now, msg)) {
            return verdict;
        }
        if self.state != PeerState::Ready {
            // Core acts on nothing else before the handshake completes. Unknown messages
            // (BIP434 `feature`, BIP330 `sendtxrcncl`) are legitimate there: not counted.
            if !matches!(msg, Message::Unknown { .. }) {
                self.dropped_frames += 1;
            }
            return Verdict::Consumed;
        }
        match msg {
            Message::FilterLoad(_) | Message::FilterAdd(_) | Message::FilterClear | Message::MemPool => {
                self.on_filter_message(msg)
            }
            Message::Addr(_) | Message::AddrV2(_) => self.on_addr_message(now, msg),
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
            Message::NotFound(items) if items.len() > MAX_NOTFOUND_PROCESSED => {
                self.dropped_frames += 1;
                Verdict::Consumed
            }
            Message::Headers(h) if h.len() > MAX_HEADERS_RESULTS => {
                self.too_many("headers", h.len(), MAX_HEADERS_RESULTS)
            }
            Message::Headers(h) => {
                // The tracker checks every `headers` message, answer or not, as Core's
                // `CheckHeadersPoW`: chaining and each header's bits and hash against the
                // network's limit; a failure comes back as misbehaviour.
                let took = self.requests.on_headers(now, h);
                // An answer to our own `getheaders` (or its prefetch) goes to the requester
                // only: typed subscribers see what the peer sent unsolicited.
                match self.run_requests_answering() {
                    (Verdict::Deliver, answered) if answered || took => Verdict::Consumed,
                    (verdict, _) => verdict,
                }
            }
            // Core disconnects (no discouragement) for an over-long locator (`ProcessMessage`,
            // GETBLOCKS and GETHEADERS: `locator.vHave.size() > MAX_LOCATOR_SZ`).
            Message::GetHeaders(GetHeadersMessage { locator_hashes, .. })
            | Message::GetBlocks(GetBlocksMessage { locator_hashes, .. })
                if locator_hashes.len() > MAX_LOCATOR_SZ =>
            {
                self.disconnect(DisconnectReason::Misbehaving(Misbehavior::LocatorTooLong {
                    command: msg.cmd().to_owned(),
                    count: locator_hashes.len(),
                    max: MAX_LOCATOR_SZ,
                }));
                Verdict::Consumed
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
                self.maybe_self_announce(now);
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
        self.requests.close(&reason);
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

    fn too_many(&mut self, command: &str, count: usize, max: usize) -> Verdict {
        self.misbehaving(Misbehavior::TooManyEntries { command: command.to_owned(), count, max })
    }

    fn misbehaving(&mut self, m: Misbehavior) -> Verdict {
        self.disconnect(DisconnectReason::Misbehaving(m));
        Verdict::Consumed
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

impl Drop for PeerMachine {
    fn drop(&mut self) {
        if let Some(n) = self.our_nonce.take() {
            self.nonces.release(n);
        }
    }
}

#[cfg(test)]
mod tests;
