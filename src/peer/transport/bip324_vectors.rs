//! BIP324's published packet encoding vectors through our layer: key derivation
//! ([`SessionKeys::derive`]), our encoder ([`V2Encoder`]) and our decoder ([`V2Decoder`]).
//!
//! `vectors/packet_encoding_test_vectors.csv` is `bip-0324/packet_encoding_test_vectors.csv`
//! from the bitcoin/bips repository (commit 32af2c9dc2d88df12b02409a023d647ee1de4c8a),
//! unchanged. Each row: our private key, both ElligatorSwift encodings and our role give the
//! keys, terminators and session id; the packet at index `in_idx` (after `in_idx` packets with
//! empty contents, as the BIP's generator sends them) with the row's contents (repeated
//! `in_multiply` times), AAD and ignore bit is `out_ciphertext` (or ends with
//! `out_ciphertext_endswith`). The vectors use mainnet's magic.

use bytes::BytesMut;

use super::cipher::SessionKeys;
use super::v2::{hex, Packet, V2Decoder, V2Encoder, V2Error, MAX_CONTENTS_LEN};
use crate::network::Network;

const CSV: &str = include_str!("vectors/packet_encoding_test_vectors.csv");

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn array<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().expect("length")
}

/// One row, by column name.
struct Row<'a>(Vec<(&'a str, &'a str)>);

impl Row<'_> {
    fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).unwrap_or_else(|| panic!("no {name}"))
    }
}

fn rows() -> Vec<Row<'static>> {
    let mut lines = CSV.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            assert_eq!(fields.len(), header.len(), "row width");
            Row(header.iter().copied().zip(fields).collect())
        })
        .collect()
}

#[test]
fn every_published_packet_vector_passes_through_our_layer() {
    let rows = rows();
    assert_eq!(rows.len(), 7, "the BIP publishes seven rows");
    let magic = Network::Mainnet.magic();
    for row in rows {
        let idx: usize = row.get("in_idx").parse().unwrap();
        let initiator = row.get("in_initiating") == "1";
        let keys = SessionKeys::derive(
            magic,
            initiator,
            &array(row.get("in_priv_ours")),
            &array(row.get("in_ellswift_ours")),
            &array(row.get("in_ellswift_theirs")),
        )
        .unwrap();
        assert_eq!(hex(&keys.session_id), row.get("mid_session_id"), "session id, row {idx}");
        assert_eq!(hex(&keys.initiator_l), row.get("mid_initiator_l"), "row {idx}");
        assert_eq!(hex(&keys.initiator_p), row.get("mid_initiator_p"), "row {idx}");
        assert_eq!(hex(&keys.responder_l), row.get("mid_responder_l"), "row {idx}");
        assert_eq!(hex(&keys.responder_p), row.get("mid_responder_p"), "row {idx}");
        assert_eq!(hex(&keys.send_terminator()), row.get("mid_send_garbage_terminator"), "row {idx}");
        assert_eq!(hex(&keys.recv_terminator()), row.get("mid_recv_garbage_terminator"), "row {idx}");

        let contents = unhex(row.get("in_content")).repeat(row.get("in_multiply").parse().unwrap());
        let aad = unhex(row.get("in_aad"));
        let ignore = row.get("in_ignore") == "1";
        // Our encoder, and the peer's decoder (the same keys seen from the other end), fed every
        // packet: the earlier ones advance both ciphers as the BIP's generator does.
        let mut enc = V2Encoder::new(keys.send_cipher());
        let peer = SessionKeys { initiator: !initiator, ..keys.clone() };
        let mut dec = V2Decoder::new(peer.recv_cipher(), magic);
        for _ in 0..idx {
            let packet = enc.packet_with_aad(&[], false, &[]);
            let (plain, len) = dec.decrypt_next(&mut BytesMut::from(&packet[..]), &[]).unwrap().unwrap();
            assert_eq!((&plain[..], len), (&[0u8][..], packet.len()));
        }
        let twin = (enc.clone(), dec.clone());
        let packet = enc.packet_with_aad(&contents, ignore, &aad);
        let expected = row.get("out_ciphertext");
        if expected.is_empty() {
            assert!(
                packet.ends_with(&unhex(row.get("out_ciphertext_endswith"))),
                "ciphertext end, row {idx}"
            );
        } else {
            assert_eq!(hex(&packet), expected, "ciphertext, row {idx}");
        }
        assert_eq!(packet.len(), 3 + 1 + contents.len() + 16);

        if contents.len() > MAX_CONTENTS_LEN {
            // Larger than any message (row 1024: 16 MiB): our decoder refuses it from its length
            // alone, as Core does...
            let refused = dec.decrypt_next(&mut BytesMut::from(&packet[..3]), &aad).unwrap_err();
            assert_eq!(refused, V2Error::Oversized { len: contents.len(), max: MAX_CONTENTS_LEN });
            // ...and the cipher under it, advanced as after a handshake, decrypts it.
            let mut cipher = peer.recv_cipher();
            for _ in 0..idx {
                cipher.skip_packet();
            }
            assert_eq!(cipher.decrypt_len([packet[0], packet[1], packet[2]]), contents.len());
            let mut body = packet[3..].to_vec();
            cipher.open(&mut body, &aad).unwrap();
            assert_eq!(body[0], if ignore { 0x80 } else { 0 }, "header byte, row {idx}");
            assert!(body[1..=contents.len()] == contents[..], "contents, row {idx}");
            continue;
        }
        // Decoded back, whole and split (the large row only whole: debug builds are slow).
        let cuts =
            if packet.len() > 4096 { vec![packet.len()] } else { vec![packet.len(), 2, packet.len() / 2] };
        for cut in cuts {
            let mut d = dec.clone();
            let mut buf = BytesMut::from(&packet[..cut]);
            if cut < packet.len() {
                assert!(d.decrypt_next(&mut buf, &aad).unwrap().is_none(), "partial packet, row {idx}");
                buf.extend_from_slice(&packet[cut..]);
            }
            let (plain, len) = d.decrypt_next(&mut buf, &aad).unwrap().expect("a whole packet");
            assert_eq!(len, packet.len());
            assert_eq!(plain[0], if ignore { 0x80 } else { 0 }, "header byte, row {idx}");
            assert!(plain[1..] == contents[..], "contents, row {idx}");
            assert!(buf.is_empty());
        }
        // A flipped bit after the length fails authentication.
        let mut tampered = packet.to_vec();
        tampered[3] ^= 0x40;
        assert_eq!(dec.decrypt_next(&mut BytesMut::from(&tampered[..]), &aad).unwrap_err(), V2Error::BadTag);
        // Without AAD, the message decoder takes it too: an ignored packet is dropped.
        if aad.is_empty() && packet.len() <= 4096 {
            let (mut enc, mut dec) = twin;
            let packet = enc.packet_with_aad(&contents, ignore, &[]);
            let got = dec.decode(&mut BytesMut::from(&packet[..])).unwrap().expect("a whole packet");
            assert!(!ignore || matches!(got, Packet::Ignored), "ignore bit, row {idx}");
        }
    }
}
