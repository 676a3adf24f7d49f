//! The daemon's HTTP API against a running group connected to a real bcoin node.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use btcpeer::daemon::http;
use btcpeer::group::{GroupConfig, PeerGroup, Shutdown};
use btcpeer::peer::PeerAddr;
use btcpeer::Network;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// An HTTP call made off the actix thread (the group runs on it), returning status and JSON.
async fn call(method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || {
        // Longer than `POST /tx` may wait for a peer's getdata (`BROADCAST_TIMEOUT`): the
        // announcement's trickle delay is random (a 2 s mean to outbound peers, as Core), and
        // a draw past a shorter client timeout failed this test now and then.
        let req = ureq::request(&method, &url)
            .timeout(btcpeer::daemon::http::BROADCAST_TIMEOUT + Duration::from_secs(5));
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        )
    })
    .await
    .unwrap()
}

async fn start(node: &Bcoin) -> (Addr<PeerGroup>, SocketAddr, actix_web::dev::ServerHandle) {
    let metrics = btcpeer::metrics::Metrics::new();
    let mut peer = regtest_config();
    // bcoin (70015, no wtxidrelay) asks for transactions with witness only from NODE_WITNESS peers.
    peer.machine.services = btcpeer::wire::ServiceFlags::WITNESS;
    let peer = peer.with_metrics(metrics.clone());
    let mut cfg: GroupConfig = group_config(peer, false);
    cfg.policy.static_peers = vec![PeerAddr::Ip(node.p2p)];
    cfg.policy.connect_only = true;
    let group = PeerGroup::new(cfg, vec![]).start();
    let (server, addr) =
        http::start("127.0.0.1:0".parse().unwrap(), group.clone(), None, Network::Regtest, Some(metrics))
            .unwrap();
    let handle = server.handle();
    actix::spawn(server);
    (group, addr, handle)
}

#[actix_rt::test]
async fn every_endpoint_answers_and_bad_input_is_a_json_4xx() {
    let node = Bcoin::start();
    let (group, addr, server) = start(&node).await;
    let base = format!("http://{addr}");

    let mut peers;
    wait_for!(WAIT, "a ready peer through GET /peers", {
        peers = call("GET", format!("{base}/peers"), None).await;
        peers.1.as_array().is_some_and(|a| a.iter().any(|p| p["state"] == "ready"))
    });
    assert_eq!(peers.0, 200);
    let first = &peers.1[0];
    assert_eq!(first["user_agent"], "/bcoin:v1.0.2/");
    for field in [
        "id",
        "addr",
        "link",
        "services",
        "version",
        "features",
        "connected_since",
        "bytes_sent",
        "recv_per_command",
    ] {
        assert!(first.get(field).is_some(), "GET /peers lacks {field}: {first}");
    }
    let id = first["id"].as_u64().unwrap();

    let (code, health) = call("GET", format!("{base}/health"), None).await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    assert_eq!(health["peers"], 1);
    let (code, status) = call("GET", format!("{base}/status"), None).await;
    assert_eq!(code, 200);
    assert_eq!(status["network"], "regtest");
    assert_eq!(status["group"]["outbound_ready"], 1);
    let (code, one) = call("GET", format!("{base}/peers/{id}"), None).await;
    assert_eq!((code, one["id"].as_u64()), (200, Some(id)));

    // Bad input: JSON errors, never a panic.
    for (method, path, body, want) in [
        ("GET", "/peers/999999".to_string(), None, 404),
        ("GET", "/peers/abc".to_string(), None, 400),
        ("DELETE", "/peers/999999".to_string(), None, 404),
        ("POST", "/bans".to_string(), Some(json!({"addr": "not an address!"})), 400),
        ("POST", "/bans".to_string(), Some(json!({"addr": "10.1.2.3", "duration": 0})), 400),
        ("POST", "/bans".to_string(), Some(json!({"address": "10.1.2.3"})), 400),
        ("DELETE", "/bans/10.9.9.9".to_string(), None, 404),
        ("GET", "/nope".to_string(), None, 404),
    ] {
        let (code, body) = call(method, format!("{base}{path}"), body).await;
        assert_eq!(code, want, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: JSON error expected, got {body}");
    }

    // Bans: add, list, remove.
    let (code, ban) =
        call("POST", format!("{base}/bans"), Some(json!({"addr": "10.1.2.3:8333", "duration": 60}))).await;
    assert_eq!(code, 201, "{ban}");
    assert_eq!(ban["target"], "10.1.2.3");
    let (_, bans) = call("GET", format!("{base}/bans"), None).await;
    assert_eq!(bans.as_array().unwrap().len(), 1);
    let (code, _) = call("DELETE", format!("{base}/bans/10.1.2.3"), None).await;
    assert_eq!(code, 204);
    assert!(call("GET", format!("{base}/bans"), None).await.1.as_array().unwrap().is_empty());

    // DELETE /peers/{id} really disconnects it, and the group dials it again (static peer).
    let (code, _) = call("DELETE", format!("{base}/peers/{id}"), None).await;
    assert_eq!(code, 202);
    wait_for!(WAIT, "a new ready peer replacing the disconnected one", {
        let (_, now) = call("GET", format!("{base}/peers"), None).await;
        now.as_array().unwrap().iter().any(|p| p["state"] == "ready" && p["id"].as_u64() != Some(id))
    });

    // Many requests at once.
    let calls: Vec<_> = (0..50).map(|_| actix::spawn(call("GET", format!("{base}/status"), None))).collect();
    for c in calls {
        assert_eq!(c.await.unwrap().0, 200);
    }

    // While shutting down, /health says 503 (or the group is gone).
    group.send(Shutdown).await.unwrap();
    let (code, _) = call("GET", format!("{base}/health"), None).await;
    assert_eq!(code, 503);
    server.stop(true).await;
}

/// A raw GET returning the body text.
async fn get_text(url: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let resp = ureq::get(&url).timeout(Duration::from_secs(10)).call().unwrap();
        (resp.status(), resp.into_string().unwrap())
    })
    .await
    .unwrap()
}

