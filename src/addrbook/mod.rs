//! The address book: every address we have heard of, bucketed by network group after Bitcoin
//! Core's addrman so that no single peer or operator can fill it (pure, crate-private), and the
//! network groups it buckets by. A group saves it to disk atomically, with a backup. Its sizing
//! is [`AddrBookConfig`].

pub(crate) mod book;
pub(crate) mod netgroup;

pub use book::AddrBookConfig;
pub(crate) use book::{AddrBook, Snapshot};
