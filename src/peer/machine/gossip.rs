//! Address gossip: `addr`/`addrv2` we receive (remembered as known to the peer and rate
//! limited like Core) and addresses we push to the peer.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::{PeerMachine, Verdict};
use crate::peer::Link;
use crate::peer::PeerState;
use crate::wire::limits::MAX_ADDR_TO_SEND;
use crate::wire::{self, AddrV2, AddrV2Message, Message, ServiceFlags};

/// What we announce of ourselves (see [`MachineConfig::advertise`](super::MachineConfig::advertise)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertise {
    /// The port we accept peers on.
    pub port: u16,
    /// The services the announcement carries (what we offer now).
    pub services: ServiceFlags,
    /// Our public addresses (Core's `-externalip`). The one announced is publicly routable
    /// and of the peer's family when there is one.
    pub external: Vec<IpAddr>,
    /// With no usable `external` address: announce the address the peer says it sees us at
    /// (its `version`'s receiver) when it is publicly routable (Core's discovery). Off behind
    /// a proxy, where that is the proxy's address (Core turns `-discover` off with `-proxy`).
    pub discover: bool,
}

/// Mean time between self-announcements to one peer (`AVG_LOCAL_ADDRESS_BROADCAST_INTERVAL`,
/// `net_processing.cpp`).
pub const SELF_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Address token bucket refill (`MAX_ADDR_RATE_PER_SECOND`, `net_processing.cpp`).
pub const MAX_ADDR_RATE_PER_SECOND: f64 = 0.1;
/// Address token bucket size (`MAX_ADDR_PROCESSING_TOKEN_BUCKET`, `net_processing.cpp`).
pub const MAX_ADDR_PROCESSING_TOKEN_BUCKET: f64 = 1_000.0;

/// Addresses remembered as known to the peer (Core's per-peer known-address filter: 5,000).
pub const MAX_KNOWN_ADDRS: usize = 5_000;

/// Core's per-peer address token bucket (`Peer::m_addr_token_bucket`, `net_processing.cpp`).
/// The refill clock starts on the first instant it is given (the connect time in practice), so
/// building one reads no clock.
#[derive(Debug)]
pub(super) struct AddrBudget {
    tokens: f64,
    refilled_at: Option<Instant>,
    limited: u64,
}

impl AddrBudget {
    /// Core starts the bucket with one token (`m_addr_token_bucket{1.0}`).
    pub(super) fn new() -> Self {
        AddrBudget { tokens: 1.0, refilled_at: None, limited: 0 }
    }

    /// Starts (or restarts) the refill clock.
    pub(super) fn start(&mut self, now: Instant) {
        self.refilled_at = Some(now);
    }

    /// We sent `getaddr`: Core grants a full bucket for the answer (`ProcessMessage`, VERACK).
    pub(super) fn getaddr_sent(&mut self) {
        self.tokens += MAX_ADDR_PROCESSING_TOKEN_BUCKET;
    }

    /// Addresses dropped so far.
    pub(super) fn limited(&self) -> u64 {
        self.limited
    }

    /// Core's `ProcessAddrs`: refills 0.1 per second up to 1,000, then admits whole tokens.
    /// Returns how many of `count` addresses are processed; the rest are dropped, not punished.
    pub(super) fn admit(&mut self, now: Instant, count: usize) -> usize {
        // Before the clock started there is nothing to refill.
        let elapsed = self.refilled_at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.refilled_at = Some(now);
        if self.tokens < MAX_ADDR_PROCESSING_TOKEN_BUCKET {
            self.tokens =
                (self.tokens + elapsed * MAX_ADDR_RATE_PER_SECOND).min(MAX_ADDR_PROCESSING_TOKEN_BUCKET);
        }
        // Whole tokens only; the budget is at most a few thousand, so the cast is exact.
        let allowed = (self.tokens.floor() as usize).min(count);
        self.tokens -= allowed as f64;
        self.limited += (count - allowed) as u64;
        allowed
    }
}

impl PeerMachine {
    /// A received `addr`/`addrv2` (after the handshake): oversized lists are misbehaviour,
    /// entries become known to the peer, and the rate limit decides how many are published.
    pub(super) fn on_addr_message(&mut self, now: Instant, msg: &Message) -> Verdict {
        let count = match msg {
            Message::Addr(a) if a.len() > MAX_ADDR_TO_SEND => {
                return self.too_many("addr", a.len(), MAX_ADDR_TO_SEND)
            }
            Message::AddrV2(a) if a.len() > MAX_ADDR_TO_SEND => {
                return self.too_many("addrv2", a.len(), MAX_ADDR_TO_SEND)
            }
            Message::Addr(a) => {
                for (time, entry) in a {
                    self.known_addrs.insert(wire::addr_key(&wire::addr_v1_to_v2(*time, entry)));
                }
                a.len()
            }
            Message::AddrV2(a) => {
                for entry in a {
                    self.known_addrs.insert(wire::addr_key(entry));
                }
                a.len()
            }
            _ => return Verdict::Deliver,
        };
        let allowed = self.addr_budget.admit(now, count);
        match (allowed, count - allowed) {
            (_, 0) => Verdict::Deliver,
            (0, _) => Verdict::Consumed,
            (n, _) => Verdict::DeliverFirst(n),
        }
    }

    /// Addresses dropped by the rate limit so far (Core's `addr_rate_limited`).
    pub fn addr_rate_limited(&self) -> u64 {
        self.addr_budget.limited()
    }

