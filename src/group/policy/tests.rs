use super::*;
use crate::group::bans::{BanList, BanTarget};
use crate::peer::Misbehavior;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn addr(s: &str) -> PeerAddr {
    s.parse().unwrap()
}

fn cfg(max_outbound: usize, statics: &[&str]) -> PolicyConfig {
    PolicyConfig {
        max_outbound,
        static_peers: statics.iter().map(|s| addr(s)).collect(),
        connect_only: false,
        diverse_netgroups: true,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
    }
}

/// Picks the first candidate of a fixed list that is not excluded.
fn picker(list: Vec<PeerAddr>) -> impl FnMut(&dyn Fn(&PeerAddr) -> bool) -> Option<PeerAddr> {
    move |exclude| list.iter().find(|a| !exclude(a)).cloned()
}

fn no_bans(_: &PeerAddr) -> bool {
    false
}

fn start_all(p: &mut Policy, dials: &[Dial]) -> Vec<PeerId> {
    dials
        .iter()
        .map(|d| {
            let id = PeerId::next();
            p.dialing(id, d);
            id
        })
        .collect()
}

fn refused() -> DisconnectReason {
    DisconnectReason::ConnectFailed { error: "refused".into() }
}

#[test]
fn static_peers_are_redialed_forever_and_never_banned() {
    let t0 = Instant::now();
    let mut p = Policy::new(PolicyConfig { connect_only: true, ..cfg(8, &["10.0.0.1:8333"]) }, t0);
    let mut none = picker(vec![]);
    let mut now = t0;
    let mut last_delay = Duration::ZERO;
    for round in 0..30 {
        let dials = p.poll_dials(now, &no_bans, &mut none);
        assert_eq!(dials.len(), 1, "round {round}");
        assert_eq!(dials[0].kind, DialKind::Static(0));
        let id = start_all(&mut p, &dials)[0];
        // Misbehaviour of a configured peer is never a ban.
        let reason = if round % 2 == 0 {
            refused()
        } else {
            DisconnectReason::Misbehaving(Misbehavior::TooManyEntries {
                command: "inv".into(),
                count: 50_001,
                max: 50_000,
            })
        };
        let v = p.on_disconnected(id, &reason, now, 1.0);
        assert_eq!(v.ban, None);
        let next = p.next_deadline().unwrap();
        last_delay = next - now;
        assert!(p.poll_dials(now, &no_bans, &mut none).is_empty(), "no redial before the backoff ends");
        now = next;
    }
    assert_eq!(last_delay, Duration::from_secs(60), "backoff caps at max_backoff");
}

#[test]
fn automatic_dials_fill_slots_with_one_peer_per_netgroup() {
    let t0 = Instant::now();
    let mut p = Policy::new(cfg(8, &[]), t0);
    let candidates: Vec<PeerAddr> =
        ["1.1.0.1:8333", "1.1.0.2:8333", "1.2.0.1:8333", "1.3.0.1:8333", "1.3.9.9:8333"]
            .iter()
            .map(|s| addr(s))
            .collect();
    let dials = p.poll_dials(t0, &no_bans, &mut picker(candidates.clone()));
    let got: Vec<String> = dials.iter().map(|d| d.addr.to_string()).collect();
    assert_eq!(got, ["1.1.0.1:8333", "1.2.0.1:8333", "1.3.0.1:8333"]);
    start_all(&mut p, &dials);
    // Nothing more while those are in use.
    assert!(p.poll_dials(t0, &no_bans, &mut picker(candidates.clone())).is_empty());
    // Without diversity the rest are used too, but never an address twice.
    let mut p = Policy::new(PolicyConfig { diverse_netgroups: false, ..cfg(8, &[]) }, t0);
    let dials = p.poll_dials(t0, &no_bans, &mut picker(candidates));
    assert_eq!(dials.len(), 5);
}

