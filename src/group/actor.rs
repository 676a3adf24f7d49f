//! The `PeerGroup` actor: owns the peers, the listeners, the address book and the ban list,
//! and executes the decisions of [`Policy`], of the broadcast cache and of the readiness
//! waiters. Its handlers live in submodules by subject; inbound connections in
//! `group/listener.rs`, saved state in `group/state.rs`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

mod admin;
mod fetch;
mod peers;
mod transactions;
mod txrequests;

pub use super::config::GroupConfig;

use super::bans::BanList;
use super::broadcast::Broadcasts;
use super::messages::*;
use super::policy::{Dial, Policy};
use super::state::{self, SavedState};
use super::txrequest::TxRequestTracker;
use super::waiters::{ReadyWaiters, Want};
use crate::addrbook::AddrBook;
use crate::discovery::query_seeds;
use crate::events::{Budget, SubscriberId, Subscribers, Subscription};
use crate::peer::messages::{Disconnect, QueueTransactions};
use crate::peer::{Advertise, DisconnectReason, Link, PeerActor, PeerAddr, PeerId, PeerInfo};

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
/// Departed peers remembered for late punishment.
const RECENTLY_GONE: usize = 256;
/// Longest wait a caller can ask for (a year): longer ones are cut to it, so deadlines never
/// overflow the clock.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

type BroadcastReply = oneshot::Sender<Result<BroadcastOutcome, BroadcastError>>;
type ReadyReply = oneshot::Sender<Result<usize, GroupError>>;

pub(super) struct Entry {
    pub(super) actor: Addr<PeerActor>,
    pub(super) addr: PeerAddr,
    pub(super) link: Link,
    pub(super) ready: bool,
    pub(super) connected_at: Instant,
    /// What the peer said in its `version` (set when ready).
    pub(super) info: Option<Arc<PeerInfo>>,
}

/// Supervisor of all connections.
pub struct PeerGroup {
    pub(super) config: GroupConfig,
    policy: Policy,
    book: AddrBook,
    pub(super) bans: BanList,
    subscriptions: Vec<(SubscriberId, Subscription)>,
    group_events: Subscribers,
    /// The byte budget of the group's own notices from all its peers.
    own_budget: Budget,
    pub(super) peers: HashMap<PeerId, Entry>,
    pub(super) inbound_per_ip: HashMap<IpAddr, usize>,
    /// Peer threads, started as peers need them (up to [`GroupConfig::arbiters`]).
    arbiters: Vec<Arbiter>,
    next_arbiter: usize,
    /// The machine's cores, read once (the default number of peer threads).
    cores: Option<usize>,
    /// What outbound peers announce of us (see [`advertise`](Self::advertise)).
    pub(super) advertised: Option<Advertise>,
    pub(super) accepting: bool,
    pub(super) closing: bool,
    closed: bool,
    waiting: Vec<oneshot::Sender<()>>,
    pub(super) listening: Vec<SocketAddr>,
    seeding: bool,
    last_seed_query: Option<Instant>,
    last_save: Instant,
    /// Held while state files are written, so two saves never interleave.
    save_lock: Arc<std::sync::Mutex<()>>,
    bans_dirty: bool,
    broadcasts: Broadcasts<BroadcastReply>,
    /// Callers of `WaitForPeers` and requests waiting for a capable peer.
    ready_waiters: ReadyWaiters<ReadyReply>,
    /// Addresses of the last peers that left, so a punishment that arrives after the peer hung
    /// up still bans its address.
    recently_gone: VecDeque<(PeerId, PeerAddr)>,
    /// Misbehaviour reported for live peers (by `DisconnectPeerWith`), applied when they leave.
    punish: HashMap<PeerId, String>,
    rng: StdRng,
    /// Which peer to ask for each announced transaction ([`TxRequestTracker`]).
    pub(super) txs: TxRequestTracker,
    /// The group's `TxReceived` subscribers: fed by the group with the first copy of each
    /// transaction, never given to the peers (which would deliver every copy).
    pub(super) tx_events: Subscribers,
    /// The tracker's next deadline and its timer.
    pub(super) tx_timer: Option<(Instant, SpawnHandle)>,
    /// The policy's next deadline (a static redial, the end of a storm pause) and its timer,
    /// so a 250 ms backoff redials after 250 ms, not at the next 1 s tick.
    policy_timer: Option<(Instant, SpawnHandle)>,
    /// This actor's address, once started (peers report `notfound` to it).
    pub(super) me: Option<Addr<PeerGroup>>,
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Hands each waiter its answer (a caller that gave up is no longer listening).
fn deliver<T>(answers: Vec<(oneshot::Sender<T>, T)>) {
    for (reply, answer) in answers {
        let _ = reply.send(answer);
    }
}

impl PeerGroup {
    /// A group with these settings and initial subscriptions. Saved state in `data_dir` is
    /// loaded here; problems with it are logged and the backup or an empty state is used.
    pub fn new(config: GroupConfig, subscriptions: Vec<Subscription>) -> Self {
        let now = Instant::now();
        let mut rng = StdRng::from_entropy();
        let (book, bans) = state::load(&config, &mut rng, unix_now());
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
            next_arbiter: 0,
            cores: None,
            advertised: None,
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
            ready_waiters: ReadyWaiters::default(),
            recently_gone: VecDeque::new(),
            punish: HashMap::new(),
            rng,
            txs: TxRequestTracker::default(),
            tx_events: Subscribers::new(),
            own_budget: Budget::internal(),
            tx_timer: None,
            policy_timer: None,
            me: None,
        };
        for s in subscriptions {
            group.add_subscription(s);
        }
        group
    }

