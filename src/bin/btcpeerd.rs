//! `btcpeerd`: command line → configuration → logging → `daemon::run`. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use btcpeer::daemon::{self, settings::Overrides};
use clap::Parser;

/// Bitcoin P2P daemon: keeps peer connections and reports what they say.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML) layered over the built-in defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Network: mainnet (or main, bitcoin), testnet3 (or testnet, test), testnet4, signet or
    /// regtest.
    #[arg(long)]
    network: Option<String>,
    /// Connect only to this peer, HOST:PORT (repeatable; host names allowed; no automatic peers).
    #[arg(long, value_name = "HOST:PORT")]
    connect: Vec<String>,
    /// Keep this peer connected besides automatic ones (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    addnode: Vec<String>,
    /// DNS seed to query instead of the network's (repeatable).
    #[arg(long = "seed", value_name = "NAME")]
    seeds: Vec<String>,
    /// DNS server for seed queries.
    #[arg(long, value_name = "IP:PORT")]
    dns_server: Option<String>,
    /// Outbound connections to keep.
    #[arg(long, value_name = "N")]
    max_outbound: Option<String>,
    /// Most inbound connections.
    #[arg(long, value_name = "N")]
    max_inbound: Option<String>,
    /// Directory for the address book and bans.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Ban duration for misbehaving peers, in seconds.
    #[arg(long, value_name = "SECS")]
    ban_time: Option<String>,
    /// Serve the HTTP API (health, peers, bans, status) on IP:PORT; keep it on loopback.
    #[arg(long, value_name = "IP:PORT")]
    http: Option<String>,
    /// Accept inbound peers on IP:PORT (repeatable).
    #[arg(long, value_name = "IP:PORT")]
    listen: Vec<String>,
    /// SOCKS5 proxy for outbound connections (e.g. Tor at 127.0.0.1:9050).
    #[arg(long, value_name = "HOST:PORT")]
    proxy: Option<String>,
    /// Write JSON events, one per line, to PATH ("-" for stdout).
    #[arg(long, value_name = "PATH|-")]
    events: Option<String>,
    /// Log format: pretty or json.
    #[arg(long, value_name = "pretty|json")]
    log_format: Option<String>,
    /// Follow the best header chain (stored in the data directory; a restart resumes) and emit
    /// headers/synced events.
    #[arg(long)]
    sync_headers: bool,
    /// Once synced, fetch each new block and emit block events (implies --sync-headers).
    #[arg(long)]
    fetch_blocks: bool,
    /// Publish every event to this NATS server (repeatable; turns the JetStream sink on).
    #[arg(long = "nats", value_name = "URL")]
    nats: Vec<String>,
    /// JetStream stream for the NATS sink (default BTCPEER).
    #[arg(long, value_name = "NAME")]
    nats_stream: Option<String>,
    /// Subject prefix for the NATS sink (default `btcpeer.<network>`).
    #[arg(long, value_name = "PREFIX")]
    nats_subject_prefix: Option<String>,
    /// Serve peers: answer getheaders, announce new tips, serve blocks fetched from upstream
    /// full nodes (needs --sync-headers).
    #[arg(long)]
    serve: bool,
    /// Also offer NODE_BLOOM while serving: BIP37 filters and filtered blocks (needs --serve)
    #[arg(long)]
    serve_bloom: bool,
    /// Accept WebSocket peers (the v1 byte stream in binary frames, as bitcoin-net's browser
    /// transport) on IP:PORT (repeatable).
    #[arg(long, value_name = "IP:PORT")]
    listen_ws: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        config_file: cli.config,
        network: cli.network,
        connect: cli.connect,
        listen: cli.listen,
        addnode: cli.addnode,
        seeds: cli.seeds,
        dns_server: cli.dns_server,
        data_dir: cli.data_dir,
        max_outbound: cli.max_outbound,
        max_inbound: cli.max_inbound,
        ban_time: cli.ban_time,
        http: cli.http,
        proxy: cli.proxy,
        events: cli.events,
        log_format: cli.log_format,
        sync_headers: cli.sync_headers,
        fetch_blocks: cli.fetch_blocks,
        serve: cli.serve,
        serve_bloom: cli.serve_bloom,
        listen_ws: cli.listen_ws,
    };
    let sink_overrides = daemon::settings::SinkOverrides {
        nats_servers: cli.nats,
        nats_stream: cli.nats_stream,
        nats_subject_prefix: cli.nats_subject_prefix,
    };
    let (settings, sinks) =
        match daemon::settings::load_with_sinks(&overrides, &sink_overrides, std::env::vars()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("btcpeerd: configuration error: {e}");
                return ExitCode::from(2);
            }
        };
    daemon::init_logging(&settings);
    match daemon::run_with_sinks(settings, sinks) {
        Ok(()) => ExitCode::SUCCESS,
        Err(btcpeer::Error::Config(e)) => {
            eprintln!("btcpeerd: configuration error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("btcpeerd: {e}");
            ExitCode::FAILURE
        }
    }
}
