//! Where notifications go: one sink per subscription and peer, delivering with `try_send`,
//! counting what was delivered and dropped, and logging the first drop of each subscription.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::dev::SendError;
use actix::{Message as ActixMessage, Recipient};
use tracing::warn;

use super::{SubscriberId, SubscriberStats};

/// What became of one delivery attempt.
pub(crate) enum Delivery {
    Delivered,
    Full,
    Closed,
}

/// Where a sink delivers: a subscriber's recipient, or (inside the crate) one of our own actors
/// through a private message type, so that nobody outside can forge its internal notices.
pub(crate) enum Target<M: ActixMessage + Send>
where
    M::Result: Send,
{
    Public(Recipient<M>),
    Internal(Arc<dyn Forward<M>>),
}

impl<M: ActixMessage + Send> Clone for Target<M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        match self {
            Target::Public(r) => Target::Public(r.clone()),
            Target::Internal(f) => Target::Internal(f.clone()),
        }
    }
}

/// Delivery to a recipient of another message type.
pub(crate) trait Forward<M>: Send + Sync {
    fn forward(&self, msg: M) -> Delivery;
    fn connected(&self) -> bool;
}

pub(crate) struct Wrapped<M, N: ActixMessage + Send>
where
    N::Result: Send,
{
    pub(crate) recipient: Recipient<N>,
    pub(crate) wrap: fn(M) -> N,
}

impl<M: 'static, N> Forward<M> for Wrapped<M, N>
where
    N: ActixMessage + Send + 'static,
    N::Result: Send,
{
    fn forward(&self, msg: M) -> Delivery {
        match self.recipient.try_send((self.wrap)(msg)) {
            Ok(()) => Delivery::Delivered,
            Err(SendError::Full(_)) => Delivery::Full,
            Err(SendError::Closed(_)) => Delivery::Closed,
        }
    }

    fn connected(&self) -> bool {
        self.recipient.connected()
    }
}

impl<M: ActixMessage + Send + 'static> Target<M>
where
    M::Result: Send,
{
    fn send(&self, msg: M) -> Delivery {
        match self {
            Target::Public(r) => match r.try_send(msg) {
                Ok(()) => Delivery::Delivered,
                Err(SendError::Full(_)) => Delivery::Full,
                Err(SendError::Closed(_)) => Delivery::Closed,
            },
            Target::Internal(f) => f.forward(msg),
        }
    }

    fn connected(&self) -> bool {
        match self {
            Target::Public(r) => r.connected(),
            Target::Internal(f) => f.connected(),
        }
    }
}

/// One subscription's delivery point on one peer, with its counters (named by the sealed
/// [`Notification`] machinery only).
#[doc(hidden)]
pub struct Sink<M: ActixMessage + Send>
where
    M::Result: Send,
{
    pub(crate) id: SubscriberId,
    target: Target<M>,
    delivered: u64,
    dropped: u64,
    /// The subscriber asked for the message itself (kinds that carry it only on request).
    pub(crate) with_message: bool,
    /// Shared by every peer's copy: the first drop is logged once per subscription.
    warned: Arc<AtomicBool>,
}

impl<M: ActixMessage + Send> Clone for Sink<M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        // A clone is a template for another peer: counters start at zero.
        Sink {
            id: self.id,
            target: self.target.clone(),
            delivered: 0,
            dropped: 0,
            with_message: self.with_message,
            warned: self.warned.clone(),
        }
    }
}

impl<M: ActixMessage + Send + 'static> Sink<M>
where
    M::Result: Send,
{
    pub(crate) fn new(id: SubscriberId, target: Target<M>) -> Self {
        Sink {
            id,
            target,
            delivered: 0,
            dropped: 0,
            with_message: false,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The same sink, delivering the notification's full form (see [`publish_split`]).
    pub(crate) fn with_message(mut self) -> Self {
        self.with_message = true;
        self
    }

    pub(crate) fn stats(&self, kind: &'static str) -> SubscriberStats {
        SubscriberStats { id: self.id, kind, delivered: self.delivered, dropped: self.dropped }
    }

    /// Returns true when the subscriber is gone.
    fn deliver(&mut self, msg: M) -> bool {
        match self.target.send(msg) {
            Delivery::Delivered => {
                self.delivered += 1;
                false
            }
            Delivery::Full => {
                self.dropped += 1;
                if !self.warned.swap(true, Ordering::Relaxed) {
                    warn!(
                        subscriber = self.id.0,
                        kind = std::any::type_name::<M>().rsplit("::").next().unwrap_or("?"),
                        "subscriber mailbox full: notifications are being dropped (counted in \
                         stats); raise it with ctx.set_mailbox_capacity(btcpeer::events::SUBSCRIBER_MAILBOX)"
                    );
                }
                false
            }
            Delivery::Closed => true,
        }
    }
}

pub(crate) fn publish<M>(sinks: &mut Vec<Sink<M>>, make: impl FnOnce() -> M)
where
    M: ActixMessage + Send + Clone + 'static,
    M::Result: Send,
{
    let Some((last, rest)) = sinks.split_last_mut() else { return };
    let msg = make();
    let mut closed = false;
    for sink in rest {
        closed |= sink.deliver(msg.clone());
    }
    closed |= last.deliver(msg);
    if closed {
        sinks.retain(|s| s.target.connected());
    }
}

/// Publishes a notification that has a light form and a full one (carrying a copy of the
/// message): each is built at most once, and only if some sink wants it.
pub(crate) fn publish_split<M>(sinks: &mut Vec<Sink<M>>, light: impl FnOnce() -> M, full: impl FnOnce() -> M)
where
    M: ActixMessage + Send + Clone + 'static,
    M::Result: Send,
{
    if sinks.is_empty() {
        return;
    }
    let light = sinks.iter().any(|s| !s.with_message).then(light);
    let full = sinks.iter().any(|s| s.with_message).then(full);
    let mut closed = false;
    for sink in sinks.iter_mut() {
        let msg = if sink.with_message { &full } else { &light };
        if let Some(msg) = msg {
            closed |= sink.deliver(msg.clone());
        }
    }
    if closed {
        sinks.retain(|s| s.target.connected());
    }
}
