//! The `PeerGroup` actor: owns the peers, the listeners, the address book and the ban list,
//! and executes the decisions of [`Policy`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures_util::future::join_all;
use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{error, info, warn};

mod fetch;

use super::bans::{Ban, BanList, BanSnapshot, BanTarget};
use super::inbound::{self, Admission, Candidate};
use super::messages::*;
use super::policy::{Dial, Policy, PolicyConfig};
use crate::addrbook::netgroup::netgroup;
use crate::addrbook::{AddrBook, AddrBookConfig};
use crate::discovery::{query_seeds, SeedResolver};
use crate::events::{
    AddrReceived, GetDataReceived, PeerDisconnected, PeerReady, SubscriberId, Subscribers, Subscription,
};
use crate::peer::messages::{
    Disconnect, GetStats, QueueTransactions, SendMessage, Subscribe as PeerSubscribe, SubscribeAs,
    Unsubscribe as PeerUnsubscribe,
};
use crate::peer::{DisconnectReason, Link, PeerActor, PeerAddr, PeerConfig, PeerId, PeerStats, ReasonKind};
use crate::persist;
use crate::wire::{self, AddrV2};

/// How long shutdown waits for peers to say goodbye.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the group re-evaluates dials, bans and saving.
pub const TICK: Duration = Duration::from_secs(1);
/// Mailbox room: lifecycle and addr notices of many peers arrive in bursts.
const GROUP_MAILBOX: usize = 16_384;
/// Minimum time between two rounds of DNS seed queries.
pub const SEED_RETRY: Duration = Duration::from_secs(60);
/// Longest wait before a new ban is written to disk (bans in a burst share one save).
pub const BAN_SAVE_DELAY: Duration = Duration::from_secs(5);
/// Most addresses taken from one round of seed queries.
pub const MAX_SEED_ADDRESSES: usize = 1_000;

/// Everything the group needs.
#[derive(Clone)]
pub struct GroupConfig {
    /// Settings for every connection.
    pub peer: PeerConfig,
    /// Outbound targets and retry rules.
    pub policy: PolicyConfig,
    /// Addresses to accept inbound peers on.
    pub listen: Vec<SocketAddr>,
    /// Most inbound peers at once.
    pub max_inbound: usize,
    /// Most inbound peers from one IP (0 = no limit).
    pub max_inbound_per_ip: usize,
    /// DNS seed host names (queried when the address book runs low).
    pub dns_seeds: Vec<String>,
    /// Resolver for the seeds; `None` disables seeding.
    pub resolver: Option<Arc<dyn SeedResolver>>,
    /// Query seeds while the address book holds fewer addresses than this.
    pub min_book_size: usize,
    /// Where the address book and bans are saved; `None` keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// How often state is saved.
    pub save_interval: Duration,
    /// How long a misbehaving address stays banned.
    pub ban_time: Duration,
    /// Arbiter threads for peer actors (0: one per core).
    pub arbiters: usize,
    /// Most peers of any kind (bitcoin-net's `hardLimit`): the newest above it are dropped.
    pub hard_limit: Option<usize>,
    /// Relay mode: transactions learned from one peer are announced to the others (never back
    /// to the source) and served from the broadcast cache.
    pub relay_transactions: bool,
    /// Address book sizing.
    pub addrbook: AddrBookConfig,
    /// Attempts per [`Fetch`] (each on a different peer when possible) before it fails.
    pub max_request_attempts: u32,
}

impl GroupConfig {
    /// Defaults around `peer`: 8 outbound, 117 inbound, no listeners, no seeds, in memory.
    pub fn new(peer: PeerConfig) -> Self {
        GroupConfig {
            // Regtest peers live on local networks; elsewhere gossip must not point us there.
            addrbook: AddrBookConfig {
                accept_local: peer.network == crate::Network::Regtest,
                ..AddrBookConfig::default()
            },
            peer,
            policy: PolicyConfig {
                max_outbound: 8,
                static_peers: Vec::new(),
                connect_only: false,
                diverse_netgroups: true,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(300),
            },
            listen: Vec::new(),
            max_inbound: 117,
            max_inbound_per_ip: 8,
            dns_seeds: Vec::new(),
            resolver: None,
            min_book_size: 100,
            data_dir: None,
            save_interval: Duration::from_secs(15 * 60),
            ban_time: Duration::from_secs(24 * 3600),
            arbiters: 0,
            hard_limit: None,
            relay_transactions: false,
            max_request_attempts: super::requests::DEFAULT_MAX_ATTEMPTS,
        }
    }
}

impl std::fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConfig")
            .field("policy", &self.policy)
            .field("listen", &self.listen)
            .field("max_inbound", &self.max_inbound)
            .field("dns_seeds", &self.dns_seeds)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

struct Entry {
    actor: Addr<PeerActor>,
    addr: PeerAddr,
    link: Link,
    ready: bool,
    connected_at: Instant,
    /// What the peer said in its `version` (set when ready).
    info: Option<Arc<crate::peer::PeerInfo>>,
}

