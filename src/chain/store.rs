//! [`HeaderStore`]: the headers in `<data_dir>/headers.dat`, appended as they are accepted and
//! replayed through [`HeaderChain::connect`] rules on start.
//!
//! Format (all integers as in Bitcoin's wire format):
//!
//! ```text
//! file header   8 bytes  "BTCPHDR1"
//!               4 bytes  the network's magic (f9beb4d9 on mainnet)
//! records       84 bytes each, in the order the chain accepted them (parents first):
//!               80 bytes the block header
//!                4 bytes checksum: the first 4 bytes of the header's sha256d, which is the
//!                        block hash in its internal byte order
//! ```
//!
//! Forks are stored too, so replaying in file order rebuilds the same branches and the same
//! best tip (ties are won by the first seen, and the file keeps that order).

use crate::persist::{sync_dir, with_suffix};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bitcoin::block::Header;
use bitcoin::consensus::Encodable;
use bitcoin::hashes::Hash;
use bitcoin::BlockHash;

use super::validate::MAX_FUTURE_BLOCK_TIME;
use super::{HashedHeaders, HeaderChain, HeaderError};
use crate::Network;

/// The store's file name inside the data directory.
pub const FILE_NAME: &str = "headers.dat";

/// The first 8 bytes of the file: format name and version.
pub const FILE_MAGIC: [u8; 8] = *b"BTCPHDR1";

/// File header: [`FILE_MAGIC`] and the network magic.
const FILE_HEADER_LEN: usize = 12;

/// Bytes per record: an 80-byte header and a 4-byte checksum.
pub const RECORD_LEN: usize = 84;

/// Headers replayed per `connect` call (as many as one `headers` message), and records read
/// and hashed at a time (168 KB).
const REPLAY_BATCH: usize = 2_000;

/// Dead records (unconnectable, duplicate, or evicted forks) that make `open` rewrite the file
/// with only what the chain kept.
const COMPACT_MIN_DEAD: usize = 10_000;

/// A file operation on the header store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing, renaming or syncing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The file the operation was on.
        path: PathBuf,
        /// What we were doing ("read", "write", ...).
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// What [`HeaderStore::open`] found in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Headers added to the chain from the file.
    pub loaded: usize,
    /// Intact records not added: already in the chain, or not connecting to it (their parent
    /// was evicted as a stale fork, or the file was written for another checkpoint).
    pub skipped: usize,
    /// Whether the file was rewritten with only the headers the chain kept (after many
    /// skipped or evicted records).
    pub compacted: bool,
    /// What was wrong with the file and what was done about it, ready to log; `None` for a
    /// clean file or a first start.
    pub problem: Option<String>,
    /// Set when the best header is more than 2 hours ahead of `now`: the local clock is
    /// probably behind (replay accepts such headers; they passed the rule when they arrived).
    pub clock_warning: Option<String>,
}

/// The append-only header file. Create it with [`HeaderStore::open`].
#[derive(Debug)]
pub struct HeaderStore {
    path: PathBuf,
    file: File,
    records: u64,
    /// The records of one append, kept between appends: a fresh 168 KB buffer per batch came
    /// from newly mapped pages each time (the allocator returns freed memory that large).
    buf: Vec<u8>,
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, action, source }
}

fn file_header(network: Network) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&FILE_MAGIC);
    h[8..].copy_from_slice(&network.magic());
    h
}

fn record(header: &Header) -> [u8; RECORD_LEN] {
    record_hashed(header, &crate::wire::block_hash(header))
}

/// A record for `header`, whose hash the caller already computed (no second sha256d).
fn record_hashed(header: &Header, hash: &BlockHash) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    let mut w = &mut r[..80];
    // Writing 80 bytes into an 80-byte slice cannot fail.
    let _ = header.consensus_encode(&mut w);
    r[80..].copy_from_slice(&hash.to_byte_array()[..4]);
    r
}

/// Records being replayed: one chained run, flushed into the chain in batches.
struct Replay<'a> {
    chain: &'a mut HeaderChain,
    report: &'a mut LoadReport,
    headers: Vec<Header>,
    hashes: Vec<BlockHash>,
    /// Record index of `headers[0]`.
    first: u64,
}

