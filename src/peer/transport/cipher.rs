//! BIP324 session keys and packet ciphers after the handshake: the key schedule on
//! libsecp256k1's ElligatorSwift ECDH and bitcoin_hashes' HKDF, the forward-secure length and
//! packet ciphers on RustCrypto's `chacha20` and `chacha20poly1305` (no hand-written ChaCha20
//! or Poly1305; only BIP324's nonce and rekey schedule is ours, checked by the BIP's vectors).
//!
//! Why not the `bip324` crate's ciphers: its portable ChaCha20-Poly1305 runs at ~300 MB/s,
//! which kept 1 MB blocks on v2 at a quarter of v1's throughput; RustCrypto's picks AVX2/SSE2
//! at run time (~1.6 GB/s here) and the binary still runs on any x86-64. Packets up to
//! [`SMALL_PACKET`] bytes still use the portable one, which is faster there. The handshake
//! itself stays the crate's (`v2.rs`); its session id is checked against ours.

use bitcoin::secp256k1::ellswift::{ElligatorSwift, ElligatorSwiftParty};
use bitcoin::secp256k1::SecretKey;
use bitcoin_hashes::{sha256, Hkdf};
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;

use super::v2::V2Error;

/// Bytes of the encrypted length in front of every packet.
pub(crate) const LENGTH_LEN: usize = 3;
/// Bytes of the Poly1305 tag after every packet.
pub(crate) const TAG_LEN: usize = 16;
/// Packets (or lengths) between two rekeys (BIP324; Core's `BIP324Cipher::REKEY_INTERVAL`).
const REKEY_INTERVAL: u32 = 224;
/// Largest contents the 3-byte length can describe.
pub(crate) const MAX_LENGTH_FIELD: usize = (1 << 24) - 1;

/// Core's `Nonce96`: a 32-bit and a 64-bit counter, little-endian.
fn nonce(first: u32, second: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&first.to_le_bytes());
    n[4..].copy_from_slice(&second.to_le_bytes());
    n
}

/// BIP324's FSChaCha20 for the packet lengths (Core `crypto/chacha20.cpp`,
/// `FSChaCha20::Crypt`): one keystream per key, rekeyed from its own next 32 bytes every 224
/// lengths. Each key's whole keystream (224 lengths and the next key) is drawn at once, so a
/// packet costs a 3-byte XOR instead of a ChaCha20 block.
#[derive(Clone)]
struct LengthCipher {
    keystream: Box<[u8; LENGTH_KEYSTREAM]>,
    chunks: usize,
    rekeys: u64,
}

/// One key's use: 224 lengths, then 32 bytes for the next key.
const LENGTH_KEYSTREAM: usize = REKEY_INTERVAL as usize * LENGTH_LEN + 32;

impl LengthCipher {
    fn new(key: [u8; 32]) -> Self {
        let mut cipher = LengthCipher { keystream: Box::new([0; LENGTH_KEYSTREAM]), chunks: 0, rekeys: 0 };
        cipher.draw(key);
        cipher
    }

    fn draw(&mut self, key: [u8; 32]) {
        self.keystream.fill(0);
        ChaCha20::new(&key.into(), &nonce(0, self.rekeys).into()).apply_keystream(&mut self.keystream[..]);
    }

    fn crypt(&mut self, chunk: &mut [u8; LENGTH_LEN]) {
        let at = self.chunks * LENGTH_LEN;
        for (b, k) in chunk.iter_mut().zip(&self.keystream[at..at + LENGTH_LEN]) {
            *b ^= k;
        }
        self.chunks += 1;
        if self.chunks == REKEY_INTERVAL as usize {
            let mut key = [0u8; 32];
            key.copy_from_slice(&self.keystream[LENGTH_KEYSTREAM - 32..]);
            self.chunks = 0;
            self.rekeys += 1;
            self.draw(key);
        }
    }
}

