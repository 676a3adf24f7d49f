//! The address book (pure: no I/O, time passed in as `now`, unix seconds), after Bitcoin Core's
//! addrman (src/addrman.cpp).
//!
//! Two tables of fixed-size buckets hold every address: *new* (heard about) and *tried*
//! (connected to at least once). Where an address may sit is decided by a keyed hash, so a peer
//! cannot aim at slots it does not know:
//!
//! - new: bucket from (key, source group, address group), at most 64 buckets per source group,
//!   so one lying peer (or all peers of one /16) reaches a small part of the table;
//! - tried: bucket from (key, address, address group), at most 8 buckets per address group;
//! - the slot inside a bucket from (key, table, bucket, address).
//!
//! Each address has exactly one slot, so the book never holds more than the two tables' slot
//! counts. Unlike Core, an address sits in one new bucket only (Core allows up to 8, one per
//! source), and a tried-slot collision evicts the old entry back to new at once (Core first
//! tests the old one with a feeler connection).

mod placement;
mod slots;
mod snapshot;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_services;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::netgroup::{canonical, netgroup, reach, NetGroup, Reach};
use crate::peer::PeerAddr;
use slots::Slots;

pub use snapshot::Snapshot;

/// An address not advertised for this long is terrible (Core's `ADDRMAN_HORIZON`).
const HORIZON: Duration = Duration::from_secs(30 * 24 * 3600);
/// A never-reached address is terrible after this many failures (Core's `ADDRMAN_RETRIES`).
const RETRIES: u32 = 3;
/// An address failing this many times in a row... (Core's `ADDRMAN_MAX_FAILURES`)
const MAX_FAILURES: u32 = 10;
/// ...with no success for this long is terrible (Core's `ADDRMAN_MIN_FAIL`).
const MIN_FAIL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Addresses tried this recently are never terrible, so a dial in progress is not evicted
/// (Core's `IsTerrible`).
const TRY_GRACE: Duration = Duration::from_secs(60);
/// A timestamp further ahead than this is not believed (Core's `ProcessMessage` for `addr`).
const MAX_FUTURE: Duration = Duration::from_secs(10 * 60);
/// A timestamp at or before this (1973) is not believed either (Core, same place).
const ANCIENT_TIME: u64 = 100_000_000;
/// An unbelievable timestamp becomes `now` minus this (Core, same place).
const DEFAULT_AGE: Duration = Duration::from_secs(5 * 24 * 3600);
/// Addresses relayed by another node count as this much older than advertised, so that
/// self-announcements win (Core's two-hour penalty in `AddNewAddresses`).
const RELAY_PENALTY: Duration = Duration::from_secs(2 * 3600);
/// An attempt this recent divides an address's chance by 100 (Core's `GetChance`).
const RECENT_ATTEMPT: Duration = Duration::from_secs(10 * 60);
/// Random bucket probes in [`AddrBook::select`] before it falls back to a full weighted scan;
/// bounds the work when the table is sparse or most entries are excluded.
const SELECT_PROBES: usize = 64;

/// Sizes and admission policy of a group's address book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddrBookConfig {
    /// Buckets in the new table (Core: 1024). Clamped to `1..=MAX_BUCKETS`.
    pub new_buckets: u32,
    /// Buckets in the tried table (Core: 256). Clamped to `1..=MAX_BUCKETS`.
    pub tried_buckets: u32,
    /// Slots per bucket, both tables (Core: 64). Clamped to `1..=MAX_BUCKET_SIZE`.
    pub bucket_size: u32,
    /// Keep loopback, private, link-local and CGNAT addresses. Core never does; a regtest or
    /// other local network needs it. Off by default so that peers on a public network cannot
    /// make us dial into our own LAN.
    pub accept_local: bool,
}

impl Default for AddrBookConfig {
    fn default() -> Self {
        AddrBookConfig { new_buckets: 1024, tried_buckets: 256, bucket_size: 64, accept_local: false }
    }
}

