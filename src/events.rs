//! Typed notifications for subscriber actors, and their bounded fan-out.
//!
//! Every notification carries the peer's id and address. Delivery uses `try_send`, so a slow or
//! dead subscriber never stalls a peer: when its mailbox is full the notification is dropped and
//! counted (see [`SubscriberStats`]); a subscriber whose actor stopped is removed. Size your
//! subscriber's mailbox with `ctx.set_mailbox_capacity(n)` (actix's default is 16). actix lets
//! each sender queue one message beyond the capacity, so the bound is capacity plus one per
//! peer and notification kind. The bound counts messages, not bytes: payloads are shared
//! (`Arc`), and Core's limits cap each one (50,000 inventory items, 2,000 headers, 1,000
//! addresses, 4 MB).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::dev::SendError;
use actix::{Message as ActixMessage, Recipient};
use bitcoin::{Block, Transaction};
use serde::Serialize;

use crate::group::bans::Ban;
use crate::peer::{DisconnectReason, PeerAddr, PeerId, PeerInfo, PeerState};
use crate::wire::{self, AddrV2Message, CodecError, Inventory, Message, RawBlock};

macro_rules! notification {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, ActixMessage)]
        #[rtype(result = "()")]
        pub struct $name {
            /// Which connection.
            pub peer: PeerId,
            /// The peer's address.
            pub addr: PeerAddr,
            $($(#[$fdoc])* pub $field: $ty,)*
        }
    };
}

notification!(
    /// The connection changed state.
    PeerStateChanged { /// The new state.
        state: PeerState });
notification!(
    /// The handshake completed.
    PeerReady { /// What the peer told us, and what was negotiated.
        info: Arc<PeerInfo> });
notification!(
    /// The connection ended (the last notification of a peer).
    PeerDisconnected { /// Why.
        reason: DisconnectReason });
notification!(
    /// An `inv` arrived.
    InvReceived { /// The announced items.
        items: Arc<Vec<Inventory>> });
notification!(
    /// A `getdata` arrived (the peer asks for items we announced).
    GetDataReceived { /// The requested items.
        items: Arc<Vec<Inventory>> });
notification!(
    /// A `tx` arrived.
    TxReceived { /// The transaction.
        tx: Arc<Transaction> });
notification!(
    /// An `addr` or `addrv2` arrived (v1 entries converted to the BIP155 form; Tor v3, I2P
    /// and CJDNS entries are kept).
    AddrReceived { /// The addresses.
        addrs: Arc<Vec<AddrV2Message>>, /// True if it came as `addrv2`.
        v2: bool });
notification!(
    /// A `headers` message arrived.
    HeadersReceived { /// The headers, in the order received.
        headers: Arc<Vec<bitcoin::block::Header>> });
notification!(
    /// A `block` arrived.
    BlockReceived { /// The block.
        block: Arc<Block> });
notification!(
    /// Any message at all, handshake and control traffic included (btcd's `OnRead`).
    MessageReceived { /// The message.
        message: Arc<Message> });

/// An address was banned (a group notification).
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "()")]
pub struct AddressBanned {
    /// The ban.
    pub ban: Ban,
}

/// A ban ended (a group notification).
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "()")]
pub struct AddressUnbanned {
    /// The ban that ended.
    pub ban: Ban,
    /// True if it expired; false if it was lifted.
    pub expired: bool,
}

/// One subscription: which notification kind, and who receives it.
#[derive(Clone)]
pub enum Subscription {
    /// State changes.
    State(Recipient<PeerStateChanged>),
    /// Handshake completions.
    Ready(Recipient<PeerReady>),
    /// Disconnections.
    Disconnected(Recipient<PeerDisconnected>),
    /// `inv` messages.
    Inv(Recipient<InvReceived>),
    /// `tx` messages.
    Tx(Recipient<TxReceived>),
    /// `getdata` messages.
    GetData(Recipient<GetDataReceived>),
    /// `addr`/`addrv2` messages.
    Addr(Recipient<AddrReceived>),
    /// `headers` messages.
    Headers(Recipient<HeadersReceived>),
    /// `block` messages.
    Block(Recipient<BlockReceived>),
    /// Every message.
    Message(Recipient<MessageReceived>),
    /// Bans made by a group.
    Banned(Recipient<AddressBanned>),
    /// Bans ended in a group.
    Unbanned(Recipient<AddressUnbanned>),
}

