//! Resolving DNS seed names: the [`SeedResolver`] trait, its implementation on hickory-resolver
//! ([`DnsResolver`]) and the error a lookup can end with ([`DiscoveryError`]).
//!
//! Only this file names `hickory_resolver` types, so replacing the resolver library is one file's
//! work and no hickory type leaks into the public API.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};

/// At most this many addresses are taken from one seed's answer (A and AAAA together). Bitcoin
/// Core's seeds answer with a few dozen; a bigger answer is cut, not trusted to be useful.
pub const MAX_ADDRS_PER_SEED: usize = 256;

/// Per-try timeout of [`DnsResolver::with_server`]: a server on a local or private network that
/// has not answered in this long is not going to.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(2);

/// Retries after a failed try for [`DnsResolver::with_server`] (so up to `1 + SERVER_RETRIES`
/// tries per record type): one retry covers a lost UDP datagram without making a dead server
/// slow to report.
pub const SERVER_RETRIES: usize = 1;

/// The future a [`SeedResolver`] returns.
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, DiscoveryError>> + Send + 'a>>;

/// Resolves a seed's host name to IP addresses (A and AAAA records).
///
/// Object-safe, so the discovery code takes `&dyn SeedResolver` and tests substitute
/// [`StaticResolver`](super::StaticResolver) or a resolver pointed at a local DNS server.
/// Implementations return at most [`MAX_ADDRS_PER_SEED`] distinct addresses and an error naming
/// `host` when there are none.
pub trait SeedResolver: Send + Sync {
    /// Looks up the A and AAAA records of `host`.
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a>;
}

/// Why a seed gave no addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The name does not exist (`NXDOMAIN`).
    #[error("dns seed {host}: no such name (NXDOMAIN)")]
    NotFound {
        /// The seed's host name.
        host: String,
    },
    /// The name exists but has no A or AAAA records.
    #[error("dns seed {host}: no A or AAAA records")]
    NoRecords {
        /// The seed's host name.
        host: String,
    },
    /// No answer within the limit.
    #[error("dns seed {host}: no answer within {after:?}")]
    Timeout {
        /// The seed's host name.
        host: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The host is not a valid DNS name.
    #[error("dns seed {host:?}: invalid host name: {reason}")]
    InvalidName {
        /// The seed's host name as configured.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other resolver failure (refused, server failure, network error).
    #[error("dns seed {host}: lookup failed: {reason}")]
    Lookup {
        /// The seed's host name.
        host: String,
        /// The resolver's description of the failure.
        reason: String,
    },
    /// The operating system's resolver configuration (e.g. `/etc/resolv.conf`) could not be read.
    #[error("system dns configuration: {reason}")]
    SystemConfig {
        /// Why it could not be used.
        reason: String,
    },
}

impl DiscoveryError {
    /// The seed host this error is about (`None` for [`DiscoveryError::SystemConfig`]).
    pub fn host(&self) -> Option<&str> {
        match self {
            DiscoveryError::NotFound { host }
            | DiscoveryError::NoRecords { host }
            | DiscoveryError::Timeout { host, .. }
            | DiscoveryError::InvalidName { host, .. }
            | DiscoveryError::Lookup { host, .. } => Some(host),
            DiscoveryError::SystemConfig { .. } => None,
        }
    }
}

/// A [`SeedResolver`] on hickory-resolver's tokio resolver.
///
/// Each lookup asks for A and AAAA records in parallel, treats the name as absolute (no search
/// domains are appended to seed names), dedupes the answer and keeps at most
/// [`MAX_ADDRS_PER_SEED`] addresses. Every lookup is bounded by [`DnsResolver::lookup_limit`].
/// A host that is an IP literal resolves to itself without a query.
///
/// Needs a tokio runtime (actix's is one) when looking up, not when built.
#[derive(Clone)]
pub struct DnsResolver {
    inner: TokioResolver,
    limit: Duration,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("name_servers", &self.inner.config().name_servers())
            .field("limit", &self.limit)
            .finish()
    }
}

impl DnsResolver {
    /// The operating system's resolver configuration (`/etc/resolv.conf` on Unix, the registry on
    /// Windows) and hosts file: what production uses.
    pub fn system() -> Result<DnsResolver, DiscoveryError> {
        let mut builder = TokioResolver::builder_tokio()
            .map_err(|e| DiscoveryError::SystemConfig { reason: e.to_string() })?;
        let opts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let limit = total_limit(opts.timeout, opts.attempts);
        Ok(DnsResolver { inner: builder.build(), limit })
    }

    /// Only `server` (over UDP, and TCP for truncated answers): no system configuration, no hosts
    /// file, no search domains; [`SERVER_TIMEOUT`] per try, [`SERVER_RETRIES`] retries. For tests
    /// and private networks.
    pub fn with_server(server: SocketAddr) -> DnsResolver {
        DnsResolver::with_server_timeout(server, SERVER_TIMEOUT)
    }

