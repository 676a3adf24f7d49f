//! BIP324 v2 transport, Sans-I/O: the handshake (keys, garbage, terminator, decoys, version
//! packet) on the `bip324` crate's `Handshake`, the errors and the short message ids. The
//! packets after it are `packet.rs`'s, on our own ciphers (`cipher.rs`). Nothing here touches a
//! socket or a clock.
//!
//! The handshake is written as one `async` block polled with a no-op waker whenever bytes
//! arrive: the crate's typed states borrow the received garbage (it is the first packet's
//! AAD), which a plain struct could not hold across reads; the coroutine owns that buffer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bip324::{GarbageResult, Handshake, Initialized, ReceivedKey, Role, VersionResult, NUM_LENGTH_BYTES};
use bitcoin::secp256k1::Secp256k1;
use bytes::BytesMut;
use serde::Serialize;

use super::cipher::{RecvCipher, SendCipher, SessionKeys};
pub(crate) use super::packet::{Packet, V2Decoder, V2Encoder};
use crate::wire::limits::{MAX_PROTOCOL_MESSAGE_LENGTH, MESSAGE_TYPE_SIZE};

/// Most garbage a peer may send before its terminator (BIP324; Core's `MAX_GARBAGE_LEN`).
pub(crate) const MAX_GARBAGE_LEN: usize = 4095;
/// Garbage terminator length (BIP324; Core's `BIP324Cipher::GARBAGE_TERMINATOR_LEN`).
const GARBAGE_TERMINATOR_LEN: usize = 16;
/// Header byte plus Poly1305 tag around every packet's contents.
const PACKET_OVERHEAD: usize = 1 + 16;
/// Largest contents accepted: a short id or 12-byte type, then at most the v1 payload limit
/// (`net.h` `V2Transport::MAX_CONTENTS_LEN = 1 + MESSAGE_TYPE_SIZE + min(MAX_SIZE,
/// MAX_PROTOCOL_MESSAGE_LENGTH)`). Checked on the decrypted length, before any byte is kept.
pub(crate) const MAX_CONTENTS_LEN: usize = 1 + MESSAGE_TYPE_SIZE + MAX_PROTOCOL_MESSAGE_LENGTH;
/// The ignore bit of the header byte (decoy packets).
pub(crate) const IGNORE_BIT: u8 = 0x80;

/// BIP324's short message ids, index = id (Core's `net.cpp` `V2_MESSAGE_IDS`). Id 0 means the
/// 12-byte type follows; 29..=32 are assigned but not implemented (Core drops them too).
pub(crate) const V2_MESSAGE_IDS: [&str; 29] = [
    "",
    "addr",
    "block",
    "blocktxn",
    "cmpctblock",
    "feefilter",
    "filteradd",
    "filterclear",
    "filterload",
    "getblocks",
    "getblocktxn",
    "getdata",
    "getheaders",
    "headers",
    "inv",
    "mempool",
    "merkleblock",
    "notfound",
    "ping",
    "pong",
    "sendcmpct",
    "tx",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "addrv2",
];

/// Why a v2 connection could not go on. None is a ban by itself (Core just closes the socket:
/// `net.cpp` `V2Transport::ReceivedBytes` returning false).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "v2_error", rename_all = "snake_case")]
#[non_exhaustive]
pub enum V2Error {
    /// No garbage terminator within the first 4,095 garbage bytes
    /// (`V2Transport::ProcessReceivedGarbageBytes`).
    #[error("no garbage terminator within {max} bytes")]
    NoGarbageTerminator {
        /// The garbage limit.
        max: usize,
    },
    /// A packet failed authentication (wrong key, tampered bytes, wrong terminator position).
    #[error("packet authentication failed")]
    BadTag,
    /// A packet announces more contents than a v1 message may carry.
    #[error("packet announces {len} bytes of contents, limit is {max}")]
    Oversized {
        /// Announced contents length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The remote's key starts with our network magic: it speaks v1.
    #[error("remote answered with v1 bytes")]
    V1Peer,
    /// The connection ended in the middle of the handshake.
    #[error("connection closed during the v2 handshake")]
    Truncated,
    /// The key exchange itself failed.
    #[error("key exchange failed: {error}")]
    KeyExchange {
        /// What the crate said.
        error: String,
    },
}

impl From<bip324::Error> for V2Error {
    fn from(e: bip324::Error) -> Self {
        match e {
            bip324::Error::NoGarbageTerminator => V2Error::NoGarbageTerminator { max: MAX_GARBAGE_LEN },
            bip324::Error::Decryption(_) | bip324::Error::CiphertextTooSmall => V2Error::BadTag,
            bip324::Error::V1Protocol => V2Error::V1Peer,
            bip324::Error::PacketTooBig => {
                V2Error::Oversized { len: MAX_CONTENTS_LEN + 1, max: MAX_CONTENTS_LEN }
            }
            other => V2Error::KeyExchange { error: other.to_string() },
        }
    }
}

/// The ends of a completed handshake.
pub(crate) struct Session {
    /// BIP324 session id (both ends see the same; Core's `getpeerinfo` shows it).
    pub(crate) id: [u8; 32],
    /// Decrypts what the peer sends.
    pub(crate) inbound: RecvCipher,
    /// Encrypts what we send.
    pub(crate) outbound: SendCipher,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &hex(&self.id)).finish_non_exhaustive()
    }
}

