//! Keeping peers connected: `PeerGroup` dials the configured peers, redials them with jittered
//! backoff when they drop (forever: configured peers are never given up), accepts inbound peers
//! on its listeners up to a limit, and hands every peer the group's subscribers.

pub mod actor;
pub mod backoff;

pub use actor::{GetListenAddrs, GetPeers, GroupConfig, PeerGroup, Shutdown, Subscribe};
