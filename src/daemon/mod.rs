//! `btcpeerd`'s runtime: settings loading ([`settings`]), logging, the JSON event log
//! ([`event_log`]), signals and orderly shutdown. The library proper never reads files or the
//! environment; this module does, for the daemon.

pub mod event_log;
pub mod settings;

use std::io::Write;
use std::time::Duration;

use actix::prelude::*;
use tracing::info;

use crate::config::{LogFormat, Settings};
use crate::events::Subscription;
use crate::group::{GroupConfig, PeerGroup, Shutdown};
use crate::Error;

/// Installs the global `tracing` subscriber: `RUST_LOG` wins over `log.filter`; output goes to
/// stderr (stdout may carry the event log).
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match settings.log.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the daemon until SIGINT or SIGTERM, then closes every peer and returns.
pub fn run(settings: Settings) -> Result<(), Error> {
    settings.validate()?;
    let peer = settings.peer_config()?;
    let config = GroupConfig {
        peer,
        static_peers: settings.static_peers()?,
        listen: settings.listen_addrs()?,
        max_inbound: settings.inbound.max_peers,
        initial_backoff: Duration::from_millis(settings.retry.initial_backoff_ms),
        max_backoff: Duration::from_secs(settings.retry.max_backoff_secs),
    };
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
    let system = System::new();
    system.block_on(async move {
        let mut subscriptions = Vec::new();
        let log = sink.map(|w| event_log::EventLog::new(w).start());
        if let Some(log) = &log {
            subscriptions.extend(event_log::subscriptions(log));
        }
        info!(%network, peers = config.static_peers.len(), listen = config.listen.len(), "btcpeerd starting");
        let group = PeerGroup::new(config, subscriptions).start();
        wait_for_signal().await;
        info!("shutting down");
        let _ = group.send(Shutdown).await;
        if let Some(log) = log {
            let _ = log.send(event_log::Flush).await;
        }
        info!("stopped");
    });
    Ok(())
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

/// Subscriptions for an actor that handles every notification kind.
pub fn all_subscriptions<A>(addr: &Addr<A>) -> Vec<Subscription>
where
    A: Actor<Context = Context<A>>
        + Handler<crate::events::PeerStateChanged>
        + Handler<crate::events::PeerReady>
        + Handler<crate::events::PeerDisconnected>
        + Handler<crate::events::InvReceived>
        + Handler<crate::events::TxReceived>
        + Handler<crate::events::AddrReceived>
        + Handler<crate::events::HeadersReceived>
        + Handler<crate::events::BlockReceived>,
{
    vec![
        Subscription::State(addr.clone().recipient()),
        Subscription::Ready(addr.clone().recipient()),
        Subscription::Disconnected(addr.clone().recipient()),
        Subscription::Inv(addr.clone().recipient()),
        Subscription::Tx(addr.clone().recipient()),
        Subscription::Addr(addr.clone().recipient()),
        Subscription::Headers(addr.clone().recipient()),
        Subscription::Block(addr.clone().recipient()),
    ]
}
