//! [`ChainSync`]: follows the best header chain through a [`PeerGroup`], keeps it on disk, and
//! optionally fetches new blocks. Decisions come from the pure [`HeaderSync`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::BlockHash;
use serde::Serialize;
use tokio::time::Instant;
use tracing::{info, warn};

mod notices;
mod serve;

pub use super::events::ChainEvent;
use super::machine::blocks::{BlockFeed, Cursor, FeedAction};
use super::machine::{HeaderSync, SyncAction, SyncConfig};
use crate::chain::HeaderStore;
use crate::chain::{Checkpoint, HeaderChain};
use crate::events::{
    BlockReceived, GetDataReceived, HeadersReceived, InvReceived, MessageReceived, PeerDisconnected,
    PeerReady, Subscription,
};
use crate::group::{DisconnectPeerWith, Fetch, PeerGroup, Subscribe};
use crate::peer::actor::TipHeight;
use crate::peer::requests::{Request, Response};
use crate::peer::{DisconnectReason, Misbehavior, PeerId};
use crate::Network;

/// How often the watchdog and retries run.
const TICK: Duration = Duration::from_secs(1);
/// How often the header file is flushed to disk while syncing.
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Settings of the chain sync.
#[derive(Debug, Clone)]
pub struct ChainSyncConfig {
    /// The network.
    pub network: Network,
    /// Where `headers.dat` lives; `None` keeps the chain in memory only.
    pub data_dir: Option<PathBuf>,
    /// Start from this header instead of genesis.
    pub checkpoint: Option<Checkpoint>,
    /// Timing.
    pub sync: SyncConfig,
    /// Updated with our best height (feeds the `version` start height of new peers).
    pub tip: TipHeight,
    /// Deliver every block of the best chain in order from the last one delivered (kept in
    /// `data_dir/blocks.json`; on a first start, from the tip once synced), with an undo
    /// event for each delivered block a reorg removes.
    pub fetch_blocks: bool,
    /// Serve peers as Bitcoin Core does: answer their `getheaders`, announce new tips with
    /// `headers` (to peers that sent `sendheaders`) or `inv`, and answer `getdata` for blocks
    /// by fetching them from upstream peers; `NODE_NETWORK | NODE_WITNESS` is advertised
    /// while a full-node peer is connected.
    pub serve: bool,
    /// While serving, offer `NODE_BLOOM` too: peers may load BIP37 filters and ask for
    /// filtered blocks (`merkleblock` and the matched transactions).
    pub serve_bloom: bool,
}

impl ChainSyncConfig {
    /// Defaults for `network`: from genesis, in memory, no block fetching.
    pub fn new(network: Network) -> Self {
        ChainSyncConfig {
            network,
            data_dir: None,
            checkpoint: None,
            sync: SyncConfig::default(),
            tip: TipHeight::default(),
            fetch_blocks: false,
            serve: false,
            serve_bloom: false,
        }
    }
}

/// Subscribes to [`ChainEvent`]s.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeChain(pub Recipient<ChainEvent>);

/// The chain's state.
#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    /// Best header height.
    pub height: u32,
    /// Best header hash.
    pub tip: BlockHash,
    /// At the best tip peers know.
    pub synced: bool,
    /// Headers stored (all branches).
    pub headers: usize,
    /// Notifications dropped because a subscriber's mailbox was full.
    pub dropped_events: u64,
}

/// Asks for the chain's state.
#[derive(Message)]
#[rtype(result = "ChainStatus")]
pub struct GetChainStatus;

/// Headers of the best chain after the first locator hash we know (empty locator: after the
/// chain's first header), up to `max` (at most 2,000; a page of the header stream, see
/// [`header_stream`](super::header_stream)).
#[derive(Message)]
#[rtype(result = "Vec<Header>")]
pub struct GetHeadersAfter {
    /// Locator, newest first.
    pub locator: Vec<BlockHash>,
    /// Most headers to return.
    pub max: usize,
}

/// Stops the chain sync (flushing the header file); answers once stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopChainSync;

/// Why the chain sync could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChainSyncError {
    /// The header file could not be opened.
    #[error(transparent)]
    Store(#[from] crate::chain::StoreError),
    /// The checkpoint is not valid for the network.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] crate::chain::HeaderError),
}

