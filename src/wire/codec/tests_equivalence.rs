//! Our decoder against bitcoin's `RawNetworkMessage` decoder: the same messages and the same
//! failures for every message type, malformed and mutated frames, huge announced counts; and
//! the places where we follow Core instead.

use super::tests::{hex, mainnet, raw_frame, GENESIS_BLOCK_HEX};
use super::*;
use crate::wire::{GetHeadersMessage, Inventory, SendCmpct};
use crate::Network;
use bitcoin::hashes::{sha256d, Hash};

mod alloc_probe {
    //! Records the largest single allocation made on the current thread while probing, so a test
    //! can show a decoder never reserves memory by an announced count.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        /// `Some(largest so far)` while probing on this thread.
        static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
    }

    pub struct Probe;

    fn note(size: usize) {
        let _ = LARGEST.try_with(|c| {
            if let Some(max) = c.get() {
                c.set(Some(max.max(size)));
            }
        });
    }

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for Probe {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc(layout)
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc_zeroed(layout)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            System.realloc(ptr, layout, new_size)
        }
    }

    /// Runs `f` and returns its result with the largest allocation (bytes) it made.
    pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|c| c.set(Some(0)));
        let out = f();
        let largest = LARGEST.with(|c| c.take()).unwrap_or(0);
        (out, largest)
    }
}

#[global_allocator]
static PROBE: alloc_probe::Probe = alloc_probe::Probe;

/// What bitcoin's own decoder makes of a whole frame.
fn reference(frame: &[u8]) -> Result<Message, encode::Error> {
    bitcoin::p2p::message::RawNetworkMessage::consensus_decode_from_finite_reader(&mut &frame[..])
        .map(|raw| raw.into_payload())
}

/// Our decode of one whole frame.
pub(super) fn ours(frame: &[u8]) -> Frame {
    let mut buf = BytesMut::from(frame);
    let decoded = mainnet().decode(&mut buf).unwrap().expect("a whole frame");
    assert!(buf.is_empty());
    decoded
}

/// Asserts our decoder and bitcoin's agree on `frame`: the same message, or both an error (with
/// the same reason). Only `version` may differ: where bitcoin fails we fall back to the lenient
/// decoder. Returns our result.
fn assert_equivalent(frame: &[u8]) -> Result<Message, CodecError> {
    let decoded = ours(frame);
    let command = decoded.command;
    let message = decoded.into_message();
    if let Some(expected) = core_divergence(command, frame) {
        assert!(
            same_outcome(&message, &expected),
            "{command} (read as Core does): {message:?} vs {expected:?}"
        );
        return message;
    }
    match (&message, reference(frame)) {
        (Ok(ours), Ok(theirs)) => assert_eq!(ours, &theirs, "{command}: {frame:02x?}"),
        (_, Err(encode::Error::InvalidChecksum { .. })) => {
            assert_eq!(message, Err(CodecError::BadChecksum { command }))
        }
        (_, Err(e)) if command == "version" => {
            let lenient = crate::wire::version::decode_lenient(&frame[HEADER_SIZE..]).map(Message::Version);
            let expected = lenient.ok_or_else(|| CodecError::Malformed { command, reason: e.to_string() });
            assert_eq!(message, expected, "version: {frame:02x?}");
        }
        (_, Err(e)) => assert_eq!(
            message,
            Err(CodecError::Malformed { command, reason: e.to_string() }),
            "{command}: {frame:02x?}"
        ),
        (Err(e), Ok(theirs)) => panic!("{command}: we failed ({e}) where bitcoin decoded {theirs:?}"),
    }
    message
}

