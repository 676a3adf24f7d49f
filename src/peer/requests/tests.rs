use super::*;
use bitcoin::block::Version;
use bitcoin::pow::CompactTarget;
use bitcoin::{Amount, ScriptBuf, TxMerkleNode, TxOut};

/// A regtest header on `prev` with valid proof of work (about half of all nonces pass).
fn mine(prev: BlockHash, time: u32, merkle_root: TxMerkleNode) -> Header {
    let mut h = Header {
        version: Version::from_consensus(4),
        prev_blockhash: prev,
        merkle_root,
        time,
        bits: CompactTarget::from_consensus(0x207f_ffff),
        nonce: 0,
    };
    while h.validate_pow(h.target()).is_err() {
        h.nonce += 1;
    }
    h
}

pub(super) fn chain(n: usize) -> Vec<Header> {
    let mut prev = crate::Network::Regtest.genesis_hash();
    (0..n)
        .map(|i| {
            let h = mine(prev, 1_700_000_000 + i as u32, TxMerkleNode::all_zeros());
            prev = h.block_hash();
            h
        })
        .collect()
}

fn block(prev: BlockHash, tag: u8) -> Block {
    let coinbase = Transaction {
        version: bitcoin::transaction::Version::ONE,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn { script_sig: ScriptBuf::from_bytes(vec![1, tag]), ..Default::default() }],
        output: vec![TxOut { value: Amount::from_sat(50), script_pubkey: ScriptBuf::new() }],
    };
    let other = Transaction {
        input: vec![bitcoin::TxIn { script_sig: ScriptBuf::from_bytes(vec![2, tag]), ..Default::default() }],
        ..coinbase.clone()
    };
    let mut block =
        Block { header: mine(prev, 1_700_000_000, TxMerkleNode::all_zeros()), txdata: vec![coinbase, other] };
    block.header.merkle_root = block.compute_merkle_root().expect("non-empty");
    while block.header.validate_pow(block.header.target()).is_err() {
        block.header.nonce += 1;
    }
    block
}

pub(super) fn events(r: &mut PeerRequests) -> Vec<RequestEvent> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

pub(super) const T: Duration = Duration::from_secs(10);

#[test]
fn timeout_scales_with_latency_within_bounds() {
    let t = RequestTimeouts {
        max: Duration::from_secs(30),
        min: Duration::from_secs(2),
        ..RequestTimeouts::default()
    };
    assert_eq!(t.for_latency(Some(Duration::from_millis(500))), Duration::from_secs(5));
    assert_eq!(t.for_latency(Some(Duration::from_millis(10))), Duration::from_secs(2));
    assert_eq!(t.for_latency(Some(Duration::from_secs(60))), Duration::from_secs(30));
    assert_eq!(t.for_latency(None), Duration::from_secs(30));
}

#[test]
fn headers_answer_matches_locator_and_unrelated_headers_are_announcements() {
    let now = Instant::now();
    let hs = chain(3);
    let genesis = crate::Network::Regtest.genesis_hash();
    let mut r = PeerRequests::new();
    let id =
        r.start(now, Request::Headers { locator: vec![genesis], stop: BlockHash::all_zeros() }, T).unwrap();
    assert_eq!(
        events(&mut r),
        vec![RequestEvent::SendGetHeaders { locator: vec![genesis], stop: BlockHash::all_zeros() }]
    );
    assert_eq!(
        r.start(now, Request::Headers { locator: vec![genesis], stop: BlockHash::all_zeros() }, T),
        Err(RequestError::Busy)
    );
    // An announcement of the third header alone does not connect to the locator.
    r.on_headers(now, &hs[2..]);
    assert!(events(&mut r).is_empty());
    r.on_headers(now, &hs);
    assert_eq!(events(&mut r), vec![RequestEvent::Done(id, Ok(Response::Headers(hs.clone().into())))]);
    assert_eq!(r.pending(), 0);
}

