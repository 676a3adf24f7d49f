//! Serving the header chain (`ChainSyncConfig::serve`, btcpeerd `--serve`): a node syncs
//! headers from bcoin and serves them. A second btcpeer node syncs the whole chain through it
//! (continuation past 2,000 headers) and follows new tips from its announcements; scripted raw
//! clients get Bitcoin Core's answers (`net_processing.cpp` `ProcessMessage` GETHEADERS and
//! `SendMessages`) to bogus locators, unknown stop hashes and the rest.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use actix::prelude::*;
use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::BlockHash;
use btcpeer::group::*;
use btcpeer::peer::{PeerAddr, TipHeight};
use btcpeer::sync::*;
use btcpeer::wire::{Codec, GetHeadersMessage, Inventory, Message, ServiceFlags};
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;
use ws_stream_tungstenite::WsStream;

const WAIT: Duration = Duration::from_secs(60);
const BLOCKS: u32 = 2_100;

fn best(node: &Bcoin) -> (u32, BlockHash) {
    let height = node.rpc("getblockcount", json!([])).as_u64().unwrap() as u32;
    let hash = BlockHash::from_str(node.rpc("getbestblockhash", json!([])).as_str().unwrap()).unwrap();
    (height, hash)
}

/// A group (listening when `listen`) connected only to `peer`, with a chain sync.
fn node(peer: SocketAddr, listen: bool, serve: bool) -> (Addr<PeerGroup>, Addr<ChainSync>) {
    let tip = TipHeight::default();
    let mut peer_cfg = regtest_config();
    peer_cfg.tip = tip.clone();
    let mut cfg = group_config(peer_cfg, listen);
    cfg.policy.static_peers = vec![PeerAddr::Ip(peer)];
    cfg.policy.connect_only = true;
    let group = PeerGroup::new(cfg, Vec::new()).start();
    let mut sync = ChainSyncConfig::new(btcpeer::Network::Regtest);
    sync.tip = tip;
    sync.serve = serve;
    let sync = ChainSync::new(sync, group.clone()).unwrap().start();
    (group, sync)
}

async fn wait_for_tip(sync: &Addr<ChainSync>, want: (u32, BlockHash), what: &str) {
    wait_for!(WAIT, what, {
        let s = sync.send(GetChainStatus).await.unwrap();
        (s.height, s.tip) == want
    });
}

