//! The crate-level error, aggregating the errors of each module boundary.

/// Any error btcpeer returns from its public entry points.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Dialing a peer failed.
    #[error(transparent)]
    Dial(#[from] crate::peer::dial::DialError),
    /// Sending to a peer failed.
    #[error(transparent)]
    Send(#[from] crate::peer::outbound::SendError),
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
