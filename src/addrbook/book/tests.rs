use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::snapshot::{LoadReport, SnapshotEntry, SnapshotError, SNAPSHOT_VERSION};
use super::*;

const NOW: u64 = 1_700_000_000;
const DAY: u64 = 24 * 3600;

fn cfg(new_buckets: u32, tried_buckets: u32, bucket_size: u32) -> AddrBookConfig {
    AddrBookConfig { new_buckets, tried_buckets, bucket_size, accept_local: true }
}

fn pa(s: &str) -> PeerAddr {
    s.parse().expect("test address parses")
}

/// A public IPv4 address, distinct for each `i` below 2^24.
fn ip(i: u32) -> PeerAddr {
    let a = 1 + (i >> 16) % 90;
    let a = if a == 10 { 91 } else { a };
    pa(&format!("{a}.{}.{}.1:8333", (i >> 8) & 0xff, i & 0xff))
}

/// The seed for a property test: `BTCPEER_SEED` or random, printed so a failure can be replayed.
fn rng_for(test: &str) -> (StdRng, u64) {
    let seed = std::env::var("BTCPEER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("{test}: BTCPEER_SEED={seed}");
    (StdRng::seed_from_u64(seed), seed)
}

/// A random address of any kind the book accepts.
fn random_addr(rng: &mut StdRng) -> PeerAddr {
    match rng.gen_range(0..10) {
        0..=5 => ip(rng.gen_range(0..1 << 24)),
        6 | 7 => {
            let ip = Ipv6Addr::new(0x2a00 | rng.gen_range(0..0x100), rng.gen(), rng.gen(), 0, 0, 0, 0, 1);
            PeerAddr::Ip(SocketAddr::new(ip.into(), 8333))
        }
        8 => {
            let name: String =
                (0..16).map(|_| b"abcdefghijklmnopqrstuvwxyz234567"[rng.gen_range(0..32)] as char).collect();
            PeerAddr::Host(Arc::from(format!("{name}.onion")), 8333)
        }
        _ => pa(&format!("127.0.{}.{}:{}", rng.gen::<u8>(), rng.gen::<u8>(), rng.gen_range(1..=u16::MAX))),
    }
}

/// Every structural invariant of the book.
fn check(book: &AddrBook) {
    assert_eq!(book.entries.len(), book.new_len + book.tried_len);
    assert!(book.new_len <= book.config.new_capacity());
    assert!(book.tried_len <= book.config.tried_capacity());
    let mut seen = 0;
    let bucket = book.config.bucket_size as usize;
    for (table, slots) in [(Table::New, &book.new_slots), (Table::Tried, &book.tried_slots)] {
        for (i, cell) in slots.iter().enumerate() {
            let Some(addr) = cell else { continue };
            let e = book.entries.get(addr).expect("slot points at an entry");
            assert_eq!((e.table, e.slot), (table, i), "{addr}");
            let home = match table {
                Table::New => book.new_slot(addr, &e.source_group),
                Table::Tried => book.tried_slot(addr),
            };
            // A seed's or configuration's address may take another slot of its bucket.
            match table {
                Table::New => assert_eq!(home / bucket, i / bucket, "{addr} is not in its hashed bucket"),
                Table::Tried => assert_eq!(home, i, "{addr} is not in its hashed slot"),
            }
            seen += 1;
        }
    }
    assert_eq!(seen, book.entries.len());
}

#[test]
fn add_admits_only_dialable_addresses() {
    let mut book = AddrBook::new(AddrBookConfig::default(), [7; 32]);
    assert!(book.add(&pa("1.2.3.4:8333"), 1, NOW, None, NOW));
    assert!(!book.add(&pa("1.2.3.4:8333"), 1, NOW, None, NOW), "already known");
    assert!(!book.add(&pa("1.2.3.5:0"), 1, NOW, None, NOW), "port 0");
    assert!(!book.add(&pa("0.0.0.0:8333"), 1, NOW, None, NOW));
    assert!(!book.add(&pa("[ff02::1]:8333"), 1, NOW, None, NOW));
    assert!(!book.add(&pa("127.0.0.1:18444"), 1, NOW, None, NOW), "local refused by default");
    assert!(!book.add(&PeerAddr::Host(Arc::from("unknown-9:abcd"), 1), 1, NOW, None, NOW));
    assert!(book.add(&pa("abc.onion:8333"), 1, NOW, None, NOW));
    let mut local = AddrBook::new(cfg(4, 4, 4), [7; 32]);
    assert!(local.add(&pa("127.0.0.1:18444"), 1, NOW, None, NOW));
    assert_eq!((book.len(), book.new_len(), book.tried_len()), (2, 2, 0));
    check(&book);
}

#[test]
fn spellings_of_one_address_share_an_entry() {
    let mut book = AddrBook::new(cfg(8, 8, 8), [1; 32]);
    assert!(book.add(&pa("[::ffff:1.2.3.4]:8333"), 1, NOW, None, NOW));
    assert!(!book.add(&pa("1.2.3.4:8333"), 2, NOW, None, NOW));
    assert_eq!(book.get(&pa("[::ffff:1.2.3.4]:8333")).map(|e| e.services), Some(3));
    assert!(book.add(&pa("Node.Example.org:8333"), 0, NOW, None, NOW));
    assert!(book.good(&PeerAddr::Host(Arc::from("node.example.org."), 8333), NOW));
    assert_eq!(book.tried_len(), 1);
}

#[test]
fn times_are_clamped_and_relays_penalized() {
    let mut book = AddrBook::new(cfg(64, 8, 8), [2; 32]);
    let source = pa("9.9.9.9:8333");
    book.add(&ip(1), 0, NOW + 3600, None, NOW);
    assert_eq!(book.get(&ip(1)).map(|e| e.last_seen), Some(NOW - 5 * DAY), "from the future");
    book.add(&ip(2), 0, 99_999_999, None, NOW);
    assert_eq!(book.get(&ip(2)).map(|e| e.last_seen), Some(NOW - 5 * DAY), "ancient");
    book.add(&ip(3), 0, NOW - 60, Some(&source), NOW);
    assert_eq!(book.get(&ip(3)).map(|e| e.last_seen), Some(NOW - 60 - 2 * 3600), "relayed");
    book.add(&ip(4), 0, NOW - 60, Some(&ip(4)), NOW);
    assert_eq!(book.get(&ip(4)).map(|e| e.last_seen), Some(NOW - 60), "self-announced");
    assert_eq!(book.get(&ip(3)).map(|e| e.source_group.clone()), Some(netgroup(&source)));
    assert_eq!(book.get(&ip(4)).map(|e| e.source_group.clone()), Some(netgroup(&ip(4))));
}

#[test]
fn known_address_merges_services_and_refreshes_time() {
    let mut book = AddrBook::new(cfg(64, 8, 8), [3; 32]);
    book.add(&ip(1), 1, NOW - 10 * 3600, None, NOW);
    book.add(&ip(1), 8, NOW - 9 * 3600 - 1800, None, NOW);
    let e = book.get(&ip(1)).cloned().expect("known");
    assert_eq!((e.services, e.last_seen), (9, NOW - 10 * 3600), "refreshed at most hourly");
    book.add(&ip(1), 0, NOW - 60, None, NOW);
    assert_eq!(book.get(&ip(1)).map(|e| e.last_seen), Some(NOW - 60));
}

#[test]
fn good_moves_to_tried_and_a_collision_sends_the_old_entry_back() {
    // One tried slot: every good() collides with the previous one.
    let mut book = AddrBook::new(cfg(64, 1, 1), [4; 32]);
    let (a, b) = (ip(1), ip(70_000));
    assert!(book.add(&a, 1, NOW, None, NOW) && book.add(&b, 1, NOW, None, NOW));
    assert!(!book.good(&ip(5), NOW), "unknown address");
    assert!(book.good(&a, NOW));
    assert_eq!(book.get(&a).map(|e| (e.table, e.last_success, e.attempts)), Some((Table::Tried, NOW, 0)));
    assert_eq!((book.new_len(), book.tried_len()), (1, 1));
    assert!(book.good(&a, NOW + 1), "good again on a tried entry");
    assert!(book.good(&b, NOW + 2));
    assert_eq!(book.get(&b).map(|e| e.table), Some(Table::Tried));
    assert_eq!(book.get(&a).map(|e| (e.table, e.last_success)), Some((Table::New, NOW + 1)));
    check(&book);
}

#[test]
fn failures_count_once_per_success_anywhere_and_lower_the_chance() {
    let mut book = AddrBook::new(cfg(256, 64, 64), [5; 32]);
    for i in 0..3 {
        assert!(book.add(&ip(i), 0, NOW, None, NOW));
    }
    let chance = |b: &AddrBook, now| b.get(&ip(0)).map(|e| e.chance(now)).expect("known");
    assert_eq!(chance(&book, NOW), 1.0);
    assert!(book.attempt(&ip(0), NOW));
    assert!((chance(&book, NOW) - 0.01).abs() < 1e-12, "recent attempt");
    assert!(book.failed(&ip(0), NOW));
    assert!(book.failed(&ip(0), NOW + 1), "counted only once: we might be offline");
    assert_eq!(book.get(&ip(0)).map(|e| e.attempts), Some(1));
    assert!(book.good(&ip(1), NOW + 2));
    book.failed(&ip(0), NOW + 3);
    assert_eq!(book.get(&ip(0)).map(|e| e.attempts), Some(2));
    assert!((chance(&book, NOW + 3 + 3600) - 0.66 * 0.66).abs() < 1e-12);
    assert!(!book.failed(&ip(99), NOW) && !book.attempt(&ip(99), NOW));
}

#[test]
fn terrible_follows_cores_rules() {
    let mut book = AddrBook::new(cfg(64, 8, 8), [6; 32]);
    book.add(&ip(1), 0, NOW, None, NOW);
    let base = book.get(&ip(1)).cloned().expect("known");
    let t = |f: &dyn Fn(&mut AddrInfo), now: u64| {
        let mut e = base.clone();
        f(&mut e);
        e.is_terrible(now)
    };
    assert!(!t(&|_| {}, NOW));
    assert!(t(&|_| {}, NOW + 31 * DAY), "not seen for 30 days");
    assert!(t(&|e| e.last_seen = NOW + 3600, NOW), "from the future");
    assert!(t(&|e| e.attempts = 3, NOW), "three failures, never a success");
    assert!(!t(&|e| (e.attempts, e.last_success) = (9, NOW - 8 * DAY), NOW));
    assert!(t(&|e| (e.attempts, e.last_success) = (10, NOW - 8 * DAY), NOW));
    assert!(!t(&|e| (e.attempts, e.last_success) = (10, NOW - 6 * DAY), NOW));
    assert!(!t(&|e| (e.attempts, e.last_attempt) = (3, NOW - 30), NOW), "tried in the last minute");
}

#[test]
fn full_slot_keeps_a_healthy_entry_and_replaces_a_terrible_one() {
    let mut book = AddrBook::new(cfg(1, 1, 1), [8; 32]);
    assert!(book.add(&ip(1), 0, NOW - 29 * DAY, None, NOW));
    assert!(!book.add(&ip(2), 0, NOW, None, NOW), "healthy occupant stays");
    assert!(book.add(&ip(2), 0, NOW, None, NOW + 2 * DAY), "occupant now past the horizon");
    assert!(book.get(&ip(1)).is_none());
    assert_eq!(book.len(), 1);
}

#[test]
fn prune_and_remove_forget_entries() {
    let mut book = AddrBook::new(cfg(64, 8, 8), [9; 32]);
    book.add(&ip(1), 0, NOW - 40 * DAY, None, NOW);
    book.add(&ip(2), 0, NOW, None, NOW);
    book.add(&ip(3), 0, NOW - 40 * DAY, None, NOW);
    book.good(&ip(3), NOW);
    assert_eq!(book.prune(NOW + 3600), 1, "only the terrible new entry");
    assert_eq!(book.remove(&ip(3)).map(|e| e.table), Some(Table::Tried));
    assert!(book.remove(&ip(3)).is_none());
    assert_eq!(book.len(), 1);
    check(&book);
}

#[test]
fn tables_stay_bounded_under_100k_random_operations() {
    let (mut rng, seed) = rng_for("bounded");
    let config = cfg(16, 4, 8);
    let mut book = AddrBook::new(config.clone(), rng.gen());
    let sources: Vec<PeerAddr> = (0..500).map(|_| random_addr(&mut rng)).collect();
    let mut known = Vec::new();
    for i in 0..100_000u64 {
        let now = NOW + i;
        let addr = random_addr(&mut rng);
        let source = sources.get(rng.gen_range(0..sources.len() + 50)); // some with no source
        let time = now - rng.gen_range(0..40 * DAY);
        if book.add(&addr, rng.gen(), time, source, now) && known.len() < 1000 {
            known.push(addr);
        }
        if !known.is_empty() && i % 7 == 0 {
            let a = &known[rng.gen_range(0..known.len())];
            match rng.gen_range(0..4) {
                0 => _ = book.good(a, now),
                1 => _ = book.failed(a, now),
                2 => _ = book.attempt(a, now),
                _ => _ = book.remove(a),
            }
        }
        assert!(book.new_len() <= config.new_capacity(), "seed {seed}");
        assert!(book.tried_len() <= config.tried_capacity(), "seed {seed}");
        if i % 20_000 == 0 {
            check(&book);
        }
    }
    check(&book);
    assert!(book.tried_len() > 0 && book.new_len() > config.new_capacity() / 2, "seed {seed}: {book:?}");
}

#[test]
fn select_never_returns_an_excluded_address_and_always_terminates() {
    let (mut rng, seed) = rng_for("select");
    assert_eq!(AddrBook::new(cfg(8, 8, 8), [0; 32]).select(&mut rng, NOW, |_| false), None);
    for round in 0..20 {
        let mut book = AddrBook::new(cfg(32, 8, 8), rng.gen());
        let n = rng.gen_range(1..300);
        let addrs: Vec<PeerAddr> = (0..n).map(|_| random_addr(&mut rng)).collect();
        for a in &addrs {
            book.add(a, 0, NOW, None, NOW);
            if rng.gen_bool(0.3) {
                book.good(a, NOW);
            }
        }
        let parity = rng.gen_range(0..3u8);
        let excluded = |a: &PeerAddr| a.to_string().len() % 3 == usize::from(parity);
        for _ in 0..200 {
            if let Some(a) = book.select(&mut rng, NOW, excluded) {
                assert!(!excluded(&a), "seed {seed} round {round}: excluded {a} selected");
                assert!(book.get(&a).is_some());
            }
        }
        let any = book.iter().any(|e| !excluded(&e.addr));
        assert_eq!(book.select(&mut rng, NOW, excluded).is_some(), any, "seed {seed} round {round}");
        assert_eq!(book.select(&mut rng, NOW, |_| true), None);
    }
    // Sparse default-sized table, one eligible entry: found every time.
    let mut book = AddrBook::new(AddrBookConfig::default(), [11; 32]);
    for i in 0..3 {
        assert!(book.add(&ip(i), 0, NOW, None, NOW), "fixed key: no collision");
    }
    book.good(&ip(0), NOW);
    for _ in 0..50 {
        assert_eq!(book.select(&mut rng, NOW, |a| *a != ip(2)), Some(ip(2)), "seed {seed}");
    }
}

#[test]
fn select_splits_tables_evenly_and_favours_healthy_entries() {
    let (mut rng, seed) = rng_for("select weights");
    let mut book = AddrBook::new(cfg(64, 16, 16), [10; 32]);
    for i in 0..3 {
        assert!(book.add(&ip(i * 70_000), 0, NOW, None, NOW), "fixed key: no collision");
    }
    book.good(&ip(0), NOW - 3600);
    let failing = ip(70_000);
    if let Some(e) = book.entries.get_mut(&failing) {
        e.attempts = 8;
    }
    let mut counts = HashMap::new();
    for _ in 0..4000 {
        *counts.entry(book.select(&mut rng, NOW, |_| false).expect("non-empty")).or_insert(0) += 1;
    }
    let count = |a: &PeerAddr| counts.get(a).copied().unwrap_or(0);
    assert!((1600..=2400).contains(&count(&ip(0))), "seed {seed}: tried picked {counts:?}");
    assert!(count(&ip(140_000)) > 10 * count(&failing), "seed {seed}: {counts:?}");
}

fn random_book(rng: &mut StdRng, config: AddrBookConfig, n: usize) -> AddrBook {
    let mut book = AddrBook::new(config, rng.gen());
    for i in 0..n {
        let a = random_addr(rng);
        let now = NOW + i as u64;
        book.add(&a, rng.gen(), now - rng.gen_range(0..DAY), Some(&random_addr(rng)), now);
        match rng.gen_range(0..4) {
            0 => _ = book.good(&a, now),
            1 => _ = book.failed(&a, now),
            _ => {}
        }
    }
    book
}

/// The entries, sorted, without the memory-only field a snapshot does not keep.
fn view(book: &AddrBook) -> Vec<AddrInfo> {
    let mut v: Vec<AddrInfo> =
        book.iter().cloned().map(|e| AddrInfo { last_count_attempt: 0, ..e }).collect();
    v.sort_by_key(|e| e.addr.to_string());
    v
}

#[test]
fn snapshot_round_trip_preserves_entries_and_tables() {
    let (mut rng, seed) = rng_for("snapshot");
    let config = cfg(32, 8, 8);
    let book = random_book(&mut rng, config.clone(), 2000);
    let json = serde_json::to_string(&book.snapshot()).expect("serializes");
    let parsed: Snapshot = serde_json::from_str(&json).expect("parses");
    let later = NOW + 10 * DAY;
    let (restored, report) = AddrBook::restore(config, parsed, later).expect("loads");
    assert!(report.is_clean(), "seed {seed}: {report}");
    assert_eq!(report.kept, book.len());
    assert_eq!(view(&restored), view(&book), "seed {seed}");
    assert_eq!((restored.new_len(), restored.tried_len()), (book.new_len(), book.tried_len()));
    check(&restored);
}

#[test]
fn restore_rejects_a_wrong_version() {
    let mut snapshot = AddrBook::new(cfg(4, 4, 4), [1; 32]).snapshot();
    snapshot.version = 2;
    let err = AddrBook::restore(cfg(4, 4, 4), snapshot, NOW).expect_err("version 2");
    assert_eq!(err, SnapshotError::Version { found: 2, expected: SNAPSHOT_VERSION });
}

fn entry(addr: &str, table: Table) -> SnapshotEntry {
    SnapshotEntry {
        addr: addr.into(),
        services: 1,
        last_seen: NOW,
        last_attempt: 0,
        last_success: NOW,
        attempts: 0,
        source_group: NetGroup::Ipv4([9, 9]),
        table,
    }
}

#[test]
fn restore_repairs_hostile_entries() {
    let entries = vec![
        entry("1.2.3.4:8333", Table::Tried),
        entry("1.2.3.4:8333", Table::New),
        entry("[::ffff:1.2.3.4]:8333", Table::Tried),
        entry("nonsense", Table::New),
        entry("1.2.3.5:0", Table::New),
        entry("0.0.0.0:8333", Table::New),
        entry("192.168.1.1:8333", Table::New),
        SnapshotEntry { last_success: 0, ..entry("5.6.7.8:8333", Table::Tried) },
        SnapshotEntry {
            source_group: NetGroup::Name("x".repeat(10_000).into()),
            last_seen: u64::MAX,
            last_attempt: u64::MAX,
            attempts: u32::MAX,
            ..entry("7.7.7.7:8333", Table::New)
        },
    ];
    let config = AddrBookConfig { accept_local: false, ..cfg(64, 16, 16) };
    let snapshot = Snapshot { version: SNAPSHOT_VERSION, key: [3; 32], entries };
    let (book, report) = AddrBook::restore(config, snapshot, NOW).expect("repairable");
    check(&book);
    let expected = LoadReport { kept: 3, invalid: 4, duplicate: 2, no_room: 0, demoted: 1 };
    assert_eq!(report, expected, "{report}");
    let e = book.get(&pa("7.7.7.7:8333")).expect("kept");
    assert_eq!((e.last_seen, e.last_attempt, e.attempts), (NOW - 5 * DAY, NOW, u32::MAX));
    assert_eq!(e.source_group, NetGroup::Ipv4([7, 7]), "implausible group replaced");
    assert!(e.chance(NOW + DAY) > 0.0);
    assert_eq!(book.get(&pa("5.6.7.8:8333")).map(|e| e.table), Some(Table::New), "never succeeded");
    assert_eq!(book.get(&pa("1.2.3.4:8333")).map(|e| e.table), Some(Table::Tried));
}

#[test]
fn restore_bounds_an_oversized_snapshot() {
    let entries: Vec<_> = (0..5000).map(|i| entry(&ip(i).to_string(), Table::Tried)).collect();
    let config = cfg(4, 2, 4);
    let snapshot = Snapshot { version: SNAPSHOT_VERSION, key: [3; 32], entries };
    let (book, report) = AddrBook::restore(config.clone(), snapshot, NOW).expect("repairable");
    check(&book);
    assert!(book.len() <= config.new_capacity() + config.tried_capacity());
    assert_eq!(report.kept + report.no_room, 5000, "{report}");
    assert!(report.demoted > 4900, "{report}");
}

#[test]
fn restore_into_different_sizes_rebuckets() {
    let (mut rng, seed) = rng_for("rebucket");
    let big = random_book(&mut rng, cfg(64, 16, 16), 3000);
    let (small, report) = AddrBook::restore(cfg(8, 2, 4), big.snapshot(), NOW).expect("loads");
    check(&small);
    assert_eq!(report.kept, small.len(), "seed {seed}");
    assert_eq!(report.kept + report.no_room, big.len(), "seed {seed}: {report}");
    let (again, report) = AddrBook::restore(cfg(64, 16, 16), small.snapshot(), NOW).expect("loads");
    check(&again);
    assert_eq!(again.len() + report.no_room, small.len(), "seed {seed}: {report}");
}

#[test]
fn corrupted_snapshot_json_never_panics() {
    let (mut rng, seed) = rng_for("corrupt json");
    let book = random_book(&mut rng, cfg(8, 4, 4), 60);
    let json = serde_json::to_vec(&book.snapshot()).expect("serializes");
    let mut loaded = 0;
    for _ in 0..3000 {
        let mut bytes = json.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..bytes.len());
            let set = b"0123456789\"{}[]:,-.aefnlurst\\ \xff";
            bytes[i] = set[rng.gen_range(0..set.len())];
        }
        if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(&bytes) {
            if let Ok((restored, report)) = AddrBook::restore(cfg(8, 4, 4), snapshot, NOW) {
                check(&restored);
                assert_eq!(report.kept, restored.len(), "seed {seed}");
                loaded += 1;
            }
        }
    }
    assert!(loaded > 0, "seed {seed}: some mutations should still parse");
    for key in ["\"zz\"", "\"00\"", &format!("\"{}\"", "é".repeat(32)), "[1,2]"] {
        let text = format!("{{\"version\":1,\"key\":{key},\"entries\":[]}}");
        assert!(serde_json::from_str::<Snapshot>(&text).is_err(), "{key}");
    }
}

