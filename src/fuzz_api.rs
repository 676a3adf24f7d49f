//! Entry points for the fuzz targets in `fuzz/` (feature `fuzz`, off by default: not public API).
//!
//! Each function takes arbitrary bytes, drives crate-private code the way the daemon does, and
//! panics only when an invariant is broken (which the fuzzer then reports as a crash). Targets
//! that the public API already reaches (`wire::Codec`, `chain::HeaderStore`,
//! `daemon::settings::load`) live in `fuzz/` alone.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash as _;
use bitcoin::BlockHash;
use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use crate::addrbook::{AddrBook, AddrBookConfig, Snapshot};
use crate::group::bans::{BanList, BanSnapshot};
use crate::network::Network;
use crate::peer::machine::{Action, MachineConfig, PeerMachine};
use crate::peer::requests::Request;
use crate::peer::{Link, NonceSet, PeerState};
use crate::wire::version::{self, LocalVersion};
use crate::wire::{Codec, Message, Payload, ServiceFlags};

/// Every command the crate knows (the driver frames one chosen by an input byte; the codec
/// target adds unknown ones).
pub const COMMANDS: &[&str] = &crate::wire::KNOWN_COMMANDS;

/// Reads the fuzzer's bytes front to back; past the end every read is zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn hash(&mut self) -> BlockHash {
        let mut h = [0u8; 32];
        let b = self.bytes(32);
        h[..b.len()].copy_from_slice(b);
        BlockHash::from_byte_array(h)
    }
}

/// A v1 frame for `command` around `payload`, with the right magic, length and checksum.
fn frame(magic: [u8; 4], command: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + payload.len());
    out.extend_from_slice(&magic);
    let mut cmd = [0u8; 12];
    cmd[..command.len()].copy_from_slice(command.as_bytes());
    out.extend_from_slice(&cmd);
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    let sum = bitcoin::hashes::sha256d::Hash::hash(payload);
    out.extend_from_slice(&sum.as_byte_array()[..4]);
    out.extend_from_slice(payload);
    out
}

/// Checks what a machine emitted, and remembers the last `ping` nonce it sent.
struct Observer {
    disconnects: usize,
    after_disconnect: usize,
    last_ping: Option<u64>,
}

impl Observer {
    fn drain(&mut self, m: &mut PeerMachine) {
        while let Some(action) = m.poll_action() {
            if self.disconnects > 0 {
                self.after_disconnect += 1;
            }
            match action {
                Action::Disconnect(_) => self.disconnects += 1,
                Action::Send(Message::Ping(n)) => self.last_ping = Some(n),
                _ => {}
            }
        }
        assert!(self.disconnects <= 1, "more than one Disconnect action");
        assert_eq!(self.after_disconnect, 0, "actions after Disconnect");
        assert_eq!(m.is_closed(), self.disconnects == 1, "is_closed disagrees with the actions");
        if m.is_closed() {
            assert_eq!(m.state(), PeerState::Disconnected);
        }
    }
}

/// Feeds one decoded frame to the machine as `PeerActor::on_frame` does.
fn deliver(m: &mut PeerMachine, now: Instant, codec: &mut Codec, buf: &mut BytesMut) {
    loop {
        if m.is_closed() {
            return;
        }
        match codec.decode(buf) {
            Ok(None) => return,
            Ok(Some(frame)) => match frame.message {
                Ok(Payload::Message(msg)) => {
                    m.on_message(now, &msg);
                }
                Ok(Payload::Block(raw)) => {
                    let verdict = m.on_block(now);
                    if verdict == crate::peer::machine::Verdict::Deliver
                        && raw.hash().is_some_and(|h| m.wants_block(&h))
                    {
                        match raw.decode() {
                            Ok(block) => m.on_requested_block(now, Arc::new(block)),
                            Err(e) => m.on_invalid_frame(now, &e),
                        }
                    }
                }
                Err(e) => m.on_invalid_frame(now, &e),
            },
            Err(e) => {
                m.on_stream_error(&e);
                buf.clear();
                return;
            }
        }
    }
}