/// Supervisor of all connections.
pub struct PeerGroup {
    config: GroupConfig,
    policy: Policy,
    book: AddrBook,
    bans: BanList,
    subscriptions: Vec<(SubscriberId, Subscription)>,
    group_events: Subscribers,
    peers: HashMap<PeerId, Entry>,
    inbound_per_ip: HashMap<IpAddr, usize>,
    arbiters: Vec<ArbiterHandle>,
    owned_arbiters: Vec<Arbiter>,
    next_arbiter: usize,
    accepting: bool,
    closing: bool,
    closed: bool,
    waiting: Vec<oneshot::Sender<()>>,
    listening: Vec<SocketAddr>,
    seeding: bool,
    last_seed_query: Option<Instant>,
    last_save: Instant,
    /// Held while state files are written, so two saves never interleave.
    save_lock: Arc<std::sync::Mutex<()>>,
    bans_dirty: bool,
    broadcasts: Broadcasts,
    /// Addresses of the last peers that left, so a punishment that arrives after the peer hung
    /// up still bans its address.
    recently_gone: std::collections::VecDeque<(PeerId, PeerAddr)>,
    /// Misbehaviour reported for live peers (by `DisconnectPeerWith`), applied when they leave.
    punish: HashMap<PeerId, String>,
    rng: StdRng,
}