/// Where we read as Core does rather than as bitcoin does, the expected result; `None` where
/// bitcoin is the reference. Written from Core's source, independently of the decoder:
/// `headers` (count checked before the entries, each tx count read and ignored) and `sendcmpct`
/// (any non-zero announce byte is true).
fn core_divergence(command: &str, frame: &[u8]) -> Option<Result<Message, CodecError>> {
    if sha256d::Hash::hash(&frame[HEADER_SIZE..]).as_byte_array()[..4] != frame[20..24] {
        return None;
    }
    let payload = &frame[HEADER_SIZE..];
    let malformed =
        |reason: &str| Err(CodecError::Malformed { command: "headers", reason: reason.to_owned() });
    match command {
        "sendcmpct" => Some(match payload {
            [announce, version @ ..] if version.len() == 8 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(version);
                Ok(Message::SendCmpct(SendCmpct {
                    send_compact: *announce != 0,
                    version: u64::from_le_bytes(v),
                }))
            }
            _ => Err(CodecError::Malformed { command: "sendcmpct", reason: String::new() }),
        }),
        "headers" => {
            let mut r = payload;
            let compact = |r: &mut &[u8]| -> Option<u64> {
                let n = VarInt::consensus_decode_from_finite_reader(r).ok()?.0;
                (n <= 0x0200_0000).then_some(n)
            };
            let Some(count) = compact(&mut r) else { return Some(malformed("count")) };
            if count > 2_000 {
                return Some(Err(CodecError::TooManyEntries { command: "headers", count, max: 2_000 }));
            }
            let mut headers = Vec::new();
            for _ in 0..count {
                let Ok(h) = bitcoin::block::Header::consensus_decode_from_finite_reader(&mut r) else {
                    return Some(malformed("header"));
                };
                headers.push(h);
                if compact(&mut r).is_none() {
                    return Some(malformed("tx count"));
                }
            }
            Some(if r.is_empty() { Ok(Message::Headers(headers)) } else { malformed("extra bytes") })
        }
        _ => None,
    }
}

/// Compares results, ignoring the wording of `Malformed` reasons (the model above has its own).
pub(super) fn same_outcome(a: &Result<Message, CodecError>, b: &Result<Message, CodecError>) -> bool {
    match (a, b) {
        (Err(CodecError::Malformed { command: x, .. }), Err(CodecError::Malformed { command: y, .. })) => {
            x == y
        }
        _ => a == b,
    }
}

pub(super) fn frame_of(msg: &Message) -> Vec<u8> {
    mainnet().encode_to_bytes(msg).to_vec()
}

fn segwit_tx() -> bitcoin::Transaction {
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Txid, Witness};
    bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::from_consensus(850_000),
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([7; 32]), vout: 1 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::from_slice(&[vec![0x30; 71], vec![0x02; 33]]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(12_345),
            script_pubkey: ScriptBuf::from_bytes([&[0x00, 0x14][..], &[9; 20]].concat()),
        }],
    }
}

/// Genesis coinbase plus one segwit transaction (decoding does not check the merkle root).
fn segwit_block() -> bitcoin::Block {
    let mut block = bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin);
    block.txdata.push(segwit_tx());
    block
}

