//! The BIP324 v2 transport: a listener's detection and handshake on raw bytes, and the packet
//! decoder on valid packets with arbitrary contents (`btcpeer::fuzz_api::v2_transport`).

fn main() {
    afl::fuzz!(|data: &[u8]| btcpeer::fuzz_api::v2_transport(data));
}
