//! The peer state machine fed arbitrary message sequences (`btcpeer::fuzz_api::peer_machine`):
//! it must never panic and must end every connection with exactly one typed reason.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        btcpeer::fuzz_api::peer_machine(data);
    });
}
