//! BIP324 v2 transport end to end on loopback: v2 between two groups both ways, the fallback
//! to v1 against bcoin (v1 only) remembered for the next dial, one listener taking v1 and v2,
//! and hostile v2 inputs that each end with their typed reason and no ban.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use bip324::{GarbageResult, Handshake, Initialized, ReceivedKey, Role, VersionResult};
use btcpeer::group::{GetBans, GetListenAddrs, GetPeers, PeerGroup};
use btcpeer::peer::{DisconnectReason, Link, PeerAddr, PeerStats, V2Error};
use btcpeer::Subscription;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);

fn v2_config() -> btcpeer::peer::PeerConfig {
    let mut cfg = regtest_config();
    cfg.v2_transport = true;
    cfg
}

async fn listen_addr(group: &Addr<PeerGroup>) -> SocketAddr {
    let mut listen;
    wait_for!(WAIT, "listener bound", {
        listen = group.send(GetListenAddrs).await.unwrap();
        !listen.is_empty()
    });
    listen[0]
}

async fn ready_peers(group: &Addr<PeerGroup>, n: usize) -> Vec<PeerStats> {
    let mut peers;
    wait_for!(WAIT, format!("{n} ready peers"), {
        peers = group.send(GetPeers).await.unwrap();
        peers.retain(|p| p.state == btcpeer::peer::PeerState::Ready);
        peers.len() >= n
    });
    peers
}

#[actix_rt::test]
async fn two_groups_speak_v2_both_directions() {
    let a = PeerGroup::new(group_config(v2_config(), true), Vec::new()).start();
    let b = PeerGroup::new(group_config(v2_config(), true), Vec::new()).start();
    let (a_addr, b_addr) = (listen_addr(&a).await, listen_addr(&b).await);
    // Each dials the other: one outbound and one inbound v2 link on each side.
    let mut ca = group_config(v2_config(), false);
    ca.policy.static_peers = vec![PeerAddr::Ip(b_addr)];
    ca.policy.connect_only = true;
    let mut cb = group_config(v2_config(), false);
    cb.policy.static_peers = vec![PeerAddr::Ip(a_addr)];
    cb.policy.connect_only = true;
    let dial_a = PeerGroup::new(ca, Vec::new()).start();
    let dial_b = PeerGroup::new(cb, Vec::new()).start();
    for (dialer, listener) in [(&dial_a, &b), (&dial_b, &a)] {
        let out = ready_peers(dialer, 1).await;
        let inn = ready_peers(listener, 1).await;
        assert_eq!((out[0].link, inn[0].link), (Link::Outbound, Link::Inbound));
        assert_eq!((out[0].transport, inn[0].transport), ("v2", "v2"));
        let id = out[0].session_id.clone().expect("a v2 session id");
        assert_eq!(id.len(), 64);
        assert_eq!(inn[0].session_id.as_ref(), Some(&id), "both ends see the same session id");
        // We advertise BIP324 when it is on.
        assert_ne!(out[0].services & (1 << 11), 0);
        // The JSON of GET /peers carries both.
        let json = serde_json::to_value(&out[0]).unwrap();
        assert_eq!(json["transport"], "v2");
        assert_eq!(json["session_id"], id.as_str());
    }
}

