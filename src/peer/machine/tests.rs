use super::*;
use crate::peer::relay::Announcement;
use crate::wire::version::LocalVersion;
use crate::wire::{Inventory, SendCmpct, VersionMessage};
use bitcoin::hashes::Hash as _;
use rand::SeedableRng;

fn config() -> MachineConfig {
    MachineConfig { send_getaddr: true, request_announced_txs: true, ..MachineConfig::default() }
}

fn machine(link: Link, nonces: &NonceSet) -> PeerMachine {
    PeerMachine::new(config(), link, nonces.clone(), StdRng::seed_from_u64(1))
}

fn their_version(version: u32, nonce: u64) -> VersionMessage {
    let local = LocalVersion {
        version,
        services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        user_agent: "/Satoshi:27.0.0/".into(),
        start_height: 100,
        relay: true,
        nonce,
        timestamp: 0,
    };
    version::build(&local, None)
}

fn drain(m: &mut PeerMachine) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn sent(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m.cmd()),
            _ => None,
        })
        .collect()
}

fn disconnect_reason(actions: &[Action]) -> Option<&DisconnectReason> {
    actions.iter().find_map(|a| match a {
        Action::Disconnect(r) => Some(r),
        _ => None,
    })
}

/// Drives an outbound handshake to Ready and returns the machine and the start instant.
fn ready_outbound() -> (PeerMachine, Instant) {
    let nonces = NonceSet::default();
    let mut m = machine(Link::Outbound, &nonces);
    let t0 = Instant::now();
    m.connecting();
    m.connected(t0, 0, 0, None);
    m.on_message(t0, &Message::Version(their_version(70016, 5)));
    m.on_message(t0, &Message::WtxidRelay);
    m.on_message(t0, &Message::SendAddrV2);
    m.on_message(t0, &Message::Verack);
    drain(&mut m);
    assert_eq!(m.state(), PeerState::Ready);
    (m, t0)
}

#[test]
fn outbound_sends_version_first_then_features_then_verack() {
    let nonces = NonceSet::default();
    let mut m = machine(Link::Outbound, &nonces);
    let t0 = Instant::now();
    m.connecting();
    m.connected(t0, 0, 7, None);
    let a = drain(&mut m);
    assert_eq!(a[0], Action::State(PeerState::Connecting));
    assert_eq!(a[1], Action::State(PeerState::Handshaking));
    assert_eq!(sent(&a), ["version"]);
    match &a[2] {
        Action::Send(Message::Version(v)) => {
            assert_eq!(v.version, 70016);
            assert_eq!(v.start_height, 7);
            assert!(v.relay);
            assert!(nonces.contains(v.nonce));
        }
        other => panic!("expected our version, got {other:?}"),
    }
    // Their version: we answer with the BIP339/BIP155 messages and verack, in that order.
    m.on_message(t0, &Message::Version(their_version(70016, 5)));
    assert_eq!(sent(&drain(&mut m)), ["wtxidrelay", "sendaddrv2", "verack"]);
    m.on_message(t0, &Message::WtxidRelay);
    m.on_message(t0, &Message::SendAddrV2);
    assert_eq!(m.state(), PeerState::Handshaking);
    m.on_message(t0, &Message::Verack);
    let a = drain(&mut m);
    assert_eq!(a[0], Action::State(PeerState::Ready));
    let Action::Ready(info) = &a[1] else { panic!("expected Ready, got {:?}", a[1]) };
    assert_eq!(info.user_agent, "/Satoshi:27.0.0/");
    assert!(info.features.wtxid_relay && info.features.addr_v2);
    // After verack: sendheaders (peer >= 70012), the one getaddr, and the first ping at once.
    assert_eq!(sent(&a), ["sendheaders", "getaddr", "ping"]);
}