impl AddrBookConfig {
    /// Largest bucket count per table.
    pub const MAX_BUCKETS: u32 = 4096;
    /// Largest bucket size.
    pub const MAX_BUCKET_SIZE: u32 = 256;

    /// The configuration with every size inside its bounds.
    pub fn clamped(&self) -> AddrBookConfig {
        AddrBookConfig {
            new_buckets: self.new_buckets.clamp(1, Self::MAX_BUCKETS),
            tried_buckets: self.tried_buckets.clamp(1, Self::MAX_BUCKETS),
            bucket_size: self.bucket_size.clamp(1, Self::MAX_BUCKET_SIZE),
            accept_local: self.accept_local,
        }
    }

    /// Most addresses the new table can hold.
    pub fn new_capacity(&self) -> usize {
        let c = self.clamped();
        c.new_buckets as usize * c.bucket_size as usize
    }

    /// Most addresses the tried table can hold.
    pub fn tried_capacity(&self) -> usize {
        let c = self.clamped();
        c.tried_buckets as usize * c.bucket_size as usize
    }
}

/// Which table an address is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Heard about, never connected to (or evicted from tried).
    New,
    /// Connected to successfully at least once.
    Tried,
}

/// What the book knows about one address. Times are unix seconds, 0 for never.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddrInfo {
    /// The address (canonical form, see `canonical`).
    pub addr: PeerAddr,
    /// Service bits advertised for it (the union of all advertisements).
    pub services: u64,
    /// When it was last advertised as active (Core's `nTime`), relay penalty applied.
    pub last_seen: u64,
    /// Our last connection attempt.
    pub last_attempt: u64,
    /// Our last successful connection.
    pub last_success: u64,
    /// Failed attempts since the last success (Core's `nAttempts`).
    pub attempts: u32,
    /// Group of the peer we first heard it from (its own group when it came from no peer).
    pub source_group: NetGroup,
    /// The table it is in.
    pub table: Table,
    /// When a failure was last counted in `attempts` (memory only, Core's
    /// `m_last_count_attempt`).
    last_count_attempt: u64,
    /// Index into its table's slot array.
    slot: usize,
}

impl AddrInfo {
    /// Whether the address is not worth keeping (Core's `IsTerrible`): advertised from the
    /// future or not for 30 days, or failing 3 times with no success ever, or 10 times with
    /// no success for a week. Never while an attempt is under a minute old.
    pub fn is_terrible(&self, now: u64) -> bool {
        if self.last_attempt != 0 && self.last_attempt >= now.saturating_sub(TRY_GRACE.as_secs()) {
            return false;
        }
        self.last_seen > now.saturating_add(MAX_FUTURE.as_secs())
            || now.saturating_sub(self.last_seen) > HORIZON.as_secs()
            || (self.last_success == 0 && self.attempts >= RETRIES)
            || (now.saturating_sub(self.last_success) > MIN_FAIL.as_secs() && self.attempts >= MAX_FAILURES)
    }

    /// Relative chance of being selected (Core's `GetChance`): 1, divided by 100 while the last
    /// attempt is under ten minutes old, times 0.66 per failure (at most 8, so an outage does
    /// not bury everything).
    pub fn chance(&self, now: u64) -> f64 {
        let recent = now.saturating_sub(self.last_attempt) < RECENT_ATTEMPT.as_secs();
        let base = if recent { 0.01 } else { 1.0 };
        let failures = self.attempts.min(8) as i32; // at most 8: cannot truncate
        base * 0.66f64.powi(failures)
    }
}

/// The address book. See the module documentation.
#[derive(Clone)]
pub struct AddrBook {
    config: AddrBookConfig,
    key: [u8; 32],
    entries: HashMap<PeerAddr, AddrInfo>,
    new_slots: Slots,
    tried_slots: Slots,
    new_len: usize,
    tried_len: usize,
    /// Time of the last `good()` on any address (Core's `m_last_good`; 1 so that the first
    /// failure of each address counts).
    last_good: u64,
}