/// One representative value of every `NetworkMessage` variant, plus unknown commands (including
/// two we count by name but bitcoin does not decode).
pub(super) fn every_variant() -> Vec<Message> {
    use crate::wire::{AddrV2, AddrV2Message, Address, ServiceFlags};
    use bitcoin::bip152::{BlockTransactions, BlockTransactionsRequest, HeaderAndShortIds};
    use bitcoin::bip158::{FilterHash, FilterHeader};
    use bitcoin::p2p::message::CommandString;
    use bitcoin::p2p::message_blockdata::GetBlocksMessage;
    use bitcoin::p2p::message_bloom::{BloomFlags, FilterAdd, FilterLoad};
    use bitcoin::p2p::message_compact_blocks::{BlockTxn, CmpctBlock, GetBlockTxn};
    use bitcoin::p2p::message_filter::{
        CFCheckpt, CFHeaders, CFilter, GetCFCheckpt, GetCFHeaders, GetCFilters,
    };
    use bitcoin::p2p::message_network::{Reject, RejectReason};
    use bitcoin::{BlockHash, MerkleBlock, Txid, Wtxid};

    let block = segwit_block();
    let hash = block.block_hash();
    let other = BlockHash::from_byte_array([3; 32]);
    let segwit_txid = block.txdata[1].compute_txid();
    let version = crate::wire::version::build(
        &crate::wire::version::LocalVersion { nonce: 9, ..Default::default() },
        None,
    );
    let inventory = vec![
        Inventory::Transaction(Txid::from_byte_array([1; 32])),
        Inventory::Block(hash),
        Inventory::CompactBlock(hash),
        Inventory::WTx(Wtxid::from_byte_array([2; 32])),
        Inventory::WitnessTransaction(Txid::from_byte_array([4; 32])),
        Inventory::WitnessBlock(hash),
        Inventory::Unknown { inv_type: 0, hash: [5; 32] },
        Inventory::Unknown { inv_type: 0x1234, hash: [6; 32] },
    ];
    let addr_v2 =
        |addr| AddrV2Message { time: 1_700_000_000, services: ServiceFlags::NETWORK, addr, port: 8333 };
    vec![
        Message::Version(version),
        Message::Verack,
        Message::Addr(vec![
            (1_700_000_000, Address::new(&"1.2.3.4:8333".parse().unwrap(), ServiceFlags::NETWORK)),
            (1_700_000_001, Address::new(&"[2001:db8::1]:18333".parse().unwrap(), ServiceFlags::WITNESS)),
        ]),
        Message::AddrV2(vec![
            addr_v2(AddrV2::Ipv4("5.6.7.8".parse().unwrap())),
            addr_v2(AddrV2::Ipv6("2001:db8::2".parse().unwrap())),
            addr_v2(AddrV2::TorV2([8; 10])),
            addr_v2(AddrV2::TorV3([9; 32])),
            addr_v2(AddrV2::I2p([10; 32])),
            addr_v2(AddrV2::Cjdns("fc00::1".parse().unwrap())),
            addr_v2(AddrV2::Unknown(42, vec![1, 2, 3, 4, 5])),
        ]),
        Message::Inv(inventory.clone()),
        Message::GetData(inventory.clone()),
        Message::NotFound(inventory),
        Message::GetBlocks(GetBlocksMessage::new(vec![hash, other], BlockHash::all_zeros())),
        Message::GetHeaders(GetHeadersMessage::new(vec![hash, other], other)),
        Message::MemPool,
        Message::Tx(segwit_tx()),
        Message::Block(block.clone()),
        Message::Headers(vec![
            block.header,
            bitcoin::constants::genesis_block(bitcoin::Network::Testnet).header,
        ]),
        Message::SendHeaders,
        Message::GetAddr,
        Message::Ping(0x0102_0304_0506_0708),
        Message::Pong(u64::MAX),
        Message::MerkleBlock(MerkleBlock::from_block_with_predicate(&block, |t| *t == segwit_txid)),
        Message::FilterLoad(FilterLoad {
            filter: vec![0xaa; 36],
            hash_funcs: 11,
            tweak: 7,
            flags: BloomFlags::All,
        }),
        Message::FilterAdd(FilterAdd { data: vec![0xbb; 33] }),
        Message::FilterClear,
        Message::GetCFilters(GetCFilters { filter_type: 0, start_height: 800_000, stop_hash: hash }),
        Message::CFilter(CFilter { filter_type: 0, block_hash: hash, filter: vec![1, 2, 3, 4] }),
        Message::GetCFHeaders(GetCFHeaders { filter_type: 0, start_height: 1, stop_hash: hash }),
        Message::CFHeaders(CFHeaders {
            filter_type: 0,
            stop_hash: hash,
            previous_filter_header: FilterHeader::from_byte_array([11; 32]),
            filter_hashes: vec![FilterHash::from_byte_array([12; 32]), FilterHash::from_byte_array([13; 32])],
        }),
        Message::GetCFCheckpt(GetCFCheckpt { filter_type: 0, stop_hash: hash }),
        Message::CFCheckpt(CFCheckpt {
            filter_type: 0,
            stop_hash: hash,
            filter_headers: vec![FilterHeader::from_byte_array([14; 32])],
        }),
        Message::SendCmpct(SendCmpct { send_compact: true, version: 2 }),
        Message::CmpctBlock(CmpctBlock {
            compact_block: HeaderAndShortIds::from_block(&block, 42, 2, &[]).unwrap(),
        }),
        Message::GetBlockTxn(GetBlockTxn {
            txs_request: BlockTransactionsRequest { block_hash: hash, indexes: vec![0, 1, 5] },
        }),
        Message::BlockTxn(BlockTxn {
            transactions: BlockTransactions { block_hash: hash, transactions: vec![segwit_tx()] },
        }),
        Message::Alert(vec![0xcc; 40]),
        Message::Reject(Reject {
            message: "tx".into(),
            ccode: RejectReason::Dust,
            reason: "dust".into(),
            hash: sha256d::Hash::hash(b"rejected"),
        }),
        Message::FeeFilter(1_000),
        Message::WtxidRelay,
        Message::SendAddrV2,
        Message::Unknown {
            command: CommandString::try_from_static("frobnicate").unwrap(),
            payload: vec![1, 2, 3],
        },
        Message::Unknown {
            command: CommandString::try_from_static("sendtxrcncl").unwrap(),
            payload: [&1u32.to_le_bytes()[..], &7u64.to_le_bytes()].concat(),
        },
        Message::Unknown { command: CommandString::try_from_static("feature").unwrap(), payload: vec![] },
    ]
}