#[actix_rt::test]
async fn a_v2_dial_to_bcoin_falls_back_to_v1_and_the_next_dial_goes_straight_to_v1() {
    let node = Bcoin::start();
    let dir = tempfile::tempdir().unwrap();
    let metrics = btcpeer::metrics::Metrics::new();
    let config = |metrics: &btcpeer::metrics::Metrics| {
        let mut cfg = group_config(v2_config().with_metrics(metrics.clone()), false);
        cfg.policy.static_peers = vec![PeerAddr::Ip(node.p2p)];
        cfg.policy.connect_only = true;
        cfg.data_dir = Some(dir.path().to_owned());
        cfg
    };
    let cfg = config(&metrics);
    let (probe, _, mut events) = probe(false);
    let group = PeerGroup::new(cfg, Subscription::common(&probe)).start();
    let first = ready_peers(&group, 1).await;
    assert_eq!(first[0].transport, "v1");
    assert_eq!(first[0].session_id, None);
    assert_eq!(first[0].user_agent, "/bcoin:v1.0.2/");
    let fallbacks_of = |metrics: &btcpeer::metrics::Metrics| {
        metrics.render().lines().find(|l| l.starts_with("btcpeer_v2_fallbacks_total ")).map(str::to_owned)
    };
    let fallbacks = || fallbacks_of(&metrics);
    assert_eq!(fallbacks().as_deref(), Some("btcpeer_v2_fallbacks_total 1"));
    // No disconnect was published for the v2 attempt: the retry is part of the same connection.
    assert!(!events.seen.iter().any(|e| matches!(e, Ev::Disconnected(_))), "{:#?}", events.seen);
    // Drop it; the static peer is dialed again, straight with v1 this time.
    group.send(btcpeer::group::DisconnectPeer(first[0].id)).await.unwrap().expect("the peer is there");
    events.expect(WAIT, "the disconnect", |e| matches!(e, Ev::Disconnected(_)).then_some(())).await;
    wait_for!(WAIT, "a second ready connection", {
        let peers = group.send(GetPeers).await.unwrap();
        peers.iter().any(|p| p.id != first[0].id && p.state == btcpeer::peer::PeerState::Ready)
    });
    assert_eq!(fallbacks().as_deref(), Some("btcpeer_v2_fallbacks_total 1"));
    assert!(metrics.render().contains("transport=\"v1\""));
    // The memory is saved in the data directory: after a restart the first dial is v1 too.
    wait_for!(WAIT, "transport.json saved", { dir.path().join("transport.json").exists() });
    group.send(btcpeer::group::Shutdown).await.unwrap();
    let restarted = btcpeer::metrics::Metrics::new();
    // The group loads the memory when it starts its listeners, which today is just after its
    // first dials (`PeerGroup::started`); until that call moves first, a group with nothing to
    // dial loads it into the shared peer configuration the restarted group then uses.
    let peer = v2_config().with_metrics(restarted.clone());
    let mut loader = group_config(peer.clone(), false);
    loader.data_dir = Some(dir.path().to_owned());
    let loader = PeerGroup::new(loader, Vec::new()).start();
    wait_for!(WAIT, "the loader group started", { loader.send(GetPeers).await.is_ok() });
    let mut cfg = group_config(peer, false);
    cfg.policy.static_peers = vec![PeerAddr::Ip(node.p2p)];
    cfg.policy.connect_only = true;
    cfg.data_dir = Some(dir.path().to_owned());
    let group = PeerGroup::new(cfg, Vec::new()).start();
    let peers = ready_peers(&group, 1).await;
    assert_eq!(peers[0].transport, "v1");
    assert_eq!(fallbacks_of(&restarted).as_deref(), Some("btcpeer_v2_fallbacks_total 0"));
}

#[actix_rt::test]
async fn a_v1_peer_closing_on_our_key_gets_a_v1_retry_at_once() {
    // Like Core with v2 off: it reads our key as a bad v1 header and closes without a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_probe, subs, _events) = probe(false);
    let peer = btcpeer::peer::PeerActor::outbound(v2_config(), PeerAddr::Ip(addr), subs).start();
    let (mut first, _) = listener.accept().await.unwrap();
    let mut key = [0u8; 24];
    first.read_exact(&mut key).await.unwrap();
    assert_ne!(key[..4], regtest_magic(), "the first attempt is v2");
    drop(first);
    let (mut second, _) = tokio::time::timeout(WAIT, listener.accept()).await.expect("a retry").unwrap();
    let mut start = [0u8; 16];
    second.read_exact(&mut start).await.unwrap();
    assert_eq!(&start[..4], &regtest_magic()[..]);
    assert_eq!(&start[4..16], b"version\0\0\0\0\0");
    // Still the same connection attempt, handshaking over v1.
    let stats = peer.send(btcpeer::peer::messages::GetStats).await.unwrap();
    assert_eq!((stats.state, stats.transport), (btcpeer::peer::PeerState::Handshaking, "v1"));
}