    fn add_subscription(&mut self, s: Subscription) -> SubscriberId {
        // One budget for this subscription across all peers (not one per peer).
        let s = s.with_default_budget();
        let id = self.group_events.add(s.clone());
        if is_tx(&s) {
            self.tx_events.add_with_id(id, s.clone());
        }
        self.subscriptions.push((id, s));
        id
    }

    /// The group's subscriptions that peers deliver themselves: all but `TxReceived`, which the
    /// group delivers once per transaction.
    pub(super) fn peer_subscriptions(&self) -> impl Iterator<Item = &(SubscriberId, Subscription)> {
        self.subscriptions.iter().filter(|(_, s)| !is_tx(s))
    }

    /// The subscribers a new peer gets: the group's subscribers plus the group itself.
    pub(super) fn subscribers(&self, ctx: &Context<Self>) -> Subscribers {
        let mut subs = Subscribers::new();
        for (id, s) in self.peer_subscriptions() {
            subs.add_with_id(*id, s.clone());
        }
        for s in own_subscriptions(ctx, self.requests_txs(), &self.own_budget) {
            subs.add(s);
        }
        subs
    }

    /// Starts a peer of this group (dialed or accepted); it leaves its transaction requests to
    /// the group.
    pub(super) fn start_peer(&mut self, actor: PeerActor) -> Addr<PeerActor> {
        let addr = PeerActor::start_in_arbiter(&self.next_peer_thread(), move |_| actor);
        self.hand_tx_requests_over(&addr);
        addr
    }