#[test]
fn empty_headers_answer_means_nothing_more() {
    let now = Instant::now();
    let mut r = PeerRequests::new();
    let id = r
        .start(
            now,
            Request::Headers {
                locator: vec![crate::Network::Regtest.genesis_hash()],
                stop: BlockHash::all_zeros(),
            },
            T,
        )
        .unwrap();
    events(&mut r);
    r.on_headers(now, &[]);
    assert_eq!(events(&mut r), vec![RequestEvent::Done(id, Ok(Response::Headers(Default::default())))]);
}

#[test]
fn unchained_or_bad_pow_headers_are_misbehaviour() {
    let now = Instant::now();
    let mut hs = chain(3);
    hs.swap(1, 2);
    let mut r = PeerRequests::new();
    let id = r
        .start(
            now,
            Request::Headers {
                locator: vec![crate::Network::Regtest.genesis_hash()],
                stop: BlockHash::all_zeros(),
            },
            T,
        )
        .unwrap();
    events(&mut r);
    r.on_headers(now, &hs);
    let unchained = InvalidData::UnchainedHeaders { index: 1 };
    assert_eq!(
        events(&mut r),
        vec![
            RequestEvent::Done(id, Err(RequestError::Invalid(unchained.clone()))),
            RequestEvent::Misbehaved(unchained)
        ]
    );

    // Bad proof of work, even unsolicited.
    let mut bad = chain(1);
    while bad[0].validate_pow(bad[0].target()).is_ok() {
        bad[0].nonce += 1;
    }
    r.on_headers(now, &bad);
    assert_eq!(
        events(&mut r),
        vec![RequestEvent::Misbehaved(InvalidData::HighHash { hash: bad[0].block_hash() })]
    );
}

#[test]
fn headers_request_times_out_and_two_in_a_row_stall_the_peer() {
    let now = Instant::now();
    let mut r = PeerRequests::new();
    let loc = vec![crate::Network::Regtest.genesis_hash()];
    let id =
        r.start(now, Request::Headers { locator: loc.clone(), stop: BlockHash::all_zeros() }, T).unwrap();
    events(&mut r);
    r.tick(now + T - Duration::from_millis(1));
    assert!(events(&mut r).is_empty());
    r.tick(now + T);
    assert_eq!(events(&mut r), vec![RequestEvent::Done(id, Err(RequestError::Timeout { after: T }))]);
    let id2 = r.start(now + T, Request::Headers { locator: loc, stop: BlockHash::all_zeros() }, T).unwrap();
    events(&mut r);
    r.tick(now + T * 2);
    assert_eq!(
        events(&mut r),
        vec![
            RequestEvent::Done(id2, Err(RequestError::Timeout { after: T })),
            RequestEvent::Stalled { after: T }
        ]
    );
}

#[test]
fn blocks_are_windowed_and_answered_in_order() {
    let now = Instant::now();
    let blocks: Vec<Arc<Block>> = (0..20).map(|i| Arc::new(block(BlockHash::all_zeros(), i))).collect();
    let hashes: Vec<BlockHash> = blocks.iter().map(|b| b.block_hash()).collect();
    let mut r = PeerRequests::new();
    let id = r.start(now, Request::Blocks { hashes: hashes.clone() }, T).unwrap();
    assert_eq!(events(&mut r), vec![RequestEvent::SendGetData(hashes[..MAX_BLOCKS_IN_FLIGHT].to_vec())]);
    assert_eq!(r.blocks_in_flight(), MAX_BLOCKS_IN_FLIGHT);
    // Answers in reverse order; each frees a slot for a queued hash.
    for b in blocks[..MAX_BLOCKS_IN_FLIGHT].iter().rev() {
        r.on_block(now, b.clone());
    }
    assert_eq!(
        events(&mut r),
        (16..20).map(|i| RequestEvent::SendGetData(vec![hashes[i]])).collect::<Vec<_>>()
    );
    // An unrequested block is ignored (not an answer).
    r.on_block(now, Arc::new(block(BlockHash::all_zeros(), 99)));
    for b in &blocks[16..] {
        r.on_block(now, b.clone());
    }
    assert_eq!(events(&mut r), vec![RequestEvent::Done(id, Ok(Response::Blocks(blocks)))]);
    assert_eq!(r.pending(), 0);
    assert_eq!(r.blocks_in_flight(), 0);
}

