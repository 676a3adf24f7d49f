//! Test harness: a real bcoin regtest node (npm `bcoin@1.0.2`, installed by
//! `scripts/install-test-deps`), a SOCKS5 proxy (Debian `microsocks`), a probe actor that turns
//! notifications into a channel, and waiting helpers with deadlines (no sleeps).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use actix::prelude::*;
use btcpeer::events::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub mod event_log;
pub mod raw_peer;

/// Where bcoin coins go: P2WSH of `OP_TRUE` on bcoin regtest (`rb` prefix). Anyone can spend
/// them with the single witness item `51`.
pub const OP_TRUE_ADDRESS: &str = "rb1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqmescae";
/// bcoin regtest rejects witness transactions below this height (`no-witness-yet`).
pub const SEGWIT_HEIGHT: u64 = 432;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A distinct loopback host per node in this test process (127.0.0.2, .3, ...).
pub fn next_host() -> String {
    static NEXT: AtomicU8 = AtomicU8::new(2);
    format!("127.0.0.{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A running bcoin regtest node, killed on drop.
pub struct Bcoin {
    child: Child,
    stdin: Option<ChildStdin>,
    pub p2p: SocketAddr,
    pub http: SocketAddr,
}

#[derive(Default, Clone)]
pub struct BcoinOptions {
    pub host: Option<String>,
    /// P2P port (default: any free port).
    pub port: Option<u16>,
    /// Make bcoin connect out to these peers only.
    pub connect: Vec<SocketAddr>,
    pub max_inbound: Option<usize>,
    /// Offer NODE_BLOOM: serve BIP37 filters and merkleblocks.
    pub bip37: bool,
    /// Send every peer a `filterload` holding these elements once it is ready.
    pub filterload: Option<Vec<Vec<u8>>>,
}

impl Bcoin {
    pub fn start() -> Bcoin {
        Self::start_with(BcoinOptions::default())
    }

    /// Starts a node; panics (fails the test) if it cannot: tests that need the node never skip.
    pub fn start_with(opts: BcoinOptions) -> Bcoin {
        let script = repo_root().join("tests/support/bcoin/node.js");
        let modules = repo_root().join("tests/support/bcoin/node_modules/bcoin");
        assert!(
            modules.exists(),
            "bcoin is not installed ({} missing): run scripts/install-test-deps",
            modules.display()
        );
        let host = opts.host.unwrap_or_else(next_host);
        let mut cmd = Command::new("node");
        let port = opts.port.unwrap_or(0).to_string();
        cmd.arg(&script).args(["--host", &host, "--port", &port, "--log-level", "none"]);
        for c in &opts.connect {
            cmd.args(["--connect", &c.to_string()]);
        }
        if opts.bip37 {
            cmd.args(["--bip37", "true"]);
        }
        if let Some(elements) = &opts.filterload {
            let hex: Vec<String> =
                elements.iter().map(|e| e.iter().map(|b| format!("{b:02x}")).collect()).collect();
            let list = if hex.is_empty() { "-".to_owned() } else { hex.join(",") };
            cmd.args(["--filterload", &list]);
        }
        if let Some(n) = opts.max_inbound {
            cmd.args(["--max-inbound", &n.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run `node` (Node.js 20 is required for the bcoin test node)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("bcoin did not report ready within 60 s");
        let ready: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("bcoin failed to start (stdout: {line:?}): {e}"));
        let p2p = ready["p2p"].as_str().expect("p2p address").parse().expect("p2p socket address");
        let http = ready["http"].as_str().expect("http address").parse().expect("http socket address");
        let stdin = child.stdin.take();
        Bcoin { child, stdin, p2p, http }
    }

    /// Calls bcoin's JSON-RPC; returns the result or the error message.
    pub fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"method": method, "params": params, "id": 1});
        let resp: Value = ureq::post(&format!("http://{}/", self.http))
            .timeout(Duration::from_secs(60))
            .send_json(body)
            .map_err(|e| e.to_string())?
            .into_json()
            .map_err(|e| e.to_string())?;
        match &resp["error"] {
            Value::Null => Ok(resp["result"].clone()),
            err => Err(err.to_string()),
        }
    }

    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params.clone()).unwrap_or_else(|e| panic!("rpc {method} {params}: {e}"))
    }

    /// Mines `n` blocks to the OP_TRUE address; returns their hashes (display hex).
    pub fn mine(&self, n: u64) -> Vec<String> {
        let hashes = self.rpc("generatetoaddress", json!([n, OP_TRUE_ADDRESS]));
        hashes.as_array().expect("hash list").iter().map(|h| h.as_str().unwrap().to_owned()).collect()
    }

    /// Freezes the node (SIGSTOP): its sockets stay open but nothing is answered.
    pub fn freeze(&self) {
        let ok =
            Command::new("kill").args(["-STOP", &self.child.id().to_string()]).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "cannot SIGSTOP the bcoin node");
    }

    /// Kills the node at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bcoin {
    fn drop(&mut self) {
        self.stdin.take();
        self.kill();
    }
}