#[actix_rt::test]
async fn one_listener_takes_an_inbound_v1_bcoin_and_an_inbound_v2_peer() {
    let mut cfg = v2_config();
    // bcoin drops peers it dialed that do not offer NETWORK|WITNESS.
    cfg.machine.services = btcpeer::wire::ServiceFlags::NETWORK | btcpeer::wire::ServiceFlags::WITNESS;
    let listener = PeerGroup::new(group_config(cfg, true), Vec::new()).start();
    let addr = listen_addr(&listener).await;
    let _node = Bcoin::start_with(BcoinOptions { connect: vec![addr], ..Default::default() });
    let mut cfg = group_config(v2_config(), false);
    cfg.policy.static_peers = vec![PeerAddr::Ip(addr)];
    cfg.policy.connect_only = true;
    let _dialer = PeerGroup::new(cfg, Vec::new()).start();
    let peers = ready_peers(&listener, 2).await;
    let bcoin = peers.iter().find(|p| p.user_agent.starts_with("/bcoin")).expect("bcoin inbound");
    let ours = peers.iter().find(|p| p.user_agent.starts_with("/btcpeer")).expect("our inbound");
    assert_eq!((bcoin.link, bcoin.transport), (Link::Inbound, "v1"));
    assert_eq!((ours.link, ours.transport), (Link::Inbound, "v2"));
}

/// `v2_only`: a dial to bcoin (v1 only) ends without a v1 retry and never gets ready.
#[actix_rt::test]
async fn v2_only_does_not_fall_back_to_v1_with_bcoin() {
    let node = Bcoin::start();
    let mut cfg = v2_config();
    cfg.v2_only = true;
    let (_probe, subs, mut events) = probe(false);
    let _peer = btcpeer::peer::PeerActor::outbound(cfg, PeerAddr::Ip(node.p2p), subs).start();
    // With the v1 retry a failed v2 attempt publishes no disconnect: this one ends.
    let reason = reason(&mut events).await;
    assert!(!reason.is_misbehavior(), "{reason:?}");
    assert!(!events.all().iter().any(|e| matches!(e, Ev::Ready(_))), "a v1 connection was made");
}

/// `v2_only` on a listener: a peer that opens with v1 is disconnected (no ban), a v2 one is
/// served.
#[actix_rt::test]
async fn a_v2_only_listener_takes_v2_and_closes_v1() {
    use common::raw_peer::{closed, connect_from, frame};
    let mut peer = v2_config();
    peer.v2_only = true;
    let (probe, _, mut events) = probe(false);
    let group = PeerGroup::new(group_config(peer, true), Subscription::common(&probe)).start();
    let addr = listen_addr(&group).await;
    let (mut w, frames) = connect_from(std::net::Ipv4Addr::new(127, 0, 10, 41), addr).await;
    let version = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce: 9, ..Default::default() },
        None,
    );
    w.write_all(&frame(&btcpeer::wire::Message::Version(version))).await.unwrap();
    assert!(closed(frames, WAIT).await, "the v1 peer is still connected");
    assert_eq!(reason(&mut events).await, DisconnectReason::V2Transport(V2Error::V1Peer));
    assert_no_ban(&group).await;
    // A config of its own: a shared one would share the listener's version nonces.
    let mut v2_only = v2_config();
    v2_only.v2_only = true;
    let mut cfg = group_config(v2_only, false);
    cfg.policy.static_peers = vec![PeerAddr::Ip(addr)];
    cfg.policy.connect_only = true;
    let dialer = PeerGroup::new(cfg, Vec::new()).start();
    assert_eq!(ready_peers(&dialer, 1).await[0].transport, "v2");
}

