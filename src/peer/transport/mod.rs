//! The transport under the message stream: v1 framing or BIP324 v2 (Sans-I/O, no sockets).
//!
//! [`TransportDecoder`] is what the actor's reader runs: it detects v1/v2 on inbound links as
//! Core does, drives the v2 handshake (yielding the bytes to write) and then yields the same
//! [`Frame`]s for both transports, so everything above (machine, subscribers, limits) is
//! unchanged. [`TransportEncoder`] is the writing half.

pub(crate) mod cipher;
mod packet;
pub(crate) mod v2;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio_util::codec::Decoder;

use super::PeerAddr;
use crate::wire::limits::MESSAGE_TYPE_SIZE;
use crate::wire::{Codec, CodecError, Frame, Message};
pub use v2::V2Error;
use v2::{Packet, Step, V2Decoder, V2Encoder, V2Handshake};

/// Which transport a connection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportVersion {
    /// Plaintext v1 framing.
    V1,
    /// BIP324 encrypted transport.
    V2,
    /// The v1 byte stream in WebSocket binary frames (bitcoin-net's browser transport).
    Ws,
}

impl TransportVersion {
    /// `"v1"`, `"v2"` or `"ws"`, as shown in stats, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportVersion::V1 => "v1",
            TransportVersion::V2 => "v2",
            TransportVersion::Ws => "ws",
        }
    }
}

/// How a connection starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// Plain v1 (outbound without v2, or a v1 retry).
    V1,
    /// We dialed and open with the BIP324 handshake.
    V2Initiator,
    /// Inbound with v2 enabled: the first bytes decide (Core's `V2Transport` `MAYBE_V1` state).
    Detect,
    /// Inbound, v2 only (`PeerConfig::v2_only`): first bytes that are v1 end the connection
    /// with [`V2Error::V1Peer`].
    DetectV2Only,
}

/// What the reading side yields.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message frame (same as the v1 codec's).
    Frame(Frame),
    /// Handshake bytes to write to the peer now.
    Send(Bytes),
    /// The transport is settled; messages may flow.
    Ready(Ready),
}

/// A settled transport.
#[derive(Debug)]
pub(crate) enum Ready {
    /// v1 (detected on an inbound link).
    V1,
    /// v2: the session id and our encrypting half.
    V2 {
        /// BIP324 session id.
        session_id: [u8; 32],
        /// Encrypts what we send.
        encoder: V2Encoder,
    },
}

/// Why the reading side stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TransportError {
    /// A v1 framing error (fatal ones end the stream).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A v2 error (always fatal).
    #[error(transparent)]
    V2(#[from] V2Error),
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError::Codec(CodecError::Io(e.to_string()))
    }
}

/// The first 16 bytes of a v1 connection: magic and `version` padded to 12 bytes. Any other
/// start is taken as v2 (`net.cpp` `V2Transport::ProcessReceivedMaybeV1Bytes`, `V1_PREFIX_LEN`).
pub(crate) fn v1_prefix(magic: [u8; 4]) -> [u8; 4 + MESSAGE_TYPE_SIZE] {
    let mut p = [0u8; 4 + MESSAGE_TYPE_SIZE];
    p[..4].copy_from_slice(&magic);
    p[4..11].copy_from_slice(b"version");
    p
}

/// Inbound detection on what arrived so far: `Some(V1)`/`Some(V2)` once decided, `None` while
/// the bytes so far are a prefix of the v1 start.
pub(crate) fn detect(magic: [u8; 4], received: &[u8]) -> Option<TransportVersion> {
    let prefix = v1_prefix(magic);
    let n = received.len().min(prefix.len());
    if received[..n] != prefix[..n] {
        Some(TransportVersion::V2)
    } else if n == prefix.len() {
        Some(TransportVersion::V1)
    } else {
        None
    }
}

enum State {
    Detect,
    V1(Codec),
    Handshake(V2Handshake),
    V2(V2Decoder),
    Done,
}

/// The reading side of one connection (a `tokio_util` decoder).
pub(crate) struct TransportDecoder {
    magic: [u8; 4],
    state: State,
    /// Our key and garbage, used when detection picks v2.
    responder: Option<([u8; 32], Vec<u8>)>,
    /// Whether detection may settle on v1.
    v1_allowed: bool,
    events: VecDeque<Inbound>,
    /// Bytes received while settling, for the owner's v1-retry rule.
    received: Option<Arc<AtomicUsize>>,
}