impl Replay<'_> {
    fn add(&mut self, index: u64, header: Header, hash: BlockHash) -> Result<(), (u64, String)> {
        let chained = self.hashes.last().is_some_and(|last| *last == header.prev_blockhash);
        if !self.headers.is_empty() && (!chained || self.headers.len() >= REPLAY_BATCH) {
            self.flush()?;
        }
        if self.headers.is_empty() {
            self.first = index;
        }
        self.headers.push(header);
        self.hashes.push(hash);
        Ok(())
    }

    /// Connects the pending run. `Err` names the first record that failed validation.
    fn flush(&mut self) -> Result<(), (u64, String)> {
        // No future-time rule: these headers passed it when they arrived, and a clock that went
        // back must not cost the chain.
        let (c, failure) = self.chain.connect_with(&self.headers, &self.hashes, None);
        self.report.loaded += c.added;
        self.report.skipped += c.known;
        let n = self.headers.len();
        match failure {
            None => {
                self.headers.clear();
                self.hashes.clear();
                Ok(())
            }
            // Parent gone (an evicted fork) or below our start (a file written from genesis,
            // replayed onto a checkpoint): not damage. Skip to the last header of the run the
            // chain knows (such as the checkpoint) and go on from there.
            Some((i, HeaderError::Unconnected { .. } | HeaderError::ForkBeforeCheckpoint { .. })) => {
                let resume = (i + 1..n).rev().find(|&j| self.chain.contains(&self.hashes[j]));
                match resume {
                    Some(j) => {
                        self.report.skipped += j - i;
                        self.headers.drain(..j);
                        self.hashes.drain(..j);
                        self.first += j as u64;
                        self.flush()
                    }
                    None => {
                        self.report.skipped += n - i;
                        self.headers.clear();
                        self.hashes.clear();
                        Ok(())
                    }
                }
            }
            Some((i, e)) => {
                let index = self.first + i as u64;
                let bad = (index, format!("record {index} fails validation: {e}"));
                if c.known + c.added < i {
                    // A whole-message check (proof of work) failed: the records before the bad
                    // one are still good, and the kept prefix includes them.
                    self.headers.truncate(i);
                    self.hashes.truncate(i);
                    self.flush()?;
                }
                self.headers.clear();
                self.hashes.clear();
                Err(bad)
            }
        }
    }
}