#[test]
fn misbehaviour_bans_and_failures_back_off() {
    let t0 = Instant::now();
    let mut p = Policy::new(cfg(1, &[]), t0);
    let a = addr("2.2.2.2:8333");
    let dials = p.poll_dials(t0, &no_bans, &mut picker(vec![a.clone()]));
    let id = start_all(&mut p, &dials)[0];
    let v = p.on_disconnected(
        id,
        &DisconnectReason::Misbehaving(Misbehavior::TooManyEntries {
            command: "inv".into(),
            count: 50_001,
            max: 50_000,
        }),
        t0,
        0.5,
    );
    assert_eq!(v.ban, Some(a.clone()));

    let dials = p.poll_dials(t0, &no_bans, &mut picker(vec![a.clone()]));
    let id = start_all(&mut p, &dials)[0];
    let v = p.on_disconnected(id, &refused(), t0, 1.0);
    assert_eq!((v.ban, v.failed), (None, Some(a.clone())));
    assert!(p.poll_dials(t0, &no_bans, &mut picker(vec![a.clone()])).is_empty(), "in backoff");
    let later = t0 + Duration::from_secs(1);
    assert_eq!(p.poll_dials(later, &no_bans, &mut picker(vec![a])).len(), 1);
}

/// Seeded simulation of the policy with the real address book and ban list: hundreds of
/// addresses with different behaviours, random failures, drops and misbehaviour over simulated
/// hours. Returns the most ready peers seen, automatic dials per minute, and how many banned
/// addresses were dialed again after their ban expired.
fn simulate(seed: u64, all_fail: bool) -> (usize, Vec<usize>, usize) {
    use crate::addrbook::{AddrBook, AddrBookConfig};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut book_rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let t0 = Instant::now();
    let max_outbound = 8;
    let mut p = Policy::new(cfg(max_outbound, &["9.9.9.9:8333"]), t0);
    let mut bans = BanList::new();
    let ban_secs = 600;
    let unix0 = 1_700_000_000;
    let mut book = AddrBook::new(AddrBookConfig::default(), rng.gen());
    // 300 public addresses in 60 /16 groups; behaviour: 0 good, 1 refuses, 2 misbehaves, 3 flaky.
    let mut behaviour: HashMap<PeerAddr, u8> = HashMap::new();
    for i in 0..300u32 {
        let a = addr(&format!("{}.{}.{}.{}:8333", 20 + i % 60, i / 60, i % 7 + 1, 1 + i % 200));
        behaviour.insert(a.clone(), if all_fail { 1 } else { rng.gen_range(0..4) });
        // Bucket collisions may turn a few away, as in Core's addrman.
        book.add(&a, 9, unix0, None, unix0);
    }
    assert!(book.len() >= 250, "seed {seed}: only {} of 300 addresses stored", book.len());
    let mut live: HashMap<PeerId, (PeerAddr, u8, bool)> = HashMap::new();
    let mut dials_per_minute = vec![0usize; 240];
    let mut max_ready = 0;
    let mut ever_banned: HashSet<PeerAddr> = HashSet::new();
    let mut redialed_after_ban = 0;
    for second in 0..(240 * 60u64) {
        let now = t0 + Duration::from_secs(second);
        let unix = unix0 + second;
        bans.expire(unix);
        let banned = |a: &PeerAddr| bans.is_banned(a, unix);
        let mut pick = |exclude: Exclude<'_>| book.select(&mut book_rng, unix, exclude);
        let dials = p.poll_dials(now, &banned, &mut pick);
        for d in &dials {
            // Invariants: never an address twice, never a banned one, never above the target.
            assert!(!live.values().any(|(a, ..)| *a == d.addr), "seed {seed}: {} dialed twice", d.addr);
            assert!(!bans.is_banned(&d.addr, unix), "seed {seed}: banned {} dialed", d.addr);
            if ever_banned.contains(&d.addr) {
                redialed_after_ban += 1;
            }
            let id = PeerId::next();
            p.dialing(id, d);
            book.attempt(&d.addr, unix);
            let b = behaviour.get(&d.addr).copied().unwrap_or(0);
            live.insert(id, (d.addr.clone(), b, false));
            if matches!(d.kind, DialKind::Automatic) {
                dials_per_minute[(second / 60) as usize] += 1;
            }
        }
        assert!(p.outbound_count() <= max_outbound, "seed {seed}");
        let groups: Vec<_> = live
            .values()
            .filter(|(a, ..)| a.to_string() != "9.9.9.9:8333")
            .map(|(a, ..)| netgroup(a))
            .collect();
        let unique: HashSet<_> = groups.iter().collect();
        assert_eq!(unique.len(), groups.len(), "seed {seed}: two automatic peers in one netgroup");
        // Outcomes: each live connection may progress or fail this second.
        let ids: Vec<PeerId> = live.keys().copied().collect();
        for id in ids {
            let (ref a, b, ready) = live[&id];
            let a = a.clone();
            let outcome = match (b, ready) {
                (0, false) => Some(true),
                (1, _) => Some(false),
                (2, false) => Some(true),
                (2, true) if rng.gen_bool(0.05) => Some(false),
                (3, _) if rng.gen_bool(0.02) => Some(false),
                (3, false) => Some(true),
                (0, true) if rng.gen_bool(0.001) => Some(false),
                _ => None,
            };
            match outcome {
                Some(true) if !ready => {
                    p.on_ready(id);
                    book.good(&a, unix);
                    live.get_mut(&id).unwrap().2 = true;
                }
                Some(false) => {
                    let reason = if b == 2 && ready {
                        DisconnectReason::Misbehaving(Misbehavior::TooManyEntries {
                            command: "inv".into(),
                            count: 50_001,
                            max: 50_000,
                        })
                    } else if ready {
                        DisconnectReason::ClosedByPeer
                    } else {
                        refused()
                    };
                    live.remove(&id);
                    let v = p.on_disconnected(id, &reason, now, rng.gen());
                    if let Some(f) = &v.failed {
                        book.failed(f, unix);
                    }
                    if let Some(banned) = v.ban {
                        bans.ban(BanTarget::of(&banned), unix, unix + ban_secs, "misbehaving");
                        ever_banned.insert(banned);
                    }
                }
                _ => {}
            }
        }
        max_ready = max_ready.max(p.ready_count());
    }
    (max_ready, dials_per_minute, redialed_after_ban)
}

