//! Typed notifications for subscriber actors, and their bounded fan-out.
//!
//! Every notification carries the peer's id and address. Each subscriber has a byte
//! [`Budget`]: a notification is charged its weight (payload size plus a fixed overhead) from
//! the moment a peer queues it until the subscriber's handler has run. With the default budget
//! ([`DEFAULT_SUBSCRIBER_BYTES`] per subscriber id, shared by all peers) a slow or dead
//! subscriber never stalls a peer: what does not fit is dropped and counted (see
//! [`SubscriberStats`] and [`Budget::dropped`]) and the first drop of each subscription is
//! logged as a warning. A [`Budget::backpressure`] budget is lossless instead: the peers feeding
//! it stop reading their sockets until the subscriber catches up. A subscriber whose actor
//! stopped is removed. The actor's mailbox capacity does not cause drops (the budget is the
//! bound). Subscribe with [`Subscription::common`] (lifecycle and data kinds at once),
//! [`Subscription::to`], or a variant such as `Subscription::Inv(addr.recipient())`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Context, Handler, Message as ActixMessage, Recipient};
use serde::Serialize;

mod budget;
mod notifications;
mod sink;
mod weight;
use crate::peer::{Ban, DisconnectReason, PeerAddr, PeerId, PeerInfo, PeerState};
use crate::wire::{self, CodecError, Message, RawBlock};
use budget::INTERNAL_SUBSCRIBER_BYTES;
pub use budget::{Budget, DEFAULT_SUBSCRIBER_BYTES};
pub(crate) use budget::{Gate, Gated};
pub use notifications::*;
pub(crate) use sink::Forward;
#[doc(hidden)]
pub use sink::Sink;
use sink::{publish, publish_split, Target, Wrapped};

/// Generates, from one table of notification kinds, everything that enumerates them: the
/// [`Subscription`] variants, the per-kind sink vectors of [`Subscribers`], adding, removing,
/// statistics, and the [`Notification`] trait that ties a message type to its kind. Adding a
/// kind is one line here (plus where it is published).
macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident($ty:ty) => $field:ident, $name:literal;)*) => {
        /// One subscription: which notification kind, and who receives it.
        ///
        /// Build one with `Subscription::Inv(addr.recipient())`, with
        /// [`Subscription::to`], or take the usual set with [`Subscription::common`].
        #[derive(Clone)]
        pub enum Subscription {
            $($(#[$doc])* $variant(Recipient<$ty>),)*
            /// Messages sent, like [`Subscription::Sent`], each carrying the message itself in
            /// [`MessageSent::message`] (a copy of every message sent: ask only when needed).
            SentWithMessage(Recipient<MessageSent>),
            /// The crate's own actors' subscriptions (not constructible outside the crate).
            #[doc(hidden)]
            Internal(InternalSubscription),
            /// A subscription with its own byte budget (made by [`Subscription::with_budget`]).
            #[doc(hidden)]
            Budgeted(Box<Subscription>, Budget),
        }

        /// Where an internal subscription delivers, by kind.
        #[derive(Clone)]
        enum InternalTarget {
            $($variant(Arc<dyn Forward<$ty>>),)*
        }

        impl Subscription {
            /// The kind's short name (as in [`SubscriberStats::kind`] and the daemon's events).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Subscription::$variant(_) => $name,)*
                    Subscription::SentWithMessage(_) => <MessageSent as Notification>::KIND,
                    $(Subscription::Internal(InternalSubscription(InternalTarget::$variant(_))) => $name,)*
                    Subscription::Budgeted(inner, _) => inner.kind(),
                }
            }
        }

        $(
            impl Notification for $ty {
                const KIND: &'static str = $name;
                fn subscription(recipient: Recipient<Self>) -> Subscription {
                    Subscription::$variant(recipient)
                }
            }

            // The sealed trait is unnameable outside; its private types never leak.
            #[allow(private_interfaces)]
            impl sealed::Kind for $ty {
                fn sinks(subs: &mut Subscribers) -> &mut Vec<Sink<Self>> {
                    &mut subs.$field
                }
                fn internal(forward: Arc<dyn Forward<Self>>) -> InternalTarget {
                    InternalTarget::$variant(forward)
                }
            }

            impl From<Recipient<$ty>> for Subscription {
                fn from(recipient: Recipient<$ty>) -> Self {
                    Subscription::$variant(recipient)
                }
            }
        )*

        /// The subscribers of one peer (or group), by notification kind.
        #[derive(Clone, Default)]
        pub struct Subscribers {
            $($field: Vec<Sink<$ty>>,)*
            /// Each subscription id's byte budget (shared by this set's clones, i.e. all peers).
            budgets: Vec<(SubscriberId, Budget)>,
        }

        impl Subscribers {
            /// Adds a subscription under an existing id (a group gives every peer the same ids).
            /// Subscriptions under one id share one byte [`Budget`]: the first one given with
            /// [`Subscription::with_budget`], else a new one of [`DEFAULT_SUBSCRIBER_BYTES`].
            pub fn add_with_id(&mut self, id: SubscriberId, subscription: Subscription) {
                match subscription {
                    $(Subscription::$variant(r) => {
                        let budget = self.budget_for(id, DEFAULT_SUBSCRIBER_BYTES);
                        self.$field.push(Sink::new(id, Target::Public(r), budget))
                    })*
                    Subscription::SentWithMessage(r) => {
                        let budget = self.budget_for(id, DEFAULT_SUBSCRIBER_BYTES);
                        self.sent.push(Sink::new(id, Target::Public(r), budget).with_message())
                    }
                    $(Subscription::Internal(InternalSubscription(InternalTarget::$variant(f))) => {
                        let budget = self.budget_for(id, INTERNAL_SUBSCRIBER_BYTES);
                        self.$field.push(Sink::new(id, Target::Internal(f), budget))
                    })*
                    Subscription::Budgeted(inner, budget) => {
                        if !self.budgets.iter().any(|(i, b)| *i == id && b.same(&budget)) {
                            self.budgets.retain(|(i, _)| *i != id);
                            self.budgets.push((id, budget));
                        }
                        self.add_with_id(id, *inner)
                    }
                }
            }

            /// Removes every subscription with this id; returns how many were removed.
            pub fn remove(&mut self, id: SubscriberId) -> usize {
                let mut removed = 0;
                $(
                    let before = self.$field.len();
                    self.$field.retain(|s| s.id != id);
                    removed += before - self.$field.len();
                )*
                self.budgets.retain(|(i, _)| *i != id);
                removed
            }

            /// Delivery counters of every subscription.
            pub fn stats(&self) -> Vec<SubscriberStats> {
                let mut out = Vec::new();
                $(out.extend(self.$field.iter().map(|s| s.stats($name)));)*
                out
            }
        }
    };
}