/// Lower-case hex, as Core prints session ids.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes shared between the handshake coroutine and its driver.
#[derive(Default)]
struct Pipe {
    inbox: BytesMut,
    outbox: Vec<u8>,
    eof: bool,
}

type Shared = Arc<Mutex<Pipe>>;

fn lock(pipe: &Shared) -> std::sync::MutexGuard<'_, Pipe> {
    // Only this module touches the pipe and never panics while holding it.
    pipe.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves once the inbox holds `n` bytes (and takes them), or fails at end of stream.
struct Take {
    pipe: Shared,
    n: usize,
}

impl Future for Take {
    type Output = Result<BytesMut, V2Error>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut p = lock(&self.pipe);
        if p.inbox.len() >= self.n {
            let n = self.n;
            return Poll::Ready(Ok(p.inbox.split_to(n)));
        }
        if p.eof {
            return Poll::Ready(Err(V2Error::Truncated));
        }
        Poll::Pending
    }
}

/// Resolves with whatever the inbox holds (at most `max` bytes), once it holds something.
struct TakeSome {
    pipe: Shared,
    max: usize,
}

impl Future for TakeSome {
    type Output = Result<BytesMut, V2Error>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut p = lock(&self.pipe);
        if !p.inbox.is_empty() {
            let n = p.inbox.len().min(self.max);
            return Poll::Ready(Ok(p.inbox.split_to(n)));
        }
        if p.eof {
            return Poll::Ready(Err(V2Error::Truncated));
        }
        Poll::Pending
    }
}

/// Feeds the crate our own key bytes (drawn by the caller, so the machine stays deterministic).
struct FixedKey([u8; 32]);

impl bip324::FillBytes for FixedKey {
    fn fill_bytes(&mut self, dest: &mut [u8; 32]) {
        *dest = self.0;
    }
}

type HandshakeFuture = Pin<Box<dyn Future<Output = Result<Session, V2Error>> + Send>>;

/// One side of a BIP324 handshake, driven by [`V2Handshake::feed`].
pub(crate) struct V2Handshake {
    pipe: Shared,
    run: Option<HandshakeFuture>,
}

impl std::fmt::Debug for V2Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2Handshake").field("done", &self.run.is_none()).finish()
    }
}

/// What one step of the handshake produced.
#[derive(Debug)]
pub(crate) enum Step {
    /// Not done; `send` (maybe empty) must be written to the peer.
    Pending {
        /// Bytes to write.
        send: Vec<u8>,
    },
    /// Done; `send` goes out first, `rest` are bytes the peer sent after its version packet.
    Done {
        /// Bytes to write.
        send: Vec<u8>,
        /// The established session (boxed: cipher states are large).
        session: Box<Session>,
        /// Bytes already received that belong to the first packets after the handshake.
        rest: BytesMut,
    },
}

impl V2Handshake {
    /// A handshake as initiator (`initiator`) or responder, with our secret key bytes and the
    /// garbage we send (at most 4,095 bytes; Core sends a random amount). Call [`feed`] with no
    /// bytes to get our key out.
    ///
    /// [`feed`]: V2Handshake::feed
    pub(crate) fn new(magic: [u8; 4], initiator: bool, secret: [u8; 32], garbage: Vec<u8>) -> Self {
        let pipe: Shared = Arc::default();
        let role = if initiator { Role::Initiator } else { Role::Responder };
        let run = Box::pin(run_handshake(pipe.clone(), magic, role, secret, garbage));
        V2Handshake { pipe, run: Some(run) }
    }

    /// Gives the handshake the bytes that arrived (`eof` when the stream ended) and runs it as
    /// far as they allow.
    pub(crate) fn feed(&mut self, bytes: &[u8], eof: bool) -> Result<Step, V2Error> {
        {
            let mut p = lock(&self.pipe);
            p.inbox.extend_from_slice(bytes);
            p.eof |= eof;
        }
        let Some(run) = self.run.as_mut() else { return Ok(Step::Pending { send: Vec::new() }) };
        let waker = futures_util::task::noop_waker();
        let polled = run.as_mut().poll(&mut Context::from_waker(&waker));
        let mut p = lock(&self.pipe);
        let send = std::mem::take(&mut p.outbox);
        match polled {
            Poll::Pending => Ok(Step::Pending { send }),
            Poll::Ready(result) => {
                self.run = None;
                let session = Box::new(result?);
                let rest = std::mem::take(&mut p.inbox);
                Ok(Step::Done { send, session, rest })
            }
        }
    }
}