#[test]
fn old_peer_gets_no_bip339_messages_and_no_wtxid_relay() {
    let nonces = NonceSet::default();
    let mut m = machine(Link::Outbound, &nonces);
    let t0 = Instant::now();
    m.connected(t0, 0, 0, None);
    drain(&mut m);
    m.on_message(t0, &Message::Version(their_version(70015, 5)));
    assert_eq!(sent(&drain(&mut m)), ["verack"]);
    m.on_message(t0, &Message::WtxidRelay); // ignored: common version < 70016
    m.on_message(t0, &Message::Verack);
    assert!(!m.peer_info().unwrap().features.wtxid_relay);
}

#[test]
fn inbound_waits_for_their_version_and_answers() {
    let nonces = NonceSet::default();
    let mut m = machine(Link::Inbound, &nonces);
    let t0 = Instant::now();
    m.connected(t0, 0, 3, None);
    let a = drain(&mut m);
    assert!(sent(&a).is_empty(), "inbound must not speak first: {a:?}");
    m.on_message(t0, &Message::Version(their_version(70016, 99)));
    assert_eq!(sent(&drain(&mut m)), ["version", "wtxidrelay", "sendaddrv2", "verack"]);
    m.on_message(t0, &Message::Verack);
    assert_eq!(m.state(), PeerState::Ready);
    // No getaddr on inbound links: Core would not answer it.
    assert_eq!(sent(&drain(&mut m)), ["sendheaders", "ping"]);
}

#[test]
fn messages_before_version_are_dropped() {
    let nonces = NonceSet::default();
    let mut m = machine(Link::Inbound, &nonces);
    let t0 = Instant::now();
    m.connected(t0, 0, 0, None);
    assert_eq!(m.on_message(t0, &Message::Verack), Verdict::Consumed);
    assert_eq!(m.on_message(t0, &Message::Inv(vec![])), Verdict::Consumed);
    assert!(sent(&drain(&mut m)).is_empty());
    assert_eq!(m.dropped_frames(), 2);
    assert_eq!(m.state(), PeerState::Handshaking);
}

#[test]
fn self_connection_is_detected_through_the_shared_nonce_set() {
    let nonces = NonceSet::default();
    let mut out = machine(Link::Outbound, &nonces);
    let mut inb = machine(Link::Inbound, &nonces);
    let t0 = Instant::now();
    out.connected(t0, 0, 0, None);
    inb.connected(t0, 0, 0, None);
    let our_version = drain(&mut out)
        .into_iter()
        .find_map(|a| match a {
            Action::Send(m @ Message::Version(_)) => Some(m),
            _ => None,
        })
        .unwrap();
    inb.on_message(t0, &our_version);
    assert_eq!(disconnect_reason(&drain(&mut inb)), Some(&DisconnectReason::SelfConnection));
    // Nonces are released when connections end.
    drop(inb);
    out.disconnect(DisconnectReason::Requested);
    assert!(nonces.is_empty());
}

#[test]
fn version_checks_disconnect_with_typed_reasons() {
    let t0 = Instant::now();
    let nonces = NonceSet::default();

    let mut m = machine(Link::Outbound, &nonces);
    m.connected(t0, 0, 0, None);
    m.on_message(t0, &Message::Version(their_version(31_799, 1)));
    assert_eq!(
        disconnect_reason(&drain(&mut m)),
        Some(&DisconnectReason::ObsoleteVersion { version: 31_799, min: 31_800 })
    );

    let cfg = MachineConfig { required_services: ServiceFlags::COMPACT_FILTERS, ..config() };
    let mut m = PeerMachine::new(cfg, Link::Outbound, nonces.clone(), StdRng::seed_from_u64(2));
    m.connected(t0, 0, 0, None);
    m.on_message(t0, &Message::Version(their_version(70016, 1)));
    let a = drain(&mut m);
    assert!(matches!(disconnect_reason(&a), Some(DisconnectReason::MissingServices { .. })));
    assert_eq!(disconnect_reason(&a).unwrap().kind(), super::super::ReasonKind::Incompatible);
}

#[test]
fn negotiation_after_verack_is_misbehaviour() {
    let (mut m, t0) = ready_outbound();
    m.on_message(t0, &Message::SendAddrV2);
    let r = disconnect_reason(&drain(&mut m)).cloned().unwrap();
    assert_eq!(
        r,
        DisconnectReason::Misbehaving(Misbehavior::NegotiationAfterVerack { command: "sendaddrv2".into() })
    );
}

