//! Jittered exponential backoff for redialing a peer.

use std::time::Duration;

/// Exponential backoff with "equal jitter": each delay is uniformly between half and all of
/// `initial × 2^attempt`, capped at `max`. The jitter keeps many peers that failed together
/// from retrying together.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial`, never above `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max: max.max(initial), attempt: 0 }
    }

    /// The delay before the next attempt; `unit` is a uniform random number in `[0, 1]`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// Back to the initial delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let full: Vec<u64> = (0..8).map(|_| b.next_delay(1.0).as_secs()).collect();
        assert_eq!(full, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(500));
        for _ in 0..100 {
            let d = b.next_delay(rand::random());
            assert!(d <= Duration::from_secs(30) && d >= Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod doc_examples {
    #[test]
    fn first_delay_is_initial_at_full_jitter() {
        use crate::group::backoff::Backoff;
        use std::time::Duration;
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let d = b.next_delay(1.0);
        assert_eq!(d, Duration::from_secs(1));
    }
}