/// Departed peers remembered for late punishment.
const RECENTLY_GONE: usize = 256;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl PeerGroup {
    /// A group with these settings and initial subscriptions. Saved state in `data_dir` is
    /// loaded here; problems with it are logged and the backup or an empty state is used.
    pub fn new(config: GroupConfig, subscriptions: Vec<Subscription>) -> Self {
        let now = Instant::now();
        let mut rng = StdRng::from_entropy();
        let (book, bans) = load_state(&config, &mut rng);
        let mut group = PeerGroup {
            policy: Policy::new(config.policy.clone(), now),
            config,
            book,
            bans,
            subscriptions: Vec::new(),
            group_events: Subscribers::new(),
            peers: HashMap::new(),
            inbound_per_ip: HashMap::new(),
            arbiters: Vec::new(),
            owned_arbiters: Vec::new(),
            next_arbiter: 0,
            accepting: true,
            closing: false,
            closed: false,
            waiting: Vec::new(),
            listening: Vec::new(),
            seeding: false,
            last_seed_query: None,
            last_save: now,
            save_lock: Arc::default(),
            bans_dirty: false,
            broadcasts: Broadcasts::default(),
            recently_gone: Default::default(),
            punish: HashMap::new(),
            rng,
        };
        for s in subscriptions {
            group.add_subscription(s);
        }
        group
    }

    fn add_subscription(&mut self, s: Subscription) -> SubscriberId {
        let id = self.group_events.add(s.clone());
        self.subscriptions.push((id, s));
        id
    }

    /// The subscribers a new peer gets: the group's subscribers plus the group itself.
    fn subscribers(&self, ctx: &Context<Self>) -> Subscribers {
        let mut subs = Subscribers::new();
        for (id, s) in &self.subscriptions {
            subs.add_with_id(*id, s.clone());
        }
        for s in own_subscriptions(ctx, self.config.relay_transactions) {
            subs.add(s);
        }
        subs
    }

    fn start_peer(&mut self, actor: PeerActor) -> Addr<PeerActor> {
        if self.arbiters.is_empty() {
            return actor.start();
        }
        let handle = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        PeerActor::start_in_arbiter(handle, move |_| actor)
    }

    fn run_policy(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let now = Instant::now();
        let unix = unix_now();
        let bans = &self.bans;
        let book = &mut self.book;
        let rng = &mut self.rng;
        // Host names (onion services) are only reachable through the proxy.
        let via_proxy = self.config.peer.proxy.is_some();
        let unusable = |a: &PeerAddr| bans.is_banned(a, unix) || (!via_proxy && a.socket_addr().is_none());
        let mut pick = |exclude: &dyn Fn(&PeerAddr) -> bool| book.select(rng, unix, exclude);
        let dials = self.policy.poll_dials(now, &unusable, &mut pick);
        for dial in dials {
            self.dial(dial, ctx);
        }
        self.maybe_query_seeds(ctx);
    }

    fn dial(&mut self, dial: Dial, ctx: &mut Context<Self>) {
        let actor = PeerActor::outbound(self.config.peer.clone(), dial.addr.clone(), self.subscribers(ctx));
        let id = actor.id();
        self.policy.dialing(id, &dial);
        self.book.attempt(&dial.addr, unix_now());
        let addr = self.start_peer(actor);
        self.peers.insert(
            id,
            Entry {
                actor: addr,
                addr: dial.addr,
                link: Link::Outbound,
                ready: false,
                connected_at: Instant::now(),
                info: None,
            },
        );
    }

    fn maybe_query_seeds(&mut self, ctx: &mut Context<Self>) {
        let Some(resolver) = self.config.resolver.clone() else { return };
        let due = self.last_seed_query.is_none_or(|t| t.elapsed() >= SEED_RETRY);
        if self.seeding
            || !due
            || self.config.dns_seeds.is_empty()
            || !self.policy.wants_addresses()
            || self.book.len() >= self.config.min_book_size
        {
            return;
        }
        self.seeding = true;
        self.last_seed_query = Some(Instant::now());
        let seeds = self.config.dns_seeds.clone();
        let port = self.config.peer.network.default_port();
        info!(seeds = seeds.len(), "querying DNS seeds");
        let fut = async move { query_seeds(resolver.as_ref(), &seeds, port, MAX_SEED_ADDRESSES).await };
        ctx.spawn(fut.into_actor(self).map(|(found, errors), act, ctx| {
            act.seeding = false;
            for e in errors {
                warn!(error = %e, "DNS seed failed");
            }
            let unix = unix_now();
            let added = found.iter().filter(|a| act.book.add(a, 0, unix, None, unix)).count();
            info!(found = found.len(), added, "DNS seeds answered");
            act.run_policy(ctx);
        }));
    }

    fn ban(&mut self, addr: &PeerAddr, duration: Duration, reason: &str, manual: bool) -> Ban {
        let unix = unix_now();
        let until = unix.saturating_add(duration.as_secs());
        let target = BanTarget::of(addr);
        let ban = if manual {
            self.bans.ban_manual(target, unix, until, reason).clone()
        } else {
            self.bans.ban(target, unix, until, reason).clone()
        };
        warn!(target = %ban.target, until = ban.until, reason, "banned");
        self.group_events.banned(&ban);
        // A ban must survive a crash: saved within seconds, not at the next interval.
        self.bans_dirty = true;
        // Every connection to or from the banned address goes (Core disconnects them all).
        let target = BanTarget::of(addr);
        for entry in self.peers.values() {
            if BanTarget::of(&entry.addr) == target {
                entry.actor.do_send(Disconnect(DisconnectReason::Banned));
            }
        }
        ban
    }

    /// Saves the address book and bans: in the background (periodic saves), or before
    /// returning (shutdown). Both files are written atomically with a backup.
    fn save(&mut self, background: bool) {
        let Some(dir) = self.config.data_dir.clone() else { return };
        self.last_save = Instant::now();
        let book = self.book.snapshot();
        let bans = self.bans.snapshot();
        let lock = self.save_lock.clone();
        let write = move || {
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = std::fs::create_dir_all(&dir) {
                error!(dir = %dir.display(), error = %e, "cannot create data directory");
                return;
            }
            if let Err(e) = persist::save_json(&dir.join(ADDRBOOK_FILE), &book) {
                error!(error = %e, "cannot save the address book");
            }
            if let Err(e) = persist::save_json(&dir.join(BANS_FILE), &bans) {
                error!(error = %e, "cannot save the ban list");
            }
        };
        if background {
            tokio::task::spawn_blocking(write);
        } else {
            write();
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        // Peers whose actor is gone without a goodbye (e.g. adopted after it stopped).
        let dead: Vec<PeerId> =
            self.peers.iter().filter(|(_, e)| !e.actor.connected()).map(|(id, _)| *id).collect();
        for id in dead {
            if let Some(entry) = self.forget(id) {
                if let Some(reason) = self.punish.remove(&id) {
                    self.ban_unless_configured(&entry.addr, &reason);
                }
                if entry.link == Link::Outbound {
                    self.policy.on_disconnected(
                        id,
                        &DisconnectReason::ClosedByPeer,
                        Instant::now(),
                        self.rng.gen(),
                    );
                }
            }
        }
        self.broadcasts.expire(Instant::now());
        let unix = unix_now();
        for ban in self.bans.expire(unix) {
            info!(target = %ban.target, "ban expired");
            self.group_events.unbanned(&ban, true);
        }
        let since = self.last_save.elapsed();
        if since >= self.config.save_interval || (self.bans_dirty && since >= BAN_SAVE_DELAY) {
            self.bans_dirty = false;
            self.save(true);
        }
        self.run_policy(ctx);
    }

    fn finish_if_closed(&mut self) {
        if self.closing && self.peers.is_empty() {
            self.close();
        }
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.save(false);
            for a in self.owned_arbiters.drain(..) {
                a.stop();
            }
        }
        for w in self.waiting.drain(..) {
            let _ = w.send(());
        }
    }

    /// Removes a peer from the books (and its inbound slot).
    /// Bans for misbehaviour reported from outside the peer (a chain sync), never a
    /// configured peer and not while closing.
    fn ban_unless_configured(&mut self, addr: &PeerAddr, reason: &str) {
        if !self.closing && !self.policy.is_configured_host(addr) {
            self.ban(addr, self.config.ban_time, reason, false);
        }
    }

    fn forget(&mut self, id: PeerId) -> Option<Entry> {
        let entry = self.peers.remove(&id)?;
        self.recently_gone.push_back((id, entry.addr.clone()));
        if self.recently_gone.len() > RECENTLY_GONE {
            self.recently_gone.pop_front();
        }
        if entry.link == Link::Inbound {
            if let Some(ip) = entry.addr.socket_addr().map(|s| s.ip()) {
                if let Some(n) = self.inbound_per_ip.get_mut(&ip) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.inbound_per_ip.remove(&ip);
                    }
                }
            }
        }
        Some(entry)
    }

    /// Drops the newest peers above the hard limit.
    fn enforce_hard_limit(&mut self) {
        let Some(limit) = self.config.hard_limit else { return };
        if self.peers.len() <= limit {
            return;
        }
        let mut newest: Vec<(&PeerId, &Entry)> = self.peers.iter().collect();
        newest.sort_by_key(|(_, e)| std::cmp::Reverse(e.connected_at));
        for (id, e) in newest.into_iter().take(self.peers.len() - limit) {
            info!(peer = %e.addr, id = %id, limit, "above the hard limit: disconnecting");
            e.actor.do_send(Disconnect(DisconnectReason::Evicted));
        }
    }

    fn admission(&self, remote: SocketAddr) -> Admission {
        let limits = inbound::Limits {
            accepting: self.accepting && !self.closing,
            inbound: self.inbound_count(),
            max_inbound: self.config.max_inbound,
            max_per_ip: self.config.max_inbound_per_ip,
        };
        let banned = self.bans.is_banned(&PeerAddr::Ip(remote), unix_now());
        inbound::admit(remote.ip(), banned, &self.inbound_per_ip, limits)
    }

    /// Inbound connections (the per-IP counters add up to it).
    fn inbound_count(&self) -> usize {
        self.inbound_per_ip.values().sum()
    }

    fn status(&self) -> GroupStatus {
        let inbound = self.inbound_count();
        GroupStatus {
            accepting: self.accepting && !self.closing,
            closing: self.closing,
            closed: self.closed,
            target_outbound: self.config.policy.max_outbound,
            outbound: self.policy.outbound_count(),
            outbound_ready: self.policy.ready_count(),
            inbound,
            max_inbound: self.config.max_inbound,
            addrbook_new: self.book.new_len(),
            addrbook_tried: self.book.tried_len(),
            bans: self.bans.len(),
            listening: self.listening.clone(),
        }
    }

    fn accept(&mut self, stream: tokio::net::TcpStream, remote: SocketAddr, ctx: &mut Context<Self>) {
        let _ = stream.set_nodelay(true);
        *self.inbound_per_ip.entry(remote.ip()).or_default() += 1;
        let actor = PeerActor::inbound(self.config.peer.clone(), remote, stream, self.subscribers(ctx));
        let id = actor.id();
        let addr = self.start_peer(actor);
        self.peers.insert(
            id,
            Entry {
                actor: addr,
                addr: PeerAddr::Ip(remote),
                link: Link::Inbound,
                ready: false,
                connected_at: Instant::now(),
                info: None,
            },
        );
        self.enforce_hard_limit();
    }
}