/// Drives a [`PeerMachine`] through a connection made of `data`: handshake messages, framed
/// payloads of any command, raw stream bytes, local requests and clock ticks. Panics if the
/// machine panics, emits anything after `Disconnect`, disconnects twice, or is still open after
/// a long silence (every connection must end with a typed reason). Returns whether the
/// handshake completed (for checking seeds).
pub fn peer_machine(data: &[u8]) -> bool {
    let mut input = Input(data);
    let flags = input.u8();
    let link = if flags & 1 == 0 { Link::Outbound } else { Link::Inbound };
    let config = MachineConfig {
        send_getaddr: flags & 2 != 0,
        request_announced_txs: flags & 4 != 0,
        relay: flags & 8 != 0,
        // Self-announcement, from whatever address the peer's version says it sees.
        advertise: (flags & 16 != 0).then(|| crate::peer::Advertise {
            port: 8333,
            services: crate::wire::ServiceFlags::NETWORK,
            external: Vec::new(),
            discover: true,
        }),
        ..MachineConfig::default()
    };
    let magic = Network::Regtest.magic();
    let nonces = NonceSet::default();
    let mut m = PeerMachine::new(config, link, nonces, StdRng::seed_from_u64(u64::from(flags)));
    let mut obs = Observer { disconnects: 0, after_disconnect: 0, last_ping: None };
    let mut codec = Codec::new(magic);
    let mut buf = BytesMut::new();
    let start = Instant::now();
    let mut now = start;
    let mut was_ready = false;
    m.connecting();
    m.connected(now, 1_700_000_000, 0, None);
    obs.drain(&mut m);

    while !input.is_empty() {
        match input.u8() % 16 {
            0 => {
                now += Duration::from_millis(u64::from(input.u16()) * 100);
                m.tick(now);
            }
            1 => {
                let version = input.u32();
                let services = ServiceFlags::from(input.u64());
                let ua_len = usize::from(input.u8() % 32);
                let local = LocalVersion {
                    version,
                    services,
                    user_agent: String::from_utf8_lossy(input.bytes(ua_len)).into_owned(),
                    start_height: input.u32() as i32,
                    relay: input.u8() & 1 == 1,
                    nonce: u64::from(input.u8()),
                    timestamp: 0,
                };
                m.on_message(now, &Message::Version(version::build(&local, None)));
            }
            2 => {
                m.on_message(now, &Message::Verack);
            }
            3 => {
                m.on_message(now, &Message::WtxidRelay);
            }
            4 => {
                m.on_message(now, &Message::SendAddrV2);
            }
            5 => {
                m.on_message(now, &Message::SendHeaders);
            }
            6 => {
                let nonce = obs.last_ping.unwrap_or(0);
                m.on_message(now, &Message::Pong(nonce));
            }
            7 => {
                m.on_message(now, &Message::Ping(input.u64()));
            }
            8..=11 => {
                // A well-formed frame (right checksum) of a chosen command: explores payloads.
                let command = COMMANDS[usize::from(input.u8()) % COMMANDS.len()];
                let len = usize::from(input.u16() % 4096);
                let payload = input.bytes(len);
                buf.extend_from_slice(&frame(magic, command, payload));
                deliver(&mut m, now, &mut codec, &mut buf);
            }
            12 => {
                // Raw stream bytes: partial frames, bad magic, bad checksums, oversize.
                let len = usize::from(input.u8());
                buf.extend_from_slice(input.bytes(len));
                deliver(&mut m, now, &mut codec, &mut buf);
            }
            13 => {
                let request = match input.u8() % 4 {
                    0 => Request::Headers { locator: vec![input.hash()], stop: BlockHash::all_zeros() },
                    1 => Request::Blocks { hashes: vec![input.hash()] },
                    2 => Request::FilteredBlocks { hashes: vec![input.hash()] },
                    _ => Request::Transactions {
                        block: input.hash(),
                        txids: vec![bitcoin::Txid::from_byte_array(input.hash().to_byte_array())],
                    },
                };
                let _ = m.request(now, request);
            }
            14 => {
                m.push_getheaders(vec![input.hash()], BlockHash::all_zeros());
            }
            _ => {
                if input.u8() == 0xff {
                    m.disconnect(crate::peer::DisconnectReason::Requested);
                }
            }
        }
        was_ready |= m.state() == PeerState::Ready;
        obs.drain(&mut m);
        if m.is_closed() {
            // A closed machine ignores everything.
            m.on_message(now, &Message::Verack);
            m.on_block(now);
            m.tick(now + Duration::from_secs(3600));
            obs.drain(&mut m);
            return was_ready;
        }
    }
    // Silence: the handshake, ping or inactivity timeout must end the connection.
    let later = now + Duration::from_secs(2 * 24 * 3600);
    m.tick(later);
    obs.drain(&mut m);
    m.tick(later + Duration::from_secs(2 * 24 * 3600));
    obs.drain(&mut m);
    assert!(m.is_closed(), "connection still open after two days of silence in state {:?}", m.state());
    was_ready
}

/// Restores an address book from arbitrary `addrbook.json` bytes as the group does on start,
/// and checks the report against the book; then the same for `bans.json`.
pub fn addrbook_restore(data: &[u8]) {
    let now = 1_700_000_000;
    if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) {
        let config = AddrBookConfig::default();
        let capacity = config.new_capacity() + config.tried_capacity();
        if let Ok((book, report)) = AddrBook::restore(config.clone(), snapshot, now) {
            assert_eq!(report.kept, book.len(), "report.kept disagrees with the book");
            assert!(book.len() <= capacity, "book over capacity");
            assert_eq!(book.len(), book.new_len() + book.tried_len());
            // What we save must load back without loss.
            let again = book.snapshot();
            let (book2, _) = AddrBook::restore(config, again, now).expect("our own snapshot has our version");
            assert_eq!(book2.len(), book.len(), "a saved book does not load back whole");
        }
    }
    if let Ok(snapshot) = serde_json::from_slice::<BanSnapshot>(data) {
        let _ = BanList::restore(snapshot, now);
    }
}

