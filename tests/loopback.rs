//! Loopback tests with real sockets and real helper programs: SOCKS5 through microsocks (host
//! names resolved by the proxy), self-connection detection, inbound limits.

mod common;

use std::time::Duration;

use actix::prelude::*;
use btcpeer::group::{GetListenAddrs, GroupConfig, PeerGroup};
use btcpeer::peer::ProxyConfig;
use btcpeer::peer::{DisconnectReason, Link, PeerActor, PeerAddr, ReasonKind};
use common::*;

const WAIT: Duration = Duration::from_secs(30);

async fn handshake_through_proxy(credentials: Option<(&str, &str)>) {
    // bcoin on 127.0.0.1 so that the name "localhost", resolved by the proxy, reaches it.
    let node = Bcoin::start_with(BcoinOptions { host: Some("127.0.0.1".into()), ..Default::default() });
    let proxy = Socks5::start(credentials);
    let mut cfg = regtest_config();
    cfg.proxy = Some(ProxyConfig {
        addr: PeerAddr::Ip(proxy.addr),
        credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
    });
    let (_probe, subs, mut events) = probe(false);
    let target = PeerAddr::Host("localhost".into(), node.p2p.port());
    let _peer = PeerActor::outbound(cfg, target, subs).start();
    let info = events
        .expect(WAIT, "ready through the proxy", |e| {
            if let Ev::Ready(r) = e {
                Some(r.info.clone())
            } else {
                None
            }
        })
        .await;
    assert_eq!(info.user_agent, "/bcoin:v1.0.2/");
    // bcoin sees the connection coming from the proxy, not from us directly: one peer.
    let peers = node.rpc("getpeerinfo", serde_json::json!([]));
    assert_eq!(peers.as_array().unwrap().len(), 1);
}

#[actix_rt::test]
async fn socks5_proxy_with_a_host_name_target() {
    handshake_through_proxy(None).await;
}

#[actix_rt::test]
async fn socks5_proxy_with_username_and_password() {
    handshake_through_proxy(Some(("btcpeer", "s3cret"))).await;
}

#[actix_rt::test]
async fn socks5_proxy_with_wrong_password_is_a_connect_failure() {
    let proxy = Socks5::start(Some(("btcpeer", "s3cret")));
    let mut cfg = regtest_config();
    cfg.proxy = Some(ProxyConfig {
        addr: PeerAddr::Ip(proxy.addr),
        credentials: Some(("btcpeer".into(), "nope".into())),
    });
    let (_probe, subs, mut events) = probe(false);
    let _peer = PeerActor::outbound(cfg, PeerAddr::Host("localhost".into(), 1), subs).start();
    let reason = events
        .expect(
            WAIT,
            "disconnect",
            |e| if let Ev::Disconnected(d) = e { Some(d.reason.clone()) } else { None },
        )
        .await;
    assert!(matches!(reason, DisconnectReason::ConnectFailed { .. }), "{reason:?}");
    assert_eq!(reason.kind(), ReasonKind::Network);
}

fn inbound_group(cfg: btcpeer::peer::PeerConfig, max_inbound: usize) -> GroupConfig {
    let mut g = group_config(cfg, true);
    g.max_inbound = max_inbound;
    g
}

async fn listen_addr(group: &Addr<PeerGroup>) -> std::net::SocketAddr {
    let mut listen;
    wait_for!(WAIT, "listener bound", {
        listen = group.send(GetListenAddrs).await.unwrap();
        !listen.is_empty()
    });
    listen[0]
}