/// Transactions being broadcast (or recently broadcast), bounded.
pub const MAX_BROADCASTS: usize = 1_000;
/// Callers waiting on one transaction at once (repeated broadcasts of the same transaction).
pub const MAX_WAITERS_PER_TX: usize = 64;
/// How long a broadcast transaction stays available to peers that ask late.
pub const BROADCAST_TTL: Duration = Duration::from_secs(30 * 60);

type BroadcastReply = oneshot::Sender<Result<BroadcastOutcome, BroadcastError>>;

struct PendingTx {
    tx: Arc<bitcoin::Transaction>,
    wtxid: bitcoin::Wtxid,
    announced_to: usize,
    requested: std::collections::HashSet<PeerId>,
    waiters: Vec<(usize, BroadcastReply)>,
    expires: Instant,
    /// Ours (not relayed): announced to every peer that becomes ready until it is seen in a
    /// block or expires.
    rebroadcast: bool,
    /// The block it was seen in.
    confirmed_in: Option<bitcoin::BlockHash>,
}

impl PendingTx {
    fn outcome(&self) -> BroadcastOutcome {
        BroadcastOutcome {
            txid: self.tx.compute_txid().to_string(),
            wtxid: self.wtxid.to_string(),
            announced_to: self.announced_to,
            requested_by: self.requested.len(),
            confirmed_in: self.confirmed_in.map(|h| h.to_string()),
        }
    }

    /// The transaction as requested: without witness data for a plain MSG_TX request (BIP144).
    /// The flag says whether the request counts: a segwit transaction stripped of its witness is
    /// invalid (peers older than wtxidrelay ask like this unless we advertise NODE_WITNESS).
    fn serve(&self, witness: bool) -> (bitcoin::Transaction, bool) {
        let mut tx = (*self.tx).clone();
        let has_witness = tx.input.iter().any(|i| !i.witness.is_empty());
        if !witness {
            for input in &mut tx.input {
                input.witness.clear();
            }
        }
        (tx, witness || !has_witness)
    }

    /// Answers the waiters whose peer count is reached.
    fn resolve_reached(&mut self) {
        let outcome = self.outcome();
        let n = self.requested.len();
        let (done, waiting): (Vec<_>, Vec<_>) = self.waiters.drain(..).partition(|(min, _)| n >= *min);
        self.waiters = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(outcome.clone()));
        }
    }
}

#[derive(Default)]
struct Broadcasts {
    by_txid: HashMap<bitcoin::Txid, PendingTx>,
    by_wtxid: HashMap<bitcoin::Wtxid, bitcoin::Txid>,
}

impl Broadcasts {
    fn find(&mut self, item: &crate::wire::Inventory) -> Option<(&mut PendingTx, bool)> {
        use crate::wire::Inventory::*;
        let (txid, witness) = match item {
            Transaction(t) => (*t, false),
            WitnessTransaction(t) => (*t, true),
            WTx(w) => (*self.by_wtxid.get(w)?, true),
            _ => return None,
        };
        self.by_txid.get_mut(&txid).map(|b| (b, witness))
    }

    fn expire(&mut self, now: Instant) {
        let gone: Vec<bitcoin::Txid> = self
            .by_txid
            .iter()
            .filter(|(_, b)| b.expires <= now && b.waiters.is_empty())
            .map(|(t, _)| *t)
            .collect();
        for txid in gone {
            if let Some(b) = self.by_txid.remove(&txid) {
                self.by_wtxid.remove(&b.wtxid);
            }
        }
    }
}

/// File names in the data directory.
pub const ADDRBOOK_FILE: &str = "addrbook.json";
/// Ban list file name.
pub const BANS_FILE: &str = "bans.json";

