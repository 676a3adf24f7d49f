//! Hostile blocks against `btcpeerd --listen --sync-headers`: with the chain sync on, a `block`
//! nobody asked for is handled as Bitcoin Core's `ProcessMessage` BLOCK → `ProcessNewBlock` →
//! `AcceptBlock` → `AcceptBlockHeader` (`validation.cpp`). Each case connects from its own
//! loopback source address so a ban does not spoil the next.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::{Block, BlockHash};
use btcpeer::wire::Message;
use common::event_log::{read_events, wait_for_event};
use common::raw_peer::{closed, connect_from, frame, ping_pong, read_until, Frames};
use common::{free_port, wait_until_blocking};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

const WAIT: Duration = Duration::from_secs(20);

/// Regtest's genesis block moved onto `prev`, its nonce ground until the header meets its own
/// target: a block that passes every check needing no chain (proof of work, merkle root, ...).
fn block_on(prev: BlockHash) -> Block {
    let mut block = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
    block.header.prev_blockhash = prev;
    block.header.time += 1;
    // Version 1 is outdated after regtest's BIP34/65/66 heights ("bad-version").
    block.header.version = bitcoin::block::Version::from_consensus(0x2000_0000);
    let target = block.header.target();
    while !target.is_met_by(block.block_hash()) {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    block
}

/// Connects from `ip`, completes the handshake and checks the link with a ping.
async fn ready_peer(ip: Ipv4Addr, target: SocketAddr, nonce: u64) -> (OwnedWriteHalf, Frames) {
    let (mut w, mut frames) = connect_from(ip, target).await;
    let mut version = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce, ..Default::default() },
        None,
    );
    version.version = 70016;
    w.write_all(&frame(&Message::Version(version))).await.unwrap();
    read_until(&mut frames, WAIT, "verack", |m| matches!(m, Message::Verack)).await.unwrap();
    w.write_all(&frame(&Message::Verack)).await.unwrap();
    ping_pong(&mut w, &mut frames, WAIT, nonce).await.unwrap();
    (w, frames)
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(dir: &Path) -> (Daemon, SocketAddr) {
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let child = Command::new(env!("CARGO_BIN_EXE_btcpeerd"))
        .args(["--network", "regtest", "--sync-headers", "--listen", &listen, "--events"])
        .arg(dir.join("events.jsonl"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("RUST_LOG", "warn")
        // The scripted peers are on loopback, which Core (and the default) never bans.
        .env("BTCPEER_GROUP__BAN_LOCAL", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("btcpeerd runs");
    let daemon = Daemon(child);
    wait_until_blocking(Duration::from_secs(60), "btcpeerd listening", || {
        std::net::TcpStream::connect(&listen).is_ok()
    });
    (daemon, listen.parse().unwrap())
}

#[actix_rt::test]
async fn an_unsolicited_block_is_handled_as_core_with_the_chain_sync_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, target) = start_daemon(dir.path());
    let log = dir.path().join("events.jsonl");

    // Parent unknown: `AcceptBlockHeader` fails "prev-blk-not-found" (BLOCK_MISSING_PREV);
    // `BlockChecked` → `MaybePunishNodeForBlock` → `Misbehaving` (net_processing.cpp): the
    // peer is disconnected and discouraged (here: banned), the block dropped.
    let orphan_ip = Ipv4Addr::new(127, 0, 12, 1);
    let (mut w, frames) = ready_peer(orphan_ip, target, 1).await;
    let orphan = block_on(BlockHash::from_byte_array([9; 32]));
    w.write_all(&frame(&Message::Block(orphan.clone()))).await.unwrap();
    assert!(closed(frames, WAIT).await, "the sender of a block with an unknown parent is still connected");
    let ban =
        wait_for_event(&log, "banned", |e| e["event"] == "banned" && e["addr"] == orphan_ip.to_string());
    assert!(ban["reason"].as_str().is_some_and(|r| r.contains("prev-blk-not-found")), "{ban}");

    // Parent known (genesis): the block is processed, its header joins the chain (Core's
    // `AcceptBlockHeader` adds it), and the link stays.
    let good_ip = Ipv4Addr::new(127, 0, 12, 2);
    let (mut w, mut frames) = ready_peer(good_ip, target, 2).await;
    let child = block_on(bitcoin::constants::genesis_block(bitcoin::Network::Regtest).block_hash());
    w.write_all(&frame(&Message::Block(child.clone()))).await.unwrap();
    ping_pong(&mut w, &mut frames, WAIT, 3).await.expect("the sender of a block on a known parent is kept");
    let tip = child.block_hash().to_string();
    wait_for_event(&log, "headers", |e| e["event"] == "headers" && e["height"] == 1 && e["tip"] == tip);

    // Nothing of the orphan reached the chain, and only the orphan's sender was banned.
    let all = read_events(&log);
    assert!(!all.iter().any(|e| e["tip"] == orphan.block_hash().to_string()));
    let banned: Vec<&Value> = all.iter().filter(|e| e["event"] == "banned").collect();
    assert_eq!(banned.len(), 1, "{banned:?}");
}
