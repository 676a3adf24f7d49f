//! The `btcpeerd` binary as a user runs it: against bcoin, with an event log; bad configuration;
//! unreachable peers; SIGTERM.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::event_log::{read_events, wait_for_event};
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn btcpeerd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_btcpeerd"));
    cmd.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("BTCPEER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut status = None;
    wait_until_blocking(WAIT, "btcpeerd to exit after SIGTERM", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

struct Daemon(Child);

/// Runs btcpeerd on regtest with its state in `dir` and its events in `events`.
fn spawn_daemon(
    dir: &std::path::Path,
    events: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Daemon {
    Daemon(
        btcpeerd()
            .args(["--network", "regtest", "--data-dir"])
            .arg(dir)
            .arg("--events")
            .arg(events)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn daemon_reports_bcoin_traffic_as_json_events_and_stops_on_sigterm() {
    let node = Bcoin::start();
    let hashes = node.mine(SEGWIT_HEIGHT);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let mut daemon = spawn_daemon(dir.path(), &events, &["--connect", &node.p2p.to_string()], &[]);
    let ready = wait_for_event(&events, "ready event", |e| e["event"] == "ready");
    assert_eq!(ready["user_agent"], "/bcoin:v1.0.2/");
    assert_eq!(ready["inbound"], false);
    assert_eq!(ready["version"], 70015);
    assert_eq!(ready["peer"], node.p2p.to_string());
    assert!(ready["ts"].as_f64().unwrap() > 1.6e9);
    assert!(ready["peer_id"].as_u64().is_some());
    assert!(ready["features"].is_object());

    // A new block shows up as a headers (or inv) event with its hash.
    let hash = node.mine(1).remove(0);
    wait_for_event(&events, "event with the new block hash", |e| {
        (e["event"] == "headers" && e["hashes"].as_array().unwrap().iter().any(|h| *h == hash))
            || (e["event"] == "inv" && e["items"].as_array().unwrap().iter().any(|i| i["hash"] == hash))
    });

    // A transaction: the daemon requests announced txs, so a tx event appears.
    let block1 = node.rpc("getblock", serde_json::json!([hashes[0], true]));
    let coinbase: bitcoin::Txid = block1["tx"][0].as_str().unwrap().parse().unwrap();
    let tx = spend_op_true(coinbase, 5_000_000_000, 2_000);
    node.rpc("sendrawtransaction", serde_json::json!([bitcoin::consensus::encode::serialize_hex(&tx)]));
    let txid = tx.compute_txid().to_string();
    let ev = wait_for_event(&events, "tx event", |e| e["event"] == "tx" && e["txid"] == txid);
    assert_eq!(ev["wtxid"], tx.compute_wtxid().to_string());
    assert!(read_events(&events).iter().any(|e| e["event"] == "inv"
        && e["items"].as_array().unwrap().iter().any(|i| i["type"] == "tx" && i["hash"] == txid)));

    let status = terminate(&mut daemon.0);
    assert!(status.success(), "exit status {status:?}");
    // State is saved at shutdown.
    assert!(dir.path().join("addrbook.json").exists(), "address book saved on SIGTERM");
    assert!(dir.path().join("bans.json").exists(), "ban list saved on SIGTERM");
    let last = read_events(&events).into_iter().rev().find(|e| e["event"] == "disconnected").unwrap();
    assert_eq!(last["reason_kind"], "local");
    assert_eq!(last["misbehavior"], false);
}

#[test]
fn sync_headers_reaches_the_tip_resumes_after_a_restart_and_fetches_new_blocks() {
    let node = Bcoin::start();
    node.mine(2_100);
    let tip = node.rpc("getbestblockhash", serde_json::json!([])).as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let connect = ["--connect", &node.p2p.to_string(), "--sync-headers"];
    let mut daemon = spawn_daemon(dir.path(), &events, &connect, &[]);
    let synced = wait_for_event(&events, "synced event", |e| e["event"] == "synced");
    assert_eq!((synced["height"].as_u64(), synced["tip"].as_str()), (Some(2_100), Some(tip.as_str())));
    let counts: Vec<u64> = read_events(&events)
        .iter()
        .filter(|e| e["event"] == "headers")
        .map(|e| e["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 2_100, "headers events: {counts:?}");
    assert!(terminate(&mut daemon.0).success());
    assert!(dir.path().join("headers.dat").exists());

    // Restart: the chain comes from disk, so no header is counted again before `synced`.
    std::fs::remove_file(&events).unwrap();
    let mut daemon = spawn_daemon(dir.path(), &events, &[&connect[..], &["--fetch-blocks"]].concat(), &[]);
    let synced = wait_for_event(&events, "synced after restart", |e| e["event"] == "synced");
    assert_eq!(synced["height"].as_u64(), Some(2_100));
    assert!(!read_events(&events).iter().any(|e| e["event"] == "headers"), "headers fetched again");
    // The chain was loaded before the first dial: our version already carried its height.
    let peers = node.rpc("getpeerinfo", serde_json::json!([]));
    assert_eq!(peers[0]["startingheight"], 2_100, "{peers}");

    // A new block is announced, fetched and reported.
    let hash = node.mine(1).remove(0);
    let block = wait_for_event(&events, "block event", |e| e["event"] == "block");
    assert_eq!(block["hash"], hash);
    assert_eq!(block["height"], 2_101);
    assert_eq!(block["txs"], 1);
    assert!(block["size"].as_u64().unwrap() > 80);
    assert!(terminate(&mut daemon.0).success());
}

#[test]
fn unreachable_peer_is_retried_and_the_daemon_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    // Port 1 on loopback: connection refused at once.
    let mut daemon = spawn_daemon(
        dir.path(),
        &events,
        &["--connect", "127.0.0.1:1"],
        &[("BTCPEER_RETRY__INITIAL_BACKOFF_MS", "20")],
    );
    wait_until_blocking(WAIT, "three failed dials", || {
        read_events(&events)
            .iter()
            .filter(|e| e["event"] == "disconnected" && e["reason_kind"] == "network")
            .count()
            >= 3
    });
    assert!(daemon.0.try_wait().unwrap().is_none(), "daemon must keep running");
    assert!(terminate(&mut daemon.0).success());
}

#[test]
fn a_full_disk_under_the_logs_and_the_event_log_does_not_stop_the_daemon() {
    // /dev/full fails every write with ENOSPC, as a full disk does: log lines and event lines
    // are lost, the daemon goes on (tracing-subscriber's own error report would panic).
    let dir = tempfile::tempdir().unwrap();
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let port = free_port("127.0.0.1");
    let mut daemon = btcpeerd()
        .args(["--network", "regtest", "--connect", "127.0.0.1:1", "--events", "/dev/full"])
        .args(["--http", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("BTCPEER_RETRY__INITIAL_BACKOFF_MS", "20")
        .stdout(Stdio::null())
        .stderr(full())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    // Every failed dial logs and writes events; three of them, and the daemon still answers.
    wait_until_blocking(WAIT, "three failed dials reported by /metrics", || {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        let Ok(response) = ureq::get(&url).call() else { return false };
        let Ok(body) = response.into_string() else { return false };
        body.lines()
            .filter(|l| l.starts_with("btcpeer_dials_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            >= 3.0
    });
    assert!(daemon.try_wait().unwrap().is_none(), "daemon must keep running");
    assert!(terminate(&mut daemon).success());
}

fn run_expecting_config_error(args: &[&str], env: &[(&str, &str)], key: &str) {
    let out = btcpeerd().args(args).envs(env.iter().copied()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {args:?} env {env:?}: stderr {stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(key), "{key:?} not named in: {stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    run_expecting_config_error(&["--network", "moon"], &[], "network");
    run_expecting_config_error(&["--connect", "not an address"], &[], "connect");
    run_expecting_config_error(&["--listen", "localhost"], &[], "listen");
    run_expecting_config_error(&["--proxy", "nowhere"], &[], "proxy.addr");
    run_expecting_config_error(&["--log-format", "xml"], &[], "xml");
    run_expecting_config_error(&["--http", "localhost"], &[], "http");
    run_expecting_config_error(
        &[],
        &[("BTCPEER_PEER__PING_INTERVAL_SECS", "soon")],
        "peer.ping_interval_secs",
    );
    run_expecting_config_error(&[], &[("BTCPEER_PEER__PING_INTERVAL_SECS", "0")], "peer.ping_interval_secs");
    run_expecting_config_error(&[], &[("BTCPEER_EXTERNAL", "1.2.3.4,somewhere")], "external");
    run_expecting_config_error(
        &["--config", "/nonexistent/btcpeerd.toml"],
        &[],
        "/nonexistent/btcpeerd.toml",
    );

    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    writeln!(std::fs::File::create(&unknown).unwrap(), "[peer]\nping_interval = 5").unwrap();
    run_expecting_config_error(&["--config", unknown.to_str().unwrap()], &[], "peer.ping_interval");
    let wrong_type = dir.path().join("type.toml");
    writeln!(std::fs::File::create(&wrong_type).unwrap(), "[inbound]\nmax_peers = \"many\"").unwrap();
    run_expecting_config_error(&["--config", wrong_type.to_str().unwrap()], &[], "inbound.max_peers");
    let broken = dir.path().join("broken.toml");
    writeln!(std::fs::File::create(&broken).unwrap(), "network = = \"regtest\"").unwrap();
    run_expecting_config_error(&["--config", broken.to_str().unwrap()], &[], broken.to_str().unwrap());
}

#[test]
fn network_aliases_work_from_flag_env_and_file_and_unknown_names_list_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("net.toml");
    std::fs::write(&file, "network = \"bitcoin\"\n").unwrap();
    let file = file.to_str().unwrap();
    // (args, env, the port `--connect 127.0.0.1` resolves to on that network)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], u16);
    let cases: [Case; 4] = [
        (&["--network", "testnet"], &[], 18333),
        (&["--network", "Main"], &[], 8333),
        (&[], &[("BTCPEER_NETWORK", "test")], 18333),
        (&["--config", file], &[], 8333),
    ];
    for (i, (args, env, port)) in cases.into_iter().enumerate() {
        let data = dir.path().join(format!("data{i}"));
        let events = dir.path().join(format!("events{i}.jsonl"));
        let mut daemon = Daemon(
            btcpeerd()
                .args(["--connect", "127.0.0.1", "--data-dir"])
                .arg(&data)
                .arg("--events")
                .arg(&events)
                .args(args)
                .envs(env.iter().copied())
                // Empty lists from the environment are empty lists, not one empty entry.
                .envs([
                    ("BTCPEER_SEEDS", ""),
                    ("BTCPEER_LISTEN", ""),
                    ("BTCPEER_RETRY__INITIAL_BACKOFF_MS", "20"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let peer = format!("127.0.0.1:{port}");
        wait_for_event(&events, &format!("a dial of {peer} ({args:?} {env:?})"), |e| {
            e["event"] == "disconnected" && e["peer"] == peer.as_str()
        });
        assert!(terminate(&mut daemon.0).success(), "{args:?} {env:?}");
    }

    let moon = dir.path().join("moon.toml");
    std::fs::write(&moon, "network = \"moon\"\n").unwrap();
    for (args, env) in [
        (vec!["--network", "moon"], vec![]),
        (vec![], vec![("BTCPEER_NETWORK", "moon")]),
        (vec!["--config", moon.to_str().unwrap()], vec![]),
    ] {
        let out = btcpeerd().args(&args).envs(env.iter().copied()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for valid in [
            "network", "\"moon\"", "mainnet", "main", "bitcoin", "testnet3", "testnet", "testnet4", "signet",
            "regtest",
        ] {
            assert!(stderr.contains(valid), "{valid} missing from: {stderr}");
        }
    }
}

/// Runs the daemon with `data_dir` and expects exit 1 with one line naming it and `os_error`.
fn run_expecting_data_dir_error(data_dir: &std::path::Path, os_error: &str) {
    let out = btcpeerd()
        .args(["--network", "regtest", "--connect", "127.0.0.1:1", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {stderr}", data_dir.display());
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(&data_dir.display().to_string()), "directory not named: {stderr}");
    assert!(lines[0].contains(os_error), "{os_error:?} not in: {stderr}");
}

#[test]
fn an_unusable_data_dir_stops_the_daemon_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // Missing directories are created.
    let created = dir.path().join("a/b");
    let events = dir.path().join("events.jsonl");
    let mut daemon = spawn_daemon(&created, &events, &["--connect", "127.0.0.1:1"], &[]);
    wait_for_event(&events, "the daemon running (a dial attempt)", |e| e["event"] == "disconnected");
    assert!(terminate(&mut daemon.0).success());
    assert!(created.join("addrbook.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&created)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("probe"))
        .collect();
    assert!(leftovers.is_empty(), "probe file left behind: {leftovers:?}");

    // A path below a regular file cannot be created, not even by root.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    run_expecting_data_dir_error(&file.join("data"), "os error");
    run_expecting_data_dir_error(&file, "os error");

    // A read-only directory (unless we are privileged enough to write there anyway).
    use std::os::unix::fs::PermissionsExt;
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(read_only.join("x"), "").is_err() {
        run_expecting_data_dir_error(&read_only, "ermission denied");
    } else {
        eprintln!("running as root: the read-only directory case is skipped");
    }
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_corrupt_address_book_is_reported_and_the_daemon_still_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("addrbook.json"), "{\"version\": 1, \"key\": tru").unwrap();
    let events = dir.path().join("events.jsonl");
    let log = dir.path().join("stderr.log");
    let mut daemon = Daemon(
        btcpeerd()
            .args(["--network", "regtest", "--connect", "127.0.0.1:1", "--data-dir"])
            .arg(dir.path())
            .arg("--events")
            .arg(&events)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_event(&events, "the daemon running (a dial attempt)", |e| e["event"] == "disconnected");
    assert!(terminate(&mut daemon.0).success());
    let stderr = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<_> = stderr.lines().filter(|l| l.contains("addrbook.json")).collect();
    assert_eq!(lines.len(), 1, "one log line about the bad file: {stderr}");
    assert!(lines[0].contains("truncated JSON") || lines[0].contains("invalid JSON"), "{}", lines[0]);
    assert!(dir.path().join("addrbook.json.corrupt").exists(), "the bad file is kept for inspection");
    assert!(dir.path().join("addrbook.json").exists(), "a good book was saved at shutdown");
}

#[test]
fn the_demo_reaches_ready_serves_health_and_stops_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let port = free_port("127.0.0.1");
    let mut demo = Daemon(
        Command::new(repo_root().join("scripts/demo"))
            .args(["--http", &format!("127.0.0.1:{port}")])
            .env("BTCPEERD", env!("CARGO_BIN_EXE_btcpeerd"))
            .env_remove("RUST_LOG")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("the demo printed no ready and block events in time");
        let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if event["event"] == "ready" {
            assert_eq!(event["user_agent"], "/bcoin:v1.0.2/");
        }
        // The demo follows the chain: the miner's blocks are fetched and reported.
        if event["event"] == "block" {
            assert!(event["height"].as_u64().unwrap() >= 1, "{event}");
            break;
        }
    }
    let status: Value = ureq::get(&format!("http://127.0.0.1:{port}/status"))
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert!(status["chain"]["height"].as_u64().unwrap() >= 1, "{status}");
    let health: Value = ureq::get(&format!("http://127.0.0.1:{port}/health"))
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(health["status"], "ok");
    // Ctrl-C equivalent for the whole demo (script, node, miner, daemon).
    let pgid = format!("-{}", demo.0.id());
    assert!(Command::new("kill").args(["-TERM", "--", &pgid]).status().unwrap().success());
    let mut status = None;
    wait_until_blocking(WAIT, "the demo to exit", || {
        status = demo.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "demo exit status {status:?}");
}

/// `scripts/demo --until EVENT` (the CI entry point): exit 0 at the first such event, 1 when
/// none came in time; either way nothing it started keeps running.
#[test]
fn the_demo_until_block_exits_0_and_leaves_nothing_running() {
    let run = |args: &[&str]| {
        let out = Command::new(repo_root().join("scripts/demo"))
            .args(args)
            .env("BTCPEERD", env!("CARGO_BIN_EXE_btcpeerd"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // The node's P2P address, from the progress line "bcoin regtest node at IP:PORT (...".
        let node = stderr
            .split("node at ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no node address in: {stderr}"))
            .to_owned();
        (out.status, stdout, stderr, node)
    };
    let (status, stdout, stderr, node) = run(&["--until", "block", "--timeout", "120"]);
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stdout.lines().any(|l| l.contains("\"event\":\"block\"")), "{stdout}");
    assert!(stderr.contains("first ready event") && stderr.contains("first block event"), "{stderr}");
    let node: std::net::SocketAddr = node.parse().unwrap();
    wait_until_blocking(WAIT, "the demo's node to be gone", || std::net::TcpStream::connect(node).is_err());

    let (status, _, stderr, _) = run(&["--until", "nosuch", "--timeout", "3"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no nosuch event within 3s"), "{stderr}");
}
