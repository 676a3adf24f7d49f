//! A dialed peer's `version` services replace what gossip said (Core's `SetServices`).

use super::*;

const NOW: u64 = 1_700_000_000;

fn pa(s: &str) -> PeerAddr {
    s.parse().expect("test address parses")
}

#[test]
fn version_services_replace_gossiped_ones() {
    let mut book = AddrBook::new(AddrBookConfig::default(), [3; 32]);
    let addr = pa("1.2.3.4:8333");
    assert!(book.add(&addr, 0x1, NOW, None, NOW));
    assert!(book.set_services(&addr, 0xC09));
    assert_eq!(book.get(&addr).map(|e| e.services), Some(0xC09));
    // Gossip only adds bits.
    book.add(&addr, 0x4, NOW, None, NOW);
    assert_eq!(book.get(&addr).map(|e| e.services), Some(0xC0D));
    assert!(!book.set_services(&pa("5.6.7.8:8333"), 1), "unknown address");
}