#[test]
fn sendheaders_sendcmpct_and_feefilter_are_recorded_any_time() {
    let (mut m, t0) = ready_outbound();
    m.on_message(t0, &Message::SendHeaders);
    m.on_message(t0, &Message::SendCmpct(SendCmpct { send_compact: false, version: 2 }));
    m.on_message(t0, &Message::FeeFilter(1000));
    let f = &m.peer_info().unwrap().features;
    assert!(f.send_headers);
    assert_eq!(f.compact_blocks, Some(CompactBlocks { high_bandwidth: false, version: 2 }));
    assert_eq!(f.fee_filter, Some(1000));
}

#[test]
fn handshake_times_out() {
    let nonces = NonceSet::default();
    let mut m = machine(Link::Outbound, &nonces);
    let t0 = Instant::now();
    m.connected(t0, 0, 0, None);
    drain(&mut m);
    m.tick(t0 + Duration::from_secs(59));
    assert!(disconnect_reason(&drain(&mut m)).is_none());
    m.tick(t0 + Duration::from_secs(60));
    assert_eq!(
        disconnect_reason(&drain(&mut m)),
        Some(&DisconnectReason::HandshakeTimeout { after: Duration::from_secs(60) })
    );
    // Idempotent: a second tick emits nothing.
    m.tick(t0 + Duration::from_secs(61));
    assert!(drain(&mut m).is_empty());
}

#[test]
fn ping_pong_measures_latency_and_schedules_next_ping() {
    let (mut m, t0) = ready_outbound();
    // The first ping went out at t0 (drained by ready_outbound). Answer it 250 ms later.
    let nonce = {
        // Peek at the outstanding nonce by sending a wrong pong first: it must be ignored.
        m.on_message(t0, &Message::Pong(12345));
        assert!(m.latency().is_none());
        m.ping.unwrap().0
    };
    m.on_message(t0 + Duration::from_millis(250), &Message::Pong(nonce));
    assert_eq!(m.latency(), Some(Duration::from_millis(250)));
    // No new ping before the interval.
    m.tick(t0 + Duration::from_secs(119));
    assert!(sent(&drain(&mut m)).is_empty());
    m.tick(t0 + Duration::from_secs(120));
    assert_eq!(sent(&drain(&mut m)), ["ping"]);
}

#[test]
fn we_answer_pings_with_the_same_nonce() {
    let (mut m, t0) = ready_outbound();
    m.on_message(t0, &Message::Ping(0xdead_beef));
    assert_eq!(drain(&mut m), vec![Action::Send(Message::Pong(0xdead_beef))]);
}

#[test]
fn unanswered_ping_times_out() {
    let (mut m, t0) = ready_outbound();
    // Keep the link otherwise active so the ping timeout, not inactivity, fires.
    for minute in 1..20 {
        m.on_message(t0 + Duration::from_secs(minute * 60), &Message::SendHeaders);
        m.tick(t0 + Duration::from_secs(minute * 60));
    }
    assert!(disconnect_reason(&drain(&mut m)).is_none());
    m.tick(t0 + Duration::from_secs(20 * 60));
    assert_eq!(
        disconnect_reason(&drain(&mut m)),
        Some(&DisconnectReason::PingTimeout { after: DEFAULT_PING_TIMEOUT })
    );
}

#[test]
fn silence_times_out() {
    let cfg = MachineConfig { ping_timeout: Duration::from_secs(3600), ..config() };
    let nonces = NonceSet::default();
    let mut m = PeerMachine::new(cfg, Link::Outbound, nonces, StdRng::seed_from_u64(3));
    let t0 = Instant::now();
    m.connected(t0, 0, 0, None);
    m.on_message(t0, &Message::Version(their_version(70016, 5)));
    m.on_message(t0, &Message::Verack);
    drain(&mut m);
    m.tick(t0 + DEFAULT_INACTIVITY_TIMEOUT);
    assert_eq!(
        disconnect_reason(&drain(&mut m)),
        Some(&DisconnectReason::InactivityTimeout { after: DEFAULT_INACTIVITY_TIMEOUT })
    );
}

