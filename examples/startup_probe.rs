//! Start-up latency: time from spawning `btcpeerd --connect` to its first connection arriving
//! at a loopback listener, against a floor (this same small binary started in `--floor` mode,
//! which connects at once). Runs alternate between the two so load affects both alike.
//!
//! ```text
//! cargo build --release --bin btcpeerd --example startup_probe
//! target/release/examples/startup_probe 50                     # btcpeerd beside this binary
//! target/release/examples/startup_probe 50 path/to/btcpeerd
//! ```
//! `scripts/bench-startup` runs it. Prints one JSON line per program and a summary line
//! `{"startup_ms":...,"floor_ms":...,"over_floor_ms":...}` (medians).

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A spawned program that has not connected by then has failed.
const DEADLINE: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--floor") {
        // The floor: connect, then stay until killed, as btcpeerd does.
        let Some(addr) = args.get(1) else { fail("--floor needs an address") };
        let _conn = TcpStream::connect(addr.as_str()).unwrap_or_else(|e| fail(&format!("connect: {e}")));
        loop {
            std::thread::park();
        }
    }
    let runs: usize = match args.first() {
        Some(n) => n.parse().unwrap_or_else(|_| fail("RUNS must be a number")),
        None => 3,
    }
    .max(1);
    let me = std::env::current_exe().unwrap_or_else(|e| fail(&format!("own path: {e}")));
    let daemon = match args.get(1) {
        Some(path) => PathBuf::from(path),
        // target/<profile>/examples/startup_probe -> target/<profile>/btcpeerd
        None => me.parent().and_then(Path::parent).map(|p| p.join("btcpeerd")).unwrap_or_default(),
    };
    if !daemon.exists() {
        fail(&format!("{} is missing (cargo build --bin btcpeerd)", daemon.display()));
    }
    let scratch = std::env::temp_dir().join(format!("startup-probe-{}", std::process::id()));
    let (mut floor, mut ours) = (Vec::new(), Vec::new());
    for run in 0..runs {
        floor.push(time_first_connection(|addr| {
            let mut c = Command::new(&me);
            c.args(["--floor", addr]);
            c
        }));
        let dir = scratch.join(run.to_string());
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("scratch dir: {e}")));
        ours.push(time_first_connection(|addr| {
            let mut c = Command::new(&daemon);
            c.args(["--network", "regtest", "--connect", addr, "--data-dir"]).arg(&dir);
            c
        }));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let (f, o) = (summary(&mut floor), summary(&mut ours));
    println!("{{\"program\":\"floor\",\"runs\":{runs},{f}}}");
    println!("{{\"program\":\"btcpeerd\",\"runs\":{runs},{o}}}");
    let (fm, om) = (median(&floor), median(&ours));
    println!("{{\"startup_ms\":{om:.2},\"floor_ms\":{fm:.2},\"over_floor_ms\":{:.2}}}", om - fm);
    let _ = std::io::stdout().flush();
}

/// Milliseconds from spawning the program to accepting its first connection.
///
/// The accept blocks on a thread of its own: a polling loop here would keep a core busy and,
/// on a small machine, slow a program that starts threads (as btcpeerd does) more than the
/// single-threaded floor.
fn time_first_connection(command: impl FnOnce(&str) -> Command) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let addr = listener.local_addr().unwrap_or_else(|e| fail(&format!("listener address: {e}"))).to_string();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = listener.accept().map(|_| Instant::now());
        let _ = accepted_tx.send(result);
    });
    let mut cmd = command(&addr);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).env("RUST_LOG", "warn");
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| fail(&format!("spawn: {e}")));
    let at = loop {
        match accepted.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(at)) => break at,
            Ok(Err(e)) => fail(&format!("accept: {e}")),
            Err(_) => {
                if start.elapsed() > DEADLINE {
                    stop(&mut child);
                    fail("no connection within 10 s");
                }
                if let Ok(Some(status)) = child.try_wait() {
                    fail(&format!("the program exited before connecting: {status}"));
                }
            }
        }
    };
    stop(&mut child);
    at.duration_since(start).as_secs_f64() * 1000.0
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn median(v: &[f64]) -> f64 {
    v[v.len() / 2]
}

/// Sorts `v` and describes it as JSON fields.
fn summary(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let p90 = v[(v.len() * 9 / 10).min(v.len() - 1)];
    format!("\"median_ms\":{:.2},\"min_ms\":{:.2},\"p90_ms\":{p90:.2}", median(v), v[0])
}

fn fail(msg: &str) -> ! {
    eprintln!("startup_probe: {msg}");
    std::process::exit(1)
}
