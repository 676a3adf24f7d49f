//! The ban list: addresses we refuse to dial or accept until a deadline. Pure (times are unix
//! seconds passed in) and bounded; persisted by the group with `persist::save_json`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::peer::PeerAddr;
pub use crate::peer::{Ban, BanTarget};

/// Most bans kept; beyond it the ban closest to expiry is dropped first (Core's discouragement
/// filter holds 50,000; our list is persisted, so it stays smaller).
pub const MAX_BANS: usize = 10_000;

/// The persisted form.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BanSnapshot {
    /// Format version.
    pub version: u32,
    /// The bans.
    pub bans: Vec<Ban>,
}

/// Current bans, bounded by [`MAX_BANS`].
#[derive(Debug, Clone, Default)]
pub struct BanList {
    bans: HashMap<BanTarget, Ban>,
}

impl BanList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bans `target` until `until` for misbehaviour (extends, never shortens, an existing ban).
    pub fn ban(&mut self, target: BanTarget, now: u64, until: u64, reason: impl Into<String>) -> &Ban {
        self.insert(target, now, until, reason.into(), false)
    }

    /// A ban the user asked for; it is never pushed out by automatic ones.
    pub fn ban_manual(&mut self, target: BanTarget, now: u64, until: u64, reason: impl Into<String>) -> &Ban {
        self.insert(target, now, until, reason.into(), true)
    }

    fn insert(&mut self, target: BanTarget, now: u64, until: u64, reason: String, manual: bool) -> &Ban {
        if !self.bans.contains_key(&target) && self.bans.len() >= MAX_BANS {
            // Push out the automatic ban closest to expiry: a flood of automatic bans must not
            // flush the user's own.
            let automatic = self.bans.values().filter(|b| !b.manual).min_by_key(|b| b.until);
            let victim =
                automatic.or_else(|| self.bans.values().min_by_key(|b| b.until)).map(|b| b.target.clone());
            if let Some(victim) = victim {
                self.bans.remove(&victim);
            }
        }
        let entry = self.bans.entry(target.clone()).or_insert(Ban {
            target,
            since: now,
            until,
            reason: reason.clone(),
            manual,
        });
        entry.manual |= manual;
        if until > entry.until {
            entry.until = until;
            entry.reason = reason;
        }
        entry
    }

    /// Lifts a ban; true if there was one.
    pub fn unban(&mut self, target: &BanTarget) -> bool {
        self.bans.remove(target).is_some()
    }

    /// True if `addr` is banned at `now`.
    pub fn is_banned(&self, addr: &PeerAddr, now: u64) -> bool {
        self.bans.get(&BanTarget::of(addr)).is_some_and(|b| b.until > now)
    }

    /// Removes and returns the bans that expired by `now`.
    pub fn expire(&mut self, now: u64) -> Vec<Ban> {
        let expired: Vec<BanTarget> =
            self.bans.values().filter(|b| b.until <= now).map(|b| b.target.clone()).collect();
        expired.iter().filter_map(|t| self.bans.remove(t)).collect()
    }

    /// All bans, soonest expiry first.
    pub fn list(&self) -> Vec<Ban> {
        let mut v: Vec<Ban> = self.bans.values().cloned().collect();
        v.sort_by(|a, b| a.until.cmp(&b.until).then_with(|| a.target.cmp(&b.target)));
        v
    }

    /// Number of bans.
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    #[cfg(test)]
    /// True when nobody is banned.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
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
