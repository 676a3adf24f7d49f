//! The address book (and ban list) restored from arbitrary `addrbook.json` / `bans.json` bytes
//! (`btcpeer::fuzz_api::addrbook_restore`).

fn main() {
    afl::fuzz!(|data: &[u8]| btcpeer::fuzz_api::addrbook_restore(data));
}