/// A transaction spending output 0 of `prev` (an OP_TRUE P2WSH coinbase) back to OP_TRUE.
pub fn spend_op_true(prev: bitcoin::Txid, value_sat: u64, fee_sat: u64) -> bitcoin::Transaction {
    use bitcoin::hashes::Hash;
    use bitcoin::{
        absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, WScriptHash, Witness,
    };
    let script = ScriptBuf::from_bytes(vec![0x51]);
    bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: prev, vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[script.as_bytes()]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value_sat - fee_sat),
            script_pubkey: ScriptBuf::new_p2wsh(&WScriptHash::hash(script.as_bytes())),
        }],
    }
}

/// A SOCKS5 proxy (microsocks) on a free loopback port, killed on drop.
pub struct Socks5 {
    child: Child,
    pub addr: SocketAddr,
}

impl Socks5 {
    pub fn start(credentials: Option<(&str, &str)>) -> Socks5 {
        let port = free_port("127.0.0.1");
        let mut cmd = Command::new("microsocks");
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((u, p)) = credentials {
            cmd.args(["-u", u, "-P", p]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run `microsocks`: run scripts/install-test-deps");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until_blocking(Duration::from_secs(10), "microsocks listening", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        Socks5 { child, addr }
    }
}

impl Drop for Socks5 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on `host`.
pub fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port()
}

/// Polls `cond` until it holds or the deadline passes (then fails the test naming `what`).
pub fn wait_until_blocking(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// Evaluates the async block `$cond` (a bool) until it holds, failing the test after `$limit`.
#[macro_export]
macro_rules! wait_for {
    ($limit:expr, $what:expr, $cond:block) => {{
        let limit: std::time::Duration = $limit;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if $cond {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {:?} waiting for {}",
                limit,
                $what
            );
            // Poll interval of a condition with a deadline, not a synchronisation sleep.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// Every notification, as one enum, for tests.
#[derive(Debug, Clone)]
pub enum Ev {
    State(PeerStateChanged),
    Ready(PeerReady),
    Disconnected(PeerDisconnected),
    Inv(InvReceived),
    Tx(TxReceived),
    Addr(AddrReceived),
    Headers(HeadersReceived),
    Block(BlockReceived),
    Message(MessageReceived),
    Banned(AddressBanned),
}

/// Forwards every notification it receives into a channel.
pub struct Probe {
    tx: mpsc::UnboundedSender<Ev>,
}

impl Actor for Probe {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(100_000);
    }
}

macro_rules! forward {
    ($($msg:ident => $variant:ident),*) => {$(
        impl Handler<$msg> for Probe {
            type Result = ();
            fn handle(&mut self, m: $msg, _: &mut Context<Self>) {
                let _ = self.tx.send(Ev::$variant(m));
            }
        }
    )*};
}
forward!(PeerStateChanged => State, PeerReady => Ready, PeerDisconnected => Disconnected, InvReceived => Inv,
    TxReceived => Tx, AddrReceived => Addr, HeadersReceived => Headers, BlockReceived => Block,
    MessageReceived => Message, AddressBanned => Banned);

/// The receiving end of a probe.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Ev>,
    pub seen: Vec<Ev>,
}

impl Events {
    /// Waits for the first event (past or future) for which `f` returns `Some`.
    pub async fn expect<T>(&mut self, limit: Duration, what: &str, mut f: impl FnMut(&Ev) -> Option<T>) -> T {
        if let Some(t) = self.seen.iter().find_map(&mut f) {
            return t;
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(ev)) => {
                    let hit = f(&ev);
                    self.seen.push(ev);
                    if let Some(t) = hit {
                        return t;
                    }
                }
                Ok(None) => panic!("probe closed while waiting for {what}"),
                Err(_) => panic!("timed out after {limit:?} waiting for {what}; saw: {:#?}", self.seen),
            }
        }
    }

    /// Every event so far, those not looked at yet included.
    pub fn all(&mut self) -> &[Ev] {
        while let Ok(ev) = self.rx.try_recv() {
            self.seen.push(ev);
        }
        &self.seen
    }
}

/// A probe actor and subscriptions of every kind (the catch-all too, if `catch_all`).
pub fn probe(catch_all: bool) -> (Addr<Probe>, Subscribers, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = Probe { tx }.start();
    let mut subs = Subscribers::new();
    for s in btcpeer::events::Subscription::common(&addr) {
        subs.add(s);
    }
    if catch_all {
        subs.add(Subscription::Message(addr.clone().recipient()));
    }
    (addr, subs, Events { rx, seen: Vec::new() })
}

/// A peer config for regtest with the library's defaults (getaddr and announced transactions
/// requested, as in btcpeerd: the tests prove the defaults deliver `TxReceived` and `addr`).
pub fn regtest_config() -> btcpeer::peer::PeerConfig {
    btcpeer::peer::PeerConfig::new(btcpeer::Network::Regtest)
}

/// A group config for loopback tests: no automatic peers unless addresses are given, quick
/// retries, a listener on 127.0.0.1:0 when `listen`, in-memory state.
pub fn group_config(peer: btcpeer::peer::PeerConfig, listen: bool) -> btcpeer::group::GroupConfig {
    let mut cfg = btcpeer::group::GroupConfig::new(peer);
    if listen {
        cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    }
    cfg.policy.initial_backoff = Duration::from_millis(100);
    cfg.policy.max_backoff = Duration::from_secs(1);
    cfg.policy.diverse_netgroups = false;
    cfg.arbiters = 1;
    // Every test peer is on loopback, which Core (and the default) never bans.
    cfg.ban_local = true;
    cfg
}

/// An example's binary, built beside the calling test's (target/<profile>/examples/NAME) by
/// `cargo build --examples` (scripts/test runs it; `--all-targets` builds examples in test mode).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "{} is missing: run `cargo build --examples` first", bin.display());
    bin
}

/// Starts `btcpeerd` on regtest listening on a free loopback port with `--events
/// DIR/events.jsonl` and `--data-dir DIR/data` (plus `env`); returns it and its listen address
/// once it accepts connections. Kill it when done.
pub fn daemon_with_events(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let child = Command::new(env!("CARGO_BIN_EXE_btcpeerd"))
        .args(["--network", "regtest", "--listen", &listen, "--events"])
        .arg(dir.join("events.jsonl"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("btcpeerd runs");
    wait_until_blocking(Duration::from_secs(60), "btcpeerd listening", || {
        std::net::TcpStream::connect(&listen).is_ok()
    });
    (child, listen)
}
