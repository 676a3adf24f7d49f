//! Where notifications go: one sink per subscription and peer, charging each notification to its
//! subscriber's byte [`Budget`] until the handler has run, counting what was delivered and
//! dropped, and logging the first drop of each subscription.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::{Message as ActixMessage, Recipient};
use tracing::warn;

use super::budget::{Budget, NOTICE_OVERHEAD};
use super::{Notification, SubscriberId, SubscriberStats};

/// A delivery in progress: resolves once the subscriber's handler has run (or the subscriber is
/// gone), which is when its bytes leave the [`Budget`].
pub(crate) type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

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
    /// Queues `msg`; `None` when the recipient is gone.
    fn forward(&self, msg: M) -> Option<Pending>;
    fn connected(&self) -> bool;
}

pub(crate) struct Wrapped<M, N: ActixMessage + Send>
where
    N::Result: Send,
{
    pub(crate) recipient: Recipient<N>,
    pub(crate) wrap: fn(M) -> N,
}

/// Queues even past the mailbox's capacity (the byte budget is the bound); the returned future
/// resolves when the handler has run.
fn queue<N>(recipient: &Recipient<N>, msg: N) -> Option<Pending>
where
    N: ActixMessage + Send + 'static,
    N::Result: Send,
{
    if !recipient.connected() {
        return None;
    }
    // A fresh clone is never parked, so the message is queued now, in publishing order (a
    // parked sender would hold it in the request until polled, letting later ones overtake).
    let request = recipient.clone().send(msg);
    Some(Box::pin(async move {
        let _ = request.await;
    }))
}

impl<M: 'static, N> Forward<M> for Wrapped<M, N>
where
    N: ActixMessage + Send + 'static,
    N::Result: Send,
{
    fn forward(&self, msg: M) -> Option<Pending> {
        queue(&self.recipient, (self.wrap)(msg))
    }

    fn connected(&self) -> bool {
        self.recipient.connected()
    }
}

impl<M: ActixMessage + Send + 'static> Target<M>
where
    M::Result: Send,
{
    fn send(&self, msg: M) -> Option<Pending> {
        match self {
            Target::Public(r) => queue(r, msg),
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
    pub(crate) budget: Budget,
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
            budget: self.budget.clone(),
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
    pub(crate) fn new(id: SubscriberId, target: Target<M>, budget: Budget) -> Self {
        Sink {
            id,
            target,
            budget,
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
    fn deliver(&mut self, msg: M, weight: usize, kind: &'static str, source: Option<u64>) -> bool {
        if !self.budget.try_charge(weight, kind, source) {
            self.dropped += 1;
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!(
                    subscriber = self.id.0,
                    kind,
                    limit = self.budget.limit(),
                    "subscriber falls behind: its byte budget is full and notifications are being \
                     dropped (counted in stats); give it a larger btcpeer::events::Budget"
                );
            }
            return false;
        }
        let Some(pending) = self.target.send(msg) else {
            self.budget.release(weight, source);
            return true;
        };
        self.delivered += 1;
        let budget = self.budget.clone();
        let release = async move {
            pending.await;
            budget.release(weight, source);
        };
        // Outside a runtime (nothing can run the subscriber either) the bytes are returned at once.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(release);
            }
            Err(_) => self.budget.release(weight, source),
        }
        false
    }
}

pub(crate) fn publish<M: Notification>(sinks: &mut Vec<Sink<M>>, make: impl FnOnce() -> M) {
    let kind = M::KIND;
    let Some((last, rest)) = sinks.split_last_mut() else { return };
    let msg = make();
    let weight = msg.weight() + NOTICE_OVERHEAD;
    let source = msg.source();
    let mut closed = false;
    for sink in rest {
        closed |= sink.deliver(msg.clone(), weight, kind, source);
    }
    closed |= last.deliver(msg, weight, kind, source);
    if closed {
        sinks.retain(|s| s.target.connected());
    }
}

/// Publishes a notification that has a light form and a full one (carrying a copy of the
/// message): each is built at most once, and only if some sink wants it.
pub(crate) fn publish_split<M: Notification>(
    sinks: &mut Vec<Sink<M>>,
    light: impl FnOnce() -> M,
    full: impl FnOnce() -> M,
) {
    if sinks.is_empty() {
        return;
    }
    let weighed = |m: M| {
        let w = m.weight() + NOTICE_OVERHEAD;
        let source = m.source();
        (m, w, source)
    };
    let light = sinks.iter().any(|s| !s.with_message).then(light).map(weighed);
    let full = sinks.iter().any(|s| s.with_message).then(full).map(weighed);
    let mut closed = false;
    for sink in sinks.iter_mut() {
        let msg = if sink.with_message { &full } else { &light };
        if let Some((msg, weight, source)) = msg {
            closed |= sink.deliver(msg.clone(), *weight, M::KIND, *source);
        }
    }
    if closed {
        sinks.retain(|s| s.target.connected());
    }
}