    /// As [`DnsResolver::with_server`], with `timeout` per try instead of [`SERVER_TIMEOUT`].
    pub fn with_server_timeout(server: SocketAddr, timeout: Duration) -> DnsResolver {
        let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = SERVER_RETRIES;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        let limit = total_limit(opts.timeout, opts.attempts);
        let inner = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build();
        DnsResolver { inner, limit }
    }

    /// The most one lookup can take: every try of one record type timing out (A and AAAA are
    /// asked in parallel). A lookup still running then ends with [`DiscoveryError::Timeout`].
    pub fn lookup_limit(&self) -> Duration {
        self.limit
    }

    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, DiscoveryError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let mut name = Name::from_ascii(host)
            .map_err(|e| DiscoveryError::InvalidName { host: host.to_owned(), reason: e.to_string() })?;
        name.set_fqdn(true);
        let answer = match tokio::time::timeout(self.limit, self.inner.lookup_ip(name)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(map_error(host, self.limit, &e)),
            Err(_) => return Err(DiscoveryError::Timeout { host: host.to_owned(), after: self.limit }),
        };
        let ips = dedupe_bounded(answer.iter(), MAX_ADDRS_PER_SEED);
        if ips.is_empty() {
            return Err(DiscoveryError::NoRecords { host: host.to_owned() });
        }
        Ok(ips)
    }
}

impl SeedResolver for DnsResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        Box::pin(self.resolve(host))
    }
}

/// `timeout` for each of `1 + retries` tries, plus one more `timeout` of slack for the TCP
/// fallback and scheduling.
fn total_limit(timeout: Duration, retries: usize) -> Duration {
    let tries = u32::try_from(retries).unwrap_or(u32::MAX).saturating_add(2);
    timeout.saturating_mul(tries)
}

/// The first `max` distinct addresses of `ips`, in order.
pub(crate) fn dedupe_bounded(ips: impl IntoIterator<Item = IpAddr>, max: usize) -> Vec<IpAddr> {
    let mut seen = HashSet::new();
    ips.into_iter().filter(|ip| seen.insert(*ip)).take(max).collect()
}

fn map_error(host: &str, limit: Duration, e: &ResolveError) -> DiscoveryError {
    let host = host.to_owned();
    if e.is_nx_domain() {
        return DiscoveryError::NotFound { host };
    }
    if e.is_no_records_found() {
        return DiscoveryError::NoRecords { host };
    }
    if matches!(e.proto().map(|p| p.kind()), Some(ProtoErrorKind::Timeout)) {
        return DiscoveryError::Timeout { host, after: limit };
    }
    DiscoveryError::Lookup { host, reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_keeps_first_occurrence_order_and_bound() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let got = dedupe_bounded([ip("127.0.0.3"), ip("127.0.0.2"), ip("127.0.0.3"), ip("::1")], 10);
        assert_eq!(got, vec![ip("127.0.0.3"), ip("127.0.0.2"), ip("::1")]);
        let many = (0..=255u8).flat_map(|a| (0..=255u8).map(move |b| IpAddr::from([10, 0, a, b])));
        assert_eq!(dedupe_bounded(many, MAX_ADDRS_PER_SEED).len(), MAX_ADDRS_PER_SEED);
    }

    #[test]
    fn total_limit_covers_every_try() {
        assert_eq!(total_limit(Duration::from_secs(2), 1), Duration::from_secs(6));
        assert_eq!(total_limit(Duration::from_secs(1), usize::MAX), Duration::from_secs(u64::from(u32::MAX)));
    }

    #[test]
    fn errors_name_the_host() {
        let e = DiscoveryError::NotFound { host: "seed.example".into() };
        assert_eq!(e.host(), Some("seed.example"));
        assert!(e.to_string().contains("seed.example"));
        let e = DiscoveryError::Timeout { host: "seed.example".into(), after: Duration::from_secs(1) };
        assert!(e.to_string().contains("seed.example"), "{e}");
    }

    #[tokio::test]
    async fn ip_literal_and_invalid_names_need_no_server() {
        // Port 9 on loopback: never contacted by these lookups.
        let r = DnsResolver::with_server("127.0.0.1:9".parse().unwrap());
        assert_eq!(r.lookup("127.0.0.7").await.unwrap(), vec!["127.0.0.7".parse::<IpAddr>().unwrap()]);
        let e = r.lookup("bad name..example").await.unwrap_err();
        assert!(matches!(e, DiscoveryError::InvalidName { .. }), "{e:?}");
        assert_eq!(e.host(), Some("bad name..example"));
    }
}