impl HeaderStore {
    /// The store's path inside a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Opens or creates the file at `path` and replays it into `chain` (normally fresh from
    /// [`HeaderChain::new`] or [`HeaderChain::with_checkpoint`]), re-validating every header.
    ///
    /// Recovers instead of failing:
    /// - a torn last record (a crash mid-append) is cut off;
    /// - a bad checksum, a header that fails validation, a wrong network or a foreign file:
    ///   the whole file is first copied to `headers.dat.corrupt` (or `.corrupt.1`, ... — an
    ///   older copy is never overwritten), then the records before the bad one are kept (the
    ///   file is rewritten atomically: temporary file, fsync, rename);
    /// - many dead records (see [`LoadReport::skipped`]): the file is rewritten with what the
    ///   chain kept.
    ///
    /// [`LoadReport::problem`] says what happened. `now` is only used for
    /// [`LoadReport::clock_warning`]: replay skips the 2-hour future rule, because the headers
    /// passed it when they arrived and a clock set back must not cost the chain. Only I/O
    /// failures are errors, and they name the file.
    pub fn open(
        path: &Path,
        mut chain: HeaderChain,
        now: u64,
    ) -> Result<(HeaderStore, HeaderChain, LoadReport), StoreError> {
        let network = chain.network();
        let expected = file_header(network);
        let mut report = LoadReport::default();
        let shown = path.display();

        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomically(path, &expected, |_| Ok(()))?;
                let store = Self::for_append(path, 0)?;
                return Ok((store, chain, report));
            }
            Err(e) => return Err(io_err(path, "open")(e)),
        };
        let len = file.metadata().map_err(io_err(path, "read"))?.len();
        let mut reader = BufReader::with_capacity(1 << 16, file);

        let mut head = Vec::with_capacity(FILE_HEADER_LEN);
        (&mut reader).take(FILE_HEADER_LEN as u64).read_to_end(&mut head).map_err(io_err(path, "read"))?;
        let bad_head = if head.len() < FILE_HEADER_LEN {
            if expected.starts_with(&head) {
                // Creation was interrupted; there is nothing to save.
                write_atomically(path, &expected, |_| Ok(()))?;
                report.problem =
                    Some(format!("{shown}: incomplete file header (interrupted creation); started afresh"));
                let store = Self::for_append(path, 0)?;
                return Ok((store, chain, report));
            }
            Some("not a btcpeer headers file (too short)".to_owned())
        } else if head[..8] != FILE_MAGIC {
            Some("not a btcpeer headers file (bad magic)".to_owned())
        } else if head[8..] != expected[8..] {
            Some(format!(
                "headers of another network (magic {:02x?}, this is {network} with {:02x?})",
                &head[8..],
                network.magic()
            ))
        } else {
            None
        };

        let body = len.saturating_sub(FILE_HEADER_LEN as u64);
        let total = body / RECORD_LEN as u64;
        let tail = body % RECORD_LEN as u64;
        let mut bad: Option<(u64, String)> = bad_head.map(|why| (0, why));
        if bad.is_none() {
            let mut replay = Replay {
                chain: &mut chain,
                report: &mut report,
                headers: Vec::new(),
                hashes: Vec::new(),
                first: 0,
            };
            // Read, hashed and checked a batch of records at a time: headers hash two at a
            // time (`wire::block_hashes`), and one at a time was most of a replay's work.
            let mut buf = vec![[0u8; RECORD_LEN]; REPLAY_BATCH];
            let mut headers = Vec::with_capacity(REPLAY_BATCH);
            let mut first = 0u64;
            'read: while first < total {
                let count = (total - first).min(REPLAY_BATCH as u64) as usize;
                let records = &mut buf[..count];
                reader.read_exact(records.as_flattened_mut()).map_err(io_err(path, "read"))?;
                headers.clear();
                headers.extend(records.iter().map(crate::wire::header_from_bytes));
                let hashes = crate::wire::block_hashes(&headers);
                for (j, ((rec, header), hash)) in records.iter().zip(&headers).zip(hashes).enumerate() {
                    let i = first + j as u64;
                    if rec[80..] != hash.to_byte_array()[..4] {
                        bad = Some((i, format!("record {i} fails its checksum")));
                        break 'read;
                    }
                    if let Err(b) = replay.add(i, *header, hash) {
                        bad = Some(b);
                        break 'read;
                    }
                }
                first += count as u64;
            }
            if let Err(b) = replay.flush() {
                // An earlier record of the pending run failed: it comes first.
                if bad.as_ref().is_none_or(|(i, _)| b.0 < *i) {
                    bad = Some(b);
                }
            }
        }
        drop(reader);

        let mut problems = Vec::new();
        let kept = if let Some((index, why)) = bad {
            let aside = copy_aside(path)?;
            // The kept records are the original's bytes; read them back from the copy.
            let mut src = BufReader::new(File::open(&aside).map_err(io_err(&aside, "read"))?);
            write_atomically(path, &expected, |w| {
                if index > 0 {
                    io::copy(&mut (&mut src).take(FILE_HEADER_LEN as u64), &mut io::sink())?;
                    io::copy(&mut (&mut src).take(index * RECORD_LEN as u64), w)?;
                }
                Ok(())
            })?;
            problems.push(format!(
                "{shown}: {why}; kept the {index} records before it, the original is saved as {}",
                aside.display()
            ));
            index
        } else {
            if tail != 0 {
                let f = OpenOptions::new().write(true).open(path).map_err(io_err(path, "open"))?;
                f.set_len(FILE_HEADER_LEN as u64 + total * RECORD_LEN as u64)
                    .map_err(io_err(path, "truncate"))?;
                f.sync_all().map_err(io_err(path, "sync"))?;
                problems.push(format!(
                    "{shown}: last record incomplete ({tail} of {RECORD_LEN} bytes, an interrupted append); removed"
                ));
            }
            total
        };

        // Records the chain did not keep: skipped ones and forks evicted during replay.
        let mut records = kept;
        let live = chain.len().saturating_sub(1) as u64;
        if kept.saturating_sub(live) >= COMPACT_MIN_DEAD as u64 {
            write_atomically(path, &expected, |w| {
                for header in chain.stored_headers() {
                    w.write_all(&record(&header))?;
                }
                Ok(())
            })?;
            records = live;
            report.compacted = true;
        }

        let tip = chain.tip();
        if u64::from(tip.header.time) > now.saturating_add(MAX_FUTURE_BLOCK_TIME) {
            report.clock_warning = Some(format!(
                "best header {} at height {} is timestamped {} s ahead of the local clock (is the clock wrong?)",
                tip.hash,
                tip.height,
                u64::from(tip.header.time) - now
            ));
        }
        if !problems.is_empty() {
            report.problem = Some(problems.join("; "));
        }
        let store = Self::for_append(path, records)?;
        Ok((store, chain, report))
    }

    fn for_append(path: &Path, records: u64) -> Result<HeaderStore, StoreError> {
        let file = OpenOptions::new().append(true).open(path).map_err(io_err(path, "open"))?;
        Ok(HeaderStore { path: path.to_path_buf(), file, records, buf: Vec::new() })
    }

    /// Appends headers that `connect` added (any branch), in the order they were added:
    /// [`Connected::added_headers`](super::Connected::added_headers). Durable after
    /// [`flush`](Self::flush); a crash before that loses at most these records (and a torn one
    /// is cut off on the next open).
    pub fn append(&mut self, headers: &[Header]) -> Result<(), StoreError> {
        if headers.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for h in headers {
            self.buf.extend_from_slice(&record(h));
        }
        self.write_buf(headers.len())
    }

    /// [`append`](Self::append) for headers hashed once on the way in: storing hashes nothing.
    pub fn append_hashed(&mut self, headers: &HashedHeaders) -> Result<(), StoreError> {
        if headers.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for (h, hash) in headers.headers().iter().zip(headers.hashes()) {
            self.buf.extend_from_slice(&record_hashed(h, hash));
        }
        self.write_buf(headers.len())
    }

    /// Writes the records in `buf` (`count` of them), keeping at most one batch's worth of
    /// buffer (2,000 records) for the next append.
    fn write_buf(&mut self, count: usize) -> Result<(), StoreError> {
        let written = self.file.write_all(&self.buf).map_err(io_err(&self.path, "append to"));
        self.buf.clear();
        self.buf.shrink_to(2_000 * RECORD_LEN);
        written?;
        self.records += count as u64;
        Ok(())
    }

    /// Makes appended records durable (`fsync` of the data).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(io_err(&self.path, "sync"))
    }

    /// [`flush`](Self::flush) to run on another thread: an `fsync` of a few MB takes
    /// milliseconds, which the caller need not wait for. It makes durable what was appended
    /// before it runs.
    pub fn flusher(&self) -> Result<impl FnOnce() -> Result<(), StoreError> + Send + 'static, StoreError> {
        let file = self.file.try_clone().map_err(io_err(&self.path, "open a second handle to"))?;
        let sync_err = io_err(&self.path, "sync");
        Ok(move || file.sync_data().map_err(sync_err))
    }

    /// Number of records in the file.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Copies `path` to the first free `path.corrupt`, `path.corrupt.1`, ... and returns its name.
