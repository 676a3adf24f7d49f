//! A real `nats-server -js` on loopback for the NATS sink's tests (Debian's `nats-server`,
//! installed by `scripts/install-test-deps`), and a reader of a stream's messages.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running server, killed (SIGKILL, as a crash) on drop. Its store survives a restart.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store: PathBuf,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER") {
        return path.into();
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/usr/local/sbin"]) {
        let candidate = Path::new(dir).join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("nats-server is not installed (Debian package nats-server): run scripts/install-test-deps");
}

impl NatsServer {
    /// Starts a server with JetStream, its store in `store`, on a free loopback port.
    pub fn start(store: &Path) -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = NatsServer { child: None, port, store: store.to_owned() };
        server.restart();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store; returns once it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nats-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {} within 20 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One stored message.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub subject: String,
    pub msg_id: String,
    pub json: Value,
}

/// Every message of `stream`, in stream order (empty when the stream does not exist yet).
pub fn read_stream(rt: &tokio::runtime::Runtime, url: &str, stream: &str) -> Vec<Stored> {
    rt.block_on(async {
        let Ok(client) = async_nats::connect(url).await else { return Vec::new() };
        let js = async_nats::jetstream::new(client);
        let Ok(mut s) = js.get_stream(stream).await else { return Vec::new() };
        let Ok(info) = s.info().await else { return Vec::new() };
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let mut out = Vec::new();
        for seq in first.max(1)..=last {
            let Ok(m) = s.get_raw_message(seq).await else { continue };
            let msg_id =
                m.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.to_string()).unwrap_or_default();
            let json = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            out.push(Stored { seq, subject: m.subject.to_string(), msg_id, json });
        }
        out
    })
}