#[test]
fn oversized_lists_are_misbehaviour() {
    let (mut m, t0) = ready_outbound();
    let inv = vec![
        Inventory::Block({
            use bitcoin::hashes::Hash;
            bitcoin::BlockHash::all_zeros()
        });
        MAX_INV_SZ + 1
    ];
    m.on_message(t0, &Message::Inv(inv));
    let r = disconnect_reason(&drain(&mut m)).cloned().unwrap();
    assert_eq!(
        r,
        DisconnectReason::Misbehaving(Misbehavior::TooManyEntries {
            command: "inv".into(),
            count: 50_001,
            max: 50_000
        })
    );
    let (mut m, t0) = ready_outbound();
    let headers = vec![bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header; 2_001];
    m.on_message(t0, &Message::Headers(headers));
    assert!(disconnect_reason(&drain(&mut m)).unwrap().is_misbehavior());
}

#[test]
fn announced_transactions_are_requested_once_by_the_right_type() {
    use bitcoin::hashes::Hash;
    let (mut m, t0) = ready_outbound();
    let txid = bitcoin::Txid::from_byte_array([1; 32]);
    let wtxid = bitcoin::Wtxid::from_byte_array([2; 32]);
    let block = bitcoin::BlockHash::from_byte_array([3; 32]);
    let inv = vec![Inventory::Transaction(txid), Inventory::WTx(wtxid), Inventory::Block(block)];
    assert_eq!(m.on_message(t0, &Message::Inv(inv.clone())), Verdict::Deliver);
    assert_eq!(
        drain(&mut m),
        vec![Action::Send(Message::GetData(vec![
            Inventory::WitnessTransaction(txid),
            Inventory::WTx(wtxid)
        ]))]
    );
    // The same announcement again is not requested twice.
    m.on_message(t0, &Message::Inv(inv));
    assert!(drain(&mut m).is_empty());
}

#[test]
fn data_before_ready_is_not_delivered() {
    let nonces = NonceSet::default();
    let mut m = machine(Link::Outbound, &nonces);
    let t0 = Instant::now();
    m.connected(t0, 0, 0, None);
    m.on_message(t0, &Message::Version(their_version(70016, 5)));
    assert_eq!(m.on_message(t0, &Message::Inv(vec![])), Verdict::Consumed);
    m.on_message(t0, &Message::Verack);
    assert_eq!(m.on_message(t0, &Message::Inv(vec![])), Verdict::Deliver);
}

#[test]
fn recent_set_is_bounded() {
    let mut s = RecentSet::new(3);
    for i in 0..10u8 {
        assert!(s.insert([i; 32]));
    }
    assert_eq!(s.set.len(), 3);
    assert_eq!(s.order.len(), 3);
    assert!(!s.insert([9; 32]));
    assert!(s.insert([0; 32]), "evicted entries may be inserted again");
}

#[test]
fn addresses_are_rate_limited_like_core() {
    use crate::wire::Address;
    let (mut m, t0) = ready_outbound();
    let entry = (0u32, Address::new(&"1.2.3.4:8333".parse().unwrap(), ServiceFlags::NETWORK));
    let thousand = Message::Addr(vec![entry.clone(); 1_000]);
    // Our getaddr bought 1,000 tokens on top of the initial one.
    assert_eq!(m.on_message(t0, &thousand), Verdict::Deliver);
    assert_eq!(m.on_message(t0, &thousand), Verdict::DeliverFirst(1));
    assert_eq!(m.on_message(t0, &thousand), Verdict::Consumed);
    // 0.1 per second: 100 s later, ten more.
    assert_eq!(m.on_message(t0 + Duration::from_secs(100), &thousand), Verdict::DeliverFirst(10));
    assert_eq!(m.addr_rate_limited(), 999 + 1_000 + 990);
    assert_eq!(m.state(), PeerState::Ready, "rate limiting is not a disconnect");
}