#[test]
fn block_request_bounds() {
    let now = Instant::now();
    let mut r = PeerRequests::new();
    assert_eq!(r.start(now, Request::Blocks { hashes: vec![] }, T), Err(RequestError::Empty));
    let many: Vec<BlockHash> = (0..=MAX_PENDING_BLOCKS as u32)
        .map(|i| {
            BlockHash::from_byte_array(bitcoin::hashes::sha256d::Hash::hash(&i.to_le_bytes()).to_byte_array())
        })
        .collect();
    assert!(matches!(
        r.start(now, Request::Blocks { hashes: many.clone() }, T),
        Err(RequestError::TooMany { .. })
    ));
    assert!(matches!(
        r.start(now, Request::Blocks { hashes: many[..MAX_BLOCKS_PER_REQUEST + 1].to_vec() }, T),
        Err(RequestError::TooMany { limit: MAX_BLOCKS_PER_REQUEST, .. })
    ));
    for chunk in many[..MAX_PENDING_BLOCKS].chunks(MAX_BLOCKS_PER_REQUEST) {
        r.start(now, Request::Blocks { hashes: chunk.to_vec() }, T).unwrap();
    }
    assert!(matches!(
        r.start(now, Request::Blocks { hashes: many[MAX_PENDING_BLOCKS..].to_vec() }, T),
        Err(RequestError::TooMany { .. })
    ));
    // The same hash again shares the outstanding getdata.
    let before = events(&mut r).len();
    r.start(now, Request::Blocks { hashes: many[..2].to_vec() }, T).unwrap();
    assert_eq!(before, 1, "one getdata for the first 16");
    assert!(events(&mut r).is_empty());
}

#[test]
fn notfound_fails_waiting_requests_and_frees_the_window() {
    let now = Instant::now();
    let b = Arc::new(block(BlockHash::all_zeros(), 1));
    let c = Arc::new(block(BlockHash::all_zeros(), 2));
    let mut r = PeerRequests::new();
    let id = r.start(now, Request::Blocks { hashes: vec![b.block_hash(), c.block_hash()] }, T).unwrap();
    events(&mut r);
    r.on_notfound(now, &[Inventory::WitnessBlock(b.block_hash())]);
    assert_eq!(
        events(&mut r),
        vec![RequestEvent::Done(id, Err(RequestError::NotFound { hash: ItemHash::Block(b.block_hash()) }))]
    );
    assert_eq!(r.blocks_in_flight(), 0, "the request's other hash is no longer wanted");
    assert!(!r.wants_block(&c.block_hash()));
}

#[test]
fn mutated_block_is_misbehaviour() {
    let now = Instant::now();
    let good = block(BlockHash::all_zeros(), 1);
    let mut bad = good.clone();
    bad.txdata.swap(0, 1);
    let mut r = PeerRequests::new();
    let id = r.start(now, Request::Blocks { hashes: vec![good.block_hash()] }, T).unwrap();
    events(&mut r);
    r.on_block(now, Arc::new(bad));
    // Both test transactions spend the null outpoint, so the swapped one still looks like a
    // coinbase: the merkle root is what catches the change.
    let mismatch = InvalidData::MerkleRootMismatch { hash: good.block_hash() };
    assert_eq!(
        events(&mut r),
        vec![
            RequestEvent::Done(id, Err(RequestError::Invalid(mismatch.clone()))),
            RequestEvent::Misbehaved(mismatch)
        ]
    );
}

