//! Bitcoin Core's consensus rules for headers, as free functions over an [`Ancestors`] view.
//!
//! Sources: `pow.cpp` (`GetNextWorkRequired`, `CalculateNextWorkRequired`, `CheckProofOfWork`),
//! `validation.cpp` (`ContextualCheckBlockHeader`), `chain.h` (`GetMedianTimePast`),
//! `kernel/chainparams.cpp` (limits and activation heights).

use bitcoin::block::Header;
use bitcoin::params::Params;
use bitcoin::pow::{CompactTarget, Target};
use bitcoin::BlockHash;

use super::HeaderError;
use crate::wire::pow::{derive_target, pow_limit, TargetCache};
use crate::Network;

/// How far a header's timestamp may be ahead of our clock, in seconds (`MAX_FUTURE_BLOCK_TIME`,
/// `chain.h`).
pub const MAX_FUTURE_BLOCK_TIME: u64 = 2 * 60 * 60;

/// How far before its parent the first header of a difficulty period may be timestamped under
/// BIP94, in seconds (`MAX_TIMEWARP`, `consensus/consensus.h`).
pub const MAX_TIMEWARP: u32 = 600;

/// Number of previous headers whose median timestamp a new header must exceed (`nMedianTimeSpan`,
/// `chain.h`).
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Most hashes in a block locator (`MAX_LOCATOR_SZ`, `net_processing.cpp`).
pub const MAX_LOCATOR_SZ: usize = 101;

/// Headers on one chain, by height: the chain that ends at the header being built on.
pub(crate) trait Ancestors {
    /// The header at `height`, or `None` below the chain's start or above its end.
    fn get(&self, height: u32) -> Option<Header>;

    /// The `(bits, time)` of the header at `height`: all the difficulty and time rules read
    /// of ancestors. The best chain answers without rebuilding the header's parent hash.
    fn bits_time(&self, height: u32) -> Option<(u32, u32)> {
        self.get(height).map(|h| (h.bits.to_consensus(), h.time))
    }

    /// [`median_time_past`] for `prev` at `prev_height`; a caller that keeps the recent
    /// timestamps as it goes answers without reading 11 headers.
    fn median_time_past(&self, prev_height: u32, prev: &Header) -> (u32, usize)
    where
        Self: Sized,
    {
        median_time_past(self, prev_height, prev)
    }
}

/// The last [`MEDIAN_TIME_SPAN`] timestamps of a chain being extended header by header, oldest
/// first, and the same kept sorted: each header's median time past is a read, and moving on
/// replaces one number in each (a sort of the 11 per header was a sixth of `connect`'s time).
#[derive(Debug, Clone)]
pub(crate) struct TimeWindow {
    times: [u32; MEDIAN_TIME_SPAN],
    sorted: [u32; MEDIAN_TIME_SPAN],
    len: usize,
}

impl TimeWindow {
    /// The window ending at `prev` (at `prev_height`): what [`median_time_past`] reads.
    pub fn new(anc: &impl Ancestors, prev_height: u32, prev: &Header) -> TimeWindow {
        let mut newest_first = [0u32; MEDIAN_TIME_SPAN];
        newest_first[0] = prev.time;
        let mut len = 1;
        let mut h = prev_height;
        while len < MEDIAN_TIME_SPAN && h > 0 {
            h -= 1;
            match anc.bits_time(h) {
                Some((_, time)) => {
                    newest_first[len] = time;
                    len += 1;
                }
                None => break,
            }
        }
        let mut times = [0u32; MEDIAN_TIME_SPAN];
        for (i, t) in newest_first[..len].iter().rev().enumerate() {
            times[i] = *t;
        }
        let mut sorted = times;
        sorted[..len].sort_unstable();
        TimeWindow { times, sorted, len }
    }

    /// The median and how many timestamps there are, as [`median_time_past`].
    pub fn median(&self) -> (u32, usize) {
        (self.sorted[self.len / 2], self.len)
    }

    /// Moves the window onto the next header.
    pub fn push(&mut self, time: u32) {
        if self.len == MEDIAN_TIME_SPAN {
            let oldest = self.times[0];
            self.times.copy_within(1.., 0);
            self.times[MEDIAN_TIME_SPAN - 1] = time;
            // The oldest leaves the sorted copy (any equal value will do), the new one enters.
            let at = self.sorted.iter().position(|&t| t == oldest).unwrap_or(MEDIAN_TIME_SPAN - 1);
            self.sorted.copy_within(at + 1.., at);
            self.len -= 1;
        } else {
            self.times[self.len] = time;
        }
        let at = self.sorted[..self.len].partition_point(|&t| t <= time);
        self.sorted.copy_within(at..self.len, at + 1);
        self.sorted[at] = time;
        self.len += 1;
    }
}

