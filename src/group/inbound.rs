//! Inbound admission and eviction, after Core's `SelectNodeToEvict` (`node/eviction.cpp`):
//! when the inbound slots are full, protect peers that are hard for an attacker to imitate
//! (distinct network groups, low latency, long-lived), then evict the youngest peer of the
//! network group with the most connections. If every peer is protected the newcomer is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::addrbook::netgroup::NetGroup;
use crate::peer::PeerId;

/// Peers protected for having distinct network groups (Core: 4).
pub const PROTECT_BY_NETGROUP: usize = 4;
/// Peers protected for the lowest ping (Core: 8).
pub const PROTECT_BY_PING: usize = 8;

/// What eviction looks at for one inbound peer.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The peer.
    pub id: PeerId,
    /// Its network group.
    pub group: NetGroup,
    /// When it connected.
    pub connected_at: Instant,
    /// Its last ping round trip, if measured.
    pub ping: Option<Duration>,
}

/// What to do with a new inbound connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Take it.
    Accept,
    /// Slots are full: take it only if [`select_eviction`] finds a victim.
    EvictFirst,
    /// Close it at once.
    Refuse(Refusal),
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The group is closing or was told to stop accepting.
    NotAccepting,
    /// The address is banned.
    Banned,
    /// Too many connections from this IP.
    PerIpLimit,
}

/// The group's state as admission sees it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Accepting at all (not closing, not stopped).
    pub accepting: bool,
    /// Inbound peers now.
    pub inbound: usize,
    /// Inbound limit.
    pub max_inbound: usize,
    /// Per-IP limit (0: none).
    pub max_per_ip: usize,
}

/// Decides about a newcomer from `ip` (already known to be banned or not).
pub fn admit(ip: IpAddr, banned: bool, per_ip: &HashMap<IpAddr, usize>, limits: Limits) -> Admission {
    if !limits.accepting {
        return Admission::Refuse(Refusal::NotAccepting);
    }
    if banned {
        return Admission::Refuse(Refusal::Banned);
    }
    if limits.max_per_ip != 0 && per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_per_ip {
        return Admission::Refuse(Refusal::PerIpLimit);
    }
    if limits.inbound < limits.max_inbound {
        Admission::Accept
    } else {
        Admission::EvictFirst
    }
}

/// The peer to evict so a newcomer fits, or `None` to refuse the newcomer.
pub fn select_eviction(mut candidates: Vec<Candidate>) -> Option<PeerId> {
    // Protect the oldest peer of up to four distinct network groups.
    candidates.sort_by_key(|c| c.connected_at);
    let mut seen = Vec::new();
    candidates.retain(|c| {
        if seen.len() < PROTECT_BY_NETGROUP && !seen.contains(&c.group) {
            seen.push(c.group.clone());
            return false;
        }
        true
    });
    // Protect the lowest latencies (unmeasured ones sort last).
    candidates.sort_by_key(|c| c.ping.unwrap_or(Duration::MAX));
    candidates.drain(..PROTECT_BY_PING.min(candidates.len()));
    // Protect the older half of the rest.
    candidates.sort_by_key(|c| c.connected_at);
    let half = candidates.len() / 2;
    candidates.drain(..half);
    if candidates.is_empty() {
        return None;
    }
    // Evict the youngest member of the most represented network group.
    let mut by_group: HashMap<&NetGroup, Vec<&Candidate>> = HashMap::new();
    for c in &candidates {
        by_group.entry(&c.group).or_default().push(c);
    }
    let largest = by_group
        .values()
        .max_by_key(|members| (members.len(), members.iter().map(|m| m.connected_at).max()))?;
    largest.iter().max_by_key(|m| m.connected_at).map(|m| m.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addrbook::netgroup::netgroup;

    fn cand(ip: &str, age_secs: u64, ping_ms: Option<u64>, t0: Instant) -> Candidate {
        let addr: crate::peer::PeerAddr = format!("{ip}:8333").parse().unwrap();
        Candidate {
            id: PeerId::next(),
            group: netgroup(&addr),
            connected_at: t0 - Duration::from_secs(age_secs),
            ping: ping_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn evicts_the_youngest_of_the_largest_group() {
        let t0 = Instant::now() + Duration::from_secs(100_000);
        let mut c = Vec::new();
        // Twenty peers from one /16 (an attacker), ten from distinct groups.
        for i in 0..20 {
            c.push(cand(&format!("6.6.{i}.1"), 100 + i, Some(500), t0));
        }
        for i in 0..10 {
            c.push(cand(&format!("{}.1.1.1", 20 + i), 50, Some(100), t0));
        }
        let youngest_attacker = c[0].id;
        assert_eq!(select_eviction(c), Some(youngest_attacker));
    }

    #[test]
    fn refuses_when_everyone_is_protected() {
        let t0 = Instant::now() + Duration::from_secs(100_000);
        let c: Vec<_> = (0..4).map(|i| cand(&format!("{}.1.1.1", i + 1), 10, None, t0)).collect();
        assert_eq!(select_eviction(c), None);
        assert_eq!(select_eviction(vec![]), None);
    }

    #[test]
    fn admission_rules() {
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let limits = Limits { accepting: true, inbound: 0, max_inbound: 2, max_per_ip: 2 };
        let mut m = HashMap::new();
        assert_eq!(admit(ip, false, &m, limits), Admission::Accept);
        assert_eq!(admit(ip, true, &m, limits), Admission::Refuse(Refusal::Banned));
        let closed = Limits { accepting: false, ..limits };
        assert_eq!(admit(ip, false, &m, closed), Admission::Refuse(Refusal::NotAccepting));
        m.insert(ip, 2);
        assert_eq!(admit(ip, false, &m, limits), Admission::Refuse(Refusal::PerIpLimit));
        assert_eq!(admit(ip, false, &m, Limits { max_per_ip: 0, ..limits }), Admission::Accept);
        let full = Limits { inbound: 2, max_per_ip: 0, ..limits };
        assert_eq!(admit(ip, false, &m, full), Admission::EvictFirst);
    }
}
