//! DNS seeds through a real DNS server: dnsmasq on loopback (see `support/dns`), queried by
//! `DnsResolver::with_server`, which asks that server only (never the system's resolvers).

#[path = "support/dns/mod.rs"]
mod dns_support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use btcpeer::discovery::{query_seeds, query_seeds_with_timeout, DiscoveryError, DnsResolver, SeedResolver};
use btcpeer::peer::PeerAddr;
use dns_support::{Dnsmasq, SilentServer};

const ZONE: &str = "btcpeer.test";
const SEED: &str = "seed.btcpeer.test";
const SEED2: &str = "seed2.btcpeer.test";
const DUAL: &str = "dual.btcpeer.test";
const MISSING: &str = "missing.btcpeer.test";
/// Regtest's port: any port would do, the addresses are never dialed.
const PORT: u16 = 18444;
/// Slack over a configured limit for a loaded machine (the limit itself is what is tested).
const SLACK: Duration = Duration::from_secs(2);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// seed → .2 .3 .4; seed2 → .3 (shared with seed) and .5; dual → 127.0.0.6 and ::1.
fn start_dnsmasq() -> Dnsmasq {
    Dnsmasq::start(
        ZONE,
        &[
            (SEED, ip("127.0.0.2")),
            (SEED, ip("127.0.0.3")),
            (SEED, ip("127.0.0.4")),
            (SEED2, ip("127.0.0.3")),
            (SEED2, ip("127.0.0.5")),
            (DUAL, ip("127.0.0.6")),
            (DUAL, ip("::1")),
        ],
    )
}

fn peers(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

fn as_set(addrs: &[PeerAddr]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

#[tokio::test]
async fn seed_name_resolves_to_the_configured_loopback_addresses() {
    let dns = start_dnsmasq();
    let resolver = DnsResolver::with_server(dns.addr);

    let mut ips = resolver.lookup(SEED).await.unwrap_or_else(|e| panic!("{e}; dnsmasq log:\n{}", dns.log()));
    ips.sort();
    assert_eq!(ips, vec![ip("127.0.0.2"), ip("127.0.0.3"), ip("127.0.0.4")]);

    // A and AAAA records of one name both come back.
    let mut ips = resolver.lookup(DUAL).await.unwrap_or_else(|e| panic!("{e}; dnsmasq log:\n{}", dns.log()));
    ips.sort();
    assert_eq!(ips, vec![ip("127.0.0.6"), ip("::1")]);

    let (addrs, errors) = query_seeds(&resolver, &[SEED.to_owned()], PORT, 100).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    assert!(addrs.iter().all(|a| matches!(a, PeerAddr::Ip(_))), "{addrs:?}");
    assert_eq!(as_set(&addrs), peers(&["127.0.0.2:18444", "127.0.0.3:18444", "127.0.0.4:18444"]));
}

#[tokio::test]
async fn unknown_name_is_nxdomain_naming_the_host() {
    let dns = start_dnsmasq();
    let resolver = DnsResolver::with_server(dns.addr);

    let start = Instant::now();
    let err = resolver.lookup(MISSING).await.expect_err("no record for the name");
    let elapsed = start.elapsed();
    assert_eq!(err, DiscoveryError::NotFound { host: MISSING.to_owned() }, "dnsmasq log:\n{}", dns.log());
    assert!(err.to_string().contains(MISSING), "{err}");
    // Answered, not timed out: well under one per-try timeout.
    assert!(elapsed < btcpeer::discovery::dns::SERVER_TIMEOUT, "took {elapsed:?}");

    let (addrs, errors) = query_seeds(&resolver, &[MISSING.to_owned()], PORT, 100).await;
    assert!(addrs.is_empty());
    assert_eq!(errors, vec![DiscoveryError::NotFound { host: MISSING.to_owned() }]);
}

#[tokio::test]
async fn silent_server_times_out_within_the_configured_limit() {
    let silent = SilentServer::bind();

    // The resolver's own bound: every try times out, then the lookup reports it.
    let per_try = Duration::from_millis(200);
    let resolver = DnsResolver::with_server_timeout(silent.addr, per_try);
    let limit = resolver.lookup_limit();
    let start = Instant::now();
    let err = resolver.lookup(SEED).await.expect_err("nothing answers");
    let elapsed = start.elapsed();
    assert!(matches!(&err, DiscoveryError::Timeout { host, .. } if host == SEED), "{err:?}");
    assert!(elapsed >= per_try, "gave up before one try could time out: {elapsed:?}");
    assert!(elapsed <= limit + SLACK, "took {elapsed:?}, limit {limit:?}");

    // query_seeds' per-seed bound, shorter than the resolver's own.
    let resolver = DnsResolver::with_server(silent.addr);
    let seed_limit = Duration::from_millis(300);
    assert!(seed_limit < resolver.lookup_limit());
    let start = Instant::now();
    let (addrs, errors) =
        query_seeds_with_timeout(&resolver, &[SEED.to_owned()], PORT, 100, seed_limit).await;
    let elapsed = start.elapsed();
    assert!(addrs.is_empty());
    assert_eq!(errors, vec![DiscoveryError::Timeout { host: SEED.to_owned(), after: seed_limit }]);
    assert!(elapsed >= seed_limit && elapsed <= seed_limit + SLACK, "took {elapsed:?}");
}

#[tokio::test]
async fn query_seeds_merges_dedupes_and_respects_the_limit() {
    let dns = start_dnsmasq();
    let resolver = DnsResolver::with_server(dns.addr);
    // seed2 shares 127.0.0.3 with seed, and seed is listed twice.
    let seeds: Vec<String> = [SEED, SEED2, MISSING, SEED].map(String::from).into();
    let all = peers(&["127.0.0.2:18444", "127.0.0.3:18444", "127.0.0.4:18444", "127.0.0.5:18444"]);

    let (addrs, errors) = query_seeds(&resolver, &seeds, PORT, 100).await;
    assert_eq!(errors, vec![DiscoveryError::NotFound { host: MISSING.to_owned() }]);
    assert_eq!(addrs.len(), all.len(), "duplicates kept: {addrs:?}");
    assert_eq!(as_set(&addrs), all);

    let (addrs, errors) = query_seeds(&resolver, &seeds, PORT, 2).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let got = as_set(&addrs);
    assert_eq!(got.len(), 2, "duplicates: {addrs:?}");
    assert!(got.is_subset(&all), "{addrs:?}");

    let (addrs, _) = query_seeds(&resolver, &seeds, PORT, 0).await;
    assert!(addrs.is_empty());
}
