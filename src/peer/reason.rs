//! Why a connection ended. Reasons are not errors: the group reads [`DisconnectReason::kind`] to
//! decide between retrying with backoff, banning, or doing nothing.

use std::time::Duration;

use serde::Serialize;

/// Why a peer connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Our side asked for it (API call).
    #[error("disconnect requested")]
    Requested,
    /// The process is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// An inbound peer made room for a newcomer (inbound slots full).
    #[error("evicted to make room for another inbound peer")]
    Evicted,
    /// The address was banned (by the API or for misbehaviour on another connection).
    #[error("address banned")]
    Banned,
    /// Dialing failed (refused, unreachable, timeout, proxy error).
    #[error("connect failed: {error}")]
    ConnectFailed {
        /// What failed.
        error: String,
    },
    /// The remote closed the connection.
    #[error("connection closed by peer")]
    ClosedByPeer,
    /// Reading or writing the socket failed.
    #[error("i/o error: {error}")]
    Io {
        /// The OS error.
        error: String,
    },
    /// version/verack did not complete in time.
    #[error("handshake timed out after {secs}s", secs = after.as_secs())]
    HandshakeTimeout {
        /// The configured limit.
        after: Duration,
    },
    /// Our ping stayed unanswered too long.
    #[error("ping unanswered for {secs}s", secs = after.as_secs())]
    PingTimeout {
        /// The configured limit.
        after: Duration,
    },
    /// Nothing was received for too long.
    #[error("no data received for {secs}s", secs = after.as_secs())]
    InactivityTimeout {
        /// The configured limit.
        after: Duration,
    },
    /// Requests timed out repeatedly: the peer does not serve what we ask (Core drops stalling
    /// peers the same way).
    #[error("requests unanswered (last timeout {secs:.1}s)", secs = after.as_secs_f64())]
    Stalled {
        /// The last timeout that expired.
        after: Duration,
    },
    /// The peer does not read fast enough: our outbound byte budget is exhausted.
    #[error("send queue full ({queued} bytes queued)")]
    SendQueueFull {
        /// Bytes waiting when we gave up.
        queued: usize,
    },
    /// The peer speaks an older protocol than we accept.
    #[error("peer protocol version {version} is below the minimum {min}")]
    ObsoleteVersion {
        /// What the peer advertised, read as Core reads it: a signed 32-bit integer, so
        /// `0xffffffff` is −1 (`ProcessMessage`, VERSION: `int nVersion`).
        version: i32,
        /// Our minimum.
        min: u32,
    },
    /// An outbound peer lacks the service bits we require.
    #[error("peer services {offered:#x} lack required {required:#x}")]
    MissingServices {
        /// What the peer offers.
        offered: u64,
        /// What we require.
        required: u64,
    },
    /// The remote speaks another network (wrong magic). Core just closes such sockets; a Core
    /// node trying BIP324 first also looks like this, so it is not misbehaviour.
    #[error("peer is on another network (wrong magic)")]
    WrongNetwork,
    /// The BIP324 v2 transport failed (no terminator, bad tag, oversize packet, truncated
    /// handshake). Core just closes such sockets (`net.cpp` `V2Transport::ReceivedBytes`
    /// returning false): never a ban by itself.
    #[error("v2 transport: {0}")]
    V2Transport(super::transport::V2Error),
    /// The remote is this process (its `version` nonce is one of ours).
    #[error("connected to self")]
    SelfConnection,
    /// The peer broke the protocol.
    #[error("misbehaving: {0}")]
    Misbehaving(Misbehavior),
}

/// Protocol violations. Whether one costs a ban or only the connection is decided by
/// [`Misbehavior::core_rule`], the table of what Bitcoin Core does for each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "violation", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Misbehavior {
    /// Frame longer than the protocol allows.
    #[error("{command} message of {len} bytes exceeds the limit")]
    Oversized {
        /// Command.
        command: String,
        /// Announced length.
        len: usize,
    },
    /// A list message with more entries than Core allows.
    #[error("{command} with {count} entries exceeds {max}")]
    TooManyEntries {
        /// Command.
        command: String,
        /// Entries received.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A pre-verack negotiation message after verack.
    #[error("{command} after verack")]
    NegotiationAfterVerack {
        /// Command.
        command: String,
    },
    /// Headers not chained or failing proof of work, a block not matching its header, or other
    /// data that cannot be right.
    #[error("invalid data: {reason}")]
    InvalidData {
        /// What was wrong.
        reason: String,
    },
    /// A `block` that fails the checks every block passes (proof of work against its own bits
    /// and the network's limit, merkle root, witness commitment, duplicate transactions,
    /// coinbase first): a mutated or invalid block.
    #[error("invalid block: {reason}")]
    InvalidBlock {
        /// What was wrong.
        reason: String,
    },
    /// A BIP37 bloom-filter message (or BIP35 `mempool`) while we do not offer NODE_BLOOM;
    /// Core disconnects for this too.
    #[error("{command} without NODE_BLOOM")]
    BloomNotOffered {
        /// Command.
        command: String,
    },
    /// A `getheaders`/`getblocks` whose locator has more than 101 hashes (`MAX_LOCATOR_SZ`).
    #[error("{command} locator of {count} hashes exceeds {max}")]
    LocatorTooLong {
        /// Command.
        command: String,
        /// Hashes in the locator.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// What Bitcoin Core does about a protocol violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoreReaction {
    /// `Misbehaving(peer, ..)`: disconnect and discourage the address (our ban).
    Discourage,
    /// `pfrom.fDisconnect = true` (or the transport failing): the connection ends, no ban.
    Disconnect,
    /// The message is dropped and the connection kept.
    Ignore,
}

/// One row of the table: Core's reaction and where it lives in Core's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CoreRule {
    /// What Core does.
    pub reaction: CoreReaction,
    /// Core file and function (the command branch of `ProcessMessage` where it applies).
    pub source: &'static str,
}

