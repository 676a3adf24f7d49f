//! `btcpeerd`'s runtime: settings loading ([`settings`]), logging, the JSON event log
//! ([`event_log`]), the NATS JetStream sink ([`nats`]), signals and orderly shutdown. The library proper never reads files or the
//! environment; this module does, for the daemon.

pub mod event_log;
pub mod http;
pub mod nats;
pub mod settings;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::info;

use crate::config::{LogFormat, Settings, WhenFull};
use crate::discovery::{DnsResolver, SeedResolver};
use crate::events::Budget;
use crate::group::policy::PolicyConfig;
use crate::group::{GroupConfig, PeerGroup, Shutdown};
use crate::sync::{ChainSync, ChainSyncConfig, StopChainSync, SubscribeChain, SyncConfig};
use crate::Error;

/// Installs the global `tracing` subscriber: `RUST_LOG` wins over `log.filter`; output goes to
/// stderr (stdout may carry the event log).
pub fn init_logging(settings: &Settings) {
    let from_env = std::env::var("RUST_LOG").ok().and_then(|f| match settings::parse_log_filter(&f) {
        Ok(filter) => Some(filter),
        Err(problem) => {
            eprintln!("btcpeerd: RUST_LOG ignored ({problem}); using log.filter");
            None
        }
    });
    let filter = from_env
        .or_else(|| settings::parse_log_filter(&settings.log.filter).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written (a full disk under a redirected stderr) is lost, not
    // fatal: tracing-subscriber would otherwise report it with `eprintln!`, which panics when
    // stderr itself fails.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match settings.log.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the daemon until SIGINT or SIGTERM, then closes every peer and returns. No `[sink]` is
/// on: use [`run_with_sinks`] with the settings of [`settings::load_with_sinks`] for those.
pub fn run(settings: Settings) -> Result<(), Error> {
    run_with_sinks(settings, nats::SinkSettings::default())
}

/// [`run`] with explicit `[sink]` settings (from [`settings::load_with_sinks`]).
pub fn run_with_sinks(settings: Settings, sinks: nats::SinkSettings) -> Result<(), Error> {
    settings::validate(&settings)?;
    sinks.nats.validate()?;
    let config = group_config(&settings)?;
    if let Some(dir) = &config.data_dir {
        check_data_dir(dir)?;
    }
    let sink: Option<Box<dyn Write + Send>> = match settings.events.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout())),
        Some(path) => {
            let file =
                std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|source| {
                    Error::Io { context: format!("cannot open events file {path}"), source }
                })?;
            Some(Box::new(file))
        }
    };
    let network = settings.network;
    let http_addr = settings.http_addr()?;
    let websocket = settings.websocket()?;
    // Metrics are counted when someone can read them.
    let metrics = http_addr.map(|_| crate::metrics::Metrics::new());
    let mut config = config;
    config.peer.metrics = metrics.clone();
    let checkpoint = settings.checkpoint()?;
    let sync_config = (settings.sync.headers || settings.sync.fetch_blocks).then(|| ChainSyncConfig {
        network,
        data_dir: config.data_dir.clone(),
        checkpoint,
        sync: SyncConfig {
            stale_tip_timeout: Duration::from_secs(settings.sync.stale_tip_timeout_secs),
            ..SyncConfig::default()
        },
        tip: config.peer.tip.clone(),
        fetch_blocks: settings.sync.fetch_blocks,
        serve: settings.sync.serve,
        serve_bloom: settings.sync.serve_bloom,
    });
    let event_log_settings = settings.event_log.clone();
    let data_dir = config.data_dir.clone().unwrap_or_else(|| default_data_dir(network));
    let system = System::new();
    system.block_on(async move {
        let mut subscriptions = Vec::new();
        // Before any peer: a stream that does not fit stops the daemon at start (exit 2).
        let nats = match sinks.nats.enabled() {
            true => Some(nats::start(&sinks.nats, network, &data_dir).await?),
            false => None,
        };
        let (feed, nats_status, nats_stop) = match nats {
            Some(n) => (Some(n.feed), Some(n.status), Some(n.stop)),
            None => (None, None, None),
        };
        // The event log writes on its own thread: a burst of lines never delays the HTTP API
        // or the group, which share this one.
        let log_thread = (sink.is_some() || feed.is_some()).then(Arbiter::new);
        // Its queue is bounded in bytes: lossless by default (peers are read no further while
        // it is full), or dropping with `dropped` records.
        let log_budget = match event_log_settings.when_full {
            WhenFull::Wait => Budget::backpressure(event_log_settings.queue_bytes),
            WhenFull::Drop => Budget::new(event_log_settings.queue_bytes),
        };
        let log = log_thread.as_ref().map(|thread| {
            let budget = log_budget.clone();
            event_log::EventLog::start_in_arbiter(&thread.handle(), move |_| {
                event_log::EventLog::with_outputs(sink, feed, &budget)
            })
        });
        if let Some(log) = &log {
            subscriptions.extend(event_log::subscriptions(log, sync_config.is_some(), &log_budget));
        }
        info!(
            %network,
            static_peers = config.policy.static_peers.len(),
            connect_only = config.policy.connect_only,
            listen = config.listen.len(),
            data_dir = ?config.data_dir,
            "btcpeerd starting"
        );
        // A chain on disk is loaded before the group dials, so the first peers get our height
        // in `version` (a mainnet-sized headers.dat replays in well under a second). A first
        // start has nothing to load: the group dials at once and the new file is created
        // after (its atomic creation costs two fsyncs).
        let load_first = sync_config
            .as_ref()
            .and_then(|c| c.data_dir.as_ref())
            .is_some_and(|dir| dir.join(crate::chain::FILE_NAME).exists());
        let group_ctx = Context::<PeerGroup>::new();
        let group_addr = group_ctx.address();
        let load = |sync_config: Option<ChainSyncConfig>| {
            sync_config.map(|c| ChainSync::new(c, group_addr.clone())).transpose().map_err(|e| Error::Io {
                context: "cannot load the header chain".into(),
                source: std::io::Error::other(e.to_string()),
            })
        };
        let (group, chain) = if load_first {
            let chain = load(sync_config)?;
            (group_ctx.run(PeerGroup::new(config, subscriptions)), chain)
        } else {
            let group = group_ctx.run(PeerGroup::new(config, subscriptions));
            // One turn of the runtime: the group starts and its first dials leave (each peer
            // connects on its own arbiter) before the file work blocks this thread.
            tokio::task::yield_now().await;
            match load(sync_config) {
                Ok(chain) => (group, chain),
                Err(e) => {
                    let _ = group.send(Shutdown).await;
                    return Err(e);
                }
            }
        };
        let chain = chain.map(|sync| {
            let sync = sync.start();
            if let Some(log) = &log {
                sync.do_send(SubscribeChain(log.clone().recipient()));
            }
            sync
        });
        if !websocket.listen.is_empty() {
            match group.send(crate::group::ListenWebSocket(websocket)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let _ = group.send(Shutdown).await;
                    return Err(Error::Io { context: format!("cannot listen for websocket peers on {}", e.addr), source: e.source });
                }
                Err(_) => {}
            }
        }
        let api = match http_addr {
            Some(bind) => match http::start_with_sinks(bind, group.clone(), chain.clone(), network, metrics, nats_status)
            {
                Ok((server, addr)) => {
                    if !addr.ip().is_loopback() {
                        tracing::warn!(%addr, "HTTP API is reachable from other hosts: protect it (see README)");
                    }
                    info!(%addr, "HTTP API listening");
                    let handle = server.handle();
                    actix::spawn(server);
                    Some(handle)
                }
                Err(source) => {
                    let _ = group.send(Shutdown).await;
                    return Err(Error::Io { context: format!("cannot serve the HTTP API on {bind}"), source });
                }
            },
            None => None,
        };
        wait_for_signal().await;
        info!("shutting down");
        // /health answers 503 while the peers close.
        let _ = group.send(Shutdown).await;
        if let Some(chain) = chain {
            // Stopping flushes the header file.
            let _ = chain.send(StopChainSync).await;
        }
        if let Some(api) = api {
            api.stop(true).await;
        }
        if let Some(log) = log {
            let _ = log.send(event_log::Flush).await;
        }
        if let Some(thread) = log_thread {
            thread.stop();
        }
        // After the log has handed over its last records.
        if let Some(stop) = nats_stop {
            stop.stop().await;
        }
        info!("stopped");
        Ok(())
    })
}