/// Follows the best header chain of a [`PeerGroup`]'s peers.
///
/// ```no_run
/// # async fn demo(group: actix::Addr<btcpeer::group::PeerGroup>) {
/// use actix::Actor;
/// use btcpeer::sync::{ChainSync, ChainSyncConfig, GetChainStatus};
/// let config = ChainSyncConfig::new(btcpeer::Network::Regtest);
/// let sync = ChainSync::new(config, group).unwrap().start();
/// let status = sync.send(GetChainStatus).await.unwrap();
/// println!("height {}", status.height);
/// # }
/// ```
pub struct ChainSync {
    config: ChainSyncConfig,
    group: Addr<PeerGroup>,
    machine: HeaderSync,
    store: Option<HeaderStore>,
    subscribers: Vec<Recipient<ChainEvent>>,
    dropped: u64,
    last_flush: Instant,
    dirty: bool,
    /// A [`flush_soon`](Self::flush_soon) is running.
    flushing: Arc<AtomicBool>,
    /// In-order block delivery (`fetch_blocks`).
    feed: Option<BlockFeed>,
    /// Where the feed's cursor is saved (`data_dir/blocks.json`).
    cursor_path: Option<PathBuf>,
    /// The peer that announced the latest blocks: asked first for them.
    block_hint: Option<PeerId>,
    /// Block events waiting to be handed out, with the consumer tip each leaves; one is out
    /// at a time (`sending`) so order holds and a slow consumer slows the feed.
    outbox: VecDeque<(ChainEvent, Cursor)>,
    sending: bool,
    /// Peers served (`serve`).
    server: Option<serve::Server>,
}

