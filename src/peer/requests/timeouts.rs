//! How long a request may wait for its answer.

use std::time::Duration;

/// How long a request may wait: the peer's ping latency times `multiplier` (bitcoin-net's
/// `latency × 10`), kept between `min` and `max`; `max` while no latency is known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeouts {
    /// Factor applied to the measured round trip.
    pub multiplier: u32,
    /// Floor: even a 1 ms loopback peer gets this long.
    pub min: Duration,
    /// Cap, also used before the first ping is answered.
    pub max: Duration,
    /// Floor for block requests (Core allows 10 min per block; we can ask another peer).
    pub block: Duration,
}

impl Default for RequestTimeouts {
    fn default() -> Self {
        RequestTimeouts {
            multiplier: 10,
            min: Duration::from_secs(5),
            max: Duration::from_secs(60),
            block: Duration::from_secs(60),
        }
    }
}

impl RequestTimeouts {
    /// The timeout for a peer whose last measured round trip is `latency`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use btcpeer::peer::requests::RequestTimeouts;
    /// let t = RequestTimeouts::default();
    /// assert_eq!(t.for_latency(Some(Duration::from_secs(2))), Duration::from_secs(20));
    /// assert_eq!(t.for_latency(Some(Duration::from_millis(1))), t.min);
    /// assert_eq!(t.for_latency(None), t.max);
    /// ```
    pub fn for_latency(&self, latency: Option<Duration>) -> Duration {
        match latency {
            Some(l) => l.saturating_mul(self.multiplier).clamp(self.min, self.max.max(self.min)),
            None => self.max.max(self.min),
        }
    }
}
