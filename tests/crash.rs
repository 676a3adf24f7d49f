//! Crash durability: `btcpeerd` killed with SIGKILL at varied moments, many times in a row,
//! while it saves the address book and bans every second and appends to `headers.dat`. Every
//! next start must find a valid state (the current files or their backups), never an empty one
//! when a good one existed.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use btcpeer::wire::{Address, Codec, Message, ServiceFlags};
use bytes::BytesMut;
use common::*;
use serde_json::Value;
use tokio_util::codec::Decoder;

const WAIT: Duration = Duration::from_secs(30);
/// Kills in a row.
const KILLS: u64 = 30;
/// Addresses the fake peer hands out (Core's answer to `getaddr` holds at most 1,000).
const ADDRESSES: usize = 1_000;

fn btcpeerd(dir: &std::path::Path, http: SocketAddr, connect: &[SocketAddr]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_btcpeerd"));
    cmd.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("BTCPEER_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["--network", "regtest", "--sync-headers", "--data-dir"])
        .arg(dir)
        .args(["--http", &http.to_string()]);
    for c in connect {
        cmd.args(["--connect", &c.to_string()]);
    }
    // Saves as often as the settings allow, so kills land during saves.
    cmd.env("BTCPEER_GROUP__SAVE_INTERVAL_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("btcpeerd runs")
}

/// `/status` once the API answers: (addresses in the book, bans, chain height).
fn status(http: SocketAddr) -> (u64, u64, u64) {
    let mut out = None;
    wait_until_blocking(WAIT, "btcpeerd's /status", || {
        let resp = ureq::get(&format!("http://{http}/status")).timeout(Duration::from_secs(5)).call();
        out = resp.ok().and_then(|r| r.into_json::<Value>().ok());
        out.is_some()
    });
    let s = out.expect("answered");
    let g = &s["group"];
    let book = g["addrbook_new"].as_u64().unwrap_or(0) + g["addrbook_tried"].as_u64().unwrap_or(0);
    (book, g["bans"].as_u64().unwrap_or(0), s["chain"]["height"].as_u64().unwrap_or(0))
}

/// A save began after `since` and has not finished: one of its temporary files was written
/// since then (`persist::save_json` renames it away when done; an older one is left over from
/// an earlier kill).
fn saving_since(dir: &std::path::Path, since: SystemTime) -> bool {
    ["addrbook.json.tmp", "bans.json.tmp"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).and_then(|m| m.modified()).ok())
        .any(|t| t >= since)
}

fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
}

fn terminate(child: &mut Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    wait_until_blocking(WAIT, "btcpeerd to exit after SIGTERM", || child.try_wait().ok().flatten().is_some());
}

/// A fake full node: answers btcpeerd's handshake and its `getaddr` with [`ADDRESSES`] routable
/// addresses, which fills the address book, and hangs up. Serves one connection.
/// Its accept thread is detached: it ends with the test process.
fn fake_peer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    // The daemon tries BIP324 v2 first and retries with v1 on a new connection (we answer v2
    // with a v1 `version`): serve each connection on its own thread, so the v1 retry is served
    // whatever becomes of the first, until one got its `addr`.
    std::thread::spawn(move || {
        for _ in 0..8 {
            let Ok((mut stream, _)) = listener.accept() else { return };
            std::thread::spawn(move || serve(&mut stream));
        }
    });
    addr
}

