//! Chain sync: [`ChainSync`] follows the best header chain through a [`PeerGroup`] (its
//! decisions are pure and crate-private), keeps it in `headers.dat`, and publishes
//! [`ChainEvent`]s; with `fetch_blocks` it also delivers every block of the best chain in
//! order, across restarts and reorgs (see [`ChainEvent::Block`],
//! [`ChainEvent::BlockDisconnected`] and `examples/indexer.rs`). [`block_stream`] downloads a
//! range of blocks in parallel and yields them in order; [`header_stream`] pages through the
//! stored chain and then follows it live.

pub(crate) mod actor;
mod cursor;
pub(crate) mod events;
pub(crate) mod machine;
pub(crate) mod proxy;

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use bitcoin::block::Header;
use bitcoin::{Block, BlockHash};
use futures_util::stream::{self, Stream, StreamExt};

pub use actor::{
    ChainEvent, ChainStatus, ChainSync, ChainSyncConfig, GetChainStatus, GetHeadersAfter, StopChainSync,
    SubscribeChain,
};
pub use machine::SyncConfig;

use crate::group::{Fetch, PeerGroup};
use crate::peer::requests::{InvalidData, ItemHash, Request, RequestError, Response};

/// Downloads `hashes` with up to `window` requests at once, spread over the group's peers
/// (each peer also keeps at most 16 in flight), and yields the blocks in the order given. A
/// block that stalls or is refused is retried on another peer by the group; one that fails
/// every attempt yields its error in its place.
///
/// ```no_run
/// # async fn demo(group: actix::Addr<btcpeer::group::PeerGroup>, hashes: Vec<bitcoin::BlockHash>) {
/// use futures_util::StreamExt;
/// let mut blocks = btcpeer::sync::block_stream(group, hashes, 32);
/// while let Some(block) = blocks.next().await {
///     println!("{:?}", block.map(|b| b.block_hash()));
/// }
/// # }
/// ```
pub fn block_stream(
    group: Addr<PeerGroup>,
    hashes: Vec<BlockHash>,
    window: usize,
) -> impl Stream<Item = Result<Arc<Block>, RequestError>> {
    stream::iter(hashes)
        .map(move |hash| {
            let group = group.clone();
            async move {
                match group.send(Fetch::new(Request::Blocks { hashes: vec![hash] })).await {
                    Ok(Ok(f)) => match f.response {
                        Response::Blocks(mut b) => {
                            b.pop().ok_or(RequestError::NotFound { hash: ItemHash::Block(hash) })
                        }
                        _ => Err(RequestError::Invalid(InvalidData::UnexpectedResponse)),
                    },
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(RequestError::Group(crate::group::GroupError::Closed)),
                }
            }
        })
        .buffered(window.max(1))
}

/// Wakes a header stream when the chain changes.
struct Waker(tokio::sync::mpsc::Sender<()>);

impl Actor for Waker {
    type Context = Context<Self>;
}

impl Handler<ChainEvent> for Waker {
    type Result = ();
    fn handle(&mut self, m: ChainEvent, ctx: &mut Context<Self>) {
        if matches!(m, ChainEvent::Headers { .. }) && self.0.try_send(()).is_err() && self.0.is_closed() {
            ctx.stop();
        }
    }
}

/// Headers of the best chain after `locator` (empty: from genesis), in order, then new ones
/// as the chain grows. After a reorg the stream continues from the fork point, so a consumer
/// sees the new branch's headers (compare `prev_blockhash` to notice the switch).
pub fn header_stream(sync: Addr<ChainSync>, locator: Vec<BlockHash>) -> impl Stream<Item = Header> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let waker = Waker(tx).start();
    sync.do_send(SubscribeChain(waker.recipient()));
    let state = (sync, locator, VecDeque::<Header>::new(), rx);
    stream::unfold(state, |(sync, mut locator, mut buffer, mut rx)| async move {
        loop {
            if let Some(h) = buffer.pop_front() {
                locator.insert(0, h.block_hash());
                locator.truncate(10);
                return Some((h, (sync, locator, buffer, rx)));
            }
            let page = sync.send(GetHeadersAfter { locator: locator.clone(), max: 2_000 }).await.ok()?;
            if page.is_empty() {
                rx.recv().await?;
            }
            buffer.extend(page);
        }
    })
}
