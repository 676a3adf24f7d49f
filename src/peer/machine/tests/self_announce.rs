//! Our own address, announced to outbound peers (Core's `MaybeSendAddr`).

use super::*;
use std::net::IpAddr;

const PORT: u16 = 8333;

/// A machine with `advertise` that completes a handshake on `link` with a peer that says it
/// sees us at `seen`. Returns it, the instant and every action so far.
fn handshake(link: Link, advertise: Option<Advertise>, seen: &str) -> (PeerMachine, Instant, Vec<Action>) {
    let nonces = NonceSet::default();
    let cfg =
        MachineConfig { services: ServiceFlags::NETWORK | ServiceFlags::WITNESS, advertise, ..config() };
    let mut m = PeerMachine::new(cfg, link, nonces, StdRng::seed_from_u64(7));
    let t0 = Instant::now();
    m.connecting();
    m.connected(t0, 1_700_000_000, 0, None);
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
    Some(Advertise { port: PORT, external: external.iter().map(|s| s.parse().unwrap()).collect() })
}

#[test]
fn the_address_the_peer_sees_is_announced_when_routable() {
    let (_, _, actions) = handshake(Link::Outbound, advertise(&[]), "1.2.3.4");
    let services = (ServiceFlags::NETWORK | ServiceFlags::WITNESS).to_u64();
    assert_eq!(announced(&actions), vec![("1.2.3.4".parse().unwrap(), PORT, services, 1_700_000_000)]);
    // After the handshake's own messages.
    let cmds = sent(&actions);
    assert!(cmds.iter().position(|c| *c == "verack") < cmds.iter().position(|c| *c == "addr"), "{cmds:?}");
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