    /// The thread for the next peer, round robin. Threads start as the first peers need them,
    /// one at a time: the first dial waits for one thread start, not for all of them.
    fn next_peer_thread(&mut self) -> ArbiterHandle {
        if self.closed {
            // The peer threads are stopped; whatever starts now lives briefly on this one.
            return Arbiter::current();
        }
        let n = match self.config.arbiters {
            0 => {
                *self.cores.get_or_insert_with(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            }
            n => n,
        };
        let i = self.next_arbiter % n;
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        match self.arbiters.get(i) {
            Some(arbiter) => arbiter.handle(),
            // Indices come in order, so the missing one is the next to start.
            None => {
                let arbiter = Arbiter::new();
                let handle = arbiter.handle();
                self.arbiters.push(arbiter);
                handle
            }
        }
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
        self.arm_policy_timer(now, ctx);
    }

    /// Arms a timer at [`Policy::next_deadline`] unless one is armed at or before it. A
    /// deadline already past that `poll_dials` did not act on (a slot the user banned, a storm
    /// pause with nothing to dial) is left to the 1 s tick, so it cannot spin.
    fn arm_policy_timer(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let Some(due) = self.policy.next_deadline().filter(|due| *due > now) else { return };
        if self.policy_timer.as_ref().is_some_and(|(at, _)| *at <= due) {
            return;
        }
        if let Some((_, handle)) = self.policy_timer.take() {
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(due.saturating_duration_since(now), |act, ctx| {
            act.policy_timer = None;
            act.run_policy(ctx);
        });
        self.policy_timer = Some((due, handle));
    }

    fn dial(&mut self, dial: Dial, ctx: &mut Context<Self>) {
        let mut peer = self.config.peer.clone();
        peer.machine.advertise = self.advertised.clone();
        let actor = PeerActor::outbound(peer, dial.addr.clone(), self.subscribers(ctx));
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

    /// Saves the address book and bans: in the background (periodic saves), or before
    /// returning (shutdown). Both files are written atomically with a backup.
    fn save(&mut self, background: bool) {
        let Some(dir) = self.config.data_dir.clone() else { return };
        self.last_save = Instant::now();
        let saved = SavedState { book: self.book.snapshot(), bans: self.bans.snapshot() };
        let lock = self.save_lock.clone();
        let write = move || state::save(&dir, &saved, &lock);
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
        self.run_tx_requests(ctx);
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
            for a in self.arbiters.drain(..) {
                a.stop();
            }
        }
        deliver(self.ready_waiters.close());
        for w in self.waiting.drain(..) {
            let _ = w.send(());
        }
    }

    /// Removes a peer from the books (and its inbound slot).
    pub(super) fn forget(&mut self, id: PeerId) -> Option<Entry> {
        let entry = self.peers.remove(&id)?;
        // Its requests in flight go to the next announcers at the next run of the tracker.
        self.txs.peer_disconnected(id);
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
    pub(super) fn enforce_hard_limit(&mut self) {
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

    /// Peers past their handshake.
    fn ready_count(&self) -> usize {
        self.peers.values().filter(|e| e.ready).count()
    }

    /// A peer finished its handshake (or was adopted ready): requests can use it from now on,
    /// our pending broadcasts reach it, and callers waiting for peers are answered.
    fn mark_ready(&mut self, id: PeerId, info: Arc<PeerInfo>) {
        let Some(entry) = self.peers.get_mut(&id) else { return };
        if entry.ready {
            return;
        }
        entry.ready = true;
        entry.info = Some(info);
        self.track_tx_peer(id);
        let Some(entry) = self.peers.get_mut(&id) else { return };
        let pending = self.broadcasts.for_newcomer(entry.link, Instant::now());
        if !pending.is_empty() {
            entry.actor.do_send(QueueTransactions(pending));
        }
        if entry.link == Link::Outbound {
            self.policy.on_ready(id);
            self.book.good(&entry.addr, unix_now());
            // As Core's VERSION handling: an outbound peer's own word on its services wins.
            if let Some(info) = &entry.info {
                self.book.set_services(&entry.addr, info.services);
            }
        }
        deliver(self.ready_waiters.on_ready(self.ready_count()));
    }

    /// Registers a caller waiting for `want`, answered through the receiver by the readiness
    /// bookkeeping (no polling): a timer per caller fails it at its own deadline.
    fn wait_for_ready(
        &mut self,
        want: Want,
        timeout: Duration,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<usize, GroupError>> {
        let (reply, answer) = oneshot::channel();
        if self.closing {
            let _ = reply.send(Err(GroupError::Closed));
            return answer;
        }
        let timeout = timeout.min(LONGEST_WAIT);
        let now = Instant::now();
        match self.ready_waiters.wait(want, now + timeout, reply, self.ready_count(), now) {
            Some((reply, result)) => {
                let _ = reply.send(result);
            }
            None => {
                ctx.run_later(timeout, |act, _| {
                    let ready = act.ready_count();
                    deliver(act.ready_waiters.expire(Instant::now(), ready));
                });
            }
        }
        answer
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
}

impl Actor for PeerGroup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(GROUP_MAILBOX);
        self.me = Some(ctx.address());
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        // Before the first dial: a restart must not try v2 again with a remembered v1-only peer.
        self.load_v1_only();
        self.run_policy(ctx);
        self.listen(ctx);
    }
}

/// What the group itself listens to on every peer.
/// The group's own subscriptions on each peer, through private notices (see
/// [`Notice`](crate::events::Notice)): nothing outside the crate can fake a disconnect.
/// `TxReceived` always (the group delivers it to its subscribers, once per transaction, and
/// relays), `InvReceived` when the group requests announced transactions.
fn own_subscriptions(ctx: &Context<PeerGroup>, requests_txs: bool, budget: &Budget) -> Vec<Subscription> {
    use crate::events::{
        AddrReceived, GetDataReceived, InvReceived, PeerDisconnected, PeerReady, TxReceived,
    };
    let me = ctx.address();
    let mut subs = vec![
        Subscription::internal::<PeerDisconnected, _>(&me),
        Subscription::internal::<PeerReady, _>(&me),
        Subscription::internal::<AddrReceived, _>(&me),
        Subscription::internal::<GetDataReceived, _>(&me),
        Subscription::internal::<TxReceived, _>(&me),
    ];
    if requests_txs {
        subs.push(Subscription::internal::<InvReceived, _>(&me));
    }
    subs.into_iter().map(|s| s.with_budget(budget)).collect()
}

/// A `TxReceived` subscription (delivered by the group, not by its peers).
fn is_tx(s: &Subscription) -> bool {
    s.kind() == <crate::events::TxReceived as crate::events::Notification>::KIND
}
