//! The pure connection manager: which address to dial next, when to retry, when to ban. No I/O;
//! monotonic time comes in as `now`. The group actor feeds it events and executes its decisions.
//!
//! Rules (btcd's connmgr and Core's `ThreadOpenConnections` are the models):
//! - static peers (`connect`/`addnode`) each own a slot, are redialed forever with jittered
//!   exponential backoff, and are never banned automatically;
//! - automatic peers fill up to `max_outbound` from the address book, never two connections to
//!   one address, at most one per network group unless configured otherwise, skipping banned
//!   addresses and addresses still in their retry backoff;
//! - when every recent automatic dial failed, automatic dialing slows to a bounded rate (no
//!   storm) and speeds up again as soon as one peer completes its handshake.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::Backoff;
use crate::addrbook::netgroup::{netgroup, NetGroup};
use crate::peer::{DisconnectReason, PeerAddr, PeerId, ReasonKind};

/// Most addresses whose retry backoff we remember (oldest forgotten first).
pub const MAX_RETRY_ENTRIES: usize = 4_096;
/// Longest spacing of automatic dials while everything fails.
pub const MAX_STORM_INTERVAL: Duration = Duration::from_secs(60);

/// Filter passed to the address picker: true for addresses that must not be chosen.
pub type Exclude<'a> = &'a dyn Fn(&PeerAddr) -> bool;

/// Connection targets and retry rules.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Outbound connections to keep (static peers count towards it).
    pub max_outbound: usize,
    /// Peers we always keep connected.
    pub static_peers: Vec<PeerAddr>,
    /// Only the static peers (Core's `-connect`): no automatic outbound.
    pub connect_only: bool,
    /// At most one automatic outbound peer per network group.
    pub diverse_netgroups: bool,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

/// Why a dial happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialKind {
    /// A configured peer (slot index).
    Static(usize),
    /// Picked from the address book.
    Automatic,
}

/// A dial the actor should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// Where.
    pub addr: PeerAddr,
    /// Why.
    pub kind: DialKind,
}

/// What the group should do after a disconnection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Ban this address (misbehaviour of a non-static peer).
    pub ban: Option<PeerAddr>,
    /// The address failed (for the address book's bookkeeping).
    pub failed: Option<PeerAddr>,
}

#[derive(Debug)]
struct Slot {
    addr: PeerAddr,
    backoff: Backoff,
    next_at: Instant,
    peer: Option<PeerId>,
}

#[derive(Debug)]
struct Outbound {
    addr: PeerAddr,
    group: NetGroup,
    slot: Option<usize>,
    ready: bool,
}

/// Per-address retry state for automatic dials, bounded.
#[derive(Debug, Default)]
struct RetryTable {
    entries: HashMap<PeerAddr, (Backoff, Instant)>,
    order: VecDeque<PeerAddr>,
}

impl RetryTable {
    fn blocked(&self, addr: &PeerAddr, now: Instant) -> bool {
        self.entries.get(addr).is_some_and(|(_, at)| *at > now)
    }

    fn fail(&mut self, addr: &PeerAddr, now: Instant, cfg: &PolicyConfig, unit: f64) {
        if !self.entries.contains_key(addr) {
            if self.order.len() >= MAX_RETRY_ENTRIES {
                if let Some(old) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
            self.order.push_back(addr.clone());
        }
        let entry = self
            .entries
            .entry(addr.clone())
            .or_insert_with(|| (Backoff::new(cfg.initial_backoff, cfg.max_backoff), now));
        entry.1 = now + entry.0.next_delay(unit);
    }

    fn succeed(&mut self, addr: &PeerAddr) {
        if self.entries.remove(addr).is_some() {
            self.order.retain(|a| a != addr);
        }
    }
}

/// The connection manager's state.
#[derive(Debug)]
pub struct Policy {
    cfg: PolicyConfig,
    slots: Vec<Slot>,
    outbound: HashMap<PeerId, Outbound>,
    in_use: HashSet<PeerAddr>,
    retry: RetryTable,
    failures_in_row: u32,
    storm: Backoff,
    next_auto_at: Instant,
}

impl Policy {
    /// A policy whose static peers are due at once.
    pub fn new(cfg: PolicyConfig, now: Instant) -> Self {
        let slots = cfg
            .static_peers
            .iter()
            .map(|addr| Slot {
                addr: addr.clone(),
                backoff: Backoff::new(cfg.initial_backoff, cfg.max_backoff),
                next_at: now,
                peer: None,
            })
            .collect();
        let storm = Backoff::new(cfg.initial_backoff, MAX_STORM_INTERVAL.max(cfg.initial_backoff));
        Policy {
            cfg,
            slots,
            outbound: HashMap::new(),
            in_use: HashSet::new(),
            retry: RetryTable::default(),
            failures_in_row: 0,
            storm,
            next_auto_at: now,
        }
    }

    /// Outbound connections (dialing or connected).
    pub fn outbound_count(&self) -> usize {
        self.outbound.len()
    }

    /// Outbound connections that completed the handshake.
    pub fn ready_count(&self) -> usize {
        self.outbound.values().filter(|o| o.ready).count()
    }

    /// True when the address book should be refilled (automatic mode and slots are empty).
    pub fn wants_addresses(&self) -> bool {
        !self.cfg.connect_only && self.outbound.len() < self.cfg.max_outbound
    }