/// BIP324's FSChaCha20Poly1305 for the packets (Core `crypto/chacha20poly1305.cpp`,
/// `FSChaCha20Poly1305::Encrypt`/`Decrypt`/`NextPacket`): nonce = (packet, rekey) counters;
/// every 224 packets the key becomes 32 bytes of keystream at nonce (0xffffffff, rekey) from
/// block 1 (`AEADChaCha20Poly1305::Keystream`).
#[derive(Clone)]
struct PacketAead {
    key: [u8; 32],
    packets: u32,
    rekeys: u64,
}

impl PacketAead {
    fn new(key: [u8; 32]) -> Self {
        PacketAead { key, packets: 0, rekeys: 0 }
    }

    fn seal(&mut self, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = seal(&self.key, nonce(self.packets, self.rekeys), aad, buf, buf.len() <= SMALL_PACKET);
        self.next_packet();
        tag
    }

    fn open(&mut self, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), V2Error> {
        let nonce = nonce(self.packets, self.rekeys);
        open(&self.key, nonce, aad, buf, tag, buf.len() <= SMALL_PACKET)?;
        self.next_packet();
        Ok(())
    }

    fn next_packet(&mut self) {
        self.packets += 1;
        if self.packets == REKEY_INTERVAL {
            let mut stream = ChaCha20::new(&self.key.into(), &nonce(u32::MAX, self.rekeys).into());
            // Block 1: block 0 is Poly1305's key.
            stream.seek(64u32);
            let mut key = [0u8; 32];
            stream.apply_keystream(&mut key);
            self.key = key;
            self.packets = 0;
            self.rekeys += 1;
        }
    }
}

/// Packets up to this many bytes (header and contents) go through the portable
/// ChaCha20-Poly1305 (the one the bip324 crate uses), larger ones through RustCrypto's: its
/// AVX2 Poly1305 costs ~2 µs to set up per message, more than the portable one spends on 512
/// bytes (measured: 64 B 0.4 vs 2.2 µs; 1 KiB 4.3 vs 2.9 µs; 1 MB 2.6 vs 0.6 ms). Both are
/// RFC 8439 and give the same bytes (tested).
const SMALL_PACKET: usize = 512;

/// ChaCha20-Poly1305 encryption in place; the tag.
fn seal(key: &[u8; 32], nonce: [u8; 12], aad: &[u8], buf: &mut [u8], portable: bool) -> [u8; TAG_LEN] {
    if portable {
        let aead = chacha20_poly1305::ChaCha20Poly1305::new(
            chacha20_poly1305::Key::new(*key),
            chacha20_poly1305::Nonce::new(nonce),
        );
        return aead.encrypt(buf, Some(aad));
    }
    let aead = ChaCha20Poly1305::new(key.into());
    // Fails only past ChaCha20's 256 GiB per nonce; a packet is at most 16 MiB.
    aead.encrypt_in_place_detached(&nonce.into(), aad, buf).unwrap_or_default().into()
}