#[test]
fn seed_and_config_addresses_of_one_group_take_the_other_slots_of_their_bucket() {
    // All of one /16 heard from a seed (no source) share one new bucket of 64 slots.
    let one_group = |i: u32| pa(&format!("1.2.{}.{}:8333", i / 200, i % 200 + 1));
    let mut seeded = AddrBook::new(AddrBookConfig::default(), [3; 32]);
    for i in 0..64 {
        assert!(seeded.add(&one_group(i), 0, NOW, None, NOW), "address {i} dropped");
    }
    assert_eq!(seeded.new_len(), 64);
    assert!(!seeded.add(&one_group(64), 0, NOW, None, NOW), "the bucket is full");
    check(&seeded);
    // Saved and loaded, every one of them is kept (restored into the same other slots).
    let (restored, report) =
        AddrBook::restore(AddrBookConfig::default(), seeded.snapshot(), NOW).expect("loads");
    assert!(report.is_clean(), "{report}");
    assert_eq!(restored.new_len(), 64);
    check(&restored);
    // Gossip from a peer keeps Core's rule: a collision drops the newcomer.
    let mut gossiped = AddrBook::new(AddrBookConfig::default(), [3; 32]);
    let peer = pa("5.6.7.8:8333");
    let added = (0..64).filter(|&i| gossiped.add(&one_group(i), 0, NOW, Some(&peer), NOW)).count();
    assert!(added < 64, "{added}");
    check(&gossiped);
}
