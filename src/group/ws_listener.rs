//! Inbound peers over WebSocket (bitcoin-net's browser transport): the v1 byte stream travels
//! in binary frames whose boundaries mean nothing, so once the WebSocket handshake is done the
//! connection is a byte stream like TCP and goes into the same [`PeerActor`], admission limits,
//! bans and notifications as a TCP inbound peer. Start listeners with [`ListenWebSocket`].
//!
//! The WebSocket protocol is `async-tungstenite`'s and the byte-stream adapter
//! `ws_stream_tungstenite`'s (no framing here). Limits apply before anything is buffered:
//! frames and messages above [`WsConfig::max_message_bytes`] close the connection, at most
//! [`WsConfig::max_peers`] WebSocket connections (handshaking or not) are open at once, and
//! with [`WsConfig::allowed_origins`] set a browser page from another origin is refused (403).
//! When the inbound slots or the WebSocket cap are full, a newcomer gets what a TCP newcomer
//! gets: eviction picks a peer to make room (Core's `SelectNodeToEvict`, among the inbound
//! peers, or among the WebSocket ones when their cap is what is full), or the newcomer is
//! closed when every candidate is protected.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::prelude::*;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};
use ws_stream_tungstenite::WsStream;

use super::inbound::Admission;
use super::PeerGroup;

/// Default cap on WebSocket connections.
pub const DEFAULT_MAX_WS_PEERS: usize = 32;
/// Default limit on one WebSocket frame or message: a `block` message (4 MB) and its header fit.
pub const DEFAULT_MAX_WS_MESSAGE_BYTES: usize = 4_000_000 + 24;
/// Longest WebSocket handshake.
pub const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// WebSocket listener settings.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Most WebSocket connections open at once (beyond: closed at once).
    pub max_peers: usize,
    /// Largest frame and message accepted (larger: the connection is closed).
    pub max_message_bytes: usize,
    /// When not empty, the only `Origin` headers accepted; requests without one (non-browser
    /// clients) are accepted too, since only browsers send it.
    pub allowed_origins: Vec<String>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            listen: Vec::new(),
            max_peers: DEFAULT_MAX_WS_PEERS,
            max_message_bytes: DEFAULT_MAX_WS_MESSAGE_BYTES,
            allowed_origins: Vec::new(),
        }
    }
}

/// Starts WebSocket listeners; answers the bound addresses, or the first bind error.
///
/// ```no_run
/// # async fn demo(group: actix::Addr<btcpeer::group::PeerGroup>) {
/// use btcpeer::group::{ListenWebSocket, WsConfig};
/// let config = WsConfig { listen: vec!["127.0.0.1:8334".parse().unwrap()], ..WsConfig::default() };
/// let bound = group.send(ListenWebSocket(config)).await.unwrap().unwrap();
/// println!("WebSocket peers on {bound:?}");
/// # }
/// ```
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<SocketAddr>, WsListenError>")]
pub struct ListenWebSocket(pub WsConfig);

/// A WebSocket listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for websocket peers on {addr}: {source}")]
pub struct WsListenError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// A WebSocket peer finished its handshake.
#[derive(Message)]
#[rtype(result = "()")]
struct WsAccepted(WsPeerStream, SocketAddr);

/// The WebSocket cap is full and a newcomer from this address arrived: evict a WebSocket peer
/// for it, as the inbound slots do for TCP newcomers. Answers whether one was evicted.
#[derive(Message)]
#[rtype(result = "bool")]
struct EvictWebSocketPeer(SocketAddr);

/// The WebSocket as a byte stream, holding its slot in the connection count until dropped
/// (when the peer actor stops).
struct WsPeerStream {
    inner: WsStream<async_tungstenite::tokio::TokioAdapter<TcpStream>>,
    _slot: Slot,
}

struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a slot, or `None` when all `max` are taken.
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot(count.clone()))
    }

    /// Takes the slot of a peer evicted for the newcomer: the count is above `max` until the
    /// victim's stream closes and frees its own.
    fn take_over(count: &Arc<AtomicUsize>) -> Slot {
        count.fetch_add(1, Ordering::AcqRel);
        Slot(count.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AsyncRead for WsPeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WsPeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether a browser page from the request's `Origin` may connect (clients without one may).
fn origin_allowed(allowed: &[String], request: &Request) -> bool {
    match request.headers().get("origin") {
        Some(o) if !allowed.is_empty() => o.to_str().is_ok_and(|o| allowed.iter().any(|a| a == o)),
        _ => true,
    }
}

fn forbidden() -> ErrorResponse {
    let mut refusal = ErrorResponse::new(Some("origin not allowed".to_owned()));
    *refusal.status_mut() = StatusCode::FORBIDDEN;
    refusal
}

/// The WebSocket handshake on one accepted connection, within the limits.
async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    config: Arc<WsConfig>,
    slot: Slot,
) -> Option<WsPeerStream> {
    let _ = tcp.set_nodelay(true);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let allowed = config.allowed_origins.clone();
    // The large `Err` is tungstenite's `Callback` signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| {
        if origin_allowed(&allowed, req) {
            Ok(resp)
        } else {
            Err(forbidden())
        }
    };
    let accept = async_tungstenite::tokio::accept_hdr_async_with_config(tcp, callback, Some(ws_config));
    match tokio::time::timeout(WS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(ws)) => Some(WsPeerStream { inner: WsStream::new(ws), _slot: slot }),
        Ok(Err(e)) => {
            info!(%remote, error = %e, "websocket handshake failed");
            None
        }
        Err(_) => {
            info!(%remote, "websocket handshake timed out");
            None
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    group: Addr<PeerGroup>,
    config: Arc<WsConfig>,
    count: Arc<AtomicUsize>,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "websocket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !group.connected() {
            return; // the group stopped
        }
        let slot = match Slot::take(&count, config.max_peers) {
            Some(slot) => slot,
            // `send` waits for the group's choice: accepting pauses meanwhile, as for TCP.
            None => match group.send(EvictWebSocketPeer(remote)).await {
                Ok(true) => Slot::take_over(&count),
                _ => {
                    info!(%remote, max = config.max_peers, "websocket peers at their limit, all protected: refusing");
                    continue;
                }
            },
        };
        let (me, config) = (group.clone(), config.clone());
        actix::spawn(async move {
            if let Some(stream) = handshake(tcp, remote, config, slot).await {
                me.do_send(WsAccepted(stream, remote));
            }
        });
    }
}

impl Handler<ListenWebSocket> for PeerGroup {
    type Result = ResponseFuture<Result<Vec<SocketAddr>, WsListenError>>;

    fn handle(&mut self, ListenWebSocket(config): ListenWebSocket, ctx: &mut Context<Self>) -> Self::Result {
        let me = ctx.address();
        Box::pin(async move {
            let count = Arc::new(AtomicUsize::new(0));
            let config = Arc::new(config);
            let mut listeners = Vec::new();
            for &addr in &config.listen {
                let listener =
                    TcpListener::bind(addr).await.map_err(|source| WsListenError { addr, source })?;
                let local = listener.local_addr().unwrap_or(addr);
                listeners.push((listener, local));
            }
            let mut bound = Vec::new();
            for (listener, local) in listeners {
                info!(addr = %local, "listening for websocket peers");
                actix::spawn(accept_loop(listener, me.clone(), config.clone(), count.clone()));
                bound.push(local);
            }
            Ok(bound)
        })
    }
}

impl Handler<WsAccepted> for PeerGroup {
    type Result = ResponseActFuture<Self, ()>;

    /// Admits the peer as the TCP listener does: bans, per-IP and inbound limits, accepting,
    /// and eviction when the inbound slots are full.
    fn handle(&mut self, WsAccepted(stream, remote): WsAccepted, ctx: &mut Context<Self>) -> Self::Result {
        debug!(%remote, "websocket handshake done");
        self.admit_inbound(stream, remote, true, ctx)
    }
}

impl Handler<EvictWebSocketPeer> for PeerGroup {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(
        &mut self,
        EvictWebSocketPeer(remote): EvictWebSocketPeer,
        _: &mut Context<Self>,
    ) -> Self::Result {
        // No room is made for a newcomer that would be refused anyway.
        if let Admission::Refuse(why) = self.admission(remote) {
            info!(%remote, ?why, "refusing websocket peer");
            return Box::pin(actix::fut::ready(false));
        }
        Box::pin(self.eviction_candidates(true).into_actor(self).map(move |candidates, act, _| {
            act.evict_for(candidates, remote, "websocket peers at their limit")
        }))
    }
}
