//! The daemon's event log under an `inv` flood, with a small queue (`[event_log] queue_bytes`):
//! lossless by default (the flooding peers are read no further while the log is behind, so every
//! `inv` is written), and with `when_full = "drop"` every gap is written into the log itself as a
//! `dropped` record. The flood is `examples/inv_flood` (built by `cargo build --examples`).

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// The daemon, killed on drop.
struct Daemon {
    child: Child,
    listen: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(dir: &Path, env: &[(&str, &str)]) -> Daemon {
    let (child, listen) = common::daemon_with_events(dir, env);
    Daemon { child, listen }
}

/// Runs the flood to completion: `attackers` peers each send `invs` invs of `entries` blocks.
fn flood(listen: &str, attackers: usize, invs: usize, entries: usize) {
    let out = Command::new(common::example_binary("inv_flood"))
        .args([listen, &attackers.to_string(), &invs.to_string(), &entries.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("inv_flood runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("\"errors\":[]"),
        "inv_flood: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (inv lines, dropped records' total `inv` count, dropped records) in the event log.
fn count(dir: &Path) -> (u64, u64, usize) {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    let (mut invs, mut dropped, mut records) = (0, 0, 0);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        match v["event"].as_str() {
            Some("inv") => invs += 1,
            Some("dropped") => {
                records += 1;
                let counts = v["counts"].as_array().cloned().unwrap_or_default();
                dropped += counts
                    .iter()
                    .filter(|c| c["kind"] == "inv")
                    .filter_map(|c| c["count"].as_u64())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    (invs, dropped, records)
}

#[test]
fn a_lossless_event_log_writes_every_inv_of_a_flood_larger_than_its_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 64 KiB: every 5,000-entry inv (~200 KB in memory) alone overfills it, so the peers are
    // paused again and again.
    let daemon = start_daemon(dir.path(), &[("BTCPEER_EVENT_LOG__QUEUE_BYTES", "65536")]);
    flood(&daemon.listen, 2, 15, 5_000);
    common::wait_until_blocking(LIMIT, "30 inv lines", || count(dir.path()).0 == 30);
    let (_, _, records) = count(dir.path());
    assert_eq!(records, 0, "a lossless log drops nothing");
}

#[test]
fn a_dropping_event_log_writes_each_gap_as_a_dropped_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = start_daemon(
        dir.path(),
        &[("BTCPEER_EVENT_LOG__QUEUE_BYTES", "65536"), ("BTCPEER_EVENT_LOG__WHEN_FULL", "drop")],
    );
    flood(&daemon.listen, 2, 15, 5_000);
    // Every inv is accounted for: written, or counted in a `dropped` record.
    common::wait_until_blocking(LIMIT, "30 invs written or counted as dropped", || {
        let (invs, dropped, _) = count(dir.path());
        invs + dropped == 30
    });
    let (invs, dropped, records) = count(dir.path());
    // The invs arrive far faster than the log writes them with room for one at a time.
    assert!(dropped > 0 && records > 0, "expected drops: {invs} written, {dropped} dropped");
}