/// Every command name bitcoin 0.32's `RawNetworkMessage` decodes ("unknown" is `Unknown`).
const BITCOIN_COMMANDS: [&str; 37] = [
    "addr",
    "addrv2",
    "alert",
    "block",
    "blocktxn",
    "cfcheckpt",
    "cfheaders",
    "cfilter",
    "cmpctblock",
    "feefilter",
    "filteradd",
    "filterclear",
    "filterload",
    "getaddr",
    "getblocks",
    "getblocktxn",
    "getcfcheckpt",
    "getcfheaders",
    "getcfilters",
    "getdata",
    "getheaders",
    "headers",
    "inv",
    "mempool",
    "merkleblock",
    "notfound",
    "ping",
    "pong",
    "reject",
    "sendaddrv2",
    "sendcmpct",
    "sendheaders",
    "tx",
    "unknown",
    "verack",
    "version",
    "wtxidrelay",
];

#[test]
fn every_message_type_decodes_as_bitcoin_does() {
    let messages = every_variant();
    let mut covered: Vec<&str> = messages.iter().map(|m| m.cmd()).collect();
    covered.sort_unstable();
    covered.dedup();
    assert_eq!(covered, BITCOIN_COMMANDS, "every variant is represented");
    for msg in &messages {
        let frame = frame_of(msg);
        let decoded = assert_equivalent(&frame).unwrap();
        // Compared re-encoded: `merkleblock` pads its flag bits to whole bytes.
        assert_eq!(frame_of(&decoded), frame, "{} round trip", msg.cmd());
    }
}

#[test]
fn unknown_and_odd_commands_decode_as_bitcoin_does() {
    // Counted-but-undecoded names keep their payload whole, trailing bytes and all.
    for command in [&b"sendtxrcncl"[..], b"feature", b"frobnicate", b"", b"twelve_bytes"] {
        for payload in [&[][..], &[0xff; 9][..]] {
            let decoded = assert_equivalent(&raw_frame(Network::Mainnet.magic(), command, payload));
            assert!(matches!(decoded, Ok(Message::Unknown { .. })), "{command:?}");
        }
    }
}

/// Payload of a `headers` message with one header followed by `tx_count`.
fn one_header_payload(tx_count: u8) -> Vec<u8> {
    let header = bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin).header;
    let mut payload = vec![1];
    payload.extend_from_slice(&encode::serialize(&header));
    payload.push(tx_count);
    payload
}

