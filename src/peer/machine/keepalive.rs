//! Keep-alive (BIP31): we answer pings, ping the peer every interval and measure the round trip.

use rand::Rng;
use tokio::time::Instant;

use super::{Action, PeerMachine, Verdict};
use crate::peer::PeerState;
use crate::wire::limits::BIP0031_VERSION;
use crate::wire::Message;

impl PeerMachine {
    /// `ping`/`pong`, accepted in any state once `version` arrived. `None` for other messages.
    pub(super) fn on_keepalive(&mut self, now: Instant, msg: &Message) -> Option<Verdict> {
        match msg {
            Message::Ping(nonce) => self.send(Message::Pong(*nonce)),
            Message::Pong(nonce) => self.on_pong(now, *nonce),
            _ => return None,
        }
        Some(Verdict::Consumed)
    }

    fn on_pong(&mut self, now: Instant, nonce: u64) {
        let Some((expected, sent)) = self.ping else { return };
        if nonce == expected {
            let latency = now.saturating_duration_since(sent);
            self.latency = Some(latency);
            self.actions.push_back(Action::Latency(latency));
            self.ping = None;
            self.next_ping_at = Some(sent + self.config.ping_interval);
        } else if nonce == 0 {
            // Core: a zero nonce cancels the outstanding ping.
            self.ping = None;
            self.next_ping_at = Some(sent + self.config.ping_interval);
        }
    }

    /// Sends a ping when one is due and none is outstanding (peers at or below BIP31's version
    /// cannot answer).
    pub(super) fn maybe_ping(&mut self, now: Instant) {
        let peer_version = self.remote.as_ref().map_or(0, |r| r.version);
        if self.state != PeerState::Ready || self.ping.is_some() || peer_version <= BIP0031_VERSION {
            return;
        }
        if self.next_ping_at.is_some_and(|at| now >= at) {
            let nonce = loop {
                let n: u64 = self.rng.gen();
                if n != 0 {
                    break n;
                }
            };
            self.ping = Some((nonce, now));
            self.send(Message::Ping(nonce));
        }
    }
}