fn load_state(config: &GroupConfig, rng: &mut StdRng) -> (AddrBook, BanList) {
    let fresh_book = |rng: &mut StdRng| AddrBook::new(config.addrbook.clone(), rng.gen());
    let Some(dir) = &config.data_dir else { return (fresh_book(rng), BanList::new()) };
    let loaded = persist::load_json(&dir.join(ADDRBOOK_FILE));
    for p in &loaded.problems {
        warn!(problem = %p, "address book");
    }
    let book = match loaded.value {
        Some(snapshot) => match AddrBook::restore(config.addrbook.clone(), snapshot, unix_now()) {
            Ok((book, report)) => {
                if !report.is_clean() {
                    warn!(%report, "address book repaired while loading");
                }
                book
            }
            Err(e) => {
                warn!(error = %e, "address book rejected; starting empty");
                fresh_book(rng)
            }
        },
        None => fresh_book(rng),
    };
    let loaded = persist::load_json::<BanSnapshot>(&dir.join(BANS_FILE));
    for p in &loaded.problems {
        warn!(problem = %p, "ban list");
    }
    let bans = match loaded.value {
        Some(snapshot) => {
            let (bans, problems) = BanList::restore(snapshot, unix_now());
            for p in problems {
                warn!(problem = %p, "ban list");
            }
            bans
        }
        None => BanList::new(),
    };
    info!(addresses = book.len(), bans = bans.len(), dir = %dir.display(), "loaded saved state");
    (book, bans)
}

impl Actor for PeerGroup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(GROUP_MAILBOX);
        let n = if self.config.arbiters == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.config.arbiters
        };
        for _ in 0..n {
            let arbiter = Arbiter::new();
            self.arbiters.push(arbiter.handle());
            self.owned_arbiters.push(arbiter);
        }
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        self.run_policy(ctx);
        for addr in self.config.listen.clone() {
            let me = ctx.address();
            actix::spawn(async move {
                let listener = match TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        error!(%addr, error = %e, "cannot listen");
                        return;
                    }
                };
                let local = listener.local_addr().unwrap_or(addr);
                info!(addr = %local, "listening for inbound peers");
                if me.send(Listening(local)).await.is_err() {
                    return;
                }
                loop {
                    match listener.accept().await {
                        // `send` waits for the group to take it: accepting slows when the group is busy.
                        Ok((stream, remote)) => {
                            if me.send(Accepted(stream, remote)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            // Out of file descriptors and similar: pause instead of spinning.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(tokio::net::TcpStream, SocketAddr);

#[derive(Message)]
#[rtype(result = "()")]
struct Listening(SocketAddr);

impl Handler<Listening> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: Listening, _: &mut Context<Self>) {
        self.listening.push(msg.0);
    }
}

impl Handler<GetListenAddrs> for PeerGroup {
    type Result = MessageResult<GetListenAddrs>;
    fn handle(&mut self, _: GetListenAddrs, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.listening.clone())
    }
}

impl Handler<Accepted> for PeerGroup {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, Accepted(stream, remote): Accepted, ctx: &mut Context<Self>) -> Self::Result {
        let done = || -> ResponseActFuture<Self, ()> { Box::pin(actix::fut::ready(())) };
        match self.admission(remote) {
            Admission::Accept => {
                self.accept(stream, remote, ctx);
                return done();
            }
            Admission::Refuse(why) => {
                info!(%remote, ?why, "refusing inbound connection");
                return done();
            }
            Admission::EvictFirst => {}
        }
        // Full: ask the inbound peers for their latency, then evict one or refuse the newcomer.
        let inbound: Vec<(PeerId, &Entry)> =
            self.peers.iter().filter(|(_, e)| e.link == Link::Inbound).map(|(id, e)| (*id, e)).collect();
        let asks: Vec<_> = inbound
            .iter()
            .map(|(id, e)| {
                let group = netgroup(&e.addr);
                let connected_at = e.connected_at;
                let id = *id;
                let ask = e.actor.send(GetStats);
                async move {
                    let ping = ask
                        .await
                        .ok()
                        .and_then(|s| s.ping_latency_ms)
                        .map(|ms| Duration::from_secs_f64(ms / 1000.0));
                    Candidate { id, group, connected_at, ping }
                }
            })
            .collect();
        Box::pin(join_all(asks).into_actor(self).map(move |candidates, act, ctx| {
            // Things may have changed while the peers answered.
            match act.admission(remote) {
                Admission::Accept => return act.accept(stream, remote, ctx),
                Admission::Refuse(_) => return,
                Admission::EvictFirst => {}
            }
            let candidates = candidates.into_iter().filter(|c| act.peers.contains_key(&c.id)).collect();
            match inbound::select_eviction(candidates) {
                Some(victim) => {
                    // Forget the victim now so the count never exceeds the limit while it closes.
                    if let Some(e) = act.forget(victim) {
                        info!(victim = %e.addr, newcomer = %remote, "inbound slots full: evicting");
                        e.actor.do_send(Disconnect(DisconnectReason::Evicted));
                    }
                    act.accept(stream, remote, ctx);
                }
                None => info!(%remote, "inbound slots full and all protected: refusing"),
            }
        }))
    }
}

impl Handler<PeerReady> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: PeerReady, _: &mut Context<Self>) {
        let Some(entry) = self.peers.get_mut(&msg.peer) else { return };
        entry.ready = true;
        entry.info = Some(msg.info.clone());
        // Our own broadcasts still waiting for a block reach newcomers too — outbound ones
        // only: an inbound spy connecting would learn which transactions are ours.
        let now = Instant::now();
        let pending: Vec<Arc<bitcoin::Transaction>> = self
            .broadcasts
            .by_txid
            .values_mut()
            .filter(|b| {
                entry.link == Link::Outbound && b.rebroadcast && b.confirmed_in.is_none() && b.expires > now
            })
            .map(|b| {
                b.announced_to += 1;
                b.tx.clone()
            })
            .collect();
        if !pending.is_empty() {
            entry.actor.do_send(QueueTransactions(pending));
        }
        if entry.link == Link::Outbound {
            self.policy.on_ready(msg.peer);
            self.book.good(&entry.addr, unix_now());
        }
    }
}

