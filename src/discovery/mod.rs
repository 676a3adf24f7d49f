//! Finding peers to dial: DNS seeds.
//!
//! A DNS seed is a host name whose A and AAAA records are addresses of reachable nodes (Bitcoin
//! Core's `vSeeds`, listed per chain in [`Network`](crate::Network)). [`query_seeds`] asks all
//! seeds at once, each bounded by a timeout, and merges the answers into a deduped, bounded list
//! of [`PeerAddr`]s with the chain's port; the seeds that failed come back as
//! [`DiscoveryError`]s naming the seed, for the caller to log once.
//!
//! Resolution sits behind the [`SeedResolver`] trait:
//!
//! - [`DnsResolver`] (in [`dns`]) is hickory-resolver's tokio resolver, either with the operating
//!   system's configuration ([`DnsResolver::system`], production) or with exactly one name
//!   server and nothing from the system ([`DnsResolver::with_server`], tests and private
//!   networks).
//! - [`StaticResolver`] answers from a map, for tests of code that consumes seeds.
//!
//! The merge itself is pure ([`merge_seed_answers`]): it takes the seeds' answers in order and
//! interleaves them round-robin, so that a `limit` smaller than the total draws from every seed
//! rather than from the first one only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), btcpeer::discovery::DiscoveryError> {
//! use btcpeer::discovery::{query_seeds, DnsResolver};
//! let resolver = DnsResolver::system()?;
//! let seeds = vec!["seed.bitcoin.sipa.be".to_owned(), "dnsseed.bluematt.me".to_owned()];
//! let (addrs, errors) = query_seeds(&resolver, &seeds, 8333, 100).await;
//! for e in &errors {
//!     eprintln!("{e}");
//! }
//! println!("{} addresses", addrs.len());
//! # Ok(())
//! # }
//! ```

pub mod dns;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::join_all;

use crate::peer::PeerAddr;

pub use dns::{DiscoveryError, DnsResolver, LookupFuture, SeedResolver, MAX_ADDRS_PER_SEED};

/// How long [`query_seeds`] waits for one seed. Above the system resolver's own worst case with
/// `resolv.conf` defaults (5 s per try, A and AAAA in parallel, 2 retries: 15 s), so the
/// resolver's own, more specific error is normally the one reported.
pub const SEED_LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);

/// At most this many seeds are asked in one [`query_seeds`] call (the rest are ignored, with a
/// warning). Every chain lists fewer than ten.
pub const MAX_SEEDS: usize = 64;

/// Asks every seed in `seeds` concurrently, each bounded by [`SEED_LOOKUP_TIMEOUT`], and returns
/// the merged addresses (as `PeerAddr::Ip(ip:port)`, deduped, at most `limit`, interleaved across
/// seeds; see [`merge_seed_answers`]) and one error per seed that gave nothing.
pub async fn query_seeds(
    resolver: &dyn SeedResolver,
    seeds: &[String],
    port: u16,
    limit: usize,
) -> (Vec<PeerAddr>, Vec<DiscoveryError>) {
    query_seeds_with_timeout(resolver, seeds, port, limit, SEED_LOOKUP_TIMEOUT).await
}

/// [`query_seeds`] with `timeout` per seed instead of [`SEED_LOOKUP_TIMEOUT`].
pub async fn query_seeds_with_timeout(
    resolver: &dyn SeedResolver,
    seeds: &[String],
    port: u16,
    limit: usize,
    timeout: Duration,
) -> (Vec<PeerAddr>, Vec<DiscoveryError>) {
    if seeds.len() > MAX_SEEDS {
        tracing::warn!(
            seeds = seeds.len(),
            max = MAX_SEEDS,
            "too many dns seeds; asking the first ones only"
        );
    }
    let lookups = seeds.iter().take(MAX_SEEDS).map(|host| async move {
        match tokio::time::timeout(timeout, resolver.lookup(host)).await {
            Ok(result) => result,
            Err(_) => Err(DiscoveryError::Timeout { host: host.clone(), after: timeout }),
        }
    });
    let mut answers = Vec::new();
    let mut errors = Vec::new();
    for (host, result) in seeds.iter().zip(join_all(lookups).await) {
        match result {
            Ok(ips) => {
                tracing::debug!(seed = %host, addrs = ips.len(), "dns seed answered");
                answers.push(ips);
            }
            Err(e) => errors.push(e),
        }
    }
    (merge_seed_answers(&answers, port, limit), errors)
}

/// Merges seeds' answers (pure): round-robin over the seeds (first address of each seed, then
/// the second of each, ...), at most [`MAX_ADDRS_PER_SEED`] from each, skipping addresses already
/// taken, until `limit` addresses are collected.
pub fn merge_seed_answers(answers: &[Vec<IpAddr>], port: u16, limit: usize) -> Vec<PeerAddr> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let rounds = answers.iter().map(|a| a.len().min(MAX_ADDRS_PER_SEED)).max().unwrap_or(0);
    'rounds: for i in 0..rounds {
        for ip in answers.iter().filter_map(|a| a.get(i)) {
            if out.len() >= limit {
                break 'rounds;
            }
            if seen.insert(*ip) {
                out.push(PeerAddr::Ip(SocketAddr::new(*ip, port)));
            }
        }
    }
    out
}

/// What a [`StaticResolver`] answers for one host.
#[derive(Clone, Debug)]
enum StaticAnswer {
    Addrs(Vec<IpAddr>),
    Fail(DiscoveryError),
    Hang,
}

