//! Decode throughput of [`btcpeer::wire::Codec`], next to SHA-256d over the same payload bytes.
//!
//! Every frame is decoded by the codec exactly as `FramedRead` would do it: from a `BytesMut`
//! holding the whole frame. Each message is encoded once; every iteration decodes a fresh copy
//! of it. The copy is made in criterion's untimed setup (`iter_batched_ref`), and both the
//! emptied buffer and the decoded frame are dropped by criterion outside the timed region.
//!
//! Decoding verifies the frame's checksum, which is itself a SHA-256d of the payload, so the
//! `sha256d` benchmarks (same payload bytes, same throughput unit) give the ceiling our decoder
//! can approach.
//!
//! Run with `cargo bench --bench codec`; `scripts/bench-codec` runs it and prints a summary.

use std::hint::black_box;

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::pow::CompactTarget;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    Amount, Block, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut, Txid,
    Witness, Wtxid,
};
use btcpeer::wire::limits::HEADER_SIZE;
use btcpeer::wire::{Codec, Inventory, Message};
use btcpeer::Network;
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokio_util::codec::Decoder;

/// Size the block is filled up to (serialized, witness included).
const BLOCK_TARGET_SIZE: usize = 1_000_000;
/// Headers in the `headers` message (Core's `MAX_HEADERS_RESULTS`).
const HEADER_COUNT: usize = 2_000;
/// Regtest's proof-of-work limit: about every second nonce is a valid header.
const REGTEST_BITS: u32 = 0x207f_ffff;

/// Deterministic xorshift64* generator: the same block on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
        }
        out
    }

    /// A DER-encoded ECDSA signature with SIGHASH_ALL, 71 or 72 bytes like real ones.
    fn ecdsa_sig(&mut self) -> Vec<u8> {
        let (r, s) = (self.bytes::<32>(), self.bytes::<32>());
        let mut sig = Vec::with_capacity(72);
        sig.extend_from_slice(&[0x30, 0, 0x02]);
        // A high first byte needs a 0x00 pad (DER integers are signed); low-S keeps s short.
        if r[0] >= 0x80 {
            sig.extend_from_slice(&[33, 0]);
        } else {
            sig.push(32);
        }
        sig.extend_from_slice(&r);
        sig.extend_from_slice(&[0x02, 32]);
        sig.push(s[0] & 0x7f);
        sig.extend_from_slice(&s[1..]);
        sig[1] = (sig.len() - 2) as u8;
        sig.push(0x01);
        sig
    }

    /// A compressed public key.
    fn pubkey(&mut self) -> Vec<u8> {
        let mut pk = vec![0x02 | (self.next() & 1) as u8];
        pk.extend_from_slice(&self.bytes::<32>());
        pk
    }

    fn outpoint(&mut self) -> OutPoint {
        OutPoint { txid: Txid::from_byte_array(self.bytes()), vout: self.below(4) as u32 }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    P2wpkh,
    P2tr,
    P2pkh,
}

fn script_pubkey(rng: &mut Rng, kind: Kind) -> ScriptBuf {
    let mut s = Vec::with_capacity(34);
    match kind {
        Kind::P2wpkh => {
            s.extend_from_slice(&[0x00, 0x14]);
            s.extend_from_slice(&rng.bytes::<20>());
        }
        Kind::P2tr => {
            s.extend_from_slice(&[0x51, 0x20]);
            s.extend_from_slice(&rng.bytes::<32>());
        }
        Kind::P2pkh => {
            s.extend_from_slice(&[0x76, 0xa9, 0x14]);
            s.extend_from_slice(&rng.bytes::<20>());
            s.extend_from_slice(&[0x88, 0xac]);
        }
    }
    ScriptBuf::from_bytes(s)
}

