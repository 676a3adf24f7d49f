//! What each notification weighs in a subscriber's byte budget: its payload as held in memory
//! (shared payloads are charged in full to every budget they sit in, an upper bound).

use std::mem::size_of;

use bitcoin::{Block, Transaction};

use super::budget::Weight;
use super::notifications::*;
use crate::wire::{AddrV2Message, Inventory, Message};

fn tx_weight(tx: &Transaction) -> usize {
    // Inputs and outputs with their scripts and witnesses, without serializing.
    let inputs: usize =
        tx.input.iter().map(|i| size_of::<bitcoin::TxIn>() + i.script_sig.len() + i.witness.size()).sum();
    let outputs: usize = tx.output.iter().map(|o| size_of::<bitcoin::TxOut>() + o.script_pubkey.len()).sum();
    size_of::<Transaction>() + inputs + outputs
}

fn block_weight(block: &Block) -> usize {
    size_of::<Block>() + block.txdata.iter().map(tx_weight).sum::<usize>()
}

fn message_weight(message: &Message) -> usize {
    size_of::<Message>()
        + match message {
            Message::Inv(items) | Message::GetData(items) | Message::NotFound(items) => {
                items.len() * size_of::<Inventory>()
            }
            Message::Tx(tx) => tx_weight(tx),
            Message::Block(block) => block_weight(block),
            Message::Headers(headers) => headers.len() * size_of::<bitcoin::block::Header>(),
            Message::Addr(list) => list.len() * size_of::<(u32, bitcoin::p2p::Address)>(),
            Message::AddrV2(list) => list.len() * size_of::<AddrV2Message>(),
            _ => 0,
        }
}

/// Notifications without a payload: their own size. `peer` names the ones a peer publishes.
macro_rules! fixed {
    ($($ty:ty),*; peer: $($pty:ty),*) => {
        $(impl Weight for $ty {
            fn weight(&self) -> usize {
                size_of::<Self>()
            }
        })*
        $(impl Weight for $pty {
            fn weight(&self) -> usize {
                size_of::<Self>()
            }
            fn source(&self) -> Option<u64> {
                Some(self.peer.0)
            }
        })*
    };
}

fixed!(AddressBanned, AddressUnbanned; peer: PeerStateChanged, PeerReady, PeerDisconnected);

impl Weight for InvReceived {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.items.len() * size_of::<Inventory>()
    }
    fn source(&self) -> Option<u64> {
        Some(self.peer.0)
    }
}

impl Weight for GetDataReceived {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.items.len() * size_of::<Inventory>()
    }
    fn source(&self) -> Option<u64> {
        Some(self.peer.0)
    }
}

impl Weight for TxReceived {
    fn weight(&self) -> usize {
        size_of::<Self>() + tx_weight(&self.tx)
    }
    fn source(&self) -> Option<u64> {
        Some(self.peer.0)
    }
}

impl Weight for AddrReceived {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.addrs.len() * size_of::<AddrV2Message>()
    }
    fn source(&self) -> Option<u64> {
        Some(self.peer.0)
    }
}

impl Weight for HeadersReceived {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.headers.len() * size_of::<bitcoin::block::Header>()
    }
    fn source(&self) -> Option<u64> {
        Some(self.peer.0)
    }
}

impl Weight for BlockReceived {
    fn weight(&self) -> usize {
        size_of::<Self>() + block_weight(&self.block)
    }
    fn source(&self) -> Option<u64> {
        Some(self.peer.0)
    }
}

impl Weight for MessageSent {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.message.as_deref().map_or(0, message_weight)
    }
    fn source(&self) -> Option<u64> {
        Some(self.peer.0)
    }
}

impl Weight for MessageReceived {
    fn weight(&self) -> usize {
        size_of::<Self>() + message_weight(&self.message)
    }
    fn source(&self) -> Option<u64> {
        Some(self.peer.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bitcoin::hashes::Hash;

    use super::*;
    use crate::peer::{PeerAddr, PeerId};

    #[test]
    fn an_inv_weighs_its_entries() {
        let addr: PeerAddr = "127.0.0.1:18444".parse().unwrap();
        let inv = |n| InvReceived {
            peer: PeerId(1),
            addr: addr.clone(),
            items: Arc::new(vec![Inventory::Block(bitcoin::BlockHash::all_zeros()); n]),
        };
        assert_eq!(inv(50_000).weight() - inv(0).weight(), 50_000 * size_of::<Inventory>());
        assert!(inv(50_000).weight() > 1_800_000);
    }
}
