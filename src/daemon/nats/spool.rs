//! The NATS sink's on-disk spool: events waiting for the server, oldest first, bounded in bytes.
//!
//! Layout (`<data_dir>/nats-spool/`): append-only segment files `NNNNNNNNNNNNNNNNNNNN.seg`, each
//! a run of records `len: u32 LE | crc32(body): u32 LE | body`, body = `u16 LE subject length |
//! subject | u16 LE id length | id | payload`; and `cursor.json`, the first unpublished record
//! (segment, offset) plus the count of events dropped and not yet reported, replaced atomically
//! (temporary file, fsync, rename, directory fsync).
//!
//! Durability: each append is one `write(2)`, so a killed daemon loses nothing; segments are
//! fsynced when they are closed, on [`Spool::sync`] (the sink calls it about once a second while
//! spooling) and at shutdown. A power cut can lose the last second of spooled events: they are
//! observations of the network, not the only copy of anything, and an fsync per event would
//! cap the spool at the disk's sync rate exactly when the daemon is catching up.
//!
//! Bounded: segments are rotated at an eighth of the budget, and when the spool outgrows its
//! budget whole oldest segments are deleted (their events counted as dropped).
//!
//! Damage (a torn last record after a crash, flipped bits) is detected by length and checksum at
//! open and on read: the rest of that segment is skipped and counted in [`OpenReport`]; nothing
//! panics. A new segment is started at every open, so nothing is ever appended after damage.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest record body accepted (a block event is small; this guards a corrupt length).
const MAX_BODY: usize = 16 << 20;
const HEADER: usize = 8;

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpoolRecord {
    /// Subject it goes to.
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub msg_id: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// Where a record starts, or the position after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub(crate) struct Pos {
    /// Segment number.
    pub segment: u64,
    /// Byte offset in it.
    pub offset: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    #[serde(flatten)]
    pos: Pos,
    dropped: u64,
}

/// What opening found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OpenReport {
    /// Records waiting.
    pub records: u64,
    /// Segments with unreadable bytes (their tails are skipped).
    pub damaged_segments: Vec<(u64, String)>,
    /// The cursor file was unreadable: the spool is replayed from its oldest record.
    pub cursor_damaged: bool,
}

struct Segment {
    number: u64,
    /// Bytes of valid records.
    len: u64,
    /// Records in it from the cursor on (all of them for segments after the cursor's).
    pending: u64,
}

/// The spool (see the module documentation).
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_max: u64,
    segments: Vec<Segment>,
    active: Option<File>,
    cursor: Cursor,
    reader: Option<(u64, File)>,
}

fn encode(r: &SpoolRecord) -> io::Result<Vec<u8>> {
    let too_long = || io::Error::new(io::ErrorKind::InvalidInput, "subject or id too long");
    let subject = u16::try_from(r.subject.len()).map_err(|_| too_long())?;
    let id = u16::try_from(r.msg_id.len()).map_err(|_| too_long())?;
    let mut body = Vec::with_capacity(4 + r.subject.len() + r.msg_id.len() + r.payload.len());
    body.extend_from_slice(&subject.to_le_bytes());
    body.extend_from_slice(r.subject.as_bytes());
    body.extend_from_slice(&id.to_le_bytes());
    body.extend_from_slice(r.msg_id.as_bytes());
    body.extend_from_slice(&r.payload);
    if body.len() > MAX_BODY {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "event too large to spool"));
    }
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode(body: &[u8]) -> Option<SpoolRecord> {
    let take = |at: usize| -> Option<(&[u8], usize)> {
        let len = u16::from_le_bytes(body.get(at..at + 2)?.try_into().ok()?) as usize;
        Some((body.get(at + 2..at + 2 + len)?, at + 2 + len))
    };
    let (subject, next) = take(0)?;
    let (id, next) = take(next)?;
    Some(SpoolRecord {
        subject: String::from_utf8(subject.to_vec()).ok()?,
        msg_id: String::from_utf8(id.to_vec()).ok()?,
        payload: body[next..].to_vec(),
    })
}

