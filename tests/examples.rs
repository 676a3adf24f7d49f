//! Every example runs here against a real bcoin regtest node: each is started as its own
//! process (the binaries `cargo build --examples` builds; scripts/test does that first), its output is read until the line
//! that shows it did its job, then it is stopped. A newcomer's first program must work.

mod common;
#[path = "support/nats_server.rs"]
mod nats_server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Bcoin;

/// A running example, killed on drop, with its stdout lines arriving on a channel.
struct Running {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        let mut child = Command::new(common::example_binary(name))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { name: name.to_owned(), child, lines, seen: Vec::new() }
    }

    /// Waits for a line containing `pattern` (printed already, or from now on); returns it.
    fn expect(&mut self, pattern: &str, limit: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(pattern)) {
            return line.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(pattern) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "example {} printed no line with {pattern:?} within {limit:?}; output: {:#?}",
                        self.name, self.seen
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "example {} exited ({status:?}) before printing {pattern:?}; output: {:#?}",
                        self.name, self.seen
                    )
                }
            }
        }
    }

    /// Waits for the example to exit by itself; returns whether it succeeded.
    fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on example") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "example {} still running after {limit:?}", self.name);
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LIMIT: Duration = Duration::from_secs(60);

/// A regtest node with `n` blocks.
fn node_with(n: u64) -> Bcoin {
    let node = Bcoin::start();
    node.mine(n);
    node
}

/// Submits a spend of block 1's coinbase to the node (it must be past bcoin's segwit height);
/// returns the txid.
fn submit(node: &Bcoin) -> String {
    use std::str::FromStr;
    let hash = node.rpc("getblockhash", serde_json::json!([1]));
    let block1 = node.rpc("getblock", serde_json::json!([hash, true]));
    let coinbase = bitcoin::Txid::from_str(block1["tx"][0].as_str().expect("coinbase txid")).expect("txid");
    let tx = common::spend_op_true(coinbase, 5_000_000_000, 1_000);
    let hex = bitcoin::consensus::encode::serialize_hex(&tx);
    node.rpc("sendrawtransaction", serde_json::json!([hex])).as_str().expect("txid").to_owned()
}

/// The README's newcomer program: headers fetched from genesis, then a block announcement and a
/// transaction arrive at its subscriber with the library's defaults.
#[test]
fn newcomer() {
    let node = node_with(common::SEGWIT_HEIGHT);
    let mut ex = Running::start("newcomer", &[&node.p2p.to_string()]);
    let line = ex.expect("fetched", LIMIT);
    assert!(line.contains("fetched 432 headers after genesis"), "{line}");
    node.mine(1);
    ex.expect("headers: 1 announced", LIMIT);
    let txid = submit(&node);
    ex.expect(&format!("tx: {txid}"), LIMIT);
}

#[test]
fn subscriber() {
    let node = node_with(common::SEGWIT_HEIGHT);
    let mut ex = Running::start("subscriber", &[&node.p2p.to_string(), "regtest"]);
    ex.expect("ready: /bcoin", LIMIT);
    let txid = submit(&node);
    ex.expect("inv (1 items)", LIMIT);
    ex.expect(&txid, LIMIT);
}

#[test]
fn headers() {
    let node = node_with(20);
    let mut ex = Running::start("headers", &[&node.p2p.to_string(), "regtest"]);
    ex.expect("ready:", LIMIT);
    ex.expect("20 headers from", LIMIT);
}

#[test]
fn group() {
    let node = node_with(1);
    let mut ex = Running::start("group", &["regtest", &node.p2p.to_string()]);
    ex.expect("outbound 1/4 ready", LIMIT);
}

#[test]
fn chain_sync() {
    let node = node_with(30);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let mut ex = Running::start("chain_sync", &[&node.p2p.to_string(), "regtest", data]);
    ex.expect("genesis from peer", LIMIT);
    ex.expect("\"synced\"", LIMIT);
}