/// Task turns [`ChainSync::settle_soon`] leaves the thread before checking a batch: the hops
/// of a request through the group, with room to spare (a turn costs well under a microsecond).
const SETTLE_AFTER_TURNS: usize = 8;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ChainSync {
    /// Loads the chain (from `data_dir/headers.dat` when set: a damaged file is recovered and
    /// the problem logged) and prepares to sync through `group`.
    pub fn new(config: ChainSyncConfig, group: Addr<PeerGroup>) -> Result<Self, ChainSyncError> {
        let chain = match config.checkpoint {
            Some(cp) => HeaderChain::with_checkpoint(config.network, cp)?,
            None => HeaderChain::new(config.network),
        };
        let (store, chain) = match &config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| crate::chain::StoreError::Io {
                    path: dir.clone(),
                    action: "create directory",
                    source,
                })?;
                let path = dir.join("headers.dat");
                let (store, chain, report) = HeaderStore::open(&path, chain, unix_now())?;
                if let Some(problem) = &report.problem {
                    warn!(path = %path.display(), problem = %problem, "header file damaged; recovered");
                }
                if let Some(warning) = &report.clock_warning {
                    warn!(path = %path.display(), %warning, "header file");
                }
                info!(headers = report.loaded, height = chain.height(), "header chain loaded");
                (Some(store), chain)
            }
            None => (None, chain),
        };
        config.tip.set(i32::try_from(chain.height()).unwrap_or(i32::MAX));
        let sync = SyncConfig { fetch_blocks: config.fetch_blocks, ..config.sync };
        let machine = HeaderSync::new(chain, sync, Instant::now());
        let cursor_path = config.data_dir.as_deref().map(super::cursor::path_in);
        let feed = config.fetch_blocks.then(|| {
            let cursor = cursor_path.as_deref().and_then(super::cursor::load);
            if let Some(c) = cursor {
                info!(height = c.height, hash = %c.hash, "resuming block delivery");
            }
            BlockFeed::new(cursor, config.sync.retry_delay)
        });
        Ok(ChainSync {
            group,
            machine,
            store,
            subscribers: Vec::new(),
            dropped: 0,
            last_flush: Instant::now(),
            dirty: false,
            flushing: Arc::default(),
            feed,
            cursor_path,
            block_hint: None,
            outbox: VecDeque::new(),
            sending: false,
            server: config.serve.then(|| serve::Server::with_bloom(config.serve_bloom)),
            config,
        })
    }

    fn publish(&mut self, event: ChainEvent) {
        self.subscribers.retain(|s| s.connected());
        for s in &self.subscribers {
            if s.try_send(event.clone()).is_err() {
                self.dropped += 1;
            }
        }
    }

    fn flush(&mut self) {
        if let Some(store) = &mut self.store {
            if self.dirty {
                if let Err(e) = store.flush() {
                    warn!(error = %e, "flushing the header file failed");
                }
                self.dirty = false;
            }
        }
        self.last_flush = Instant::now();
    }

    /// [`flush`](Self::flush) on the blocking pool, so that neither the sync nor the actors
    /// sharing its thread wait for the disk (10 ms for a 200,000-header file here). One at a
    /// time; the final flush on stop stays synchronous.
    fn flush_soon(&mut self) {
        self.last_flush = Instant::now();
        let Some(store) = &self.store else { return };
        if !self.dirty || self.flushing.load(Ordering::Acquire) {
            return;
        }
        let sync = match store.flusher() {
            Ok(sync) => sync,
            Err(e) => return warn!(error = %e, "flushing the header file failed"),
        };
        self.dirty = false;
        self.flushing.store(true, Ordering::Release);
        let flushing = self.flushing.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = sync() {
                warn!(error = %e, "flushing the header file failed");
            }
            flushing.store(false, Ordering::Release);
        });
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                SyncAction::GetHeaders { locator, preferred } => {
                    let mut fetch = Fetch::new(Request::Headers { locator, stop: BlockHash::all_zeros() });
                    fetch.preferred = preferred;
                    self.group
                        .send(fetch)
                        .into_actor(self)
                        .map(|result, this, ctx| {
                            let now = Instant::now();
                            match result {
                                Ok(Ok(f)) => match f.response {
                                    Response::Headers(h) => {
                                        // Ask for the next batch first (`receive`), then check
                                        // this one once that request is on its way (`settle`).
                                        this.machine.receive(now, unix_now(), f.peer, h);
                                        this.run(ctx);
                                        this.settle_soon(ctx);
                                        return;
                                    }
                                    _ => this.machine.on_failure(now),
                                },
                                Ok(Err(e)) => {
                                    info!(error = %e, "header request failed");
                                    this.machine.on_failure(now)
                                }
                                Err(_) => this.machine.on_failure(now),
                            }
                            this.run(ctx);
                        })
                        .spawn(ctx);
                }
                SyncAction::Store(headers) => {
                    if let Some(store) = &mut self.store {
                        if let Err(e) = store.append_hashed(&headers) {
                            // A partial record may be on disk now; writing more after it would
                            // misalign the file. Stop writing: the next start cuts the torn
                            // record off and the sync fetches the rest again.
                            tracing::error!(error = %e, "writing the header file failed; not writing it any more");
                            self.store = None;
                        } else {
                            self.dirty = true;
                        }
                    }
                }
                SyncAction::TipChanged { connected, disconnected, tip, peer } => {
                    self.config.tip.set(i32::try_from(tip.height).unwrap_or(i32::MAX));
                    if !disconnected.is_empty() {
                        info!(depth = disconnected.len(), height = tip.height, tip = %tip.hash, "reorganized to more work");
                    }
                    self.announce_tip(&connected);
                    self.publish(ChainEvent::Headers {
                        height: tip.height,
                        tip: tip.hash,
                        count: connected.len(),
                        reorged: disconnected.len(),
                        peer,
                    });
                }
                SyncAction::FetchBlocks { peer, .. } => {
                    // The feed fetches from its cursor; the announcer is asked first.
                    self.block_hint = Some(peer);
                }
                SyncAction::Synced(tip) => {
                    info!(height = tip.height, tip = %tip.hash, "headers synced");
                    self.flush_soon();
                    self.publish(ChainEvent::Synced { height: tip.height, tip: tip.hash });
                }
                SyncAction::Punish { peer, reason } => {
                    warn!(%peer, %reason, "invalid headers");
                    let reason = DisconnectReason::Misbehaving(Misbehavior::InvalidData {
                        reason: reason.to_string(),
                    });
                    self.group.do_send(DisconnectPeerWith { peer, reason });
                }
                SyncAction::PunishBlock { peer, hash, prev } => {
                    warn!(%peer, %hash, %prev, "unsolicited block with an unknown parent");
                    let reason = format!("block {hash}: prev-blk-not-found (parent {prev} unknown)");
                    let reason = DisconnectReason::Misbehaving(Misbehavior::InvalidBlock { reason });
                    self.group.do_send(DisconnectPeerWith { peer, reason });
                }
                SyncAction::Rotate { peer } => {
                    info!(%peer, "tip is stale; replacing the sync peer");
                    self.group.do_send(DisconnectPeerWith { peer, reason: DisconnectReason::Requested });
                }
            }
        }
        if let Some(feed) = &mut self.feed {
            feed.update(Instant::now(), self.machine.chain(), self.machine.ever_synced(), self.block_hint);
        }
        self.run_feed(ctx);
    }

    /// Settles the received batch (validation and storage) after letting the thread's other
    /// tasks run: the next `getheaders` passes through the group (a `Fetch`, a `PickPeer`, a
    /// `FetchFromPeer`), each hop a task turn on this thread, and should leave before the
    /// batch's ~1 ms of checks, so the peer sends the next batch while this one is checked.
    /// Any other input settles the batch first, so the order of events never changes.
    fn settle_soon(&mut self, ctx: &mut Context<Self>) {
        let turns = async {
            for _ in 0..SETTLE_AFTER_TURNS {
                tokio::task::yield_now().await;
            }
        };
        actix::fut::wrap_future::<_, Self>(turns)
            .map(|(), this, ctx| {
                this.machine.settle();
                this.run(ctx);
            })
            .spawn(ctx);
    }

    /// Hands the next ordered block event to every subscriber, waiting until each handled it
    /// (never dropped: a drop would be a silent gap), then tells the feed.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.sending {
            return;
        }
        let Some((event, after)) = self.outbox.pop_front() else { return };
        self.subscribers.retain(|s| s.connected());
        let sends: Vec<_> = self.subscribers.iter().map(|s| s.send(event.clone())).collect();
        self.sending = true;
        futures_util::future::join_all(sends)
            .into_actor(self)
            .map(move |_, this, ctx| {
                this.sending = false;
                if let Some(feed) = this.feed.as_mut() {
                    feed.on_consumed(Instant::now(), this.machine.chain(), after);
                }
                this.run_feed(ctx);
            })
            .spawn(ctx);
    }

    /// Executes the block feed's actions.
    fn run_feed(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.feed.as_mut().and_then(BlockFeed::poll_action) {
            match action {
                FeedAction::Fetch { hash, preferred, .. } => self.fetch_block(hash, preferred, ctx),
                FeedAction::Deliver { hash, height, block, peer } => {
                    self.group.do_send(crate::group::BlockConnected(block.clone()));
                    let size = bitcoin::consensus::encode::serialize(&*block).len();
                    let txs = block.txdata.len();
                    let event = ChainEvent::Block { hash, height, txs, size, block, peer };
                    self.outbox.push_back((event, Cursor { hash, height }));
                }
                FeedAction::Disconnected { hash, height, parent } => {
                    info!(%hash, height, "delivered block left the best chain");
                    self.outbox.push_back((ChainEvent::BlockDisconnected { hash, height }, parent));
                }
                FeedAction::Failed { hash, height, error } => {
                    warn!(%hash, height, %error, "block fetch failed; retrying");
                    self.publish(ChainEvent::BlockFailed { hash, height, error });
                }
                FeedAction::Save(cursor) => {
                    if let Some(path) = &self.cursor_path {
                        super::cursor::save(path, &cursor);
                    }
                }
                FeedAction::Lost(cursor) => {
                    warn!(
                        height = cursor.height,
                        hash = %cursor.hash,
                        "the last delivered block is not in the header chain; delivering from the tip"
                    );
                }
            }
        }
        self.pump(ctx);
    }

    fn fetch_block(&mut self, hash: BlockHash, preferred: Option<PeerId>, ctx: &mut Context<Self>) {
        let mut fetch = Fetch::new(Request::Blocks { hashes: vec![hash] });
        fetch.preferred = preferred;
        self.group
            .send(fetch)
            .into_actor(self)
            .map(move |result, this: &mut Self, ctx| {
                let now = Instant::now();
                let Some(feed) = this.feed.as_mut() else { return };
                match result {
                    Ok(Ok(f)) => match f.response {
                        Response::Blocks(mut blocks) if blocks.len() == 1 => {
                            if let Some(block) = blocks.pop() {
                                feed.on_block(now, this.machine.chain(), hash, block, f.peer);
                            }
                        }
                        _ => feed.on_failure(now, hash, "unexpected response".to_owned()),
                    },
                    Ok(Err(e)) => feed.on_failure(now, hash, e.to_string()),
                    Err(e) => feed.on_failure(now, hash, e.to_string()),
                }
                this.run_feed(ctx);
            })
            .spawn(ctx);
    }
}