/// The group configuration the settings describe (the daemon's defaults: data directory under
/// the user's data directory, the system resolver unless a DNS server is given).
pub fn group_config(settings: &Settings) -> Result<GroupConfig, Error> {
    let mut config = GroupConfig::new(settings.peer_config()?);
    config.policy = PolicyConfig {
        max_outbound: settings.group.max_outbound,
        static_peers: settings.static_peers()?,
        connect_only: settings.connect_only(),
        diverse_netgroups: settings.group.one_per_netgroup,
        initial_backoff: Duration::from_millis(settings.retry.initial_backoff_ms),
        max_backoff: Duration::from_secs(settings.retry.max_backoff_secs),
    };
    config.listen = settings.listen_addrs()?;
    config.external = settings.external_ips()?;
    config.max_inbound = settings.inbound.max_peers;
    config.max_inbound_per_ip = settings.inbound.max_per_ip;
    config.dns_seeds = settings.dns_seeds();
    config.min_book_size = settings.group.min_addresses;
    config.ban_time = Duration::from_secs(settings.group.ban_time_secs);
    config.ban_local = settings.group.ban_local;
    config.save_interval = Duration::from_secs(settings.group.save_interval_secs);
    config.arbiters = settings.group.threads;
    config.relay_transactions = settings.group.relay;
    config.max_request_attempts = settings.requests.max_attempts;
    config.fetch_wait = Duration::from_secs(settings.group.fetch_wait_secs);
    config.data_dir = Some(match &settings.data_dir {
        Some(dir) => PathBuf::from(dir),
        None => default_data_dir(settings.network),
    });
    if !config.policy.connect_only && !config.dns_seeds.is_empty() {
        let resolver: Arc<dyn SeedResolver> = match settings.dns_server()? {
            Some(server) => Arc::new(DnsResolver::with_server(server)),
            None => Arc::new(DnsResolver::system().map_err(|e| Error::Io {
                context: "cannot read the system's DNS configuration".into(),
                source: std::io::Error::other(e.to_string()),
            })?),
        };
        config.resolver = Some(resolver);
    }
    Ok(config)
}

