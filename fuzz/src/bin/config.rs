//! btcpeerd's settings layering (`btcpeer::daemon::settings::load`) from an arbitrary
//! `--config` TOML file and `BTCPEER_…` environment.
//!
//! Input: the TOML file, then (after the first NUL byte) environment lines `KEY=VALUE`, each
//! key given the `BTCPEER_` prefix. Invariants: never panics; settings that load are valid and
//! every derived value the daemon builds from them (peer config, static peers, listen
//! addresses, DNS server) is computed without panicking.

use std::path::PathBuf;

use btcpeer::daemon::settings::{load, Overrides};

fn scratch_file() -> PathBuf {
    // scripts/fuzz gives each run its own directory and removes it (AFL kills the target, so
    // the target cannot clean up after itself).
    let base = if let Some(dir) = std::env::var_os("BTCPEER_FUZZ_SCRATCH") {
        PathBuf::from(dir)
    } else if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("btcpeer-fuzz-config-{}.toml", std::process::id()))
}

fn run(path: &PathBuf, data: &[u8]) {
    let (toml, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    std::fs::write(path, toml).expect("write scratch file");
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("BTCPEER_{k}"), v.to_owned()))
        .collect();
    let overrides = Overrides { config_file: Some(path.clone()), ..Overrides::default() };
    let Ok(settings) = load(&overrides, env) else { return };
    settings.validate().expect("loaded settings are valid");
    let _ = settings.peer_config();
    let _ = settings.static_peers();
    let _ = settings.listen_addrs();
    let _ = settings.dns_server();
    let _ = settings.dns_seeds();
}

fn main() {
    let path = scratch_file();
    afl::fuzz!(|data: &[u8]| run(&path, data));
    let _ = std::fs::remove_file(&path);
}
