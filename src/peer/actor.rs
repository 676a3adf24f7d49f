//! `PeerActor`: the thin actix shell around [`PeerMachine`]. It dials, moves bytes, keeps the
//! timer, counts statistics and executes the machine's actions; protocol decisions live in the
//! machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures_util::future::{self, FutureExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use super::dial::{self, BoxStream, PeerStream};
use super::machine::{Action, PeerMachine, SendRefused, Verdict};
use super::messages::{
    Disconnect, FetchFromPeer, GetStats, HandTxRequestsToGroup, PushAddr, PushGetBlocks, PushGetHeaders,
    PushReject, QueueInventory, QueueTransactions, SendMessage, SubscribeAs, SubscribePeer, TxsNotFound,
    UnsubscribePeer, WriterReport,
};
use super::outbound::{self, OutboundBudget, SendError, WriteCmd, WriteEvent};
use super::reason::DisconnectReason;
use super::requests::{RequestError, RequestId, Response};
use super::stats::{PeerStats, StatsRecorder};
use super::transport::{
    Encoded, Inbound, Ready, Start, TransportDecoder, TransportEncoder, TransportError, TransportVersion,
    V2Error,
};
use super::{Link, PeerAddr, PeerId, PeerState};
use crate::events::{Gate, Gated, Subscribers};
#[cfg(feature = "metrics")]
use crate::metrics::Metrics;
use crate::wire::{self, Codec, CodecError, Frame, Message, Payload};

/// Most garbage we send after our key when we open a v2 connection. Core sends up to 4,095
/// bytes (`net.cpp` `V2Transport` constructor, `MAX_GARBAGE_LEN`); we keep the initiator's
/// short because a v1-only peer parses it as 24-byte headers and some score each bad one
/// (bcoin: +10 per header, a ban at 100), which would spoil the v1 retry.
const MAX_INITIATOR_GARBAGE: usize = 120;

mod handlers;
mod transport;

pub use super::config::{PeerConfig, TipHeight};

/// Without the `metrics` feature nothing is counted; this stand-in keeps the call sites alike.
#[cfg(not(feature = "metrics"))]
struct Metrics;

#[cfg(not(feature = "metrics"))]
#[allow(dead_code)]
impl Metrics {
    fn dial(&self, _: bool) {}
    fn ping(&self, _: Duration) {}
    fn handshake_over(&self, _: Link, _: &str, _: Duration) {}
    fn v2_fallback(&self) {}
    fn message(&self, _: bool, _: &str, _: usize) {}
    fn disconnect(&self, _: Link, _: &DisconnectReason) {}
}

/// How often the actor feeds the clock to its machine. Timeouts are in seconds to minutes, so
/// one tick a second is precise enough and cheap.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);

/// One peer connection as an actor.
///
/// ```no_run
/// use actix::Actor;
/// use btcpeer::events::{Subscribers, Subscription};
/// use btcpeer::peer::{PeerActor, PeerConfig};
///
/// # fn demo(inv: actix::Recipient<btcpeer::events::InvReceived>) {
/// let mut subs = Subscribers::new();
/// subs.add(Subscription::Inv(inv));
/// let cfg = PeerConfig::new(btcpeer::Network::Regtest);
/// let peer = PeerActor::outbound(cfg, "127.0.0.1:18444".parse().unwrap(), subs).start();
/// # }
/// ```
pub struct PeerActor {
    id: PeerId,
    addr: PeerAddr,
    config: PeerConfig,
    machine: PeerMachine,
    subscribers: Subscribers,
    /// Pauses the socket reader while a lossless subscriber's budget is full.
    gate: Gate,
    stats: StatsRecorder,
    budget: OutboundBudget,
    writer: Option<(mpsc::UnboundedSender<WriteCmd>, tokio::task::JoinHandle<()>)>,
    stream: Option<(BoxStream, Option<SocketAddr>)>,
    /// How the next stream starts (v1, v2 initiator, or inbound detection).
    start: Start,
    /// The writing half of the transport.
    encoder: TransportEncoder,
    /// The reader's stream, cancelled when a v2 attempt is retried with v1.
    reader: Option<SpawnHandle>,
    /// Set once the transport is settled.
    transport: Option<TransportVersion>,
    /// BIP324 session id (v2 only).
    session_id: Option<[u8; 32]>,
    /// Handshake bytes received while the transport settles (Core reconnects with v1 only when
    /// nothing came back).
    settle_received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The v2 attempt was already retried with v1.
    fell_back: bool,
    /// Number of the current stream's reader and writer (a replaced one's items are ignored).
    writer_gen: u64,
    span: tracing::Span,
    connected_at: Option<Instant>,
    trickle_timer: Option<SpawnHandle>,
    answers: HashMap<RequestId, oneshot::Sender<Result<Response, RequestError>>>,
    /// The group deciding our transaction requests, told of `notfound`s for transactions.
    tx_notfound: Option<Recipient<TxsNotFound>>,
    /// The stream is a WebSocket (the v1 byte stream in binary frames): `transport` is `ws`.
    websocket: bool,
}

