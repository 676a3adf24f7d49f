//! [`HeaderChain`]: connecting headers, forks and reorgs, locators, fork eviction.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;

use bitcoin::block::Header;
use bitcoin::pow::Work;
use bitcoin::BlockHash;

use super::best::BestChain;
use super::validate::{self, Ancestors, Rules, TimeWindow};
use super::{Checkpoint, Connected, HashedHeaders, HeaderError, Tip};
use crate::Network;

/// Default cap on headers kept off the best chain (forks): about 170 bytes each, under 4 MB.
///
/// Memory, not consensus: when more are stored, the lowest-work fork tips are evicted first
/// (newest first among equals), so parents always outlive their children, cheap forks (regtest,
/// or difficulty-1 forks off early mainnet) go before competitive ones, and a peer cannot grow
/// memory by feeding forks. A fork longer than this from its fork point cannot be followed; Core
/// handles such chains with its two-pass headers presync, which we do not implement.
pub const MAX_FORK_HEADERS: usize = 10_000;

/// A header stored off the best chain.
#[derive(Debug, Clone, Copy)]
struct SideEntry {
    header: Header,
    height: u32,
    /// Cumulative chainwork.
    work: Work,
    /// Arrival order, for eviction ties.
    seq: u64,
}

/// A chain of headers for a network, from genesis or a [`Checkpoint`], with its forks.
///
/// Pure: no I/O and no clock (`now` is an argument). The best chain is stored compactly (about
/// 100 bytes per header, see the `best` module); forks are capped at [`MAX_FORK_HEADERS`].
#[derive(Clone)]
pub struct HeaderChain {
    network: Network,
    rules: Rules,
    best: BestChain,
    side: HashMap<BlockHash, SideEntry>,
    next_seq: u64,
    max_fork_headers: usize,
    /// The network's checkpoints (height, hash), ascending.
    pub(super) checkpoints: Vec<(u32, BlockHash)>,
}

impl fmt::Debug for HeaderChain {
    // A summary: the derived form would print every header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderChain")
            .field("network", &self.network)
            .field("start_height", &self.best.start())
            .field("height", &self.best.height())
            .field("tip", &self.best.tip_hash())
            .field("fork_headers", &self.side.len())
            .finish()
    }
}

/// The chain ending at the header being built on: the best chain up to `base`, then `branch`.
///
/// Owned, so the chain can change under it: within one `connect` the best chain is only ever
/// cut back to `base`, never below.
struct Path {
    base: u32,
    branch: Vec<Header>,
    tip_hash: BlockHash,
}

impl Path {
    fn tip_height(&self) -> u32 {
        self.base + self.branch.len() as u32
    }

    /// Hash of `branch[i]`: the next header's parent, or the tip's.
    fn branch_hash(&self, i: usize) -> BlockHash {
        self.branch.get(i + 1).map_or(self.tip_hash, |h| h.prev_blockhash)
    }

    fn push(&mut self, header: Header, hash: BlockHash) {
        self.branch.push(header);
        self.tip_hash = hash;
    }
}

struct View<'a> {
    best: &'a BestChain,
    path: &'a Path,
    /// The path tip's median time past, when the caller keeps it.
    mtp: Option<(u32, usize)>,
}

impl Ancestors for View<'_> {
    fn get(&self, height: u32) -> Option<Header> {
        if height <= self.path.base {
            self.best.header_at(height)
        } else {
            self.path.branch.get((height - self.path.base - 1) as usize).copied()
        }
    }

    fn bits_time(&self, height: u32) -> Option<(u32, u32)> {
        if height <= self.path.base {
            self.best.bits_time(height)
        } else {
            self.get(height).map(|h| (h.bits.to_consensus(), h.time))
        }
    }

    fn median_time_past(&self, prev_height: u32, prev: &Header) -> (u32, usize) {
        match self.mtp {
            Some(mtp) if prev_height == self.path.tip_height() => mtp,
            _ => validate::median_time_past(self, prev_height, prev),
        }
    }
}

impl View<'_> {
    fn hash_at(&self, height: u32) -> Option<BlockHash> {
        if height <= self.path.base {
            self.best.hash_at(height)
        } else {
            let i = (height - self.path.base - 1) as usize;
            (i < self.path.branch.len()).then(|| self.path.branch_hash(i))
        }
    }
}