#[test]
fn malformed_payloads_fail_as_in_bitcoin() {
    let max_money = bitcoin::Amount::MAX_MONEY.to_sat() as i64;
    let genesis = hex(GENESIS_BLOCK_HEX);
    let inv = frame_of(&Message::Inv(vec![Inventory::Block(Network::Mainnet.genesis_hash())]));
    let inv_payload = &inv[HEADER_SIZE..];
    let tx = encode::serialize(&segwit_tx());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ping", vec![1, 2, 3]),
        ("ping", vec![0; 9]),
        ("verack", vec![0]),
        ("sendaddrv2", vec![1]),
        ("inv", inv_payload[..inv_payload.len() - 1].to_vec()),
        ("inv", [inv_payload, &[0]].concat()),
        ("block", genesis[..genesis.len() - 1].to_vec()),
        ("block", [&genesis[..], &[0]].concat()),
        ("tx", tx[..tx.len() - 1].to_vec()),
        ("tx", [&tx[..], &[0]].concat()),
        ("feefilter", (-1i64).to_le_bytes().to_vec()),
        ("feefilter", (max_money + 1).to_le_bytes().to_vec()),
        ("feefilter", i64::MIN.to_le_bytes().to_vec()),
        ("feefilter", vec![0; 7]),
        ("headers", one_header_payload(0)[..81].to_vec()),
        ("headers", [&one_header_payload(0)[..], &[0]].concat()),
        ("headers", vec![0xfd, 0x01, 0x00]),       // non-canonical count
        ("addrv2", vec![1, 0, 0, 0, 0, 0, 4, 31]), // Tor v3 with a 31-byte key
        ("sendcmpct", vec![2, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (command, payload) in cases {
        let result = assert_equivalent(&raw_frame(Network::Mainnet.magic(), command.as_bytes(), &payload));
        assert!(
            matches!(&result, Err(CodecError::Malformed { command: c, .. }) if *c == command),
            "{command} {payload:02x?}: {result:?}"
        );
    }
    // The feefilter range is inclusive at both ends.
    for fee in [0, max_money] {
        let frame = raw_frame(Network::Mainnet.magic(), b"feefilter", &fee.to_le_bytes());
        assert_eq!(assert_equivalent(&frame), Ok(Message::FeeFilter(fee)));
    }
}

#[test]
fn headers_and_sendcmpct_are_read_as_core_reads_them() {
    let magic = Network::Mainnet.magic();
    // A non-zero transaction count is read and ignored (`ReadCompactSize(vRecv); // ignore`).
    let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin).header;
    for tx_count in [&[1u8][..], &[0xfd, 0x00, 0x01]] {
        let payload = [&one_header_payload(0)[..81], tx_count].concat();
        let frame = raw_frame(magic, b"headers", &payload);
        assert_eq!(ours(&frame).into_message(), Ok(Message::Headers(vec![genesis])));
    }
    // A count over 2,000 is reported before the entries, which need not be there.
    let frame = raw_frame(magic, b"headers", &[0xfd, 0xd1, 0x07]);
    assert_eq!(
        ours(&frame).into_message(),
        Err(CodecError::TooManyEntries { command: "headers", count: 2_001, max: 2_000 })
    );
    assert!(!CodecError::TooManyEntries { command: "headers", count: 2_001, max: 2_000 }.is_fatal());
    // Above Core's MAX_SIZE the compact size itself throws: just malformed.
    let frame = raw_frame(magic, b"headers", &[0xfe, 0x01, 0x00, 0x00, 0x02]);
    assert!(matches!(ours(&frame).into_message(), Err(CodecError::Malformed { command: "headers", .. })));
    // Exactly 2,000 announced and missing is a plain truncation.
    let frame = raw_frame(magic, b"headers", &[0xfd, 0xd0, 0x07]);
    assert!(matches!(ours(&frame).into_message(), Err(CodecError::Malformed { command: "headers", .. })));
    // sendcmpct: Core's bool takes any non-zero byte as true.
    for (byte, hb) in [(0u8, false), (1, true), (2, true), (0xff, true)] {
        let payload = [&[byte][..], &2u64.to_le_bytes()].concat();
        let frame = raw_frame(magic, b"sendcmpct", &payload);
        assert_eq!(
            ours(&frame).into_message(),
            Ok(Message::SendCmpct(SendCmpct { send_compact: hb, version: 2 })),
            "byte {byte}"
        );
    }
}

/// The slice fast path of `decode_headers` against bitcoin's field-by-field reader: random
/// 80-byte headers (every bit pattern is one), followed by one-byte and longer tx counts, and
/// payloads cut anywhere.
#[test]
fn headers_read_from_the_slice_equal_bitcoins_decoding() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..500 {
        let count = 1 + (next() % 5) as usize;
        let mut payload = vec![count as u8];
        for i in 0..count {
            let mut entry = [0u8; 80];
            for chunk in entry.chunks_exact_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            payload.extend_from_slice(&entry);
            match (round + i) % 4 {
                0 => payload.push(0),
                1 => payload.push(0xfc),
                2 => payload.extend_from_slice(&[0xfd, 0x00, 0x01]),
                _ => payload.push((next() % 0xfd) as u8),
            }
        }
        let mut reference = &payload[1..];
        let expected: Vec<Header> = (0..count)
            .map(|_| {
                let h = Header::consensus_decode_from_finite_reader(&mut reference).expect("80 bytes");
                VarInt::consensus_decode_from_finite_reader(&mut reference).expect("tx count");
                h
            })
            .collect();
        let mut r = &payload[..];
        assert_eq!(decode_headers(&mut r).expect("well formed"), expected, "round {round}");
        assert!(r.is_empty());
        // Cut short anywhere inside the entries: an error, never a panic or a partial list.
        let cut = 1 + (next() as usize % (payload.len() - 1));
        assert!(decode_headers(&mut &payload[..cut]).is_err(), "round {round} cut {cut}");
    }
}

