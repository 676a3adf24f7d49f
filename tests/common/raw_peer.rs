//! A scripted raw peer: v1 frames written by hand over a TCP socket bound to its own loopback
//! address, and reads with deadlines.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use btcpeer::wire::{Codec, Message};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// The frames a raw peer reads.
pub type Frames = FramedRead<tokio::net::tcp::OwnedReadHalf, Codec>;

/// The regtest v1 codec.
pub fn codec() -> Codec {
    Codec::new(btcpeer::Network::Regtest.magic())
}

/// `msg` as a regtest v1 frame.
pub fn frame(msg: &Message) -> Vec<u8> {
    codec().encode_to_bytes(msg).to_vec()
}

/// A socket bound to `ip` before it connects, so each case has its own address (and a ban of
/// one case spoils no other).
pub async fn connect_from(ip: Ipv4Addr, target: SocketAddr) -> (OwnedWriteHalf, Frames) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    let stream: TcpStream = socket.connect(target).await.unwrap();
    let (read, write) = stream.into_split();
    (write, FramedRead::new(read, codec()))
}

/// Reads frames until `want` matches one; `Err` says what happened instead (timeout after
/// `limit`, stream error, close).
pub async fn read_until(
    frames: &mut Frames,
    limit: Duration,
    what: &str,
    want: impl Fn(&Message) -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, frames.next()).await {
            Err(_) => return Err(format!("timed out waiting for {what}")),
            Ok(Some(Ok(f))) => {
                if f.into_message().is_ok_and(|m| want(&m)) {
                    return Ok(());
                }
            }
            Ok(Some(Err(e))) => return Err(format!("stream error waiting for {what}: {e}")),
            Ok(None) => return Err(format!("closed while waiting for {what}")),
        }
    }
}

/// A `ping` answered by its `pong`: everything sent before it was processed and the link lives.
pub async fn ping_pong(
    w: &mut OwnedWriteHalf,
    frames: &mut Frames,
    limit: Duration,
    nonce: u64,
) -> Result<(), String> {
    w.write_all(&frame(&Message::Ping(nonce))).await.map_err(|e| e.to_string())?;
    read_until(frames, limit, "pong", |m| *m == Message::Pong(nonce)).await
}

/// True once the other side closes the link within `limit` (whatever it sends before).
pub async fn closed(frames: Frames, limit: Duration) -> bool {
    let mut read = frames.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether `msg` (`addr` or `addrv2`) announces `ip`:`port` as offering `NODE_NETWORK`: a
/// self-announcement of a serving node.
pub fn announces_node(msg: &Message, ip: IpAddr, port: u16) -> bool {
    use btcpeer::wire::{AddrV2, ServiceFlags};
    let it = |a: IpAddr, p: u16, services: ServiceFlags| {
        a == ip && p == port && services.has(ServiceFlags::NETWORK)
    };
    match msg {
        Message::Addr(list) => list
            .iter()
            .any(|(_, a)| a.socket_addr().is_ok_and(|s| it(s.ip().to_canonical(), s.port(), a.services))),
        Message::AddrV2(list) => list.iter().any(|a| match a.addr {
            AddrV2::Ipv4(v4) => it(IpAddr::V4(v4), a.port, a.services),
            AddrV2::Ipv6(v6) => it(IpAddr::V6(v6), a.port, a.services),
            _ => false,
        }),
        _ => false,
    }
}

/// Accepts one connection on `listener` and completes a v1 handshake as a peer that offers
/// nothing; returns its halves.
pub async fn accept_and_handshake(
    listener: &tokio::net::TcpListener,
    limit: Duration,
) -> (OwnedWriteHalf, Frames) {
    let (stream, _) = tokio::time::timeout(limit, listener.accept()).await.expect("dialed").unwrap();
    let (read, mut write) = stream.into_split();
    let version = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion { nonce: 77, ..Default::default() },
        None,
    );
    for m in [Message::Version(version), Message::Verack] {
        write.write_all(&frame(&m)).await.unwrap();
    }
    (write, FramedRead::new(read, codec()))
}
