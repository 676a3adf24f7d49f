//! Saving and restoring an [`AddrBook`] as a serde value.
//!
//! Slot positions are not stored: they follow from the key, so a restored entry lands where it
//! was (same key and sizes) or is re-bucketed (changed sizes), and a snapshot cannot name a slot
//! at all, let alone an out-of-range one. Everything else is re-validated on load.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{clamp_time, AddrBook, AddrBookConfig, AddrInfo, Table};
use crate::addrbook::netgroup::{netgroup, NetGroup};
use crate::peer::PeerAddr;

/// The snapshot format this code writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A saved address book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version; only `SNAPSHOT_VERSION` loads.
    pub version: u32,
    /// The bucketing key, 64 hex digits.
    #[serde(with = "hex_key")]
    pub key: [u8; 32],
    /// Every address, tried table first.
    pub entries: Vec<SnapshotEntry>,
}

/// One saved address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
    pub addr: String,
    /// See [`AddrInfo::services`].
    pub services: u64,
    /// See [`AddrInfo::last_seen`].
    pub last_seen: u64,
    /// See [`AddrInfo::last_attempt`].
    #[serde(default)]
    pub last_attempt: u64,
    /// See [`AddrInfo::last_success`].
    #[serde(default)]
    pub last_success: u64,
    /// See [`AddrInfo::attempts`].
    #[serde(default)]
    pub attempts: u32,
    /// See [`AddrInfo::source_group`].
    pub source_group: NetGroup,
    /// The table it was in.
    pub table: Table,
}

/// A snapshot that cannot be loaded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Written by an incompatible version.
    #[error("address book snapshot version {found} is not supported (expected {expected})")]
    Version {
        /// The snapshot's version.
        found: u32,
        /// The version this code reads.
        expected: u32,
    },
}

/// What loading a snapshot kept and repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Entries now in the book.
    pub kept: usize,
    /// Entries dropped as unparsable or inadmissible (port 0, unusable, local when not accepted).
    pub invalid: usize,
    /// Entries dropped because their address was already loaded.
    pub duplicate: usize,
    /// Entries dropped because their slot was taken (smaller tables, or a tampered file).
    pub no_room: usize,
    /// Tried entries whose tried slot was taken, kept in the new table instead.
    pub demoted: usize,
}

impl LoadReport {
    /// Whether every entry was kept where it was.
    pub fn is_clean(&self) -> bool {
        self.invalid == 0 && self.duplicate == 0 && self.no_room == 0 && self.demoted == 0
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kept {} addresses; dropped {} invalid, {} duplicate, {} without room; {} moved from tried to new",
            self.kept, self.invalid, self.duplicate, self.no_room, self.demoted
        )
    }
}

impl AddrBook {
    /// The book as a serializable value (tried entries first, in slot order).
    pub fn snapshot(&self) -> Snapshot {
        let entries = self
            .tried_slots
            .iter()
            .chain(&self.new_slots)
            .flatten()
            .filter_map(|addr| self.entries.get(addr))
            .map(|e| SnapshotEntry {
                addr: e.addr.to_string(),
                services: e.services,
                last_seen: e.last_seen,
                last_attempt: e.last_attempt,
                last_success: e.last_success,
                attempts: e.attempts,
                source_group: e.source_group.clone(),
                table: e.table,
            })
            .collect();
        Snapshot { version: SNAPSHOT_VERSION, key: self.key, entries }
    }

    /// Rebuilds a book from `snapshot` with `config`'s sizes and policy. Rejects only a wrong
    /// version; anything else wrong with an entry (unparsable, inadmissible, duplicate, no room)
    /// drops or demotes that entry and is counted in the report. Times from the future are
    /// clamped. Never panics, whatever the snapshot holds.
    pub fn restore(
        config: AddrBookConfig,
        snapshot: Snapshot,
        now: u64,
    ) -> Result<(AddrBook, LoadReport), SnapshotError> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version { found: snapshot.version, expected: SNAPSHOT_VERSION });
        }
        let mut book = AddrBook::new(config, snapshot.key);
        let mut report = LoadReport::default();
        // Tried first, so that tried entries keep their table when the new table is full.
        let (tried, new): (Vec<_>, Vec<_>) =
            snapshot.entries.into_iter().partition(|e| e.table == Table::Tried);
        for entry in tried.into_iter().chain(new) {
            book.restore_entry(entry, now, &mut report);
        }
        report.kept = book.len();
        Ok((book, report))
    }

    fn restore_entry(&mut self, entry: SnapshotEntry, now: u64, report: &mut LoadReport) {
        let Some(addr) = PeerAddr::from_str(&entry.addr).ok().and_then(|a| self.admit(&a)) else {
            report.invalid += 1;
            return;
        };
        if self.entries.contains_key(&addr) {
            report.duplicate += 1;
            return;
        }
        let source_group =
            if entry.source_group.is_plausible() { entry.source_group } else { netgroup(&addr) };
        let last_success = entry.last_success.min(now);
        let info = AddrInfo {
            addr,
            services: entry.services,
            last_seen: clamp_time(entry.last_seen, now),
            last_attempt: entry.last_attempt.min(now),
            last_success,
            attempts: entry.attempts,
            source_group,
            table: Table::New,
            last_count_attempt: 0,
            slot: 0,
        };
        if entry.table == Table::Tried && last_success > 0 {
            let slot = self.tried_slot(&info.addr);
            if self.tried_slots[slot].is_none() {
                self.put(info, Table::Tried, slot);
                return;
            }
        }
        if entry.table == Table::Tried {
            report.demoted += 1;
        }
        let slot = self.new_slot(&info.addr, &info.source_group);
        // A seed's or configuration's address (its own group as source) may sit in another
        // slot of its bucket (see `add`); restore it the same way.
        let own_source = info.source_group == netgroup(&info.addr);
        if self.new_slots[slot].is_none() {
            self.put(info, Table::New, slot);
        } else if let Some(free) = own_source.then(|| self.free_in_bucket(slot)).flatten() {
            self.put(info, Table::New, free);
        } else {
            report.no_room += 1;
        }
    }
}

/// `[u8; 32]` as 64 lower-case hex digits.
mod hex_key {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut key = [0u8; 32];
        if text.len() != 64 {
            return Err(D::Error::custom("key must be 64 hex digits"));
        }
        for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
                _ => return Err(D::Error::custom("key must be 64 hex digits")),
            }
        }
        Ok(key)
    }
}