fn spend(rng: &mut Rng, kind: Kind) -> TxIn {
    let (script_sig, witness) = match kind {
        Kind::P2wpkh => (ScriptBuf::new(), Witness::from_slice(&[rng.ecdsa_sig(), rng.pubkey()])),
        // Key-path spend: one 64-byte Schnorr signature (default sighash).
        Kind::P2tr => (ScriptBuf::new(), Witness::from_slice(&[rng.bytes::<64>()])),
        Kind::P2pkh => {
            let (sig, pk) = (rng.ecdsa_sig(), rng.pubkey());
            let mut s = Vec::with_capacity(sig.len() + pk.len() + 2);
            s.push(sig.len() as u8);
            s.extend_from_slice(&sig);
            s.push(pk.len() as u8);
            s.extend_from_slice(&pk);
            (ScriptBuf::from_bytes(s), Witness::new())
        }
    };
    TxIn { previous_output: rng.outpoint(), script_sig, sequence: Sequence::ENABLE_RBF_NO_LOCKTIME, witness }
}

/// One transaction of a typical mix: mostly segwit v0 and taproot, some legacy, a few
/// consolidations and batched payouts.
fn transaction(rng: &mut Rng) -> Transaction {
    let (kind, inputs, outputs) = match rng.below(100) {
        0..=34 => (Kind::P2wpkh, 1, 2),
        35..=54 => (Kind::P2wpkh, 2 + rng.below(2), 2),
        55..=69 => (Kind::P2tr, 1 + rng.below(2), 2),
        70..=79 => (Kind::P2pkh, 1 + rng.below(2), 2),
        80..=91 => (Kind::P2wpkh, 4 + rng.below(5), 1 + rng.below(2)),
        _ => (Kind::P2tr, 1 + rng.below(2), 8 + rng.below(17)),
    };
    let out_kinds = [Kind::P2wpkh, Kind::P2tr, Kind::P2pkh];
    Transaction {
        version: TxVersion::TWO,
        lock_time: LockTime::from_consensus(850_000 + rng.below(10) as u32),
        input: (0..inputs).map(|_| spend(rng, kind)).collect(),
        output: (0..outputs)
            .map(|_| {
                let out_kind = out_kinds[rng.below(3) as usize];
                TxOut {
                    value: Amount::from_sat(546 + rng.below(50_000_000)),
                    script_pubkey: script_pubkey(rng, out_kind),
                }
            })
            .collect(),
    }
}

/// A coinbase with BIP34 height, the BIP141 witness reserved value and a placeholder commitment.
fn coinbase(height: u32) -> Transaction {
    let mut script_sig = vec![0x03];
    script_sig.extend_from_slice(&height.to_le_bytes()[..3]);
    script_sig.extend_from_slice(b"/btcpeer bench/");
    let mut commitment = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    commitment.extend_from_slice(&[0u8; 32]);
    Transaction {
        version: TxVersion::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(script_sig),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(312_500_000),
                script_pubkey: script_pubkey(&mut Rng(7), Kind::P2wpkh),
            },
            TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::from_bytes(commitment) },
        ],
    }
}

/// A block of about [`BLOCK_TARGET_SIZE`] bytes with a valid merkle root and witness commitment.
fn build_block() -> Block {
    let mut rng = Rng(0x5eed_b10c);
    let header = Header {
        version: BlockVersion::from_consensus(0x2000_0000),
        prev_blockhash: BlockHash::from_byte_array(rng.bytes()),
        merkle_root: TxMerkleNode::all_zeros(),
        time: 1_719_000_000,
        bits: CompactTarget::from_consensus(0x1703_1abe),
        nonce: rng.next() as u32,
    };
    let mut block = Block { header, txdata: vec![coinbase(850_000)] };
    // 80-byte header + 3-byte tx count varint + transactions.
    let mut size = 80 + 3 + block.txdata[0].total_size();
    loop {
        let tx = transaction(&mut rng);
        if size + tx.total_size() > BLOCK_TARGET_SIZE {
            break;
        }
        size += tx.total_size();
        block.txdata.push(tx);
    }
    let witness_root = block.witness_root().expect("block has transactions");
    let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
    let mut script = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    script.extend_from_slice(commitment.as_byte_array());
    block.txdata[0].output[1].script_pubkey = ScriptBuf::from_bytes(script);
    block.header.merkle_root = block.compute_merkle_root().expect("block has transactions");
    assert!(block.check_merkle_root() && block.check_witness_commitment());
    block
}

