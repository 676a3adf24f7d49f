//! Loading [`Settings`] for the daemon: built-in defaults → `config/default.toml` (embedded) →
//! `config/<network>.toml` (embedded) → `--config FILE` → `BTCPEER_…` environment → flags.

use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use super::nats::SinkSettings;
use crate::config::{ConfigError, Settings};
use crate::network::Network;

mod defaults;
use defaults::DEFAULT_TOML;

/// Keys whose value is a list: the environment gives them comma-separated, and an empty value
/// means the empty list.
const LIST_KEYS: [&str; 6] = ["connect", "addnode", "seeds", "listen", "listen_ws", "external"];

/// `[sink.nats]` keys whose value is a list (comma-separated in the environment).
const SINK_LIST_KEYS: [&str; 2] = ["sink.nats.servers", "sink.nats.events"];

/// Every name `Network::from_str` accepts, canonical name first, for error messages.
/// (`network_names_are_the_parsers` keeps this in step with `src/network.rs`.)
const NETWORK_NAMES: [&str; 9] =
    ["mainnet", "main", "bitcoin", "testnet3", "testnet", "test", "testnet4", "signet", "regtest"];

fn overlay(network: Network) -> &'static str {
    match network {
        Network::Mainnet => include_str!("../../config/mainnet.toml"),
        Network::Testnet3 => include_str!("../../config/testnet3.toml"),
        Network::Testnet4 => include_str!("../../config/testnet4.toml"),
        Network::Signet => include_str!("../../config/signet.toml"),
        Network::Regtest => include_str!("../../config/regtest.toml"),
    }
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--network`.
    pub network: Option<String>,
    /// `--connect` (replaces the configured list when given).
    pub connect: Vec<String>,
    /// `--listen` (replaces the configured list when given).
    pub listen: Vec<String>,
    /// `--addnode` (replaces the configured list when given).
    pub addnode: Vec<String>,
    /// `--seed` (replaces the seeds when given).
    pub seeds: Vec<String>,
    /// `--dns-server`.
    pub dns_server: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<String>,
    /// `--max-outbound`.
    pub max_outbound: Option<String>,
    /// `--max-inbound`.
    pub max_inbound: Option<String>,
    /// `--ban-time` (seconds).
    pub ban_time: Option<String>,
    /// `--http`.
    pub http: Option<String>,
    /// `--proxy`.
    pub proxy: Option<String>,
    /// `--events`.
    pub events: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `--sync-headers`.
    pub sync_headers: bool,
    /// `--fetch-blocks`.
    pub fetch_blocks: bool,
    /// `--serve`.
    pub serve: bool,
    /// `--serve-bloom`.
    pub serve_bloom: bool,
    /// `--listen-ws` (replaces the configured list when given).
    pub listen_ws: Vec<String>,
}

/// Command-line values for the `[sink]` tables; they win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct SinkOverrides {
    /// `--nats URL` (repeatable; replaces `sink.nats.servers` when given).
    pub nats_servers: Vec<String>,
    /// `--nats-stream`.
    pub nats_stream: Option<String>,
    /// `--nats-subject-prefix`.
    pub nats_subject_prefix: Option<String>,
}

/// Loads and validates the settings. `env` is the process environment (passed in so tests can
/// supply their own). The `[sink]` tables are checked too; [`load_with_sinks`] returns them.
pub fn load(
    overrides: &Overrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    load_with_sinks(overrides, &SinkOverrides::default(), env).map(|(settings, _)| settings)
}

/// [`load`], returning the `[sink]` tables (`[sink.nats]`) as well.
pub fn load_with_sinks(
    overrides: &Overrides,
    sink: &SinkOverrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Settings, SinkSettings), ConfigError> {
    let env = Env::new(env)?;
    if let Some(path) = &overrides.config_file {
        check_readable(path)?;
    }
    // The network decides the overlay, so find it first from the layers that can set it
    // (no pass needed when the flag, which beats every layer, names it).
    let name = match &overrides.network {
        Some(name) => Ok(name.clone()),
        None => build(overrides, sink, &env, None)?.get_string("network"),
    };
    let network: Network = match name {
        Ok(name) => name.parse().map_err(|_| {
            ConfigError::new(
                "network",
                format!("unknown network {name:?} (expected one of {})", NETWORK_NAMES.join(", ")),
            )
        })?,
        // The built-in default (`network` in config/default.toml).
        Err(_) => Network::Mainnet,
    };
    let err = |e| describe(e, overrides.config_file.as_deref());
    // `[sink]` is the daemon's own table: taken out before the library's `Settings` (which
    // rejects unknown keys) and read on its own, with the same key-naming errors.
    let mut table: config::Map<String, config::Value> =
        build(overrides, sink, &env, Some(network))?.try_deserialize().map_err(err)?;
    let sink_table = table.remove("sink");
    let settings = Settings::deserialize(config::Value::new(None, table)).map_err(err)?;
    validate(&settings)?;
    let sinks = match sink_table {
        Some(value) => {
            let wrapped = config::Value::new(None, config::Map::from([("sink".to_owned(), value)]));
            SinkTable::deserialize(wrapped).map_err(err)?.sink
        }
        None => SinkSettings::default(),
    };
    sinks.nats.validate()?;
    Ok((settings, sinks))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkTable {
    sink: SinkSettings,
}

/// [`Settings::validate`] plus what only the daemon can check: the `log.filter` syntax
/// (`tracing-subscriber` is a daemon dependency).
pub(crate) fn validate(settings: &Settings) -> Result<(), ConfigError> {
    settings.validate()?;
    if let Err(problem) = parse_log_filter(&settings.log.filter) {
        return Err(ConfigError::new("log.filter", format!("{problem}: {:?}", settings.log.filter)));
    }
    Ok(())
}

/// Parses a log filter (`log.filter`, `RUST_LOG`). tracing-subscriber 0.3.23 panics on some
/// non-ASCII directives (it slices a string inside a character; found by the config fuzz
/// target), so those are refused first: targets, levels and field names are ASCII anyway. So
/// are span and field filters (see below). A panic of the parser on anything else is caught
/// and reported as an invalid filter.
pub(crate) fn parse_log_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    if !filter.is_ascii() {
        return Err("invalid filter (only ASCII characters are allowed)".to_owned());
    }
    // A span or field filter (`target[span{field=value}]`) compiles its value into a regex DFA
    // with no size limit: a crafted value took minutes (found by the config fuzz target).
    // `target=level` directives are all a daemon needs.
    if filter.contains(['[', ']', '{', '}']) {
        return Err(
            "span and field filters (`[...]`) are not supported; use target=level directives".to_owned()
        );
    }
    match std::panic::catch_unwind(|| tracing_subscriber::EnvFilter::try_new(filter)) {
        Ok(Ok(parsed)) => Ok(parsed),
        Ok(Err(e)) => Err(format!("invalid filter ({e})")),
        Err(_) => Err("invalid filter".to_owned()),
    }
}

/// The `BTCPEER_…` part of the environment, with empty list values set apart: the `config`
/// crate would read `BTCPEER_SEEDS=` as the list `[""]`, but an empty value means "none".
struct Env {
    vars: config::Map<String, String>,
    empty_lists: Vec<&'static str>,
}

impl Env {
    fn new(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut vars = config::Map::new();
        let mut empty_lists = Vec::new();
        for (k, v) in env {
            let Some(name) = k.strip_prefix("BTCPEER_") else { continue };
            // The `config` crate reads an environment key as a path expression, so
            // `BTCPEER_SEEDS[99999999]` would build a list of 10^8 entries (found by the config
            // fuzz target). Our keys are letters, digits and `_` only; anything else is a typo.
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ConfigError::new(
                    k.clone(),
                    "not a setting: environment keys have only letters, digits and _ \
                     (`__` between table and key, e.g. BTCPEER_PEER__PING_INTERVAL_SECS)",
                ));
            }
            let list = LIST_KEYS.iter().find(|key| key.eq_ignore_ascii_case(name));
            match list {
                Some(key) if v.trim().is_empty() => empty_lists.push(*key),
                _ => {
                    vars.insert(k, v);
                }
            }
        }
        Ok(Env { vars, empty_lists })
    }
}

fn check_readable(path: &Path) -> Result<(), ConfigError> {
    std::fs::read_to_string(path)
        .map(|_| ())
        .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read config file: {e}")))
}

fn build(
    overrides: &Overrides,
    sink: &SinkOverrides,
    env: &Env,
    network: Option<Network>,
) -> Result<Config, ConfigError> {
    let mut b = Config::builder();
    // The first pass only looks for `network`: the built-in defaults (a few hundred lines of
    // TOML, a good part of the time before the first dial) join in the second pass only.
    if let Some(net) = network {
        b = b
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .add_source(File::from_str(overlay(net), FileFormat::Toml));
    }
    if let Some(path) = &overrides.config_file {
        b = b.add_source(File::from(path.as_path()).format(FileFormat::Toml).required(true));
    }
    let mut environment = Environment::with_prefix("BTCPEER")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    for key in LIST_KEYS.into_iter().chain(SINK_LIST_KEYS) {
        environment = environment.with_list_parse_key(key);
    }
    b = b.add_source(environment.source(Some(env.vars.clone())));
    // Empty list values from the environment: a layer just above it, below the flags.
    for key in &env.empty_lists {
        b = b.add_source(File::from_str(&format!("{key} = []"), FileFormat::Toml));
    }
    let set = |b: config::ConfigBuilder<config::builder::DefaultState>, key: &str, v: Option<&String>| match v
    {
        Some(v) => b.set_override(key, v.as_str()),
        None => Ok(b),
    };
    let err = |e: config::ConfigError| describe(e, overrides.config_file.as_deref());
    b = set(b, "network", overrides.network.as_ref()).map_err(err)?;
    b = set(b, "proxy.addr", overrides.proxy.as_ref()).map_err(err)?;
    b = set(b, "events", overrides.events.as_ref()).map_err(err)?;
    b = set(b, "log.format", overrides.log_format.as_ref()).map_err(err)?;
    b = set(b, "dns_server", overrides.dns_server.as_ref()).map_err(err)?;
    b = set(b, "http", overrides.http.as_ref()).map_err(err)?;
    b = set(b, "data_dir", overrides.data_dir.as_ref()).map_err(err)?;
    b = set(b, "group.max_outbound", overrides.max_outbound.as_ref()).map_err(err)?;
    b = set(b, "inbound.max_peers", overrides.max_inbound.as_ref()).map_err(err)?;
    b = set(b, "group.ban_time_secs", overrides.ban_time.as_ref()).map_err(err)?;
    if overrides.sync_headers {
        b = b.set_override("sync.headers", true).map_err(err)?;
    }
    if overrides.fetch_blocks {
        b = b.set_override("sync.fetch_blocks", true).map_err(err)?;
    }
    if overrides.serve {
        b = b.set_override("sync.serve", true).map_err(err)?;
    }
    if overrides.serve_bloom {
        b = b.set_override("sync.serve_bloom", true).map_err(err)?;
    }
    for (key, list) in [("addnode", &overrides.addnode), ("seeds", &overrides.seeds)] {
        if !list.is_empty() {
            b = b.set_override(key, list.clone()).map_err(err)?;
        }
    }
    if !overrides.connect.is_empty() {
        b = b.set_override("connect", overrides.connect.clone()).map_err(err)?;
    }
    if !overrides.listen_ws.is_empty() {
        b = b.set_override("listen_ws", overrides.listen_ws.clone()).map_err(err)?;
    }
    if !overrides.listen.is_empty() {
        b = b.set_override("listen", overrides.listen.clone()).map_err(err)?;
    }
    if !sink.nats_servers.is_empty() {
        b = b.set_override("sink.nats.servers", sink.nats_servers.clone()).map_err(err)?;
    }
    b = set(b, "sink.nats.stream", sink.nats_stream.as_ref()).map_err(err)?;
    b = set(b, "sink.nats.subject_prefix", sink.nats_subject_prefix.as_ref()).map_err(err)?;
    // Whichever layer named the network, and with whichever alias (`testnet`, `main`, ...),
    // `load` resolved it: give the deserializer the canonical name it knows.
    if let Some(net) = network {
        b = b.set_override("network", net.name()).map_err(err)?;
    }
    b.build().map_err(err)
}

/// Turns the `config` crate's message into "key: problem".
fn describe(e: config::ConfigError, file: Option<&Path>) -> ConfigError {
    // Parser errors span several lines with a source excerpt; keep the message lines only.
    let text = e
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .collect::<Vec<_>>()
        .join(": ");
    let quoted = |marker: &str| -> Option<String> {
        let start = text.find(marker)? + marker.len();
        let rest = &text[start..];
        let end = rest.find('`')?;
        Some(rest[..end].to_owned())
    };
    let parent = quoted("for key `");
    let problem = text.split(" for key `").next().unwrap_or(&text).to_owned();
    if let Some(field) = quoted("unknown field `") {
        let key = match parent {
            Some(p) if !p.is_empty() => format!("{p}.{field}"),
            _ => field,
        };
        return ConfigError::new(key, format!("unknown key ({problem})"));
    }
    if let Some(key) = parent {
        return ConfigError::new(key, problem);
    }
    if let Some(variant) = quoted("unknown variant `") {
        return ConfigError::new(variant, text);
    }
    match file {
        Some(f) => ConfigError::new(f.display().to_string(), text),
        None => ConfigError::new("configuration", text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The first pass skips the built-in defaults and falls back to mainnet: that fallback must
    /// be what config/default.toml says.
    #[test]
    fn network_fallback_is_the_built_in_default() {
        let defaults =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml)).build().unwrap();
        assert_eq!(defaults.get_string("network").unwrap().parse::<Network>().unwrap(), Network::Mainnet);
        let (settings, _) =
            load_with_sinks(&Overrides::default(), &SinkOverrides::default(), env(&[])).unwrap();
        assert_eq!(settings.network, Network::Mainnet);
    }

    #[test]
    fn defaults_load_and_match_the_struct_defaults() {
        let s = load(&Overrides::default(), env(&[])).unwrap();
        assert_eq!(s, Settings::default(), "config/default.toml and Settings::default() drifted");
    }

    #[test]
    fn layers_apply_in_order() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "network = \"regtest\"\nconnect = [\"127.0.0.1:1\"]\n[peer]\nping_interval_secs = 30")
            .unwrap();
        let o = Overrides { config_file: Some(f.path().into()), ..Default::default() };
        let s = load(
            &o,
            env(&[
                ("BTCPEER_PEER__PING_INTERVAL_SECS", "45"),
                ("BTCPEER_CONNECT", "127.0.0.1:2,127.0.0.1:3"),
            ]),
        )
        .unwrap();
        assert_eq!(s.network, Network::Regtest);
        assert_eq!(s.peer.ping_interval_secs, 45, "env beats file");
        assert_eq!(s.connect, ["127.0.0.1:2", "127.0.0.1:3"]);
        assert_eq!(s.retry.initial_backoff_ms, 250, "regtest overlay applies");
        let o = Overrides { connect: vec!["127.0.0.1:9".into()], network: Some("signet".into()), ..o };
        let s = load(&o, env(&[("BTCPEER_CONNECT", "127.0.0.1:2")])).unwrap();
        assert_eq!(s.connect, ["127.0.0.1:9"], "flags beat env");
        assert_eq!(s.network, Network::Signet);
    }

    #[test]
    fn every_network_alias_is_accepted_from_every_layer() {
        for name in NETWORK_NAMES {
            let expected: Network = name.parse().unwrap();
            let flag = Overrides { network: Some(name.into()), ..Default::default() };
            assert_eq!(load(&flag, env(&[])).unwrap().network, expected, "--network {name}");
            let s = load(&Overrides::default(), env(&[("BTCPEER_NETWORK", name)])).unwrap();
            assert_eq!(s.network, expected, "BTCPEER_NETWORK={name}");
            let mut f = tempfile::NamedTempFile::new().unwrap();
            writeln!(f, "network = \"{}\"", name.to_uppercase()).unwrap();
            let file = Overrides { config_file: Some(f.path().into()), ..Default::default() };
            assert_eq!(load(&file, env(&[])).unwrap().network, expected, "network = {name:?} in a file");
        }
        // The overlay is the resolved network's: testnet3's seeds for `testnet`.
        let o = Overrides { network: Some("testnet".into()), ..Default::default() };
        assert_eq!(load(&o, env(&[])).unwrap().dns_seeds(), Network::Testnet3.dns_seeds());
    }

    #[test]
    fn network_names_are_the_parsers() {
        for net in crate::network::ALL_NETWORKS {
            assert!(NETWORK_NAMES.contains(&net.name()), "{net} missing");
        }
        for name in NETWORK_NAMES {
            assert!(name.parse::<Network>().is_ok(), "{name} no longer parses");
        }
        let e =
            load(&Overrides { network: Some("moon".into()), ..Default::default() }, env(&[])).unwrap_err();
        assert_eq!(e.key, "network");
        for name in NETWORK_NAMES {
            assert!(e.problem.contains(name), "{name} not listed in: {e}");
        }
    }

    #[test]
    fn an_empty_list_in_the_environment_is_the_empty_list() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "connect = [\"127.0.0.1:1\"]\nlisten = [\"127.0.0.1:0\"]\nseeds = [\"seed.example\"]")
            .unwrap();
        let o = Overrides { config_file: Some(f.path().into()), ..Default::default() };
        let s = load(
            &o,
            env(&[
                ("BTCPEER_SEEDS", ""),
                ("BTCPEER_CONNECT", ""),
                ("BTCPEER_LISTEN", " "),
                ("BTCPEER_ADDNODE", ""),
            ]),
        )
        .unwrap();
        assert_eq!(s.seeds, Some(vec![]), "BTCPEER_SEEDS= disables seeding");
        assert!(s.dns_seeds().is_empty());
        assert!(s.connect.is_empty() && s.listen.is_empty() && s.addnode.is_empty(), "{s:?}");
        // Flags still beat the environment.
        let o = Overrides { connect: vec!["127.0.0.1:9".into()], ..o };
        assert_eq!(load(&o, env(&[("BTCPEER_CONNECT", "")])).unwrap().connect, ["127.0.0.1:9"]);
        // Other empty values keep their meaning (an error where empty is invalid).
        let e = load(&Overrides::default(), env(&[("BTCPEER_EVENTS", "")])).unwrap_err();
        assert_eq!(e.key, "events");
    }

    #[test]
    fn an_environment_key_with_a_path_expression_is_refused() {
        // Found by the config fuzz target: the `config` crate would expand the index into a
        // list of 22 million entries (seconds of CPU and a gigabyte) before any check.
        for key in ["BTCPEER_SEEDS[22222226]", "BTCPEER_PEER.PING_INTERVAL_SECS", "BTCPEER_CONNECT[0]"] {
            let e = load(&Overrides::default(), env(&[(key, "1")])).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.problem.contains("letters, digits and _"), "{e}");
        }
    }

    #[test]
    fn the_log_filter_is_checked_by_the_daemon() {
        let e = load(&Overrides::default(), env(&[("BTCPEER_LOG__FILTER", "info,[")])).unwrap_err();
        assert_eq!(e.key, "log.filter", "{e}");
        // tracing-subscriber itself panics on this one (found by fuzzing): an error here.
        let e =
            load(&Overrides::default(), env(&[("BTCPEER_LOG__FILTER", "info,\t[a\u{bad}b]")])).unwrap_err();
        assert_eq!(e.key, "log.filter", "{e}");
        assert!(e.problem.contains("ASCII"), "{e}");
        // Field values compile to regex DFAs without a size limit (a fuzzed one took minutes).
        for filter in ["info,btcpeer[peer{addr=1.2.3.4}]=debug", "[{a=b|c}]"] {
            let e = load(&Overrides::default(), env(&[("BTCPEER_LOG__FILTER", filter)])).unwrap_err();
            assert!(e.key == "log.filter" && e.problem.contains("span and field filters"), "{e}");
        }
        let ok = load(&Overrides::default(), env(&[("BTCPEER_LOG__FILTER", "warn,btcpeer::peer=trace")]));
        assert_eq!(ok.unwrap().log.filter, "warn,btcpeer::peer=trace");
    }

    #[test]
    fn errors_name_the_key() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[peer]\nping_intervall_secs = 30").unwrap();
        let o = Overrides { config_file: Some(f.path().into()), ..Default::default() };
        assert_eq!(load(&o, env(&[])).unwrap_err().key, "peer.ping_intervall_secs");

        let e =
            load(&Overrides::default(), env(&[("BTCPEER_PEER__PING_INTERVAL_SECS", "soon")])).unwrap_err();
        assert_eq!(e.key, "peer.ping_interval_secs", "{e}");

        let e =
            load(&Overrides { network: Some("moon".into()), ..Default::default() }, env(&[])).unwrap_err();
        assert_eq!(e.key, "network");

        let e = load(&Overrides { connect: vec!["::nonsense::".into()], ..Default::default() }, env(&[]))
            .unwrap_err();
        assert_eq!(e.key, "connect");

        let o = Overrides { config_file: Some("/nonexistent/btcpeer.toml".into()), ..Default::default() };
        assert_eq!(load(&o, env(&[])).unwrap_err().key, "/nonexistent/btcpeer.toml");

        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "this is = = not toml").unwrap();
        let o = Overrides { config_file: Some(f.path().into()), ..Default::default() };
        assert_eq!(load(&o, env(&[])).unwrap_err().key, f.path().display().to_string());
    }

    #[test]
    fn nats_sink_keys_load_from_every_layer_and_errors_name_them() {
        let (_, sinks) = load_with_sinks(&Overrides::default(), &SinkOverrides::default(), env(&[])).unwrap();
        assert_eq!(sinks, SinkSettings::default(), "config/default.toml and NatsSettings::default() drifted");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[sink.nats]\nservers = [\"nats://127.0.0.1:1\"]\nstream = \"FILE\"\nmax_in_flight = 7")
            .unwrap();
        let o = Overrides { config_file: Some(f.path().into()), ..Default::default() };
        let e = env(&[
            ("BTCPEER_SINK__NATS__SERVERS", "nats://127.0.0.1:2,nats://127.0.0.1:3"),
            ("BTCPEER_SINK__NATS__EVENTS", "tx,block"),
            ("BTCPEER_SINK__NATS__STREAM", "ENV"),
        ]);
        let (settings, sinks) = load_with_sinks(&o, &SinkOverrides::default(), e.clone()).unwrap();
        assert_eq!(settings.network, Network::Mainnet);
        let n = &sinks.nats;
        assert_eq!(n.servers, ["nats://127.0.0.1:2", "nats://127.0.0.1:3"]);
        assert_eq!(n.events, ["tx", "block"]);
        assert_eq!((n.stream.as_str(), n.max_in_flight), ("ENV", 7));
        let flags = SinkOverrides { nats_stream: Some("FLAG".into()), ..Default::default() };
        assert_eq!(load_with_sinks(&o, &flags, e).unwrap().1.nats.stream, "FLAG", "flags beat env");

        for (text, key) in [
            ("[sink.nats]\nstreams = \"X\"", "sink.nats.streams"),
            ("[sink.nats]\nmax_in_flight = \"many\"", "sink.nats.max_in_flight"),
            ("[sink.nats]\nevents = [\"blocks\"]", "sink.nats.events"),
            ("[sink.kafka]\nservers = []", "sink.kafka"),
        ] {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            writeln!(f, "{text}").unwrap();
            let o = Overrides { config_file: Some(f.path().into()), ..Default::default() };
            let err = load(&o, env(&[])).unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
        let e =
            load(&Overrides::default(), env(&[("BTCPEER_SINK__NATS__SPOOL_MAX_BYTES", "5")])).unwrap_err();
        assert_eq!(e.key, "sink.nats.spool_max_bytes");
    }
}