/// One network's header rules, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub params: &'static Params,
    /// Core's `powLimit`, exactly (the `bitcoin` crate's `max_attainable_target` is slightly
    /// lower on mainnet, which would reject a few odd encodings Core accepts).
    pub pow_limit: Target,
    /// `powLimit` in compact form, the bits of a minimum-difficulty block.
    pub pow_limit_bits: u32,
    /// Blocks per difficulty period (2016).
    pub interval: u32,
    /// BIP94 (testnet4): retarget from the period's first block, timewarp rule.
    pub enforce_bip94: bool,
    pub bip34_height: u32,
    pub bip66_height: u32,
    pub bip65_height: u32,
    /// Height of the chain's first header (0, or a checkpoint's).
    pub start_height: u32,
}

impl Rules {
    pub fn new(network: Network, start_height: u32) -> Rules {
        let params = network.to_bitcoin().params();
        let pow_limit = pow_limit(network);
        let enforce_bip94 = network == Network::Testnet4;
        // Core's regtest activates BIP34/65/66 at height 1 (the `bitcoin` crate still has the
        // old values); the other networks agree with the crate.
        let (bip34_height, bip66_height, bip65_height) = match network {
            Network::Regtest => (1, 1, 1),
            _ => (params.bip34_height, params.bip66_height, params.bip65_height),
        };
        let interval = u32::try_from(params.difficulty_adjustment_interval()).unwrap_or(2016);
        Rules {
            params,
            pow_limit,
            pow_limit_bits: pow_limit.to_compact_lossy().to_consensus(),
            interval,
            enforce_bip94,
            bip34_height,
            bip66_height,
            bip65_height,
            start_height,
        }
    }
}

/// Core's `CheckProofOfWork` (`pow.cpp`): the target derives and the hash meets it.
pub(crate) fn check_pow(rules: &Rules, header: &Header, hash: BlockHash) -> Result<(), HeaderError> {
    match derive_target(header.bits.to_consensus(), rules.pow_limit) {
        Some(target) if target.is_met_by(hash) => Ok(()),
        _ => Err(HeaderError::BadProofOfWork { hash }),
    }
}

/// [`check_pow`] remembering the last `bits` decoded: a batch almost always shares one.
pub(crate) fn check_pow_cached(
    rules: &Rules,
    header: &Header,
    hash: BlockHash,
    cache: &mut TargetCache,
) -> Result<(), HeaderError> {
    match cache.derive(header.bits.to_consensus(), rules.pow_limit) {
        Some(target) if target.is_met_by(hash) => Ok(()),
        _ => Err(HeaderError::BadProofOfWork { hash }),
    }
}

/// Core's `CalculateNextWorkRequired`: the retarget at the end of a period whose last header is
/// `last` and whose first header has time `first_time` and bits `first_bits` (the off-by-one:
/// the timespan is measured from the period's first block, not the previous period's last).
pub(crate) fn calculate_next_work_required(
    rules: &Rules,
    last: &Header,
    first_time: u32,
    first_bits: u32,
) -> u32 {
    if rules.params.no_pow_retargeting {
        return last.bits.to_consensus();
    }
    let target_timespan = i64::try_from(rules.params.pow_target_timespan).unwrap_or(14 * 24 * 60 * 60);
    let actual =
        (i64::from(last.time) - i64::from(first_time)).clamp(target_timespan / 4, target_timespan * 4);
    // BIP94: the first block's bits, which the min-difficulty exception never applies to.
    let base = if rules.enforce_bip94 { first_bits } else { last.bits.to_consensus() };
    // `from_next_work_required` multiplies, divides and caps at the limit like Core. It caps at
    // the crate's attainable limit, whose compact form equals that of Core's `powLimit`.
    // `actual` is clamped positive above, so the cast is exact.
    CompactTarget::from_next_work_required(CompactTarget::from_consensus(base), actual as u64, rules.params)
        .to_consensus()
}

