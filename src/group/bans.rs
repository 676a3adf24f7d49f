//! The ban list: addresses we refuse to dial or accept until a deadline. Pure (times are unix
//! seconds passed in) and bounded; persisted by the group with `persist::save_json`.
//!
//! Its memory is fixed up front, as Core's discouragement filter's is (`banman.h`,
//! `CRollingBloomFilter m_discouraged{50000, 0.000001}`, allocated whole when made): the tables
//! are sized for [`MAX_BANS`] when the list is made, and each entry's reason is bounded. A table
//! that grew with the bans stepped up at each rehash, and a full one doubled again under
//! steady evictions (a soak saw both as growth).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::peer::PeerAddr;
pub use crate::peer::{Ban, BanTarget};

/// Most bans kept; beyond it the ban closest to expiry is dropped first (Core's discouragement
/// filter holds 50,000; our list is persisted, so it stays smaller).
pub const MAX_BANS: usize = 10_000;
/// Longest reason kept with a ban, in bytes (cut at a character boundary): reasons are ours,
/// but may quote what a peer sent, and each entry's memory must stay bounded.
const MAX_REASON_LEN: usize = 256;

/// The persisted form.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BanSnapshot {
    /// Format version.
    pub version: u32,
    /// The bans.
    pub bans: Vec<Ban>,
}

/// Current bans, bounded by [`MAX_BANS`], in tables sized for all of them from the start.
#[derive(Debug, Clone)]
pub struct BanList {
    /// The bans, in no order (a removal moves the last one into the gap).
    slots: Vec<Ban>,
    /// Where each target's ban is in `slots`. Sized for twice [`MAX_BANS`]: a hash table
    /// whose removals' tombstones use its room up rehashes in place while at most half full,
    /// but doubles when fuller, so a full list under steady evictions would double it.
    index: HashMap<BanTarget, usize>,
}

impl Default for BanList {
    fn default() -> Self {
        Self::new()
    }
}

impl BanList {
    /// An empty list, its tables allocated for [`MAX_BANS`] entries.
    pub fn new() -> Self {
        BanList { slots: Vec::with_capacity(MAX_BANS), index: HashMap::with_capacity(2 * MAX_BANS) }
    }

    /// Bans `target` until `until` for misbehaviour (extends, never shortens, an existing ban).
    pub fn ban(&mut self, target: BanTarget, now: u64, until: u64, reason: impl Into<String>) -> &Ban {
        self.insert(target, now, until, reason.into(), false)
    }

    /// A ban the user asked for; it is never pushed out by automatic ones.
    pub fn ban_manual(&mut self, target: BanTarget, now: u64, until: u64, reason: impl Into<String>) -> &Ban {
        self.insert(target, now, until, reason.into(), true)
    }

