//! Crash-safe JSON files for state that outlives the process (address book, bans, anchors).
//!
//! [`save_json`] never leaves `path` half-written, and keeps the previous version as
//! `path.bak`; [`load_json`] falls back to that backup and says why in plain words.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest file [`load_json`] reads (a full Core-sized address book is about 15 MB).
pub const MAX_FILE_SIZE: u64 = 64 << 20;

/// Saving a file failed; the previous version is intact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The value could not be turned into JSON.
    #[error("cannot serialize {}: {source}", path.display())]
    Serialize {
        /// The file we were saving.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// A file system operation failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file the operation was on.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// What [`load_json`] found.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The value, from `path` or else from `path.bak`; `None` when neither held one.
    pub value: Option<T>,
    /// What was wrong, one sentence each, naming the files (empty when `path` loaded, or when
    /// neither file exists: a first start is not a problem).
    pub problems: Vec<String>,
}

/// Writes `value` as JSON to `path`, keeping the previous file as `path.bak`.
///
/// Steps, and why a crash at any point leaves a complete file at `path`:
///
/// 1. Write `path.tmp` and fsync it. A crash here leaves a partial `.tmp`, which loading
///    ignores and the next save overwrites; `path` is untouched.
/// 2. Replace `path.bak` by a hard link to the current `path` (a copy where the file system has
///    no hard links). `path` is untouched; a crash mid-copy only spoils the backup.
/// 3. Rename `path.tmp` over `path`. Rename is atomic: `path` names the old complete file until
///    the instant it names the new complete (already fsynced) one.
/// 4. Fsync the directory so the rename itself survives a power loss.
///
/// So `path` is always complete, and `path.bak` is the previous complete version (unless a
/// crash or a disk error hit step 2). Callers must not save the same path concurrently.
pub fn save_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), PersistError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PersistError::Io { path: p, source }
    };
    let tmp = with_suffix(path, "tmp");
    let bak = with_suffix(path, "bak");

    // Straight into the file through a small buffer: a whole-file buffer (megabytes for a
    // full ban list, every few seconds) would stay resident in the allocator. A failure leaves
    // only the temporary file, which nothing reads.
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut out = io::BufWriter::new(file);
    serde_json::to_writer(&mut out, value).map_err(|source| match source.io_error_kind() {
        Some(kind) => io_err(&tmp)(io::Error::new(kind, source)),
        None => PersistError::Serialize { path: path.into(), source },
    })?;
    out.write_all(b"\n").map_err(io_err(&tmp))?;
    let file = out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);

    if path.exists() {
        match fs::remove_file(&bak) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&bak)(e)),
            _ => {}
        }
        if fs::hard_link(path, &bak).is_err() {
            fs::copy(path, &bak).map_err(io_err(&bak))?;
        }
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path).map_err(io_err(path))
}

/// Reads the JSON value saved by [`save_json`]: from `path`, else from `path.bak`, else none.
/// Never fails; [`Loaded::problems`] says what was skipped and why, ready to log.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Loaded<T> {
    let bak = with_suffix(path, "bak");
    let (p, b) = (path.display(), bak.display());
    let primary_problem = match read(path) {
        Ok(Some(value)) => return Loaded { value: Some(value), problems: Vec::new() },
        Ok(None) => None,
        // Move the bad file aside: the next save would otherwise make it the backup and
        // overwrite the good backup we are about to use. It stays for inspection.
        Err(why) => {
            let aside = with_suffix(path, "corrupt");
            match fs::rename(path, &aside) {
                Ok(()) => Some(format!("{why} (kept as {})", aside.display())),
                Err(_) => Some(why),
            }
        }
    };
    let (value, problems) = match (primary_problem, read(&bak)) {
        (None, Ok(None)) => (None, vec![]),
        (None, Ok(Some(v))) => (Some(v), vec![format!("{p}: missing; using {b} (a save was interrupted)")]),
        (None, Err(why_b)) => (None, vec![format!("{p}: missing; {b}: {why_b}")]),
        (Some(why), Ok(Some(v))) => (Some(v), vec![format!("{p}: {why}; using {b}")]),
        (Some(why), Ok(None)) => (None, vec![format!("{p}: {why}; no backup {b}")]),
        (Some(why), Err(why_b)) => {
            (None, vec![format!("{p}: {why}"), format!("{b}: {why_b}; no usable copy")])
        }
    };
    Loaded { value, problems }
}

/// The file's value, `None` if it does not exist, or what is wrong with it.
fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let too_large = || format!("larger than {MAX_FILE_SIZE} bytes");
    if file.metadata().is_ok_and(|m| m.len() > MAX_FILE_SIZE) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_large());
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax => format!("invalid JSON: {e}"),
        serde_json::error::Category::Eof => format!("truncated JSON: {e}"),
        serde_json::error::Category::Data => format!("unexpected content: {e}"),
        serde_json::error::Category::Io => format!("cannot read: {e}"),
    })
}