/// The whole best chain after genesis, from the serving node's chain sync.
async fn all_headers(sync: &Addr<ChainSync>) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::new();
    loop {
        let locator = out.last().map(|h| vec![h.block_hash()]).unwrap_or_default();
        let page = sync.send(GetHeadersAfter { locator, max: 2_000 }).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

type WsClientStream = WsStream<async_tungstenite::tokio::TokioAdapter<TcpStream>>;

/// A WebSocket connection to `target` as a byte stream (`Err`: the handshake was refused).
async fn ws_connect(target: SocketAddr, origin: Option<&str>) -> Result<WsClientStream, String> {
    use async_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{target}/").into_client_request().unwrap();
    if let Some(o) = origin {
        request.headers_mut().insert("origin", o.parse().unwrap());
    }
    let tcp = TcpStream::connect(target).await.map_err(|e| e.to_string())?;
    let (ws, _) = async_tungstenite::tokio::client_async(request, tcp).await.map_err(|e| e.to_string())?;
    Ok(WsStream::new(ws))
}

type Frames = FramedRead<Box<dyn AsyncRead + Unpin + Send>, Codec>;

/// A scripted downstream peer speaking raw v1 messages, over TCP or WebSocket.
struct Client {
    w: Box<dyn AsyncWrite + Unpin + Send>,
    frames: Frames,
    /// The service bits of the node's `version`.
    services: ServiceFlags,
}

impl Client {
    async fn connect(target: SocketAddr, nonce: u64) -> Client {
        let (read, w) = TcpStream::connect(target).await.unwrap().into_split();
        Self::handshake(Box::new(read), Box::new(w), nonce).await
    }

    /// Over WebSocket, sending `origin` as a browser would; `Err` when the WebSocket handshake
    /// is refused.
    async fn connect_ws(target: SocketAddr, origin: Option<&str>, nonce: u64) -> Result<Client, String> {
        let ws = ws_connect(target, origin).await?;
        let (read, w) = tokio::io::split(ws);
        Ok(Self::handshake(Box::new(read), Box::new(w), nonce).await)
    }

    async fn handshake(
        read: Box<dyn AsyncRead + Unpin + Send>,
        w: Box<dyn AsyncWrite + Unpin + Send>,
        nonce: u64,
    ) -> Client {
        let frames = FramedRead::new(read, Codec::new(btcpeer::Network::Regtest.magic()));
        let mut c = Client { w, frames, services: ServiceFlags::NONE };
        let v = btcpeer::wire::version::build(
            &btcpeer::wire::version::LocalVersion { nonce, ..Default::default() },
            None,
        );
        c.send(Message::Version(v)).await;
        if let Message::Version(v) = c.next_where("version", |m| matches!(m, Message::Version(_))).await {
            c.services = v.services;
        }
        c.next_where("verack", |m| matches!(m, Message::Verack)).await;
        c.send(Message::Verack).await;
        c
    }

    async fn send(&mut self, m: Message) {
        let bytes = Codec::new(btcpeer::Network::Regtest.magic()).encode_to_bytes(&m);
        self.w.write_all(&bytes).await.unwrap();
        self.w.flush().await.unwrap();
    }

    /// The next message that `want` accepts (others are skipped).
    async fn next_where(&mut self, what: &str, want: impl Fn(&Message) -> bool) -> Message {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.frames.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            let frame = next.unwrap_or_else(|| panic!("closed while waiting for {what}")).unwrap();
            if let Ok(m) = frame.into_message() {
                if want(&m) {
                    return m;
                }
            }
        }
    }

    async fn getheaders(&mut self, locator: Vec<BlockHash>, stop: BlockHash) {
        self.send(Message::GetHeaders(GetHeadersMessage::new(locator, stop))).await;
    }

    async fn headers(&mut self) -> Vec<Header> {
        match self.next_where("headers", |m| matches!(m, Message::Headers(_))).await {
            Message::Headers(h) => h,
            _ => unreachable!(),
        }
    }

    async fn block(&mut self) -> bitcoin::Block {
        match self.next_where("block", |m| matches!(m, Message::Block(_))).await {
            Message::Block(b) => b,
            _ => unreachable!(),
        }
    }

    /// Waits until we close the connection.
    async fn closed(mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.frames.next()).await {
                Err(_) => panic!("the connection is still open"),
                Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

#[actix_rt::test]
async fn headers_are_served_and_announced_as_core_does() {
    let bcoin = Bcoin::start();
    bcoin.mine(BLOCKS as u64);
    let tip = best(&bcoin);
    assert_eq!(tip.0, BLOCKS);

    let (server_group, server) = node(bcoin.p2p, true, true);
    wait_for_tip(&server, tip, "the serving node to sync from bcoin").await;
    let listen = {
        let mut listen;
        wait_for!(WAIT, "listener bound", {
            listen = server_group.send(GetListenAddrs).await.unwrap();
            !listen.is_empty()
        });
        listen[0]
    };
    let chain = all_headers(&server).await;
    assert_eq!(chain.len(), BLOCKS as usize);
    let hash = |height: u32| chain[height as usize - 1].block_hash();

    // A btcpeer node whose only peer is the serving node syncs the whole chain through it:
    // 2,000 headers, then the continuation.
    let (down_group, down) = node(listen, false, false);
    wait_for_tip(&down, tip, "the downstream node to sync through the serving node").await;

    // Scripted clients: one asked for `sendheaders`, one did not.
    let mut a = Client::connect(listen, 1).await;
    a.send(Message::SendHeaders).await;
    let mut b = Client::connect(listen, 2).await;

    // A locator of unknown hashes: Core starts after genesis (`FindForkInGlobalIndex` falls back
    // to it) and sends at most MAX_HEADERS_RESULTS.
    a.getheaders(
        vec![BlockHash::from_byte_array([7; 32]), BlockHash::from_byte_array([8; 32])],
        BlockHash::all_zeros(),
    )
    .await;
    assert_eq!(a.headers().await, chain[..2_000]);
    // The continuation from the last one received.
    a.getheaders(vec![hash(2_000)], BlockHash::all_zeros()).await;
    assert_eq!(a.headers().await, chain[2_000..]);
    // The first known hash is the fork point; the stop hash ends the answer.
    a.getheaders(vec![BlockHash::from_byte_array([9; 32]), hash(1_000), hash(10)], hash(1_005)).await;
    assert_eq!(a.headers().await, chain[1_000..1_005]);
    // An empty locator with an unknown stop hash gets no answer at all; with a known one, that
    // header alone (the next `headers` to arrive).
    a.getheaders(vec![], BlockHash::from_byte_array([5; 32])).await;
    a.getheaders(vec![], hash(7)).await;
    assert_eq!(a.headers().await, vec![chain[6]]);
    // At our tip: an empty `headers`, and the tip counts as sent to the peer.
    a.getheaders(vec![tip.1], BlockHash::all_zeros()).await;
    assert_eq!(a.headers().await, Vec::<Header>::new());
    b.getheaders(vec![tip.1], BlockHash::all_zeros()).await;
    assert_eq!(b.headers().await, Vec::<Header>::new());

    // A new block: the `sendheaders` client gets its header, the other an `inv`, and the
    // downstream node (which sent `sendheaders`, as btcpeer does) follows.
    bcoin.mine(1);
    let new_tip = best(&bcoin);
    let announced = a.headers().await;
    assert_eq!(announced.iter().map(Header::block_hash).collect::<Vec<_>>(), vec![new_tip.1]);
    let inv = b.next_where("inv", |m| matches!(m, Message::Inv(_))).await;
    assert_eq!(inv, Message::Inv(vec![Inventory::Block(new_tip.1)]));
    wait_for_tip(&down, new_tip, "the downstream node to follow the announcement").await;

    // Blocks: fetched from bcoin through the serving node, which advertises what it serves.
    assert!(a.services.has(ServiceFlags::NETWORK | ServiceFlags::WITNESS), "{}", a.services);
    // Unknown blocks are ignored (Core's `ProcessGetBlockData`); the next block to arrive is
    // the one asked for after them, without witnesses as `MSG_BLOCK` asks.
    a.send(Message::GetData(vec![Inventory::Block(BlockHash::from_byte_array([4; 32]))])).await;
    a.send(Message::GetData(vec![Inventory::Block(hash(100))])).await;
    let b100 = a.block().await;
    assert_eq!(b100.block_hash(), hash(100));
    assert!(b100.txdata.iter().all(|tx| tx.input.iter().all(|i| i.witness.is_empty())));
    // Many at once: every one arrives, fetched at most 16 at a time for this peer.
    let many: Vec<Inventory> = (1..=500).map(|h| Inventory::WitnessBlock(hash(h))).collect();
    a.send(Message::GetData(many)).await;
    let mut got = std::collections::HashSet::new();
    while got.len() < 500 {
        got.insert(a.block().await.block_hash());
    }
    assert_eq!(got, (1..=500).map(hash).collect());
    // 50,000 items (Core's MAX_INV_SZ), all unknown but the last: Core ignores unknown blocks,
    // so they cost nothing upstream, and the known one still arrives.
    let upstream_getdata = || async {
        let peers = server_group.send(GetPeers).await.unwrap();
        let upstream =
            peers.iter().find(|p| p.link == btcpeer::peer::Link::Outbound).expect("the upstream bcoin peer");
        upstream.sent_per_command.get("getdata").map_or(0, |c| c.messages)
    };
    let before = upstream_getdata().await;
    let mut flood: Vec<Inventory> = (0..49_999u32)
        .map(|i| {
            let mut h = [0xee; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            Inventory::Block(BlockHash::from_byte_array(h))
        })
        .collect();
    flood.push(Inventory::Block(hash(501)));
    a.send(Message::GetData(flood)).await;
    assert_eq!(a.block().await.block_hash(), hash(501));
    let fetched = upstream_getdata().await - before;
    assert!(fetched <= 1, "{fetched} getdata sent upstream for one known block among 50,000 items");
    // A btcpeer client fetches blocks through it too.
    let blocks: Vec<_> = btcpeer::sync::block_stream(down_group.clone(), vec![hash(5), new_tip.1], 2)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(
        blocks.iter().map(|b| b.as_ref().unwrap().block_hash()).collect::<Vec<_>>(),
        vec![hash(5), new_tip.1]
    );

    // WebSocket peers get the same service; limits: allowed origins, a cap on connections.
    let ws_config = WsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        max_peers: 2,
        allowed_origins: vec!["http://allowed.test".into()],
        ..WsConfig::default()
    };
    let ws = server_group.send(ListenWebSocket(ws_config)).await.unwrap().unwrap()[0];
    let mut w1 = Client::connect_ws(ws, Some("http://allowed.test"), 11).await.unwrap();
    assert!(w1.services.has(ServiceFlags::NETWORK));
    w1.getheaders(vec![BlockHash::from_byte_array([7; 32])], BlockHash::all_zeros()).await;
    assert_eq!(w1.headers().await, chain[..2_000]);
    w1.send(Message::GetData(vec![Inventory::WitnessBlock(hash(42))])).await;
    assert_eq!(w1.block().await.block_hash(), hash(42));
    let refused = ws_connect(ws, Some("http://evil.test")).await.expect_err("other origins are refused");
    assert!(refused.contains("403"), "{refused}");
    let w2 = Client::connect_ws(ws, None, 12).await.expect("clients without an Origin are accepted");
    assert!(ws_connect(ws, None).await.is_err(), "a third WebSocket connection is over the cap");
    drop(w2);
    wait_for!(WAIT, "the closed connection's slot to be free", { ws_connect(ws, None).await.is_ok() });

    // An over-long locator (102 hashes): Core disconnects.
    b.getheaders(vec![hash(1); 102], BlockHash::all_zeros()).await;
    b.closed().await;

    down_group.send(Shutdown).await.unwrap();
    server_group.send(Shutdown).await.unwrap();
}

/// Runs `tests/support/light-clients/client.js` and returns what it printed (it fails the test
/// when the client reports an error). Node.js and the npm packages are required.
fn light_client(args: &[&str]) -> serde_json::Value {
    let dir = repo_root().join("tests/support/light-clients");
    assert!(
        dir.join("node_modules/bitcoin-net").exists() && dir.join("node_modules/bitcore-p2p").exists(),
        "light clients are not installed: run `npm ci` in {}",
        dir.display()
    );
    let out = std::process::Command::new("node")
        .arg(dir.join("client.js"))
        .args(args)
        .output()
        .expect("cannot run `node` (Node.js is required for the light-client tests)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{args:?}: no result ({e}); stdout {stdout:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success() && v.get("error").is_none(), "{args:?}: {v}");
    eprintln!("{args:?}: {v}");
    v
}

#[test]
fn light_clients_sync_headers_and_get_blocks_from_btcpeerd() {
    let bcoin = Bcoin::start();
    bcoin.mine(BLOCKS as u64);
    let (height, tip) = best(&bcoin);
    let block = BlockHash::from_str(bcoin.rpc("getblockhash", json!([100])).as_str().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let upstream = bcoin.p2p.to_string();
    let env = [
        ("BTCPEER_CONNECT", upstream.as_str()),
        ("BTCPEER_SYNC__HEADERS", "true"),
        ("BTCPEER_SYNC__SERVE", "true"),
        ("BTCPEER_LISTEN_WS", ws.as_str()),
    ];
    let (mut daemon, listen) = daemon_with_events(dir.path(), &env);
    let events = dir.path().join("events.jsonl");
    wait_until_blocking(WAIT, "btcpeerd to sync from bcoin", || {
        std::fs::read_to_string(&events).is_ok_and(|log| {
            log.lines().any(|l| l.contains("\"synced\"") && l.contains(&format!("\"height\":{height}")))
        })
    });
    let tip = tip.to_string();
    let block = block.to_string();
    for transport in [("tcp", &listen), ("ws", &ws)] {
        let got = light_client(&["bitcoin-net", transport.0, transport.1, &block]);
        assert_eq!(got["headers"], height, "bitcoin-net over {}: {got}", transport.0);
        assert_eq!(got["tip"], tip.as_str(), "bitcoin-net over {}", transport.0);
        assert_eq!(got["block"], block.as_str(), "bitcoin-net over {}", transport.0);
        assert_eq!(got["services"]["NODE_NETWORK"], true);
    }
    let got = light_client(&["bitcore-p2p", "tcp", &listen]);
    assert_eq!(got["headers"], height, "bitcore-p2p: {got}");
    assert_eq!(got["tip"], tip.as_str());
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// A BIP37 filter (`hash_funcs` functions, `tweak`) of 16 bytes holding `key`, built as BIP37
/// (and Core's `CBloomFilter::insert`) does.
fn bloom_filter(key: &[u8], hash_funcs: u32, tweak: u32) -> Vec<u8> {
    let mut data = vec![0u8; 16];
    for n in 0..hash_funcs {
        let seed = n.wrapping_mul(0xFBA4_C795).wrapping_add(tweak);
        let h =
            murmur3::murmur3_32(&mut std::io::Cursor::new(key), seed).unwrap() as usize % (data.len() * 8);
        data[h >> 3] |= 1 << (h & 7);
    }
    data
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Filtered blocks (`sync.serve_bloom`), as Core's `ProcessGetBlockData` serves them:
/// bitcoin-net, asking for NODE_BLOOM, loads a filter matching one transaction of a block bcoin
/// mined and gets through btcpeerd the `merkleblock` whose matches are that transaction, then
/// the transaction itself; a client without a filter gets no answer at all.
#[test]
fn filtered_blocks_are_built_with_the_peers_filter() {
    use bitcoin::consensus::encode::{deserialize, serialize_hex};
    let bcoin = Bcoin::start();
    let hashes = bcoin.mine(SEGWIT_HEIGHT);
    let coinbase = |hash: &str| -> bitcoin::Txid {
        bcoin.rpc("getblock", json!([hash, true]))["tx"][0].as_str().unwrap().parse().unwrap()
    };
    let watched = spend_op_true(coinbase(&hashes[0]), 5_000_000_000, 2_000);
    let other = spend_op_true(coinbase(&hashes[1]), 5_000_000_000, 3_000);
    for tx in [&watched, &other] {
        bcoin.rpc("sendrawtransaction", json!([serialize_hex(tx)]));
    }
    let block = bcoin.mine(1).remove(0);
    let block_json = bcoin.rpc("getblock", json!([block, true]));
    assert_eq!(block_json["tx"].as_array().unwrap().len(), 3, "the coinbase and both spends: {block_json}");
    let (height, _) = best(&bcoin);

    let dir = tempfile::tempdir().unwrap();
    let upstream = bcoin.p2p.to_string();
    let env = [
        ("BTCPEER_CONNECT", upstream.as_str()),
        ("BTCPEER_SYNC__HEADERS", "true"),
        ("BTCPEER_SYNC__SERVE", "true"),
        ("BTCPEER_SYNC__SERVE_BLOOM", "true"),
    ];
    let (daemon, listen) = daemon_with_events(dir.path(), &env);
    let _daemon = KillOnDrop(daemon);
    let events = dir.path().join("events.jsonl");
    wait_until_blocking(WAIT, "btcpeerd to sync from bcoin", || {
        std::fs::read_to_string(&events).is_ok_and(|log| {
            log.lines().any(|l| l.contains("\"synced\"") && l.contains(&format!("\"height\":{height}")))
        })
    });

    // 5 of 128 bits: another key matches by chance with a probability of about 1e-7.
    let (hash_funcs, tweak) = (5, 7);
    let filter = bloom_filter(watched.compute_txid().as_byte_array(), hash_funcs, tweak);
    let got = light_client(&[
        "bitcoin-net-filtered",
        "tcp",
        &listen,
        &block,
        &hex(&filter),
        &hash_funcs.to_string(),
        &tweak.to_string(),
        &watched.compute_txid().to_string(),
    ]);
    assert_eq!(got["services"]["NODE_BLOOM"], true, "{got}");
    assert_eq!(got["block"], block.as_str(), "{got}");
    // The partial merkle tree as it came: total, hashes (internal order), flags.
    let mut tree = got["total"].as_u64().unwrap().to_le_bytes()[..4].to_vec();
    let tree_hashes = got["hashes"].as_array().unwrap();
    tree.push(u8::try_from(tree_hashes.len()).unwrap());
    for h in tree_hashes {
        tree.extend(unhex(h.as_str().unwrap()));
    }
    let flags = unhex(got["flags"].as_str().unwrap());
    tree.push(u8::try_from(flags.len()).unwrap());
    tree.extend(flags);
    let tree: bitcoin::merkle_tree::PartialMerkleTree = deserialize(&tree).unwrap();
    let (mut matches, mut indexes) = (Vec::new(), Vec::new());
    let root = tree.extract_matches(&mut matches, &mut indexes).unwrap();
    assert_eq!(root.to_string(), block_json["merkleroot"].as_str().unwrap());
    assert_eq!(matches, vec![watched.compute_txid()], "{got}");
    let txs: Vec<&str> = got["txs"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(txs, vec![watched.compute_txid().to_string()], "the matched transaction, nothing else");

    // Without a filter: no answer (the next thing to arrive answers the `block` item after it).
    let listen: SocketAddr = listen.parse().unwrap();
    let block: BlockHash = block.parse().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut c = Client::connect(listen, 3).await;
        assert!(c.services.has(ServiceFlags::BLOOM), "{}", c.services);
        let filtered = Inventory::Unknown { inv_type: 3, hash: block.to_byte_array() };
        c.send(Message::GetData(vec![filtered, Inventory::Block(block)])).await;
        let first = c
            .next_where("an answer", |m| {
                matches!(m, Message::MerkleBlock(_) | Message::Block(_) | Message::Tx(_))
            })
            .await;
        assert!(matches!(&first, Message::Block(b) if b.block_hash() == block), "{first:?}");
    });
}

/// Kills the daemon when the test ends, failed or not (it would hold the test's output open).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `browser.html` at `/` on loopback and hands the body of the page's `POST /result` to
/// the returned channel.
fn serve_test_page() -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let page = std::fs::read(repo_root().join("tests/support/light-clients/browser.html")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let (status, body): (&str, &[u8]) =
                if request.starts_with("GET / ") || request.starts_with("GET /?") {
                    ("200 OK", &page)
                } else if request.starts_with("POST /result") {
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                    ("200 OK", b"")
                } else {
                    ("404 Not Found", b"")
                };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
        }
    });
    (addr, rx)
}

#[test]
fn a_browser_gets_headers_over_websocket() {
    let bcoin = Bcoin::start();
    bcoin.mine(BLOCKS as u64);
    let (height, tip) = best(&bcoin);
    let dir = tempfile::tempdir().unwrap();
    let ws = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let upstream = bcoin.p2p.to_string();
    let env = [
        ("BTCPEER_CONNECT", upstream.as_str()),
        ("BTCPEER_SYNC__HEADERS", "true"),
        ("BTCPEER_SYNC__SERVE", "true"),
        ("BTCPEER_LISTEN_WS", ws.as_str()),
    ];
    let (mut daemon, _) = daemon_with_events(dir.path(), &env);
    let events = dir.path().join("events.jsonl");
    wait_until_blocking(WAIT, "btcpeerd to sync from bcoin", || {
        std::fs::read_to_string(&events).is_ok_and(|log| {
            log.lines().any(|l| l.contains("\"synced\"") && l.contains(&format!("\"height\":{height}")))
        })
    });
    let (page, results) = serve_test_page();
    // Headless, loading only the loopback page: no first-run, sync, component or other traffic.
    let profile = tempfile::tempdir().unwrap();
    let mut browser = std::process::Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{page}/?ws={ws}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot run `chromium` (Debian's chromium package is required for the browser test)");
    let result = results.recv_timeout(WAIT);
    let _ = browser.kill();
    let _ = browser.wait();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let result: serde_json::Value =
        serde_json::from_str(&result.expect("the page reported nothing in time")).unwrap();
    assert_eq!(result["headers"], height, "{result}");
    assert_eq!(result["tip"], tip.to_string().as_str(), "{result}");
    let services = ServiceFlags::from(result["services"].as_u64().unwrap());
    assert!(services.has(ServiceFlags::NETWORK | ServiceFlags::WITNESS), "{result}");
}

/// A listening group without upstream peers, with a WebSocket listener: (group, tcp, ws).
async fn inbound_group(max_inbound: usize, max_ws: usize) -> (Addr<PeerGroup>, SocketAddr, SocketAddr) {
    let mut cfg = group_config(regtest_config(), true);
    cfg.policy.connect_only = true;
    cfg.max_inbound = max_inbound;
    cfg.max_inbound_per_ip = 0;
    let group = PeerGroup::new(cfg, Vec::new()).start();
    let ws_config =
        WsConfig { listen: vec!["127.0.0.1:0".parse().unwrap()], max_peers: max_ws, ..WsConfig::default() };
    let ws = group.send(ListenWebSocket(ws_config)).await.unwrap().unwrap()[0];
    let mut tcp;
    wait_for!(WAIT, "listener bound", {
        tcp = group.send(GetListenAddrs).await.unwrap();
        !tcp.is_empty()
    });
    (group, tcp[0], ws)
}

/// The transports of the group's peers that completed their handshake.
async fn ready_transports(group: &Addr<PeerGroup>) -> Vec<&'static str> {
    let peers = group.send(GetPeers).await.unwrap();
    peers.iter().filter(|p| p.state == btcpeer::peer::PeerState::Ready).map(|p| p.transport).collect()
}

/// A WebSocket newcomer gets what a TCP newcomer gets when the group is full (the inbound slots,
/// or the WebSocket cap): Core's `SelectNodeToEvict` picks a peer to make room for it. With ten
/// peers from one network group there is one to evict: one protected for its group, eight for
/// their latency, the older half of the one left. With fewer, all are protected and the
/// newcomer is refused (`headers_are_served_and_announced_as_core_does` checks that).
#[actix_rt::test]
async fn websocket_newcomers_go_through_eviction_as_tcp_ones_do() {
    for (max_inbound, max_ws, full) in [(10, 100, "inbound slots"), (100, 10, "websocket cap")] {
        let (group, tcp, ws) = inbound_group(max_inbound, max_ws).await;
        let mut clients = Vec::new();
        for n in 0..10 {
            clients.push(Client::connect_ws(ws, None, 100 + n).await.unwrap());
        }
        wait_for!(WAIT, "ten websocket peers", { ready_transports(&group).await == vec!["ws"; 10] });
        let _newcomer = Client::connect_ws(ws, None, 200)
            .await
            .unwrap_or_else(|e| panic!("{full} full: the websocket newcomer is refused: {e}"));
        // One of the ten made room: still ten peers, the newcomer among them.
        wait_for!(WAIT, format!("{full} full: one peer evicted for the websocket newcomer"), {
            ready_transports(&group).await == vec!["ws"; 10]
        });
        if full == "inbound slots" {
            // A TCP newcomer makes room the same way, among WebSocket peers too.
            let _tcp = Client::connect(tcp, 300).await;
            wait_for!(WAIT, "one peer evicted for the tcp newcomer", {
                let mut t = ready_transports(&group).await;
                t.sort();
                t == [&["v1"][..], &["ws"; 9][..]].concat()
            });
        }
        group.send(Shutdown).await.unwrap();
    }
}

/// btcpeerd refuses serving settings it cannot honour: exit 2, one line naming the key.
#[test]
fn serving_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bloom_alone = [("BTCPEER_SYNC__HEADERS", "true"), ("BTCPEER_SYNC__SERVE_BLOOM", "true")];
    for (args, env, key) in [
        (&["--serve"][..], &[][..], "sync.serve"),
        (&["--listen-ws", "localhost:1"][..], &[][..], "listen_ws"),
        (&[][..], &bloom_alone[..], "sync.serve_bloom"),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_btcpeerd"));
        cmd.args(["--network", "regtest", "--data-dir"]).arg(dir.path()).args(args).envs(env.iter().copied());
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "{key} not named: {stderr}");
    }
}