/// Identifies one subscription in statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SubscriberId(pub u64);

/// Delivery counters of one subscription on one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberStats {
    /// The subscription.
    pub id: SubscriberId,
    /// Notification kind (`inv`, `tx`, `state`, ...).
    pub kind: &'static str,
    /// Notifications delivered to its mailbox.
    pub delivered: u64,
    /// Notifications dropped because its mailbox was full.
    pub dropped: u64,
}

struct Sink<M: ActixMessage + Send>
where
    M::Result: Send,
{
    id: SubscriberId,
    recipient: Recipient<M>,
    delivered: u64,
    dropped: u64,
}

impl<M: ActixMessage + Send> Clone for Sink<M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        // A clone is a template for another peer: counters start at zero.
        Sink { id: self.id, recipient: self.recipient.clone(), delivered: 0, dropped: 0 }
    }
}

fn publish<M>(sinks: &mut Vec<Sink<M>>, make: impl FnOnce() -> M)
where
    M: ActixMessage + Send + Clone + 'static,
    M::Result: Send,
{
    let Some((last, rest)) = sinks.split_last_mut() else { return };
    let msg = make();
    let mut closed = false;
    for sink in rest {
        closed |= deliver(sink, msg.clone());
    }
    closed |= deliver(last, msg);
    if closed {
        sinks.retain(|s| s.recipient.connected());
    }
}

/// Returns true when the subscriber is gone.
fn deliver<M>(sink: &mut Sink<M>, msg: M) -> bool
where
    M: ActixMessage + Send + 'static,
    M::Result: Send,
{
    match sink.recipient.try_send(msg) {
        Ok(()) => {
            sink.delivered += 1;
            false
        }
        Err(SendError::Full(_)) => {
            sink.dropped += 1;
            false
        }
        Err(SendError::Closed(_)) => true,
    }
}

/// The subscribers of one peer, by notification kind.
#[derive(Clone, Default)]
pub struct Subscribers {
    state: Vec<Sink<PeerStateChanged>>,
    ready: Vec<Sink<PeerReady>>,
    disconnected: Vec<Sink<PeerDisconnected>>,
    inv: Vec<Sink<InvReceived>>,
    tx: Vec<Sink<TxReceived>>,
    getdata: Vec<Sink<GetDataReceived>>,
    addr: Vec<Sink<AddrReceived>>,
    headers: Vec<Sink<HeadersReceived>>,
    block: Vec<Sink<BlockReceived>>,
    message: Vec<Sink<MessageReceived>>,
    banned: Vec<Sink<AddressBanned>>,
    unbanned: Vec<Sink<AddressUnbanned>>,
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.stats()).finish()
    }
}

fn sink<M: ActixMessage + Send>(id: SubscriberId, recipient: Recipient<M>) -> Sink<M>
where
    M::Result: Send,
{
    Sink { id, recipient, delivered: 0, dropped: 0 }
}