#[test]
fn outgoing_messages_are_checked() {
    use bitcoin::hashes::Hash;
    let (mut m, _) = ready_outbound();
    assert!(m.check_send(&Message::Verack).is_err());
    assert!(m.check_send(&Message::SendAddrV2).is_err());
    assert_eq!(m.check_send(&Message::Verack), Err(SendRefused::Handshake { command: "verack".into() }));
    assert!(m.check_send(&Message::Ping(1)).is_ok());
    let tx_inv = Message::Inv(vec![Inventory::WTx(bitcoin::Wtxid::from_byte_array([1; 32]))]);
    assert!(m.check_send(&tx_inv).is_ok(), "the scripted peer said relay=1");
    let huge = Message::GetData(vec![
        Inventory::Block(bitcoin::BlockHash::from_byte_array([0; 32]));
        MAX_INV_SZ + 1
    ]);
    assert!(m.check_send(&huge).is_err());
    let refused = m.check_send(&huge).unwrap_err();
    assert_eq!(
        refused,
        SendRefused::TooManyEntries { command: "getdata".into(), count: 50_001, max: 50_000 }
    );
    assert_eq!(refused.to_string(), "getdata with 50001 entries exceeds the limit of 50000");
    let filtered = Message::GetData(vec![Inventory::Unknown {
        inv_type: crate::peer::requests::MSG_FILTERED_BLOCK,
        hash: [0; 32],
    }]);
    assert_eq!(m.check_send(&filtered), Err(SendRefused::FilteredBlocks));
    // A peer that said relay=0 gets no transactions.
    if let Some(info) = m.remote.as_mut() {
        info.relay = false;
    }
    assert!(m.check_send(&tx_inv).is_err());
    assert_eq!(m.check_send(&tx_inv), Err(SendRefused::TxRelayOff { command: "inv".into() }));
    let tx = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).txdata[0].clone();
    assert_eq!(m.check_send(&Message::Tx(tx)), Err(SendRefused::TxRelayOff { command: "tx".into() }));
    let block_inv = Message::Inv(vec![Inventory::Block(bitcoin::BlockHash::from_byte_array([0; 32]))]);
    assert!(m.check_send(&block_inv).is_ok());
}

