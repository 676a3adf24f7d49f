//! The handshake: our `version`, checks of the peer's `version`, feature negotiation between
//! `version` and `verack` (BIP339 `wtxidrelay`, BIP155 `sendaddrv2`), and what follows it
//! (BIP130 `sendheaders`, `getaddr`, the first ping).

use std::net::SocketAddr;

use rand::Rng;
use tokio::time::Instant;

use super::{Action, CompactBlocks, Features, PeerInfo, PeerMachine, Verdict};
use crate::peer::reason::{DisconnectReason, Misbehavior};
use crate::peer::{Link, PeerState};
use crate::wire::limits::{MAX_SUBVERSION_LENGTH, SENDHEADERS_VERSION, WTXID_RELAY_VERSION};
use crate::wire::version::{self, LocalVersion};
use crate::wire::{Message, VersionMessage};

impl PeerMachine {
    /// The dial has started.
    pub fn connecting(&mut self) {
        if self.state == PeerState::Disconnected && self.connected_at.is_none() {
            self.set_state(PeerState::Connecting);
        }
    }

    /// The byte stream is up: start the handshake. Outbound links speak first.
    pub fn connected(&mut self, now: Instant, unix_time: i64, start_height: i32, remote: Option<SocketAddr>) {
        if self.connected_at.is_some() {
            return;
        }
        self.connected_at = Some(now);
        self.unix_at_connect = unix_time;
        self.remote_addr = remote;
        self.last_recv = Some(now);
        self.addr_budget.start(now);
        let rng = &mut self.rng;
        self.our_nonce = Some(self.nonces.issue(|| rng.gen()));
        self.set_state(PeerState::Handshaking);
        match self.link {
            Link::Outbound => self.send_version(unix_time, start_height, remote),
            // Inbound: we answer their version with ours (Core waits for the initiator).
            Link::Inbound => self.pending_version = Some((unix_time, start_height, remote)),
        }
    }

    fn send_version(&mut self, unix_time: i64, start_height: i32, remote: Option<SocketAddr>) {
        let local = LocalVersion {
            version: self.config.protocol_version,
            services: self.config.services,
            user_agent: self.config.user_agent.clone(),
            start_height,
            relay: self.config.relay,
            nonce: self.our_nonce.unwrap_or_default(),
            timestamp: unix_time,
        };
        self.send(Message::Version(version::build(&local, remote)));
    }

    /// The peer's `version`: checked as Core does, in Core's order (`net_processing.cpp`
    /// `ProcessMessage`, VERSION): services of an outbound peer, protocol version, user agent,
    /// self-connection.
    pub(super) fn on_version(&mut self, v: &VersionMessage) {
        if self.remote.is_some() {
            // Core ignores a second version ("redundant version message").
            self.dropped_frames += 1;
            return;
        }
        if self.link == Link::Outbound && !v.services.has(self.config.required_services) {
            self.disconnect(DisconnectReason::MissingServices {
                offered: v.services.to_u64(),
                required: self.config.required_services.to_u64(),
            });
            return;
        }
        // Core reads the field as `int nVersion`: 0xffffffff is −1, below any minimum.
        let signed = v.version as i32;
        if i64::from(signed) < i64::from(self.config.min_peer_version) {
            self.disconnect(DisconnectReason::ObsoleteVersion {
                version: signed,
                min: self.config.min_peer_version,
            });
            return;
        }
        if v.user_agent.len() > MAX_SUBVERSION_LENGTH {
            // Core's `LIMITED_STRING` throws and `ProcessMessages` catches: the message is
            // dropped before `nVersion` is stored, so a later valid `version` still counts and
            // the handshake timeout ends a peer that never sends one. No disconnect, no ban.
            self.dropped_frames += 1;
            return;
        }
        if self.link == Link::Inbound && self.nonces.contains(v.nonce) {
            self.disconnect(DisconnectReason::SelfConnection);
            return;
        }
        self.remote = Some(PeerInfo {
            link: self.link,
            version: v.version,
            services: v.services.to_u64(),
            user_agent: v.user_agent.clone(),
            start_height: v.start_height,
            relay: v.relay,
            features: Features::default(),
            // The machine knows no transport; the actor sets it before publishing.
            transport: crate::peer::TransportVersion::V1,
        });
        self.peer_sees_us = v.receiver.socket_addr().ok().map(|a| a.ip().to_canonical());
        if self.link == Link::Inbound {
            if let Some((unix_time, height, remote)) = self.pending_version.take() {
                self.send_version(unix_time, height, remote);
            }
        }
        // Feature negotiation goes between version and verack (peer-etiquette.md §2.3).
        if v.version >= WTXID_RELAY_VERSION && self.config.protocol_version >= WTXID_RELAY_VERSION {
            self.send(Message::WtxidRelay);
            self.send(Message::SendAddrV2);
        }
        self.send(Message::Verack);
        self.sent_verack = true;
    }