kinds! {
    /// State changes.
    State(PeerStateChanged) => state, "state";
    /// Handshake completions.
    Ready(PeerReady) => ready, "ready";
    /// Disconnections.
    Disconnected(PeerDisconnected) => disconnected, "disconnected";
    /// `inv` messages.
    Inv(InvReceived) => inv, "inv";
    /// `tx` messages.
    Tx(TxReceived) => tx, "tx";
    /// `getdata` messages.
    GetData(GetDataReceived) => getdata, "getdata";
    /// `addr`/`addrv2` messages.
    Addr(AddrReceived) => addr, "addr";
    /// `headers` messages.
    Headers(HeadersReceived) => headers, "headers";
    /// `block` messages.
    Block(BlockReceived) => block, "block";
    /// Every message.
    Message(MessageReceived) => message, "message";
    /// Every message sent: command and wire length (see also `SentWithMessage`).
    Sent(MessageSent) => sent, "sent";
    /// Bans made by a group.
    Banned(AddressBanned) => banned, "banned";
    /// Bans ended in a group.
    Unbanned(AddressUnbanned) => unbanned, "unbanned";
}

/// A notification type that can be subscribed to (every type in this module's table; sealed).
pub trait Notification: sealed::Kind + ActixMessage<Result = ()> + Send + Clone + 'static {
    /// The kind's short name.
    const KIND: &'static str;
    /// The subscription delivering this kind to `recipient`.
    fn subscription(recipient: Recipient<Self>) -> Subscription;
}

mod sealed {
    use std::sync::Arc;

    /// Where a kind's sinks live; private so only this module's table implements it.
    pub trait Kind: Sized + actix::Message<Result = ()> + Send + super::budget::Weight {
        fn sinks(subs: &mut super::Subscribers) -> &mut Vec<super::Sink<Self>>;
        #[allow(private_interfaces)]
        fn internal(forward: Arc<dyn super::Forward<Self>>) -> super::InternalTarget;
    }
}

/// A subscription of one of the crate's own actors, delivered through a private message type so
/// that nothing outside the crate can send that actor a forged notice.
#[doc(hidden)]
#[derive(Clone)]
pub struct InternalSubscription(InternalTarget);