impl Handler<PeerDisconnected> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: PeerDisconnected, ctx: &mut Context<Self>) {
        let Some(entry) = self.forget(msg.peer) else { return };
        let unit: f64 = self.rng.gen();
        let verdict = match entry.link {
            Link::Outbound => self.policy.on_disconnected(msg.peer, &msg.reason, Instant::now(), unit),
            Link::Inbound => self.policy.on_inbound_disconnected(&entry.addr, &msg.reason),
        };
        if let Some(addr) = &verdict.failed {
            self.book.failed(addr, unix_now());
        }
        let reported = self.punish.remove(&msg.peer);
        if let Some(addr) = verdict.ban {
            if !self.closing {
                let reason = msg.reason.to_string();
                self.ban(&addr, self.config.ban_time, &reason, false);
            }
        } else if let Some(reason) = reported {
            self.ban_unless_configured(&entry.addr, &reason);
        }
        if msg.reason.kind() != ReasonKind::Local || !self.closing {
            self.run_policy(ctx);
        }
        self.finish_if_closed();
    }
}

impl Handler<AddrReceived> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: AddrReceived, _: &mut Context<Self>) {
        let unix = unix_now();
        for a in msg.addrs.iter() {
            let addr = match &a.addr {
                AddrV2::Ipv4(_) | AddrV2::Ipv6(_) => match wire::addr_ip(&a.addr) {
                    Some(ip) => PeerAddr::Ip(SocketAddr::new(ip, a.port)),
                    None => continue,
                },
                AddrV2::TorV3(_) => PeerAddr::Host(wire::addr_host(&a.addr).into(), a.port),
                _ => continue,
            };
            self.book.add(&addr, a.services.to_u64(), u64::from(a.time), Some(&msg.addr), unix);
        }
    }
}

impl Handler<Subscribe> for PeerGroup {
    type Result = MessageResult<Subscribe>;
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let id = self.add_subscription(msg.0.clone());
        for entry in self.peers.values() {
            entry.actor.do_send(SubscribeAs(id, msg.0.clone()));
        }
        MessageResult(id)
    }
}

impl Handler<Unsubscribe> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        self.subscriptions.retain(|(id, _)| *id != msg.0);
        self.group_events.remove(msg.0);
        for entry in self.peers.values() {
            entry.actor.do_send(PeerUnsubscribe(msg.0));
        }
    }
}

impl Handler<GetPeers> for PeerGroup {
    type Result = ResponseFuture<Vec<PeerStats>>;
    fn handle(&mut self, _: GetPeers, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self.peers.values().map(|e| e.actor.send(GetStats)).collect();
        Box::pin(async move { join_all(asks).await.into_iter().filter_map(Result::ok).collect() })
    }
}

impl Handler<GetRandomPeer> for PeerGroup {
    type Result = MessageResult<GetRandomPeer>;
    fn handle(&mut self, _: GetRandomPeer, _: &mut Context<Self>) -> Self::Result {
        let choice = self.peers.iter().filter(|(_, e)| e.ready).choose(&mut self.rng);
        MessageResult(choice.map(|(id, e)| PeerHandle {
            id: *id,
            addr: e.addr.clone(),
            link: e.link,
            actor: e.actor.clone(),
        }))
    }
}

impl Handler<Broadcast> for PeerGroup {
    type Result = Result<usize, GroupError>;
    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Err(GroupError::Closed);
        }
        let ready: Vec<&Entry> = self.peers.values().filter(|e| e.ready).collect();
        if ready.is_empty() && !msg.allow_none {
            return Err(GroupError::NoPeers);
        }
        for e in &ready {
            e.actor.do_send(SendMessage(msg.message.clone()));
        }
        Ok(ready.len())
    }
}

impl Handler<AddPeer> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: AddPeer, ctx: &mut Context<Self>) {
        for (id, s) in &self.subscriptions {
            msg.actor.do_send(SubscribeAs(*id, s.clone()));
        }
        for s in own_subscriptions(ctx, self.config.relay_transactions) {
            msg.actor.do_send(PeerSubscribe(s));
        }
        if msg.link == Link::Inbound {
            if let Some(ip) = msg.addr.socket_addr().map(|a| a.ip()) {
                *self.inbound_per_ip.entry(ip).or_default() += 1;
            }
        }
        self.peers.insert(
            msg.id,
            Entry {
                actor: msg.actor,
                addr: msg.addr,
                link: msg.link,
                ready: true,
                connected_at: Instant::now(),
                info: None,
            },
        );
        self.enforce_hard_limit();
    }
}

