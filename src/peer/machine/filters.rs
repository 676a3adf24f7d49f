//! BIP37 state of the peer: `filterload`/`filteradd`/`filterclear` (and `mempool`) checks and
//! the loaded filter, which decides which transactions the peer is told about and what its
//! filtered blocks (`merkleblock`) hold.

use std::collections::HashSet;
use std::sync::Arc;

use bitcoin::{Block, MerkleBlock, Txid};

use tokio::time::Instant;

use super::{PeerMachine, Verdict};
use crate::peer::bloom::{BloomError, BloomFilter};
use crate::peer::reason::Misbehavior;
use crate::peer::relay::Announcement;
use crate::peer::PeerState;
use crate::wire::{Message, ServiceFlags};

impl PeerMachine {
    /// A BIP37 message (or `mempool`) after the handshake. Without NODE_BLOOM offered, Core
    /// disconnects the sender (`ProcessMessage`, FILTERLOAD/FILTERADD/FILTERCLEAR/MEMPOOL).
    pub(super) fn on_filter_message(&mut self, msg: &Message) -> Verdict {
        if !self.config.services.has(ServiceFlags::BLOOM) {
            return self.misbehaving(Misbehavior::BloomNotOffered { command: msg.cmd().to_owned() });
        }
        match msg {
            Message::FilterLoad(load) => match BloomFilter::load(load) {
                Ok(filter) => {
                    self.bloom = Some(filter);
                    // Core: a loaded filter turns transaction relay on (`m_relay_txs`).
                    if let Some(r) = self.remote.as_mut() {
                        r.relay = true;
                    }
                    Verdict::Deliver
                }
                Err(e) => self.misbehaving(Misbehavior::InvalidData { reason: e.to_string() }),
            },
            Message::FilterAdd(add) => {
                let result = match self.bloom.as_mut() {
                    Some(filter) => filter.add(&add.data),
                    None => Err(BloomError::NoFilter),
                };
                match result {
                    Ok(()) => Verdict::Deliver,
                    Err(e) => self.misbehaving(Misbehavior::InvalidData { reason: e.to_string() }),
                }
            }
            Message::FilterClear => {
                self.bloom = None;
                if let Some(r) = self.remote.as_mut() {
                    r.relay = true;
                }
                Verdict::Deliver
            }
            _ => Verdict::Deliver,
        }
    }

    /// Answers the peer's `getdata(MSG_FILTERED_BLOCK)` with `block`, as Core's
    /// `PeerManagerImpl::ProcessGetBlockData` does (`net_processing.cpp`): a `merkleblock`
    /// built with the peer's filter, then each matched transaction without witness
    /// (`TX_NO_WITNESS`), the ones it would otherwise have to ask for. The filter tests every
    /// transaction in block order and updates itself (`CMerkleBlock`'s constructor calls
    /// `IsRelevantAndUpdate`, `merkleblock.cpp`). Without a loaded filter: no answer.
    pub fn serve_filtered_block(&mut self, block: &Block) {
        if self.closed || self.state != PeerState::Ready {
            return;
        }
        let Some(filter) = self.bloom.as_mut() else { return };
        let txids: Vec<Txid> = block.txdata.iter().map(|tx| tx.compute_txid()).collect();
        let matched: Vec<usize> =
            (0..block.txdata.len()).filter(|&i| filter.is_relevant_and_update(&block.txdata[i])).collect();
        let wanted: HashSet<Txid> = matched.iter().map(|&i| txids[i]).collect();
        let mb = MerkleBlock::from_header_txids_with_predicate(&block.header, &txids, |t| wanted.contains(t));
        self.send(Message::MerkleBlock(mb));
        for tx in matched.into_iter().map(|i| &block.txdata[i]) {
            let mut tx = tx.clone();
            for input in &mut tx.input {
                input.witness.clear();
            }
            self.send(Message::Tx(tx));
        }
    }

    #[cfg(test)]
    /// True while the peer has a BIP37 filter loaded.
    pub fn has_bloom_filter(&self) -> bool {
        self.bloom.is_some()
    }

    /// Queues transactions for announcement; to a peer that loaded a BIP37 filter only those
    /// the filter matches (updating it as Core does).
    pub fn queue_transactions(&mut self, now: Instant, txs: &[Arc<bitcoin::Transaction>]) {
        for tx in txs {
            if let Some(filter) = self.bloom.as_mut() {
                if !filter.is_relevant_and_update(tx) {
                    continue;
                }
            }
            self.relay.queue(Announcement::Tx {
                txid: tx.compute_txid(),
                wtxid: tx.compute_wtxid(),
                fee_rate: None,
            });
        }
        self.flush_inventory(now);
    }
}

