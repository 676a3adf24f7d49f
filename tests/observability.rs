//! What the README promises an operator can observe, checked against a real bcoin node: the
//! trace log's frame dumps and decoded handshake fields, the write hook (`MessageSent`, btcd's
//! `OnWrite`), and every event of the README's event table produced by the daemon.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use btcpeer::bitcoin::hashes::Hash;
use btcpeer::bitcoin::{self, Block, BlockHash, Transaction};
use btcpeer::events::{MessageSent, Subscribers, Subscription, SUBSCRIBER_MAILBOX};
use btcpeer::peer::messages::GetStats;
use btcpeer::peer::{PeerActor, PeerAddr};
use btcpeer::wire::version::{build, LocalVersion};
use btcpeer::wire::{Address, Codec, Inventory, Message, ServiceFlags};
use btcpeer::Network;
use bytes::BytesMut;
use common::event_log::{read_events, wait_for_event};
use common::*;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

const WAIT: Duration = Duration::from_secs(30);

/// The daemon binary with no logging or configuration inherited from the test's environment.
fn btcpeerd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_btcpeerd"));
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("BTCPEER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Kills the child on drop, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes ANSI colour sequences (`ESC [ ... letter`), in case the log is coloured anyway.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The README's claim for `RUST_LOG=btcpeer=trace`: every message in both directions with its
/// command, length, decoded handshake fields and the frame's hex, magic first.
#[test]
fn trace_log_shows_frames_in_hex_and_decoded_version_fields() {
    let node = Bcoin::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let _daemon = Running(
        btcpeerd()
            .args(["--network", "regtest", "--data-dir"])
            .arg(dir.path())
            .args(["--connect", &node.p2p.to_string()])
            .env("RUST_LOG", "btcpeer=trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Regtest magic fabfb5da, then the command field "version" padded with NULs.
    let version_frame = "frame=fabfb5da76657273696f6e0000000000";
    let find = |dir: &str, needle: &str| {
        let text = strip_ansi(&std::fs::read_to_string(&log).unwrap_or_default());
        text.lines().find(|l| l.contains(&format!(" {dir} ")) && l.contains(needle)).map(str::to_owned)
    };
    let mut recv = None;
    wait_until_blocking(WAIT, "a trace line for bcoin's version", || {
        recv = find("recv", version_frame);
        recv.is_some()
    });
    let recv = recv.unwrap();
    for field in [
        "command=\"version\"",
        "user_agent=\"/bcoin:v1.0.2/\"",
        "protocol=70015",
        "services=0x9",
        "start_height=0",
        "relay=",
        "nonce=0x",
    ] {
        assert!(recv.contains(field), "{field} missing in {recv}");
    }
    let sent = find("send", version_frame).expect("a trace line for our version");
    assert!(sent.contains("user_agent=\"/btcpeer:"), "{sent}");
    assert!(sent.contains("protocol=70016"), "{sent}");
    // verack both ways: a bare header (24 bytes), with its empty-payload checksum.
    wait_until_blocking(WAIT, "verack trace lines", || {
        let verack = "frame=fabfb5da76657261636b000000000000000000005df6e0e2";
        find("recv", verack).is_some() && find("send", verack).is_some()
    });
    let verack = find("recv", "command=\"verack\"").unwrap();
    assert!(verack.contains("len=24"), "{verack}");
}

/// Forwards `MessageSent` notifications into a channel.
struct Recorder(mpsc::UnboundedSender<(bool, MessageSent)>, bool);

impl Actor for Recorder {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(SUBSCRIBER_MAILBOX);
    }
}

impl Handler<MessageSent> for Recorder {
    type Result = ();
    fn handle(&mut self, m: MessageSent, _: &mut Context<Self>) {
        let _ = self.0.send((self.1, m));
    }
}

/// The write hook: every message we send to bcoin is reported in order with its command and wire
/// length (the bytes the peer's statistics count once written); the message itself only to the
/// subscriber that asked for it. Deliveries are counted like every subscription.
#[actix_rt::test]
async fn sent_hook_reports_every_message_written_to_bcoin() {
    let node = Bcoin::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let light = Recorder(tx.clone(), false).start();
    let full = Recorder(tx, true).start();
    let mut subs = Subscribers::new();
    subs.add(Subscription::Sent(light.recipient()));
    subs.add(Subscription::SentWithMessage(full.recipient()));
    let peer = PeerActor::outbound(regtest_config(), PeerAddr::Ip(node.p2p), subs).start();

    let mut seen: Vec<(bool, MessageSent)> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Both subscribers have seen verack, and everything reported so far has been written.
        let stats = peer.send(GetStats).await.unwrap();
        while let Ok(m) = rx.try_recv() {
            seen.push(m);
        }
        let light_bytes: u64 = seen.iter().filter(|(f, _)| !f).map(|(_, m)| m.wire_len as u64).sum();
        let verack_both = seen.iter().filter(|(_, m)| m.command == "verack").count() == 2;
        if verack_both && stats.bytes_sent == light_bytes {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats {} bytes sent, hook {light_bytes}: {seen:#?}",
            stats.bytes_sent
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let light: Vec<&MessageSent> = seen.iter().filter(|(f, _)| !f).map(|(_, m)| m).collect();
    let full: Vec<&MessageSent> = seen.iter().filter(|(f, _)| *f).map(|(_, m)| m).collect();
    assert_eq!(light.len(), full.len());
    assert_eq!(light[0].command, "version", "{light:#?}");
    assert!(light.iter().all(|m| m.message.is_none() && m.addr == PeerAddr::Ip(node.p2p)));
    for (l, f) in light.iter().zip(&full) {
        assert_eq!((l.command, l.wire_len, l.peer), (f.command, f.wire_len, f.peer));
        let msg = f.message.as_deref().expect("SentWithMessage carries the message");
        let encoded = btcpeer::wire::Codec::new(btcpeer::Network::Regtest.magic()).encode_to_bytes(msg);
        assert_eq!(encoded.len(), f.wire_len, "{}", f.command);
    }
    let Some(Message::Version(v)) = full[0].message.as_deref() else { panic!("{:?}", full[0]) };
    assert!(v.user_agent.starts_with("/btcpeer:"), "{}", v.user_agent);
    // The same commands the peer's statistics counted as sent.
    let stats = peer.send(GetStats).await.unwrap();
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for m in &light {
        *counted.entry(m.command.to_owned()).or_default() += 1;
    }
    let from_stats: BTreeMap<String, u64> =
        stats.sent_per_command.iter().map(|(c, n)| (c.clone(), n.messages)).collect();
    assert_eq!(counted, from_stats);
    let sent_subs: Vec<_> = stats.subscribers.iter().filter(|s| s.kind == "sent").collect();
    assert_eq!(sent_subs.len(), 2, "{:?}", stats.subscribers);
    assert!(sent_subs.iter().all(|s| s.delivered == light.len() as u64 && s.dropped == 0), "{sent_subs:?}");
}

// ---- The README's event table against the daemon's records ----

/// A scripted peer on blocking sockets: handshakes, then sends what the test says, while a thread
/// answers `ping` and `getdata` (the transactions it was given are served, the rest is
/// `notfound`).
struct ScriptedPeer {
    write: Arc<Mutex<TcpStream>>,
    codec: Codec,
}

/// Reads one frame's message from a blocking stream (`None` at EOF or on an error).
fn read_message(stream: &mut TcpStream, codec: &mut Codec, buf: &mut BytesMut) -> Option<Message> {
    loop {
        if let Some(frame) = codec.decode(buf).ok()? {
            match frame.into_message() {
                Ok(msg) => return Some(msg),
                Err(_) => continue,
            }
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl ScriptedPeer {
    fn connect(to: SocketAddr, serve: Vec<Transaction>) -> ScriptedPeer {
        let mut stream = None;
        wait_until_blocking(WAIT, "the daemon's listener", || {
            stream = TcpStream::connect(to).ok();
            stream.is_some()
        });
        let mut stream = stream.unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut codec = Codec::new(Network::Regtest.magic());
        let local = LocalVersion { nonce: rand_nonce(), ..Default::default() };
        stream.write_all(&codec.encode_to_bytes(&Message::Version(build(&local, None)))).unwrap();
        stream.write_all(&codec.encode_to_bytes(&Message::Verack)).unwrap();
        let mut buf = BytesMut::new();
        while read_message(&mut stream, &mut codec, &mut buf).expect("handshake with the daemon")
            != Message::Verack
        {}
        let mut read = stream.try_clone().unwrap();
        read.set_read_timeout(None).unwrap();
        let write = Arc::new(Mutex::new(stream));
        let answer = write.clone();
        std::thread::spawn(move || {
            let mut codec = Codec::new(Network::Regtest.magic());
            while let Some(msg) = read_message(&mut read, &mut codec, &mut buf) {
                let replies = match msg {
                    Message::Ping(n) => vec![Message::Pong(n)],
                    Message::GetData(items) => {
                        let mut missing = Vec::new();
                        let mut replies = Vec::new();
                        for item in items {
                            let tx = serve.iter().find(|tx| match item {
                                Inventory::Transaction(id) | Inventory::WitnessTransaction(id) => {
                                    tx.compute_txid() == id
                                }
                                Inventory::WTx(id) => tx.compute_wtxid() == id,
                                _ => false,
                            });
                            match tx {
                                Some(tx) => replies.push(Message::Tx(tx.clone())),
                                None => missing.push(item),
                            }
                        }
                        if !missing.is_empty() {
                            replies.push(Message::NotFound(missing));
                        }
                        replies
                    }
                    _ => Vec::new(),
                };
                let mut w = answer.lock().unwrap();
                for reply in replies {
                    if w.write_all(&codec.encode_to_bytes(&reply)).is_err() {
                        return;
                    }
                }
            }
        });
        ScriptedPeer { write, codec }
    }

    fn send(&self, msg: Message) {
        self.write.lock().unwrap().write_all(&self.codec.encode_to_bytes(&msg)).unwrap();
    }
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        // The answering thread holds a clone of the socket: close both directions for it too.
        if let Ok(w) = self.write.lock() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn rand_nonce() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
}

fn unix_now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32
}

/// A regtest block on `prev` holding only a coinbase (tagged so two blocks differ), with a
/// valid proof of work.
fn mine_block(prev: BlockHash, time: u32, tag: u8) -> Block {
    use bitcoin::blockdata::script::Builder;
    use bitcoin::hashes::Hash;
    use bitcoin::{
        absolute, block, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Witness,
    };
    let coinbase = Transaction {
        version: transaction::Version::ONE,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: Builder::new().push_int(1).push_slice([tag, 0xee]).into_script(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(50_0000_0000),
            script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
        }],
    };
    let header = block::Header {
        version: block::Version::from_consensus(0x2000_0000),
        prev_blockhash: prev,
        merkle_root: bitcoin::TxMerkleNode::all_zeros(),
        time,
        bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
        nonce: 0,
    };
    let mut block = Block { header, txdata: vec![coinbase] };
    block.header.merkle_root = block.compute_merkle_root().expect("one transaction");
    while block.header.validate_pow(block.header.target()).is_err() {
        block.header.nonce += 1;
    }
    block
}

/// Runs btcpeerd on regtest with `args`, its state in a new directory and its events in a file.
fn spawn_daemon(dir: &Path, args: &[&str]) -> (Running, std::path::PathBuf) {
    let events = dir.join("events.jsonl");
    let child = btcpeerd()
        .args(["--network", "regtest", "--data-dir"])
        .arg(dir)
        .arg("--events")
        .arg(&events)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Running(child), events)
}

/// SIGTERM, then waits for the exit (the event log is complete then).
fn terminate(daemon: &mut Running) {
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut status = None;
    wait_until_blocking(WAIT, "btcpeerd to exit after SIGTERM", || {
        status = daemon.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{status:?}");
}

/// Peer-level events: bcoin and a scripted inbound peer make every one of them happen, and the
/// HTTP API bans and unbans an address.
fn peer_events(node: &Bcoin) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let http = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let connect = node.p2p.to_string();
    let (mut daemon, events) =
        spawn_daemon(dir.path(), &["--connect", &connect, "--listen", &listen, "--http", &http]);
    wait_for_event(&events, "bcoin ready", |e| e["event"] == "ready" && e["peer"] == connect.as_str());

    let tx = spend_op_true(bitcoin::Txid::from_byte_array([7; 32]), 1_000_000, 1_000);
    let peer = ScriptedPeer::connect(listen.parse().unwrap(), vec![tx.clone()]);
    wait_for_event(&events, "the scripted peer ready", |e| e["event"] == "ready" && e["inbound"] == true);
    peer.send(Message::Inv(vec![Inventory::Transaction(tx.compute_txid())]));
    let txid = tx.compute_txid().to_string();
    wait_for_event(&events, "the inv", |e| e["event"] == "inv" && e["items"][0]["hash"] == txid.as_str());
    wait_for_event(&events, "the tx", |e| e["event"] == "tx" && e["txid"] == txid.as_str());
    let addr = Address::new(&"1.2.3.4:8333".parse().unwrap(), ServiceFlags::NETWORK);
    peer.send(Message::Addr(vec![(unix_now(), addr)]));
    wait_for_event(&events, "the addr", |e| e["event"] == "addr" && e["addrs"][0]["addr"] == "1.2.3.4");
    let genesis = Network::Regtest.genesis_hash();
    let announced = mine_block(genesis, unix_now(), 1).header;
    peer.send(Message::Headers(vec![announced]));
    let hash = announced.block_hash().to_string();
    wait_for_event(&events, "the headers", |e| e["event"] == "headers" && e["hashes"][0] == hash.as_str());
    let block = mine_block(genesis, unix_now(), 2);
    peer.send(Message::Block(block.clone()));
    let hash = block.block_hash().to_string();
    wait_for_event(&events, "the block", |e| e["event"] == "block" && e["hash"] == hash.as_str());
    drop(peer);
    wait_for_event(&events, "the scripted peer gone", |e| {
        e["event"] == "disconnected" && e["peer"] != connect.as_str()
    });

    let body = serde_json::json!({"addr": "127.0.0.250", "duration": 3600, "reason": "docs check"});
    ureq::post(&format!("http://{http}/bans")).send_json(body).unwrap();
    wait_for_event(&events, "the ban", |e| e["event"] == "banned");
    ureq::delete(&format!("http://{http}/bans/127.0.0.250")).call().unwrap();
    wait_for_event(&events, "the unban", |e| e["event"] == "unbanned");
    terminate(&mut daemon);
    read_events(&events)
}

/// Chain events: header sync and block delivery from bcoin, a reorganisation, and a block
/// nobody can serve (announced by a scripted peer that answers `notfound`).
fn chain_events(node: &Bcoin) -> Vec<Value> {
    node.mine(3);
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let connect = node.p2p.to_string();
    let args = ["--connect", &connect, "--listen", &listen, "--sync-headers", "--fetch-blocks"];
    let (mut daemon, events) = spawn_daemon(dir.path(), &args);
    wait_for_event(&events, "synced", |e| e["event"] == "synced");
    let hash = node.mine(1).remove(0);
    wait_for_event(&events, "the new block", |e| e["event"] == "block" && e["hash"] == hash.as_str());
    node.rpc("invalidateblock", serde_json::json!([hash]));
    node.mine(2);
    wait_for_event(&events, "the reorg", |e| {
        e["event"] == "block_disconnected" && e["hash"] == hash.as_str()
    });

    let tip = node.rpc("getbestblockhash", serde_json::json!([]));
    let raw = node.rpc("getblockheader", serde_json::json!([tip, false]));
    let raw = raw.as_str().unwrap_or_else(|| panic!("getblockheader gave {raw}"));
    let bytes: Vec<u8> =
        (0..raw.len()).step_by(2).map(|i| u8::from_str_radix(&raw[i..i + 2], 16).unwrap()).collect();
    let tip: bitcoin::block::Header = bitcoin::consensus::deserialize(&bytes).unwrap();
    let orphan = mine_block(tip.block_hash(), tip.time + 1, 3).header;
    let peer = ScriptedPeer::connect(listen.parse().unwrap(), Vec::new());
    peer.send(Message::Headers(vec![orphan]));
    let hash = orphan.block_hash().to_string();
    wait_for_event(&events, "block_failed", |e| e["event"] == "block_failed" && e["hash"] == hash.as_str());
    terminate(&mut daemon);
    read_events(&events)
}

/// A `dropped` record: the log's queue set small and to drop, then flooded with `inv`s.
fn dropped_events() -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let env = [("BTCPEER_EVENT_LOG__QUEUE_BYTES", "65536"), ("BTCPEER_EVENT_LOG__WHEN_FULL", "drop")];
    let (child, listen) = common::daemon_with_events(dir.path(), &env);
    let mut daemon = Running(child);
    let events = dir.path().join("events.jsonl");
    let out = Command::new(common::example_binary("inv_flood"))
        .args([&listen, "2", "15", "5000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "inv_flood: {}", String::from_utf8_lossy(&out.stderr));
    wait_for_event(&events, "a dropped record", |e| e["event"] == "dropped");
    terminate(&mut daemon);
    read_events(&events)
}

/// The field paths of one record: top-level keys, keys of objects inside them (`a.b`), and keys
/// of the objects in a list (`a[].b`, besides `a`). Deeper values count as their key.
fn field_paths(record: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Value::Object(map) = record else { panic!("event is not an object: {record}") };
    for (key, value) in map {
        match value {
            Value::Object(inner) => out.extend(inner.keys().map(|k| format!("{key}.{k}"))),
            Value::Array(items) => {
                out.insert(key.clone());
                for item in items {
                    if let Value::Object(inner) = item {
                        out.extend(inner.keys().map(|k| format!("{key}[].{k}")));
                    }
                }
            }
            _ => {
                out.insert(key.clone());
            }
        }
    }
    out
}

/// `(event, fields)` of every row of the README's event table.
fn readme_event_rows() -> Vec<(String, BTreeSet<String>)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let table = readme
        .split("### Event log")
        .nth(1)
        .and_then(|s| s.split("| event | fields | meaning |").nth(1))
        .and_then(|s| s.split("\n\n").next())
        .expect("README has the event table");
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let event = cells[0].trim_start_matches("| ").trim_matches('`').to_owned();
            let fields = cells[1]
                .split(", ")
                .map(|f| {
                    assert!(
                        f.starts_with('`') && f.ends_with('`'),
                        "event {event}: field {f:?} is not `name`"
                    );
                    f.trim_matches('`').to_owned()
                })
                .collect();
            (event, fields)
        })
        .collect()
}

/// Every row of the README's event table is a record the daemon wrote in these runs, field for
/// field, and every record the daemon wrote is documented by a row (a record may lack the
/// element fields of an empty list).
#[test]
fn readme_event_table_is_what_the_daemon_writes() {
    let rows = readme_event_rows();
    assert!(rows.len() >= 13, "parsed only {rows:?}");
    let node = Bcoin::start();
    let mut records = peer_events(&node);
    records.extend(chain_events(&node));
    records.extend(dropped_events());
    let mut seen: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for record in &records {
        let mut paths = field_paths(record);
        assert!(paths.remove("ts") && paths.remove("event"), "every event has ts and event: {record}");
        let event = record["event"].as_str().unwrap().to_owned();
        let documented = rows.iter().any(|(e, fields)| *e == event && paths.is_subset(fields));
        assert!(documented, "README's event table has no row for {record}");
        seen.entry(event).or_default().insert(paths);
    }
    for (event, fields) in &rows {
        let shapes = seen.get(event).cloned().unwrap_or_default();
        assert!(
            shapes.contains(fields),
            "README row {event} {fields:?} was never written; seen: {shapes:#?}"
        );
    }
}