impl TransportDecoder {
    /// A decoder for `start`; with v2, `secret` is our key and `garbage` what we send after it.
    /// Returns the bytes to write at once (the initiator's key and garbage).
    pub(crate) fn new(
        magic: [u8; 4],
        start: Start,
        secret: [u8; 32],
        garbage: Vec<u8>,
    ) -> (Self, Option<Bytes>) {
        let mut dec = TransportDecoder {
            magic,
            state: State::Done,
            responder: None,
            v1_allowed: start != Start::DetectV2Only,
            events: VecDeque::new(),
            received: None,
        };
        let mut first = None;
        match start {
            Start::V1 => dec.state = State::V1(Codec::new(magic)),
            Start::Detect | Start::DetectV2Only => {
                dec.state = State::Detect;
                dec.responder = Some((secret, garbage));
            }
            Start::V2Initiator => {
                let mut hs = V2Handshake::new(magic, true, secret, garbage);
                if let Ok(Step::Pending { send }) = hs.feed(&[], false) {
                    first = Some(Bytes::from(send));
                }
                dec.state = State::Handshake(hs);
            }
        }
        (dec, first)
    }

    /// Counts the bytes received while the transport settles into `counter`.
    pub(crate) fn counting(mut self, counter: Arc<AtomicUsize>) -> Self {
        self.received = Some(counter);
        self
    }

    /// True while the v2 handshake (or detection) is still going on.
    pub(crate) fn settling(&self) -> bool {
        matches!(self.state, State::Detect | State::Handshake(_))
    }

    fn step(&mut self, step: Step, src: &mut BytesMut) {
        match step {
            Step::Pending { send } => {
                if !send.is_empty() {
                    self.events.push_back(Inbound::Send(Bytes::from(send)));
                }
            }
            Step::Done { send, session, mut rest } => {
                if !send.is_empty() {
                    self.events.push_back(Inbound::Send(Bytes::from(send)));
                }
                self.events.push_back(Inbound::Ready(Ready::V2 {
                    session_id: session.id,
                    encoder: V2Encoder::new(session.outbound),
                }));
                self.state = State::V2(V2Decoder::new(session.inbound, self.magic));
                rest.unsplit(src.split());
                *src = rest;
            }
        }
    }
}