/// Core's `GetNextWorkRequired` for the header after `prev` (at `prev_height`), timestamped
/// `time`. `last_non_min_bits` gives the testnet walk-back result for `prev` (see
/// [`last_non_min_difficulty_bits`]); it is only called when needed. `None` if the period's
/// first header is missing, which the chain's start rules out.
pub(crate) fn next_work_required(
    rules: &Rules,
    anc: &impl Ancestors,
    prev_height: u32,
    prev: &Header,
    time: u32,
    last_non_min_bits: impl FnOnce() -> u32,
) -> Option<u32> {
    let next = u64::from(prev_height) + 1;
    if next % u64::from(rules.interval) != 0 {
        if rules.params.allow_min_difficulty_blocks {
            // Testnet: more than 20 minutes after the parent, anyone may mine at minimum
            // difficulty; otherwise the last "real" difficulty applies.
            if u64::from(time) > u64::from(prev.time) + 2 * rules.params.pow_target_spacing {
                return Some(rules.pow_limit_bits);
            }
            return Some(last_non_min_bits());
        }
        return Some(prev.bits.to_consensus());
    }
    let (first_bits, first_time) = anc.bits_time(prev_height.checked_sub(rules.interval - 1)?)?;
    Some(calculate_next_work_required(rules, prev, first_time, first_bits))
}

/// The walk in Core's `GetNextWorkRequired`: from `header` (at `height`) back over
/// minimum-difficulty headers to the last one with real difficulty, stopping at a period's
/// first header or the chain's start. Returns that header's bits.
pub(crate) fn last_non_min_difficulty_bits(
    rules: &Rules,
    anc: &impl Ancestors,
    height: u32,
    header: Header,
) -> u32 {
    let (mut h, mut bits) = (height, header.bits.to_consensus());
    loop {
        if h <= rules.start_height || h % rules.interval == 0 || bits != rules.pow_limit_bits {
            return bits;
        }
        match anc.bits_time(h - 1) {
            Some((parent_bits, _)) => (h, bits) = (h - 1, parent_bits),
            None => return bits,
        }
    }
}

/// The walk's result for a child of `header`, given the result for its parent: the recursion
/// behind [`last_non_min_difficulty_bits`], so a batch walks once instead of once per header.
pub(crate) fn next_last_non_min_bits(rules: &Rules, height: u32, header: &Header, parent_result: u32) -> u32 {
    let bits = header.bits.to_consensus();
    if height <= rules.start_height || height % rules.interval == 0 || bits != rules.pow_limit_bits {
        bits
    } else {
        parent_result
    }
}

/// Core's `GetMedianTimePast` for `prev` (at `prev_height`): the median timestamp of `prev` and
/// up to 10 headers before it. Also returns how many timestamps were available.
pub(crate) fn median_time_past(anc: &impl Ancestors, prev_height: u32, prev: &Header) -> (u32, usize) {
    let mut times = [0u32; MEDIAN_TIME_SPAN];
    times[0] = prev.time;
    let mut n = 1;
    let mut h = prev_height;
    while n < MEDIAN_TIME_SPAN && h > 0 {
        h -= 1;
        match anc.bits_time(h) {
            Some((_, time)) => {
                times[n] = time;
                n += 1;
            }
            None => break,
        }
    }
    let window = &mut times[..n];
    window.sort_unstable();
    (window[n / 2], n)
}

/// Core's `ContextualCheckBlockHeader` for `header` (with `hash`) on top of `prev` at
/// `prev_height`, in Core's order: difficulty, median time past, BIP94 timewarp, future limit
/// (skipped when `now` is `None`), version.
pub(crate) fn check_contextual(
    rules: &Rules,
    anc: &impl Ancestors,
    (prev_height, prev): (u32, &Header),
    header: &Header,
    hash: BlockHash,
    now: Option<u64>,
    last_non_min_bits: impl FnOnce() -> u32,
) -> Result<(), HeaderError> {
    let height = prev_height.saturating_add(1);
    let got = header.bits.to_consensus();
    // Unreachable (the start is a period boundary); answer with the limit rather than panic.
    let expected = next_work_required(rules, anc, prev_height, prev, header.time, last_non_min_bits)
        .unwrap_or(rules.pow_limit_bits);
    if got != expected {
        return Err(HeaderError::BadDifficulty { hash, expected, got });
    }

    let (mtp, count) = anc.median_time_past(prev_height, prev);
    // After a checkpoint the first ten headers see fewer than 11 ancestors, where Core sees the
    // real ones: a median of the few could reject a valid header, so the rule waits for a full
    // window. (From genesis, Core too uses the few there are.)
    let window_known = count == MEDIAN_TIME_SPAN || rules.start_height == 0;
    if window_known && header.time <= mtp {
        return Err(HeaderError::TimeTooOld { hash });
    }

    if rules.enforce_bip94
        && height % rules.interval == 0
        && header.time < prev.time.saturating_sub(MAX_TIMEWARP)
    {
        return Err(HeaderError::TimeWarp { hash });
    }

    if let Some(now) = now {
        if u64::from(header.time) > now.saturating_add(MAX_FUTURE_BLOCK_TIME) {
            return Err(HeaderError::TimeTooNew { hash });
        }
    }

    let version = header.version.to_consensus();
    if (version < 2 && height >= rules.bip34_height)
        || (version < 3 && height >= rules.bip66_height)
        || (version < 4 && height >= rules.bip65_height)
    {
        return Err(HeaderError::BadVersion { hash, version });
    }
    Ok(())
}