#[test]
fn simulation_reaches_targets_and_keeps_invariants() {
    for _ in 0..3 {
        let seed: u64 = rand::random();
        println!("simulation seed {seed}");
        let (max_ready, _, redialed) = simulate(seed, false);
        assert_eq!(max_ready, 8, "seed {seed}: target of 8 outbound peers reached");
        assert!(redialed > 0, "seed {seed}: expired bans must allow the address again");
    }
}

#[test]
fn simulation_when_everything_fails_does_not_storm() {
    let seed: u64 = rand::random();
    println!("simulation seed {seed}");
    let (_, per_minute, _) = simulate(seed, true);
    // After the first minutes the automatic dial rate settles at about one per minute.
    let steady = &per_minute[30..];
    assert!(steady.iter().all(|&n| n <= 3), "seed {seed}: dials per minute {steady:?}");
    assert!(
        steady.iter().sum::<usize>() >= steady.len() / 2,
        "seed {seed}: dialing must not stop: {steady:?}"
    );
}

#[test]
fn configured_peers_are_never_banned_automatically_but_manual_bans_hold() {
    let t0 = Instant::now();
    let mut p = Policy::new(PolicyConfig { connect_only: true, ..cfg(8, &["10.0.0.1:8333"]) }, t0);
    // Misbehaviour on an inbound link from a configured peer's IP: no ban.
    let reason = DisconnectReason::Misbehaving(Misbehavior::TooManyEntries {
        command: "inv".into(),
        count: 50_001,
        max: 50_000,
    });
    assert_eq!(p.on_inbound_disconnected(&addr("10.0.0.1:40000"), &reason).ban, None);
    assert_eq!(p.on_inbound_disconnected(&addr("10.0.0.2:40000"), &reason).ban, Some(addr("10.0.0.2:40000")));
    // A ban the user made stops even a configured peer.
    let banned = |a: &PeerAddr| *a == addr("10.0.0.1:8333");
    assert!(p.poll_dials(t0, &banned, &mut picker(vec![])).is_empty());
    assert_eq!(p.poll_dials(t0, &no_bans, &mut picker(vec![])).len(), 1);
}