#[test]
fn transactions_of_a_block_by_txid() {
    let now = Instant::now();
    let b = Arc::new(block(BlockHash::all_zeros(), 7));
    let want = b.txdata[1].compute_txid();
    let mut r = PeerRequests::new();
    let id = r.start(now, Request::Transactions { block: b.block_hash(), txids: vec![want] }, T).unwrap();
    events(&mut r);
    r.on_block(now, b.clone());
    assert_eq!(
        events(&mut r),
        vec![RequestEvent::Done(id, Ok(Response::Transactions(vec![b.txdata[1].clone()])))]
    );

    let missing = Txid::all_zeros();
    let id = r.start(now, Request::Transactions { block: b.block_hash(), txids: vec![missing] }, T).unwrap();
    events(&mut r);
    r.on_block(now, b.clone());
    assert_eq!(
        events(&mut r),
        vec![RequestEvent::Done(id, Err(RequestError::NotFound { hash: ItemHash::Transaction(missing) }))]
    );
}

#[test]
fn block_progress_extends_the_deadline_and_close_fails_everything() {
    let now = Instant::now();
    let a = Arc::new(block(BlockHash::all_zeros(), 1));
    let b = Arc::new(block(BlockHash::all_zeros(), 2));
    let mut r = PeerRequests::new();
    let id = r.start(now, Request::Blocks { hashes: vec![a.block_hash(), b.block_hash()] }, T).unwrap();
    events(&mut r);
    r.on_block(now + T - Duration::from_secs(1), a);
    r.tick(now + T);
    assert!(events(&mut r).is_empty(), "progress restarted the clock");
    let hid = r
        .start(
            now,
            Request::Headers {
                locator: vec![crate::Network::Regtest.genesis_hash()],
                stop: BlockHash::all_zeros(),
            },
            T,
        )
        .unwrap();
    events(&mut r);
    r.close(&DisconnectReason::ClosedByPeer);
    let ev = events(&mut r);
    assert_eq!(ev.len(), 2);
    assert!(ev.contains(&RequestEvent::Done(
        hid,
        Err(RequestError::Disconnected { reason: DisconnectReason::ClosedByPeer })
    )));
    assert!(ev.contains(&RequestEvent::Done(
        id,
        Err(RequestError::Disconnected { reason: DisconnectReason::ClosedByPeer })
    )));
    assert_eq!(r.pending(), 0);
}

#[test]
fn filtered_block_completes_when_its_matched_transactions_arrive() {
    let now = Instant::now();
    let b = block(BlockHash::all_zeros(), 3);
    let want = b.txdata[1].compute_txid();
    let mb = bitcoin::MerkleBlock::from_block_with_predicate(&b, |t| *t == want);
    let mut r = PeerRequests::new();
    let id = r.start(now, Request::FilteredBlocks { hashes: vec![b.block_hash()] }, T).unwrap();
    assert_eq!(events(&mut r), vec![RequestEvent::SendGetFiltered(vec![b.block_hash()])]);
    r.on_merkleblock(now, &mb);
    assert!(events(&mut r).is_empty(), "waits for the matched tx");
    assert!(!r.on_tx(now, &b.txdata[0]), "an unrelated tx is not taken");
    assert!(r.on_tx(now, &b.txdata[1]));
    assert_eq!(
        events(&mut r),
        vec![RequestEvent::Done(
            id,
            Ok(Response::FilteredBlocks(vec![FilteredBlock {
                header: b.header,
                transactions: vec![b.txdata[1].clone()]
            }]))
        )]
    );
    // A late duplicate is tolerated; a merkleblock never asked for is misbehaviour.
    r.on_merkleblock(now, &mb);
    assert!(events(&mut r).is_empty());
    let other = block(BlockHash::all_zeros(), 4);
    r.on_merkleblock(now, &bitcoin::MerkleBlock::from_block_with_predicate(&other, |_| true));
    assert_eq!(
        events(&mut r),
        vec![RequestEvent::Misbehaved(InvalidData::UnsolicitedMerkleBlock { hash: other.block_hash() })]
    );
}

