//! The daemon's HTTP API (`--http IP:PORT`): health, peers, bans and status as JSON. It runs on
//! the same actix runtime and talks to the [`PeerGroup`] with ordinary messages. Errors are
//! JSON `{"error": "..."}` with a 4xx/5xx status; nothing here panics on input.

use std::net::SocketAddr;
use std::time::Duration;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::json;

use crate::group::{
    BanAddr, BroadcastError, BroadcastTransaction, DisconnectPeer, GetBans, GetPeers, GetStatus, PeerGroup,
    UnbanAddr,
};
use crate::metrics::Metrics;
use crate::network::Network;
use crate::peer::PeerAddr;

/// Longest ban the API accepts (ten years); longer values are refused, not wrapped.
pub const MAX_BAN_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Clone)]
struct Api {
    group: Addr<PeerGroup>,
    network: Network,
    metrics: Option<Metrics>,
    chain: Option<Addr<crate::sync::ChainSync>>,
    /// The NATS sink's state, when it runs.
    nats: Option<std::sync::Arc<super::nats::status::SinkStatus>>,
}

impl Api {
    async fn chain_status(&self) -> Option<crate::sync::ChainStatus> {
        self.chain.as_ref()?.send(crate::sync::GetChainStatus).await.ok()
    }
}

fn error(status: actix_web::http::StatusCode, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.to_string() }))
}

fn unavailable() -> HttpResponse {
    error(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "peer group is not running")
}

/// Starts the API on `bind`; returns the server (await it, or stop it through its handle) and
/// the bound address (useful with port 0).
pub fn start(
    bind: SocketAddr,
    group: Addr<PeerGroup>,
    chain: Option<Addr<crate::sync::ChainSync>>,
    network: Network,
    metrics: Option<Metrics>,
) -> std::io::Result<(Server, SocketAddr)> {
    start_with_sinks(bind, group, chain, network, metrics, None)
}