/// `path` with `.suffix` appended to its file name (`a/book.json` → `a/book.json.tmp`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes a rename in `path`'s directory durable.
#[cfg(unix)]
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn sync_dir(_path: &Path) -> io::Result<()> {
    Ok(()) // Directories cannot be opened for syncing here; rename is durable on NTFS.
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        name: String,
        count: u32,
    }

    fn state(count: u32) -> State {
        State { name: "bans".into(), count }
    }

    #[test]
    fn round_trip_keeps_previous_as_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        save_json(&path, &state(1)).expect("first save");
        assert!(!with_suffix(&path, "bak").exists(), "nothing to back up on the first save");
        save_json(&path, &state(2)).expect("second save");
        let loaded = load_json::<State>(&path);
        assert_eq!(loaded.value, Some(state(2)));
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let bak: State =
            serde_json::from_slice(&fs::read(with_suffix(&path, "bak")).expect("bak")).expect("bak is JSON");
        assert_eq!(bak, state(1));
        assert!(!with_suffix(&path, "tmp").exists());
    }

    #[test]
    fn missing_files_are_not_a_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = load_json::<State>(&dir.path().join("none.json"));
        assert!(loaded.value.is_none());
        assert!(loaded.problems.is_empty());
    }

    #[test]
    fn corrupt_primary_falls_back_to_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("addrbook.json");
        save_json(&path, &state(1)).expect("save");
        save_json(&path, &state(2)).expect("save");
        fs::write(&path, "{\n  \"name\": \"bans\",\n  \"count\": ]\n}").expect("corrupt");
        let loaded = load_json::<State>(&path);
        assert_eq!(loaded.value, Some(state(1)));
        assert_eq!(loaded.problems.len(), 1);
        let msg = &loaded.problems[0];
        assert!(msg.contains("addrbook.json: invalid JSON"), "{msg}");
        assert!(msg.contains("line 3 column"), "{msg}");
        assert!(msg.ends_with("addrbook.json.bak"), "{msg}");
        // The bad file is kept aside, and saving again does not turn it into the backup.
        assert!(dir.path().join("addrbook.json.corrupt").exists());
        save_json(&path, &state(3)).expect("save");
        assert_eq!(load_json::<State>(&path).value, Some(state(3)));
        assert_eq!(load_json::<State>(&with_suffix(&path, "bak")).value, Some(state(1)));
    }

    #[test]
    fn wrong_shape_and_truncation_are_described() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        fs::write(&path, "{\"name\": \"x\"}").expect("write");
        let loaded = load_json::<State>(&path);
        assert!(loaded.value.is_none());
        assert!(
            loaded.problems[0].contains("unexpected content: missing field `count`"),
            "{:?}",
            loaded.problems
        );
        fs::write(&path, "{\"name\": \"x\", \"cou").expect("write");
        let loaded = load_json::<State>(&path);
        assert!(loaded.problems[0].contains("truncated JSON"), "{:?}", loaded.problems);
        assert!(loaded.problems[0].contains("; no backup"), "{:?}", loaded.problems);
    }

    #[test]
    fn both_corrupt_gives_none_and_two_problems() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        fs::write(&path, "garbage").expect("write");
        fs::write(with_suffix(&path, "bak"), "").expect("write");
        let loaded = load_json::<State>(&path);
        assert!(loaded.value.is_none());
        assert_eq!(loaded.problems.len(), 2, "{:?}", loaded.problems);
        assert!(loaded.problems[0].contains("invalid JSON"));
        assert!(loaded.problems[1].contains("s.json.bak: truncated JSON"), "{:?}", loaded.problems);
    }

    #[test]
    fn interrupted_saves_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        save_json(&path, &state(1)).expect("save");
        // Crash during step 1: a partial .tmp is left behind and ignored.
        fs::write(with_suffix(&path, "tmp"), "{\"name\": \"ba").expect("write");
        let loaded = load_json::<State>(&path);
        assert_eq!(loaded.value, Some(state(1)));
        assert!(loaded.problems.is_empty());
        // The next save overwrites it.
        save_json(&path, &state(2)).expect("save over leftover tmp");
        assert_eq!(load_json::<State>(&path).value, Some(state(2)));
        // Primary gone (deleted by hand, or a save by an older build interrupted): the backup
        // is used and the problem named.
        fs::remove_file(&path).expect("rm");
        let loaded = load_json::<State>(&path);
        assert_eq!(loaded.value, Some(state(1)));
        assert!(loaded.problems[0].contains("missing; using"), "{:?}", loaded.problems);
    }

    #[test]
    fn oversized_files_are_refused_and_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.json");
        let file = File::create(&path).expect("create");
        file.set_len(MAX_FILE_SIZE + 1).expect("sparse file");
        let loaded = load_json::<State>(&path);
        assert!(loaded.value.is_none());
        assert!(loaded.problems[0].contains("larger than"), "{:?}", loaded.problems);

        let bad = dir.path().join("no-such-dir").join("x.json");
        let err = save_json(&bad, &state(1)).expect_err("directory missing");
        assert!(err.to_string().contains("x.json.tmp"), "{err}");
    }
}