impl Subscribers {
    /// No subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription and returns its id.
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use btcpeer::events::{InvReceived, Subscribers, Subscription};
    /// struct Printer;
    /// impl Actor for Printer { type Context = Context<Self>; }
    /// impl Handler<InvReceived> for Printer {
    ///     type Result = ();
    ///     fn handle(&mut self, m: InvReceived, _: &mut Context<Self>) { println!("{} items from {}", m.items.len(), m.addr); }
    /// }
    /// # actix::System::new().block_on(async {
    /// let printer = Printer.start();
    /// let mut subs = Subscribers::new();
    /// subs.add(Subscription::Inv(printer.recipient()));
    /// # });
    /// ```
    pub fn add(&mut self, subscription: Subscription) -> SubscriberId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = SubscriberId(NEXT.fetch_add(1, Ordering::Relaxed));
        self.add_with_id(id, subscription);
        id
    }

    /// Adds a subscription under an existing id (a group gives every peer the same ids).
    pub fn add_with_id(&mut self, id: SubscriberId, subscription: Subscription) {
        match subscription {
            Subscription::State(r) => self.state.push(sink(id, r)),
            Subscription::Ready(r) => self.ready.push(sink(id, r)),
            Subscription::Disconnected(r) => self.disconnected.push(sink(id, r)),
            Subscription::Inv(r) => self.inv.push(sink(id, r)),
            Subscription::Tx(r) => self.tx.push(sink(id, r)),
            Subscription::GetData(r) => self.getdata.push(sink(id, r)),
            Subscription::Addr(r) => self.addr.push(sink(id, r)),
            Subscription::Headers(r) => self.headers.push(sink(id, r)),
            Subscription::Block(r) => self.block.push(sink(id, r)),
            Subscription::Message(r) => self.message.push(sink(id, r)),
            Subscription::Banned(r) => self.banned.push(sink(id, r)),
            Subscription::Unbanned(r) => self.unbanned.push(sink(id, r)),
        }
    }

    /// Removes every subscription with this id; returns how many were removed.
    pub fn remove(&mut self, id: SubscriberId) -> usize {
        fn drop_id<M: ActixMessage + Send>(sinks: &mut Vec<Sink<M>>, id: SubscriberId) -> usize
        where
            M::Result: Send,
        {
            let before = sinks.len();
            sinks.retain(|s| s.id != id);
            before - sinks.len()
        }
        drop_id(&mut self.state, id)
            + drop_id(&mut self.ready, id)
            + drop_id(&mut self.disconnected, id)
            + drop_id(&mut self.inv, id)
            + drop_id(&mut self.tx, id)
            + drop_id(&mut self.getdata, id)
            + drop_id(&mut self.addr, id)
            + drop_id(&mut self.headers, id)
            + drop_id(&mut self.block, id)
            + drop_id(&mut self.message, id)
            + drop_id(&mut self.banned, id)
            + drop_id(&mut self.unbanned, id)
    }

    /// Delivery counters of every subscription.
    pub fn stats(&self) -> Vec<SubscriberStats> {
        fn collect<M: ActixMessage + Send>(
            out: &mut Vec<SubscriberStats>,
            kind: &'static str,
            sinks: &[Sink<M>],
        ) where
            M::Result: Send,
        {
            out.extend(sinks.iter().map(|s| SubscriberStats {
                id: s.id,
                kind,
                delivered: s.delivered,
                dropped: s.dropped,
            }));
        }
        let mut out = Vec::new();
        collect(&mut out, "state", &self.state);
        collect(&mut out, "ready", &self.ready);
        collect(&mut out, "disconnected", &self.disconnected);
        collect(&mut out, "inv", &self.inv);
        collect(&mut out, "tx", &self.tx);
        collect(&mut out, "getdata", &self.getdata);
        collect(&mut out, "addr", &self.addr);
        collect(&mut out, "headers", &self.headers);
        collect(&mut out, "block", &self.block);
        collect(&mut out, "message", &self.message);
        collect(&mut out, "banned", &self.banned);
        collect(&mut out, "unbanned", &self.unbanned);
        out
    }

    /// Total notifications dropped for full mailboxes.
    pub fn total_dropped(&self) -> u64 {
        self.stats().iter().map(|s| s.dropped).sum()
    }

    /// Publishes a state change.
    pub fn state_changed(&mut self, peer: PeerId, addr: &PeerAddr, state: PeerState) {
        publish(&mut self.state, || PeerStateChanged { peer, addr: addr.clone(), state });
    }

    /// Publishes a completed handshake.
    pub fn ready(&mut self, peer: PeerId, addr: &PeerAddr, info: PeerInfo) {
        publish(&mut self.ready, || PeerReady { peer, addr: addr.clone(), info: Arc::new(info) });
    }

    /// Publishes the end of a connection.
    pub fn disconnected(&mut self, peer: PeerId, addr: &PeerAddr, reason: DisconnectReason) {
        publish(&mut self.disconnected, || PeerDisconnected { peer, addr: addr.clone(), reason });
    }

    /// Publishes a new ban.
    pub fn banned(&mut self, ban: &Ban) {
        publish(&mut self.banned, || AddressBanned { ban: ban.clone() });
    }

    /// Publishes the end of a ban.
    pub fn unbanned(&mut self, ban: &Ban, expired: bool) {
        publish(&mut self.unbanned, || AddressUnbanned { ban: ban.clone(), expired });
    }

    /// True if nobody listens to per-peer notifications (only to group ones).
    pub fn is_empty(&self) -> bool {
        self.stats().is_empty()
    }

    /// Publishes a received block, parsing it once if anyone wants it (typed subscribers when
    /// `typed`, or the catch-all) unless the caller parsed it already (`decoded`). A block that
    /// does not parse is an error and reaches nobody.
    pub fn received_block(
        &mut self,
        peer: PeerId,
        addr: &PeerAddr,
        raw: RawBlock,
        decoded: Option<Arc<bitcoin::Block>>,
        typed: bool,
    ) -> Result<(), CodecError> {
        let typed = typed && !self.block.is_empty();
        if !typed && self.message.is_empty() {
            return Ok(());
        }
        let block = match decoded {
            Some(block) => block,
            None => Arc::new(raw.decode()?),
        };
        if !self.message.is_empty() {
            let shared = Arc::new(Message::Block((*block).clone()));
            publish(&mut self.message, || MessageReceived { peer, addr: addr.clone(), message: shared });
        }
        if typed {
            publish(&mut self.block, || BlockReceived { peer, addr: addr.clone(), block });
        }
        Ok(())
    }

    /// Publishes a received message: to the catch-all subscribers, and when `typed` is set (the
    /// handshake is done and the message was accepted) as its typed notification.
    pub fn received(&mut self, peer: PeerId, addr: &PeerAddr, msg: Message, typed: bool) {
        if !self.message.is_empty() {
            let shared = Arc::new(msg.clone());
            publish(&mut self.message, || MessageReceived { peer, addr: addr.clone(), message: shared });
        }
        if !typed {
            return;
        }
        let addr = addr.clone();
        match msg {
            Message::Inv(items) => {
                publish(&mut self.inv, || InvReceived { peer, addr, items: Arc::new(items) })
            }
            Message::Tx(tx) => publish(&mut self.tx, || TxReceived { peer, addr, tx: Arc::new(tx) }),
            Message::GetData(items) => {
                publish(&mut self.getdata, || GetDataReceived { peer, addr, items: Arc::new(items) })
            }
            Message::Addr(list) => publish(&mut self.addr, || AddrReceived {
                peer,
                addr,
                addrs: Arc::new(list.iter().map(|(time, a)| wire::addr_v1_to_v2(*time, a)).collect()),
                v2: false,
            }),
            Message::AddrV2(list) => {
                publish(&mut self.addr, || AddrReceived { peer, addr, addrs: Arc::new(list), v2: true })
            }
            Message::Headers(headers) => {
                publish(&mut self.headers, || HeadersReceived { peer, addr, headers: Arc::new(headers) })
            }
            Message::Block(block) => {
                publish(&mut self.block, || BlockReceived { peer, addr, block: Arc::new(block) })
            }
            _ => {}
        }
    }
}
