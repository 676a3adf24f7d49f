//! Callers waiting for ready peers (pure: no actix, no clock reads): `WaitForPeers` waits for
//! a number of ready peers, a `Fetch` with no capable peer waits for the next peer to become
//! ready. The group reports readiness and the time; this answers whoever is due.
//!
//! `W` is the shell's reply handle (a oneshot sender), so tests can use plain numbers.

use tokio::time::Instant;

use super::messages::GroupError;

/// Most callers waiting for peers at once; more are refused with [`GroupError::Busy`].
pub const MAX_READY_WAITERS: usize = 1_024;

/// What a caller waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// At least this many ready peers.
    AtLeast(usize),
    /// Any peer becoming ready (a request re-checks whether it can serve it).
    NextReady,
}

/// An answer due to one waiter: the number of ready peers, or why not.
pub(crate) type Answer<W> = (W, Result<usize, GroupError>);

struct Waiter<W> {
    want: Want,
    deadline: Instant,
    reply: W,
}

/// The waiting callers, bounded by [`MAX_READY_WAITERS`].
pub(crate) struct ReadyWaiters<W> {
    waiters: Vec<Waiter<W>>,
}

impl<W> Default for ReadyWaiters<W> {
    fn default() -> Self {
        ReadyWaiters { waiters: Vec::new() }
    }
}

impl<W> ReadyWaiters<W> {
    /// Callers waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// A caller starts waiting until `deadline`, with `ready` peers ready now. Answered at once
    /// when already satisfied, past its deadline, or when too many callers wait.
    pub fn wait(
        &mut self,
        want: Want,
        deadline: Instant,
        reply: W,
        ready: usize,
        now: Instant,
    ) -> Option<Answer<W>> {
        if let Want::AtLeast(min) = want {
            if ready >= min {
                return Some((reply, Ok(ready)));
            }
        }
        if deadline <= now {
            return Some((reply, Err(timeout(want, ready))));
        }
        if self.waiters.len() >= MAX_READY_WAITERS {
            return Some((reply, Err(GroupError::Busy)));
        }
        self.waiters.push(Waiter { want, deadline, reply });
        None
    }

    /// A peer became ready; `ready` peers are ready now.
    pub fn on_ready(&mut self, ready: usize) -> Vec<Answer<W>> {
        self.take(|w| match w.want {
            Want::AtLeast(min) => ready >= min,
            Want::NextReady => true,
        })
        .into_iter()
        .map(|w| (w.reply, Ok(ready)))
        .collect()
    }

    /// Fails the callers whose deadline passed.
    pub fn expire(&mut self, now: Instant, ready: usize) -> Vec<Answer<W>> {
        self.take(|w| w.deadline <= now).into_iter().map(|w| (w.reply, Err(timeout(w.want, ready)))).collect()
    }

    /// The group is closing: every caller gets `Closed`.
    pub fn close(&mut self) -> Vec<Answer<W>> {
        self.waiters.drain(..).map(|w| (w.reply, Err(GroupError::Closed))).collect()
    }

    fn take(&mut self, due: impl Fn(&Waiter<W>) -> bool) -> Vec<Waiter<W>> {
        if !self.waiters.iter().any(&due) {
            return Vec::new();
        }
        let (done, waiting): (Vec<_>, Vec<_>) = self.waiters.drain(..).partition(due);
        self.waiters = waiting;
        done
    }
}

fn timeout(want: Want, ready: usize) -> GroupError {
    let min = match want {
        Want::AtLeast(min) => min,
        Want::NextReady => ready.saturating_add(1),
    };
    GroupError::Timeout { ready, min }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn satisfied_callers_are_answered_at_once() {
        let t0 = Instant::now();
        let mut w = ReadyWaiters::<u32>::default();
        assert_eq!(w.wait(Want::AtLeast(1), t0 + secs(5), 1, 2, t0), Some((1, Ok(2))));
        assert_eq!(w.wait(Want::AtLeast(0), t0, 2, 0, t0), Some((2, Ok(0))));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn callers_are_answered_when_enough_peers_are_ready() {
        let t0 = Instant::now();
        let mut w = ReadyWaiters::<u32>::default();
        assert_eq!(w.wait(Want::AtLeast(2), t0 + secs(5), 1, 0, t0), None);
        assert_eq!(w.wait(Want::NextReady, t0 + secs(5), 2, 0, t0), None);
        assert_eq!(w.on_ready(1), vec![(2, Ok(1))]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.on_ready(2), vec![(1, Ok(2))]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn each_caller_times_out_at_its_own_deadline() {
        let t0 = Instant::now();
        let mut w = ReadyWaiters::<u32>::default();
        w.wait(Want::AtLeast(3), t0 + secs(1), 1, 0, t0);
        w.wait(Want::NextReady, t0 + secs(10), 2, 0, t0);
        assert!(w.expire(t0, 0).is_empty());
        assert_eq!(w.expire(t0 + secs(1), 1), vec![(1, Err(GroupError::Timeout { ready: 1, min: 3 }))]);
        assert_eq!(w.expire(t0 + secs(10), 1), vec![(2, Err(GroupError::Timeout { ready: 1, min: 2 }))]);
        // A deadline already past answers at once.
        assert_eq!(
            w.wait(Want::AtLeast(1), t0, 3, 0, t0 + secs(1)),
            Some((3, Err(GroupError::Timeout { ready: 0, min: 1 })))
        );
    }

    #[test]
    fn waiters_are_bounded_and_closing_answers_everyone() {
        let t0 = Instant::now();
        let mut w = ReadyWaiters::<usize>::default();
        for i in 0..MAX_READY_WAITERS {
            assert_eq!(w.wait(Want::AtLeast(1), t0 + secs(5), i, 0, t0), None);
        }
        assert_eq!(w.wait(Want::AtLeast(1), t0 + secs(5), 9999, 0, t0), Some((9999, Err(GroupError::Busy))));
        let closed = w.close();
        assert_eq!(closed.len(), MAX_READY_WAITERS);
        assert!(closed.iter().all(|(_, r)| *r == Err(GroupError::Closed)));
        assert_eq!(w.len(), 0);
    }
}