#[test]
fn bad_checksum_fails_in_both_for_every_command() {
    for msg in every_variant() {
        let mut frame = frame_of(&msg);
        frame[23] ^= 1;
        assert!(matches!(assert_equivalent(&frame), Err(CodecError::BadChecksum { .. })));
    }
}

#[test]
fn version_fallback_is_kept() {
    let version = crate::wire::version::build(
        &crate::wire::version::LocalVersion { nonce: 3, ..Default::default() },
        None,
    );
    let full = encode::serialize(&version);
    // Without the relay byte bitcoin fails; we decode it with relay = true.
    let frame = raw_frame(Network::Mainnet.magic(), b"version", &full[..full.len() - 1]);
    assert!(reference(&frame).is_err());
    match assert_equivalent(&frame) {
        Ok(Message::Version(v)) => assert!(v.relay && v.nonce == 3),
        other => panic!("expected version, got {other:?}"),
    }
}

/// Frames announcing an absurd element count (a canonical 9-byte varint) in a tiny payload.
fn huge_count_frames() -> Vec<(&'static str, Vec<u8>)> {
    let huge = [0xff; 9]; // u64::MAX elements
    let big = [0xfe, 0xff, 0xff, 0xff, 0xff]; // u32::MAX elements
    let hash = [7u8; 32];
    let mut cases: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for count in [&huge[..], &big[..]] {
        let with = |prefix: &[u8], suffix: &[u8]| [prefix, count, suffix].concat();
        let header = encode::serialize(&bitcoin::constants::genesis_block(bitcoin::Network::Bitcoin).header);
        cases.extend([
            ("inv", with(&[], &[1, 0, 0, 0])),
            ("getdata", with(&[], &[])),
            ("notfound", with(&[], &[2])),
            ("addr", with(&[], &[0; 10])),
            ("addrv2", with(&[], &[0; 10])),
            ("getblocks", with(&70016u32.to_le_bytes(), &hash)),
            ("getheaders", with(&70016u32.to_le_bytes(), &hash)),
            ("headers", with(&[], &header)),
            ("block", with(&header, &[1, 0, 0, 0])),
            ("tx", with(&2u32.to_le_bytes(), &[])),
            ("alert", with(&[], &[1, 2, 3])),
            ("filterload", with(&[], &[0; 9])),
            ("filteradd", with(&[], &[0; 9])),
            ("cfilter", with(&[&[0][..], &hash].concat(), &[1])),
            ("cfheaders", with(&[&[0][..], &hash, &hash].concat(), &[])),
            ("cfcheckpt", with(&[&[0][..], &hash].concat(), &hash)),
            ("cmpctblock", with(&[&header[..], &[0; 8]].concat(), &[0; 6])),
            ("getblocktxn", with(&hash, &[0])),
            ("blocktxn", with(&hash, &[2, 0, 0, 0])),
            ("reject", with(&[], b"tx")),
            ("merkleblock", with(&[&header[..], &[0; 4]].concat(), &hash)),
        ]);
    }
    cases
}

