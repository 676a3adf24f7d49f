//! The crate-level error, aggregating the errors of each module boundary.

/// Any error btcpeer returns from its public entry points. Each module's own error converts
/// into it, and so does actix's `MailboxError` (the actor you sent to has stopped), so an
/// application can use `?` on `group.send(msg).await??`:
///
/// ```no_run
/// # async fn demo(group: actix::Addr<btcpeer::group::PeerGroup>) -> Result<(), btcpeer::Error> {
/// use std::time::Duration;
/// use btcpeer::group::WaitForPeers;
/// let ready = group.send(WaitForPeers { min: 1, timeout: Duration::from_secs(30) }).await??;
/// println!("{ready} peers ready");
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Dialing a peer failed.
    #[error(transparent)]
    Dial(#[from] crate::peer::DialError),
    /// Sending to a peer failed.
    #[error(transparent)]
    Send(#[from] crate::peer::SendError),
    /// A request for headers, blocks or transactions failed.
    #[error(transparent)]
    Request(#[from] crate::peer::requests::RequestError),
    /// A group operation failed.
    #[error(transparent)]
    Group(#[from] crate::group::GroupError),
    /// A transaction broadcast failed.
    #[error(transparent)]
    Broadcast(#[from] crate::group::BroadcastError),
    /// A DNS seed query failed.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// The header chain file could not be used.
    #[error(transparent)]
    Store(#[from] crate::chain::StoreError),
    /// A peer address did not parse.
    #[error(transparent)]
    Address(#[from] crate::peer::AddrParseError),
    /// An I/O error outside any more specific context.
    #[error(transparent)]
    Os(#[from] std::io::Error),
    /// The actor a message was sent to has stopped (or its mailbox closed).
    #[error("actor stopped: {0}")]
    Stopped(#[from] actix::MailboxError),
    /// Framing or decoding failed.
    #[error(transparent)]
    Codec(#[from] crate::wire::CodecError),
    /// An I/O operation of our own (listener, event log) failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}