/// Reads the record at the reader's position: `Ok(None)` at a clean end, `Err` on damage.
fn read_record(r: &mut impl Read) -> Result<Option<(SpoolRecord, u64)>, String> {
    let mut header = [0u8; HEADER];
    match r.read(&mut header[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    r.read_exact(&mut header[1..]).map_err(|_| "truncated record header".to_owned())?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_BODY {
        return Err(format!("record length {len} out of range"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|_| "truncated record".to_owned())?;
    if crc32fast::hash(&body) != crc {
        return Err("checksum mismatch".into());
    }
    let record = decode(&body).ok_or("malformed record body")?;
    Ok(Some((record, (HEADER + len) as u64)))
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.seg"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Opens (creating) the spool in `dir`, keeping at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, OpenReport)> {
        fs::create_dir_all(dir)?;
        let mut report = OpenReport::default();
        let cursor = match fs::read(dir.join("cursor.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                report.cursor_damaged = true;
                Cursor::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Cursor::default(),
            Err(e) => return Err(e),
        };
        let mut numbers: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_max: (max_bytes / 8).clamp(8 << 10, 64 << 20),
            segments: Vec::new(),
            active: None,
            cursor,
            reader: None,
        };
        if report.cursor_damaged {
            spool.cursor.pos = Pos { segment: numbers.first().copied().unwrap_or(0), offset: 0 };
        }
        for number in numbers {
            if number < spool.cursor.pos.segment {
                // Fully published before a crash, not yet deleted.
                let _ = fs::remove_file(segment_path(dir, number));
                continue;
            }
            let mut file = io::BufReader::new(File::open(segment_path(dir, number))?);
            let (mut len, mut pending) = (0u64, 0u64);
            loop {
                match read_record(&mut file) {
                    Ok(Some((_, size))) => {
                        if number > spool.cursor.pos.segment || len >= spool.cursor.pos.offset {
                            pending += 1;
                        }
                        len += size;
                    }
                    Ok(None) => break,
                    Err(problem) => {
                        report.damaged_segments.push((number, format!("{problem} at offset {len}")));
                        break;
                    }
                }
            }
            report.records += pending;
            spool.segments.push(Segment { number, len, pending });
        }
        if spool.segments.first().is_some_and(|s| s.number == spool.cursor.pos.segment)
            && spool.cursor.pos.offset > spool.segments[0].len
        {
            // The cursor points past the readable part (damage): nothing is left there.
            spool.cursor.pos.offset = spool.segments[0].len;
        }
        Ok((spool, report))
    }

    /// Events waiting.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.pending).sum()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Events dropped (spool full) and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.cursor.dropped
    }

    /// Appends `record`; when the spool outgrows its budget, drops the oldest segments.
    pub fn append(&mut self, record: &SpoolRecord) -> io::Result<()> {
        let bytes = encode(record)?;
        let rotate = self.active.is_none()
            || self.segments.last().is_none_or(|s| s.len + bytes.len() as u64 > self.segment_max);
        if rotate {
            self.rotate()?;
        }
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.last_mut()) else {
            return Err(io::Error::other("spool has no active segment"));
        };
        file.write_all(&bytes)?;
        seg.len += bytes.len() as u64;
        seg.pending += 1;
        self.enforce_budget()
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(old) = self.active.take() {
            old.sync_all()?;
        }
        let number = self.segments.last().map_or(self.cursor.pos.segment, |s| s.number + 1);
        let file = OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, number))?;
        sync_dir(&self.dir)?;
        if self.segments.is_empty() {
            // An empty spool: the cursor moves to the new segment.
            self.cursor.pos = Pos { segment: number, offset: 0 };
        }
        self.segments.push(Segment { number, len: 0, pending: 0 });
        self.active = Some(file);
        Ok(())
    }

    fn enforce_budget(&mut self) -> io::Result<()> {
        let mut changed = false;
        while self.bytes() > self.max_bytes && self.segments.len() > 1 {
            let oldest = self.segments.remove(0);
            self.cursor.dropped += oldest.pending;
            fs::remove_file(segment_path(&self.dir, oldest.number))?;
            if self.reader.as_ref().is_some_and(|(n, _)| *n == oldest.number) {
                self.reader = None;
            }
            self.cursor.pos = Pos { segment: self.segments[0].number, offset: 0 };
            changed = true;
        }
        if changed {
            self.save_cursor()?;
        }
        Ok(())
    }

    /// Up to `n` records from the cursor on, each with the position after it. Damage stops the
    /// read at that segment's last good record (found at open).
    pub fn peek(&mut self, n: usize) -> io::Result<Vec<(SpoolRecord, Pos)>> {
        let mut out = Vec::new();
        let mut pos = self.cursor.pos;
        for seg in &self.segments {
            if out.len() >= n {
                break;
            }
            if seg.number < pos.segment {
                continue;
            }
            if seg.number > pos.segment {
                pos = Pos { segment: seg.number, offset: 0 };
            }
            if pos.offset >= seg.len {
                continue;
            }
            let file = match self.reader.take() {
                Some((number, file)) if number == seg.number => file,
                _ => File::open(segment_path(&self.dir, seg.number))?,
            };
            let mut file = file;
            file.seek(SeekFrom::Start(pos.offset))?;
            let mut reader = io::BufReader::new(file);
            while out.len() < n && pos.offset < seg.len {
                match read_record(&mut reader) {
                    Ok(Some((record, size))) => {
                        pos.offset += size;
                        out.push((record, pos));
                    }
                    _ => break,
                }
            }
            self.reader = Some((seg.number, reader.into_inner()));
        }
        Ok(out)
    }

    /// Marks everything before `upto` published; deletes finished segments, saves the cursor.
    pub fn ack(&mut self, upto: Pos, records: u64) -> io::Result<()> {
        self.cursor.pos = upto;
        let mut left = records;
        for seg in self.segments.iter_mut() {
            let take = left.min(seg.pending);
            seg.pending -= take;
            left -= take;
        }
        let active = self.segments.len().saturating_sub(1);
        let mut done = 0;
        while done < active && self.segments[done].number < upto.segment
            || done < active
                && self.segments[done].number == upto.segment
                && upto.offset >= self.segments[done].len
        {
            done += 1;
        }
        for seg in self.segments.drain(..done) {
            fs::remove_file(segment_path(&self.dir, seg.number))?;
        }
        if let Some(first) = self.segments.first() {
            if first.number > self.cursor.pos.segment {
                self.cursor.pos = Pos { segment: first.number, offset: 0 };
            }
        }
        self.save_cursor()
    }

    /// Forgets the dropped count once the `dropped` event is published.
    pub fn clear_dropped(&mut self) -> io::Result<()> {
        self.cursor.dropped = 0;
        self.save_cursor()
    }

    /// Flushes the active segment to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        match &self.active {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }

    fn save_cursor(&self) -> io::Result<()> {
        let tmp = self.dir.join("cursor.json.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&self.cursor).map_err(io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join("cursor.json"))?;
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> SpoolRecord {
        SpoolRecord {
            subject: format!("btcpeer.regtest.e{}", i % 3),
            msg_id: format!("id-{i}"),
            payload: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes(),
        }
    }

    fn drain(spool: &mut Spool) -> Vec<SpoolRecord> {
        let mut all = Vec::new();
        loop {
            let batch = spool.peek(7).unwrap();
            let Some(last) = batch.last().map(|(_, p)| *p) else { break };
            spool.ack(last, batch.len() as u64).unwrap();
            all.extend(batch.into_iter().map(|(r, _)| r));
        }
        all
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, report) = Spool::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(report.records, 0);
        for i in 0..50 {
            spool.append(&rec(i)).unwrap();
        }
        // Publish ten, then "restart".
        let batch = spool.peek(10).unwrap();
        spool.ack(batch[9].1, 10).unwrap();
        drop(spool);
        let (mut spool, report) = Spool::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(report, OpenReport { records: 40, ..Default::default() });
        for i in 50..60 {
            spool.append(&rec(i)).unwrap();
        }
        assert_eq!(spool.records(), 50);
        let got = drain(&mut spool);
        assert_eq!(got, (10..60).map(rec).collect::<Vec<_>>());
        assert_eq!(spool.records(), 0);
        drop(spool);
        let (spool, report) = Spool::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(report.records, 0);
        assert_eq!(spool.records(), 0);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..20_000 {
            spool.append(&rec(i)).unwrap();
        }
        assert!(spool.bytes() <= 1 << 20, "{} bytes", spool.bytes());
        let dropped = spool.dropped();
        assert!(dropped > 0);
        assert_eq!(spool.records() + dropped, 20_000);
        drop(spool);
        let (mut spool, report) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.dropped(), dropped, "the dropped count survives a restart");
        let got = drain(&mut spool);
        assert_eq!(got.len() as u64, report.records);
        assert_eq!(got.last(), Some(&rec(19_999)), "the newest are kept");
        assert_eq!(got.first(), Some(&rec(dropped as usize)), "oldest first, no gap");
        spool.clear_dropped().unwrap();
        assert_eq!(spool.dropped(), 0);
    }

    #[test]
    fn damage_is_reported_and_skipped_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 8 << 20).unwrap();
        for i in 0..5 {
            spool.append(&rec(i)).unwrap();
        }
        let seg = spool.segments[0].number;
        drop(spool);
        // A torn write: half a record at the end.
        let path = segment_path(dir.path(), seg);
        let mut bytes = fs::read(&path).unwrap();
        let one = bytes.len() / 5;
        bytes.extend_from_slice(&encode(&rec(5)).unwrap()[..one / 2]);
        // Flipped bits in the fourth record.
        bytes[3 * one + 20] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        fs::write(dir.path().join("cursor.json"), b"{not json").unwrap();
        let (mut spool, report) = Spool::open(dir.path(), 8 << 20).unwrap();
        assert!(report.cursor_damaged);
        assert_eq!(report.damaged_segments.len(), 1, "{report:?}");
        assert!(report.damaged_segments[0].1.contains("checksum"), "{report:?}");
        assert_eq!(report.records, 3);
        assert_eq!(drain(&mut spool), (0..3).map(rec).collect::<Vec<_>>());
        // New events go to a fresh segment, after the damage.
        spool.append(&rec(9)).unwrap();
        assert_eq!(drain(&mut spool), vec![rec(9)]);
        // Garbage anywhere never panics.
        for len in [0usize, 1, 7, 8, 9, 100] {
            let d = tempfile::tempdir().unwrap();
            fs::write(segment_path(d.path(), 1), vec![0xab; len]).unwrap();
            let (mut s, _) = Spool::open(d.path(), 8 << 20).unwrap();
            assert!(drain(&mut s).is_empty());
        }
    }
}
