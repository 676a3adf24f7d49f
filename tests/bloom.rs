//! BIP37 against real bcoin nodes that load filters on us: refused (misbehaviour) while we do
//! not offer NODE_BLOOM, applied to what we announce when we do.

mod common;

use std::time::Duration;

use actix::prelude::*;
use bitcoin::hashes::Hash;
use btcpeer::group::*;
use btcpeer::peer::{DisconnectReason, Misbehavior, PeerActor, PeerAddr};
use btcpeer::wire::ServiceFlags;
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(45);

#[actix_rt::test]
async fn a_peer_loading_a_filter_while_we_lack_node_bloom_is_disconnected() {
    let node = Bcoin::start_with(BcoinOptions { filterload: Some(vec![]), ..Default::default() });
    let (_probe, subs, mut events) = probe(false);
    let _peer = PeerActor::outbound(regtest_config(), PeerAddr::Ip(node.p2p), subs).start();
    let reason = events
        .expect(WAIT, "the disconnect", |e| {
            if let Ev::Disconnected(d) = e {
                Some(d.reason.clone())
            } else {
                None
            }
        })
        .await;
    assert_eq!(
        reason,
        DisconnectReason::Misbehaving(Misbehavior::BloomNotOffered { command: "filterload".into() })
    );
}

fn in_mempool(node: &Bcoin, txid: &bitcoin::Txid) -> bool {
    node.rpc("getrawmempool", json!([])).as_array().unwrap().iter().any(|t| t == &txid.to_string())
}

#[actix_rt::test]
async fn with_node_bloom_only_transactions_matching_the_peers_filter_are_announced() {
    // bcoin watches the OP_TRUE witness program (the data push of its P2WSH output script).
    let program = bitcoin::WScriptHash::hash(&[0x51]).to_byte_array().to_vec();
    let node = Bcoin::start_with(BcoinOptions { filterload: Some(vec![program]), ..Default::default() });
    let hashes = node.mine(SEGWIT_HEIGHT);
    let mut peer = regtest_config();
    peer.machine.services = ServiceFlags::BLOOM | ServiceFlags::WITNESS;
    let mut cfg = group_config(peer, false);
    cfg.policy.static_peers = vec![PeerAddr::Ip(node.p2p)];
    cfg.policy.connect_only = true;
    let (probe, _, mut events) = probe(true);
    let group = PeerGroup::new(cfg, btcpeer::events::Subscription::common(&probe)).start();
    group.send(Subscribe(btcpeer::events::Subscription::Message(probe.clone().recipient()))).await.unwrap();
    // bcoin's filterload arrives after the handshake.
    events
        .expect(WAIT, "bcoin's filterload", |e| {
            matches!(e, Ev::Message(m) if m.message.cmd() == "filterload").then_some(())
        })
        .await;

    let coinbase = |i: usize| -> bitcoin::Txid {
        node.rpc("getblock", json!([hashes[i], true]))["tx"][0].as_str().unwrap().parse().unwrap()
    };
    let matching = spend_op_true(coinbase(0), 5_000_000_000, 2_000);
    let mut other = spend_op_true(coinbase(1), 5_000_000_000, 2_000);
    other.output[0].script_pubkey = bitcoin::ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::hash(&[0x52]));
    let send = |tx: bitcoin::Transaction, secs| {
        group.send(BroadcastTransaction { tx, min_peers: 1, timeout: Duration::from_secs(secs) })
    };
    // Both go out in the same trickle; only one is announced.
    let (a, b) = tokio::join!(send(other.clone(), 10), send(matching.clone(), 40));
    let outcome = b.unwrap().expect("the matching transaction is requested");
    assert_eq!(outcome.requested_by, 1);
    wait_for!(WAIT, "the matching transaction in bcoin's mempool", {
        in_mempool(&node, &matching.compute_txid())
    });
    // The other one was never announced, so nobody asked for it.
    let err = a.unwrap().unwrap_err();
    assert!(matches!(err, BroadcastError::Timeout { requested_by: 0, .. }), "{err:?}");
    assert!(!in_mempool(&node, &other.compute_txid()));
    group.send(Shutdown).await.unwrap();
}