/// A serving node that listens announces itself to its outbound peers, as Core's
/// `MaybeSendAddr`, even to a peer dialed before its listener was bound and before it offered
/// blocks (it begins to offer them once an upstream full node, here bcoin, is ready).
#[actix_rt::test]
async fn a_serving_node_announces_itself_to_its_outbound_peers() {
    use common::raw_peer::{accept_and_handshake, announces_node, read_until};
    let bcoin = Bcoin::start();
    let scripted = tokio::net::TcpListener::bind(("127.0.10.31", 0)).await.unwrap();
    let mut cfg = group_config(regtest_config(), true);
    cfg.policy.static_peers = vec![PeerAddr::Ip(scripted.local_addr().unwrap()), PeerAddr::Ip(bcoin.p2p)];
    cfg.policy.connect_only = true;
    // A public address that is only ever written into an `addr` message, never dialed.
    cfg.external = vec!["1.2.3.4".parse().unwrap()];
    let group = PeerGroup::new(cfg, Vec::new()).start();
    let mut sync = ChainSyncConfig::new(btcpeer::Network::Regtest);
    sync.serve = true;
    let _sync = ChainSync::new(sync, group.clone()).unwrap().start();
    let (_write, mut frames) = accept_and_handshake(&scripted, WAIT).await;
    let mut port;
    wait_for!(WAIT, "the listener", {
        port = group.send(GetListenAddrs).await.unwrap().first().map(|a| a.port());
        port.is_some()
    });
    let port = port.unwrap();
    read_until(&mut frames, WAIT, "our self-announcement", |m| {
        announces_node(m, "1.2.3.4".parse().unwrap(), port)
    })
    .await
    .unwrap();
    group.send(Shutdown).await.unwrap();
}