/// ChaCha20-Poly1305 authentication and decryption in place.
fn open(
    key: &[u8; 32],
    nonce: [u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
    portable: bool,
) -> Result<(), V2Error> {
    if portable {
        let aead = chacha20_poly1305::ChaCha20Poly1305::new(
            chacha20_poly1305::Key::new(*key),
            chacha20_poly1305::Nonce::new(nonce),
        );
        return aead.decrypt(buf, *tag, Some(aad)).map_err(|_| V2Error::BadTag);
    }
    let aead = ChaCha20Poly1305::new(key.into());
    aead.decrypt_in_place_detached(&nonce.into(), aad, buf, tag.into()).map_err(|_| V2Error::BadTag)
}

/// Encrypts our packets (BIP324 `v2_enc_packet`).
#[derive(Clone)]
pub(crate) struct SendCipher {
    length: LengthCipher,
    aead: PacketAead,
}

impl SendCipher {
    /// A cipher from the length and packet keys, at packet 0.
    pub(crate) fn new(length_key: [u8; 32], packet_key: [u8; 32]) -> Self {
        SendCipher { length: LengthCipher::new(length_key), aead: PacketAead::new(packet_key) }
    }

    /// Encrypts in place one packet laid out as 3 length bytes (overwritten), the header byte,
    /// the contents and 16 bytes for the tag (overwritten). The caller keeps the contents
    /// within [`MAX_LENGTH_FIELD`].
    pub(crate) fn seal(&mut self, packet: &mut [u8], aad: &[u8]) {
        debug_assert!(packet.len() > LENGTH_LEN + TAG_LEN);
        let contents_len = packet.len().saturating_sub(LENGTH_LEN + 1 + TAG_LEN);
        debug_assert!(contents_len <= MAX_LENGTH_FIELD);
        let mut len = [0u8; LENGTH_LEN];
        len.copy_from_slice(&(contents_len as u32).to_le_bytes()[..LENGTH_LEN]);
        self.length.crypt(&mut len);
        packet[..LENGTH_LEN].copy_from_slice(&len);
        let tag_at = packet.len() - TAG_LEN;
        let tag = self.aead.seal(aad, &mut packet[LENGTH_LEN..tag_at]);
        packet[tag_at..].copy_from_slice(&tag);
    }

    /// Advances past one packet sent without this cipher (the handshake's version packet).
    pub(crate) fn skip_packet(&mut self) {
        self.length.crypt(&mut [0; LENGTH_LEN]);
        self.aead.next_packet();
    }
}

/// Decrypts the peer's packets (BIP324 `v2_receive_packet`).
#[derive(Clone)]
pub(crate) struct RecvCipher {
    length: LengthCipher,
    aead: PacketAead,
}

impl RecvCipher {
    /// A cipher from the length and packet keys, at packet 0.
    pub(crate) fn new(length_key: [u8; 32], packet_key: [u8; 32]) -> Self {
        RecvCipher { length: LengthCipher::new(length_key), aead: PacketAead::new(packet_key) }
    }

    /// The contents length of the next packet (header byte and tag not counted). Call once per
    /// packet: the length cipher advances.
    pub(crate) fn decrypt_len(&mut self, mut len: [u8; LENGTH_LEN]) -> usize {
        self.length.crypt(&mut len);
        usize::from(len[0]) | usize::from(len[1]) << 8 | usize::from(len[2]) << 16
    }

    /// Authenticates and decrypts in place the header byte, contents and tag that follow the
    /// length; on success the first `packet.len() - 16` bytes are the plaintext.
    pub(crate) fn open(&mut self, packet: &mut [u8], aad: &[u8]) -> Result<(), V2Error> {
        let Some(tag_at) = packet.len().checked_sub(TAG_LEN).filter(|&n| n > 0) else {
            return Err(V2Error::BadTag);
        };
        let (plain, tag) = packet.split_at_mut(tag_at);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        self.aead.open(aad, plain, &t)
    }

    /// Advances past one packet received without this cipher (the handshake's decoys and
    /// version packet).
    pub(crate) fn skip_packet(&mut self) {
        self.length.crypt(&mut [0; LENGTH_LEN]);
        self.aead.next_packet();
    }
}

/// Everything BIP324 derives from the ECDH (Core `bip324.cpp`, `BIP324Cipher::Initialize`).
#[derive(Clone)]
pub(crate) struct SessionKeys {
    /// The session id both ends show.
    pub(crate) session_id: [u8; 32],
    /// `initiator_L`, `initiator_P`, `responder_L`, `responder_P`.
    pub(crate) initiator_l: [u8; 32],
    pub(crate) initiator_p: [u8; 32],
    pub(crate) responder_l: [u8; 32],
    pub(crate) responder_p: [u8; 32],
    /// The initiator's and the responder's garbage terminators (the crate's handshake finds
    /// them itself: only the vector tests read these).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) initiator_terminator: [u8; 16],
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) responder_terminator: [u8; 16],
    /// Whether we initiated (which keys are ours to send with).
    pub(crate) initiator: bool,
}