/// [`HEADER_COUNT`] regtest headers following the regtest genesis, each linking to the one
/// before and each with valid proof of work.
fn build_headers() -> Vec<Header> {
    let mut rng = Rng(0x4ead_e125);
    let mut prev = Network::Regtest.genesis_hash();
    let mut time = 1_296_688_602;
    let mut headers = Vec::with_capacity(HEADER_COUNT);
    for _ in 0..HEADER_COUNT {
        time += 300 + rng.below(600) as u32;
        let mut header = Header {
            version: BlockVersion::from_consensus(0x2000_0000 | ((rng.below(4) as i32) << 1)),
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::from_byte_array(rng.bytes()),
            time,
            bits: CompactTarget::from_consensus(REGTEST_BITS),
            nonce: 0,
        };
        prev = loop {
            match header.validate_pow(header.target()) {
                Ok(hash) => break hash,
                Err(_) => header.nonce += 1,
            }
        };
        headers.push(header);
    }
    headers
}

/// One encoded test message.
struct Sample {
    name: &'static str,
    message: Message,
    frame: Bytes,
}

impl Sample {
    fn new(codec: &Codec, name: &'static str, message: Message) -> Self {
        let frame = codec.encode_to_bytes(&message);
        Sample { name, message, frame }
    }

    fn payload(&self) -> &[u8] {
        &self.frame[HEADER_SIZE..]
    }

    /// Decodes one copy and checks the result, so we never measure a failure path.
    fn check(&self, codec: &mut Codec) {
        let frame = codec.decode(&mut BytesMut::from(&self.frame[..])).unwrap().expect("a whole frame");
        assert_eq!(frame.wire_len, self.frame.len());
        assert_eq!(frame.into_message().as_ref(), Ok(&self.message), "{} round trip", self.name);
    }
}

fn bench_codec(c: &mut Criterion) {
    let mut codec = Codec::new(Network::Regtest.magic());
    let block = build_block();
    let txs = block.txdata.len();
    let samples = [
        Sample::new(&codec, "block", Message::Block(block)),
        Sample::new(&codec, "headers", Message::Headers(build_headers())),
        Sample::new(
            &codec,
            "inv",
            Message::Inv(vec![Inventory::WTx(Wtxid::from_byte_array(Rng(1).bytes()))]),
        ),
    ];
    for sample in &samples {
        sample.check(&mut codec);
    }
    eprintln!(
        "block: {} txs, {} payload bytes; headers: {} payload bytes; inv: {} payload bytes",
        txs,
        samples[0].payload().len(),
        samples[1].payload().len(),
        samples[2].payload().len()
    );

    for sample in &samples {
        let mut group = c.benchmark_group(sample.name);
        let small = sample.name == "inv";
        if small {
            group.throughput(Throughput::Elements(1));
        } else {
            group.throughput(Throughput::Bytes(sample.payload().len() as u64));
        }
        // Big frames are copied right before each decode (as if just read from the socket, so
        // cache-warm); small ones in batches, where per-iteration timing would dominate.
        let batch = if small { BatchSize::SmallInput } else { BatchSize::PerIteration };
        group.bench_function("decode", |b| {
            b.iter_batched_ref(
                || BytesMut::from(&sample.frame[..]),
                |buf| codec.decode(black_box(buf)),
                batch,
            )
        });
        if sample.name == "block" {
            // The codec keeps blocks raw; this is the full parse into `bitcoin::Block` that a
            // block subscriber pays once (shared by all subscribers).
            group.bench_function("decode_and_parse", |b| {
                b.iter_batched_ref(
                    || BytesMut::from(&sample.frame[..]),
                    |buf| codec.decode(black_box(buf)).map(|f| f.map(|f| f.into_message())),
                    batch,
                )
            });
        }
        // Also for inv: the checksum is a fixed per-message cost the decoder cannot avoid.
        group.bench_function("sha256d", |b| b.iter(|| sha256d::Hash::hash(black_box(sample.payload()))));
        group.finish();
    }
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
