//! The group's saved state: the address book and the ban list in the data directory, each
//! written atomically with a backup and read back with repair ([`crate::persist`]).

use std::path::Path;
use std::sync::Mutex;

use rand::Rng;
use tracing::{error, info, warn};

use super::bans::{BanList, BanSnapshot};
use super::config::GroupConfig;
use crate::addrbook::{AddrBook, Snapshot};
use crate::persist;

/// File names in the data directory.
pub const ADDRBOOK_FILE: &str = "addrbook.json";
/// Ban list file name.
pub const BANS_FILE: &str = "bans.json";

/// What is saved, taken from the live state so writing can happen off the actor's thread.
pub(crate) struct SavedState {
    /// The address book.
    pub book: Snapshot,
    /// The bans.
    pub bans: BanSnapshot,
}

/// Loads the address book and bans from `config.data_dir` (a fresh state when there is none).
/// Problems are logged and the backup or an empty state is used: a damaged file never stops
/// the group.
pub(crate) fn load(config: &GroupConfig, rng: &mut impl Rng, unix: u64) -> (AddrBook, BanList) {
    let fresh_book = |rng: &mut dyn rand::RngCore| AddrBook::new(config.addrbook.clone(), rng.gen());
    let Some(dir) = &config.data_dir else { return (fresh_book(rng), BanList::new()) };
    let loaded = persist::load_json(&dir.join(ADDRBOOK_FILE));
    for p in &loaded.problems {
        warn!(problem = %p, "address book");
    }
    let book = match loaded.value {
        Some(snapshot) => match AddrBook::restore(config.addrbook.clone(), snapshot, unix) {
            Ok((book, report)) => {
                if !report.is_clean() {
                    warn!(%report, "address book repaired while loading");
                }
                book
            }
            Err(e) => {
                warn!(error = %e, "address book rejected; starting empty");
                fresh_book(rng)
            }
        },
        None => fresh_book(rng),
    };
    let loaded = persist::load_json::<BanSnapshot>(&dir.join(BANS_FILE));
    for p in &loaded.problems {
        warn!(problem = %p, "ban list");
    }
    let bans = match loaded.value {
        Some(snapshot) => {
            let (bans, problems) = BanList::restore(snapshot, unix);
            for p in problems {
                warn!(problem = %p, "ban list");
            }
            bans
        }
        None => BanList::new(),
    };
    info!(addresses = book.len(), bans = bans.len(), dir = %dir.display(), "loaded saved state");
    (book, bans)
}

/// Writes both files into `dir` (created if missing), holding `lock` so two saves never
/// interleave. Blocking: the group runs it on a blocking thread except at shutdown.
pub(crate) fn save(dir: &Path, state: &SavedState, lock: &Mutex<()>) {
    let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = std::fs::create_dir_all(dir) {
        error!(dir = %dir.display(), error = %e, "cannot create data directory");
        return;
    }
    if let Err(e) = persist::save_json(&dir.join(ADDRBOOK_FILE), &state.book) {
        error!(error = %e, "cannot save the address book");
    }
    if let Err(e) = persist::save_json(&dir.join(BANS_FILE), &state.bans) {
        error!(error = %e, "cannot save the ban list");
    }
}