impl SessionKeys {
    /// Derives the keys from our secret key, both ElligatorSwift encodings as sent, our role
    /// and the network magic.
    pub(crate) fn derive(
        magic: [u8; 4],
        initiator: bool,
        secret: &[u8; 32],
        ours: &[u8; 64],
        theirs: &[u8; 64],
    ) -> Result<Self, V2Error> {
        let secret =
            SecretKey::from_slice(secret).map_err(|e| V2Error::KeyExchange { error: e.to_string() })?;
        let (ours, theirs) = (ElligatorSwift::from_array(*ours), ElligatorSwift::from_array(*theirs));
        let (a, b, party) = if initiator {
            (ours, theirs, ElligatorSwiftParty::A)
        } else {
            (theirs, ours, ElligatorSwiftParty::B)
        };
        let shared = ElligatorSwift::shared_secret(a, b, secret, party, Some(b"bip324_ellswift_xonly_ecdh"));
        let mut salt = [0u8; 28];
        salt[..24].copy_from_slice(b"bitcoin_v2_shared_secret");
        salt[24..].copy_from_slice(&magic);
        let hk = Hkdf::<sha256::Hash>::new(&salt, &shared.to_secret_bytes());
        let expand = |info: &[u8]| {
            let mut okm = [0u8; 32];
            // 32 bytes are far below HKDF-SHA256's 8,160-byte limit.
            hk.expand(info, &mut okm).map(|()| okm).map_err(|e| V2Error::KeyExchange { error: e.to_string() })
        };
        let terminators = expand(b"garbage_terminators")?;
        let mut initiator_terminator = [0u8; 16];
        let mut responder_terminator = [0u8; 16];
        initiator_terminator.copy_from_slice(&terminators[..16]);
        responder_terminator.copy_from_slice(&terminators[16..]);
        Ok(SessionKeys {
            session_id: expand(b"session_id")?,
            initiator_l: expand(b"initiator_L")?,
            initiator_p: expand(b"initiator_P")?,
            responder_l: expand(b"responder_L")?,
            responder_p: expand(b"responder_P")?,
            initiator_terminator,
            responder_terminator,
            initiator,
        })
    }

    /// The cipher for what we send.
    pub(crate) fn send_cipher(&self) -> SendCipher {
        if self.initiator {
            SendCipher::new(self.initiator_l, self.initiator_p)
        } else {
            SendCipher::new(self.responder_l, self.responder_p)
        }
    }

    /// The cipher for what the peer sends.
    pub(crate) fn recv_cipher(&self) -> RecvCipher {
        if self.initiator {
            RecvCipher::new(self.responder_l, self.responder_p)
        } else {
            RecvCipher::new(self.initiator_l, self.initiator_p)
        }
    }

    /// The terminator we send after our garbage (the handshake is the crate's: tests only).
    #[cfg(test)]
    pub(crate) fn send_terminator(&self) -> [u8; 16] {
        if self.initiator {
            self.initiator_terminator
        } else {
            self.responder_terminator
        }
    }

    /// The terminator the peer sends after its garbage.
    #[cfg(test)]
    pub(crate) fn recv_terminator(&self) -> [u8; 16] {
        if self.initiator {
            self.responder_terminator
        } else {
            self.initiator_terminator
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable and the SIMD ChaCha20-Poly1305 give the same ciphertext and tag, and each
    /// opens what the other sealed, on both sides of the size where we switch.
    #[test]
    fn both_implementations_agree() {
        let key = [9u8; 32];
        for len in (0..1100).step_by(37).chain([SMALL_PACKET - 1, SMALL_PACKET, SMALL_PACKET + 1]) {
            for aad in [&b""[..], b"garbage", &[5u8; 300][..]] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let n = nonce(len as u32, 3);
                let (mut a, mut b) = (plain.clone(), plain.clone());
                let tag = seal(&key, n, aad, &mut a, true);
                assert_eq!(seal(&key, n, aad, &mut b, false), tag, "tag, {len} bytes");
                assert_eq!(a, b, "ciphertext, {len} bytes");
                for portable in [true, false] {
                    let mut c = a.clone();
                    open(&key, n, aad, &mut c, &tag, portable).unwrap();
                    assert_eq!(c, plain);
                    let mut bad = tag;
                    bad[0] ^= 1;
                    assert_eq!(open(&key, n, aad, &mut a.clone(), &bad, portable), Err(V2Error::BadTag));
                }
            }
        }
    }
}