/// What Core disconnects or discourages a sender for is refused before it leaves: long locators,
/// BIP37 messages to a peer without NODE_BLOOM, filters over Core's sizes, `filteradd` with no
/// filter loaded, BIP157 requests to a peer without NODE_COMPACT_FILTERS.
#[test]
fn messages_core_punishes_are_refused() {
    use crate::wire::{BloomFlags, FilterAdd, FilterLoad, GetCFCheckpt, GetCFHeaders, GetCFilters};
    let (mut m, _) = ready_outbound();
    let hash = |i: u8| BlockHash::from_byte_array([i; 32]);
    let headers = |n: usize| {
        Message::GetHeaders(GetHeadersMessage::new((0..n).map(|i| hash(i as u8)).collect(), hash(0)))
    };
    assert!(m.check_send(&headers(101)).is_ok());
    assert_eq!(
        m.check_send(&headers(102)),
        Err(SendRefused::TooManyEntries { command: "getheaders".into(), count: 102, max: 101 })
    );
    let blocks = Message::GetBlocks(GetBlocksMessage::new(vec![hash(1); 102], hash(0)));
    assert!(matches!(m.check_send(&blocks), Err(SendRefused::TooManyEntries { max: 101, .. })));

    let load = |bytes: usize, funcs: u32| {
        Message::FilterLoad(FilterLoad {
            filter: vec![0xff; bytes],
            hash_funcs: funcs,
            tweak: 0,
            flags: BloomFlags::None,
        })
    };
    let add = |bytes: usize| Message::FilterAdd(FilterAdd { data: vec![1; bytes] });
    let bip37 = [load(8, 1), add(20), Message::FilterClear, Message::MemPool];
    let bip157 = [
        Message::GetCFilters(GetCFilters { filter_type: 0, start_height: 1, stop_hash: hash(1) }),
        Message::GetCFHeaders(GetCFHeaders { filter_type: 0, start_height: 1, stop_hash: hash(1) }),
        Message::GetCFCheckpt(GetCFCheckpt { filter_type: 0, stop_hash: hash(1) }),
    ];
    let services =
        |m: &mut PeerMachine, bits: ServiceFlags| m.remote.as_mut().unwrap().services = bits.to_u64();
    services(&mut m, ServiceFlags::NETWORK | ServiceFlags::WITNESS);
    for msg in bip37.iter() {
        let refused = m.check_send(msg).unwrap_err();
        assert_eq!(
            refused,
            SendRefused::ServiceNotOffered { command: msg.cmd().into(), service: "NODE_BLOOM".into() }
        );
        assert_eq!(refused.to_string(), format!("{} needs a peer that offers NODE_BLOOM", msg.cmd()));
    }
    for msg in bip157.iter() {
        assert!(matches!(m.check_send(msg), Err(SendRefused::ServiceNotOffered { .. })), "{}", msg.cmd());
    }

    services(&mut m, ServiceFlags::NETWORK | ServiceFlags::BLOOM | ServiceFlags::COMPACT_FILTERS);
    for msg in bip157.iter() {
        assert!(m.check_send(msg).is_ok(), "{}", msg.cmd());
    }
    let other_type =
        Message::GetCFilters(GetCFilters { filter_type: 1, start_height: 1, stop_hash: hash(1) });
    assert!(matches!(m.check_send(&other_type), Err(SendRefused::BadFilter { .. })));
    assert!(m.check_send(&load(36_000, 50)).is_ok());
    assert!(matches!(m.check_send(&load(36_001, 1)), Err(SendRefused::BadFilter { .. })));
    assert!(matches!(m.check_send(&load(8, 51)), Err(SendRefused::BadFilter { .. })));
    // No filter loaded yet: a filteradd would be punished.
    assert!(matches!(m.check_send(&add(20)), Err(SendRefused::BadFilter { .. })));
    m.note_sent(&load(8, 1));
    assert!(m.check_send(&add(520)).is_ok());
    assert_eq!(
        m.check_send(&add(521)),
        Err(SendRefused::BadFilter {
            command: "filteradd".into(),
            problem: "an element of 521 bytes (at most 520)".into()
        })
    );
    assert!(m.check_send(&Message::MemPool).is_ok());
    m.note_sent(&Message::FilterClear);
    assert!(matches!(m.check_send(&add(20)), Err(SendRefused::BadFilter { .. })), "cleared");
}

/// Machines made for inbound links with one shared trickle announce at the same instant;
/// an outbound one keeps its own timer.
#[test]
fn inbound_machines_share_the_trickle() {
    use crate::peer::relay::InboundTrickle;
    let shared = InboundTrickle::default();
    let nonces = NonceSet::default();
    let t0 = Instant::now();
    let ready = |link: Link, seed: u64| {
        let mut m = PeerMachine::new(config(), link, nonces.clone(), StdRng::seed_from_u64(seed))
            .with_inbound_trickle(shared.clone());
        m.connecting();
        m.connected(t0, 0, 0, None);
        m.on_message(t0, &Message::Version(their_version(70016, 100 + seed)));
        m.on_message(t0, &Message::Verack);
        drain(&mut m);
        assert_eq!(m.state(), PeerState::Ready);
        m
    };
    let tx = |m: &mut PeerMachine| {
        let item = Announcement::Tx {
            txid: bitcoin::Txid::from_byte_array([3; 32]),
            wtxid: bitcoin::Wtxid::from_byte_array([4; 32]),
            fee_rate: None,
        };
        m.queue_inventory(t0, &[item]);
        m.next_inventory_due(t0).expect("a trickle is due")
    };
    let (mut a, mut b, mut c) = (ready(Link::Inbound, 1), ready(Link::Inbound, 2), ready(Link::Outbound, 3));
    let due = tx(&mut a);
    assert_eq!(tx(&mut b), due, "inbound peers trickle together");
    assert_ne!(tx(&mut c), due, "an outbound peer draws its own");
}

