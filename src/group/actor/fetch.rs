//! The group's `Fetch`: route a request to a ready peer and retry elsewhere (decisions in
//! [`requests`](crate::group::requests)).

use actix::prelude::*;

use super::PeerGroup;
use crate::group::messages::{Fetch, Fetched};
use crate::group::requests::{after_failure, choose_peer, is_free_failure, max_picks, Candidate, Next};
use crate::peer::messages::Fetch as PeerFetch;
use crate::peer::requests::{Request, RequestError};
use crate::peer::{DisconnectReason, PeerActor, PeerId};

/// Internal: pick a peer for a request, excluding those already tried.
#[derive(Message)]
#[rtype(result = "Option<(PeerId, Addr<PeerActor>)>")]
pub(super) struct PickPeer {
    request: Request,
    tried: Vec<PeerId>,
    preferred: Option<PeerId>,
}

impl Handler<PickPeer> for PeerGroup {
    type Result = Option<(PeerId, Addr<PeerActor>)>;

    fn handle(&mut self, msg: PickPeer, _: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return None;
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
        let id = choose_peer(&msg.request, &candidates, &msg.tried, msg.preferred, &mut self.rng)?;
        self.peers.get(&id).map(|e| (id, e.actor.clone()))
    }
}

impl Handler<Fetch> for PeerGroup {
    type Result = ResponseFuture<Result<Fetched, RequestError>>;

    fn handle(&mut self, msg: Fetch, ctx: &mut Context<Self>) -> Self::Result {
        let group = ctx.address();
        let max_attempts = self.config.max_request_attempts;
        Box::pin(async move {
            let mut tried = msg.exclude.clone();
            let excluded = tried.len();
            let mut attempts = 0u32;
            let mut last: Option<RequestError> = None;
            loop {
                let pick =
                    PickPeer { request: msg.request.clone(), tried: tried.clone(), preferred: msg.preferred };
                let picked = group.send(pick).await.ok().flatten();
                // Excluded peers are never retried, not even as the fallback.
                let picked = picked.filter(|(id, _)| !tried[..excluded].contains(id));
                let picked = picked.filter(|_| tried.len() - excluded < max_picks(max_attempts));
                let Some((peer, actor)) = picked else {
                    return Err(match last {
                        Some(last) if attempts > 0 => {
                            RequestError::RetriesExhausted { attempts, last: Box::new(last) }
                        }
                        _ => RequestError::NoPeers,
                    });
                };
                tried.push(peer);
                let result = actor.send(PeerFetch(msg.request.clone())).await.unwrap_or_else(|_| {
                    Err(RequestError::Disconnected { reason: DisconnectReason::Io { error: "peer actor stopped".into() } })
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
