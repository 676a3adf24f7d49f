//! Hostile peers get exactly Bitcoin Core's answer. Scripted raw TCP clients attack one
//! `PeerGroup` listening on loopback; each case comes from its own source address (127.0.0.N)
//! so a ban never spoils another case, and all cases run at once. For each case: kept (a
//! ping is still answered, or the handshake still completes), or disconnected (we close the
//! socket) with or without a ban. Every case names Core's reaction and where it lives.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use actix::Actor;
use actix::Addr;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::BlockHash;
use btcpeer::group::{Ban, BanTarget};
use btcpeer::group::{GetBans, GetListenAddrs, PeerGroup, Shutdown};
use btcpeer::wire::{
    AddrV2, AddrV2Message, Address, GetBlocksMessage, GetHeadersMessage, Inventory, Message, ServiceFlags,
};
use common::raw_peer::{closed, connect_from, frame, ping_pong, read_until, Frames};
use common::{group_config, regtest_config};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(10);

/// How far the client gets before the hostile bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Nothing sent yet.
    Fresh,
    /// Our `version` sent and theirs received, no `verack` from us yet.
    Versioned,
    /// Full handshake done.
    Ready,
}

/// What must happen.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// The link stays up and the hostile input had no effect.
    Kept,
    /// We close the socket; `ban` says whether the address is banned.
    Closed { ban: bool },
}

struct Case {
    name: &'static str,
    phase: Phase,
    bytes: Vec<u8>,
    expect: Expect,
}

/// A frame with any command and payload, with a correct checksum.
fn raw(command: &[u8], payload: &[u8]) -> Vec<u8> {
    raw_with_magic(btcpeer::Network::Regtest.magic(), command, payload)
}

fn raw_with_magic(magic: [u8; 4], command: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    let mut cmd = [0u8; 12];
    cmd[..command.len()].copy_from_slice(command);
    out.extend_from_slice(&cmd);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&sha256d::Hash::hash(payload).as_byte_array()[..4]);
    out.extend_from_slice(payload);
    out
}

fn version(version: u32, user_agent_len: Option<usize>, nonce: u64) -> Message {
    let mut v = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce, ..Default::default() },
        None,
    );
    v.version = version;
    if let Some(n) = user_agent_len {
        v.user_agent = "x".repeat(n);
    }
    Message::Version(v)
}

fn regtest_header() -> bitcoin::block::Header {
    bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header
}

