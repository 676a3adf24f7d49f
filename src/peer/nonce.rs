//! The set of `version` nonces of our own live connections, shared by every peer of a process so
//! that a connection to ourselves is recognised (Core's `CheckIncomingNonce`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Shared set of nonces we sent in our own `version` messages. Holds one entry per live
/// connection, so it is bounded by the number of connections.
///
/// ```
/// let set = btcpeer::peer::NonceSet::default();
/// let nonce = set.issue(|| 7);
/// assert!(set.contains(nonce));
/// set.release(nonce);
/// assert!(!set.contains(nonce));
/// ```
#[derive(Clone, Debug, Default)]
pub struct NonceSet(Arc<Mutex<HashSet<u64>>>);

impl NonceSet {
    /// Registers a new non-zero nonce drawn from `draw` (redrawn while it collides) and returns it.
    pub fn issue(&self, mut draw: impl FnMut() -> u64) -> u64 {
        let mut set = self.lock();
        loop {
            let n = draw();
            if n != 0 && set.insert(n) {
                return n;
            }
        }
    }

    /// True if `nonce` is one of ours.
    pub fn contains(&self, nonce: u64) -> bool {
        self.lock().contains(&nonce)
    }

    /// Forgets a nonce when its connection ends.
    pub fn release(&self, nonce: u64) {
        self.lock().remove(&nonce);
    }

    /// Number of live nonces.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no connection holds a nonce.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        // A poisoned lock only means another thread panicked while inserting; the set is still valid.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
