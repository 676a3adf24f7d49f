//! The notification types (one per kind in the table in `events/mod.rs`).

use std::sync::Arc;

use actix::Message as ActixMessage;
use bitcoin::{Block, Transaction};

use crate::peer::{Ban, DisconnectReason, PeerAddr, PeerId, PeerInfo, PeerState};
use crate::wire::{AddrV2Message, Inventory, Message};

macro_rules! notification {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, ActixMessage)]
        #[rtype(result = "()")]
        pub struct $name {
            /// Which connection.
            pub peer: PeerId,
            /// The peer's address.
            pub addr: PeerAddr,
            $($(#[$fdoc])* pub $field: $ty,)*
        }
    };
}

notification!(
    /// The connection changed state.
    PeerStateChanged { /// The new state.
        state: PeerState });
notification!(
    /// The handshake completed.
    PeerReady { /// What the peer told us, and what was negotiated.
        info: Arc<PeerInfo> });
notification!(
    /// The connection ended (the last notification of a peer).
    PeerDisconnected { /// Why.
        reason: DisconnectReason });
notification!(
    /// An `inv` arrived.
    InvReceived { /// The announced items.
        items: Arc<Vec<Inventory>> });
notification!(
    /// A `getdata` arrived (the peer asks for items we announced).
    GetDataReceived { /// The requested items.
        items: Arc<Vec<Inventory>> });
notification!(
    /// A `tx` arrived. From a `PeerGroup`: once per transaction — the group requests each
    /// announced transaction from one peer at a time (Core's `TxRequestTracker`) and delivers the
    /// first copy itself; `peer`/`addr` name the peer that delivered it, and copies of
    /// transactions received recently (the last 48,000 hashes) are not delivered again. From a
    /// standalone `PeerActor`: every `tx` it receives.
    TxReceived { /// The transaction.
        tx: Arc<Transaction> });
notification!(
    /// An `addr` or `addrv2` arrived (v1 entries converted to the BIP155 form; Tor v3, I2P
    /// and CJDNS entries are kept).
    AddrReceived { /// The addresses.
        addrs: Arc<Vec<AddrV2Message>>, /// True if it came as `addrv2`.
        v2: bool });
notification!(
    /// A `headers` message arrived that the peer sent on its own: an announcement (BIP130), or
    /// headers that answer none of our requests. A `headers` that answers a request made with
    /// `Fetch` (group or peer) goes to the requester only, never here, so a subscriber that also
    /// fetches does not count the same headers twice. [`MessageReceived`] still sees every one.
    HeadersReceived { /// The headers, in the order received.
        headers: Arc<Vec<bitcoin::block::Header>> });
notification!(
    /// A `block` arrived that the peer sent on its own (unsolicited, e.g. a new block announced
    /// by sending it). A block that answers a `Fetch` request goes to the requester only, never
    /// here. [`MessageReceived`] still sees every one.
    BlockReceived { /// The block.
        block: Arc<Block> });
notification!(
    /// Any message at all, handshake and control traffic included (btcd's `OnRead`).
    MessageReceived { /// The message.
        message: Arc<Message> });
notification!(
    /// A message was handed to the peer's writer, in send order (btcd's `OnWrite`; the
    /// write itself follows unless the connection fails first). Subscribe with
    /// `Subscription::Sent` for command and length, `Subscription::SentWithMessage` for the
    /// message too.
    MessageSent { /// Command name as counted in statistics (`*other*` for unknown ones).
        command: &'static str, /// Bytes on the wire (v1 header and payload).
        wire_len: usize, /// The message, for `SentWithMessage` subscribers; `None` otherwise.
        message: Option<Arc<Message>> });

/// An address was banned (a group notification).
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "()")]
pub struct AddressBanned {
    /// The ban.
    pub ban: Ban,
}

/// A ban ended (a group notification).
#[derive(Debug, Clone, ActixMessage)]
#[rtype(result = "()")]
pub struct AddressUnbanned {
    /// The ban that ended.
    pub ban: Ban,
    /// True if it expired; false if it was lifted.
    pub expired: bool,
}