    fn insert(&mut self, target: BanTarget, now: u64, until: u64, mut reason: String, manual: bool) -> &Ban {
        if reason.len() > MAX_REASON_LEN {
            let mut end = MAX_REASON_LEN;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        if let Some(&i) = self.index.get(&target) {
            let entry = &mut self.slots[i];
            entry.manual |= manual;
            if until > entry.until {
                entry.until = until;
                entry.reason = reason;
            }
            return &self.slots[i];
        }
        if self.slots.len() >= MAX_BANS {
            // Push out the automatic ban closest to expiry: a flood of automatic bans must not
            // flush the user's own.
            let soonest = |manual_too: bool| {
                (self.slots.iter().enumerate())
                    .filter(|(_, b)| manual_too || !b.manual)
                    .min_by_key(|(_, b)| b.until)
                    .map(|(i, _)| i)
            };
            if let Some(victim) = soonest(false).or_else(|| soonest(true)) {
                self.remove_at(victim);
            }
        }
        self.index.insert(target.clone(), self.slots.len());
        self.slots.push(Ban { target, since: now, until, reason, manual });
        &self.slots[self.slots.len() - 1]
    }

    /// Removes the ban at `i`, moving the last one into its place.
    fn remove_at(&mut self, i: usize) -> Ban {
        let ban = self.slots.swap_remove(i);
        self.index.remove(&ban.target);
        if let Some(moved) = self.slots.get(i) {
            if let Some(at) = self.index.get_mut(&moved.target) {
                *at = i;
            }
        }
        ban
    }

    /// Lifts a ban; true if there was one.
    pub fn unban(&mut self, target: &BanTarget) -> bool {
        match self.index.get(target) {
            Some(&i) => {
                self.remove_at(i);
                true
            }
            None => false,
        }
    }

    /// True if `addr` is banned at `now`.
    pub fn is_banned(&self, addr: &PeerAddr, now: u64) -> bool {
        self.index.get(&BanTarget::of(addr)).is_some_and(|&i| self.slots[i].until > now)
    }

    /// Removes and returns the bans that expired by `now`.
    pub fn expire(&mut self, now: u64) -> Vec<Ban> {
        let mut expired = Vec::new();
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].until <= now {
                // The last ban moved into `i`: look at it next.
                expired.push(self.remove_at(i));
            } else {
                i += 1;
            }
        }
        expired
    }

    /// All bans, soonest expiry first.
    pub fn list(&self) -> Vec<Ban> {
        let mut v = self.slots.clone();
        v.sort_by(|a, b| a.until.cmp(&b.until).then_with(|| a.target.cmp(&b.target)));
        v
    }

    /// Number of bans.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    /// True when nobody is banned.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The persisted form.
    pub fn snapshot(&self) -> BanSnapshot {
        BanSnapshot { version: 1, bans: self.list() }
    }

    /// Restores from a snapshot, dropping expired, duplicate and excess entries.
    pub fn restore(snapshot: BanSnapshot, now: u64) -> (BanList, Vec<String>) {
        let mut problems = Vec::new();
        if snapshot.version != 1 {
            problems.push(format!("unknown ban list version {}; starting empty", snapshot.version));
            return (BanList::new(), problems);
        }
        let mut list = BanList::new();
        for b in snapshot.bans.into_iter().filter(|b| b.until > now) {
            list.insert(b.target, b.since, b.until, b.reason, b.manual);
        }
        (list, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn addr(s: &str) -> PeerAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bans_cover_every_port_of_an_ip_and_expire() {
        let mut l = BanList::new();
        l.ban(BanTarget::of(&addr("10.0.0.1:8333")), 100, 200, "bad headers");
        assert!(l.is_banned(&addr("10.0.0.1:1"), 150));
        assert!(!l.is_banned(&addr("10.0.0.2:8333"), 150));
        assert!(!l.is_banned(&addr("10.0.0.1:8333"), 200));
        assert_eq!(l.expire(199).len(), 0);
        assert_eq!(l.expire(200).len(), 1);
        assert!(l.is_empty());
    }

    #[test]
    fn ipv6_bans_cover_the_slash_64_and_manual_bans_are_never_pushed_out() {
        let mut l = BanList::new();
        l.ban(BanTarget::of(&addr("[2001:db8:1:2::1]:8333")), 0, 100, "x");
        assert!(l.is_banned(&addr("[2001:db8:1:2:ffff::9]:1"), 50));
        assert!(!l.is_banned(&addr("[2001:db8:1:3::1]:1"), 50));
        assert_eq!(l.list()[0].target.to_string(), "2001:db8:1:2::/64");
        let mut l = BanList::new();
        l.ban_manual(BanTarget::Host("mine.onion".into()), 0, 10, "user");
        for i in 0..MAX_BANS as u32 {
            l.ban(BanTarget::Ip(IpAddr::from(i.to_be_bytes())), 0, 1_000, "flood");
        }
        assert!(l.is_banned(&addr("mine.onion:1"), 5), "the user's ban survives the flood");
    }

    #[test]
    fn a_ban_is_extended_never_shortened() {
        let mut l = BanList::new();
        let t = BanTarget::Host("x.onion".into());
        l.ban(t.clone(), 0, 500, "a");
        l.ban(t.clone(), 0, 100, "b");
        assert_eq!(l.list()[0].until, 500);
        l.ban(t, 0, 900, "c");
        assert_eq!((l.list()[0].until, l.list()[0].reason.as_str()), (900, "c"));
    }

    #[test]
    fn the_list_is_bounded() {
        let mut l = BanList::new();
        for i in 0..(MAX_BANS as u64 + 50) {
            let ip = IpAddr::from((i as u32).to_be_bytes());
            l.ban(BanTarget::Ip(ip), 0, 1_000 + i, "flood");
        }
        assert_eq!(l.len(), MAX_BANS);
        // The soonest-expiring ones went first.
        assert!(l.list()[0].until >= 1_050);
    }

    #[test]
    fn memory_is_fixed_up_front() {
        // The table never grows (no rehash while bans arrive), and reasons are bounded.
        let mut l = BanList::new();
        let (slots, table) = (l.slots.capacity(), l.index.capacity());
        assert!(slots >= MAX_BANS && table >= 2 * MAX_BANS);
        for i in 0..(3 * MAX_BANS as u32) {
            let reason = format!("{i} {}", "é".repeat(400));
            l.ban(BanTarget::Ip(IpAddr::from(i.to_be_bytes())), 0, 1_000 + u64::from(i), reason);
        }
        // Evictions leave tombstones that take room, so the count may fall; it never rises.
        assert!(l.index.capacity() <= table && l.slots.capacity() == slots);
        assert_eq!((l.len(), l.index.len()), (MAX_BANS, MAX_BANS));
        // Every entry is found where the index says, after all the moves.
        assert!(l.slots.iter().enumerate().all(|(i, b)| l.index.get(&b.target) == Some(&i)));
        assert!(l.list().iter().all(|b| b.reason.len() <= MAX_REASON_LEN && b.reason.ends_with('é')));
        let (restored, _) = BanList::restore(l.snapshot(), 0);
        assert!(restored.index.capacity() >= 2 * MAX_BANS);
    }

    #[test]
    fn snapshot_round_trip_drops_expired() {
        let mut l = BanList::new();
        l.ban(BanTarget::Ip("1.2.3.4".parse().unwrap()), 0, 50, "old");
        l.ban(BanTarget::Ip("1.2.3.5".parse().unwrap()), 0, 500, "new");
        let json = serde_json::to_string(&l.snapshot()).unwrap();
        let (restored, problems) = BanList::restore(serde_json::from_str(&json).unwrap(), 100);
        assert!(problems.is_empty());
        assert_eq!(restored.len(), 1);
        assert!(restored.is_banned(&addr("1.2.3.5:1"), 100));
    }
}
