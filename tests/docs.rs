//! Documentation that must not drift from the code: the README's table of every configuration
//! key against `config/default.toml`, the reference the daemon loads.

use std::path::Path;

/// `(key, default)` for every key in default.toml; commented-out keys default to `unset`.
fn keys_in_default_toml() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml")).unwrap();
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (commented, rest) = match line.strip_prefix("# ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((key, value)) = rest.split_once(" = ") else { continue };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            continue;
        }
        let full = if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") };
        keys.push((full, if commented { "unset".to_owned() } else { value.to_owned() }));
    }
    keys
}

#[test]
fn readme_lists_every_configuration_key_with_its_default() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let keys = keys_in_default_toml();
    assert!(keys.len() > 30, "parsed only {} keys", keys.len());
    let mut missing = Vec::new();
    for (key, default) in &keys {
        let row = format!("| `{key}` | `{default}` |");
        if !readme.contains(&row) {
            missing.push(row);
        }
    }
    assert!(
        missing.is_empty(),
        "README.md is out of date with config/default.toml (run scripts/gen-config-table): {missing:#?}"
    );
    let table_rows = readme
        .split("### Every key")
        .nth(1)
        .and_then(|s| s.split("### Event log").next())
        .map(|s| s.lines().filter(|l| l.starts_with("| `")).count())
        .unwrap_or(0);
    assert_eq!(table_rows, keys.len(), "the README table lists keys that config/default.toml does not");
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn docker_files_agree_with_the_readme_and_the_repository() {
    let readme = read("README.md");
    let dockerfile = read("Dockerfile");
    let compose = read("docker-compose.yml");
    assert!(readme.contains("docker compose up --build"), "README must give the one-command stack");
    assert!(
        dockerfile.contains("cargo build --release --locked --bin btcpeerd"),
        "Dockerfile builds the daemon"
    );
    assert!(dockerfile.contains("USER btcpeer"), "the runtime image runs as a non-root user");
    // Everything the build copies exists (cargo needs the bench target's file too).
    for line in dockerfile.lines().filter_map(|l| l.strip_prefix("COPY ")) {
        if line.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(src).exists(),
                "Dockerfile copies missing {src}"
            );
        }
    }
    // Files the compose file mounts exist.
    for mount in ["./config/regtest.toml", "./config/prometheus.yml"] {
        assert!(compose.contains(mount), "compose mounts {mount}");
        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(mount).exists(), "{mount} is missing");
    }
    assert!(compose.contains("127.0.0.1:8340:8340"), "the API is published on loopback only");
}

/// The README's first library program is `examples/newcomer.rs`, which `tests/examples.rs` runs
/// against a bcoin node: the snippet a newcomer copies is the one CI ran.
#[test]
fn readme_newcomer_program_is_the_example_ci_runs() {
    let readme = read("README.md");
    let example = read("examples/newcomer.rs");
    let snippet = readme
        .split("## Using the library")
        .nth(1)
        .and_then(|s| s.split("```rust,no_run\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has a rust,no_run block under \"Using the library\"");
    assert_eq!(snippet, example, "README's newcomer program differs from examples/newcomer.rs");
    assert!(example.lines().count() <= 40, "the newcomer program grew past 40 lines");
}

/// `(flag, value name)` of every option in `btcpeerd --help` (value `""` for switches).
fn flags_in_help() -> Vec<(String, String)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_btcpeerd")).arg("--help").output().unwrap();
    assert!(out.status.success(), "btcpeerd --help failed: {out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    help.lines()
        .filter_map(|line| {
            let long = line.split_whitespace().find(|w| w.starts_with("--"))?;
            let flag = long.trim_end_matches(',').to_owned();
            let rest = line.split_once(long)?.1.trim_start();
            let value = rest.strip_prefix('<').and_then(|r| r.split_once('>')).map_or("", |(v, _)| v);
            Some((flag, value.to_owned()))
        })
        .collect()
}

/// The README's flag table lists exactly the daemon's flags, each with the value name `--help`
/// shows, and each key it names is a configuration key.
#[test]
fn readme_flag_table_is_btcpeerd_help() {
    let readme = read("README.md");
    let table = readme
        .split("| flag | key | meaning |")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .expect("README has the flag table");
    let keys: Vec<String> = keys_in_default_toml().into_iter().map(|(k, _)| k).collect();
    let mut listed = Vec::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        // `\|` is a literal bar inside a cell.
        let row = row.replace("\\|", "\u{0}");
        let cells: Vec<String> = row.split('|').map(|c| c.trim().replace('\u{0}', "|")).collect();
        // cells[0] is before the first bar; the first cell may list spellings: `-h`, `--help`.
        for spelling in cells[1].split(", ") {
            let spelling = spelling.trim_matches('`');
            if !spelling.starts_with("--") {
                continue;
            }
            let (flag, value) = spelling.split_once(' ').unwrap_or((spelling, ""));
            listed.push((flag.to_owned(), value.to_owned()));
        }
        let key = cells[2].trim_matches('`');
        assert!(
            key.is_empty() || keys.iter().any(|k| k == key),
            "README flag row names unknown key {key}: {row}"
        );
    }
    let mut help = flags_in_help();
    assert!(help.len() > 15, "parsed only {help:?}");
    help.sort();
    listed.sort();
    assert_eq!(listed, help, "README flag table (left) differs from btcpeerd --help (right)");
}

/// Every `src/...` path the README's architecture sketch names exists.
#[test]
fn readme_architecture_names_existing_files() {
    let readme = read("README.md");
    let sketch = readme
        .split("## Architecture")
        .nth(1)
        .and_then(|s| s.split("```\n").nth(1))
        .expect("README has an Architecture sketch");
    let paths: Vec<&str> = sketch
        .split_whitespace()
        .map(|w| w.trim_end_matches([',', ':', ';', '.', ')']))
        .filter(|w| w.starts_with("src/"))
        .collect();
    assert!(paths.len() >= 10, "parsed only {paths:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing: Vec<_> = paths.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(missing.is_empty(), "README's architecture names missing paths: {missing:?}");
}
