//! A real DNS server for tests: Debian's `dnsmasq` (package `dnsmasq-base`, installed by
//! `scripts/install-test-deps`) on 127.0.0.1 and a free port, answering only from the records it
//! is given. Included by tests with `#[path = "support/dns/mod.rs"] mod dns_support;`.
//!
//! The server is authoritative for its zone (`--local=/ZONE/`): a name in the zone without a
//! record is `NXDOMAIN`, a name with only A records answers AAAA queries with no data. It has no
//! upstream servers (`--no-resolv`) and reads no system file (`--no-hosts`,
//! `--conf-file=/dev/null`), so nothing leaves loopback. `--no-daemon` keeps it in the
//! foreground, writes no pid file and keeps the user id, so it runs the same as root and not.
#![allow(dead_code)]

use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long dnsmasq may take to bind and report `started`.
const START_LIMIT: Duration = Duration::from_secs(10);
/// Fresh ports tried when the chosen one was taken between choosing and binding.
const PORT_TRIES: usize = 5;

const INSTALL_HINT: &str = "run scripts/install-test-deps (it installs the Debian package dnsmasq-base)";

/// A running dnsmasq, killed on drop.
pub struct Dnsmasq {
    child: Child,
    /// Where it answers, over UDP and TCP.
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq authoritative for `zone`, with `records` (name, address; a name may repeat
    /// for several addresses). Fails the test, saying how to install it, if it cannot start.
    pub fn start(zone: &str, records: &[(&str, IpAddr)]) -> Dnsmasq {
        let binary = find_binary();
        let mut last_log = String::new();
        for _ in 0..PORT_TRIES {
            let port = free_udp_and_tcp_port();
            let dir = tempfile::tempdir().expect("temporary directory for the dnsmasq log");
            let log = dir.path().join("dnsmasq.log");
            let log_file = File::create(&log).expect("create the dnsmasq log");
            let mut cmd = Command::new(&binary);
            cmd.args(args(port, zone, records))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log_file));
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {} ({e}): {INSTALL_HINT}", binary.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut server = Dnsmasq { child, addr, log, _dir: dir };
            match server.wait_started() {
                Started::Yes => return server,
                Started::PortTaken(log) => last_log = log,
                Started::No(log) => {
                    panic!("dnsmasq did not start ({INSTALL_HINT}); its output:\n{log}")
                }
            }
        }
        panic!("dnsmasq found no free port in {PORT_TRIES} tries; its last output:\n{last_log}")
    }

    /// What dnsmasq has logged so far (its start-up lines and, with `--log-queries`, every query).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_started(&mut self) -> Started {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            // dnsmasq binds its UDP and TCP sockets before it logs "started".
            let log = self.log();
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    let log = format!("{log}(exited: {status})");
                    return if log.contains("Address already in use") {
                        Started::PortTaken(log)
                    } else {
                        Started::No(log)
                    };
                }
                Ok(None) if log.contains("started, version") => return Started::Yes,
                Ok(None) => {}
                Err(e) => return Started::No(format!("{log}(cannot wait for it: {e})")),
            }
            if Instant::now() >= deadline {
                return Started::No(format!("{log}(no \"started\" line within {START_LIMIT:?})"));
            }
            // Poll interval of a condition with a deadline, not a synchronisation sleep.
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }
}

enum Started {
    Yes,
    PortTaken(String),
    No(String),
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq's command line (see the module docs for why each option).
pub fn args(port: u16, zone: &str, records: &[(&str, IpAddr)]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--log-facility=-",
        "--log-queries",
    ]
    .map(String::from)
    .into();
    args.push(format!("--port={port}"));
    args.push(format!("--local=/{zone}/"));
    args.extend(records.iter().map(|(name, ip)| format!("--host-record={name},{ip}")));
    args
}

/// The dnsmasq binary: on `PATH`, or where Debian puts it (`/usr/sbin`, often not on a user's
/// `PATH`).
fn find_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("dnsmasq")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin/dnsmasq", "/usr/local/sbin/dnsmasq"].map(PathBuf::from))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("dnsmasq is not installed: {INSTALL_HINT}"))
}

/// A loopback port free for both UDP and TCP a moment ago.
fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on 127.0.0.1");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP in 100 tries")
}

/// A UDP socket on loopback that receives queries and never answers, for timeout tests. The
/// socket stays bound (so queries are not refused) until the value is dropped.
pub struct SilentServer {
    socket: UdpSocket,
    /// Its address.
    pub addr: SocketAddr,
}

impl SilentServer {
    pub fn bind() -> SilentServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on 127.0.0.1");
        let addr = socket.local_addr().expect("local address");
        SilentServer { socket, addr }
    }
}