#[test]
fn push_addr_sends_a_duplicate_free_random_subset_of_unknown_addresses() {
    use crate::wire::{AddrV2, AddrV2Message};
    use rand::Rng;
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..50 {
        let (mut m, t0) = ready_outbound();
        // The scripted peer negotiated addrv2. It told us some addresses itself.
        let entry = |i: u32| AddrV2Message {
            time: 0,
            services: ServiceFlags::NETWORK,
            addr: AddrV2::Ipv4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
            port: 8333,
        };
        let told: Vec<AddrV2Message> = (0..rng.gen_range(0..50)).map(entry).collect();
        m.on_message(t0, &Message::AddrV2(told.clone()));
        drain(&mut m);
        // Offer many, with duplicates.
        let n = rng.gen_range(0..3_000);
        let offered: Vec<AddrV2Message> = (0..n).map(|_| entry(rng.gen_range(0..2_500))).collect();
        let sent_count = m.push_addr(&offered);
        let sent: Vec<AddrV2Message> = drain(&mut m)
            .into_iter()
            .flat_map(|a| match a {
                Action::Send(Message::AddrV2(v)) => v,
                _ => vec![],
            })
            .collect();
        assert_eq!(sent.len(), sent_count, "seed {seed} round {round}");
        assert!(sent.len() <= 1_000, "seed {seed}: {} sent", sent.len());
        let keys: HashSet<[u8; 32]> = sent.iter().map(crate::wire::addr_key).collect();
        assert_eq!(keys.len(), sent.len(), "seed {seed}: duplicates sent");
        assert!(sent.iter().all(|a| offered.contains(a)), "seed {seed}: sent something not offered");
        assert!(sent.iter().all(|a| !told.contains(a)), "seed {seed}: sent what the peer told us");
        let distinct_new: HashSet<[u8; 32]> =
            offered.iter().filter(|a| !told.contains(a)).map(crate::wire::addr_key).collect();
        assert_eq!(sent.len(), distinct_new.len().min(1_000), "seed {seed}: everything new, up to 1,000");
        // Pushing the same again sends nothing new.
        assert_eq!(m.push_addr(&sent), 0);
    }
}

#[test]
fn back_to_back_duplicate_getheaders_are_ignored() {
    use bitcoin::hashes::Hash;
    let (mut m, _) = ready_outbound();
    let tip = bitcoin::BlockHash::from_byte_array([1; 32]);
    let zero = bitcoin::BlockHash::all_zeros();
    assert!(m.push_getheaders(vec![tip], zero));
    assert!(!m.push_getheaders(vec![tip], zero));
    assert!(m.push_getheaders(vec![bitcoin::BlockHash::from_byte_array([2; 32]), tip], zero));
    assert!(m.push_getblocks(vec![tip], zero));
    assert!(!m.push_getblocks(vec![tip], zero));
    assert_eq!(sent(&drain(&mut m)), ["getheaders", "getheaders", "getblocks"]);
}

#[test]
fn reject_goes_only_to_peers_that_understand_it() {
    use crate::wire::RejectReason;
    let (mut m, _) = ready_outbound();
    assert!(m.push_reject("tx", RejectReason::Fee, "insufficient fee", Some([7; 32])));
    match drain(&mut m).as_slice() {
        [Action::Send(Message::Reject(r))] => {
            assert_eq!((r.message.as_ref(), r.reason.as_ref()), ("tx", "insufficient fee"));
            assert_eq!(bitcoin::hashes::Hash::to_byte_array(r.hash), [7; 32]);
        }
        other => panic!("expected one reject, got {other:?}"),
    }
    // A peer below 70002 never gets one.
    let nonces = NonceSet::default();
    let mut old = machine(Link::Outbound, &nonces);
    let t0 = Instant::now();
    old.connected(t0, 0, 0, None);
    old.on_message(t0, &Message::Version(their_version(70_001, 5)));
    old.on_message(t0, &Message::Verack);
    drain(&mut old);
    assert!(!old.push_reject("tx", RejectReason::Invalid, "bad", None));
    assert!(drain(&mut old).is_empty());
}

mod blocks;
mod filters;
mod hostile;
mod self_announce;