    /// The dials to start now. `banned` tells whether an address must not be dialed (banned, or
    /// unreachable from here); `pick` draws a
    /// candidate from the address book that the given filter does not exclude; `unit` yields
    /// uniform random numbers in [0, 1] for jitter.
    pub fn poll_dials(
        &mut self,
        now: Instant,
        banned: &dyn Fn(&PeerAddr) -> bool,
        pick: &mut dyn FnMut(Exclude<'_>) -> Option<PeerAddr>,
    ) -> Vec<Dial> {
        let mut dials = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            // A configured peer is never banned automatically, but a ban the user made holds.
            if slot.peer.is_none()
                && slot.next_at <= now
                && !self.in_use.contains(&slot.addr)
                && !banned(&slot.addr)
            {
                dials.push(Dial { addr: slot.addr.clone(), kind: DialKind::Static(i) });
            }
        }
        for d in &dials {
            self.in_use.insert(d.addr.clone());
        }
        if self.cfg.connect_only || now < self.next_auto_at {
            return dials;
        }
        let mut groups: HashSet<NetGroup> =
            self.outbound.values().filter(|o| o.slot.is_none()).map(|o| o.group.clone()).collect();
        let budget = self.cfg.max_outbound.saturating_sub(self.outbound.len() + dials.len());
        let storming = self.failures_in_row >= self.storm_threshold();
        for _ in 0..budget {
            let choice = {
                let in_use = &self.in_use;
                let retry = &self.retry;
                let diverse = self.cfg.diverse_netgroups;
                let groups = &groups;
                let exclude = |a: &PeerAddr| {
                    in_use.contains(a)
                        || banned(a)
                        || retry.blocked(a, now)
                        || (diverse && groups.contains(&netgroup(a)))
                };
                pick(&exclude)
            };
            let Some(addr) = choice else { break };
            groups.insert(netgroup(&addr));
            self.in_use.insert(addr.clone());
            dials.push(Dial { addr, kind: DialKind::Automatic });
            if storming {
                // Everything has been failing: one automatic dial per interval.
                break;
            }
        }
        dials
    }

    fn storm_threshold(&self) -> u32 {
        u32::try_from(self.cfg.max_outbound.max(3)).unwrap_or(u32::MAX)
    }

    /// A dial was started for `peer` (call for each `Dial` executed).
    pub fn dialing(&mut self, peer: PeerId, dial: &Dial) {
        let slot = match dial.kind {
            DialKind::Static(i) => {
                if let Some(s) = self.slots.get_mut(i) {
                    s.peer = Some(peer);
                }
                Some(i)
            }
            DialKind::Automatic => None,
        };
        self.in_use.insert(dial.addr.clone());
        self.outbound.insert(
            peer,
            Outbound { addr: dial.addr.clone(), group: netgroup(&dial.addr), slot, ready: false },
        );
    }

    /// An outbound peer completed its handshake.
    pub fn on_ready(&mut self, peer: PeerId) {
        let Some(o) = self.outbound.get_mut(&peer) else { return };
        o.ready = true;
        if let Some(slot) = o.slot.and_then(|i| self.slots.get_mut(i)) {
            slot.backoff.reset();
        }
        self.retry.succeed(&o.addr);
        // Only the book's addresses tell whether automatic dialing works again.
        if o.slot.is_none() {
            self.failures_in_row = 0;
            self.storm.reset();
        }
    }

    /// An outbound peer went away; returns what to do about it. `unit` is a uniform random
    /// number in [0, 1] for jitter. Unknown peers (inbound) give an empty verdict.
    pub fn on_disconnected(
        &mut self,
        peer: PeerId,
        reason: &DisconnectReason,
        now: Instant,
        unit: f64,
    ) -> Verdict {
        let Some(o) = self.outbound.remove(&peer) else { return Verdict::default() };
        self.in_use.remove(&o.addr);
        let kind = reason.kind();
        if let Some(slot) = o.slot.and_then(|i| self.slots.get_mut(i)) {
            slot.peer = None;
            // Static peers are retried forever, never banned; a clean local close redials at once.
            slot.next_at = if kind == ReasonKind::Local { now } else { now + slot.backoff.next_delay(unit) };
            return Verdict::default();
        }
        match kind {
            ReasonKind::Local => Verdict::default(),
            ReasonKind::Misbehavior => Verdict { ban: Some(o.addr.clone()), failed: Some(o.addr) },
            ReasonKind::Network | ReasonKind::Incompatible => {
                self.retry.fail(&o.addr, now, &self.cfg, unit);
                if !o.ready {
                    self.failures_in_row = self.failures_in_row.saturating_add(1);
                    if self.failures_in_row >= self.storm_threshold() {
                        self.next_auto_at = now + self.storm.next_delay(unit);
                    }
                }
                Verdict { ban: None, failed: Some(o.addr) }
            }
        }
    }

    /// An inbound peer went away: misbehaviour bans its address, nothing else matters here.
    pub fn on_inbound_disconnected(&self, addr: &PeerAddr, reason: &DisconnectReason) -> Verdict {
        match reason.kind() {
            ReasonKind::Misbehavior if !self.is_configured_host(addr) => {
                Verdict { ban: Some(addr.clone()), failed: None }
            }
            _ => Verdict::default(),
        }
    }

    /// True if `addr` is on the host of a configured peer (same IP, or same name).
    /// True if `addr` is (the host of) a configured peer: never banned automatically.
    pub fn is_configured_host(&self, addr: &PeerAddr) -> bool {
        self.slots.iter().any(|s| match (&s.addr, addr) {
            (PeerAddr::Ip(a), PeerAddr::Ip(b)) => a.ip() == b.ip(),
            (a, b) => a == b,
        })
    }

    /// When the next static redial or storm pause ends (the group arms a timer at it).
    pub fn next_deadline(&self) -> Option<Instant> {
        let statics = self.slots.iter().filter(|s| s.peer.is_none()).map(|s| s.next_at);
        let storming = !self.cfg.connect_only && self.failures_in_row >= self.storm_threshold();
        statics.chain(storming.then_some(self.next_auto_at)).min()
    }
}

#[cfg(test)]
mod tests;