impl fmt::Debug for AddrBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the key: it is what keeps bucket positions unpredictable.
        f.debug_struct("AddrBook")
            .field("config", &self.config)
            .field("new", &self.new_len)
            .field("tried", &self.tried_len)
            .finish_non_exhaustive()
    }
}

impl AddrBook {
    /// An empty book. `key` must be secret and random (e.g. `rand::random()`); it is saved in
    /// snapshots so that addresses keep their buckets across restarts.
    pub fn new(config: AddrBookConfig, key: [u8; 32]) -> AddrBook {
        let config = config.clamped();
        AddrBook {
            // Buckets are allocated when first used: filling all 82k slots was ~16% of the
            // daemon's start-up before its first dial.
            new_slots: Slots::new(config.new_buckets as usize, config.bucket_size as usize),
            tried_slots: Slots::new(config.tried_buckets as usize, config.bucket_size as usize),
            config,
            key,
            entries: HashMap::new(),
            new_len: 0,
            tried_len: 0,
            last_good: 1,
        }
    }

    /// Records an advertised address; true when it was not known and is now in the new table.
    ///
    /// `time` is the advertised last-seen time (clamped to `now` − 5 days when over 10 minutes
    /// in the future or before 1973), `source` the peer that sent it (`None` for seeds and our
    /// own configuration). Ignores port 0, unusable addresses, and local ones unless
    /// [`AddrBookConfig::accept_local`]. For a known address, merges the service bits and
    /// refreshes `last_seen` when the advertisement is clearly newer. A new address whose slot
    /// is taken replaces the occupant only if that one is terrible; one from a seed or our
    /// configuration (no `source`) otherwise takes a free slot of the same bucket.
    pub fn add(
        &mut self,
        addr: &PeerAddr,
        services: u64,
        time: u64,
        source: Option<&PeerAddr>,
        now: u64,
    ) -> bool {
        let Some(addr) = self.admit(addr) else { return false };
        let source = source.map(canonical);
        let penalty = match &source {
            Some(s) if *s != addr => RELAY_PENALTY.as_secs(),
            _ => 0,
        };
        let time = clamp_time(time, now);
        let seen = time.saturating_sub(penalty);
        if let Some(info) = self.entries.get_mut(&addr) {
            info.services |= services;
            // Core's rule: refresh hourly while the address looks online, daily otherwise.
            let online = now.saturating_sub(time) < 24 * 3600;
            let interval = if online { 3600 } else { 24 * 3600 };
            if info.last_seen < seen.saturating_sub(interval) {
                info.last_seen = seen;
            }
            return false;
        }
        let source_group = netgroup(source.as_ref().unwrap_or(&addr));
        let mut slot = self.new_slot(&addr, &source_group);
        if let Some(occupant) = self.new_slots[slot].clone() {
            let terrible = self.entries.get(&occupant).is_none_or(|e| e.is_terrible(now));
            if terrible {
                self.take(&occupant);
            } else if let Some(free) = source.is_none().then(|| self.free_in_bucket(slot)).flatten() {
                // A seed's or our configuration's address: all of one /16 share a bucket, so
                // a slot collision would drop one of a few nodes for good. Core's `AddSingle`
                // (addrman.cpp) drops it; we take a free slot of the same bucket first.
                slot = free;
            } else {
                return false;
            }
        }
        let info = AddrInfo {
            addr,
            services,
            last_seen: seen,
            last_attempt: 0,
            last_success: 0,
            attempts: 0,
            source_group,
            table: Table::New,
            last_count_attempt: 0,
            slot,
        };
        self.put(info, Table::New, slot);
        true
    }

    /// Records that we are dialing `addr`; false if unknown.
    pub fn attempt(&mut self, addr: &PeerAddr, now: u64) -> bool {
        let Some(info) = self.entries.get_mut(&canonical(addr)) else { return false };
        info.last_attempt = now;
        true
    }