#[test]
fn indexer() {
    let node = node_with(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path");
    let mut ex = Running::start("indexer", &[&node.p2p.to_string(), "regtest", data]);
    ex.expect("headers synced at 10", LIMIT);
    node.mine(1);
    ex.expect("applied: tip 11", LIMIT);
}

#[test]
fn mempool_watcher() {
    let node = node_with(common::SEGWIT_HEIGHT);
    let mut ex = Running::start("mempool_watcher", &["regtest", &node.p2p.to_string()]);
    // The transaction is announced once the watcher's peer is up; send it after a first round
    // trip proves the connection (bcoin's getpeerinfo lists it).
    common::wait_until_blocking(LIMIT, "the watcher connected", || {
        node.rpc("getpeerinfo", serde_json::json!([])).as_array().is_some_and(|p| !p.is_empty())
    });
    let txid = submit(&node);
    ex.expect(&txid, LIMIT);
}

#[test]
fn raw_headers() {
    let node = node_with(50);
    let mut ex = Running::start("raw_headers", &[&node.p2p.to_string()]);
    let line = ex.expect("\"height\":50", LIMIT);
    assert!(line.contains("\"headers\":51"), "{line}");
    assert!(ex.wait_exit(LIMIT), "raw_headers failed");
}

#[test]
fn header_server() {
    // Our memory-speed header server (scripts/bench-headers --fast) serves a raw client.
    let mut server = Running::start("header_server", &["127.0.0.1:0", "4000"]);
    let ready = server.expect("\"p2p\"", LIMIT);
    let p2p: serde_json::Value = serde_json::from_str(&ready).expect("a JSON line");
    let p2p = p2p["p2p"].as_str().expect("p2p address").to_owned();
    let mut client = Running::start("raw_headers", &[&p2p]);
    let line = client.expect("\"headers\"", LIMIT);
    assert!(line.contains("\"headers\":4001"), "{line}");
}

#[test]
fn headers_dat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ex = Running::start("headers_dat", &[dir.path().to_str().expect("utf-8 path"), "3000"]);
    let line = ex.expect("\"headers\"", LIMIT);
    assert!(line.contains("\"headers\":3000"), "{line}");
}

#[test]
fn startup_probe() {
    // Times btcpeerd from spawn to its first dial against a floor program (scripts/bench-startup).
    let mut ex = Running::start("startup_probe", &["2", env!("CARGO_BIN_EXE_btcpeerd")]);
    let line = ex.expect("\"over_floor_ms\"", LIMIT);
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert!(v["startup_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{line}");
    assert!(ex.wait_exit(LIMIT), "startup_probe failed");
}

#[test]
fn handshake_load() {
    let node = node_with(1);
    let mut ex = Running::start("handshake_load", &[&node.p2p.to_string(), "5"]);
    let line = ex.expect("\"connections\":5", LIMIT);
    assert!(line.contains("\"ready\":5"), "{line}");
}

#[test]
fn relay_bench() {
    let mut ex = Running::start("relay_bench", &["3", "200"]);
    let line = ex.expect("\"announcements_sent\":600", Duration::from_secs(120));
    assert!(line.contains("\"announcements_received\":600"), "{line}");
    assert!(ex.wait_exit(LIMIT), "relay_bench failed");
}

/// The flood generator of `scripts/flood`, small: two attackers from their own loopback
/// addresses each send two `inv`s to a listening btcpeerd, whose event log writes all four.
#[test]
fn inv_flood() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events.jsonl");
    let (mut daemon, listen) = common::daemon_with_events(dir.path(), &[]);
    let mut ex = Running::start("inv_flood", &[&listen, "2", "2", "1000"]);
    let line = ex.expect("\"bytes_sent\"", LIMIT);
    assert!(line.contains("\"errors\":[]"), "{line}");
    let inv_lines = || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"event\":\"inv\""))
            .count()
    };
    common::wait_until_blocking(LIMIT, "four inv lines in the event log", || inv_lines() == 4);
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// A daemon publishes a bcoin node's blocks to NATS JetStream; the consumer example prints each
/// new one once and, restarted, resumes after the last it acknowledged.
#[test]
fn nats_consumer() {
    let store = tempfile::tempdir().expect("temp dir");
    let server = nats_server::NatsServer::start(store.path());
    let node = node_with(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, events) = (dir.path().join("d.toml"), dir.path().join("events.jsonl"));
    std::fs::write(&config, format!("[sink.nats]\nservers = [\"{}\"]\n", server.url())).expect("config");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_btcpeerd"))
        .args(["--network", "regtest", "--fetch-blocks", "--connect", &node.p2p.to_string(), "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--events")
        .arg(&events)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("btcpeerd runs");
    common::wait_until_blocking(LIMIT, "daemon synced", || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("\"event\":\"synced\"")
    });
    let url = server.url();
    let args = [url.as_str(), "btcpeer.regtest", "BTCPEER", "printer"];
    let mut ex = Running::start("nats_consumer", &args);
    ex.expect("consuming BTCPEER", LIMIT);
    let first = node.mine(1).remove(0);
    ex.expect(&first, LIMIT);
    drop(ex);
    let second = node.mine(1).remove(0);
    let mut ex = Running::start("nats_consumer", &args);
    ex.expect(&second, LIMIT);
    assert!(!ex.seen.iter().any(|l| l.contains(&first)), "printed {first} again after the restart");
    let _ = daemon.kill();
    let _ = daemon.wait();
}