#[actix_rt::test]
async fn v2_through_a_socks5_proxy() {
    let listener = PeerGroup::new(group_config(v2_config(), true), Vec::new()).start();
    let addr = listen_addr(&listener).await;
    let proxy = Socks5::start(None);
    let mut cfg = v2_config();
    cfg.proxy = Some(btcpeer::peer::ProxyConfig { addr: PeerAddr::Ip(proxy.addr), credentials: None });
    let (_probe, subs, mut events) = probe(false);
    let peer = btcpeer::peer::PeerActor::outbound(cfg, PeerAddr::Ip(addr), subs).start();
    events.expect(WAIT, "ready through the proxy", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    let stats = peer.send(btcpeer::peer::messages::GetStats).await.unwrap();
    assert_eq!(stats.transport, "v2");
    let inbound = ready_peers(&listener, 1).await;
    assert_eq!(inbound[0].session_id, stats.session_id);
}

// --- hostile v2 inputs against a listener ---

fn regtest_magic() -> [u8; 4] {
    btcpeer::Network::Regtest.magic()
}

/// A listening group with v2 on and a short handshake timeout, and a probe on its events.
async fn target() -> (Addr<PeerGroup>, SocketAddr, Events, Addr<Probe>) {
    target_with(Duration::from_secs(3)).await
}

/// The same with this handshake timeout.
async fn target_with(handshake_timeout: Duration) -> (Addr<PeerGroup>, SocketAddr, Events, Addr<Probe>) {
    let mut peer = v2_config();
    peer.machine.handshake_timeout = handshake_timeout;
    let (probe, _, events) = probe(false);
    let group = PeerGroup::new(group_config(peer, true), Subscription::common(&probe)).start();
    let addr = listen_addr(&group).await;
    (group, addr, events, probe)
}

async fn reason(events: &mut Events) -> DisconnectReason {
    events
        .expect(WAIT, "the disconnect", |e| match e {
            Ev::Disconnected(d) => Some(d.reason.clone()),
            _ => None,
        })
        .await
}

async fn assert_no_ban(group: &Addr<PeerGroup>) {
    assert!(group.send(GetBans).await.unwrap().is_empty(), "nobody is banned for a transport failure");
}

/// Our key (and no garbage) as a v2 initiator, and the handshake state after it.
fn initiator() -> (Vec<u8>, Handshake<bip324::SentKey<'static>>) {
    let hs = Handshake::<Initialized>::new(regtest_magic(), Role::Initiator).unwrap();
    let mut key = vec![0u8; Handshake::<Initialized>::send_key_len(None)];
    let hs = hs.send_key(None, &mut key).unwrap();
    (key, hs)
}

/// Completes a v2 handshake as initiator over `stream`; `tamper` may spoil our version packet.
async fn handshake(stream: &mut TcpStream, tamper: bool) -> Option<bip324::CipherSession> {
    let (key, hs) = initiator();
    stream.write_all(&key).await.unwrap();
    let mut theirs = [0u8; 64];
    stream.read_exact(&mut theirs).await.unwrap();
    let hs = hs.receive_key(theirs).unwrap();
    let mut out = vec![0u8; Handshake::<ReceivedKey>::send_version_len(None)];
    let hs = hs.send_version(&mut out, None).unwrap();
    if tamper {
        let last = out.len() - 1;
        out[last] ^= 1;
    }
    stream.write_all(&out).await.unwrap();
    if tamper {
        return None;
    }
    let mut buf = Vec::new();
    let mut hs = hs;
    let (mut hs, consumed) = loop {
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        match hs.receive_garbage(&buf).unwrap() {
            GarbageResult::FoundGarbage { handshake, consumed_bytes } => break (handshake, consumed_bytes),
            GarbageResult::NeedMoreData(h) => hs = h,
        }
    };
    let mut rest = buf[consumed..].to_vec();
    loop {
        while rest.len() < 3 {
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await.unwrap();
            rest.extend_from_slice(&chunk[..n]);
        }
        let len = hs.decrypt_packet_len([rest[0], rest[1], rest[2]]).unwrap();
        while rest.len() < 3 + len {
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await.unwrap();
            rest.extend_from_slice(&chunk[..n]);
        }
        let mut packet = rest[3..3 + len].to_vec();
        rest.drain(..3 + len);
        match hs.receive_version(&mut packet).unwrap() {
            VersionResult::Complete { cipher } => return Some(cipher),
            VersionResult::Decoy(h) => hs = h,
        }
    }
}

#[actix_rt::test]
async fn garbage_of_4096_bytes_ends_with_no_terminator_and_no_ban() {
    let (group, addr, mut events, _p) = target().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (key, _) = initiator();
    s.write_all(&key).await.unwrap();
    s.write_all(&[0x5a; 4096 + 16]).await.unwrap();
    assert_eq!(
        reason(&mut events).await,
        DisconnectReason::V2Transport(V2Error::NoGarbageTerminator { max: 4095 })
    );
    assert_no_ban(&group).await;
}

#[actix_rt::test]
async fn a_wrong_terminator_is_never_found() {
    let (group, addr, mut events, _p) = target().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (key, hs) = initiator();
    s.write_all(&key).await.unwrap();
    let mut theirs = [0u8; 64];
    s.read_exact(&mut theirs).await.unwrap();
    let hs = hs.receive_key(theirs).unwrap();
    let mut out = vec![0u8; Handshake::<ReceivedKey>::send_version_len(None)];
    let _ = hs.send_version(&mut out, None).unwrap();
    out[0] ^= 0xff; // the terminator's first byte
    s.write_all(&out).await.unwrap();
    s.write_all(&[0u8; 4096]).await.unwrap();
    assert_eq!(
        reason(&mut events).await,
        DisconnectReason::V2Transport(V2Error::NoGarbageTerminator { max: 4095 })
    );
    assert_no_ban(&group).await;
}

#[actix_rt::test]
async fn a_bad_tag_fails_authentication() {
    let (group, addr, mut events, _p) = target().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(handshake(&mut s, true).await.is_none());
    assert_eq!(reason(&mut events).await, DisconnectReason::V2Transport(V2Error::BadTag));
    assert_no_ban(&group).await;
}

#[actix_rt::test]
async fn an_oversized_packet_length_closes_before_the_packet() {
    // Encrypting the 4 MB packet with the crate's portable cipher takes seconds in a debug
    // build: the 3-second timeout of the other tests would close the connection first.
    let (group, addr, mut events, _p) = target_with(Duration::from_secs(60)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut cipher = handshake(&mut s, false).await.expect("handshake");
    // 1 + 12 + 4,000,000 is the most a packet may hold; announce one byte more.
    let contents = vec![0u8; 1 + 12 + 4_000_000 + 1];
    let packet = cipher.outbound().encrypt_to_vec(&contents, bip324::PacketType::Genuine, None);
    s.write_all(&packet[..3]).await.unwrap();
    assert_eq!(
        reason(&mut events).await,
        DisconnectReason::V2Transport(V2Error::Oversized { len: 4_000_014, max: 4_000_013 })
    );
    assert_no_ban(&group).await;
}

#[actix_rt::test]
async fn a_truncated_handshake_is_a_network_failure() {
    let (group, addr, mut events, _p) = target().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (key, _) = initiator();
    s.write_all(&key[..30]).await.unwrap();
    s.shutdown().await.unwrap();
    let r = reason(&mut events).await;
    assert_eq!(r, DisconnectReason::V2Transport(V2Error::Truncated));
    assert_eq!(r.kind(), btcpeer::peer::ReasonKind::Network);
    assert_no_ban(&group).await;
}

#[actix_rt::test]
async fn slowloris_during_the_handshake_hits_the_handshake_timeout() {
    let (group, addr, mut events, _p) = target().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (key, _) = initiator();
    let drip = actix::spawn(async move {
        for b in key {
            if s.write_all(&[b]).await.is_err() {
                return;
            }
            // The attacker's pace, not synchronisation: one byte every 200 ms.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert!(matches!(reason(&mut events).await, DisconnectReason::HandshakeTimeout { .. }));
    assert_no_ban(&group).await;
    drip.abort();
}

// --- benchmark (run by scripts/bench-v2; numbers are printed, never asserted) ---

/// Sends `n` messages of `size` payload bytes over one loopback connection with `v2` on or off,
/// and returns the seconds from the first send to the last message received.
async fn throughput(v2: bool, n: usize, size: usize) -> f64 {
    use btcpeer::peer::messages::SendMessage;
    use btcpeer::peer::PeerActor;
    use btcpeer::wire::Message;
    let mut listen_cfg = regtest_config();
    listen_cfg.v2_transport = v2;
    let (rx_probe, _, mut rx_events) = probe(true);
    let mut subs = Subscription::common(&rx_probe);
    subs.push(Subscription::Message(rx_probe.clone().recipient()));
    let group = PeerGroup::new(group_config(listen_cfg, true), subs).start();
    let addr = listen_addr(&group).await;
    let mut dial_cfg = regtest_config();
    dial_cfg.v2_transport = v2;
    let (_tx_probe, tx_subs, mut tx_events) = probe(false);
    let peer = PeerActor::outbound(dial_cfg, PeerAddr::Ip(addr), tx_subs).start();
    tx_events.expect(WAIT, "ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    let stats = peer.send(btcpeer::peer::messages::GetStats).await.unwrap();
    assert_eq!(stats.transport, if v2 { "v2" } else { "v1" });
    let msg = Message::Unknown { command: "bench".parse().unwrap(), payload: vec![0x42; size] };
    let start = std::time::Instant::now();
    let sender = actix::spawn(async move {
        for _ in 0..n {
            peer.send(SendMessage(msg.clone())).await.unwrap().expect("sent");
        }
    });
    let mut got = 0;
    while got < n {
        rx_events
            .expect(WAIT, "bench messages", |e| match e {
                Ev::Message(m) if matches!(&*m.message, Message::Unknown { command, .. } if command.as_ref() == "bench") => Some(()),
                _ => None,
            })
            .await;
        // `expect` also matches past events: forget the ones already counted.
        rx_events.seen.retain(|e| !matches!(e, Ev::Message(_)));
        got += 1;
    }
    let took = start.elapsed().as_secs_f64();
    sender.await.unwrap();
    took
}

#[actix_rt::test]
#[ignore = "benchmark: scripts/bench-v2"]
async fn bench_v2_vs_v1() {
    for (label, n, size) in [("1 MB messages", 200usize, 1_000_000usize), ("100-byte messages", 20_000, 100)]
    {
        let v1 = throughput(false, n, size).await;
        let v2 = throughput(true, n, size).await;
        let mb = |t: f64| (n * size) as f64 / t / 1e6;
        println!(
            "{label}: v1 {:.0} msg/s ({:.1} MB/s), v2 {:.0} msg/s ({:.1} MB/s), v2/v1 = {:.2}",
            n as f64 / v1,
            mb(v1),
            n as f64 / v2,
            mb(v2),
            v1 / v2
        );
    }
    // Handshake CPU: both ends of a BIP324 handshake in one thread (key generation, ElligatorSwift
    // encoding, ECDH, HKDF, the version packets), as our layer runs it.
    let rounds = 300;
    let mut session: Option<bip324::CipherSession> = None;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        let (key, a) = initiator();
        let b = Handshake::<Initialized>::new(regtest_magic(), Role::Responder).unwrap();
        let mut bkey = vec![0u8; 64];
        let b = b.send_key(None, &mut bkey).unwrap();
        let a = a.receive_key(bkey.try_into().unwrap()).unwrap();
        let b = b.receive_key(key.try_into().unwrap()).unwrap();
        let mut out = vec![0u8; Handshake::<ReceivedKey>::send_version_len(None)];
        let a = a.send_version(&mut out, None).unwrap();
        let mut out_b = vec![0u8; Handshake::<ReceivedKey>::send_version_len(None)];
        let b = b.send_version(&mut out_b, None).unwrap();
        for (hs, buf) in [(a, out_b), (b, out)] {
            let GarbageResult::FoundGarbage { mut handshake, consumed_bytes } =
                hs.receive_garbage(&buf).unwrap()
            else {
                panic!("terminator")
            };
            let rest = &buf[consumed_bytes..];
            let len = handshake.decrypt_packet_len([rest[0], rest[1], rest[2]]).unwrap();
            let mut packet = rest[3..3 + len].to_vec();
            match handshake.receive_version(&mut packet).unwrap() {
                VersionResult::Complete { cipher } => session = Some(cipher),
                VersionResult::Decoy(_) => panic!("no decoys were sent"),
            }
        }
    }
    let per_end = start.elapsed().as_secs_f64() / f64::from(rounds) / 2.0;
    println!("handshake CPU: {:.3} ms per connection end", per_end * 1000.0);
    // Where a 1 MB message's time goes: the AEAD (either direction; ours is RustCrypto's, with
    // AVX2/SSE2 picked at run time; the bip324 crate's portable one is shown for comparison)
    // against one double SHA-256 (the v1 checksum, once per side on v1, never on v2).
    let mut cipher = session.expect("a session");
    let payload = vec![0x42u8; 1_000_000];
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..20 {
            f();
        }
        t.elapsed().as_secs_f64() / 20.0 * 1000.0
    };
    let crate_aead = time(&mut || {
        std::hint::black_box(cipher.outbound().encrypt_to_vec(&payload, bip324::PacketType::Genuine, None));
    });
    let ours = {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let aead = chacha20poly1305::ChaCha20Poly1305::new(&[7u8; 32].into());
        let mut buf = payload.clone();
        time(&mut || {
            std::hint::black_box(aead.encrypt_in_place_detached(&[0u8; 12].into(), b"", &mut buf).unwrap());
        })
    };
    let sha = time(&mut || {
        use bitcoin::hashes::Hash;
        std::hint::black_box(bitcoin::hashes::sha256d::Hash::hash(&payload));
    });
    println!(
        "per 1 MB: ChaCha20-Poly1305 {ours:.2} ms (bip324 crate's: {crate_aead:.2} ms), double SHA-256 {sha:.2} ms"
    );
}