/// Core's `LocatorEntries`: hashes from `tip_height` down, one by one for the first ten, then
/// doubling the step, always ending with the chain's start (`start_height`).
pub(crate) fn locator_entries(
    tip_height: u32,
    start_height: u32,
    hash_at: impl Fn(u32) -> Option<BlockHash>,
) -> Vec<BlockHash> {
    let mut have = Vec::with_capacity(32);
    let mut step = 1u32;
    let mut h = tip_height;
    while let Some(hash) = hash_at(h) {
        have.push(hash);
        if h <= start_height || have.len() >= MAX_LOCATOR_SZ {
            break;
        }
        h = h.saturating_sub(step).max(start_height);
        if have.len() > 10 {
            step = step.saturating_mul(2);
        }
    }
    have
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers by height with arbitrary timestamps.
    struct Times(Vec<Header>);

    impl Ancestors for Times {
        fn get(&self, height: u32) -> Option<Header> {
            self.0.get(height as usize).copied()
        }
    }

    /// The rolling window gives `median_time_past`'s answer at every height, from the first
    /// headers (fewer than 11 timestamps) on.
    #[test]
    fn time_window_matches_median_time_past() {
        let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
        let mut x = 7u32;
        // Spread timestamps, and ones that repeat often (the sorted copy holds equal values).
        for spread in [5_000, 7, 2] {
            let chain: Vec<Header> = (0..300)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    Header { time: 1_000_000 + (x >> 16) % spread, ..genesis }
                })
                .collect();
            let anc = Times(chain.clone());
            let mut window = TimeWindow::new(&anc, 0, &chain[0]);
            for h in 0..chain.len() as u32 {
                let expected = median_time_past(&anc, h, &chain[h as usize]);
                assert_eq!(window.median(), expected, "spread {spread} height {h}");
                // Starting anywhere gives the same window as rolling to there.
                assert_eq!(TimeWindow::new(&anc, h, &chain[h as usize]).median(), expected);
                if let Some(next) = chain.get(h as usize + 1) {
                    window.push(next.time);
                }
            }
        }
    }

    /// Core's `DeriveTarget` inside `CheckProofOfWork`: bits that overflow 256 bits or encode a
    /// target above the network's `powLimit` fail, whatever the hash.
    #[test]
    fn check_pow_refuses_bits_that_derive_no_target() {
        let regtest = Rules::new(Network::Regtest, 0);
        let genesis = bitcoin::constants::genesis_block(bitcoin::Network::Regtest).header;
        assert_eq!(check_pow(&regtest, &genesis, genesis.block_hash()), Ok(()));
        // Above regtest's limit (2^255, no overflow) and overflowing (0x407fffff).
        for bits in [0x2100_8000, 0x407f_ffff, 0x0480_0001, 0] {
            let mut h = genesis;
            h.bits = CompactTarget::from_consensus(bits);
            let hash = h.block_hash();
            assert_eq!(check_pow(&regtest, &h, hash), Err(HeaderError::BadProofOfWork { hash }), "{bits:#x}");
        }
        // Regtest's bits are above mainnet's limit.
        let mainnet = Rules::new(Network::Mainnet, 0);
        let hash = genesis.block_hash();
        assert_eq!(check_pow(&mainnet, &genesis, hash), Err(HeaderError::BadProofOfWork { hash }));
    }
}