/// A [`SeedResolver`] answering from a map, for tests: configured hosts get their addresses (or
/// error, or no answer at all), any other host gets [`DiscoveryError::NotFound`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use btcpeer::discovery::{query_seeds, StaticResolver};
/// let r = StaticResolver::new().with("seed.test", ["127.0.0.2".parse().unwrap()]);
/// let (addrs, errors) = query_seeds(&r, &["seed.test".into(), "gone.test".into()], 18444, 10).await;
/// assert_eq!(addrs, vec!["127.0.0.2:18444".parse().unwrap()]);
/// assert_eq!(errors[0].host(), Some("gone.test"));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    answers: HashMap<String, StaticAnswer>,
}

impl StaticResolver {
    /// A resolver that knows no host.
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// `host` resolves to `addrs` (as given: not deduped, not bounded).
    pub fn with(mut self, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> StaticResolver {
        self.answers.insert(host.to_owned(), StaticAnswer::Addrs(addrs.into_iter().collect()));
        self
    }

    /// Looking up `host` fails with `error`.
    pub fn failing(mut self, host: &str, error: DiscoveryError) -> StaticResolver {
        self.answers.insert(host.to_owned(), StaticAnswer::Fail(error));
        self
    }

    /// Looking up `host` never completes (for testing timeouts).
    pub fn hanging(mut self, host: &str) -> StaticResolver {
        self.answers.insert(host.to_owned(), StaticAnswer::Hang);
        self
    }
}

impl SeedResolver for StaticResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        let answer = self.answers.get(host).cloned();
        Box::pin(async move {
            match answer {
                Some(StaticAnswer::Addrs(ips)) => Ok(ips),
                Some(StaticAnswer::Fail(e)) => Err(e),
                Some(StaticAnswer::Hang) => std::future::pending().await,
                None => Err(DiscoveryError::NotFound { host: host.to_owned() }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn peer(s: &str) -> PeerAddr {
        s.parse().unwrap()
    }

    #[test]
    fn merge_interleaves_dedupes_and_limits() {
        let a = vec![ip("127.0.0.2"), ip("127.0.0.3"), ip("127.0.0.4")];
        let b = vec![ip("127.0.0.3"), ip("::1")];
        let all = merge_seed_answers(&[a.clone(), b.clone()], 8333, 100);
        assert_eq!(
            all,
            vec![peer("127.0.0.2:8333"), peer("127.0.0.3:8333"), peer("[::1]:8333"), peer("127.0.0.4:8333")]
        );
        assert_eq!(merge_seed_answers(&[a.clone(), b.clone()], 8333, 2), all[..2].to_vec());
        assert!(merge_seed_answers(&[a, b], 8333, 0).is_empty());
        assert!(merge_seed_answers(&[], 8333, 10).is_empty());
    }

    #[test]
    fn query_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let r = StaticResolver::new();
        let seeds = vec!["a.test".to_owned()];
        assert_send(&query_seeds(&r, &seeds, 1, 1));
    }

    #[test]
    fn merge_takes_at_most_the_per_seed_bound() {
        let big: Vec<IpAddr> =
            (0..=255u8).flat_map(|a| (0..=255u8).map(move |b| IpAddr::from([10, 0, a, b]))).collect();
        assert_eq!(merge_seed_answers(&[big], 1, usize::MAX).len(), MAX_ADDRS_PER_SEED);
    }

    #[tokio::test]
    async fn query_reports_each_failed_seed_and_merges_the_rest() {
        let r = StaticResolver::new()
            .with("a.test", [ip("127.0.0.2"), ip("127.0.0.3")])
            .with("b.test", [ip("127.0.0.3"), ip("127.0.0.4")])
            .failing("c.test", DiscoveryError::NoRecords { host: "c.test".into() });
        let seeds: Vec<String> = ["a.test", "b.test", "c.test", "d.test"].map(String::from).into();
        let (addrs, errors) = query_seeds(&r, &seeds, 18444, 10).await;
        assert_eq!(addrs, vec![peer("127.0.0.2:18444"), peer("127.0.0.3:18444"), peer("127.0.0.4:18444")]);
        assert_eq!(
            errors,
            vec![
                DiscoveryError::NoRecords { host: "c.test".into() },
                DiscoveryError::NotFound { host: "d.test".into() },
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_seed_times_out_without_holding_back_the_others() {
        let r = StaticResolver::new().with("a.test", [ip("127.0.0.2")]).hanging("slow.test");
        let seeds: Vec<String> = ["slow.test", "a.test"].map(String::from).into();
        let start = tokio::time::Instant::now();
        let limit = Duration::from_secs(3);
        let (addrs, errors) = query_seeds_with_timeout(&r, &seeds, 1, 10, limit).await;
        assert_eq!(start.elapsed(), limit);
        assert_eq!(addrs, vec![peer("127.0.0.2:1")]);
        assert_eq!(errors, vec![DiscoveryError::Timeout { host: "slow.test".into(), after: limit }]);
    }

    #[tokio::test]
    async fn seeds_beyond_the_bound_are_not_asked() {
        let mut r = StaticResolver::new();
        let seeds: Vec<String> = (0..MAX_SEEDS + 5).map(|i| format!("s{i}.test")).collect();
        for (i, s) in seeds.iter().enumerate() {
            r = r.with(s, [IpAddr::from([10, 1, 0, u8::try_from(i).unwrap()])]);
        }
        let (addrs, errors) = query_seeds(&r, &seeds, 1, usize::MAX).await;
        assert_eq!(addrs.len(), MAX_SEEDS);
        assert!(errors.is_empty());
    }
}