/// Regtest's genesis block changed by `f`, then its nonce ground until the header meets its own
/// target (about two tries at regtest's difficulty), so only the change is wrong.
fn mined_block(f: impl Fn(&mut bitcoin::Block)) -> bitcoin::Block {
    let mut block = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
    f(&mut block);
    let target = block.header.target();
    while !target.is_met_by(block.block_hash()) {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    block
}

fn with_bits(bits: u32) -> bitcoin::block::Header {
    let mut h = regtest_header();
    h.bits = bitcoin::CompactTarget::from_consensus(bits);
    h
}

fn hash(n: u8) -> BlockHash {
    BlockHash::from_byte_array([n; 32])
}

fn addrs(n: usize) -> Message {
    let a = Address::new(&"1.2.3.4:8333".parse().unwrap(), ServiceFlags::NETWORK);
    Message::Addr(vec![(0, a); n])
}

fn addrs_v2(n: usize) -> Message {
    let a = AddrV2Message {
        time: 0,
        services: ServiceFlags::NETWORK,
        addr: AddrV2::Ipv4(Ipv4Addr::new(1, 2, 3, 4)),
        port: 8333,
    };
    Message::AddrV2(vec![a; n])
}

fn blocks_inv(n: usize) -> Vec<Inventory> {
    vec![Inventory::Block(hash(1)); n]
}

fn cases() -> Vec<Case> {
    use Expect::*;
    use Phase::*;
    let ban = Closed { ban: true };
    let no_ban = Closed { ban: false };
    let header = regtest_header();
    let header_bytes = bitcoin::consensus::encode::serialize(&header);
    let c = |name, phase, bytes, expect| Case { name, phase, bytes, expect };
    vec![
        // --- transport (net.cpp V1Transport) ---
        // readHeader: "Wrong MessageStart" → the socket is closed, no discouragement.
        c("wrong magic", Fresh, raw_with_magic(btcpeer::Network::Mainnet.magic(), b"ping", &[0; 8]), no_ban),
        // readHeader: nMessageSize > MAX_PROTOCOL_MESSAGE_LENGTH → "Size too large", closed, no ban.
        c(
            "length 4,000,001",
            Ready,
            raw(b"ping", &[])[..16].iter().copied().chain(4_000_001u32.to_le_bytes()).chain([0; 4]).collect(),
            no_ban,
        ),
        // GetMessage: "Wrong checksum" → reject_message: the frame is dropped, the link kept.
        c(
            "bad checksum",
            Ready,
            {
                let mut f = frame(&Message::Ping(1));
                f[20] ^= 0xff;
                f
            },
            Kept,
        ),
        // GetMessage: !IsMessageTypeValid → "Invalid message type": dropped, kept.
        c("invalid command bytes", Ready, raw(b"pi\x01g", &[0; 8]), Kept),
        // ProcessMessage: "Unknown command" is ignored for extensibility.
        c("unknown command", Ready, raw(b"xyzzy", &[1, 2, 3]), Kept),
        // ProcessMessages catches the decoder's exception: a malformed payload is dropped.
        c(
            "truncated inv",
            Ready,
            {
                let f = frame(&Message::Inv(blocks_inv(2)));
                raw(b"inv", &f[24..f.len() - 1])
            },
            Kept,
        ),
        // --- handshake (ProcessMessage, VERSION and before verack) ---
        // "non-version message before version handshake": ignored.
        c("ping before version", Fresh, frame(&Message::Ping(9)), Kept),
        c("verack before version", Fresh, frame(&Message::Verack), Kept),
        c("inv before version", Fresh, frame(&Message::Inv(blocks_inv(1))), Kept),
        // "Unsupported message prior to verack": ignored.
        c("inv before verack", Versioned, frame(&Message::Inv(blocks_inv(1))), Kept),
        c("headers before verack", Versioned, frame(&Message::Headers(vec![header; 2_001])), Kept),
        // "redundant version message": ignored.
        c("duplicate version", Ready, frame(&version(70016, None, 77)), Kept),
        // `int nVersion`: 0xffffffff is −1 < MIN_PEER_PROTO_VERSION → fDisconnect, no ban.
        c("version 0xffffffff", Fresh, frame(&version(u32::MAX, None, 78)), no_ban),
        // nVersion < MIN_PEER_PROTO_VERSION (31800) → "obsolete version", fDisconnect.
        c("version 31799", Fresh, frame(&version(31_799, None, 79)), no_ban),
        // LIMITED_STRING(MAX_SUBVERSION_LENGTH) throws; ProcessMessages catches: the version
        // is dropped (nVersion stays 0) and a later one completes the handshake.
        c("user agent of 257 bytes", Fresh, frame(&version(70016, Some(257), 80)), Kept),
        // WTXIDRELAY / SENDADDRV2 after verack: "received after verack", fDisconnect, no ban.
        c("wtxidrelay after verack", Ready, frame(&Message::WtxidRelay), no_ban),
        c("sendaddrv2 after verack", Ready, frame(&Message::SendAddrV2), no_ban),
        // SENDCMPCT: `vRecv >> sendcmpct_hb`: Core's bool takes any non-zero byte (serialize.h).
        c(
            "sendcmpct announce byte 2",
            Ready,
            raw(b"sendcmpct", &[&[2u8][..], &2u64.to_le_bytes()].concat()),
            Kept,
        ),
        c("sendcmpct truncated", Ready, raw(b"sendcmpct", &[1, 2, 0]), Kept),
        // BIP434 `feature` is not in Core: an unknown command, ignored.
        c("feature after verack", Ready, raw(b"feature", &[0; 8]), Kept),
        // --- lists (ProcessMessage) ---
        // INV: vInv.size() > MAX_INV_SZ → Misbehaving.
        c("inv of 50,001", Ready, frame(&Message::Inv(blocks_inv(50_001))), ban),
        c("inv of 50,000", Ready, frame(&Message::Inv(blocks_inv(50_000))), Kept),
        // GETDATA: vInv.size() > MAX_INV_SZ → Misbehaving.
        c("getdata of 50,001", Ready, frame(&Message::GetData(blocks_inv(50_001))), ban),
        // NOTFOUND: an oversized list's contents are ignored, no penalty.
        c("notfound of 5,017", Ready, frame(&Message::NotFound(blocks_inv(5_017))), Kept),
        // ADDR/ADDRV2: vAddr.size() > MAX_ADDR_TO_SEND → Misbehaving.
        c("addr of 1,001", Ready, frame(&addrs(1_001)), ban),
        c("addrv2 of 1,001", Ready, frame(&addrs_v2(1_001)), ban),
        c("addr of 1,000", Ready, frame(&addrs(1_000)), Kept),
        // HEADERS: nCount > MAX_HEADERS_RESULTS → Misbehaving, checked right after the count.
        c("headers of 2,001", Ready, frame(&Message::Headers(vec![header; 2_001])), ban),
        c("headers count 2,001, no entries", Ready, raw(b"headers", &[0xfd, 0xd1, 0x07]), ban),
        // HEADERS: `ReadCompactSize(vRecv); // ignore tx count`.
        c(
            "header with tx count 1",
            Ready,
            raw(b"headers", &[&[1u8][..], &header_bytes, &[1]].concat()),
            Kept,
        ),
        // ProcessHeadersMessage: "non-continuous headers sequence" → Misbehaving.
        c("unchained headers", Ready, frame(&Message::Headers(vec![header, header])), ban),
        // ProcessHeadersMessage → CheckHeadersPoW → CheckProofOfWork → DeriveTarget (pow.cpp):
        // bits that overflow 256 bits or exceed powLimit → "header with invalid proof of
        // work", Misbehaving. (`from_compact` would truncate 0x407fffff to a target met.)
        c(
            "header bits 0x407fffff (overflow)",
            Ready,
            frame(&Message::Headers(vec![with_bits(0x407f_ffff)])),
            ban,
        ),
        c(
            "header bits 0x21008000 (above powLimit)",
            Ready,
            frame(&Message::Headers(vec![with_bits(0x2100_8000)])),
            ban,
        ),
        // --- unsolicited blocks (ProcessMessage BLOCK) ---
        // A valid block nobody asked for is processed; the link stays.
        c("unsolicited valid block", Ready, frame(&Message::Block(mined_block(|_| {}))), Kept),
        // IsBlockMutated (wrong merkle root, CVE-2012-2459 style) → Misbehaving("mutated block").
        c(
            "unsolicited block, wrong merkle root",
            Ready,
            frame(&Message::Block(mined_block(|b| {
                b.header.merkle_root = bitcoin::TxMerkleNode::from_byte_array([7; 32])
            }))),
            ban,
        ),
        // ProcessNewBlock → CheckBlockHeader "high-hash" (DeriveTarget fails) → BlockChecked →
        // MaybePunishNodeForBlock (BLOCK_INVALID_HEADER) → Misbehaving.
        c(
            "unsolicited block, bits 0x407fffff",
            Ready,
            frame(&Message::Block(mined_block(|b| b.header.bits = with_bits(0x407f_ffff).bits))),
            ban,
        ),
        // GETHEADERS / GETBLOCKS: locator.vHave.size() > MAX_LOCATOR_SZ → fDisconnect, no ban.
        c(
            "getheaders locator 102",
            Ready,
            frame(&Message::GetHeaders(GetHeadersMessage::new(vec![hash(2); 102], hash(0)))),
            no_ban,
        ),
        c(
            "getblocks locator 102",
            Ready,
            frame(&Message::GetBlocks(GetBlocksMessage::new(vec![hash(2); 102], hash(0)))),
            no_ban,
        ),
        c(
            "getheaders locator 101",
            Ready,
            frame(&Message::GetHeaders(GetHeadersMessage::new(vec![hash(2); 101], hash(0)))),
            Kept,
        ),
        // --- BIP37 without NODE_BLOOM: FILTERLOAD/FILTERADD/FILTERCLEAR/MEMPOOL → fDisconnect.
        c("filterclear without NODE_BLOOM", Ready, frame(&Message::FilterClear), no_ban),
        c("mempool without NODE_BLOOM", Ready, frame(&Message::MemPool), no_ban),
        // ProcessGetBlockData: a filtered-block request for a block Core does not have (or
        // without a loaded filter) gets nothing; no NODE_BLOOM check there.
        c(
            "getdata filtered block",
            Ready,
            frame(&Message::GetData(vec![Inventory::Unknown { inv_type: 3, hash: [5; 32] }])),
            Kept,
        ),
        // FEEFILTER: a value outside MoneyRange is ignored.
        c("feefilter out of range", Ready, raw(b"feefilter", &(-1i64).to_le_bytes()), Kept),
    ]
}

/// Sends our `version` and reads theirs and their `verack`.
async fn exchange_versions(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    frames: &mut Frames,
    nonce: u64,
) -> Result<(), String> {
    w.write_all(&frame(&version(70016, None, nonce))).await.map_err(|e| e.to_string())?;
    read_until(frames, WAIT, "version", |m| matches!(m, Message::Version(_))).await?;
    read_until(frames, WAIT, "verack", |m| matches!(m, Message::Verack)).await
}

/// Runs one case from `ip`; `Err` says what went differently.
async fn run(case: &Case, ip: Ipv4Addr, target: SocketAddr, nonce: u64) -> Result<(), String> {
    let (mut w, mut frames) = connect_from(ip, target).await;
    if case.phase != Phase::Fresh {
        exchange_versions(&mut w, &mut frames, nonce).await?;
    }
    if case.phase == Phase::Ready {
        w.write_all(&frame(&Message::Verack)).await.map_err(|e| e.to_string())?;
    }
    w.write_all(&case.bytes).await.map_err(|e| format!("writing the case: {e}"))?;
    match case.expect {
        Expect::Kept => {
            if case.phase == Phase::Fresh {
                exchange_versions(&mut w, &mut frames, nonce).await?;
            }
            if case.phase != Phase::Ready {
                w.write_all(&frame(&Message::Verack)).await.map_err(|e| e.to_string())?;
            }
            // Answered in order: the hostile input was processed and the link lives.
            ping_pong(&mut w, &mut frames, WAIT, nonce ^ 0x5a5a).await
        }
        Expect::Closed { .. } if closed(frames, WAIT).await => Ok(()),
        Expect::Closed { .. } => Err("still open".into()),
    }
}

async fn listen_addr(group: &Addr<PeerGroup>) -> SocketAddr {
    let mut listen;
    wait_for!(WAIT, "listener bound", {
        listen = group.send(GetListenAddrs).await.unwrap();
        !listen.is_empty()
    });
    listen[0]
}

fn banned_ips(bans: &[Ban]) -> BTreeSet<IpAddr> {
    bans.iter()
        .filter_map(|b| match &b.target {
            BanTarget::Ip(ip) => Some(*ip),
            _ => None,
        })
        .collect()
}

#[actix_rt::test]
async fn hostile_peers_get_cores_answer() {
    let mut cfg = group_config(regtest_config(), true);
    cfg.max_inbound = 200;
    let group = PeerGroup::new(cfg, vec![]).start();
    let target = listen_addr(&group).await;
    let cases = cases();
    assert!(cases.len() >= 30);
    let ip = |i: usize| Ipv4Addr::new(127, 0, 1, 10 + i as u8);
    let runs = cases
        .iter()
        .enumerate()
        .map(|(i, case)| async move { (case, ip(i), run(case, ip(i), target, 1_000 + i as u64).await) });
    let results = futures_util::future::join_all(runs).await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(case, ip, r)| r.as_ref().err().map(|e| format!("{} ({ip}): {e}", case.name)))
        .collect();
    assert!(failures.is_empty(), "cases not answered as Core does:\n{}", failures.join("\n"));

    // Bans: exactly the cases Core discourages. Wait for all expected ones; any extra ban
    // would have been made by then too (bans are made when the link ends, and all ended).
    let expected: BTreeSet<IpAddr> = results
        .iter()
        .filter(|(case, _, _)| case.expect == Expect::Closed { ban: true })
        .map(|(_, ip, _)| IpAddr::V4(*ip))
        .collect();
    let mut got;
    wait_for!(WAIT, "the expected bans", {
        got = banned_ips(&group.send(GetBans).await.unwrap());
        expected.is_subset(&got)
    });
    let name =
        |ip: &IpAddr| results.iter().find(|(_, i, _)| IpAddr::V4(*i) == *ip).map_or("?", |(c, _, _)| c.name);
    let extra: Vec<&str> = got.difference(&expected).map(name).collect();
    assert!(extra.is_empty(), "banned although Core does not discourage: {extra:?}");
    group.send(Shutdown).await.unwrap();
}