/// Creates the data directory if missing and proves it writable by creating and removing a
/// probe file: otherwise the address book, bans and headers would be lost, silently, at the
/// first save or at shutdown.
fn check_data_dir(dir: &Path) -> Result<(), Error> {
    let fail = |what: &str| {
        let context = format!("{what} data directory {}", dir.display());
        move |source| Error::Io { context, source }
    };
    std::fs::create_dir_all(dir).map_err(fail("cannot create"))?;
    let probe = dir.join(format!(".btcpeerd-probe-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).map_err(fail("cannot write to"))?;
    std::fs::remove_file(&probe).map_err(fail("cannot remove files in"))
}

/// `$XDG_DATA_HOME/btcpeer/<network>`, else `~/.local/share/btcpeer/<network>`, else
/// `./btcpeer-data/<network>`.
pub fn default_data_dir(network: crate::Network) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|p| p.join("btcpeer"))
        .unwrap_or_else(|| PathBuf::from("btcpeer-data"));
    base.join(network.name())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One source of defaults: the daemon's settings, untouched, describe the group and peers a
    /// library user gets from `GroupConfig::for_network` (config/default.toml is tied to the
    /// settings by the settings tests, and the README to default.toml by tests/docs.rs).
    #[test]
    fn daemon_defaults_are_the_library_defaults() {
        let settings = Settings::default();
        let daemon = group_config(&settings).expect("default settings build a group");
        let mut library = GroupConfig::for_network(settings.network);
        // The one deliberate difference: the daemon speaks BIP324 v2 by default as Core does;
        // an embedding program opts in (PeerConfig::v2_transport).
        assert!(daemon.peer.v2_transport && !library.peer.v2_transport);
        library.peer.v2_transport = true;
        assert_eq!(format!("{:?}", daemon.policy), format!("{:?}", library.policy));
        assert_eq!(daemon.max_inbound, library.max_inbound);
        assert_eq!(daemon.max_inbound_per_ip, library.max_inbound_per_ip);
        assert_eq!(daemon.min_book_size, library.min_book_size);
        assert_eq!(daemon.ban_time, library.ban_time);
        assert_eq!(daemon.ban_local, library.ban_local);
        assert_eq!(daemon.save_interval, library.save_interval);
        assert_eq!(daemon.relay_transactions, library.relay_transactions);
        assert_eq!(daemon.max_request_attempts, library.max_request_attempts);
        assert_eq!(daemon.fetch_wait, library.fetch_wait);
        assert_eq!(daemon.dns_seeds, library.dns_seeds);
        let (d, l) = (&daemon.peer, &library.peer);
        assert_eq!(format!("{:?}", d.machine), format!("{:?}", l.machine));
        assert_eq!(d.connect_timeout, l.connect_timeout);
        assert_eq!(d.max_send_queue_bytes, l.max_send_queue_bytes);
    }
}