async fn run_handshake(
    pipe: Shared,
    magic: [u8; 4],
    role: Role,
    secret: [u8; 32],
    garbage: Vec<u8>,
) -> Result<Session, V2Error> {
    let curve = Secp256k1::signing_only();
    let garbage = &garbage[..garbage.len().min(MAX_GARBAGE_LEN)];
    let hs = Handshake::<Initialized>::new_with_rng(magic, role, &mut FixedKey(secret), &curve)?;
    let mut out = vec![0u8; Handshake::<Initialized>::send_key_len(Some(garbage))];
    let hs = hs.send_key(Some(garbage), &mut out)?;
    lock(&pipe).outbox.extend_from_slice(&out);
    let mut our_key = [0u8; 64];
    our_key.copy_from_slice(&out[..64]);

    let key = Take { pipe: pipe.clone(), n: 64 }.await?;
    let mut their_key = [0u8; 64];
    their_key.copy_from_slice(&key);
    let hs = hs.receive_key(their_key)?;
    // The same keys again for our own ciphers (see `cipher.rs`), checked below against the
    // crate's session id.
    let keys = SessionKeys::derive(magic, role == Role::Initiator, &secret, &our_key, &their_key)?;
    let mut out = vec![0u8; Handshake::<ReceivedKey>::send_version_len(None)];
    let mut hs = hs.send_version(&mut out, None)?;
    lock(&pipe).outbox.extend_from_slice(&out);

    // Garbage and terminator: never more than 4,095 + 16 bytes are looked at
    // (`V2Transport::ProcessReceivedGarbageBytes`).
    let window = MAX_GARBAGE_LEN + GARBAGE_TERMINATOR_LEN;
    let mut seen = Vec::new();
    let (mut hs, consumed) = loop {
        let more = TakeSome { pipe: pipe.clone(), max: window - seen.len() }.await?;
        seen.extend_from_slice(&more);
        match hs.receive_garbage(&seen)? {
            GarbageResult::FoundGarbage { handshake, consumed_bytes } => break (handshake, consumed_bytes),
            GarbageResult::NeedMoreData(h) => hs = h,
        }
    };
    // What followed the terminator goes back in front of the inbox.
    {
        let mut p = lock(&pipe);
        let mut front = BytesMut::from(&seen[consumed..]);
        front.unsplit(std::mem::take(&mut p.inbox));
        p.inbox = front;
    }
    // Decoys, then the version packet (its contents are reserved for extensions and ignored).
    let mut received = 0usize;
    loop {
        let len_bytes = Take { pipe: pipe.clone(), n: NUM_LENGTH_BYTES }.await?;
        let packet_len = hs.decrypt_packet_len([len_bytes[0], len_bytes[1], len_bytes[2]])?;
        let contents = packet_len.saturating_sub(PACKET_OVERHEAD);
        if contents > MAX_CONTENTS_LEN {
            return Err(V2Error::Oversized { len: contents, max: MAX_CONTENTS_LEN });
        }
        let mut packet = Take { pipe: pipe.clone(), n: packet_len }.await?;
        let result = hs.receive_version(&mut packet)?;
        received += 1;
        match result {
            VersionResult::Complete { cipher } => {
                if cipher.id() != &keys.session_id {
                    return Err(V2Error::KeyExchange { error: "session keys disagree".into() });
                }
                // Our ciphers continue where the crate's stopped: after our version packet and
                // the peer's decoys and version packet.
                let mut outbound = keys.send_cipher();
                outbound.skip_packet();
                let mut inbound = keys.recv_cipher();
                for _ in 0..received {
                    inbound.skip_packet();
                }
                return Ok(Session { id: keys.session_id, inbound, outbound });
            }
            VersionResult::Decoy(h) => hs = h,
        }
    }
}

/// Both ends of a completed handshake with fixed keys: our encoder and the peer's decoder
/// (fuzzing and benchmarks drive packets through a real session).
#[cfg(feature = "fuzz")]
pub(crate) fn session_pair(magic: [u8; 4]) -> (V2Encoder, V2Decoder) {
    let mut a = V2Handshake::new(magic, true, [1; 32], Vec::new());
    let mut b = V2Handshake::new(magic, false, [2; 32], Vec::new());
    let mut to_b = Vec::new();
    let mut to_a = Vec::new();
    let (mut ours, mut theirs) = (None, None);
    for _ in 0..4 {
        if ours.is_none() {
            match a.feed(&std::mem::take(&mut to_a), false).expect("honest handshake") {
                Step::Pending { send } => to_b.extend(send),
                Step::Done { send, session, .. } => {
                    to_b.extend(send);
                    ours = Some(session.outbound);
                }
            }
        }
        if theirs.is_none() {
            match b.feed(&std::mem::take(&mut to_b), false).expect("honest handshake") {
                Step::Pending { send } => to_a.extend(send),
                Step::Done { send, session, .. } => {
                    to_a.extend(send);
                    theirs = Some(session.inbound);
                }
            }
        }
    }
    let (ours, theirs) = (ours.expect("handshake completes"), theirs.expect("handshake completes"));
    (V2Encoder::new(ours), V2Decoder::new(theirs, magic))
}

#[cfg(test)]
#[path = "v2_tests.rs"]
mod tests;
