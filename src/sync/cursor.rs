//! `<data_dir>/blocks.json`: the last block delivered to consumers (`fetch_blocks`), saved
//! crash-safely with a backup by [`crate::persist`], so a restart resumes after it.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::machine::blocks::Cursor;
use crate::persist::{load_json, save_json};

/// The cursor file's name, next to `headers.dat`.
pub(crate) const FILE_NAME: &str = "blocks.json";

/// The cursor file in `data_dir`.
pub(crate) fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The saved cursor, if any; a damaged file is logged and its backup used.
pub(crate) fn load(path: &Path) -> Option<Cursor> {
    let loaded = load_json::<Cursor>(path);
    for problem in &loaded.problems {
        warn!(%problem, "block cursor");
    }
    loaded.value
}

/// Saves the cursor; a failure is logged (the previous file stays, so a restart delivers some
/// blocks again rather than skipping any).
pub(crate) fn save(path: &Path, cursor: &Cursor) {
    if let Err(e) = save_json(path, cursor) {
        warn!(error = %e, "saving the block cursor failed");
    }
}