#[test]
fn a_merkleblock_that_does_not_prove_its_root_is_invalid() {
    let now = Instant::now();
    let b = block(BlockHash::all_zeros(), 5);
    let mut mb = bitcoin::MerkleBlock::from_block_with_predicate(&b, |_| true);
    // Same header, proof of a different block's transactions.
    let other = block(BlockHash::all_zeros(), 6);
    mb.txn = bitcoin::MerkleBlock::from_block_with_predicate(&other, |_| true).txn;
    let mut r = PeerRequests::new();
    let id = r.start(now, Request::FilteredBlocks { hashes: vec![b.block_hash()] }, T).unwrap();
    events(&mut r);
    r.on_merkleblock(now, &mb);
    let ev = events(&mut r);
    assert!(
        matches!(&ev[0], RequestEvent::Done(i, Err(RequestError::Invalid(InvalidData::BadMerkleProof { hash, .. })))
            if *i == id && *hash == b.block_hash()),
        "{ev:?}"
    );
    assert!(matches!(&ev[1], RequestEvent::Misbehaved(InvalidData::BadMerkleProof { .. })));
    assert_eq!(r.pending(), 0);
}

#[test]
fn a_queued_block_request_is_timed_from_when_it_is_sent() {
    let now = Instant::now();
    let blocks: Vec<Arc<Block>> = (0..40).map(|i| Arc::new(block(BlockHash::all_zeros(), i))).collect();
    let mut r = PeerRequests::new();
    let ids: Vec<RequestId> = blocks
        .iter()
        .map(|b| r.start(now, Request::Blocks { hashes: vec![b.block_hash()] }, T).unwrap())
        .collect();
    events(&mut r);
    // The peer serves one block every 2 s (slower than 40 in 10 s, never stalled for 10 s).
    let mut done = 0;
    for (i, b) in blocks.iter().enumerate() {
        let t = now + Duration::from_secs(2 * (i as u64 + 1));
        r.tick(t);
        r.on_block(t, b.clone());
        for e in events(&mut r) {
            match e {
                RequestEvent::Done(id, Ok(_)) => {
                    assert!(ids.contains(&id));
                    done += 1;
                }
                RequestEvent::Done(_, Err(e)) => panic!("request {i} failed: {e}"),
                _ => {}
            }
        }
    }
    assert_eq!(done, 40, "nothing timed out while waiting behind the window");
}

#[test]
fn blocks_with_a_duplicated_transaction_or_without_a_coinbase_are_refused_but_64_byte_transactions_pass() {
    // Three transactions: the odd count is what lets a duplicated last one keep the root.
    let mut good = block(BlockHash::all_zeros(), 11);
    let third = Transaction {
        input: vec![bitcoin::TxIn { script_sig: ScriptBuf::from_bytes(vec![3, 11]), ..Default::default() }],
        ..good.txdata[1].clone()
    };
    good.txdata.push(third);
    good.header.merkle_root = good.compute_merkle_root().expect("non-empty");
    let mut dup = good.clone();
    dup.txdata.push(dup.txdata[2].clone());
    // Duplicating the last transaction keeps the merkle root (CVE-2012-2459).
    assert_eq!(dup.compute_merkle_root(), good.compute_merkle_root());
    assert_eq!(check_block(&good), Ok(()));
    assert_eq!(check_block(&dup), Err(InvalidData::DuplicateTransactions { hash: dup.block_hash() }));
}

#[test]
fn sixty_four_byte_transactions_are_valid_after_a_coinbase() {
    let mut b = block(BlockHash::all_zeros(), 12);
    let small = Transaction {
        version: bitcoin::transaction::Version::ONE,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint { txid: Txid::from_byte_array([5; 32]), vout: 0 },
            ..Default::default()
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::from_bytes(vec![0x51; 4]),
        }],
    };
    assert_eq!(small.base_size(), 64);
    b.txdata[1] = small;
    b.header.merkle_root = b.compute_merkle_root().expect("non-empty");
    assert_eq!(check_block(&b), Ok(()));
    // Without a coinbase first, the block is refused.
    b.txdata.swap(0, 1);
    b.header.merkle_root = b.compute_merkle_root().expect("non-empty");
    assert_eq!(check_block(&b), Err(InvalidData::NoCoinbase { hash: b.block_hash() }));
}