impl PeerActor {
    /// A peer that dials `addr` when started.
    pub fn outbound(config: PeerConfig, addr: PeerAddr, subscribers: Subscribers) -> Self {
        // Whether the address is remembered v1-only is read again when the stream is up (the
        // group may load that memory after it created this actor).
        let v2 = config.v2_transport && (config.v2_only || !config.v1_only.contains(&addr));
        let mut actor = Self::build(config, addr, Link::Outbound, None, subscribers);
        if v2 {
            actor.start = Start::V2Initiator;
            actor.encoder = TransportEncoder::Settling(Vec::new());
            actor.transport = None;
        }
        actor
    }

    /// A peer over an accepted inbound stream.
    pub fn inbound(
        config: PeerConfig,
        remote: SocketAddr,
        stream: impl PeerStream,
        subscribers: Subscribers,
    ) -> Self {
        Self::build(
            config,
            PeerAddr::Ip(remote),
            Link::Inbound,
            Some((Box::pin(stream), Some(remote))),
            subscribers,
        )
    }

    /// A peer over an already-open stream (any direction); used with `tokio::io::duplex` in tests
    /// and for streams opened by other means.
    pub fn with_stream(
        config: PeerConfig,
        addr: PeerAddr,
        link: Link,
        stream: impl PeerStream,
        subscribers: Subscribers,
    ) -> Self {
        let remote = addr.socket_addr();
        Self::build(config, addr, link, Some((Box::pin(stream), remote)), subscribers)
    }

    fn build(
        config: PeerConfig,
        addr: PeerAddr,
        link: Link,
        stream: Option<(BoxStream, Option<SocketAddr>)>,
        subscribers: Subscribers,
    ) -> Self {
        let id = PeerId::next();
        // Inbound links detect v1/v2 from their first bytes when v2 is on; outbound ones start
        // v1 unless `outbound` chose v2 (streams handed in by the caller stay v1).
        let start = match (config.v2_transport && link == Link::Inbound, config.v2_only) {
            (true, false) => Start::Detect,
            (true, true) => Start::DetectV2Only,
            (false, _) => Start::V1,
        };
        let codec = Codec::new(config.network.magic());
        let encoder = match start {
            Start::V1 => TransportEncoder::V1(codec),
            _ => TransportEncoder::Settling(Vec::new()),
        };
        let mut machine_config = config.machine.clone();
        if config.v2_transport {
            // Core advertises NODE_P2P_V2 whenever `-v2transport` is on (`init.cpp`,
            // `g_local_services |= NODE_P2P_V2`).
            machine_config.services |= wire::ServiceFlags::P2P_V2;
        }
        let machine = PeerMachine::new(machine_config, link, config.nonces.clone(), StdRng::from_entropy())
            .with_network(config.network)
            .with_inbound_trickle(config.inbound_trickle.clone());
        let span = tracing::info_span!("peer", id = id.0, peer = %addr, link = ?link);
        PeerActor {
            id,
            start,
            encoder,
            reader: None,
            transport: (start == Start::V1).then_some(TransportVersion::V1),
            session_id: None,
            settle_received: Default::default(),
            fell_back: false,
            writer_gen: 0,
            budget: OutboundBudget::new(config.max_send_queue_bytes),
            addr,
            config,
            machine,
            subscribers,
            gate: Gate::default(),
            stats: StatsRecorder::default(),
            writer: None,
            stream,
            span,
            connected_at: None,
            trickle_timer: None,
            answers: HashMap::new(),
            tx_notfound: None,
            websocket: false,
        }
    }