impl Misbehavior {
    /// THE table: for each violation, what Bitcoin Core does and where. A ban is only for what
    /// Core discourages; everything else ends the connection without one.
    pub fn core_rule(&self) -> CoreRule {
        use CoreReaction::*;
        let (reaction, source) = match self {
            Misbehavior::Oversized { .. } => (
                Disconnect,
                "net.cpp V1Transport::readHeader: length > MAX_PROTOCOL_MESSAGE_LENGTH, \"Header error: Size too large\"",
            ),
            // inv, getdata: ProcessMessage INV/GETDATA `vInv.size() > MAX_INV_SZ`; addr/addrv2:
            // ADDR `vAddr.size() > MAX_ADDR_TO_SEND`; headers: HEADERS `nCount > max_headers_result`.
            Misbehavior::TooManyEntries { .. } => {
                (Discourage, "net_processing.cpp ProcessMessage INV/GETDATA/ADDR/HEADERS: Misbehaving")
            }
            Misbehavior::NegotiationAfterVerack { .. } => (
                Disconnect,
                "net_processing.cpp ProcessMessage WTXIDRELAY/SENDADDRV2: fSuccessfullyConnected, fDisconnect",
            ),
            Misbehavior::InvalidData { .. } => (
                Discourage,
                "net_processing.cpp ProcessHeadersMessage (non-continuous, CheckHeadersPoW), BLOCK IsBlockMutated: Misbehaving",
            ),
            Misbehavior::InvalidBlock { .. } => (
                Discourage,
                "net_processing.cpp ProcessMessage BLOCK: IsBlockMutated → Misbehaving(\"mutated block\"); ProcessNewBlock CheckBlock (high-hash) → BlockChecked → MaybePunishNodeForBlock: Misbehaving",
            ),
            Misbehavior::BloomNotOffered { .. } => (
                Disconnect,
                "net_processing.cpp ProcessMessage FILTERLOAD/FILTERADD/FILTERCLEAR/MEMPOOL without NODE_BLOOM: fDisconnect",
            ),
            Misbehavior::LocatorTooLong { .. } => (
                Disconnect,
                "net_processing.cpp ProcessMessage GETBLOCKS/GETHEADERS: vHave.size() > MAX_LOCATOR_SZ, fDisconnect",
            ),
        };
        CoreRule { reaction, source }
    }
}

/// How the group should treat a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// We ended it; nothing to do.
    Local,
    /// The network or the peer's availability failed: retry with backoff, never ban.
    Network,
    /// The peer is fine but not for us (old version, missing services, ourselves), or broke a
    /// rule Core only disconnects for (no ban).
    Incompatible,
    /// The peer broke the protocol: ban.
    Misbehavior,
}

impl DisconnectReason {
    /// The category the group acts on.
    pub fn kind(&self) -> ReasonKind {
        use DisconnectReason::*;
        match self {
            Requested | Shutdown | Evicted | Banned => ReasonKind::Local,
            ConnectFailed { .. }
            | ClosedByPeer
            | Io { .. }
            | HandshakeTimeout { .. }
            | PingTimeout { .. }
            | InactivityTimeout { .. }
            | SendQueueFull { .. }
            | Stalled { .. } => ReasonKind::Network,
            V2Transport(e) => match e {
                super::transport::V2Error::Truncated => ReasonKind::Network,
                _ => ReasonKind::Incompatible,
            },
            ObsoleteVersion { .. } | MissingServices { .. } | SelfConnection | WrongNetwork => {
                ReasonKind::Incompatible
            }
            // The table decides: only what Core discourages is a ban; a protocol error Core
            // just disconnects for is treated like an incompatible peer.
            Misbehaving(m) => match m.core_rule().reaction {
                CoreReaction::Discourage => ReasonKind::Misbehavior,
                CoreReaction::Disconnect | CoreReaction::Ignore => ReasonKind::Incompatible,
            },
        }
    }

    /// True when the peer broke the protocol.
    pub fn is_misbehavior(&self) -> bool {
        self.kind() == ReasonKind::Misbehavior
    }
}