#[actix_rt::test]
async fn connecting_to_our_own_listener_is_detected_as_self() {
    let cfg = regtest_config();
    let (probe, _, mut events) = probe(false);
    // The group and the outbound peer share one nonce set, as all peers of a process should.
    let group =
        PeerGroup::new(inbound_group(cfg.clone(), 8), btcpeer::events::Subscription::common(&probe)).start();
    let addr = listen_addr(&group).await;
    let mut subs = btcpeer::events::Subscribers::new();
    for s in btcpeer::events::Subscription::common(&probe) {
        subs.add(s);
    }
    let _peer = PeerActor::outbound(cfg, PeerAddr::Ip(addr), subs).start();
    let reason = events
        .expect(WAIT, "self-connection", |e| match e {
            Ev::Disconnected(d) if d.reason == DisconnectReason::SelfConnection => Some(d.reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason.kind(), ReasonKind::Incompatible);
    assert!(!events.seen.iter().any(|e| matches!(e, Ev::Ready(_))), "no side may reach Ready");
}

#[actix_rt::test]
async fn inbound_limit_refuses_extra_peers() {
    let cfg = regtest_config();
    let (probe, _, mut events) = probe(false);
    let group =
        PeerGroup::new(inbound_group(cfg.clone(), 2), btcpeer::events::Subscription::common(&probe)).start();
    let addr = listen_addr(&group).await;
    // Five plain TCP clients that never speak: two are taken, three are closed at once.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Connections are accepted in order: the first two are taken, the last three refused.
    for c in &mut clients[2..] {
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(c, &mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "refused client must see the connection closed: {n:?}");
    }
    let mut peers;
    wait_for!(WAIT, "two inbound peers", {
        peers = group.send(btcpeer::group::GetPeers).await.unwrap();
        peers.len() == 2
    });
    assert!(peers.iter().all(|p| p.link == Link::Inbound));
    events
        .expect(WAIT, "inbound peers handshaking", |e| {
            matches!(e, Ev::State(s) if s.state == btcpeer::peer::PeerState::Handshaking).then_some(())
        })
        .await;
}

/// A minimal scripted inbound client: version, wait for version+verack, verack. Returns the
/// open stream, or None if the listener closed it first.
async fn scripted_handshake(target: std::net::SocketAddr, nonce: u64) -> Option<tokio::net::TcpStream> {
    use btcpeer::wire::{Codec, Message};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(target).await.ok()?;
    let (read, mut write) = stream.into_split();
    let codec = Codec::new(btcpeer::Network::Regtest.magic());
    let version = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce, ..Default::default() },
        None,
    );
    write.write_all(&codec.encode_to_bytes(&Message::Version(version))).await.ok()?;
    let mut frames = tokio_util::codec::FramedRead::new(read, codec.clone());
    let (mut v, mut va) = (false, false);
    while !(v && va) {
        match frames.next().await?.ok()?.into_message() {
            Ok(Message::Version(_)) => v = true,
            Ok(Message::Verack) => va = true,
            _ => {}
        }
    }
    write.write_all(&codec.encode_to_bytes(&Message::Verack)).await.ok()?;
    frames.into_inner().reunite(write).ok()
}

#[actix_rt::test]
async fn inbound_limit_holds_under_a_connection_flood() {
    let mut cfg = inbound_group(regtest_config(), 20);
    cfg.max_inbound_per_ip = 0;
    let group = PeerGroup::new(cfg, vec![]).start();
    let addr = listen_addr(&group).await;
    let clients: Vec<_> = (0..300u64).map(|i| actix::spawn(scripted_handshake(addr, 1_000 + i))).collect();
    let mut max_seen = 0;
    let mut done = 0;
    let mut open = Vec::new(); // keep the accepted connections open
    for c in clients {
        if let Ok(Some(stream)) = c.await {
            open.push(stream);
        }
        done += 1;
        if done % 25 == 0 {
            let s = group.send(btcpeer::group::GetStatus).await.unwrap();
            max_seen = max_seen.max(s.inbound);
        }
    }
    let mut status;
    wait_for!(WAIT, "the inbound count to settle at the limit", {
        status = group.send(btcpeer::group::GetStatus).await.unwrap();
        max_seen = max_seen.max(status.inbound);
        status.inbound == 20
    });
    assert!(max_seen <= 20, "inbound count reached {max_seen}");
    group.send(btcpeer::group::Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn a_bloom_filter_message_without_node_bloom_gets_the_peer_disconnected() {
    use btcpeer::wire::{Codec, Message};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (probe, _, mut events) = probe(false);
    let group =
        PeerGroup::new(inbound_group(regtest_config(), 8), btcpeer::events::Subscription::common(&probe))
            .start();
    let addr = listen_addr(&group).await;
    let mut stream = scripted_handshake(addr, 777).await.expect("handshake");
    events.expect(WAIT, "the inbound peer ready", |e| matches!(e, Ev::Ready(_)).then_some(())).await;
    let codec = Codec::new(btcpeer::Network::Regtest.magic());
    stream.write_all(&codec.encode_to_bytes(&Message::FilterClear)).await.unwrap();
    let reason = events
        .expect(WAIT, "the disconnect", |e| {
            if let Ev::Disconnected(d) = e {
                Some(d.reason.clone())
            } else {
                None
            }
        })
        .await;
    // Like Core: disconnected, not banned (an old SPV wallet is not an attacker).
    assert!(
        matches!(
            reason,
            btcpeer::peer::DisconnectReason::Misbehaving(btcpeer::peer::Misbehavior::BloomNotOffered { .. })
        ),
        "{reason:?}"
    );
    assert_eq!(reason.kind(), btcpeer::peer::ReasonKind::Incompatible);
    assert!(group.send(btcpeer::group::GetBans).await.unwrap().is_empty());
    // The socket is closed on our side.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await.expect("closed");
    group.send(btcpeer::group::Shutdown).await.unwrap();
}
