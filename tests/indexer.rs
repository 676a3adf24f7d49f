//! Block delivery as an indexer sees it, against a real bcoin regtest node: an indexer that
//! applies `Block` and undoes `BlockDisconnected` ends with exactly the node's best chain
//! after reorganisations of depth 1 and 3 while the sync runs, one of depth 7 while it is
//! stopped (with more blocks mined meanwhile than the download window holds), and new blocks after the restart.

mod common;

use std::str::FromStr;
use std::time::Duration;

use actix::prelude::*;
use bitcoin::BlockHash;
use btcpeer::group::*;
use btcpeer::peer::PeerAddr;
use btcpeer::sync::*;
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A minimal indexer: the chain of blocks it applied, checking that each event fits.
#[derive(Default)]
struct Indexer {
    chain: Vec<(u32, BlockHash)>,
    disconnected: usize,
    errors: Vec<String>,
}

impl Actor for Indexer {
    type Context = Context<Self>;
}

impl Handler<ChainEvent> for Indexer {
    type Result = ();
    fn handle(&mut self, e: ChainEvent, _: &mut Context<Self>) {
        match e {
            ChainEvent::Block { hash, height, block, .. } => {
                if block.block_hash() != hash {
                    self.errors.push(format!("block {hash} carries {}", block.block_hash()));
                }
                if let Some(&(h, tip)) = self.chain.last() {
                    if height != h + 1 || block.header.prev_blockhash != tip {
                        self.errors.push(format!("block {height} {hash} does not extend {h} {tip}"));
                    }
                }
                self.chain.push((height, hash));
            }
            ChainEvent::BlockDisconnected { hash, height } => {
                if self.chain.last() == Some(&(height, hash)) {
                    self.chain.pop();
                    self.disconnected += 1;
                } else {
                    self.errors.push(format!("undo of {height} {hash}, tip is {:?}", self.chain.last()));
                }
            }
            _ => {}
        }
    }
}

/// The indexer's chain, undo count and errors.
#[derive(Message)]
#[rtype(result = "(Vec<(u32, BlockHash)>, usize, Vec<String>)")]
struct GetState;

impl Handler<GetState> for Indexer {
    type Result = MessageResult<GetState>;
    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.chain.clone(), self.disconnected, self.errors.clone()))
    }
}

fn best(node: &Bcoin) -> (u32, BlockHash) {
    let height = node.rpc("getblockcount", json!([])).as_u64().unwrap() as u32;
    let hash = BlockHash::from_str(node.rpc("getbestblockhash", json!([])).as_str().unwrap()).unwrap();
    (height, hash)
}

fn hash_at(node: &Bcoin, height: u32) -> BlockHash {
    BlockHash::from_str(node.rpc("getblockhash", json!([height])).as_str().unwrap()).unwrap()
}

/// Replaces the node's top `depth` blocks by `depth + 1` new ones (bcoin's coinbase carries a
/// random nonce, so the new blocks differ from the old).
fn reorg(node: &Bcoin, depth: u32) {
    let (height, _) = best(node);
    let first = hash_at(node, height - depth + 1);
    node.rpc("invalidateblock", json!([first.to_string()]));
    assert_eq!(best(node).0, height - depth);
    node.mine(u64::from(depth) + 1);
}

fn start(node: &Bcoin, dir: &std::path::Path, indexer: &Addr<Indexer>) -> (Addr<PeerGroup>, Addr<ChainSync>) {
    let mut cfg = group_config(regtest_config(), false);
    cfg.policy.static_peers = vec![PeerAddr::Ip(node.p2p)];
    cfg.policy.connect_only = true;
    let group = PeerGroup::new(cfg, Vec::new()).start();
    let mut cfg = ChainSyncConfig::new(btcpeer::Network::Regtest);
    cfg.data_dir = Some(dir.to_path_buf());
    cfg.fetch_blocks = true;
    let sync = ChainSync::new(cfg, group.clone()).unwrap().start();
    sync.do_send(SubscribeChain(indexer.clone().recipient()));
    (group, sync)
}

/// Waits until the indexer's tip is the node's, then checks every block it holds is the
/// node's at that height; returns its undo count.
async fn expect_best_chain(node: &Bcoin, indexer: &Addr<Indexer>, from: u32) -> usize {
    let (height, tip) = best(node);
    let mut state;
    wait_for!(WAIT, format!("the indexer to reach {height} {tip}"), {
        state = indexer.send(GetState).await.unwrap();
        assert!(state.2.is_empty(), "indexer errors: {:?}", state.2);
        state.0.last() == Some(&(height, tip))
    });
    let (chain, disconnected, _) = state;
    let expected: Vec<_> = (from + 1..=height).map(|h| (h, hash_at(node, h))).collect();
    assert_eq!(chain, expected, "exactly the best chain after the start");
    disconnected
}

#[actix_rt::test]
async fn an_indexer_ends_with_exactly_the_best_chain_across_reorgs_and_a_restart() {
    let node = Bcoin::start();
    node.mine(20);
    let dir = tempfile::tempdir().unwrap();
    let indexer = Indexer::default().start();
    let (group, sync) = start(&node, dir.path(), &indexer);
    wait_for!(WAIT, "the headers to sync", { sync.send(GetChainStatus).await.unwrap().synced });
    // A first start delivers from the tip on: the history is the consumer's to load.
    let from = 20;

    node.mine(5);
    assert_eq!(expect_best_chain(&node, &indexer, from).await, 0);
    reorg(&node, 1);
    assert_eq!(expect_best_chain(&node, &indexer, from).await, 1);
    reorg(&node, 3);
    assert_eq!(expect_best_chain(&node, &indexer, from).await, 1 + 3);
    assert!(dir.path().join("blocks.json").exists(), "the cursor is saved");

    // Stopped: the node reorganises 7 deep and grows; a restart from the same data dir undoes
    // the 7 delivered blocks and delivers the new branch, all before live blocks.
    sync.send(StopChainSync).await.unwrap();
    group.send(Shutdown).await.unwrap();
    reorg(&node, 7);
    // More than the download window (16) to catch up on.
    node.mine(30);
    let (group, _sync) = start(&node, dir.path(), &indexer);
    assert_eq!(expect_best_chain(&node, &indexer, from).await, 1 + 3 + 7);

    // Live blocks after the catch-up.
    node.mine(2);
    assert_eq!(expect_best_chain(&node, &indexer, from).await, 1 + 3 + 7);
    group.send(Shutdown).await.unwrap();
}
