//! Byte budgets: how much undelivered notification data one subscriber may have queued.
//!
//! Every notification handed to a subscriber is charged its weight (its payload's size plus a
//! fixed overhead) until the subscriber's handler has run. A full budget either drops and counts
//! the notification (the default) or, when built with [`Budget::backpressure`], accepts it and
//! makes the peers whose notifications fill it stop reading their sockets until the subscriber
//! catches up, so TCP slows those senders, the others read on, and nothing is lost.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::Notify;

/// What each notification weighs beyond its payload: the notification, the envelope and the task
/// that waits for the handler. Keeps a flood of empty messages bounded too.
pub(crate) const NOTICE_OVERHEAD: usize = 256;

/// The budget of a subscription that names none: 16 MiB (eight 50,000-entry `inv`s, or tens of
/// thousands of small notifications). Subscriptions added under one id share one budget.
pub const DEFAULT_SUBSCRIBER_BYTES: usize = 16 << 20;

/// The budget of the crate's own actors (group, chain sync): larger, since a dropped lifecycle
/// notice costs them more than memory does.
pub(crate) const INTERNAL_SUBSCRIBER_BYTES: usize = 64 << 20;

/// A subscriber's byte budget, shared by all peers that deliver to it (clones share it).
///
/// ```
/// use btcpeer::events::Budget;
/// let lossy = Budget::new(8 << 20); // drop and count beyond 8 MiB queued
/// let lossless = Budget::backpressure(8 << 20); // slow the peers instead
/// assert!(!lossy.is_backpressure() && lossless.is_backpressure());
/// assert_eq!(lossy.queued_bytes(), 0);
/// ```
#[derive(Clone)]
pub struct Budget(Arc<Inner>);

struct Inner {
    limit: usize,
    backpressure: bool,
    used: AtomicUsize,
    dropped: AtomicU64,
    /// Drops by notification kind (touched only when dropping).
    dropped_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// Bytes outstanding per source peer (by id), so that backpressure stops the peers whose
    /// notifications fill the budget, not a quiet peer that has nothing waiting. At most one
    /// entry per connected peer: an entry leaves when its bytes are back.
    by_source: Mutex<HashMap<u64, usize>>,
    room: Notify,
}

impl Budget {
    /// A budget of `limit` bytes that drops (and counts) what does not fit.
    pub fn new(limit: usize) -> Budget {
        Budget::build(limit, false)
    }

    /// A lossless budget of `limit` bytes: when it is full, the peers whose notifications are
    /// waiting in it stop reading their sockets until the subscriber gets under the limit or
    /// has handled all of theirs; a peer with nothing waiting reads on, so a flood from some
    /// peers does not stall the others. Each peer may overshoot by the one message it was
    /// reading, so the bound is `limit` plus one message (at most 4 MB) per peer.
    pub fn backpressure(limit: usize) -> Budget {
        Budget::build(limit, true)
    }

    /// The budget of the crate's own actors' notices.
    pub(crate) fn internal() -> Budget {
        Budget::new(INTERNAL_SUBSCRIBER_BYTES)
    }

