//! The HTTP API's request bodies: `POST /tx` (hex or `{"hex": ...}`) and `POST /bans` JSON
//! (`btcpeer::fuzz_api::http_bodies`).

fn main() {
    afl::fuzz!(|data: &[u8]| btcpeer::fuzz_api::http_bodies(data));
}