/// A notification as the crate's own actors receive it: a private wrapper, so only a peer (through
/// an [`InternalSubscription`]) can deliver it. A public `Handler<PeerDisconnected>` on the group
/// would let any holder of its address fake a disconnect.
#[derive(Debug, Clone)]
pub(crate) struct Notice<M>(pub M);

impl<M: ActixMessage<Result = ()>> ActixMessage for Notice<M> {
    type Result = ();
}

impl Subscription {
    /// Subscribes `addr` to notification kind `M`.
    ///
    /// ```no_run
    /// # use actix::prelude::*;
    /// # use btcpeer::events::{TxReceived, Subscription};
    /// # struct Watcher;
    /// # impl Actor for Watcher { type Context = Context<Self>; }
    /// # impl Handler<TxReceived> for Watcher { type Result = (); fn handle(&mut self, _: TxReceived, _: &mut Context<Self>) {} }
    /// # actix::System::new().block_on(async {
    /// let watcher = Watcher.start();
    /// let sub = Subscription::to::<TxReceived, _>(&watcher);
    /// # });
    /// ```
    pub fn to<M, A>(addr: &Addr<A>) -> Subscription
    where
        M: Notification,
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        M::subscription(addr.clone().recipient())
    }

    /// The usual set for an actor that handles them all: lifecycle (`state`, `ready`,
    /// `disconnected`) and data (`inv`, `tx`, `addr`, `headers`, `block`). Opt-in kinds are left
    /// out: `getdata` (peers asking us for data), the catch-all `message`, `sent` (what we
    /// write), and the group's `banned`/`unbanned`.
    pub fn common<A>(addr: &Addr<A>) -> Vec<Subscription>
    where
        A: Actor<Context = Context<A>>
            + Handler<PeerStateChanged>
            + Handler<PeerReady>
            + Handler<PeerDisconnected>
            + Handler<InvReceived>
            + Handler<TxReceived>
            + Handler<AddrReceived>
            + Handler<HeadersReceived>
            + Handler<BlockReceived>,
    {
        vec![
            Subscription::State(addr.clone().recipient()),
            Subscription::Ready(addr.clone().recipient()),
            Subscription::Disconnected(addr.clone().recipient()),
            Subscription::Inv(addr.clone().recipient()),
            Subscription::Tx(addr.clone().recipient()),
            Subscription::Addr(addr.clone().recipient()),
            Subscription::Headers(addr.clone().recipient()),
            Subscription::Block(addr.clone().recipient()),
        ]
    }
}

impl Subscription {
    /// This subscription, charged to `budget` (shared with every other subscription given the
    /// same budget, and by all peers). Without one, the subscriptions added under one id share a
    /// budget of [`DEFAULT_SUBSCRIBER_BYTES`] that drops and counts what does not fit.
    ///
    /// ```no_run
    /// use btcpeer::prelude::*;
    /// use btcpeer::events::Budget;
    /// struct Archiver;
    /// impl Actor for Archiver { type Context = Context<Self>; }
    /// impl Handler<TxReceived> for Archiver { type Result = (); fn handle(&mut self, _: TxReceived, _: &mut Context<Self>) {} }
    /// # System::new().block_on(async {
    /// let archiver = Archiver.start();
    /// // Lossless: when 32 MiB wait for the archiver, peers stop reading until it catches up.
    /// let budget = Budget::backpressure(32 << 20);
    /// let sub = Subscription::to::<TxReceived, _>(&archiver).with_budget(&budget);
    /// # });
    /// ```
    pub fn with_budget(self, budget: &Budget) -> Subscription {
        match self {
            Subscription::Budgeted(inner, _) => Subscription::Budgeted(inner, budget.clone()),
            s => Subscription::Budgeted(Box::new(s), budget.clone()),
        }
    }

    /// This subscription with a budget of its own of [`DEFAULT_SUBSCRIBER_BYTES`] unless it has
    /// one, so that every peer given a clone charges the same budget.
    pub(crate) fn with_default_budget(self) -> Subscription {
        match self {
            s @ Subscription::Budgeted(..) => s,
            s => s.with_budget(&Budget::new(DEFAULT_SUBSCRIBER_BYTES)),
        }
    }

    /// A crate-internal subscription: notifications of kind `M` reach `recipient` as
    /// [`Notice<M>`], a type nobody outside the crate can send.
    pub(crate) fn internal<M, A>(addr: &Addr<A>) -> Subscription
    where
        M: Notification,
        A: Actor + Handler<Notice<M>>,
        A::Context: ToEnvelope<A, Notice<M>>,
    {
        let forward: Arc<dyn Forward<M>> =
            Arc::new(Wrapped { recipient: addr.clone().recipient(), wrap: Notice });
        Subscription::Internal(InternalSubscription(<M as sealed::Kind>::internal(forward)))
    }
}