/// Returns true once it answered a `getaddr`.
fn serve(stream: &mut TcpStream) -> std::io::Result<bool> {
    stream.set_read_timeout(Some(WAIT))?;
    let mut codec = Codec::new(btcpeer::Network::Regtest.magic());
    let mut v = btcpeer::wire::version::build(
        &btcpeer::wire::version::LocalVersion {
            services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
            nonce: 0x5eed,
            ..Default::default()
        },
        None,
    );
    v.start_height = 0;
    let send = |s: &mut TcpStream, c: &Codec, m: &Message| s.write_all(&c.encode_to_bytes(m));
    send(stream, &codec, &Message::Version(v))?;
    send(stream, &codec, &Message::Verack)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as u32;
    let addrs: Vec<(u32, Address)> = (0..ADDRESSES)
        .map(|i| {
            // Routable, in many /16 groups so the book's buckets keep them.
            let ip = Ipv4Addr::new(20 + (i / 250) as u8, (i % 250) as u8, 7, 1);
            (now, Address::new(&SocketAddr::new(ip.into(), 8333), ServiceFlags::NETWORK))
        })
        .collect();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            // Answer `getaddr`, then leave: headers come from the real node.
            if let Ok(Message::GetAddr) = frame.into_message() {
                return send(stream, &codec, &Message::Addr(addrs)).map(|()| true);
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn kill_9_during_saves_never_loses_the_saved_state() {
    let started = Instant::now();
    let node = Bcoin::start();
    node.mine(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")).parse().expect("addr");

    // A good state: an address book from a peer's `addr`, bans, and 200 headers on disk.
    let fake = fake_peer();
    let mut daemon = btcpeerd(dir.path(), http, &[node.p2p, fake]);
    for ip in ["10.1.2.3", "10.1.2.4", "10.1.2.5"] {
        wait_until_blocking(WAIT, "a ban through the API", || {
            ureq::post(&format!("http://{http}/bans"))
                .timeout(Duration::from_secs(5))
                .send_json(serde_json::json!({ "addr": ip }))
                .is_ok()
        });
    }
    let mut last = (0, 0, 0);
    let deadline = Instant::now() + WAIT;
    while !(last.0 >= (ADDRESSES / 2) as u64 && last.1 == 3 && last.2 == 200) {
        assert!(Instant::now() < deadline, "seeding: (book, bans, height) stayed {last:?}");
        std::thread::park_timeout(Duration::from_millis(50));
        last = status(http);
    }
    terminate(&mut daemon);

    // What a clean restart finds is the good state every later start must keep.
    let mut daemon = btcpeerd(dir.path(), http, &[node.p2p]);
    let (book, bans, height) = status(http);
    assert!(book >= (ADDRESSES / 2) as u64 && bans == 3 && height >= 200, "{book} {bans} {height}");
    kill9(&mut daemon);

    // Kills that left a save half done (a temporary file behind).
    let mut interrupted = 0;
    for i in 0..KILLS {
        let cycle = SystemTime::now();
        let mut daemon = btcpeerd(dir.path(), http, &[node.p2p]);
        let (b, n, h) = status(http);
        assert!(
            b >= book && n == bans && h >= height,
            "start {i}: book {b} (had {book}), bans {n} (had {bans}), height {h} (had {height})"
        );
        // New blocks while it runs, so headers are being appended when the kill lands.
        if i % 3 == 0 {
            node.mine(5);
        }
        if i % 2 == 0 {
            // Not synchronisation: the kill moment, varied over two save periods (the daemon
            // saves every second): right after start, mid-save, between saves.
            std::thread::sleep(Duration::from_millis((i * 397) % 1_900));
        } else {
            // Aimed: the moment a save's temporary file appears, i.e. mid-save.
            let deadline = Instant::now() + Duration::from_secs(3);
            while !saving_since(dir.path(), cycle) && Instant::now() < deadline {
                std::thread::yield_now();
            }
        }
        kill9(&mut daemon);
        interrupted += u32::from(saving_since(dir.path(), cycle));
    }
    // And the state still loads after all of that.
    let mut daemon = btcpeerd(dir.path(), http, &[node.p2p]);
    let (b, n, h) = status(http);
    assert!(b >= book && n == bans && h >= height, "final: {b} {n} {h}");
    terminate(&mut daemon);
    println!("{KILLS} kills ({interrupted} left a save half done) in {:?}", started.elapsed());
}