/// The HTTP API's request bodies: a `POST /tx` body decoded to a transaction (or a named
/// error), and a `POST /bans` body parsed and checked. Panics if a decoded transaction does not
/// re-serialise to bytes that decode to itself.
#[cfg(feature = "daemon")]
pub fn http_bodies(data: &[u8]) {
    use crate::daemon::http::{ban_message, parse_tx_body, BanRequest};
    if let Ok(tx) = parse_tx_body(data) {
        let bytes = bitcoin::consensus::serialize(&tx);
        let again: bitcoin::Transaction = bitcoin::consensus::deserialize(&bytes).expect("re-decodes");
        assert_eq!(again, tx, "a transaction survives a round trip");
    }
    if let Ok(req) = serde_json::from_slice::<BanRequest>(data) {
        let _ = ban_message(req);
    }
}

/// The BIP324 v2 transport: with the first byte even, raw bytes reach a listener's detecting
/// decoder (v1/v2 detection, the responder's handshake: keys, garbage, terminator) in
/// fuzzer-chosen chunks; odd, the bytes become packet contents (short ids, 12-byte types,
/// payloads, decoys, the odd flipped bit) encrypted by a real session and decoded by its peer.
/// Invariants: no panic, the decoder's buffer only holds what arrived, frames never claim
/// more wire bytes than were sent.
pub fn v2_transport(data: &[u8]) {
    use crate::peer::transport::v2::{session_pair, Packet, V2Decoder, V2Encoder};
    use crate::peer::transport::{Start, TransportDecoder};
    let magic = Network::Regtest.magic();
    let mut input = Input(data);
    if input.u8() & 1 == 0 {
        let (mut dec, _) = TransportDecoder::new(magic, Start::Detect, [7; 32], Vec::new());
        let mut buf = BytesMut::new();
        let mut fed = 0usize;
        while !input.is_empty() {
            let n = usize::from(input.u8()) * 16 + 1;
            let chunk = input.bytes(n);
            fed += chunk.len();
            buf.extend_from_slice(chunk);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            assert!(buf.len() <= fed, "the buffer holds more than arrived");
        }
        let _ = dec.decode_eof(&mut buf);
        return;
    }
    // The handshake (two ECDHs) would cost more than the rest of a run: each run starts from a
    // clone of one established session instead.
    static SESSION: std::sync::OnceLock<(V2Encoder, V2Decoder)> = std::sync::OnceLock::new();
    let (mut enc, mut dec) = SESSION.get_or_init(|| session_pair(magic)).clone();
    let mut wire = BytesMut::new();
    let mut sent = 0usize;
    let mut got = 0usize;
    while !input.is_empty() {
        let flags = input.u8();
        let len = usize::from(input.u16() % 2048);
        let contents = input.bytes(len);
        let kind = if flags & 1 == 1 { bip324::PacketType::Decoy } else { bip324::PacketType::Genuine };
        let mut packet = enc.packet(contents, kind).to_vec();
        if flags & 0x80 != 0 {
            let at = usize::from(input.u16()) % packet.len();
            packet[at] ^= 1 << (flags & 7);
        }
        sent += packet.len();
        // Arrives in two pieces, split where the fuzzer says.
        let cut = usize::from(input.u16()) % (packet.len() + 1);
        for piece in [&packet[..cut], &packet[cut..]] {
            wire.extend_from_slice(piece);
            loop {
                match dec.decode(&mut wire) {
                    Ok(Some(Packet::Frame(frame))) => {
                        got += frame.wire_len;
                        assert!(got <= sent, "frames claim more bytes than were sent");
                        let _ = frame.into_message();
                    }
                    Ok(Some(Packet::Ignored)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The committed seeds reach what they are meant to reach, and never panic.
    #[cfg(feature = "daemon")]
    #[test]
    fn http_seeds_run() {
        for seed in
            [&b"{\"hex\": \"00zz\"}"[..], b"0200000001", b"{\"addr\": \"10.0.0.1\", \"duration\": 60}"]
        {
            super::http_bodies(seed);
        }
    }

    #[test]
    fn seeds_run() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus");
        for name in ["outbound", "inbound", "framed_handshake"] {
            let data = std::fs::read(format!("{dir}/peer_machine/{name}")).expect("seed");
            assert!(super::peer_machine(&data), "seed {name} does not complete the handshake");
        }
        for name in ["addrbook.json", "bans.json"] {
            super::addrbook_restore(&std::fs::read(format!("{dir}/addrbook/{name}")).expect("seed"));
        }
        for name in ["v1_start", "ping_packet", "key_garbage"] {
            super::v2_transport(&std::fs::read(format!("{dir}/v2_transport/{name}")).expect("seed"));
        }
    }

    /// Random inputs of both kinds (seeded, printed) never break the v2 transport's invariants.
    #[test]
    fn v2_transport_random_inputs() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::random();
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..200 {
            let len = rng.gen_range(0..6000);
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            super::v2_transport(&data);
        }
    }
}