    /// The stream is a WebSocket carrying the v1 byte stream (bitcoin-net's browser transport):
    /// no v2 detection, and stats, events and metrics name the transport `ws`.
    pub(crate) fn over_websocket(mut self) -> Self {
        self.websocket = true;
        self.start = Start::V1;
        self.encoder = TransportEncoder::V1(Codec::new(self.config.network.magic()));
        self.transport = Some(TransportVersion::V1);
        self
    }

    /// The transport's name in stats, events and metrics: `v1`, `v2` or `ws`.
    fn transport_name(&self) -> &'static str {
        self.transport_version().as_str()
    }

    fn transport_version(&self) -> TransportVersion {
        match self.transport {
            _ if self.websocket => TransportVersion::Ws,
            Some(t) => t,
            None => TransportVersion::V1,
        }
    }

    /// This connection's id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// A timer for the next trickle, so announcements leave on time rather than on the next tick.
    fn arm_trickle(&mut self, ctx: &mut Context<Self>) {
        if self.trickle_timer.is_some() {
            return;
        }
        let now = Instant::now();
        let Some(due) = self.machine.next_inventory_due(now) else { return };
        let wait = due.saturating_duration_since(now);
        self.trickle_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.trickle_timer = None;
            act.machine.flush_inventory(Instant::now());
            act.run_actions(ctx);
            act.arm_trickle(ctx);
        }));
    }

    #[cfg(feature = "metrics")]
    fn count(&self, f: impl FnOnce(&Metrics)) {
        if let Some(m) = &self.config.metrics {
            f(m);
        }
    }

    #[cfg(not(feature = "metrics"))]
    fn count(&self, _f: impl FnOnce(&Metrics)) {}

    fn dial(&mut self, ctx: &mut Context<Self>) {
        self.machine.connecting();
        self.run_actions(ctx);
        self.open(false, ctx);
    }

    /// Dials; `retry` is the at-once v1 retry of a v2 attempt (the machine is already
    /// handshaking and keeps its 60 s deadline).
    fn open(&mut self, retry: bool, ctx: &mut Context<Self>) {
        let target = self.addr.clone();
        let proxy = self.config.proxy.clone();
        let timeout = self.config.connect_timeout;
        let fut = async move { dial::dial(&target, proxy.as_ref(), timeout).await };
        // spawn, not wait: the mailbox (Disconnect, GetStats) stays live while dialing.
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok((stream, remote)) if retry => act.attach_stream(stream, remote, ctx),
            Ok((stream, remote)) => {
                act.count(|m| m.dial(true));
                act.attach(stream, remote, ctx)
            }
            Err(e) => {
                act.count(|m| m.dial(false));
                act.machine.disconnect(DisconnectReason::ConnectFailed { error: e.to_string() });
                act.run_actions(ctx);
            }
        }));
    }

    fn attach(&mut self, stream: BoxStream, remote: Option<SocketAddr>, ctx: &mut Context<Self>) {
        self.attach_stream(stream, remote, ctx);
        self.stats.connected(SystemTime::now());
        self.connected_at = Some(Instant::now());
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        self.machine.connected(Instant::now(), unix, self.config.tip.get(), remote);
        self.run_actions(ctx);
    }

    /// Encodes and queues a frame; `done` is answered when it is written.
    fn enqueue(
        &mut self,
        msg: &Message,
        done: Option<oneshot::Sender<Result<(), SendError>>>,
    ) -> Result<(), SendError> {
        if self.writer.is_none() && !matches!(self.encoder, TransportEncoder::Settling(_)) {
            return Err(SendError::Disconnected);
        }
        // While the transport settles (v2 handshake, v1 retry) the machine's first messages wait.
        // The size limit is the v1 frame's on both transports, checked before v2 encrypts (a
        // packet encrypted and then dropped would desynchronise the session).
        let max = wire::limits::HEADER_SIZE + wire::limits::MAX_PROTOCOL_MESSAGE_LENGTH;
        let bytes = match self.encoder.encode(msg, max) {
            Encoded::Queued => return Ok(()),
            Encoded::TooLarge(len) => {
                return Err(SendError::Refused(SendRefused::TooLarge {
                    command: wire::message_command(msg).to_owned(),
                    len,
                    max,
                }))
            }
            Encoded::Bytes(bytes) => bytes,
        };
        let Some((writer, _)) = &self.writer else { return Err(SendError::Disconnected) };
        self.budget.try_reserve(bytes.len())?;
        let command = wire::message_command(msg);
        {
            let _g = self.span.enter();
            let v2 = matches!(self.encoder, TransportEncoder::V2(..));
            if v2 && super::trace::enabled() {
                // The dump shows the v1 frame, not the ciphertext.
                let frame = Codec::new(self.config.network.magic()).encode_to_bytes(msg);
                super::trace::message(super::trace::Direction::Send, command, &frame, Some(msg));
            } else {
                super::trace::message(super::trace::Direction::Send, command, &bytes, Some(msg));
            }
        }
        let len = bytes.len();
        writer.send(WriteCmd::Frame { bytes, command, done }).map_err(|_| SendError::Disconnected)?;
        self.subscribers.sent(self.id, &self.addr, command, len, msg);
        Ok(())
    }

    fn run_actions(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Send(msg) => {
                    if let Err(SendError::QueueFull { queued, .. }) = self.enqueue(&msg, None) {
                        self.machine.disconnect(DisconnectReason::SendQueueFull { queued });
                    }
                }
                Action::State(state) => {
                    let _g = self.span.enter();
                    debug!(?state, "state");
                    self.subscribers.state_changed(self.id, &self.addr, state);
                }
                Action::Latency(latency) => self.count(|m| m.ping(latency)),
                Action::Answer(id, result) => {
                    if let Some(tx) = self.answers.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                Action::Ready(mut info) => {
                    let took = self.connected_at.map(|t| t.elapsed()).unwrap_or_default();
                    let link = self.machine.link();
                    info.transport = self.transport_version();
                    let transport = self.transport_name();
                    self.count(|m| m.handshake_over(link, transport, took));
                    let _g = self.span.enter();
                    info!(version = info.version, user_agent = %info.user_agent, services = info.services, start_height = info.start_height, transport, "peer ready");
                    self.subscribers.ready(self.id, &self.addr, info);
                }
                Action::Disconnect(reason) => {
                    {
                        let _g = self.span.enter();
                        match reason.kind() {
                            super::ReasonKind::Misbehavior => {
                                warn!(%reason, "disconnecting misbehaving peer")
                            }
                            _ => info!(%reason, "peer disconnected"),
                        }
                    }
                    if let Some((writer, task)) = self.writer.take() {
                        // Flush what is queued, but never wait longer than CLOSE_TIMEOUT for a
                        // peer that stopped reading: the task, socket and buffers go then.
                        let _ = writer.send(WriteCmd::Close);
                        let abort = task.abort_handle();
                        actix::spawn(async move {
                            if tokio::time::timeout(outbound::CLOSE_TIMEOUT, task).await.is_err() {
                                abort.abort();
                            }
                        });
                    }
                    let link = self.machine.link();
                    self.count(|m| m.disconnect(link, &reason));
                    self.subscribers.disconnected(self.id, &self.addr, reason);
                    ctx.stop();
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.stats.received(frame.command, frame.wire_len, SystemTime::now());
        self.count(|m| m.message(false, frame.command, frame.wire_len));
        match frame.message {
            Ok(Payload::Message(msg)) => {
                self.trace_recv(frame.command, &frame.raw, Some(&msg));
                if let Message::Headers(headers) = &msg {
                    if self.machine.on_headers_arriving(now, headers) {
                        // The next batch's `getheaders` is in the writer's queue: let the writer
                        // put it on the wire before this batch is hashed and checked, so the two
                        // overlap. `wait` holds this actor's other messages and reads until the
                        // batch is handled, so nothing overtakes it.
                        self.run_actions(ctx);
                        ctx.wait(tokio::task::yield_now().into_actor(self).map(move |(), act, ctx| {
                            act.on_message(now, msg, ctx);
                        }));
                        return;
                    }
                }
                self.on_message(now, msg, ctx);
            }
            Ok(Payload::Block(raw)) => {
                self.trace_recv(frame.command, &frame.raw, None);
                let verdict = self.machine.on_block(now);
                self.run_actions(ctx);
                if self.machine.is_closed() {
                    return;
                }
                // After the handshake every block is parsed and checked before anyone sees it
                // (Core's `ProcessMessage` BLOCK): an answer to our own request goes to the
                // requester only, an unsolicited one reaches typed subscribers only when valid.
                // The catch-all sees every block the peer was not dropped for.
                let mut decoded = None;
                let mut typed = false;
                if verdict == Verdict::Deliver {
                    match raw.decode() {
                        Ok(block) => {
                            let block = Arc::new(block);
                            typed = self.machine.on_parsed_block(now, &block) == Verdict::Deliver;
                            self.run_actions(ctx);
                            if self.machine.is_closed() {
                                return;
                            }
                            decoded = Some(block);
                        }
                        Err(error) => {
                            self.invalid_frame(now, &error);
                            return self.run_actions(ctx);
                        }
                    }
                }
                if let Err(error) = self.subscribers.received_block(self.id, &self.addr, raw, decoded, typed)
                {
                    self.invalid_frame(now, &error);
                }
            }
            Err(error) => {
                self.invalid_frame(now, &error);
                self.run_actions(ctx);
            }
        }
    }

    /// A decoded message: the machine's verdict, then the subscribers.
    fn on_message(&mut self, now: Instant, msg: Message, ctx: &mut Context<Self>) {
        let verdict = self.machine.on_message(now, &msg);
        self.run_actions(ctx);
        if verdict != Verdict::Consumed {
            self.report_tx_notfound(&msg);
        }
        if !self.machine.is_closed() {
            let (msg, typed) = match (verdict, msg) {
                (Verdict::DeliverFirst(n), Message::Addr(mut a)) => {
                    a.truncate(n);
                    (Message::Addr(a), true)
                }
                (Verdict::DeliverFirst(n), Message::AddrV2(mut a)) => {
                    a.truncate(n);
                    (Message::AddrV2(a), true)
                }
                (verdict, msg) => (msg, verdict != Verdict::Consumed),
            };
            self.subscribers.received(self.id, &self.addr, msg, typed);
        }
    }

    /// Passes a `notfound`'s transaction entries to the group deciding our tx requests.
    fn report_tx_notfound(&self, msg: &Message) {
        let (Some(group), Message::NotFound(items)) = (&self.tx_notfound, msg) else { return };
        let items: Vec<wire::Inventory> = items
            .iter()
            .filter(|i| {
                matches!(
                    i,
                    wire::Inventory::Transaction(_)
                        | wire::Inventory::WitnessTransaction(_)
                        | wire::Inventory::WTx(_)
                )
            })
            .copied()
            .collect();
        if !items.is_empty() {
            group.do_send(TxsNotFound { peer: self.id, items });
        }
    }

    fn trace_recv(&self, command: &'static str, frame: &[u8], msg: Option<&Message>) {
        let _g = self.span.enter();
        super::trace::message(super::trace::Direction::Recv, command, frame, msg);
    }

    fn invalid_frame(&mut self, now: Instant, error: &CodecError) {
        {
            let _g = self.span.enter();
            warn!(%error, "dropping invalid message");
        }
        self.machine.on_invalid_frame(now, error);
    }

    fn snapshot(&self) -> PeerStats {
        let info = self.machine.peer_info();
        let base = PeerStats {
            id: self.id,
            addr: self.addr.clone(),
            link: self.machine.link(),
            state: self.machine.state(),
            services: info.map_or(0, |i| i.services),
            version: info.map_or(0, |i| i.version),
            user_agent: info.map(|i| i.user_agent.clone()).unwrap_or_default(),
            start_height: info.map_or(0, |i| i.start_height),
            relay: info.is_some_and(|i| i.relay),
            features: info.map(|i| i.features.clone()).unwrap_or_default(),
            transport: self.transport_name(),
            session_id: self.session_id.map(|id| super::transport::v2::hex(&id)),
            connected_since: None,
            last_send: None,
            last_recv: None,
            bytes_sent: 0,
            bytes_recv: 0,
            sent_per_command: Default::default(),
            recv_per_command: Default::default(),
            ping_latency_ms: self.machine.latency().map(|d| d.as_secs_f64() * 1000.0),
            send_queue_bytes: self.budget.queued(),
            dropped_frames: self.machine.dropped_frames(),
            addr_rate_limited: self.machine.addr_rate_limited(),
            subscribers: self.subscribers.stats(),
        };
        self.stats.snapshot(base)
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK_INTERVAL, |act, ctx| {
            act.machine.tick(Instant::now());
            act.run_actions(ctx);
        });
        match self.stream.take() {
            Some((stream, remote)) => {
                self.machine.connecting();
                self.attach(stream, remote, ctx);
            }
            None => self.dial(ctx),
        }
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) -> Running {
        // Stopped from outside (all addresses dropped, system shutdown): still say goodbye once.
        self.machine.disconnect(DisconnectReason::Shutdown);
        self.run_actions(ctx);
        Running::Stop
    }
}