    /// Records the services a peer we dialed announced in its `version`, replacing what gossip
    /// said; false if unknown. Core's `AddrMan::SetServices` (`addrman.cpp`), called from
    /// `ProcessMessage` VERSION for outbound connections only (`net_processing.cpp`: it
    /// "overwrites potentially existing services", while `addr` gossip only adds bits).
    pub fn set_services(&mut self, addr: &PeerAddr, services: u64) -> bool {
        let Some(info) = self.entries.get_mut(&canonical(addr)) else { return false };
        info.services = services;
        true
    }

    /// Records a failed connection to `addr`; false if unknown. At most one failure per address
    /// counts between two successes with *any* address (Core's `m_last_good` rule), so an
    /// outage on our side does not condemn the whole book.
    pub fn failed(&mut self, addr: &PeerAddr, now: u64) -> bool {
        let last_good = self.last_good;
        let Some(info) = self.entries.get_mut(&canonical(addr)) else { return false };
        info.last_attempt = info.last_attempt.max(now);
        if info.last_count_attempt < last_good {
            info.last_count_attempt = now;
            info.attempts = info.attempts.saturating_add(1);
        }
        true
    }

    /// Records a successful connection (handshake complete) and moves `addr` to the tried
    /// table; false if unknown. The tried entry it collides with, if any, goes back to the new
    /// table (displacing whatever new entry sits in that one's slot).
    pub fn good(&mut self, addr: &PeerAddr, now: u64) -> bool {
        let addr = canonical(addr);
        let Some(info) = self.entries.get_mut(&addr) else { return false };
        info.last_success = now;
        info.last_attempt = now;
        info.attempts = 0;
        self.last_good = now.max(1);
        if info.table == Table::Tried {
            return true;
        }
        let Some(info) = self.take(&addr) else { return false };
        let slot = self.tried_slot(&addr);
        if let Some(old) = self.tried_slots[slot].clone() {
            if let Some(old) = self.take(&old) {
                self.demote(old);
            }
        }
        self.put(info, Table::Tried, slot);
        true
    }

    #[cfg(test)]
    /// Forgets `addr`, returning what was known.
    pub fn remove(&mut self, addr: &PeerAddr) -> Option<AddrInfo> {
        self.take(&canonical(addr))
    }

    #[cfg(test)]
    /// Removes the terrible entries of the new table (tried entries only leave by collision);
    /// returns how many.
    pub fn prune(&mut self, now: u64) -> usize {
        let doomed: Vec<PeerAddr> = self
            .entries
            .values()
            .filter(|e| e.table == Table::New && e.is_terrible(now))
            .map(|e| e.addr.clone())
            .collect();
        doomed.iter().filter(|a| self.take(a).is_some()).count()
    }

    #[cfg(test)]
    /// What is known about `addr`.
    pub fn get(&self, addr: &PeerAddr) -> Option<&AddrInfo> {
        self.entries.get(&canonical(addr))
    }