#[test]
fn a_second_request_for_a_block_already_in_flight_times_out_too() {
    let now = Instant::now();
    let b = Arc::new(block(BlockHash::all_zeros(), 13));
    let mut r = PeerRequests::new();
    let first = r.start(now, Request::Blocks { hashes: vec![b.block_hash()] }, T).unwrap();
    events(&mut r);
    let second =
        r.start(now + Duration::from_secs(1), Request::Blocks { hashes: vec![b.block_hash()] }, T).unwrap();
    assert!(events(&mut r).is_empty(), "no second getdata");
    r.tick(now + T);
    r.tick(now + T + Duration::from_secs(1));
    let done: Vec<RequestId> = events(&mut r)
        .into_iter()
        .filter_map(|e| {
            if let RequestEvent::Done(id, Err(RequestError::Timeout { .. })) = e {
                Some(id)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(done, vec![first, second]);
    assert_eq!((r.pending(), r.blocks_in_flight()), (0, 0));
}

#[test]
fn notfound_answers_only_its_own_kind() {
    let now = Instant::now();
    let b = Arc::new(block(BlockHash::all_zeros(), 14));
    let mut r = PeerRequests::new();
    let full = r.start(now, Request::Blocks { hashes: vec![b.block_hash()] }, T).unwrap();
    let filtered = r.start(now, Request::FilteredBlocks { hashes: vec![b.block_hash()] }, T).unwrap();
    events(&mut r);
    r.on_notfound(now, &[Inventory::Block(b.block_hash())]);
    let ev = events(&mut r);
    assert!(
        matches!(&ev[..], [RequestEvent::Done(id, Err(RequestError::NotFound { .. }))] if *id == full),
        "{ev:?}"
    );
    r.on_notfound(
        now,
        &[Inventory::Unknown { inv_type: MSG_FILTERED_BLOCK, hash: b.block_hash().to_byte_array() }],
    );
    let ev = events(&mut r);
    assert!(
        matches!(&ev[..], [RequestEvent::Done(id, Err(RequestError::NotFound { .. }))] if *id == filtered),
        "{ev:?}"
    );
}

#[test]
fn errors_are_typed_and_serialise_with_their_context() {
    let hash = BlockHash::all_zeros();
    let json = |e: &RequestError| serde_json::to_value(e).expect("serialisable");
    assert_eq!(
        json(&RequestError::Invalid(InvalidData::HighHash { hash })),
        serde_json::json!({"error": "invalid", "reason": "high_hash", "hash": hash.to_string()})
    );
    assert_eq!(
        json(&RequestError::Invalid(InvalidData::UnexpectedResponse)),
        serde_json::json!({"error": "invalid", "reason": "unexpected_response"})
    );
    assert_eq!(
        json(&RequestError::NotFound { hash: ItemHash::Transaction(Txid::all_zeros()) }),
        serde_json::json!({"error": "not_found", "hash": {"transaction": Txid::all_zeros().to_string()}})
    );
    // The one "no peers" error is the group's, inside the request error.
    let none = RequestError::Group(crate::group::GroupError::NoPeers);
    assert_eq!(json(&none), serde_json::json!({"error": "group", "reason": "no_peers"}));
    assert_eq!(none.to_string(), "no ready peers");
    let bloom = RequestError::Unsupported { service: crate::wire::ServiceFlags::BLOOM };
    assert_eq!(json(&bloom), serde_json::json!({"error": "unsupported", "service": 4}));
    let gone = RequestError::Disconnected { reason: DisconnectReason::ClosedByPeer };
    assert_eq!(
        json(&gone),
        serde_json::json!({"error": "disconnected", "reason": {"reason": "closed_by_peer"}})
    );
    let b = block(BlockHash::all_zeros(), 15);
    let mut mb = bitcoin::MerkleBlock::from_block_with_predicate(&b, |_| true);
    mb.txn = bitcoin::MerkleBlock::from_block_with_predicate(&block(hash, 16), |_| true).txn;
    let proof = check_merkleblock(&mb).expect_err("proves another block");
    assert_eq!(json(&RequestError::Invalid(proof.clone()))["reason"], "bad_merkle_proof");
    for (e, text) in [
        (RequestError::Invalid(InvalidData::UnchainedHeaders { index: 3 }), "header 3 does not follow"),
        (RequestError::Invalid(proof), "does not prove its merkle root"),
        (RequestError::NotFound { hash: ItemHash::Block(hash) }, "peer does not have block 0000"),
        (gone, "peer disconnected: connection closed by peer"),
        (bloom, "BLOOM"),
    ] {
        assert!(e.to_string().contains(text), "{e}");
    }
}

#[test]
fn check_headers_names_the_first_problem() {
    let hs = chain(3);
    // The hashes come back with the verdict, so nothing downstream hashes again.
    assert_eq!(check_headers(&hs), Ok(hs.iter().map(|h| h.block_hash()).collect()));
    assert_eq!(check_headers(&[]), Ok(vec![]));
    assert_eq!(check_headers(&[hs[0], hs[2]]), Err(InvalidData::UnchainedHeaders { index: 1 }));
    let mut bad = hs[1];
    while bad.validate_pow(bad.target()).is_ok() {
        bad.nonce += 1;
    }
    assert_eq!(check_headers(&[hs[0], bad]), Err(InvalidData::HighHash { hash: bad.block_hash() }));
}

#[test]
fn answers_are_checked_against_the_peers_networks_pow_limit() {
    // Regtest's bits (0x207fffff) are far above mainnet's limit: on a mainnet peer, a headers
    // answer, a requested block and a merkleblock carrying them fail proof of work (Core's
    // `CheckProofOfWork` → `DeriveTarget`, `pow.cpp`), though each meets its own target.
    let now = Instant::now();
    let mainnet = crate::wire::pow::pow_limit(crate::Network::Mainnet);
    let genesis = crate::Network::Regtest.genesis_hash();
    let hs = chain(1);
    let high = InvalidData::HighHash { hash: hs[0].block_hash() };
    let mut r = PeerRequests::new();
    r.set_pow_limit(mainnet);
    let id =
        r.start(now, Request::Headers { locator: vec![genesis], stop: BlockHash::all_zeros() }, T).unwrap();
    events(&mut r);
    r.on_headers(now, &hs);
    assert_eq!(
        events(&mut r),
        vec![
            RequestEvent::Done(id, Err(RequestError::Invalid(high.clone()))),
            RequestEvent::Misbehaved(high)
        ]
    );

    let b = Arc::new(block(BlockHash::all_zeros(), 21));
    let high = InvalidData::HighHash { hash: b.block_hash() };
    let id = r.start(now, Request::Blocks { hashes: vec![b.block_hash()] }, T).unwrap();
    events(&mut r);
    r.on_block(now, b.clone());
    assert_eq!(
        events(&mut r),
        vec![
            RequestEvent::Done(id, Err(RequestError::Invalid(high.clone()))),
            RequestEvent::Misbehaved(high.clone())
        ]
    );

    let id = r.start(now, Request::FilteredBlocks { hashes: vec![b.block_hash()] }, T).unwrap();
    events(&mut r);
    r.on_merkleblock(now, &bitcoin::MerkleBlock::from_block_with_predicate(&b, |_| true));
    assert_eq!(
        events(&mut r),
        vec![
            RequestEvent::Done(id, Err(RequestError::Invalid(high.clone()))),
            RequestEvent::Misbehaved(high)
        ]
    );

    // The same answers pass on regtest.
    let mut r = PeerRequests::new();
    r.set_pow_limit(crate::wire::pow::pow_limit(crate::Network::Regtest));
    let id = r.start(now, Request::Blocks { hashes: vec![b.block_hash()] }, T).unwrap();
    events(&mut r);
    r.on_block(now, b.clone());
    assert_eq!(events(&mut r), vec![RequestEvent::Done(id, Ok(Response::Blocks(vec![b])))]);
}