    fn build(limit: usize, backpressure: bool) -> Budget {
        Budget(Arc::new(Inner {
            limit,
            backpressure,
            used: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            dropped_by_kind: Mutex::new(BTreeMap::new()),
            by_source: Mutex::new(HashMap::new()),
            room: Notify::new(),
        }))
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// True if this budget slows peers instead of dropping.
    pub fn is_backpressure(&self) -> bool {
        self.0.backpressure
    }

    /// Bytes charged and not yet handled by the subscriber.
    pub fn queued_bytes(&self) -> usize {
        self.0.used.load(Ordering::Acquire)
    }

    /// Notifications dropped so far because the budget was full (always 0 with backpressure).
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Drops so far, by notification kind (`inv`, `tx`, ...).
    pub fn dropped_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.0.dropped_by_kind.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// True if the budget is at or above its limit.
    pub fn is_full(&self) -> bool {
        self.queued_bytes() >= self.0.limit
    }

    /// Charges `weight` bytes from `source` (a peer id) if the notification may be queued:
    /// always with backpressure; when dropping, if it fits (or nothing is queued, so one
    /// oversized notification still passes).
    pub(crate) fn try_charge(&self, weight: usize, kind: &'static str, source: Option<u64>) -> bool {
        let inner = &self.0;
        if inner.backpressure {
            inner.used.fetch_add(weight, Ordering::AcqRel);
            if let Some(source) = source {
                if let Ok(mut by_source) = inner.by_source.lock() {
                    *by_source.entry(source).or_default() += weight;
                }
            }
            return true;
        }
        let admitted = inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used.saturating_add(weight) <= inner.limit).then(|| used + weight)
            })
            .is_ok();
        if !admitted {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut by_kind) = inner.dropped_by_kind.lock() {
                *by_kind.entry(kind).or_default() += 1;
            }
        }
        admitted
    }

    /// Returns `weight` bytes once the subscriber handled (or will never handle) a notification.
    pub(crate) fn release(&self, weight: usize, source: Option<u64>) {
        let inner = &self.0;
        let before = inner.used.fetch_sub(weight, Ordering::AcqRel);
        let mut wake = before >= inner.limit && before - weight < inner.limit;
        if let (Some(source), true) = (source, inner.backpressure) {
            if let Ok(mut by_source) = inner.by_source.lock() {
                if let Some(left) = by_source.get_mut(&source) {
                    *left = left.saturating_sub(weight);
                    if *left == 0 {
                        by_source.remove(&source);
                        // A paused peer whose notifications are all handled may read again.
                        wake = true;
                    }
                }
            }
        }
        if wake {
            inner.room.notify_waiters();
        }
    }

    /// True if notifications from `source` are still waiting in this budget.
    pub(crate) fn holds(&self, source: u64) -> bool {
        self.0.by_source.lock().map(|m| m.contains_key(&source)).unwrap_or(false)
    }

    /// True if `source` should stop reading: the budget is full and some of what fills it is
    /// `source`'s.
    pub(crate) fn blocks(&self, source: u64) -> bool {
        self.is_full() && self.holds(source)
    }

    /// Resolves when `source` may read again: the budget is under its limit, or nothing of
    /// `source`'s is waiting in it any more.
    pub(crate) async fn room_for(&self, source: u64) {
        loop {
            let notified = self.0.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check and the await wakes us.
            notified.as_mut().enable();
            if !self.blocks(source) {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn same(&self, other: &Budget) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.0.limit)
            .field("backpressure", &self.0.backpressure)
            .field("queued_bytes", &self.queued_bytes())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// What a notification weighs in a [`Budget`]: its payload's size, roughly as held in memory.
pub trait Weight {
    fn weight(&self) -> usize;
    /// The peer that published it (for per-peer backpressure); `None` for group notices.
    fn source(&self) -> Option<u64> {
        None
    }
}

/// Tells a peer's socket reader to pause until a full backpressure budget has room again. The
/// peer sets it after publishing; the reader (a [`Gated`] stream) checks it before each frame.
#[derive(Clone, Default)]
pub(crate) struct Gate(Arc<Mutex<Option<(Budget, u64)>>>);

impl Gate {
    /// Pauses the reader of peer `source` until `budget` lets it read again.
    pub(crate) fn pause_for(&self, budget: Budget, source: u64) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((budget, source));
        }
    }

    fn take(&self) -> Option<(Budget, u64)> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A stream (a peer's frame reader) that does not read while its [`Gate`] holds a full budget.
pub(crate) struct Gated<S> {
    inner: S,
    gate: Gate,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<S> Gated<S> {
    pub(crate) fn new(inner: S, gate: Gate) -> Self {
        Gated { inner, gate, waiting: None }
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        loop {
            if let Some(waiting) = self.waiting.as_mut() {
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.waiting = None;
            }
            match self.gate.take() {
                Some((budget, source)) if budget.blocks(source) => {
                    self.waiting = Some(Box::pin(async move { budget.room_for(source).await }));
                }
                _ => break,
            }
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn a_dropping_budget_admits_what_fits_and_one_oversized_notification() {
        let b = Budget::new(1_000);
        assert!(b.try_charge(5_000, "block", None), "nothing queued: an oversized one passes");
        assert!(!b.try_charge(10, "inv", None));
        b.release(5_000, None);
        assert!(b.try_charge(600, "inv", None));
        assert!(b.try_charge(400, "inv", None));
        assert!(!b.try_charge(1, "tx", None));
        assert_eq!(b.queued_bytes(), 1_000);
        assert_eq!(b.dropped(), 2);
        assert_eq!(b.dropped_by_kind().get("inv"), Some(&1));
        assert_eq!(b.dropped_by_kind().get("tx"), Some(&1));
    }

    #[test]
    fn a_backpressure_budget_never_drops() {
        let b = Budget::backpressure(100);
        assert!(b.try_charge(80, "inv", Some(1)));
        assert!(b.try_charge(80, "inv", Some(2)));
        assert!(b.is_full());
        assert_eq!(b.dropped(), 0);
        // Only the peers whose notifications fill it are stopped.
        assert!(b.blocks(1) && b.blocks(2) && !b.blocks(3));
        b.release(80, Some(1));
        assert!(!b.is_full());
        assert!(!b.blocks(2));
    }

    #[tokio::test]
    async fn a_gated_stream_waits_for_room_then_reads_on() {
        let b = Budget::backpressure(100);
        let gate = Gate::default();
        let mut s = Gated::new(futures_util::stream::iter([1, 2, 3]), gate.clone());
        assert_eq!(s.next().await, Some(1));
        b.try_charge(100, "inv", Some(7));
        b.try_charge(50, "inv", Some(8));
        gate.pause_for(b.clone(), 7);
        // Full, partly with peer 7's notifications: its next read waits.
        assert!(futures_util::FutureExt::now_or_never(s.next()).is_none());
        // Peer 7's are handled: it reads again although the budget is still full.
        b.release(100, Some(7));
        b.try_charge(100, "inv", Some(8));
        assert!(b.is_full());
        assert_eq!(s.next().await, Some(2));
        // A gate for a peer with nothing waiting does not pause.
        gate.pause_for(b.clone(), 7);
        assert_eq!(s.next().await, Some(3));
    }
}