/// What the group itself listens to on every peer.
fn own_subscriptions(ctx: &Context<PeerGroup>, relay: bool) -> Vec<Subscription> {
    let me = ctx.address();
    let mut subs = vec![
        Subscription::Disconnected(me.clone().recipient()),
        Subscription::Ready(me.clone().recipient()),
        Subscription::Addr(me.clone().recipient()),
        Subscription::GetData(me.clone().recipient()),
    ];
    if relay {
        subs.push(Subscription::Tx(me.recipient()));
    }
    subs
}

impl Handler<DisconnectPeer> for PeerGroup {
    type Result = Result<(), GroupError>;
    fn handle(&mut self, msg: DisconnectPeer, _: &mut Context<Self>) -> Self::Result {
        let entry = self.peers.get(&msg.0).ok_or(GroupError::UnknownPeer(msg.0))?;
        entry.actor.do_send(Disconnect(DisconnectReason::Requested));
        Ok(())
    }
}

impl Handler<DisconnectPeerWith> for PeerGroup {
    type Result = Result<(), GroupError>;
    fn handle(&mut self, msg: DisconnectPeerWith, _: &mut Context<Self>) -> Self::Result {
        if let Some(entry) = self.peers.get(&msg.peer) {
            if !msg.reason.is_misbehavior() && self.policy.is_configured_host(&entry.addr) {
                // Replacing a configured peer only redials it: keep it.
                return Ok(());
            }
            if msg.reason.is_misbehavior() {
                // If it is already closing for another reason, its departure still bans it.
                self.punish.insert(msg.peer, msg.reason.to_string());
            }
            entry.actor.do_send(Disconnect(msg.reason));
            return Ok(());
        }
        // Gone already (it may have hung up right after misbehaving): its address still pays.
        let addr = self.recently_gone.iter().find(|(id, _)| *id == msg.peer).map(|(_, a)| a.clone());
        let addr = addr.ok_or(GroupError::UnknownPeer(msg.peer))?;
        if msg.reason.is_misbehavior() {
            self.ban_unless_configured(&addr, &msg.reason.to_string());
        }
        Ok(())
    }
}

impl Handler<BanAddr> for PeerGroup {
    type Result = MessageResult<BanAddr>;
    fn handle(&mut self, msg: BanAddr, _: &mut Context<Self>) -> Self::Result {
        let duration = msg.duration.unwrap_or(self.config.ban_time);
        MessageResult(self.ban(&msg.addr, duration, &msg.reason, true))
    }
}

impl Handler<UnbanAddr> for PeerGroup {
    type Result = bool;
    fn handle(&mut self, msg: UnbanAddr, _: &mut Context<Self>) -> bool {
        let target = BanTarget::of(&msg.0);
        let ban = self.bans.list().into_iter().find(|b| b.target == target);
        match ban {
            Some(ban) if self.bans.unban(&target) => {
                info!(target = %ban.target, "unbanned");
                self.group_events.unbanned(&ban, false);
                true
            }
            _ => false,
        }
    }
}

impl Handler<GetBans> for PeerGroup {
    type Result = MessageResult<GetBans>;
    fn handle(&mut self, _: GetBans, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.bans.list())
    }
}

impl Handler<StopAccepting> for PeerGroup {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, _: &mut Context<Self>) {
        self.accepting = false;
    }
}

impl Handler<StartAccepting> for PeerGroup {
    type Result = ();
    fn handle(&mut self, _: StartAccepting, _: &mut Context<Self>) {
        self.accepting = true;
    }
}