/// [`start`], with the NATS sink's state in `/status` and `/metrics`.
pub(crate) fn start_with_sinks(
    bind: SocketAddr,
    group: Addr<PeerGroup>,
    chain: Option<Addr<crate::sync::ChainSync>>,
    network: Network,
    metrics: Option<Metrics>,
    nats: Option<std::sync::Arc<super::nats::status::SinkStatus>>,
) -> std::io::Result<(Server, SocketAddr)> {
    let api = Api { group, network, metrics, chain, nats };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(api.clone()))
            .app_data(web::JsonConfig::default().limit(4096).error_handler(|err, _| {
                let message = err.to_string();
                actix_web::error::InternalError::from_response(
                    err,
                    error(actix_web::http::StatusCode::BAD_REQUEST, message),
                )
                .into()
            }))
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(prometheus_metrics))
            .route("/status", web::get().to(status))
            .route("/peers", web::get().to(peers))
            .route("/peers/{id}", web::get().to(peer))
            .route("/peers/{id}", web::delete().to(disconnect))
            .route("/bans", web::get().to(bans))
            .route("/bans", web::post().to(ban))
            .route("/bans/{addr}", web::delete().to(unban))
            .route("/tx", web::post().to(broadcast_tx))
            .default_service(web::to(|| async {
                error(actix_web::http::StatusCode::NOT_FOUND, "no such endpoint")
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .bind(bind)?;
    let addr = server.addrs().first().copied().unwrap_or(bind);
    Ok((server.run(), addr))
}

async fn health(api: web::Data<Api>) -> HttpResponse {
    match api.group.send(GetStatus).await {
        Ok(s) if !s.closing => HttpResponse::Ok().json(json!({
            "status": "ok",
            "network": api.network,
            "peers": s.outbound + s.inbound,
            "outbound_ready": s.outbound_ready,
        })),
        Ok(_) => error(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        Err(_) => unavailable(),
    }
}

async fn prometheus_metrics(api: web::Data<Api>) -> HttpResponse {
    let Some(m) = &api.metrics else {
        return error(actix_web::http::StatusCode::NOT_FOUND, "metrics are not enabled");
    };
    let (Ok(peers), Ok(status)) = (api.group.send(GetPeers).await, api.group.send(GetStatus).await) else {
        return unavailable();
    };
    // Gauges describe the present: recompute them at each scrape.
    for direction in ["inbound", "outbound"] {
        for state in ["connecting", "handshaking", "ready"] {
            m.peers.with_label_values(&[direction, state]).set(0);
        }
    }
    let mut dropped = 0;
    for p in &peers {
        let direction = match p.link {
            crate::peer::Link::Inbound => "inbound",
            crate::peer::Link::Outbound => "outbound",
        };
        let state = match p.state {
            crate::peer::PeerState::Connecting => "connecting",
            crate::peer::PeerState::Handshaking => "handshaking",
            crate::peer::PeerState::Ready => "ready",
            crate::peer::PeerState::Disconnected => continue,
        };
        m.peers.with_label_values(&[direction, state]).inc();
        dropped += p.subscribers.iter().map(|s| s.dropped).sum::<u64>();
    }
    m.subscriber_dropped.set(i64::try_from(dropped).unwrap_or(i64::MAX));
    m.bans.set(i64::try_from(status.bans).unwrap_or(i64::MAX));
    m.addrbook.with_label_values(&["new"]).set(i64::try_from(status.addrbook_new).unwrap_or(i64::MAX));
    m.addrbook.with_label_values(&["tried"]).set(i64::try_from(status.addrbook_tried).unwrap_or(i64::MAX));
    if let Some(chain) = api.chain_status().await {
        m.header_height.set(i64::from(chain.height));
        m.headers_synced.set(i64::from(chain.synced));
    }
    let mut text = m.render();
    if let Some(nats) = &api.nats {
        text.push_str(&nats.prometheus());
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}

async fn status(api: web::Data<Api>) -> HttpResponse {
    match api.group.send(GetStatus).await {
        Ok(s) => {
            let chain = api.chain_status().await;
            let mut body = json!({ "network": api.network, "group": s, "chain": chain });
            if let (Some(nats), Some(map)) = (&api.nats, body.as_object_mut()) {
                map.insert("nats".into(), nats.json());
            }
            HttpResponse::Ok().json(body)
        }
        Err(_) => unavailable(),
    }
}

async fn peers(api: web::Data<Api>) -> HttpResponse {
    match api.group.send(GetPeers).await {
        Ok(mut peers) => {
            peers.sort_by_key(|p| p.id);
            HttpResponse::Ok().json(peers)
        }
        Err(_) => unavailable(),
    }
}

fn parse_id(raw: &str) -> Result<u64, String> {
    raw.parse::<u64>().map_err(|_| format!("invalid peer id {raw:?}"))
}

fn bad_request(message: impl std::fmt::Display) -> HttpResponse {
    error(actix_web::http::StatusCode::BAD_REQUEST, message)
}

async fn peer(api: web::Data<Api>, path: web::Path<String>) -> HttpResponse {
    let id = match parse_id(&path) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    match api.group.send(GetPeers).await {
        Ok(peers) => match peers.into_iter().find(|p| p.id.0 == id) {
            Some(p) => HttpResponse::Ok().json(p),
            None => error(actix_web::http::StatusCode::NOT_FOUND, format!("no peer {id}")),
        },
        Err(_) => unavailable(),
    }
}

async fn disconnect(api: web::Data<Api>, path: web::Path<String>) -> HttpResponse {
    let id = match parse_id(&path) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    match api.group.send(DisconnectPeer(crate::peer::PeerId(id))).await {
        Ok(Ok(())) => HttpResponse::Accepted().json(json!({ "disconnecting": id })),
        Ok(Err(e)) => error(actix_web::http::StatusCode::NOT_FOUND, e),
        Err(_) => unavailable(),
    }
}

async fn bans(api: web::Data<Api>) -> HttpResponse {
    match api.group.send(GetBans).await {
        Ok(bans) => HttpResponse::Ok().json(bans),
        Err(_) => unavailable(),
    }
}

/// Body of `POST /bans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BanRequest {
    /// `IP`, `IP:PORT`, `[IPv6]:PORT` or a host name.
    addr: String,
    /// Seconds; the configured ban time when absent.
    duration: Option<u64>,
    /// Why (for the record).
    reason: Option<String>,
}

/// Accepts a bare IP or host as well as `HOST:PORT`.
fn parse_target(raw: &str) -> Result<PeerAddr, String> {
    // IPv6 bans are listed as `prefix/64`; take that form back too.
    PeerAddr::parse_with_default_port(raw.trim_end_matches("/64"), 1).map_err(|e| format!("addr: {e}"))
}

/// The ban a `POST /bans` body asks for, or what is wrong with it.
pub(crate) fn ban_message(body: BanRequest) -> Result<BanAddr, String> {
    let addr = parse_target(&body.addr)?;
    if let Some(secs) = body.duration {
        if secs == 0 || secs > MAX_BAN_SECS {
            return Err(format!("duration: must be between 1 and {MAX_BAN_SECS} seconds"));
        }
    }
    Ok(BanAddr {
        addr,
        duration: body.duration.map(Duration::from_secs),
        reason: body.reason.unwrap_or_else(|| "banned through the API".into()),
    })
}

async fn ban(api: web::Data<Api>, body: web::Json<BanRequest>) -> HttpResponse {
    let msg = match ban_message(body.into_inner()) {
        Ok(msg) => msg,
        Err(e) => return bad_request(e),
    };
    match api.group.send(msg).await {
        Ok(ban) => HttpResponse::Created().json(ban),
        Err(_) => unavailable(),
    }
}

async fn unban(api: web::Data<Api>, path: web::Path<String>) -> HttpResponse {
    let addr = match parse_target(&path) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    match api.group.send(UnbanAddr(addr)).await {
        Ok(true) => HttpResponse::NoContent().finish(),
        Ok(false) => {
            error(actix_web::http::StatusCode::NOT_FOUND, format!("{} is not banned", path.as_str()))
        }
        Err(_) => unavailable(),
    }
}

/// How long `POST /tx` waits for a peer to request the transaction.
pub const BROADCAST_TIMEOUT: Duration = Duration::from_secs(30);

/// Core's `MAX_STANDARD_TX_WEIGHT` (policy/policy.h): the heaviest transaction peers relay.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;

/// Largest `POST /tx` body: the hex of a standard transaction of the largest size (its bytes
/// are at most its weight), plus room for a JSON wrapper.
pub const MAX_TX_BODY: usize = 2 * MAX_STANDARD_TX_WEIGHT as usize + 1_024;

/// Reads the body up to `limit` bytes; `None` when it is longer (nothing beyond is buffered).
async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Option<Vec<u8>>, String> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Hex to bytes, naming the first problem.
fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let raw = hex.as_bytes();
    if let Some(pos) = raw.iter().position(|c| nibble(*c).is_none()) {
        let shown = hex[pos..].chars().next().unwrap_or('?');
        return Err(format!("hex: invalid character {shown:?} at position {pos}"));
    }
    if raw.len() % 2 == 1 {
        return Err(format!("hex: odd number of digits ({})", raw.len()));
    }
    // Every byte was checked above.
    Ok(raw.chunks_exact(2).map(|p| (nibble(p[0]).unwrap_or(0) << 4) | nibble(p[1]).unwrap_or(0)).collect())
}

/// Bytes to a transaction, naming the problem: where the data ran out, trailing bytes, or what
/// the decoder refused.
fn decode_tx(bytes: &[u8]) -> Result<bitcoin::Transaction, String> {
    use bitcoin::consensus::encode::Error;
    match bitcoin::consensus::deserialize_partial::<bitcoin::Transaction>(bytes) {
        Ok((tx, used)) if used == bytes.len() => {
            let weight = tx.weight().to_wu();
            if weight > MAX_STANDARD_TX_WEIGHT {
                return Err(format!(
                    "transaction: weight {weight} exceeds {MAX_STANDARD_TX_WEIGHT} (Core's MAX_STANDARD_TX_WEIGHT): peers would not relay it"
                ));
            }
            Ok(tx)
        }
        Ok((_, used)) => {
            Err(format!("transaction: {} bytes left over after the transaction's {used}", bytes.len() - used))
        }
        Err(Error::Io(e)) if e.kind() == bitcoin::io::ErrorKind::UnexpectedEof => {
            Err(format!("transaction: unexpected end of data after {} bytes", bytes.len()))
        }
        Err(e) => Err(format!("transaction: {e}")),
    }
}

/// A `POST /tx` body (hex, or JSON `{"hex": "..."}`) to a transaction, naming the first problem.
pub(crate) fn parse_tx_body(body: &[u8]) -> Result<bitcoin::Transaction, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body: not UTF-8".to_owned())?.trim();
    let hex = if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("body: {e}"))?;
        match v.get("hex").and_then(|h| h.as_str()) {
            Some(h) => h.to_owned(),
            None => return Err("body: expected {\"hex\": \"...\"}".to_owned()),
        }
    } else {
        text.to_owned()
    };
    decode_tx(&decode_hex(&hex)?)
}