impl Decoder for TransportDecoder {
    type Item = Inbound;
    type Error = TransportError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, TransportError> {
        if let (true, Some(counter)) = (self.settling(), &self.received) {
            counter.fetch_max(src.len(), Ordering::Relaxed);
        }
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            match &mut self.state {
                State::Done => return Ok(None),
                State::Detect => match detect(self.magic, src) {
                    None => return Ok(None),
                    // (Detection never says `Ws`: a WebSocket peer starts in v1.)
                    Some(TransportVersion::V1 | TransportVersion::Ws) if !self.v1_allowed => {
                        self.state = State::Done;
                        return Err(TransportError::V2(V2Error::V1Peer));
                    }
                    Some(TransportVersion::V1 | TransportVersion::Ws) => {
                        self.state = State::V1(Codec::new(self.magic));
                        self.events.push_back(Inbound::Ready(Ready::V1));
                    }
                    Some(TransportVersion::V2) => {
                        let (secret, garbage) = self.responder.take().unwrap_or_default();
                        let mut hs = V2Handshake::new(self.magic, false, secret, garbage);
                        let bytes = src.split();
                        let step = hs.feed(&bytes, false);
                        self.state = State::Handshake(hs);
                        let step = step.inspect_err(|_| self.state = State::Done)?;
                        self.step(step, src);
                    }
                },
                State::V1(codec) => {
                    return codec.decode(src).map(|f| f.map(Inbound::Frame)).map_err(Into::into)
                }
                State::Handshake(hs) => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let bytes = src.split();
                    let step = hs.feed(&bytes, false).inspect_err(|_| self.state = State::Done)?;
                    let waiting = matches!(&step, Step::Pending { send } if send.is_empty());
                    self.step(step, src);
                    if waiting {
                        return Ok(None);
                    }
                }
                State::V2(dec) => match dec.decode(src).inspect_err(|_| self.state = State::Done)? {
                    None => return Ok(None),
                    Some(Packet::Frame(frame)) => return Ok(Some(Inbound::Frame(frame))),
                    Some(Packet::Ignored) => {}
                },
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, TransportError> {
        if let Some(event) = self.decode(src)? {
            return Ok(Some(event));
        }
        match &mut self.state {
            State::Handshake(hs) => {
                let step = hs.feed(&[], true);
                self.state = State::Done;
                match step {
                    Err(e) => Err(e.into()),
                    Ok(_) => Err(V2Error::Truncated.into()),
                }
            }
            State::V1(codec) => codec.decode_eof(src).map(|f| f.map(Inbound::Frame)).map_err(Into::into),
            _ => {
                // A partial packet or detection prefix at EOF is just the end of the connection.
                src.clear();
                Ok(None)
            }
        }
    }
}

/// The writing side of one connection.
#[derive(Debug)]
pub(crate) enum TransportEncoder {
    /// Waiting for the handshake: messages wait (bounded by the machine, which sends only its
    /// handshake messages before the peer answers).
    Settling(Vec<Message>),
    /// v1 frames.
    V1(Codec),
    /// v2 packets.
    V2(V2Encoder),
}

/// What [`TransportEncoder::encode`] made of a message.
#[derive(Debug)]
pub(crate) enum Encoded {
    /// Bytes for the wire.
    Bytes(Bytes),
    /// Kept until the transport settles.
    Queued,
    /// Larger than a message may be: the v1 frame would be this long (nothing was encrypted,
    /// so a v2 session's packet counter is untouched).
    TooLarge(usize),
}

impl TransportEncoder {
    /// Encodes `msg` for the wire, queues it while the transport settles, or refuses it when
    /// its v1 frame exceeds `max_frame` (the same limit on both transports).
    pub(crate) fn encode(&mut self, msg: &Message, max_frame: usize) -> Encoded {
        match self {
            TransportEncoder::Settling(queue) => {
                queue.push(msg.clone());
                Encoded::Queued
            }
            TransportEncoder::V1(codec) => {
                let frame = codec.encode_to_bytes(msg);
                if frame.len() > max_frame {
                    return Encoded::TooLarge(frame.len());
                }
                Encoded::Bytes(frame)
            }
            // Straight into the packet: no v1 header, no checksum.
            TransportEncoder::V2(enc) => match enc.encode_message(msg, max_frame) {
                Ok(packet) => Encoded::Bytes(packet),
                Err(len) => Encoded::TooLarge(len),
            },
        }
    }
}

/// Most addresses remembered as v1-only (a bound on memory, like every table here).
pub(crate) const MAX_V1_ONLY: usize = 10_000;

/// Addresses known to speak only v1 (a v2 attempt was closed before its handshake), shared by a
/// group and its peers: an outbound peer reads it before dialing, the group mirrors it into the
/// address book so it survives a restart.
#[derive(Clone, Debug, Default)]
pub(crate) struct V1OnlyPeers(Arc<std::sync::Mutex<V1Only>>);

#[derive(Debug, Default)]
struct V1Only {
    addrs: std::collections::HashSet<PeerAddr>,
    /// Changed since the last `take_changes`.
    changed: bool,
}

/// The saved form of [`V1OnlyPeers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct V1OnlySnapshot {
    /// Format version (1).
    pub(crate) version: u32,
    /// Addresses, sorted.
    pub(crate) v1_only: Vec<String>,
}

impl V1OnlyPeers {
    fn lock(&self) -> std::sync::MutexGuard<'_, V1Only> {
        // Nothing panics while holding the lock; a poisoned set is still a valid set.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The set as saved, when it changed since the last call.
    pub(crate) fn take_changes(&self) -> Option<V1OnlySnapshot> {
        let mut m = self.lock();
        if !std::mem::take(&mut m.changed) {
            return None;
        }
        let mut v1_only: Vec<String> = m.addrs.iter().map(ToString::to_string).collect();
        v1_only.sort();
        Some(V1OnlySnapshot { version: 1, v1_only })
    }

    /// Adds the saved addresses (unparsable ones are skipped, the bound holds); how many.
    pub(crate) fn restore(&self, saved: &V1OnlySnapshot) -> usize {
        let mut m = self.lock();
        for a in &saved.v1_only {
            if let Ok(addr) = a.parse::<PeerAddr>() {
                if m.addrs.len() < MAX_V1_ONLY {
                    m.addrs.insert(addr);
                }
            }
        }
        m.addrs.len()
    }

    /// True when `addr` is remembered v1-only.
    pub(crate) fn contains(&self, addr: &PeerAddr) -> bool {
        self.lock().addrs.contains(addr)
    }

    /// Remembers `addr` as v1-only (ignored when the table is full); true if it was new.
    pub(crate) fn insert(&self, addr: &PeerAddr) -> bool {
        let mut m = self.lock();
        let new = m.addrs.len() < MAX_V1_ONLY && m.addrs.insert(addr.clone());
        m.changed |= new;
        new
    }

    /// Forgets `addr` (it advertises v2 again); true if it was remembered.
    pub(crate) fn remove(&self, addr: &PeerAddr) -> bool {
        let mut m = self.lock();
        let gone = m.addrs.remove(addr);
        m.changed |= gone;
        gone
    }
}

#[cfg(test)]
mod bip324_vectors;
#[cfg(test)]
mod tests;