impl Handler<GetStatus> for PeerGroup {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<AddAddresses> for PeerGroup {
    type Result = usize;
    fn handle(&mut self, msg: AddAddresses, ctx: &mut Context<Self>) -> usize {
        let unix = unix_now();
        let added = msg.0.iter().filter(|a| self.book.add(a, 0, unix, None, unix)).count();
        self.run_policy(ctx);
        added
    }
}

impl Handler<Shutdown> for PeerGroup {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        self.accepting = false;
        for entry in self.peers.values() {
            entry.actor.do_send(Disconnect(DisconnectReason::Shutdown));
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        self.finish_if_closed();
        ctx.run_later(SHUTDOWN_GRACE, |act, _| act.close());
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<BroadcastTransaction> for PeerGroup {
    type Result = ResponseFuture<Result<BroadcastOutcome, BroadcastError>>;

    fn handle(&mut self, msg: BroadcastTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let fail = |e| -> Self::Result { Box::pin(async move { Err(e) }) };
        if self.closing {
            return fail(BroadcastError::Closed);
        }
        let ready: Vec<&Entry> = self.peers.values().filter(|e| e.ready).collect();
        if ready.is_empty() {
            return fail(BroadcastError::NoPeers);
        }
        let txid = msg.tx.compute_txid();
        let wtxid = msg.tx.compute_wtxid();
        if !self.broadcasts.by_txid.contains_key(&txid) {
            if self.broadcasts.by_txid.len() >= MAX_BROADCASTS {
                self.broadcasts.expire(Instant::now() + BROADCAST_TTL);
            }
            if self.broadcasts.by_txid.len() >= MAX_BROADCASTS {
                return fail(BroadcastError::Busy);
            }
            self.broadcasts.by_wtxid.insert(wtxid, txid);
            self.broadcasts.by_txid.insert(
                txid,
                PendingTx {
                    tx: Arc::new(msg.tx),
                    wtxid,
                    announced_to: 0,
                    requested: Default::default(),
                    waiters: Vec::new(),
                    expires: Instant::now() + BROADCAST_TTL,
                    rebroadcast: true,
                    confirmed_in: None,
                },
            );
        }
        if let Some(b) = self.broadcasts.by_txid.get(&txid) {
            for e in &ready {
                e.actor.do_send(QueueTransactions(vec![b.tx.clone()]));
            }
        }
        let (reply, answer) = oneshot::channel();
        let min_peers = msg.min_peers.max(1);
        let announced = ready.len();
        if let Some(b) = self.broadcasts.by_txid.get_mut(&txid) {
            if b.waiters.len() >= MAX_WAITERS_PER_TX {
                return fail(BroadcastError::Busy);
            }
            b.announced_to = b.announced_to.max(announced);
            b.expires = Instant::now() + BROADCAST_TTL;
            b.waiters.push((min_peers, reply));
            b.resolve_reached();
        }
        ctx.run_later(msg.timeout, move |act, _| {
            if let Some(b) = act.broadcasts.by_txid.get_mut(&txid) {
                let requested_by = b.requested.len();
                for (min, reply) in b.waiters.drain(..) {
                    let _ = reply.send(Err(BroadcastError::Timeout { requested_by, min_peers: min }));
                }
            }
        });
        Box::pin(async move { answer.await.unwrap_or(Err(BroadcastError::Closed)) })
    }
}

impl Handler<BlockConnected> for PeerGroup {
    type Result = ();

    /// A broadcast seen in a block of the best chain is done: waiters get their outcome and
    /// rebroadcasting stops. Only a chain sync sends this, for blocks it requested and checked
    /// (an unsolicited block from a peer proves nothing).
    fn handle(&mut self, msg: BlockConnected, _: &mut Context<Self>) {
        if self.broadcasts.by_txid.is_empty() {
            return;
        }
        let hash = msg.0.block_hash();
        for tx in &msg.0.txdata {
            let Some(b) = self.broadcasts.by_txid.get_mut(&tx.compute_txid()) else { continue };
            if b.confirmed_in.is_none() {
                b.confirmed_in = Some(hash);
                info!(txid = %tx.compute_txid(), block = %hash, "broadcast transaction confirmed");
                let outcome = b.outcome();
                for (_, reply) in b.waiters.drain(..) {
                    let _ = reply.send(Ok(outcome.clone()));
                }
            }
        }
    }
}

impl Handler<GetDataReceived> for PeerGroup {
    type Result = ();

    fn handle(&mut self, msg: GetDataReceived, _: &mut Context<Self>) {
        let Some(entry) = self.peers.get(&msg.peer) else { return };
        let actor = entry.actor.clone();
        let mut missing = Vec::new();
        let mut served = std::collections::HashSet::new();
        for item in msg.items.iter() {
            match self.broadcasts.find(item) {
                Some((b, witness)) => {
                    // Each transaction once per request, however often the peer lists it.
                    if !served.insert((b.wtxid, witness)) {
                        continue;
                    }
                    let (tx, counts) = b.serve(witness);
                    actor.do_send(SendMessage(crate::wire::Message::Tx(tx)));
                    if counts {
                        b.requested.insert(msg.peer);
                        b.resolve_reached();
                    } else {
                        warn!(peer = %msg.addr, "peer asked for a segwit transaction without witness; advertise NODE_WITNESS (peer.services = 8)");
                    }
                }
                None if matches!(
                    item,
                    crate::wire::Inventory::Transaction(_)
                        | crate::wire::Inventory::WitnessTransaction(_)
                        | crate::wire::Inventory::WTx(_)
                ) =>
                {
                    missing.push(*item)
                }
                None => {}
            }
        }
        if !missing.is_empty() {
            // Core moves on to another announcer when told `notfound`.
            actor.do_send(SendMessage(crate::wire::Message::NotFound(missing)));
        }
    }
}

impl Handler<crate::events::TxReceived> for PeerGroup {
    type Result = ();

    /// Relay mode: keep the transaction to serve it and announce it to every other ready peer.
    fn handle(&mut self, msg: crate::events::TxReceived, _: &mut Context<Self>) {
        if !self.config.relay_transactions || self.closing {
            return;
        }
        let txid = msg.tx.compute_txid();
        let wtxid = msg.tx.compute_wtxid();
        if self.broadcasts.by_txid.contains_key(&txid) {
            return;
        }
        if self.broadcasts.by_txid.len() >= MAX_BROADCASTS {
            self.broadcasts.expire(Instant::now() + BROADCAST_TTL);
            if self.broadcasts.by_txid.len() >= MAX_BROADCASTS {
                return;
            }
        }
        let others: Vec<&Entry> =
            self.peers.iter().filter(|(id, e)| **id != msg.peer && e.ready).map(|(_, e)| e).collect();
        for e in &others {
            e.actor.do_send(QueueTransactions(vec![msg.tx.clone()]));
        }
        self.broadcasts.by_wtxid.insert(wtxid, txid);
        self.broadcasts.by_txid.insert(
            txid,
            PendingTx {
                tx: msg.tx.clone(),
                wtxid,
                announced_to: others.len(),
                requested: Default::default(),
                waiters: Vec::new(),
                expires: Instant::now() + BROADCAST_TTL,
                rebroadcast: false,
                confirmed_in: None,
            },
        );
    }
}