    /// `verack` and the feature messages, accepted in any state once `version` arrived. `None`
    /// when `msg` is not one of them.
    pub(super) fn on_negotiation(&mut self, now: Instant, msg: &Message) -> Option<Verdict> {
        match msg {
            Message::Verack => {
                if !self.got_verack {
                    self.got_verack = true;
                    self.maybe_ready(now);
                }
            }
            Message::WtxidRelay => {
                // Core disconnects (no discouragement) for `wtxidrelay` after `verack`
                // (`ProcessMessage`, WTXIDRELAY).
                if self.got_verack {
                    return Some(
                        self.misbehaving(Misbehavior::NegotiationAfterVerack {
                            command: "wtxidrelay".into(),
                        }),
                    );
                }
                let their_version = self.remote.as_ref().map_or(0, |r| r.version);
                if their_version >= WTXID_RELAY_VERSION && self.config.protocol_version >= WTXID_RELAY_VERSION
                {
                    self.features_mut().wtxid_relay = true;
                }
            }
            Message::SendAddrV2 => {
                // The same for `sendaddrv2` (`ProcessMessage`, SENDADDRV2).
                if self.got_verack {
                    return Some(
                        self.misbehaving(Misbehavior::NegotiationAfterVerack {
                            command: "sendaddrv2".into(),
                        }),
                    );
                }
                self.features_mut().addr_v2 = true;
            }
            Message::SendHeaders => self.features_mut().send_headers = true,
            Message::SendCmpct(c) => {
                self.features_mut().compact_blocks =
                    Some(CompactBlocks { high_bandwidth: c.send_compact, version: c.version });
            }
            Message::FeeFilter(rate) => self.features_mut().fee_filter = Some(*rate),
            _ => return None,
        }
        Some(Verdict::Consumed)
    }

    fn maybe_ready(&mut self, now: Instant) {
        if !(self.sent_verack && self.got_verack) || self.state != PeerState::Handshaking {
            return;
        }
        let Some(remote) = self.remote.clone() else { return };
        self.set_state(PeerState::Ready);
        self.actions.push_back(Action::Ready(remote.clone()));
        if remote.version >= SENDHEADERS_VERSION {
            self.send(Message::SendHeaders);
        }
        // Core answers getaddr only on links we opened (peer-etiquette §5.3).
        if self.config.send_getaddr && self.link == Link::Outbound {
            self.send(Message::GetAddr);
            self.addr_budget.getaddr_sent();
        }
        self.next_ping_at = Some(now);
        self.maybe_ping(now);
        // Core advertises itself to every addr-relaying peer; ours are the outbound ones (an
        // inbound peer is not known to relay addresses).
        if self.config.advertise.is_some() && self.link == Link::Outbound {
            self.next_self_announce = Some(now);
            self.maybe_self_announce(now);
        }
    }

    fn features_mut(&mut self) -> &mut Features {
        // Only called once `remote` is set (checked by `on_message`).
        &mut self.remote.as_mut().expect("features are negotiated after version").features
    }
}
