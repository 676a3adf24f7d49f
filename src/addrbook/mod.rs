//! The address book: every address we have heard of, bucketed by network group after Bitcoin
//! Core's addrman so that no single peer or operator can fill it ([`book`], pure), and the
//! network groups it buckets by ([`mod@netgroup`]). Saving it to disk is [`crate::persist`]'s job,
//! through [`AddrBook::snapshot`] and [`AddrBook::restore`].

pub mod book;
pub mod netgroup;

pub use book::{
    AddrBook, AddrBookConfig, AddrInfo, LoadReport, Snapshot, SnapshotEntry, SnapshotError, Table,
};
pub use netgroup::{netgroup, NetGroup};