impl HeaderChain {
    /// A chain holding only the network's genesis header.
    pub fn new(network: Network) -> Self {
        let genesis = bitcoin::constants::genesis_block(network.to_bitcoin()).header;
        Self::starting_at(network, 0, genesis)
    }

    /// A chain starting at a trusted checkpoint instead of genesis. Fails (with
    /// [`HeaderError::BadCheckpoint`]) if the header's proof of work is invalid, if height 0 is
    /// not the genesis header, or if the height is not a multiple of the retarget interval on a
    /// network that retargets.
    pub fn with_checkpoint(network: Network, cp: Checkpoint) -> Result<Self, HeaderError> {
        let bad = |reason| HeaderError::BadCheckpoint { height: cp.height, reason };
        let genesis = bitcoin::constants::genesis_block(network.to_bitcoin()).header;
        if cp.height == 0 {
            return if cp.header == genesis {
                Ok(Self::new(network))
            } else {
                Err(bad("height 0 must be genesis"))
            };
        }
        // Heights are u32; far below the limit, no chain can ever reach it.
        if cp.height > u32::MAX / 2 {
            return Err(bad("height is beyond any possible chain"));
        }
        let rules = Rules::new(network, cp.height);
        if !rules.params.no_pow_retargeting && cp.height % rules.interval != 0 {
            return Err(bad("height is not a multiple of the 2016-block retarget interval"));
        }
        if validate::check_pow(&rules, &cp.header, cp.header.block_hash()).is_err() {
            return Err(bad("invalid proof of work"));
        }
        Ok(Self::starting_at(network, cp.height, cp.header))
    }

    fn starting_at(network: Network, height: u32, header: Header) -> Self {
        let rules = Rules::new(network, height);
        let best = BestChain::new(height, header, header.block_hash(), header.work());
        HeaderChain {
            network,
            rules,
            best,
            side: HashMap::new(),
            next_seq: 0,
            max_fork_headers: MAX_FORK_HEADERS,
            checkpoints: network
                .checkpoints()
                .iter()
                .filter_map(|(h, hex)| hex.parse::<BlockHash>().ok().map(|hash| (*h, hash)))
                .collect(),
        }
    }

    /// Changes the cap on headers kept off the best chain (default [`MAX_FORK_HEADERS`]);
    /// applies from the next `connect`.
    pub fn set_max_fork_headers(&mut self, max: usize) {
        self.max_fork_headers = max;
    }

    /// The network whose rules apply.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Height of the chain's first header: 0, or the checkpoint's.
    pub fn start_height(&self) -> u32 {
        self.best.start()
    }

    /// The best header.
    pub fn tip(&self) -> Tip {
        Tip {
            hash: self.best.tip_hash(),
            height: self.best.height(),
            header: self.best.tip_header(),
            work: self.best.tip_work(),
        }
    }

    /// Height of the best header.
    pub fn height(&self) -> u32 {
        self.best.height()
    }

    /// Chainwork of the best header (counted from the chain's start).
    pub fn work(&self) -> Work {
        self.best.tip_work()
    }

