//! The group's `Fetch`: route a request to a ready peer, wait for one when none can serve it
//! yet, and retry elsewhere (decisions in [`requests`](crate::group::requests) and
//! [`waiters`](crate::group::waiters)).

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{PeerGroup, LONGEST_WAIT};
use crate::group::messages::{Fetch, Fetched, GroupError};
use crate::group::requests::{after_failure, choose_peer, is_free_failure, max_picks, Candidate, Next};
use crate::group::waiters::Want;
use crate::peer::messages::FetchFromPeer;
use crate::peer::requests::{Request, RequestError};
use crate::peer::{DisconnectReason, PeerActor, PeerId};

/// Internal: pick a peer for a request, excluding those already tried.
#[derive(Message)]
#[rtype(result = "Pick")]
pub(super) struct PickPeer {
    request: Request,
    tried: Vec<PeerId>,
    /// The first `excluded` of `tried` were excluded by the caller: never picked.
    excluded: usize,
    preferred: Option<PeerId>,
    /// How long to wait for a new ready peer if none can serve the request now.
    wait: Duration,
}

/// Internal: what [`PickPeer`] found.
pub(super) enum Pick {
    /// Ask this peer.
    Peer(PeerId, Addr<PeerActor>),
    /// None now: pick again once this answers `Ok` (a peer became ready).
    Wait(oneshot::Receiver<Result<usize, GroupError>>),
    /// None, and no waiting.
    None,
}

impl Handler<PickPeer> for PeerGroup {
    type Result = MessageResult<PickPeer>;

    fn handle(&mut self, msg: PickPeer, ctx: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return MessageResult(Pick::None);
        }
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .filter(|(_, e)| e.ready)
            .filter_map(|(id, e)| {
                let info = e.info.as_ref()?;
                Some(Candidate { id: *id, services: info.services, start_height: info.start_height })
            })
            .collect();
        let id = choose_peer(&msg.request, &candidates, &msg.tried, msg.preferred, &mut self.rng);
        // Excluded peers are never retried, not even as the fallback.
        let excluded = &msg.tried[..msg.excluded.min(msg.tried.len())];
        let found =
            id.filter(|id| !excluded.contains(id)).and_then(|id| self.peers.get(&id).map(|e| (id, e)));
        MessageResult(match found {
            Some((id, e)) => Pick::Peer(id, e.actor.clone()),
            None if !msg.wait.is_zero() => Pick::Wait(self.wait_for_ready(Want::NextReady, msg.wait, ctx)),
            None => Pick::None,
        })
    }
}

impl Handler<Fetch> for PeerGroup {
    type Result = ResponseFuture<Result<Fetched, RequestError>>;

    fn handle(&mut self, msg: Fetch, ctx: &mut Context<Self>) -> Self::Result {
        let wait = msg.wait.unwrap_or(self.config.fetch_wait);
        self.fetch(msg, wait, ctx)
    }
}

impl PeerGroup {
    fn fetch(
        &mut self,
        msg: Fetch,
        wait: Duration,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Fetched, RequestError>> {
        let group = ctx.address();
        let max_attempts = self.config.max_request_attempts;
        let deadline = Instant::now() + wait.min(LONGEST_WAIT);
        Box::pin(async move {
            let mut tried = msg.exclude.clone();
            let excluded = tried.len();
            let mut attempts = 0u32;
            let mut last: Option<RequestError> = None;
            let give_up = |attempts: u32, last: Option<RequestError>| match last {
                Some(last) if attempts > 0 => {
                    RequestError::RetriesExhausted { attempts, last: Box::new(last) }
                }
                _ => RequestError::Group(GroupError::NoPeers),
            };
            loop {
                if tried.len() - excluded >= max_picks(max_attempts) {
                    return Err(give_up(attempts, last));
                }
                // Only a request that has not failed yet waits for a peer: retries go to the
                // peers there are.
                let wait = if last.is_none() {
                    deadline.saturating_duration_since(Instant::now())
                } else {
                    Duration::ZERO
                };
                let pick = PickPeer {
                    request: msg.request.clone(),
                    tried: tried.clone(),
                    excluded,
                    preferred: msg.preferred,
                    wait,
                };
                let (peer, actor) = match group.send(pick).await {
                    Ok(Pick::Peer(peer, actor)) => (peer, actor),
                    Ok(Pick::Wait(ready)) => match ready.await {
                        Ok(Ok(_)) => continue,
                        _ => return Err(give_up(attempts, last)),
                    },
                    Ok(Pick::None) | Err(_) => return Err(give_up(attempts, last)),
                };
                tried.push(peer);
                let result = actor.send(FetchFromPeer(msg.request.clone())).await.unwrap_or_else(|_| {
                    Err(RequestError::Disconnected {
                        reason: DisconnectReason::Io { error: "peer actor stopped".into() },
                    })
                });
                let error = match result {
                    Ok(response) => return Ok(Fetched { peer, response, attempts: attempts + 1 }),
                    Err(e) => e,
                };
                if !is_free_failure(&error) {
                    attempts += 1;
                }
                tracing::debug!(%peer, %error, attempts, "request failed");
                match after_failure(max_attempts, attempts, error.clone()) {
                    Next::Retry => last = Some(error),
                    Next::Fail(e) => return Err(e),
                }
            }
        })
    }
}