fn copy_aside(path: &Path) -> Result<PathBuf, StoreError> {
    for n in 0..1000u32 {
        let aside =
            if n == 0 { with_suffix(path, "corrupt") } else { with_suffix(path, &format!("corrupt.{n}")) };
        // `create_new` never replaces an existing copy, even one created concurrently.
        let mut out = match OpenOptions::new().write(true).create_new(true).open(&aside) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&aside, "create")(e)),
        };
        let mut src = File::open(path).map_err(io_err(path, "read"))?;
        io::copy(&mut src, &mut out).map_err(io_err(&aside, "write"))?;
        out.sync_all().map_err(io_err(&aside, "sync"))?;
        return Ok(aside);
    }
    Err(io_err(path, "find a free name for a copy of")(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "1000 .corrupt copies exist",
    )))
}

/// Writes the file header and then whatever `body` writes to `path.tmp`, fsyncs it, renames it
/// over `path` and fsyncs the directory: `path` is always either the old or the new file.
fn write_atomically<F>(path: &Path, head: &[u8], body: F) -> Result<(), StoreError>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let tmp = with_suffix(path, "tmp");
    let file = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    w.write_all(head).map_err(io_err(&tmp, "write"))?;
    body(&mut w).map_err(io_err(&tmp, "write"))?;
    let file = w.into_inner().map_err(|e| io_err(&tmp, "write")(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp, "sync"))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path, "replace"))?;
    sync_dir(path).map_err(io_err(path, "sync the directory of"))
}
