//! What the README promises an operator can observe, checked against a real bcoin node: the
//! trace log's frame dumps and decoded handshake fields, the write hook (`MessageSent`, btcd's
//! `OnWrite`), and every event of the README's event table produced by the daemon.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix::prelude::*;
use btcpeer::events::{MessageSent, Subscribers, Subscription, SUBSCRIBER_MAILBOX};
use btcpeer::peer::messages::GetStats;
use btcpeer::peer::{PeerActor, PeerAddr};
use btcpeer::wire::Message;
use common::*;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

/// The daemon binary with no logging or configuration inherited from the test's environment.
fn btcpeerd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_btcpeerd"));
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("BTCPEER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Kills the child on drop, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes ANSI colour sequences (`ESC [ ... letter`), in case the log is coloured anyway.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The README's claim for `RUST_LOG=btcpeer=trace`: every message in both directions with its
/// command, length, decoded handshake fields and the frame's hex, magic first.
#[test]
fn trace_log_shows_frames_in_hex_and_decoded_version_fields() {
    let node = Bcoin::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let _daemon = Running(
        btcpeerd()
            .args(["--network", "regtest", "--data-dir"])
            .arg(dir.path())
            .args(["--connect", &node.p2p.to_string()])
            .env("RUST_LOG", "btcpeer=trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Regtest magic fabfb5da, then the command field "version" padded with NULs.
    let version_frame = "frame=fabfb5da76657273696f6e0000000000";
    let find = |dir: &str, needle: &str| {
        let text = strip_ansi(&std::fs::read_to_string(&log).unwrap_or_default());
        text.lines().find(|l| l.contains(&format!(" {dir} ")) && l.contains(needle)).map(str::to_owned)
    };
    let mut recv = None;
    wait_until_blocking(WAIT, "a trace line for bcoin's version", || {
        recv = find("recv", version_frame);
        recv.is_some()
    });
    let recv = recv.unwrap();
    for field in [
        "command=\"version\"",
        "user_agent=\"/bcoin:v1.0.2/\"",
        "protocol=70015",
        "services=0x9",
        "start_height=0",
        "relay=",
        "nonce=0x",
    ] {
        assert!(recv.contains(field), "{field} missing in {recv}");
    }
    let sent = find("send", version_frame).expect("a trace line for our version");
    assert!(sent.contains("user_agent=\"/btcpeer:"), "{sent}");
    assert!(sent.contains("protocol=70016"), "{sent}");
    // verack both ways: a bare header (24 bytes), with its empty-payload checksum.
    wait_until_blocking(WAIT, "verack trace lines", || {
        let verack = "frame=fabfb5da76657261636b000000000000000000005df6e0e2";
        find("recv", verack).is_some() && find("send", verack).is_some()
    });
    let verack = find("recv", "command=\"verack\"").unwrap();
    assert!(verack.contains("len=24"), "{verack}");
}

/// Forwards `MessageSent` notifications into a channel.
struct Recorder(mpsc::UnboundedSender<(bool, MessageSent)>, bool);

impl Actor for Recorder {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(SUBSCRIBER_MAILBOX);
    }
}

impl Handler<MessageSent> for Recorder {
    type Result = ();
    fn handle(&mut self, m: MessageSent, _: &mut Context<Self>) {
        let _ = self.0.send((self.1, m));
    }
}

/// The write hook: every message we send to bcoin is reported in order with its command and wire
/// length (the bytes the peer's statistics count once written); the message itself only to the
/// subscriber that asked for it. Deliveries are counted like every subscription.
#[actix_rt::test]
async fn sent_hook_reports_every_message_written_to_bcoin() {
    let node = Bcoin::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let light = Recorder(tx.clone(), false).start();
    let full = Recorder(tx, true).start();
    let mut subs = Subscribers::new();
    subs.add(Subscription::Sent(light.recipient()));
    subs.add(Subscription::SentWithMessage(full.recipient()));
    let peer = PeerActor::outbound(regtest_config(), PeerAddr::Ip(node.p2p), subs).start();

    let mut seen: Vec<(bool, MessageSent)> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Both subscribers have seen verack, and everything reported so far has been written.
        let stats = peer.send(GetStats).await.unwrap();
        while let Ok(m) = rx.try_recv() {
            seen.push(m);
        }
        let light_bytes: u64 = seen.iter().filter(|(f, _)| !f).map(|(_, m)| m.wire_len as u64).sum();
        let verack_both = seen.iter().filter(|(_, m)| m.command == "verack").count() == 2;
        if verack_both && stats.bytes_sent == light_bytes {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats {} bytes sent, hook {light_bytes}: {seen:#?}",
            stats.bytes_sent
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let light: Vec<&MessageSent> = seen.iter().filter(|(f, _)| !f).map(|(_, m)| m).collect();
    let full: Vec<&MessageSent> = seen.iter().filter(|(f, _)| *f).map(|(_, m)| m).collect();
    assert_eq!(light.len(), full.len());
    assert_eq!(light[0].command, "version", "{light:#?}");
    assert!(light.iter().all(|m| m.message.is_none() && m.addr == PeerAddr::Ip(node.p2p)));
    for (l, f) in light.iter().zip(&full) {
        assert_eq!((l.command, l.wire_len, l.peer), (f.command, f.wire_len, f.peer));
        let msg = f.message.as_deref().expect("SentWithMessage carries the message");
        let encoded = btcpeer::wire::Codec::new(btcpeer::Network::Regtest.magic()).encode_to_bytes(msg);
        assert_eq!(encoded.len(), f.wire_len, "{}", f.command);
    }
    let Some(Message::Version(v)) = full[0].message.as_deref() else { panic!("{:?}", full[0]) };
    assert!(v.user_agent.starts_with("/btcpeer:"), "{}", v.user_agent);
    // The same commands the peer's statistics counted as sent.
    let stats = peer.send(GetStats).await.unwrap();
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for m in &light {
        *counted.entry(m.command.to_owned()).or_default() += 1;
    }
    let from_stats: BTreeMap<String, u64> =
        stats.sent_per_command.iter().map(|(c, n)| (c.clone(), n.messages)).collect();
    assert_eq!(counted, from_stats);
    let sent_subs: Vec<_> = stats.subscribers.iter().filter(|s| s.kind == "sent").collect();
    assert_eq!(sent_subs.len(), 2, "{:?}", stats.subscribers);
    assert!(sent_subs.iter().all(|s| s.delivered == light.len() as u64 && s.dropped == 0), "{sent_subs:?}");
}