#[actix_rt::test]
async fn metrics_parse_as_prometheus_text_and_count_real_traffic() {
    let node = Bcoin::start();
    let (group, addr, server) = start(&node).await;
    let base = format!("http://{addr}");
    let mut samples;
    let value = |samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    wait_for!(WAIT, "a ready outbound peer in the metrics", {
        let (code, text) = get_text(format!("{base}/metrics")).await;
        assert_eq!(code, 200);
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        samples = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text").samples;
        value(&samples, "btcpeer_peers", &[("direction", "outbound"), ("state", "ready")]) == 1.0
    });
    assert_eq!(value(&samples, "btcpeer_handshakes_total", &[("direction", "outbound")]), 1.0);
    assert_eq!(value(&samples, "btcpeer_dials_total", &[("outcome", "success")]), 1.0);
    assert_eq!(
        value(&samples, "btcpeer_messages_total", &[("direction", "sent"), ("command", "version")]),
        1.0
    );
    assert_eq!(
        value(&samples, "btcpeer_messages_total", &[("direction", "received"), ("command", "version")]),
        1.0
    );
    assert!(value(&samples, "btcpeer_message_bytes_total", &[("direction", "received")]) > 0.0);
    assert!(samples.iter().any(|s| s.metric.starts_with("btcpeer_handshake_duration_seconds")));
    // The metrics' bytes agree with the peer's own statistics.
    let (_, peers) = call("GET", format!("{base}/peers"), None).await;
    let (_, text) = get_text(format!("{base}/metrics")).await;
    let samples = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap().samples;
    let received_version =
        value(&samples, "btcpeer_message_bytes_total", &[("direction", "received"), ("command", "version")]);
    assert_eq!(received_version, peers[0]["recv_per_command"]["version"]["bytes"].as_f64().unwrap());
    group.send(Shutdown).await.unwrap();
    server.stop(true).await;
}

#[actix_rt::test]
async fn a_transaction_posted_to_the_api_lands_in_bcoins_mempool() {
    let node = Bcoin::start();
    let hashes = node.mine(SEGWIT_HEIGHT);
    let (group, addr, server) = start(&node).await;
    let base = format!("http://{addr}");
    wait_for!(WAIT, "a ready peer", {
        call("GET", format!("{base}/status"), None).await.1["group"]["outbound_ready"] == 1
    });
    // Bad input first: a 400 naming the problem.
    let (code, body) = call("POST", format!("{base}/tx"), Some(json!({"hex": "00zz"}))).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "hex: invalid character 'z' at position 2", "{body}");
    let (code, body) = call("POST", format!("{base}/tx"), Some(json!({"hex": "0200000001"}))).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "transaction: unexpected end of data after 5 bytes", "{body}");
    // Larger than any standard transaction's hex: refused as JSON, not a plain-text 413.
    let huge = "00".repeat(btcpeer::daemon::http::MAX_TX_BODY / 2 + 1);
    let (code, body) = call("POST", format!("{base}/tx"), Some(json!({ "hex": huge }))).await;
    assert_eq!(code, 413, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("body: larger than"), "{body}");

    let block1 = node.rpc("getblock", json!([hashes[0], true]));
    let coinbase: bitcoin::Txid = block1["tx"][0].as_str().unwrap().parse().unwrap();
    let tx = spend_op_true(coinbase, 5_000_000_000, 1_500);
    let hex = bitcoin::consensus::encode::serialize_hex(&tx);
    let (code, outcome) = call("POST", format!("{base}/tx"), Some(json!({ "hex": hex }))).await;
    assert_eq!(code, 200, "{outcome}");
    assert_eq!(outcome["txid"], tx.compute_txid().to_string());
    assert_eq!(outcome["requested_by"], 1);
    let txid = tx.compute_txid().to_string();
    wait_for!(WAIT, "the transaction in bcoin's mempool", {
        node.rpc("getrawmempool", json!([])).as_array().unwrap().iter().any(|t| *t == txid)
    });
    group.send(Shutdown).await.unwrap();
    server.stop(true).await;
}