    /// Whether the header is stored, on any branch.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.side.contains_key(hash) || self.best.height_of(hash).is_some()
    }

    /// Height of a header on the best chain (`None` if unknown or on a fork).
    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        self.best.height_of(hash)
    }

    /// A stored header and its height, on any branch.
    pub fn header(&self, hash: &BlockHash) -> Option<(Header, u32)> {
        match self.best.height_of(hash) {
            Some(h) => self.best.header_at(h).map(|hdr| (hdr, h)),
            None => self.side.get(hash).map(|e| (e.header, e.height)),
        }
    }

    /// The best chain's header at `height`.
    pub fn header_at(&self, height: u32) -> Option<Header> {
        self.best.header_at(height)
    }

    /// The best chain's hash at `height` (rebuilt from the nearest stored hash below: a few
    /// sha256d at most).
    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.best.hash_at(height)
    }

    /// Whether the header is on the best chain.
    pub fn is_on_best_chain(&self, hash: &BlockHash) -> bool {
        self.best.height_of(hash).is_some()
    }

    /// Number of headers stored, on all branches, the start included.
    pub fn len(&self) -> usize {
        self.best.len() + self.side.len()
    }

    /// Always false: the chain holds at least its start header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of headers stored off the best chain.
    pub fn fork_len(&self) -> usize {
        self.side.len()
    }

    /// A locator from the best tip, as Core's `CChain::GetLocator`: the tip and the ten headers
    /// below it, then steps doubling from 2, ending with genesis (or the checkpoint). At most
    /// [`MAX_LOCATOR_SZ`](super::MAX_LOCATOR_SZ) hashes (about 40 in practice).
    pub fn locator(&self) -> Vec<BlockHash> {
        validate::locator_entries(self.best.height(), self.best.start(), |h| self.best.hash_at(h))
    }

    /// A locator from any stored header (`None` if unknown).
    pub fn locator_from(&self, hash: &BlockHash) -> Option<Vec<BlockHash>> {
        let path = self.path_to(hash)?;
        let view = View { best: &self.best, path: &path, mtp: None };
        Some(validate::locator_entries(path.tip_height(), self.best.start(), |h| view.hash_at(h)))
    }

    /// Serves `getheaders` as Core does: after the first locator hash on the best chain (or
    /// after the start when none is), the following best-chain headers, at most `max`, stopping
    /// after `stop` (all zeros: no stop). An empty locator returns just the `stop` header, if
    /// known on any branch. Core's limit is `MAX_HEADERS_RESULTS` (2,000).
    pub fn headers_after(&self, locator: &[BlockHash], stop: BlockHash, max: usize) -> Vec<Header> {
        if max == 0 {
            return Vec::new();
        }
        if locator.is_empty() {
            return self.header(&stop).map(|(h, _)| vec![h]).unwrap_or_default();
        }
        let fork = locator.iter().find_map(|h| self.best.height_of(h)).unwrap_or(self.best.start());
        let mut out = Vec::new();
        for (header, hash) in self.best.iter_from(fork + 1) {
            out.push(header);
            if out.len() >= max || hash == stop {
                break;
            }
        }
        out
    }

    /// Every stored header except the start, parents before children: the best chain by
    /// height, then the forks by height. What a compacted store file holds.
    pub fn stored_headers(&self) -> impl Iterator<Item = Header> + '_ {
        let mut side: Vec<&SideEntry> = self.side.values().collect();
        side.sort_unstable_by_key(|e| (e.height, e.seq));
        self.best.iter_from(self.best.start() + 1).map(|(h, _)| h).chain(side.into_iter().map(|e| e.header))
    }

    /// Validates and adds headers (a `headers` message, in order). Headers already known are
    /// skipped. `now` is unix time in seconds (for the 2-hour future limit).
    ///
    /// Like Core, the whole message is rejected first if any header's proof of work is invalid
    /// or the headers are not chained; then headers are checked against their parents one by
    /// one and added until one fails. `Err` means nothing was added; a failure after some were
    /// added is in [`Connected::error`]. Costs one sha256d per header plus a few comparisons;
    /// a fork walks back to the best chain once per call.
    pub fn connect(&mut self, headers: &[Header], now: u64) -> Result<Connected, HeaderError> {
        self.connect_hashed(&HashedHeaders::new(headers.to_vec()), now)
    }

    /// [`connect`](Self::connect) for headers hashed once on the way in: nothing is hashed
    /// again. The added headers are `headers.range(known..known + added)`, ready for
    /// [`HeaderStore::append_hashed`](super::HeaderStore::append_hashed).
    pub fn connect_hashed(&mut self, headers: &HashedHeaders, now: u64) -> Result<Connected, HeaderError> {
        let mut connected = self.connect_hashed_unlisted(headers, now)?;
        let added = headers.headers().get(connected.known..connected.known + connected.added);
        connected.added_headers = added.map(<[Header]>::to_vec).unwrap_or_default();
        Ok(connected)
    }

    /// [`connect_hashed`](Self::connect_hashed) leaving [`Connected::added_headers`] empty:
    /// the sync, which has the added headers as `headers.range(known..known + added)`, skips
    /// a copy of each batch.
    pub(crate) fn connect_hashed_unlisted(
        &mut self,
        headers: &HashedHeaders,
        now: u64,
    ) -> Result<Connected, HeaderError> {
        let (mut connected, failure) = self.connect_with(headers.headers(), headers.hashes(), Some(now));
        match failure {
            Some((_, e)) if connected.added == 0 => Err(e),
            Some((_, e)) => {
                connected.error = Some(e);
                Ok(connected)
            }
            None => Ok(connected),
        }
    }

    /// [`connect`](Self::connect) with the hashes already computed (`hashes[i]` must be
    /// `headers[i]`'s) and the future-time rule skipped when `now` is `None`. On failure also
    /// says which header failed.
    pub(crate) fn connect_with(
        &mut self,
        headers: &[Header],
        hashes: &[BlockHash],
        now: Option<u64>,
    ) -> (Connected, Option<(usize, HeaderError)>) {
        let mut out = Connected::default();
        let n = headers.len().min(hashes.len());
        // Message-level checks first, as Core's `CheckHeadersPoW`: PoW, then continuity.
        let mut targets = crate::wire::pow::TargetCache::default();
        for i in 0..n {
            if let Err(e) = validate::check_pow_cached(&self.rules, &headers[i], hashes[i], &mut targets) {
                return (out, Some((i, e)));
            }
        }
        for i in 1..n {
            if headers[i].prev_blockhash != hashes[i - 1] {
                return (out, Some((i, HeaderError::NotChained { index: i })));
            }
        }
        // A known header's parent is known, and an unknown one's children cannot be (eviction
        // removes childless headers only), so the known headers form a prefix.
        let first_new = (0..n).find(|&i| !self.contains(&hashes[i])).unwrap_or(n);
        out.known = first_new;
        if first_new == n {
            return (out, None);
        }
        let parent = headers[first_new].prev_blockhash;
        let Some(mut path) = self.path_to(&parent) else {
            let e = if Some(parent) == self.best.header_at(self.best.start()).map(|h| h.prev_blockhash) {
                HeaderError::ForkBeforeCheckpoint { hash: hashes[first_new] }
            } else {
                HeaderError::Unconnected { prev: parent }
            };
            return (out, Some((first_new, e)));
        };
        let mut parent_work = self.work_of(&path);
        let mut walk: Option<u32> = None; // testnet walk-back result for the path's tip
        let mut times: Option<TimeWindow> = None; // the path tip's last 11 timestamps
        let mut work_of_bits: Option<(u32, Work)> = None; // a header's work, by its bits

        let mut failure = None;
        for i in first_new..n {
            let (header, hash) = (headers[i], hashes[i]);
            let mut view = View { best: &self.best, path: &path, mtp: None };
            let prev_height = path.tip_height();
            let Some(prev) = view.get(prev_height) else { break };
            let window = times.get_or_insert_with(|| TimeWindow::new(&view, prev_height, &prev));
            view.mtp = Some(window.median());
            let rules = &self.rules;
            // The testnet walk-back runs once per call; later headers update it in O(1).
            let walk_value = match walk {
                Some(bits) => bits,
                None if rules.params.allow_min_difficulty_blocks => {
                    validate::last_non_min_difficulty_bits(rules, &view, prev_height, prev)
                }
                None => 0, // unused without the min-difficulty rule
            };
            let checked =
                validate::check_contextual(rules, &view, (prev_height, &prev), &header, hash, now, || {
                    walk_value
                });
            if let Err(e) = checked {
                failure = Some((i, e));
                break;
            }
            let height = prev_height + 1;
            if let Err(e) = self.check_checkpoints(height, hash, path.tip_hash == self.best.tip_hash()) {
                failure = Some((i, e));
                break;
            }
            let rules = &self.rules;
            if rules.params.allow_min_difficulty_blocks {
                walk = Some(validate::next_last_non_min_bits(rules, height, &header, walk_value));
            }
            let bits = header.bits.to_consensus();
            let header_work = match work_of_bits {
                Some((b, w)) if b == bits => w,
                _ => {
                    let w = header.work();
                    work_of_bits = Some((bits, w));
                    w
                }
            };
            let work = parent_work + header_work;
            if let Some(window) = &mut times {
                window.push(header.time);
            }
            if path.tip_hash == self.best.tip_hash() {
                self.best.push(header, hash, work);
                out.connected.push((hash, height));
                // The path is the best chain up to its new tip: nothing to copy into `branch`.
                path = Path { base: height, branch: Vec::new(), tip_hash: hash };
            } else {
                let seq = self.bump_seq();
                self.side.insert(hash, SideEntry { header, height, work, seq });
                path.push(header, hash);
                if work > self.best.tip_work() {
                    self.reorg(&path, &mut out);
                }
            }
            parent_work = work;
            out.added += 1;
        }
        self.evict_forks();
        (out, failure)
    }

    /// Core's checkpoint rules: a header at a checkpoint height must be the checkpoint, and no
    /// fork may start below the last checkpoint the best chain has passed.
    fn check_checkpoints(&self, height: u32, hash: BlockHash, extends_best: bool) -> Result<(), HeaderError> {
        if let Ok(i) = self.checkpoints.binary_search_by_key(&height, |(h, _)| *h) {
            if self.checkpoints[i].1 != hash {
                return Err(HeaderError::CheckpointMismatch { height, hash });
            }
        }
        if !extends_best {
            let passed =
                self.checkpoints.iter().rev().find(|(h, _)| *h <= self.best.height()).map(|(h, _)| *h);
            if passed.is_some_and(|cp| height <= cp) {
                return Err(HeaderError::ForkBeforeCheckpoint { hash });
            }
        }
        Ok(())
    }

    fn bump_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// The path to a stored header: its best-chain height, or the fork walked back to the best
    /// chain. `None` if unknown.
    fn path_to(&self, hash: &BlockHash) -> Option<Path> {
        if let Some(h) = self.best.height_of(hash) {
            return Some(Path { base: h, branch: Vec::new(), tip_hash: *hash });
        }
        let mut branch = Vec::new();
        let mut cur = *hash;
        // Bounded: every step is a distinct stored fork header.
        for _ in 0..=self.side.len() {
            if let Some(e) = self.side.get(&cur) {
                branch.push(e.header);
                cur = e.header.prev_blockhash;
            } else {
                let base = self.best.height_of(&cur)?;
                branch.reverse();
                return Some(Path { base, branch, tip_hash: *hash });
            }
        }
        None
    }

    /// Chainwork of the path's tip.
    fn work_of(&self, path: &Path) -> Work {
        match self.side.get(&path.tip_hash) {
            Some(e) => e.work,
            None => self.best.work_at(path.base).unwrap_or_else(|| self.best.tip_work()),
        }
    }

    /// Makes `path` (whose headers above `base` are all fork headers) the best chain.
    fn reorg(&mut self, path: &Path, out: &mut Connected) {
        let base = path.base;
        let fork_work = self.best.work_at(base);
        let removed = self.best.truncate(base);
        // The old branch stays, as a fork, so it can win again.
        let mut work = fork_work.unwrap_or_else(|| self.best.tip_work());
        for (i, (header, hash)) in removed.iter().rev().enumerate() {
            let height = base + 1 + i as u32;
            work = work + header.work();
            let seq = self.bump_seq();
            self.side.insert(*hash, SideEntry { header: *header, height, work, seq });
        }
        for (i, (_, hash)) in removed.iter().enumerate() {
            out.disconnected.push((*hash, base + (removed.len() - i) as u32));
        }
        for (i, header) in path.branch.iter().enumerate() {
            let hash = path.branch_hash(i);
            let height = base + 1 + i as u32;
            let work = match self.side.remove(&hash) {
                Some(e) => e.work,
                None => self.best.tip_work() + header.work(), // not reached: the path is stored
            };
            self.best.push(*header, hash, work);
            out.connected.push((hash, height));
        }
    }

    /// Evicts fork headers beyond the cap: lowest-work childless ones first, newest first among
    /// equal work, so a parent always outlives its children.
    fn evict_forks(&mut self) {
        let mut excess = self.side.len().saturating_sub(self.max_fork_headers);
        if excess == 0 {
            return;
        }
        let mut children: HashMap<BlockHash, u32> = HashMap::new();
        for e in self.side.values() {
            if self.side.contains_key(&e.header.prev_blockhash) {
                *children.entry(e.header.prev_blockhash).or_default() += 1;
            }
        }
        let mut leaves: BinaryHeap<Reverse<(Work, Reverse<u64>, BlockHash)>> = self
            .side
            .iter()
            .filter(|(hash, _)| !children.contains_key(*hash))
            .map(|(hash, e)| Reverse((e.work, Reverse(e.seq), *hash)))
            .collect();
        while excess > 0 {
            let Some(Reverse((_, _, hash))) = leaves.pop() else { break };
            let Some(e) = self.side.remove(&hash) else { continue };
            excess -= 1;
            let parent = e.header.prev_blockhash;
            if let Some(count) = children.get_mut(&parent) {
                *count -= 1;
                if *count == 0 {
                    children.remove(&parent);
                    if let Some(p) = self.side.get(&parent) {
                        leaves.push(Reverse((p.work, Reverse(p.seq), parent)));
                    }
                }
            }
        }
    }
}