impl Actor for ChainSync {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Private notices: nothing outside the crate can feed the sync fake headers or peers.
        let me = ctx.address();
        let subs = [
            Subscription::internal::<PeerReady, _>(&me),
            Subscription::internal::<PeerDisconnected, _>(&me),
            Subscription::internal::<HeadersReceived, _>(&me),
            Subscription::internal::<InvReceived, _>(&me),
            // Unsolicited blocks (answers to requests are not published), as Core's BLOCK.
            Subscription::internal::<BlockReceived, _>(&me),
        ];
        for s in subs {
            self.group.do_send(Subscribe(s));
        }
        if self.server.is_some() {
            self.group.do_send(Subscribe(Subscription::internal::<MessageReceived, _>(&me)));
            self.group.do_send(Subscribe(Subscription::internal::<GetDataReceived, _>(&me)));
        }
        // Peers that became ready before we subscribed announce nothing again: ask for them.
        self.group
            .send(crate::group::GetPeers)
            .into_actor(self)
            .map(|peers, this, ctx| {
                let now = Instant::now();
                for p in peers.unwrap_or_default() {
                    if p.state == crate::peer::PeerState::Ready {
                        if let Some(server) = this.server.as_mut() {
                            server.ready(p.id, p.services);
                        }
                        this.machine.peer_ready(now, p.id, p.start_height);
                    }
                }
                this.update_services();
                this.run(ctx);
            })
            .wait(ctx);
        ctx.run_interval(TICK, |this, ctx| {
            this.machine.tick(Instant::now());
            this.run(ctx);
            if this.last_flush.elapsed() >= FLUSH_INTERVAL {
                this.flush_soon();
            }
        });
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) -> Running {
        // A batch received but not yet checked is checked and written before the final flush.
        self.machine.settle();
        self.run(ctx);
        self.flush();
        Running::Stop
    }
}

