//! Our own address, announced to outbound peers (Core's `MaybeSendAddr`).

use super::*;
use std::net::{IpAddr, SocketAddr};

use crate::peer::machine::gossip::SELF_ANNOUNCE_INTERVAL;

const PORT: u16 = 8333;

/// A machine with `advertise` that completes a handshake on `link` with a peer that says it
/// sees us at `seen`. Returns it, the instant and every action so far.
fn handshake(link: Link, advertise: Option<Advertise>, seen: &str) -> (PeerMachine, Instant, Vec<Action>) {
    handshake_with(link, advertise, seen, "1.1.1.1:8333")
}

/// [`handshake`] with a peer at `peer`.
fn handshake_with(
    link: Link,
    advertise: Option<Advertise>,
    seen: &str,
    peer: &str,
) -> (PeerMachine, Instant, Vec<Action>) {
    let nonces = NonceSet::default();
    let cfg = MachineConfig { services: ServiceFlags::NONE, advertise, ..config() };
    let mut m = PeerMachine::new(cfg, link, nonces, StdRng::seed_from_u64(7));
    let t0 = Instant::now();
    m.connecting();
    m.connected(t0, 1_700_000_000, 0, Some(peer.parse().unwrap()));
    let mut theirs = their_version(70016, 5);
    theirs.receiver =
        crate::wire::Address::new(&SocketAddr::new(seen.parse().unwrap(), 50_000), ServiceFlags::NONE);
    m.on_message(t0, &Message::Version(theirs));
    m.on_message(t0, &Message::Verack);
    let actions = drain(&mut m);
    assert_eq!(m.state(), PeerState::Ready);
    (m, t0, actions)
}

/// The addresses (IP, port, services, time) the actions announce.
fn announced(actions: &[Action]) -> Vec<(IpAddr, u16, u64, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Message::Addr(list)) => Some(
                list.iter()
                    .map(|(time, a)| {
                        let sa = a.socket_addr().unwrap();
                        (sa.ip().to_canonical(), sa.port(), a.services.to_u64(), *time)
                    })
                    .collect::<Vec<_>>(),
            ),
            Action::Send(Message::AddrV2(list)) => Some(
                list.iter()
                    .map(|a| (crate::wire::addr_ip(&a.addr).unwrap(), a.port, a.services.to_u64(), a.time))
                    .collect(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

fn advertise(external: &[&str]) -> Option<Advertise> {
    Some(Advertise {
        port: PORT,
        services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        external: external.iter().map(|s| s.parse().unwrap()).collect(),
        discover: true,
    })
}

#[test]
fn the_address_the_peer_sees_is_announced_when_routable() {
    let (_, _, actions) = handshake(Link::Outbound, advertise(&[]), "1.2.3.4");
    let services = (ServiceFlags::NETWORK | ServiceFlags::WITNESS).to_u64();
    assert_eq!(announced(&actions), vec![("1.2.3.4".parse().unwrap(), PORT, services, 1_700_000_000)]);
    // After the handshake's own messages.
    let cmds = sent(&actions);
    let at = |cmd: &str| cmds.iter().position(|c| *c == cmd).unwrap_or_else(|| panic!("no {cmd}: {cmds:?}"));
    assert!(at("verack") < at("addr"), "{cmds:?}");
}

/// Behind a proxy (`discover` off) the peer's view is the proxy's: nothing without `external`.
/// A configured address that is not publicly routable is never announced.
#[test]
fn without_discovery_only_routable_configured_addresses_go_out() {
    let quiet = advertise(&[]).map(|a| Advertise { discover: false, ..a });
    assert!(announced(&handshake(Link::Outbound, quiet, "1.2.3.4").2).is_empty());
    let private = advertise(&["10.0.0.1"]).map(|a| Advertise { discover: false, ..a });
    assert!(announced(&handshake(Link::Outbound, private, "1.2.3.4").2).is_empty());
    // With discovery, the unusable configured address gives way to the peer's view.
    let ips = |a: &[(IpAddr, u16, u64, u32)]| a.iter().map(|x| x.0.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ips(&announced(&handshake(Link::Outbound, advertise(&["10.0.0.1"]), "1.2.3.4").2)),
        ["1.2.3.4"]
    );
}

/// Of several configured addresses, one of the peer's family.
#[test]
fn the_configured_address_matches_the_peer_family() {
    for _ in 0..20 {
        let both = advertise(&["2a01:4f8::1", "5.6.7.8"]);
        let to_v4 = announced(&handshake_with(Link::Outbound, both.clone(), "1.2.3.4", "9.9.9.9:8333").2);
        assert_eq!(to_v4[0].0, "5.6.7.8".parse::<IpAddr>().unwrap());
        let to_v6 = announced(&handshake_with(Link::Outbound, both, "1.2.3.4", "[2a01:4f8::9]:8333").2);
        assert_eq!(to_v6[0].0, "2a01:4f8::1".parse::<IpAddr>().unwrap());
    }
}

/// A peer that was ready before the group could advertise (its listener bound later, or it
/// began to offer blocks) hears us as soon as it can.
#[test]
fn a_later_advertise_is_announced_at_once() {
    let (mut m, t0, actions) = handshake(Link::Outbound, None, "1.2.3.4");
    assert!(announced(&actions).is_empty());
    m.set_advertise(t0, advertise(&["5.6.7.8"]));
    assert_eq!(announced(&drain(&mut m)).len(), 1);
    // Taken away: no more announcements.
    m.set_advertise(t0, None);
    assert_eq!(m.next_self_announce, None);
}

#[test]
fn a_configured_address_wins_and_private_views_are_not_announced() {
    let (_, _, actions) = handshake(Link::Outbound, advertise(&["5.6.7.8"]), "1.2.3.4");
    assert_eq!(
        announced(&actions).iter().map(|a| a.0).collect::<Vec<_>>(),
        vec!["5.6.7.8".parse::<IpAddr>().unwrap()]
    );
    for private in ["127.0.0.1", "10.1.2.3", "192.168.0.9", "0.0.0.0", "::1"] {
        let (_, _, actions) = handshake(Link::Outbound, advertise(&[]), private);
        assert!(announced(&actions).is_empty(), "{private}");
    }
}

#[test]
fn nothing_is_announced_without_advertise_or_to_inbound_peers() {
    assert!(announced(&handshake(Link::Outbound, None, "1.2.3.4").2).is_empty());
    assert!(announced(&handshake(Link::Inbound, advertise(&["5.6.7.8"]), "1.2.3.4").2).is_empty());
}

/// Again after an exponential delay with a 24 h mean, with a fresh timestamp, even though the
/// peer already knows the address.
#[test]
fn the_announcement_repeats_about_daily() {
    let (mut m, t0, actions) = handshake(Link::Outbound, advertise(&["5.6.7.8"]), "1.2.3.4");
    assert_eq!(announced(&actions).len(), 1);
    let due = m.next_self_announce.expect("the next one is scheduled");
    assert!(due > t0 && due <= t0 + SELF_ANNOUNCE_INTERVAL * 10, "{:?}", due - t0);
    // Keep the peer alive up to then: pongs and a received message reset the timers.
    let before = due - Duration::from_secs(1);
    m.last_recv = Some(before);
    m.ping = None;
    m.tick(before);
    assert!(announced(&drain(&mut m)).is_empty(), "not due yet");
    m.last_recv = Some(due);
    m.ping = None;
    m.tick(due);
    let again = announced(&drain(&mut m));
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(u64::from(again[0].3), 1_700_000_000 + (due - t0).as_secs());
}