    /// Sends addresses (btcd's `PushAddrMsg`): entries the peer already knows are skipped, at most
    /// 1,000 go out (a random subset when there are more, without duplicates), as `addrv2` when
    /// the peer asked for it and as `addr` (IPv4/IPv6 only) otherwise. Returns how many were sent.
    pub fn push_addr(&mut self, addrs: &[AddrV2Message]) -> usize {
        if self.state != PeerState::Ready {
            return 0;
        }
        let v2 = self.remote.as_ref().is_some_and(|r| r.features.addr_v2);
        let mut seen = HashSet::new();
        let fresh: Vec<&AddrV2Message> = addrs
            .iter()
            .filter(|a| v2 || wire::addr_ip(&a.addr).is_some())
            .filter(|a| {
                let key = wire::addr_key(a);
                !self.known_addrs.contains(&key) && seen.insert(key)
            })
            .collect();
        let chosen: Vec<&AddrV2Message> = if fresh.len() > MAX_ADDR_TO_SEND {
            rand::seq::index::sample(&mut self.rng, fresh.len(), MAX_ADDR_TO_SEND)
                .into_iter()
                .map(|i| fresh[i])
                .collect()
        } else {
            fresh
        };
        for a in &chosen {
            self.known_addrs.insert(wire::addr_key(a));
        }
        let n = chosen.len();
        if n == 0 {
            return 0;
        }
        if v2 {
            self.send(Message::AddrV2(chosen.into_iter().cloned().collect()));
        } else {
            self.send(Message::Addr(chosen.into_iter().filter_map(wire::addr_v2_to_v1).collect()));
        }
        n
    }

    /// Announces our own address when it is due (see [`MachineConfig::advertise`]), then
    /// schedules the next announcement an exponential delay away, as Core does.
    pub(super) fn maybe_self_announce(&mut self, now: Instant) {
        let Some(due) = self.next_self_announce else { return };
        if now < due || self.state != PeerState::Ready {
            return;
        }
        let unit: f64 = self.rng.gen();
        let delay = SELF_ANNOUNCE_INTERVAL.mul_f64(-(1.0 - unit).ln()).min(SELF_ANNOUNCE_INTERVAL * 10);
        self.next_self_announce = Some(now + delay);
        let Some(ip) = self.address_to_announce() else { return };
        let Some(advertise) = &self.config.advertise else { return };
        let elapsed = self.connected_at.map_or(0, |at| now.saturating_duration_since(at).as_secs());
        let entry = AddrV2Message {
            time: u32::try_from(self.unix_at_connect.saturating_add(elapsed as i64)).unwrap_or(0),
            services: advertise.services,
            addr: match ip {
                IpAddr::V4(v4) => AddrV2::Ipv4(v4),
                IpAddr::V6(v6) => AddrV2::Ipv6(v6),
            },
            port: advertise.port,
        };
        // Sent even if announced before (Core clears the peer's known-address filter first).
        self.known_addrs.insert(wire::addr_key(&entry));
        if self.remote.as_ref().is_some_and(|r| r.features.addr_v2) {
            self.send(Message::AddrV2(vec![entry]));
        } else if let Some(v1) = wire::addr_v2_to_v1(&entry) {
            self.send(Message::Addr(vec![v1]));
        }
    }

    /// A publicly routable configured address, of the peer's family when there is one (one at
    /// random), else the address the peer sees us at when discovery is on and it is publicly
    /// routable (Core's `GetLocalAddrForPeer`, without its address scores).
    fn address_to_announce(&mut self) -> Option<IpAddr> {
        use crate::addrbook::netgroup::is_routable;
        let advertise = self.config.advertise.as_ref()?;
        let usable: Vec<IpAddr> = advertise.external.iter().copied().filter(|ip| is_routable(*ip)).collect();
        let peer_v4 = self.remote_addr.map(|a| a.ip().to_canonical().is_ipv4());
        let same_family: Vec<IpAddr> =
            usable.iter().copied().filter(|ip| peer_v4.is_none_or(|v4| ip.is_ipv4() == v4)).collect();
        let pool = if same_family.is_empty() { usable } else { same_family };
        if !pool.is_empty() {
            let i = self.rng.gen_range(0..pool.len());
            return Some(pool[i]);
        }
        if !advertise.discover {
            return None;
        }
        self.peer_sees_us.filter(|ip| is_routable(*ip))
    }

    /// A new [`Advertise`] from the group (it started listening, or now offers blocks, or no
    /// longer does). An outbound peer that had none hears us at once.
    pub fn set_advertise(&mut self, now: Instant, advertise: Option<Advertise>) {
        let was = self.config.advertise.is_some();
        self.config.advertise = advertise;
        if self.config.advertise.is_none() {
            self.next_self_announce = None;
        } else if !was && self.link == Link::Outbound && self.state == PeerState::Ready {
            self.next_self_announce = Some(now);
            self.maybe_self_announce(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_refills_from_the_first_instant_it_is_given() {
        let t0 = Instant::now();
        let mut b = AddrBudget::new();
        // No clock yet: only the initial token.
        assert_eq!(b.admit(t0, 5), 1);
        assert_eq!(b.limited(), 4);
        // 100 s later: 10 more tokens.
        assert_eq!(b.admit(t0 + Duration::from_secs(100), 50), 10);
        b.getaddr_sent();
        assert_eq!(b.admit(t0 + Duration::from_secs(100), 2_000), 1_000);
        assert_eq!(b.limited(), 4 + 40 + 1_000);
    }
}