#[test]
fn huge_announced_counts_fail_without_allocating_by_the_count() {
    for (command, payload) in huge_count_frames() {
        let frame = raw_frame(Network::Mainnet.magic(), command.as_bytes(), &payload);
        assert!(assert_equivalent(&frame).is_err(), "{command}");
        let (_, largest) = alloc_probe::largest_allocation(|| ours(&frame));
        // At least 2^32 elements were announced. bitcoin's vector decoders (which we reuse) reserve
        // at most a quarter of MAX_VEC_SIZE up front; our `headers` loop only what the bytes hold.
        let bound = if command == "headers" { 1024 } else { 1_000_000 };
        assert!(largest <= bound, "{command}: allocated {largest} bytes");
    }
}

#[test]
fn headers_capacity_is_capped_by_the_remaining_bytes() {
    let mut payload = vec![0xfd, 0xd0, 0x07]; // 2,000 headers announced
    payload.extend_from_slice(&one_header_payload(0)[1..]);
    payload.extend_from_slice(&one_header_payload(0)[1..]);
    let (result, largest) = alloc_probe::largest_allocation(|| decode_headers(&mut &payload[..]));
    assert!(result.is_err());
    assert!(largest <= 2 * std::mem::size_of::<bitcoin::block::Header>(), "allocated {largest} bytes");
}

#[test]
fn mutated_frames_decode_as_bitcoin_does() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for msg in every_variant() {
        let frame = frame_of(&msg);
        let command = &frame[4..4 + msg.command().as_ref().len()];
        let payload = &frame[HEADER_SIZE..];
        // Every truncation, and one to eight trailing bytes.
        for len in 0..payload.len() {
            let _ = assert_equivalent(&raw_frame(Network::Mainnet.magic(), command, &payload[..len]));
        }
        for extra in 1..=8 {
            let longer: Vec<u8> = payload.iter().copied().chain((0..extra).map(|_| rng.gen())).collect();
            let _ = assert_equivalent(&raw_frame(Network::Mainnet.magic(), command, &longer));
        }
        // Random byte changes (counts, flags, lengths, network ids...).
        for _ in 0..100 {
            let mut mutated = payload.to_vec();
            if mutated.is_empty() {
                break;
            }
            for _ in 0..rng.gen_range(1..=3) {
                let i = rng.gen_range(0..mutated.len());
                mutated[i] = rng.gen();
            }
            let _ = assert_equivalent(&raw_frame(Network::Mainnet.magic(), command, &mutated));
        }
    }
}

#[test]
fn a_malformed_block_body_fails_only_when_parsed() {
    // Valid checksum, body cut after the header and a huge transaction count.
    let mut body = hex(GENESIS_BLOCK_HEX)[..80].to_vec();
    body.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    let frame = raw_frame(Network::Mainnet.magic(), b"block", &body);
    let decoded = mainnet().decode(&mut BytesMut::from(&frame[..])).unwrap().unwrap();
    let Ok(Payload::Block(raw)) = &decoded.message else { panic!("expected a raw block: {decoded:?}") };
    assert_eq!(raw.hash(), Some(Network::Mainnet.genesis_hash()), "the header alone is intact");
    assert!(matches!(raw.decode(), Err(CodecError::Malformed { command: "block", .. })));
    // A short payload has no hash.
    let frame = raw_frame(Network::Mainnet.magic(), b"block", &[1, 2, 3]);
    let decoded = mainnet().decode(&mut BytesMut::from(&frame[..])).unwrap().unwrap();
    let Ok(Payload::Block(raw)) = decoded.message else { panic!("expected a raw block") };
    assert_eq!(raw.hash(), None);
}