/// `POST /tx`: the raw transaction as hex (plain body, or JSON `{"hex": "..."}`, at most
/// [`MAX_TX_BODY`] bytes); answers with its txid/wtxid once a peer requested it. Every error is
/// JSON `{"error": "..."}` naming the problem (413 for a body too large).
async fn broadcast_tx(api: web::Data<Api>, payload: web::Payload) -> HttpResponse {
    let body = match read_limited(payload, MAX_TX_BODY).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            return error(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: larger than {MAX_TX_BODY} bytes (a standard transaction's hex fits)"),
            )
        }
        Err(e) => return bad_request(e),
    };
    let tx = match parse_tx_body(&body) {
        Ok(tx) => tx,
        Err(e) => return bad_request(e),
    };
    let msg = BroadcastTransaction { tx, min_peers: 1, timeout: BROADCAST_TIMEOUT };
    match api.group.send(msg).await {
        Ok(Ok(outcome)) => HttpResponse::Ok().json(outcome),
        Ok(Err(e @ BroadcastError::Timeout { .. })) => error(actix_web::http::StatusCode::GATEWAY_TIMEOUT, e),
        Ok(Err(e)) => error(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, e),
        Err(_) => unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_errors_name_the_position() {
        assert_eq!(decode_hex("00zz").unwrap_err(), "hex: invalid character 'z' at position 2");
        assert_eq!(decode_hex("abc").unwrap_err(), "hex: odd number of digits (3)");
        assert_eq!(decode_hex("0aFF").unwrap(), vec![0x0a, 0xff]);
    }

    #[test]
    fn transaction_errors_say_what_is_wrong() {
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn::default()],
            output: vec![bitcoin::TxOut::NULL],
        };
        let bytes = bitcoin::consensus::serialize(&tx);
        assert_eq!(decode_tx(&bytes).unwrap(), tx);
        let cut = &bytes[..bytes.len() - 3];
        assert_eq!(
            decode_tx(cut).unwrap_err(),
            format!("transaction: unexpected end of data after {} bytes", cut.len())
        );
        let mut long = bytes.clone();
        long.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode_tx(&long).unwrap_err(),
            format!("transaction: 2 bytes left over after the transaction's {}", bytes.len())
        );
    }

    #[test]
    fn a_heavy_transaction_is_refused_a_large_standard_one_is_not() {
        let with_witness = |len: usize| {
            let mut input = bitcoin::TxIn::default();
            input.witness.push(vec![0u8; len]);
            bitcoin::Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![input],
                output: vec![bitcoin::TxOut::NULL],
            }
        };
        // ~300 kB: over the old 256 KiB body limit, under the standard weight.
        let big = bitcoin::consensus::serialize(&with_witness(300_000));
        assert!(decode_tx(&big).is_ok());
        assert!(2 * big.len() < MAX_TX_BODY);
        let heavy = bitcoin::consensus::serialize(&with_witness(420_000));
        assert!(decode_tx(&heavy).unwrap_err().contains("MAX_STANDARD_TX_WEIGHT"));
    }
}
