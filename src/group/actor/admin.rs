//! Bans (an operator's, and those for misbehaviour) and the handlers an operator uses: bans,
//! accepting, status, addresses and shutdown; and `SendToPeer` for the chain sync's serving of
//! downstream peers.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{deliver, unix_now, PeerGroup, SHUTDOWN_GRACE};
use crate::addrbook::netgroup::is_local;
use crate::group::bans::{Ban, BanTarget};
use crate::group::messages::*;
use crate::peer::messages::{Disconnect, SendMessage, ServeFilteredBlock};
use crate::peer::{DisconnectReason, PeerAddr};

impl PeerGroup {
    pub(super) fn ban(&mut self, addr: &PeerAddr, duration: Duration, reason: &str, manual: bool) -> Ban {
        let unix = unix_now();
        let until = unix.saturating_add(duration.as_secs());
        let target = BanTarget::of(addr);
        let ban = if manual {
            self.bans.ban_manual(target, unix, until, reason).clone()
        } else {
            self.bans.ban(target, unix, until, reason).clone()
        };
        warn!(target = %ban.target, until = ban.until, reason, "banned");
        self.group_events.banned(&ban);
        // A ban must survive a crash: saved within seconds, not at the next interval.
        self.bans_dirty = true;
        // Every connection to or from the banned address goes (Core disconnects them all).
        let target = BanTarget::of(addr);
        for entry in self.peers.values() {
            if BanTarget::of(&entry.addr) == target {
                entry.actor.do_send(Disconnect(DisconnectReason::Banned));
            }
        }
        ban
    }

    /// Bans for misbehaviour reported from outside the peer (a chain sync), never a
    /// configured peer and not while closing.
    pub(in crate::group) fn ban_unless_configured(&mut self, addr: &PeerAddr, reason: &str) {
        if !self.closing && !self.policy.is_configured_host(addr) {
            self.discourage(addr, reason);
        }
    }

    /// The ban for misbehaviour (Core's discouragement). A local address is only disconnected
    /// (which the misbehaviour already did) unless [`GroupConfig::ban_local`]: Core's
    /// `MaybeDiscourageAndDisconnect` (`net_processing.cpp`) never discourages one, since
    /// that would shut out every peer arriving through it, such as all inbound Tor peers.
    pub(in crate::group) fn discourage(&mut self, addr: &PeerAddr, reason: &str) {
        if is_local(addr) && !self.config.ban_local {
            info!(%addr, reason, "misbehaving local peer disconnected but not banned");
            return;
        }
        self.ban(addr, self.config.ban_time, reason, false);
    }
}

impl Handler<BanAddr> for PeerGroup {
    type Result = MessageResult<BanAddr>;
    fn handle(&mut self, msg: BanAddr, _: &mut Context<Self>) -> Self::Result {
        let duration = msg.duration.unwrap_or(self.config.ban_time);
        MessageResult(self.ban(&msg.addr, duration, &msg.reason, true))
    }
}

impl Handler<UnbanAddr> for PeerGroup {
    type Result = bool;
    fn handle(&mut self, msg: UnbanAddr, _: &mut Context<Self>) -> bool {
        let target = BanTarget::of(&msg.0);
        let ban = self.bans.list().into_iter().find(|b| b.target == target);
        match ban {
            Some(ban) if self.bans.unban(&target) => {
                tracing::info!(target = %ban.target, "unbanned");
                self.group_events.unbanned(&ban, false);
                true
            }
            _ => false,
        }
    }
}

impl Handler<GetBans> for PeerGroup {
    type Result = MessageResult<GetBans>;
    fn handle(&mut self, _: GetBans, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.bans.list())
    }
}

impl Handler<StopAccepting> for PeerGroup {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, _: &mut Context<Self>) {
        self.accepting = false;
    }
}

impl Handler<StartAccepting> for PeerGroup {
    type Result = ();
    fn handle(&mut self, _: StartAccepting, _: &mut Context<Self>) {
        self.accepting = true;
    }
}

impl Handler<GetStatus> for PeerGroup {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<AddAddresses> for PeerGroup {
    type Result = usize;
    fn handle(&mut self, msg: AddAddresses, ctx: &mut Context<Self>) -> usize {
        let unix = unix_now();
        let added = msg.0.iter().filter(|a| self.book.add(a, 0, unix, None, unix)).count();
        self.run_policy(ctx);
        added
    }
}

impl Handler<Shutdown> for PeerGroup {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        self.accepting = false;
        // Nobody will become ready any more.
        deliver(self.ready_waiters.close());
        for entry in self.peers.values() {
            entry.actor.do_send(Disconnect(DisconnectReason::Shutdown));
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        self.finish_if_closed();
        ctx.run_later(SHUTDOWN_GRACE, |act, _| act.close());
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<SendToPeer> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: SendToPeer, _: &mut Context<Self>) {
        if let Some(entry) = self.peers.get(&msg.peer).filter(|e| e.ready) {
            entry.actor.do_send(SendMessage(msg.message));
        }
    }
}

/// Serving a peer that connected to us: a filtered block goes to the peer itself, whose BIP37
/// filter builds the answer (the chain sync's `SendToPeer` carries finished messages only).
impl Handler<ServeFilteredBlock> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: ServeFilteredBlock, _: &mut Context<Self>) {
        if let Some(entry) = self.peers.get(&msg.peer).filter(|e| e.ready) {
            entry.actor.do_send(msg);
        }
    }
}

impl Handler<SetServiceBits> for PeerGroup {
    type Result = ();
    fn handle(&mut self, msg: SetServiceBits, _: &mut Context<Self>) {
        let services = &mut self.config.peer.machine.services;
        services.add(msg.add);
        services.remove(msg.remove);
        self.refresh_advertise();
    }
}
