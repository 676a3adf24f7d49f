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
    /// Network: mainnet, testnet3, testnet4, signet or regtest.
    #[arg(long)]
    network: Option<String>,
    /// Peer to keep connected, HOST:PORT (repeatable; host names allowed).
    #[arg(long, value_name = "HOST:PORT")]
    connect: Vec<String>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        config_file: cli.config,
        network: cli.network,
        connect: cli.connect,
        listen: cli.listen,
        proxy: cli.proxy,
        events: cli.events,
        log_format: cli.log_format,
    };
    let settings = match daemon::settings::load(&overrides, std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("btcpeerd: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    daemon::init_logging(&settings);
    match daemon::run(settings) {
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