#[cfg(test)]
mod serve_tests {
    use bitcoin::hashes::Hash as _;
    use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxIn, TxOut, Witness};
    use rand::SeedableRng;

    use super::*;
    use crate::peer::machine::{Action, MachineConfig};
    use crate::peer::{Link, NonceSet};
    use crate::wire::version::{build, LocalVersion};
    use crate::wire::{BloomFlags, FilterLoad};

    /// An inbound peer past the handshake, while we offer `services`.
    fn ready(services: ServiceFlags) -> (PeerMachine, Instant) {
        let cfg = MachineConfig { services, ..MachineConfig::default() };
        let mut m =
            PeerMachine::new(cfg, Link::Inbound, NonceSet::default(), rand::rngs::StdRng::seed_from_u64(3));
        let t0 = Instant::now();
        m.connected(t0, 0, 0, None);
        let v = build(&LocalVersion { nonce: 7, relay: false, ..LocalVersion::default() }, None);
        m.on_message(t0, &Message::Version(v));
        m.on_message(t0, &Message::Verack);
        drain(&mut m);
        assert_eq!(m.state(), PeerState::Ready);
        (m, t0)
    }

    fn drain(m: &mut PeerMachine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn sent(actions: Vec<Action>) -> Vec<Message> {
        actions.into_iter().filter_map(|a| if let Action::Send(m) = a { Some(m) } else { None }).collect()
    }

    /// Spends `prev` (with a witness) to a P2WPKH of `to`.
    fn tx(prev: u8, to: [u8; 20]) -> Transaction {
        Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: bitcoin::Txid::from_byte_array([prev; 32]), vout: 0 },
                witness: Witness::from_slice(&[[1u8; 33]]),
                ..Default::default()
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1_000),
                script_pubkey: ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(to)),
            }],
        }
    }

    /// Genesis's header over a coinbase and three spends (the merkle root is not checked here).
    fn block(txs: Vec<Transaction>) -> Block {
        let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
        let mut txdata = vec![genesis.txdata[0].clone()];
        txdata.extend(txs);
        Block { header: genesis.header, txdata }
    }

    #[test]
    fn merkleblock_then_matched_transactions_without_witness() {
        let (mut m, t0) = ready(ServiceFlags::BLOOM);
        let watched = [0xab; 20];
        // BLOOM_UPDATE_ALL: the matched output's outpoint joins the filter.
        let mut f = BloomFilter::load(&FilterLoad {
            filter: vec![0; 64],
            hash_funcs: 10,
            tweak: 5,
            flags: BloomFlags::All,
        })
        .unwrap();
        f.insert(&watched);
        let load = FilterLoad { filter: f.data().to_vec(), hash_funcs: 10, tweak: 5, flags: BloomFlags::All };
        assert_eq!(m.on_message(t0, &Message::FilterLoad(load)), Verdict::Deliver);
        let funding = tx(1, watched);
        // Spends the funding output: matches only through the update (same block, later).
        let mut spend = tx(2, [0x11; 20]);
        spend.input[0].previous_output = OutPoint { txid: funding.compute_txid(), vout: 0 };
        let other = tx(3, [0x22; 20]);
        let b = block(vec![funding.clone(), other, spend.clone()]);

        m.serve_filtered_block(&b);
        let out = sent(drain(&mut m));
        let Message::MerkleBlock(mb) = &out[0] else { panic!("merkleblock first: {out:?}") };
        assert_eq!(mb.header, b.header);
        let (mut matches, mut indexes) = (Vec::new(), Vec::new());
        mb.txn.extract_matches(&mut matches, &mut indexes).unwrap();
        assert_eq!(matches, vec![funding.compute_txid(), spend.compute_txid()]);
        assert_eq!(indexes, vec![1, 3]);
        let txs: Vec<&Transaction> =
            out[1..].iter().map(|m| if let Message::Tx(t) = m { t } else { panic!("{m:?}") }).collect();
        assert_eq!(txs.iter().map(|t| t.compute_txid()).collect::<Vec<_>>(), matches);
        assert!(txs.iter().all(|t| t.input.iter().all(|i| i.witness.is_empty())), "TX_NO_WITNESS");
    }

    #[test]
    fn without_a_filter_nothing_is_sent() {
        let (mut m, t0) = ready(ServiceFlags::BLOOM);
        m.serve_filtered_block(&block(vec![tx(1, [1; 20])]));
        assert!(drain(&mut m).is_empty());
        // Cleared: nothing again.
        let load = FilterLoad { filter: vec![0xff; 8], hash_funcs: 2, tweak: 0, flags: BloomFlags::None };
        m.on_message(t0, &Message::FilterLoad(load));
        m.on_message(t0, &Message::FilterClear);
        drain(&mut m);
        m.serve_filtered_block(&block(vec![tx(1, [1; 20])]));
        assert!(drain(&mut m).is_empty());
        // Without NODE_BLOOM no filter can be loaded: `filterload` is misbehaviour (Core
        // disconnects), and a filtered block gets no answer.
        let (mut plain, t0) = ready(ServiceFlags::NONE);
        let load = FilterLoad { filter: vec![0xff; 8], hash_funcs: 2, tweak: 0, flags: BloomFlags::None };
        assert_eq!(plain.on_message(t0, &Message::FilterLoad(load)), Verdict::Consumed);
        assert!(plain.is_closed());
    }
}