impl Handler<SubscribeChain> for ChainSync {
    type Result = ();
    fn handle(&mut self, m: SubscribeChain, _: &mut Context<Self>) {
        self.subscribers.push(m.0);
    }
}

impl Handler<GetChainStatus> for ChainSync {
    type Result = MessageResult<GetChainStatus>;
    fn handle(&mut self, _: GetChainStatus, _: &mut Context<Self>) -> Self::Result {
        let chain = self.machine.chain();
        let tip = chain.tip();
        MessageResult(ChainStatus {
            height: tip.height,
            tip: tip.hash,
            synced: self.machine.is_synced(),
            headers: chain.len(),
            dropped_events: self.dropped,
        })
    }
}

impl Handler<StopChainSync> for ChainSync {
    type Result = ();
    fn handle(&mut self, _: StopChainSync, ctx: &mut Context<Self>) {
        self.flush();
        ctx.stop();
    }
}

impl Handler<GetHeadersAfter> for ChainSync {
    type Result = MessageResult<GetHeadersAfter>;
    fn handle(&mut self, m: GetHeadersAfter, _: &mut Context<Self>) -> Self::Result {
        let chain = self.machine.chain();
        let on_best = m.locator.iter().any(|h| chain.is_on_best_chain(h));
        let locator = match m.locator.iter().find(|h| chain.contains(h)) {
            // After a reorg the caller's newest hashes may sit on a side branch: continue from
            // where that branch leaves the best chain.
            Some(h) if !on_best => chain.locator_from(h).unwrap_or_default(),
            _ if m.locator.is_empty() || !on_best => {
                chain.hash_at(chain.start_height()).into_iter().collect()
            }
            _ => m.locator,
        };
        MessageResult(chain.headers_after(&locator, BlockHash::all_zeros(), m.max.min(2_000)))
    }
}