    #[cfg(test)]
    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &AddrInfo> + '_ {
        self.entries.values()
    }

    /// Number of addresses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Number of addresses in the new table.
    pub fn new_len(&self) -> usize {
        self.new_len
    }

    /// Number of addresses in the tried table.
    pub fn tried_len(&self) -> usize {
        self.tried_len
    }

    /// Picks an address to dial, never one for which `exclude` is true (connected, pending,
    /// banned...). Tried or new with equal odds when both have entries, then Core's walk:
    /// random bucket, random slot, accept with probability [`AddrInfo::chance`] times a factor
    /// growing 1.2× per rejection. After a bounded number of probes (sparse table, most entries
    /// excluded) it falls back to one chance-weighted pass over the table, so it always
    /// terminates and returns `None` only when every entry is excluded.
    pub fn select<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        now: u64,
        exclude: impl Fn(&PeerAddr) -> bool,
    ) -> Option<PeerAddr> {
        let tried_first = match (self.new_len, self.tried_len) {
            (_, 0) => false,
            (0, _) => true,
            _ => rng.gen_bool(0.5),
        };
        let order = if tried_first { [Table::Tried, Table::New] } else { [Table::New, Table::Tried] };
        order.into_iter().find_map(|table| self.select_in(rng, now, table, &exclude))
    }

    fn select_in<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        now: u64,
        table: Table,
        exclude: &impl Fn(&PeerAddr) -> bool,
    ) -> Option<PeerAddr> {
        let (slots, len) = match table {
            Table::New => (&self.new_slots, self.new_len),
            Table::Tried => (&self.tried_slots, self.tried_len),
        };
        if len == 0 {
            return None;
        }
        let size = self.config.bucket_size as usize;
        let buckets = slots.len() / size;
        let usable = |a: &&PeerAddr| !exclude(a);
        let mut factor = 1.0f64;
        for _ in 0..SELECT_PROBES {
            let bucket = rng.gen_range(0..buckets);
            let start = rng.gen_range(0..size);
            let found =
                (0..size).filter_map(|i| slots[bucket * size + (start + i) % size].as_ref()).find(usable);
            let Some(addr) = found else { continue };
            let chance = self.entries.get(addr).map_or(0.0, |e| e.chance(now));
            if rng.gen::<f64>() < factor * chance {
                return Some(addr.clone());
            }
            factor *= 1.2;
        }
        // Weighted reservoir sampling over what is left: each usable entry wins with
        // probability chance / total.
        let mut total = 0.0f64;
        let mut pick = None;
        for addr in slots.occupied().filter(usable) {
            let weight = self.entries.get(addr).map_or(0.0, |e| e.chance(now));
            total += weight;
            if pick.is_none() || rng.gen::<f64>() * total < weight {
                pick = Some(addr);
            }
        }
        pick.cloned()
    }

    /// The canonical form of `addr` if the book may hold it.
    fn admit(&self, addr: &PeerAddr) -> Option<PeerAddr> {
        let addr = canonical(addr);
        let port = match &addr {
            PeerAddr::Ip(sa) => sa.port(),
            PeerAddr::Host(host, port) => {
                let plausible = !host.is_empty()
                    && host.len() <= 255
                    && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if plausible {
                    *port
                } else {
                    0
                }
            }
        };
        let allowed = match reach(&addr) {
            Reach::Public => true,
            Reach::Local => self.config.accept_local,
            Reach::Unusable => false,
        };
        (port != 0 && allowed).then_some(addr)
    }

    /// Stores `info` in the free `slot` of `table`.
    fn put(&mut self, mut info: AddrInfo, table: Table, slot: usize) {
        let cell = match table {
            Table::New => &mut self.new_slots[slot],
            Table::Tried => &mut self.tried_slots[slot],
        };
        debug_assert!(cell.is_none(), "put into an occupied slot");
        *cell = Some(info.addr.clone());
        match table {
            Table::New => self.new_len += 1,
            Table::Tried => self.tried_len += 1,
        }
        info.table = table;
        info.slot = slot;
        self.entries.insert(info.addr.clone(), info);
    }

    /// Removes `addr` (canonical) from its table and the index.
    fn take(&mut self, addr: &PeerAddr) -> Option<AddrInfo> {
        let info = self.entries.remove(addr)?;
        match info.table {
            Table::New => {
                self.new_slots[info.slot] = None;
                self.new_len -= 1;
            }
            Table::Tried => {
                self.tried_slots[info.slot] = None;
                self.tried_len -= 1;
            }
        }
        Some(info)
    }

    /// Puts a former tried entry back in the new table, evicting its new slot's occupant.
    fn demote(&mut self, info: AddrInfo) {
        let slot = self.new_slot(&info.addr, &info.source_group);
        if let Some(occupant) = self.new_slots[slot].clone() {
            self.take(&occupant);
        }
        self.put(info, Table::New, slot);
    }
}

/// Core's sanity rule for advertised times.
fn clamp_time(time: u64, now: u64) -> u64 {
    if time <= ANCIENT_TIME || time > now.saturating_add(MAX_FUTURE.as_secs()) {
        now.saturating_sub(DEFAULT_AGE.as_secs())
    } else {
        time
    }
}