/// Subscriptions of one actor to each listed notification kind, as a `Vec<Subscription>`.
///
/// ```no_run
/// use btcpeer::prelude::*;
/// struct Watcher;
/// impl Actor for Watcher { type Context = Context<Self>; }
/// impl Handler<InvReceived> for Watcher { type Result = (); fn handle(&mut self, _: InvReceived, _: &mut Context<Self>) {} }
/// impl Handler<TxReceived> for Watcher { type Result = (); fn handle(&mut self, _: TxReceived, _: &mut Context<Self>) {} }
/// # System::new().block_on(async {
/// let watcher = Watcher.start();
/// let subs = btcpeer::subscriptions!(&watcher => InvReceived, TxReceived);
/// assert_eq!(subs.len(), 2);
/// # });
/// ```
#[macro_export]
macro_rules! subscriptions {
    ($addr:expr => $($kind:ty),+ $(,)?) => {{
        let addr = $addr;
        vec![$($crate::events::Subscription::to::<$kind, _>(addr)),+]
    }};
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscription({})", self.kind())
    }
}

/// A mailbox capacity for subscriber actors that want one. Delivery no longer depends on it:
/// notifications are queued past the capacity and bounded by the subscriber's byte [`Budget`]
/// instead. Kept for programs that set it:
///
/// ```
/// # use actix::prelude::*;
/// struct Watcher;
/// impl Actor for Watcher {
///     type Context = Context<Self>;
///     fn started(&mut self, ctx: &mut Context<Self>) {
///         ctx.set_mailbox_capacity(btcpeer::events::SUBSCRIBER_MAILBOX);
///     }
/// }
/// ```
pub const SUBSCRIBER_MAILBOX: usize = 1_024;

/// Identifies one subscription in statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SubscriberId(pub u64);

impl SubscriberId {
    /// A fresh id, never reused within the process.
    pub fn next() -> SubscriberId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriberId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Delivery counters of one subscription on one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberStats {
    /// The subscription.
    pub id: SubscriberId,
    /// Notification kind (`inv`, `tx`, `state`, ...).
    pub kind: &'static str,
    /// Notifications delivered to its mailbox.
    pub delivered: u64,
    /// Notifications dropped because its byte budget was full.
    pub dropped: u64,
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.stats()).finish()
    }
}

impl Subscribers {
    fn budget_for(&mut self, id: SubscriberId, default_limit: usize) -> Budget {
        if let Some((_, b)) = self.budgets.iter().find(|(i, _)| *i == id) {
            return b.clone();
        }
        let b = Budget::new(default_limit);
        self.budgets.push((id, b.clone()));
        b
    }

    /// A full backpressure budget holding notifications of `peer`: that peer stops reading its
    /// socket until it may read again (see [`Budget::backpressure`]).
    pub(crate) fn congested(&self, peer: PeerId) -> Option<Budget> {
        self.budgets.iter().find(|(_, b)| b.is_backpressure() && b.blocks(peer.0)).map(|(_, b)| b.clone())
    }

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
        let id = SubscriberId::next();
        self.add_with_id(id, subscription);
        id
    }

    /// Adds every subscription in `subscriptions` under one new id and returns it.
    pub fn add_all(&mut self, subscriptions: impl IntoIterator<Item = Subscription>) -> SubscriberId {
        let id = SubscriberId::next();
        for s in subscriptions {
            self.add_with_id(id, s);
        }
        id
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

    /// Publishes a transaction already shared (a group delivering the first copy it got),
    /// without copying it.
    pub(crate) fn transaction(&mut self, peer: PeerId, addr: &PeerAddr, tx: Arc<bitcoin::Transaction>) {
        publish(&mut self.tx, || TxReceived { peer, addr: addr.clone(), tx });
    }

    /// Publishes a message handed to the peer's writer (`wire_len` bytes, header included):
    /// command and length to every `sent` subscriber, and a copy of the message, made once, to
    /// those that asked for it ([`Subscription::SentWithMessage`]).
    pub fn sent(
        &mut self,
        peer: PeerId,
        addr: &PeerAddr,
        command: &'static str,
        wire_len: usize,
        msg: &Message,
    ) {
        publish_split(
            &mut self.sent,
            || MessageSent { peer, addr: addr.clone(), command, wire_len, message: None },
            || MessageSent {
                peer,
                addr: addr.clone(),
                command,
                wire_len,
                message: Some(Arc::new(msg.clone())),
            },
        );
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

#[cfg(test)]
mod tests;
