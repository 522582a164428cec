//! [`QueueStore`]: the segmented store behind the queue, sled databases for its state and
//! data files for its spans (design, layout and recovery rules in [`crate::queue`]).

use std::{
    cell::Cell,
    collections::BTreeMap,
    fs,
    ops::Range,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{
    FORMAT_VERSION, QueueError, SEGMENT_SIZE,
    datafile::{DATA_FILE, DataFile, Records},
    manifest::{DirLock, Manifest, lock_path, manifest_path},
    record::{self, RecordError},
    spans::{EncodedSpans, ReadSpans},
};
use crate::config::Overflow;

/// Largest span the store accepts. A sink reads whole records, so this bounds what one
/// read holds beyond its byte budget; `parse.max_span_bytes` (at most 384 KiB) is capped
/// below it so that every span the correlator makes fits with its other fields.
pub const MAX_SPAN_BYTES: usize = 448 << 10;
/// A commit's spans are packed into records of about this many bytes (a span is never
/// split; a record holds at least one span): small enough that a sink reading from inside
/// a record reads little it does not need, large enough that the index stays small.
pub const RECORD_TARGET_BYTES: usize = 256 << 10;
/// Default free space to leave on the filesystem ([`StoreOptions::min_free_bytes`]).
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;
/// Default [`StoreOptions::segment_bytes`]: span record bytes written to the active
/// segment before the next commit opens a new one. The disk comes back a segment at a time.
/// Measured in `docs/benchmarks.md`.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// sled page cache of each open segment database (which holds no spans, only the index,
/// cursors, waiting entries and checkpoints).
const CACHE_CAPACITY: u64 = 8 << 20;
/// The manifest's committed sequence is brought up to date at most once per this interval.
const MANIFEST_INTERVAL: Duration = Duration::from_secs(1);
/// `drop_oldest` logs at most once per this interval.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Record bytes copied per write by [`QueueStore::create_from`].
const COPY_BATCH_BYTES: usize = 8 << 20;

/// How the store bounds its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bound on [`Stats::bytes`] (span records: keys + records). `drop_oldest` keeps it;
    /// `block` may exceed it by the one commit that crosses it (see [`Committed::full`]).
    pub max_bytes: u64,
    /// What happens at `max_bytes`.
    pub overflow: Overflow,
    /// A commit is refused with [`QueueError::DiskFull`] (nothing written) when the
    /// filesystem would have less than this free afterwards, so that sled itself never hits
    /// ENOSPC (after which it stays failed until reopened) and acks can still be written.
    pub min_free_bytes: u64,
    /// Span record bytes written to the active segment before the next commit closes it and
    /// opens a new one (`queue.segment_bytes`, default [`SEGMENT_BYTES`]): the unit in which
    /// the disk is given back.
    pub segment_bytes: u64,
}

impl StoreOptions {
    /// `max_bytes` and `overflow` as configured, [`DEFAULT_MIN_FREE_BYTES`] of headroom,
    /// segments of [`SEGMENT_BYTES`].
    pub fn new(max_bytes: u64, overflow: Overflow) -> StoreOptions {
        StoreOptions {
            max_bytes,
            overflow,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            segment_bytes: SEGMENT_BYTES,
        }
    }

    /// The `[queue]` section's bound, overflow policy and segment size, with
    /// [`DEFAULT_MIN_FREE_BYTES`] of headroom.
    pub fn from_config(queue: &crate::config::QueueConfig) -> StoreOptions {
        StoreOptions {
            segment_bytes: queue.segment_bytes,
            ..StoreOptions::new(queue.max_bytes, queue.overflow)
        }
    }
}

/// A waiting correlator entry: (id, encoded entry).
pub type PendingEntry = (Vec<u8>, Vec<u8>);

/// A record of ids the correlator paired: (key after the prefix, ids); see
/// [`record::PREFIX_PAIRED`].
pub type PairedRecord = (Vec<u8>, Vec<u8>);

/// One commit window: its spans go to the active segment's data file, everything else
/// (and the spans' index) into ONE atomic sled batch, flushed after the spans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// Encoded spans completed in the window, in order; each ≤ [`MAX_SPAN_BYTES`].
    pub spans: EncodedSpans,
    /// Correlator entries still waiting (id → encoded entry), inserted or replaced.
    pub pending_put: Vec<PendingEntry>,
    /// Ids of waiting entries answered (or expired) since the last commit.
    pub pending_remove: Vec<Vec<u8>>,
    /// Input checkpoints (input name → opaque position) to store with these spans.
    pub checkpoints: Vec<(String, Vec<u8>)>,
    /// Ids paired in the window, for duplicates across a restart (key after the prefix →
    /// value, see [`record::PREFIX_PAIRED`]).
    pub paired_put: Vec<PairedRecord>,
    /// Keys of paired-id records whose time to forget has passed.
    pub paired_remove: Vec<Vec<u8>>,
}

impl Commit {
    /// Whether the commit changes nothing on disk.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
            && self.pending_put.is_empty()
            && self.pending_remove.is_empty()
            && self.checkpoints.is_empty()
            && self.paired_put.is_empty()
            && self.paired_remove.is_empty()
    }

    /// Empties every part, keeping the buffers' capacity (a spare for the next window).
    pub fn clear(&mut self) {
        let Commit {
            spans,
            pending_put,
            pending_remove,
            checkpoints,
            paired_put,
            paired_remove,
        } = self;
        spans.clear();
        pending_put.clear();
        pending_remove.clear();
        checkpoints.clear();
        paired_put.clear();
        paired_remove.clear();
    }
}

/// What a successful [`QueueStore::commit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Sequence numbers given to the commit's spans (empty when it had none).
    pub sequences: Range<u64>,
    /// Old spans `drop_oldest` deleted to make room (cursors were moved past them).
    pub dropped_spans: u64,
    /// `block` only: the queue is at or above `max_bytes`. The commit IS stored; the caller
    /// must stop reading inputs until [`QueueStore::is_full`] turns false (acks free space).
    pub full: bool,
}

/// A sink's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    pub name: String,
    /// Last sequence the sink acknowledged (0: none).
    pub cursor: u64,
    /// Spans committed after the cursor (`sink_lag_spans`).
    pub lag: u64,
}

/// A snapshot of the queue (all in memory, no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Spans in the records kept (`queue_spans`); a record is kept until every sink passed
    /// all its spans.
    pub spans: u64,
    /// Span records kept.
    pub records: u64,
    /// Bytes of span records, keys + records (`queue_bytes`; what `max_bytes` bounds).
    pub bytes: u64,
    /// The configured bound.
    pub max_bytes: u64,
    /// Last sequence committed (`queue_committed_sequence`; 0 before the first span).
    pub committed: u64,
    /// First sequence of the oldest record kept.
    pub oldest: Option<u64>,
    /// Every cursor, by name.
    pub sinks: Vec<SinkStats>,
    /// Spans deleted by `drop_oldest` since open (`queue_dropped_spans_total`).
    pub dropped_spans: u64,
    /// Values that failed to decode since open (`queue_corrupt_records_total`).
    pub corrupt_records: u64,
    /// Segments on disk (the active one included).
    pub segments: u64,
}

/// Where a kept record is: its span count, and its place in its segment's data file.
#[derive(Debug, Clone, Copy)]
struct RecordInfo {
    count: u32,
    offset: u64,
    len: u32,
}

impl RecordInfo {
    fn last(&self, first: u64) -> u64 {
        first + u64::from(self.count) - 1
    }

    /// What the record counts in `queue_bytes`: its key and the record.
    fn bytes(&self) -> u64 {
        (record::SPAN_KEY_LEN as u64) + u64::from(self.len)
    }
}

/// The segment that takes commits.
#[derive(Debug)]
struct Active {
    /// First sequence it may hold (its directory's name).
    first: u64,
    db: sled::Db,
    data: DataFile,
    /// End of its last committed record in `data`: where the next commit writes, and the
    /// segment's size for rotation.
    end: u64,
}

/// The queue's segments; single writer (one actor owns it on one thread).
#[derive(Debug)]
pub struct QueueStore {
    data_dir: PathBuf,
    /// `<data_dir>/queue`: the segments' parent directory.
    queue_dir: PathBuf,
    options: StoreOptions,
    segment_size: usize,
    _lock: DirLock,
    /// `None` after an I/O error: every call then fails with [`QueueError::Failed`] until
    /// [`QueueStore::reopen`] succeeds.
    active: Option<Active>,
    /// Closed segments still on disk: first sequence → last sequence.
    closed: BTreeMap<u64, u64>,
    /// A closed segment's data file opened to read from (at most one at a time).
    reader: Option<(u64, DataFile)>,
    /// Every span record kept: first sequence → count and place, whatever segment holds it.
    records: BTreeMap<u64, RecordInfo>,
    bytes: u64,
    committed: u64,
    /// Every span up to this sequence has left the queue (meta `released`).
    released: u64,
    cursors: BTreeMap<String, u64>,
    /// Damaged records skipped (first → count), remembered while they are above `released`.
    skipped: BTreeMap<u64, u32>,
    dropped_spans: u64,
    corrupt_records: Cell<u64>,
    drop_log: (Option<Instant>, u64),
    /// What `<data_dir>/queue.manifest` holds now, and when it was last written.
    manifest: Manifest,
    manifest_written: Instant,
}

/// What [`load_active`] reads from the active segment's database.
struct Loaded {
    first: u64,
    records: BTreeMap<u64, RecordInfo>,
    bytes: u64,
    committed: u64,
    released: u64,
    cursors: BTreeMap<String, u64>,
    closed: BTreeMap<u64, u64>,
    skipped: BTreeMap<u64, u32>,
    corrupt: u64,
    /// End of the last record the active segment's index names, released ones included.
    end: u64,
}

impl QueueStore {
    /// Opens or creates the queue in `data_dir`: `<data_dir>/queue/` (the segments) with
    /// `<data_dir>/queue.manifest` and `<data_dir>/queue.lock`. Never panics and never
    /// starts silently empty: a held lock, a damaged or emptied segment, a foreign, older
    /// (formats 1 and 2: [`QueueError::NeedsMigration`]) or newer queue are errors naming
    /// the path.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<QueueStore, QueueError> {
        fs::create_dir_all(data_dir).map_err(|source| QueueError::io(data_dir, source))?;
        let queue_dir = data_dir.join("queue");
        let lock = DirLock::acquire(&lock_path(data_dir), &queue_dir)?;
        let mut store = QueueStore {
            data_dir: data_dir.to_owned(),
            queue_dir,
            options,
            segment_size: SEGMENT_SIZE,
            _lock: lock,
            active: None,
            closed: BTreeMap::new(),
            reader: None,
            records: BTreeMap::new(),
            bytes: 0,
            committed: 0,
            released: 0,
            cursors: BTreeMap::new(),
            skipped: BTreeMap::new(),
            dropped_spans: 0,
            corrupt_records: Cell::new(0),
            drop_log: (None, 0),
            manifest: Manifest {
                format: FORMAT_VERSION,
                db_id: String::new(),
                segment_size: SEGMENT_SIZE,
                committed: 0,
            },
            manifest_written: Instant::now(),
        };
        store.load()?;
        Ok(store)
    }

    /// Drops the handles and opens the queue again, reloading all state from disk: the way
    /// out of [`QueueError::Failed`] and of a full disk (sled stays failed after ENOSPC
    /// until reopened).
    pub fn reopen(&mut self) -> Result<(), QueueError> {
        self.load()
    }

    /// The `<data_dir>/queue` directory.
    pub fn path(&self) -> &Path {
        &self.queue_dir
    }

    /// sled segment size of the segment databases (from the manifest).
    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        segment_path(&self.queue_dir, first)
    }

    fn active(&self) -> Result<&Active, QueueError> {
        self.active.as_ref().ok_or(QueueError::Failed {
            path: self.queue_dir.clone(),
        })
    }

    fn db(&self) -> Result<&sled::Db, QueueError> {
        Ok(&self.active()?.db)
    }

    /// Maps a sled error of the active segment and drops the handles, so that nothing more
    /// is written to a database in an unknown state before [`QueueStore::reopen`].
    fn failed(&mut self, source: sled::Error) -> QueueError {
        let path = self
            .active
            .take()
            .map_or_else(|| self.queue_dir.clone(), |a| self.segment_path(a.first));
        self.reader = None;
        QueueError::Sled {
            path,
            cause: source,
        }
    }

    /// The same for an I/O error on the active segment's data file: after a failed write
    /// or `fdatasync` the file's tail is in an unknown state, which only a reopen (which
    /// cuts it back to the last committed record) clears.
    fn failed_io(&mut self, source: std::io::Error) -> QueueError {
        let path = self
            .active
            .take()
            .map_or_else(|| self.queue_dir.clone(), |a| a.data.path().to_owned());
        self.reader = None;
        QueueError::Io {
            path,
            cause: source,
        }
    }

    /// Writes `batch` to the active segment, and flushes it when `flush`.
    fn apply(&mut self, batch: sled::Batch, flush: bool) -> Result<(), QueueError> {
        let db = self.db()?;
        let result = db
            .apply_batch(batch)
            .and_then(|()| if flush { db.flush().map(drop) } else { Ok(()) });
        result.map_err(|source| self.failed(source))
    }

    /// Writes `records` at the active segment's end and waits for them to be on disk; the
    /// caller then flushes the batch that indexes them.
    fn write_records(&mut self, records: &Records<'_>) -> Result<(), QueueError> {
        let active = self.active()?;
        let written = active.data.write_durable(active.end, records);
        written.map_err(|source| self.failed_io(source))
    }

    /// (Re)loads everything from disk (recovery rules in [`crate::queue`]).
    fn load(&mut self) -> Result<(), QueueError> {
        self.active = None;
        self.reader = None;
        let manifest_file = manifest_path(&self.data_dir);
        let manifest = Manifest::read(&manifest_file)?;
        if let Some(manifest) = &manifest {
            if manifest.format < FORMAT_VERSION {
                return Err(QueueError::NeedsMigration {
                    path: self.queue_dir.clone(),
                    found: manifest.format,
                });
            }
            if manifest.format > FORMAT_VERSION {
                return Err(QueueError::UnsupportedFormat {
                    path: manifest_file,
                    found: manifest.format,
                    supported: FORMAT_VERSION,
                });
            }
        } else if self.queue_dir.join("db").is_file() {
            // A format 1 queue (one sled database in `queue/`) whose manifest is missing.
            return Err(QueueError::NeedsMigration {
                path: self.queue_dir.clone(),
                found: 1,
            });
        }
        let segment_size = manifest.as_ref().map_or(SEGMENT_SIZE, |m| m.segment_size);
        let mut segments = list_segments(&self.queue_dir)?;
        let missing = |manifest: &Manifest| QueueError::Missing {
            path: self.queue_dir.clone(),
            manifest: manifest_file.clone(),
            db_id: manifest.db_id.clone(),
        };

        // The newest segment with a base is the active one.
        let (first, db) = loop {
            let Some(&first) = segments.last() else {
                match &manifest {
                    Some(manifest) => return Err(missing(manifest)),
                    None => break self.create(segment_size)?,
                }
            };
            let path = self.segment_path(first);
            let db = open_segment(&path, segment_size)?;
            if db
                .get(record::META_BASE)
                .map_err(|source| sled_error(&path, source))?
                .is_some()
            {
                break (first, db);
            }
            // No base: this segment was being created when the process stopped, so it holds
            // nothing but part of a base. Only then (an older segment exists, and the
            // manifest never recorded a sequence this segment would hold) is it removed;
            // otherwise its contents were lost, which is an error.
            let older = segments.len() > 1;
            let unrecorded = manifest.as_ref().is_none_or(|m| m.committed < first);
            if older && unrecorded {
                drop(db);
                warn!(path = %path.display(), "Removing a queue segment whose creation was interrupted.");
                fs::remove_dir_all(&path).map_err(|source| QueueError::io(&path, source))?;
                segments.pop();
                continue;
            }
            if !older && manifest.is_none() && db.is_empty() {
                // The queue's own creation was interrupted before the manifest was written.
                drop(db);
                fs::remove_dir_all(&path).map_err(|source| QueueError::io(&path, source))?;
                segments.pop();
                continue;
            }
            return Err(match &manifest {
                Some(manifest) => missing(manifest),
                None => QueueError::Unreadable {
                    path,
                    detail: "it holds entries but no base (not an auditspan queue segment?)"
                        .to_owned(),
                },
            });
        };
        let path = self.segment_path(first);
        let (id, format) = read_identity(&db, &path)?;
        if format > u64::from(FORMAT_VERSION) {
            return Err(QueueError::UnsupportedFormat {
                path,
                found: u32::try_from(format).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        if format < u64::from(FORMAT_VERSION) {
            // A segment of format 2 whose manifest is missing.
            return Err(QueueError::NeedsMigration {
                path: self.queue_dir.clone(),
                found: u32::try_from(format).unwrap_or(0),
            });
        }
        let manifest = match manifest {
            Some(manifest) if manifest.db_id != id => {
                return Err(QueueError::Mismatch {
                    path,
                    manifest: manifest_file,
                    expected: manifest.db_id,
                    found: id,
                });
            }
            Some(manifest) => manifest,
            None => {
                // Created, but the manifest never reached the disk (or was deleted).
                let manifest = Manifest {
                    format: FORMAT_VERSION,
                    db_id: id,
                    segment_size,
                    committed: 0,
                };
                manifest.write(&manifest_file)?;
                manifest
            }
        };
        let loaded = quietly(|| load_active(&db, &path, first))
            .map_err(|panic| unreadable(&path, panic))??;
        if loaded.committed < manifest.committed {
            return Err(QueueError::Truncated {
                path,
                manifest: manifest_file,
                expected: manifest.committed,
                found: loaded.committed,
            });
        }
        let data = open_active_data(&path, &loaded, &manifest_file, &manifest.db_id)?;
        check_record_versions(&data, &loaded)?;
        // Every closed segment the index names and that still holds kept spans must be on
        // disk with its data file; segments older than the active one that hold none are
        // leftovers of a deletion a crash interrupted.
        for (&seg_first, &seg_last) in &loaded.closed {
            let data_file = self.segment_path(seg_first).join(DATA_FILE);
            if seg_last > loaded.released && !data_file.is_file() {
                return Err(QueueError::Missing {
                    path: self.segment_path(seg_first),
                    manifest: manifest_file,
                    db_id: manifest.db_id,
                });
            }
        }
        for seg_first in segments.iter().copied().filter(|s| *s < first) {
            if !loaded.closed.contains_key(&seg_first) {
                let next = segments
                    .iter()
                    .copied()
                    .find(|s| *s > seg_first)
                    .unwrap_or(first);
                if next - 1 > loaded.released {
                    return Err(QueueError::Unreadable {
                        path: self.segment_path(seg_first),
                        detail: "the active segment has no index of this segment".to_owned(),
                    });
                }
                let path = self.segment_path(seg_first);
                fs::remove_dir_all(&path).map_err(|source| QueueError::io(&path, source))?;
            }
        }
        self.segment_size = manifest.segment_size;
        self.manifest = manifest;
        self.records = loaded.records;
        self.bytes = loaded.bytes;
        self.committed = loaded.committed;
        self.released = loaded.released;
        self.cursors = loaded.cursors;
        self.closed = loaded.closed;
        self.skipped = loaded.skipped;
        self.corrupt_records
            .set(self.corrupt_records.get() + loaded.corrupt);
        self.active = Some(Active {
            first: loaded.first,
            db,
            data,
            end: loaded.end,
        });
        self.delete_passed_segments()?;
        Ok(())
    }

    /// Creates the queue's first segment (the manifest is written by the caller, after it).
    fn create(&self, segment_size: usize) -> Result<(u64, sled::Db), QueueError> {
        fs::create_dir_all(&self.queue_dir)
            .map_err(|source| QueueError::io(&self.queue_dir, source))?;
        let db_id = new_db_id(&self.queue_dir);
        let path = self.segment_path(1);
        let mut batch = sled::Batch::default();
        base_entries(&mut batch, &db_id, 1, 0, 0, segment_size);
        let db = create_segment(&path, segment_size, batch)?;
        sync_dir(&self.queue_dir)?;
        sync_dir(&self.data_dir)?;
        Ok((1, db))
    }

    /// Makes `sinks` the set of cursors: a new sink starts at the oldest span kept (or after
    /// the last committed one when the queue is empty); a cursor not in `sinks` is deleted,
    /// so it stops holding spans back. Flushed.
    pub fn set_sinks(&mut self, sinks: &[String]) -> Result<(), QueueError> {
        self.db()?;
        let start = self
            .records
            .keys()
            .next()
            .map_or(self.committed, |first| first - 1);
        let mut cursors: BTreeMap<String, u64> = sinks
            .iter()
            .map(|name| (name.clone(), *self.cursors.get(name).unwrap_or(&start)))
            .collect();
        let mut batch = sled::Batch::default();
        for name in self
            .cursors
            .keys()
            .filter(|name| !cursors.contains_key(*name))
        {
            batch.remove(cursor_key(name));
        }
        for (name, cursor) in &cursors {
            if self.cursors.get(name) != Some(cursor) {
                batch.insert(cursor_key(name), cursor_value(*cursor));
            }
        }
        let released = self.passed_by_all(&cursors);
        let watermark = self.watermark(&released);
        if let Some(watermark) = watermark {
            batch.insert(record::META_RELEASED, cursor_value(watermark));
        }
        self.apply(batch, true)?;
        std::mem::swap(&mut self.cursors, &mut cursors);
        self.forget(&released, watermark);
        self.delete_passed_segments()
    }

    /// Stores everything in `commit`: its spans, packed into records, are appended to the
    /// active segment's data file and made durable (`fdatasync`); then their index and
    /// everything else goes into ONE atomic sled batch, which is flushed (fsync) before
    /// this returns. Only after `Ok` may its spans be offered to sinks. Spans get
    /// consecutive sequence numbers. When the active segment is full, a new one is opened
    /// first.
    ///
    /// On `Err` the caller still owns `commit` and nothing in memory changed: after
    /// [`QueueError::DiskFull`] or [`QueueError::SpanTooLarge`] nothing was written; after an
    /// I/O or sled error the store is failed until [`QueueStore::reopen`], which reloads
    /// what reached the disk (so a retried commit may duplicate spans: at least once).
    pub fn commit(&mut self, commit: &Commit) -> Result<Committed, QueueError> {
        if let Some(len) = commit.spans.lens().find(|len| *len > MAX_SPAN_BYTES) {
            return Err(QueueError::SpanTooLarge {
                len,
                max: MAX_SPAN_BYTES,
            });
        }
        let packed = pack(&commit.spans);
        let new_bytes: u64 = packed.iter().map(|r| r.bytes).sum();
        self.check_free_space(new_bytes)?;
        if self.active()?.end >= self.options.segment_bytes && new_bytes > 0 {
            self.rotate()?;
        }

        let mut batch = sled::Batch::default();
        let mut next = self.committed + 1;
        let base = self.active()?.end;
        let mut records = Records::default();
        let mut new_records = Vec::with_capacity(packed.len());
        for record in &packed {
            let count = record.spans.len() as u32;
            let section = commit.spans.section(record.spans.clone());
            let (at, len) = records.push(next, count, section);
            let info = RecordInfo {
                count,
                offset: base + at,
                len,
            };
            batch.insert(
                &record::span_key(next, count),
                record::encode_location(info.offset, info.len),
            );
            new_records.push((next, info));
            next += u64::from(count);
        }
        let committed = next - 1;
        if committed != self.committed {
            batch.insert(
                record::META_COMMITTED,
                record::encode_envelope(&committed.to_be_bytes()),
            );
        }
        for (id, entry) in &commit.pending_put {
            batch.insert(
                prefixed(record::PREFIX_PENDING, id),
                record::encode_envelope(entry),
            );
        }
        for id in &commit.pending_remove {
            batch.remove(prefixed(record::PREFIX_PENDING, id));
        }
        for (input, checkpoint) in &commit.checkpoints {
            batch.insert(
                prefixed(record::PREFIX_INPUT, input.as_bytes()),
                record::encode_envelope(checkpoint),
            );
        }
        for (key, ids) in &commit.paired_put {
            batch.insert(
                prefixed(record::PREFIX_PAIRED, key),
                record::encode_envelope(ids),
            );
        }
        for key in &commit.paired_remove {
            batch.remove(prefixed(record::PREFIX_PAIRED, key));
        }

        // drop_oldest: to make room for new spans (only), whole oldest records leave the
        // queue in the same batch (the released watermark moves past them) and cursors move
        // past them.
        let mut dropped = Vec::new();
        let mut moved = BTreeMap::new();
        if self.options.overflow == Overflow::DropOldest && new_bytes > 0 {
            let mut bytes = self.bytes + new_bytes;
            for (first, info) in &self.records {
                if bytes <= self.options.max_bytes {
                    break;
                }
                bytes -= info.bytes();
                dropped.push((*first, *info));
            }
            if let Some((first, info)) = dropped.last() {
                let last = info.last(*first);
                for (name, cursor) in &self.cursors {
                    if *cursor < last {
                        batch.insert(cursor_key(name), cursor_value(last));
                        moved.insert(name.clone(), last);
                    }
                }
            }
        }
        let watermark = self.watermark(&dropped);
        if let Some(watermark) = watermark {
            batch.insert(record::META_RELEASED, cursor_value(watermark));
        }

        // The records first, durably: a batch that reached the disk names only records
        // that are there too, so a crash between the two loses the whole window and never
        // half of it (a waiting entry removed, but the span it made missing).
        if !records.is_empty() {
            self.write_records(&records)?;
        }
        self.apply(batch, true)?;

        let written = records.len();
        let sequences = self.committed + 1..committed + 1;
        self.committed = committed;
        for (first, info) in new_records {
            self.bytes += info.bytes();
            self.records.insert(first, info);
        }
        if let Some(active) = &mut self.active {
            active.end += written;
        }
        self.cursors.extend(moved);
        self.forget(&dropped, watermark);
        let dropped_spans: u64 = dropped.iter().map(|(_, info)| u64::from(info.count)).sum();
        if dropped_spans > 0 {
            self.dropped_spans += dropped_spans;
            self.log_drop(dropped_spans);
            self.delete_passed_segments()?;
        }
        if self.manifest_written.elapsed() >= MANIFEST_INTERVAL {
            self.update_manifest();
        }
        Ok(Committed {
            sequences,
            dropped_spans,
            full: self.is_full(),
        })
    }

    /// Closes the active segment and opens the next one, named after the next sequence.
    /// The new segment's data file is created empty first; its first batch (its base)
    /// carries everything that is not a span: the cursors, the released watermark and
    /// committed sequence, every waiting entry and input checkpoint (copied from the old
    /// segment), the record index of every closed segment still holding kept spans, and the
    /// skipped records; the base marker is in that same atomic batch. Only after it is
    /// flushed is the old segment dropped.
    fn rotate(&mut self) -> Result<(), QueueError> {
        let new_first = self.committed + 1;
        let old_first = self.active()?.first;
        let path = self.segment_path(new_first);
        if path.exists() {
            // A rotation that failed earlier in this run left it, holding no base.
            fs::remove_dir_all(&path).map_err(|source| QueueError::io(&path, source))?;
        }
        let mut batch = sled::Batch::default();
        base_entries(
            &mut batch,
            &self.manifest.db_id,
            new_first,
            self.committed,
            self.released,
            self.segment_size,
        );
        for (name, cursor) in &self.cursors {
            batch.insert(cursor_key(name), cursor_value(*cursor));
        }
        for prefix in [
            record::PREFIX_PENDING,
            record::PREFIX_INPUT,
            record::PREFIX_PAIRED,
        ] {
            let carried: Result<Vec<_>, _> = self.db()?.scan_prefix([prefix]).collect();
            match carried {
                Ok(entries) => {
                    for (key, value) in entries {
                        batch.insert(key, value);
                    }
                }
                Err(source) => return Err(self.failed(source)),
            }
        }
        let mut closed = self.closed.clone();
        closed.insert(old_first, new_first - 1);
        for (&seg_first, &seg_last) in &closed {
            let index: Vec<record::IndexEntry> = self
                .records
                .range(seg_first..=seg_last)
                .map(|(first, info)| (*first, info.count, info.offset, info.len))
                .collect();
            batch.insert(
                &record::seq_key(record::PREFIX_INDEX, seg_first),
                record::encode_index(seg_last, &index),
            );
        }
        for (first, count) in &self.skipped {
            batch.insert(
                &record::seq_key(record::PREFIX_SKIPPED, *first),
                record::encode_envelope(&count.to_be_bytes()),
            );
        }
        let created = create_segment(&path, self.segment_size, batch).and_then(|db| {
            let data = DataFile::open_rw(&path)
                .map_err(|source| QueueError::io(&path.join(DATA_FILE), source))?;
            sync_dir(&self.queue_dir)?;
            Ok((db, data))
        });
        let (db, data) = match created {
            Ok(created) => created,
            Err(err) => {
                fs::remove_dir_all(&path).ok();
                return Err(err);
            }
        };
        self.closed = closed;
        // Dropping the old handles closes the old segment (its records and index were made
        // durable by the commits that wrote them; acks since then are in the new base).
        self.active = Some(Active {
            first: new_first,
            db,
            data,
            end: 0,
        });
        self.delete_passed_segments()
    }

    /// Records the (flushed) committed sequence in the manifest; a failure only weakens
    /// truncation detection, so it is logged, not returned.
    fn update_manifest(&mut self) {
        self.manifest_written = Instant::now();
        if self.committed <= self.manifest.committed || self.active.is_none() {
            return;
        }
        let manifest = Manifest {
            committed: self.committed,
            ..self.manifest.clone()
        };
        match manifest.write(&manifest_path(&self.data_dir)) {
            Ok(()) => self.manifest = manifest,
            Err(err) => warn!(error = %err, "Could not update the queue manifest."),
        }
    }

    /// `block` only: true while the queue holds `max_bytes` or more; intake stays stopped.
    pub fn is_full(&self) -> bool {
        self.options.overflow == Overflow::Block && self.bytes >= self.options.max_bytes
    }

    fn check_free_space(&self, new_bytes: u64) -> Result<(), QueueError> {
        if self.options.min_free_bytes == 0 {
            return Ok(());
        }
        let Ok(fs) = nix::sys::statvfs::statvfs(&self.queue_dir) else {
            return Ok(()); // cannot tell: the writes' own ENOSPC is the fallback
        };
        let available = fs.blocks_available().saturating_mul(fs.fragment_size());
        let required = self.options.min_free_bytes.saturating_add(new_bytes);
        if available < required {
            return Err(QueueError::DiskFull {
                path: self.queue_dir.clone(),
                available,
                required,
            });
        }
        Ok(())
    }

    fn log_drop(&mut self, dropped: u64) {
        let (last, since) = &mut self.drop_log;
        *since += dropped;
        if last.is_none_or(|at| at.elapsed() >= DROP_LOG_INTERVAL) {
            warn!(
                dropped_spans = *since,
                max_bytes = self.options.max_bytes,
                "Queue reached max_bytes; dropped the oldest spans (overflow = drop_oldest)."
            );
            *last = Some(Instant::now());
            *since = 0;
        }
    }

    /// Appends the bytes of the record `(first, info)` to `buf`, from the active segment's
    /// data file or from the closed segment's that holds it (opened for reading; one at a
    /// time). `Ok(false)` (and `buf` unchanged): the record is not there (its file is
    /// shorter), or its closed segment's data file cannot be read (logged). An error
    /// reading the active segment fails the store.
    fn read_record(
        &mut self,
        buf: &mut Vec<u8>,
        first: u64,
        info: RecordInfo,
    ) -> Result<bool, QueueError> {
        let active = self.active()?;
        if first >= active.first {
            return match active.data.read_into(buf, info.offset, info.len) {
                Ok(()) => Ok(true),
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
                Err(source) => Err(self.failed_io(source)),
            };
        }
        let Some((&segment, _)) = self.closed.range(..=first).next_back() else {
            return Ok(false);
        };
        if self
            .reader
            .as_ref()
            .is_none_or(|(open, _)| *open != segment)
        {
            self.reader = None;
            let path = self.segment_path(segment);
            match DataFile::open_read(&path) {
                Ok(data) => self.reader = Some((segment, data)),
                Err(err) => {
                    warn!(path = %path.display(), error = %err, "A closed queue segment cannot be opened.");
                    return Ok(false);
                }
            }
        }
        let Some((_, data)) = &self.reader else {
            return Ok(false);
        };
        match data.read_into(buf, info.offset, info.len) {
            Ok(()) => Ok(true),
            Err(err) => {
                warn!(path = %data.path().display(), error = %err,
                    "Reading a closed queue segment failed.");
                Ok(false)
            }
        }
    }

    /// Up to `max` spans with sequence > `cursor`, in order, as `(sequence, bytes)`. A record
    /// that fails its checksum is counted, skipped and remembered as skipped (its sequences
    /// never come back); a record with an unknown version byte is
    /// [`QueueError::UnsupportedRecord`].
    pub fn read_after(
        &mut self,
        cursor: u64,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, QueueError> {
        Ok(self.read(cursor, max, usize::MAX)?.to_vec())
    }

    /// [`QueueStore::read_after`] without a copy per span, stopping once the spans read
    /// hold `max_bytes` (at least one span is read): a batch of large spans stays small in
    /// memory. The spans stay in the records they were read in.
    pub fn read(
        &mut self,
        cursor: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<ReadSpans, QueueError> {
        let mut out = ReadSpans::default();
        self.read_into(cursor, max, max_bytes, &mut out)?;
        Ok(out)
    }

    /// [`QueueStore::read`] into `out` (emptied first), reusing its buffers.
    pub fn read_into(
        &mut self,
        cursor: u64,
        max: usize,
        max_bytes: usize,
        out: &mut ReadSpans,
    ) -> Result<(), QueueError> {
        out.clear();
        let start = cursor + 1;
        let from = match self.records.range(..=start).next_back() {
            Some((first, info)) if info.last(*first) >= start => *first,
            _ => start,
        };
        let wanted: Vec<(u64, RecordInfo)> = self
            .records
            .range(from..)
            .scan(0usize, |taken, (first, info)| {
                (*taken < max).then(|| {
                    *taken += (info.last(*first) - start.max(*first) + 1) as usize;
                    (*first, *info)
                })
            })
            .collect();
        let mut corrupt = Vec::new();
        let mut places = Vec::new();
        for (first, info) in wanted {
            if out.span_bytes() >= max_bytes || out.len() >= max {
                break;
            }
            let skip = start.saturating_sub(first) as usize;
            let take = skip..skip + (max - out.len()).min(info.count as usize - skip);
            let at = out.buffer().len();
            let found = self.read_record(out.buffer(), first, info)?;
            places.clear();
            let parsed = if found {
                let bytes = &out.buffer()[at..];
                record::parse_record(bytes, first, info.count, |index, range| {
                    if take.contains(&index) {
                        places.push(at + range.start..at + range.end);
                    }
                })
            } else {
                Err(RecordError::Malformed("record missing from its data file"))
            };
            match parsed {
                Ok(()) => {
                    for (seq, range) in (first + skip as u64..).zip(places.drain(..)) {
                        if out.span_bytes() >= max_bytes && !out.is_empty() {
                            break;
                        }
                        out.push_span(seq, range);
                    }
                }
                Err(RecordError::UnknownVersion(version)) => {
                    return Err(QueueError::UnsupportedRecord {
                        path: self.queue_dir.clone(),
                        seq: first,
                        version,
                    });
                }
                Err(err) => {
                    out.buffer().truncate(at);
                    warn!(
                        path = %self.queue_dir.display(), first_sequence = first,
                        spans = info.count, error = %err,
                        "Queue record failed to decode; skipping it."
                    );
                    corrupt.push((first, info));
                }
            }
        }
        if !corrupt.is_empty() {
            let mut batch = sled::Batch::default();
            for (first, info) in &corrupt {
                batch.insert(
                    &record::seq_key(record::PREFIX_SKIPPED, *first),
                    record::encode_envelope(&info.count.to_be_bytes()),
                );
            }
            self.apply(batch, false)?;
            self.corrupt_records
                .set(self.corrupt_records.get() + corrupt.len() as u64);
            for (first, info) in &corrupt {
                self.skipped.insert(*first, info.count);
            }
            self.forget(&corrupt, None);
        }
        Ok(())
    }

    /// `sink`'s cursor: the last sequence it acknowledged.
    pub fn cursor(&self, sink: &str) -> Option<u64> {
        self.cursors.get(sink).copied()
    }

    /// Moves `sink`'s cursor forward to `seq` (never backwards) and releases the records
    /// every sink has passed, in one batch; a closed segment every sink has passed is then
    /// deleted whole. Not flushed (except before a deletion): a cursor move lost in a crash
    /// means redelivery (at least once); the next commit's flush makes it durable.
    pub fn ack(&mut self, sink: &str, seq: u64) -> Result<(), QueueError> {
        let Some(&cursor) = self.cursors.get(sink) else {
            return Err(QueueError::UnknownSink(sink.to_owned()));
        };
        if seq > self.committed {
            return Err(QueueError::AckBeyondCommitted {
                sink: sink.to_owned(),
                seq,
                committed: self.committed,
            });
        }
        if seq <= cursor {
            return Ok(());
        }
        let mut cursors = self.cursors.clone();
        cursors.insert(sink.to_owned(), seq);
        let released = self.passed_by_all(&cursors);
        let watermark = self.watermark(&released);
        let mut batch = sled::Batch::default();
        batch.insert(cursor_key(sink), cursor_value(seq));
        if let Some(watermark) = watermark {
            batch.insert(record::META_RELEASED, cursor_value(watermark));
        }
        self.apply(batch, false)?;
        self.cursors = cursors;
        self.forget(&released, watermark);
        self.delete_passed_segments()
    }

    /// Records whose every span all of `cursors` have passed (none when there are no sinks:
    /// with nothing to deliver to, nothing is released).
    fn passed_by_all(&self, cursors: &BTreeMap<String, u64>) -> Vec<(u64, RecordInfo)> {
        let Some(min) = cursors.values().min() else {
            return Vec::new();
        };
        self.records
            .iter()
            .take_while(|(first, info)| info.last(**first) <= *min)
            .map(|(first, info)| (*first, *info))
            .collect()
    }

    /// The released watermark after `records` (a prefix of the kept records) leave.
    fn watermark(&self, records: &[(u64, RecordInfo)]) -> Option<u64> {
        let (first, info) = records.last()?;
        Some(info.last(*first).max(self.released))
    }

    fn forget(&mut self, records: &[(u64, RecordInfo)], watermark: Option<u64>) {
        for (first, info) in records {
            if self.records.remove(first).is_some() {
                self.bytes -= info.bytes();
            }
        }
        if let Some(watermark) = watermark {
            self.released = watermark;
            self.skipped = self.skipped.split_off(&(watermark + 1));
        }
    }

    /// Deletes every closed segment whose spans have all left the queue: first the active
    /// segment is flushed (so that the released watermark that allows it is durable), then
    /// the directories go; their index entries are left for the next rotation to drop.
    fn delete_passed_segments(&mut self) -> Result<(), QueueError> {
        let doomed: Vec<u64> = self
            .closed
            .iter()
            .filter(|(_, last)| **last <= self.released)
            .map(|(first, _)| *first)
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        let flushed = self.db()?.flush();
        if let Err(source) = flushed {
            return Err(self.failed(source));
        }
        for first in doomed {
            if self.reader.as_ref().is_some_and(|(open, _)| *open == first) {
                self.reader = None;
            }
            let path = self.segment_path(first);
            match fs::remove_dir_all(&path) {
                Ok(()) => {
                    self.closed.remove(&first);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    self.closed.remove(&first);
                }
                // Tried again at the next release or start; the spans in it are released.
                Err(err) => {
                    warn!(path = %path.display(), error = %err, "Could not delete a passed queue segment.");
                }
            }
        }
        Ok(())
    }

    /// Every waiting correlator entry (id, entry), for start-up. Entries that fail to
    /// decode are counted and left out.
    pub fn pending(&self) -> Result<Vec<PendingEntry>, QueueError> {
        let mut out = Vec::new();
        for item in self.db()?.scan_prefix([record::PREFIX_PENDING]) {
            let (key, value) = item.map_err(|source| self.sled_err(source))?;
            match record::decode_envelope(&value) {
                Ok(entry) => out.push((key[1..].to_vec(), entry.to_vec())),
                Err(err) => self.count_corrupt("pending entry", &key[1..], &err),
            }
        }
        Ok(out)
    }

    /// Every paired-id record (key after the prefix, ids), for start-up. Records that fail
    /// to decode are counted and left out (repeats of their ids are then not recognised).
    pub fn paired(&self) -> Result<Vec<PairedRecord>, QueueError> {
        let mut out = Vec::new();
        for item in self.db()?.scan_prefix([record::PREFIX_PAIRED]) {
            let (key, value) = item.map_err(|source| self.sled_err(source))?;
            match record::decode_envelope(&value) {
                Ok(ids) => out.push((key[1..].to_vec(), ids.to_vec())),
                Err(err) => self.count_corrupt("paired-id record", &key[1..], &err),
            }
        }
        Ok(out)
    }

    /// The checkpoint last committed for `input`; a damaged one is counted and `None`
    /// (the input starts over: duplicates, not loss).
    pub fn checkpoint(&self, input: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let key = prefixed(record::PREFIX_INPUT, input.as_bytes());
        let Some(value) = self
            .db()?
            .get(&key)
            .map_err(|source| self.sled_err(source))?
        else {
            return Ok(None);
        };
        match record::decode_envelope(&value) {
            Ok(checkpoint) => Ok(Some(checkpoint.to_vec())),
            Err(err) => {
                self.count_corrupt("input checkpoint", input.as_bytes(), &err);
                Ok(None)
            }
        }
    }

    fn sled_err(&self, source: sled::Error) -> QueueError {
        QueueError::Sled {
            path: self.queue_dir.clone(),
            cause: source,
        }
    }

    fn count_corrupt(&self, what: &str, key: &[u8], err: &RecordError) {
        self.corrupt_records.set(self.corrupt_records.get() + 1);
        warn!(path = %self.queue_dir.display(), key = %String::from_utf8_lossy(key), error = %err,
            "Queue {what} failed to decode; ignoring it.");
    }

    /// Counts, bytes and cursors, from memory.
    pub fn stats(&self) -> Stats {
        Stats {
            spans: self
                .records
                .values()
                .map(|info| u64::from(info.count))
                .sum(),
            records: self.records.len() as u64,
            bytes: self.bytes,
            max_bytes: self.options.max_bytes,
            committed: self.committed,
            oldest: self.records.keys().next().copied(),
            sinks: self
                .cursors
                .iter()
                .map(|(name, cursor)| SinkStats {
                    name: name.clone(),
                    cursor: *cursor,
                    lag: self.committed.saturating_sub(*cursor),
                })
                .collect(),
            dropped_spans: self.dropped_spans,
            corrupt_records: self.corrupt_records.get(),
            segments: self.closed.len() as u64 + u64::from(self.active.is_some()),
        }
    }

    /// Offline: copies what the queue in `from_data_dir` keeps (spans, cursors, waiting
    /// entries, checkpoints, the sequence) into a new queue in `to_data_dir`, which must not
    /// hold one yet, and returns the new queue's stats. The source is locked and left
    /// untouched; swapping the directories is the caller's step. With whole segments
    /// deleted once every sink passed them this is rarely needed: it gives back only the
    /// space of released records in a segment that still holds kept ones.
    pub fn compact(from_data_dir: &Path, to_data_dir: &Path) -> Result<Stats, QueueError> {
        let mut from = QueueStore::open(from_data_dir, offline_options())?;
        let contents = Contents {
            committed: from.committed,
            cursors: from.cursors.clone(),
            pending: raw_prefix(from.db()?, record::PREFIX_PENDING, &from.queue_dir)?,
            inputs: raw_prefix(from.db()?, record::PREFIX_INPUT, &from.queue_dir)?,
            paired: raw_prefix(from.db()?, record::PREFIX_PAIRED, &from.queue_dir)?,
        };
        let records: Vec<(u64, RecordInfo)> = from.records.iter().map(|(f, i)| (*f, *i)).collect();
        // Records that cannot be read are left out, as a read would skip them.
        let values = records.into_iter().filter_map(move |(first, info)| {
            let mut bytes = Vec::new();
            match from.read_record(&mut bytes, first, info) {
                Ok(true) => match record_spans(&bytes, first, info.count) {
                    Ok(spans) => Some(Ok((first, spans))),
                    Err(RecordError::UnknownVersion(version)) => {
                        Some(Err(QueueError::UnsupportedRecord {
                            path: from.queue_dir.clone(),
                            seq: first,
                            version,
                        }))
                    }
                    Err(_) => None,
                },
                Ok(false) => None,
                Err(err) => Some(Err(err)),
            }
        });
        QueueStore::create_from(to_data_dir, contents, values)
    }

    /// Offline: a new queue in `to_data_dir` (which must hold none) holding `contents` and
    /// `records` (first sequence and spans of each record; ascending), written segment by
    /// segment as commits would have; returns its stats once reopened.
    pub(crate) fn create_from(
        to_data_dir: &Path,
        contents: Contents,
        records: impl Iterator<Item = Result<(u64, EncodedSpans), QueueError>>,
    ) -> Result<Stats, QueueError> {
        let to_queue = to_data_dir.join("queue");
        if to_queue.exists() || manifest_path(to_data_dir).exists() {
            return Err(QueueError::DestinationNotEmpty { path: to_queue });
        }
        let options = offline_options();
        let mut to = QueueStore::open(to_data_dir, options)?;
        let mut batch = sled::Batch::default();
        // Records read but not written yet, and their bytes.
        let mut pending: Vec<(u64, EncodedSpans)> = Vec::new();
        let mut pending_bytes = 0;
        for item in records {
            let (first, spans) = item?;
            if spans.is_empty() {
                continue;
            }
            if to.active()?.end + pending_bytes >= options.segment_bytes {
                to.copy_out(&mut pending, std::mem::take(&mut batch))?;
                pending_bytes = 0;
                // The next segment is named after the record that goes in it first.
                to.committed = first - 1;
                to.rotate()?;
            }
            let count = spans.len() as u32;
            let len = (record::SPAN_RECORD_OVERHEAD + spans.byte_len()) as u32;
            let info = RecordInfo {
                count,
                offset: to.active()?.end + pending_bytes,
                len,
            };
            batch.insert(
                &record::span_key(first, count),
                record::encode_location(info.offset, info.len),
            );
            to.records.insert(first, info);
            to.bytes += info.bytes();
            pending_bytes += u64::from(len);
            pending.push((first, spans));
            if pending_bytes >= COPY_BATCH_BYTES as u64 {
                to.copy_out(&mut pending, std::mem::take(&mut batch))?;
                pending_bytes = 0;
            }
        }
        let last = to.records.iter().next_back().map(|(f, i)| i.last(*f));
        to.committed = last.unwrap_or(0).max(contents.committed);
        to.released = to
            .records
            .keys()
            .next()
            .map_or(to.committed, |first| first - 1);
        batch.insert(
            record::META_COMMITTED,
            record::encode_envelope(&to.committed.to_be_bytes()),
        );
        batch.insert(record::META_RELEASED, cursor_value(to.released));
        for (name, cursor) in &contents.cursors {
            batch.insert(cursor_key(name), cursor_value(*cursor));
        }
        for (id, value) in contents.pending {
            batch.insert(prefixed(record::PREFIX_PENDING, &id), value);
        }
        for (input, value) in contents.inputs {
            batch.insert(prefixed(record::PREFIX_INPUT, &input), value);
        }
        for (key, value) in contents.paired {
            batch.insert(prefixed(record::PREFIX_PAIRED, &key), value);
        }
        to.copy_out(&mut pending, batch)?;
        drop(to);
        let to = QueueStore::open(to_data_dir, options)?;
        Ok(to.stats())
    }

    /// [`QueueStore::create_from`]'s commit: the `pending` records (emptied), then `batch`.
    fn copy_out(
        &mut self,
        pending: &mut Vec<(u64, EncodedSpans)>,
        batch: sled::Batch,
    ) -> Result<(), QueueError> {
        let mut records = Records::default();
        for (first, spans) in pending.iter() {
            records.push(*first, spans.len() as u32, spans.section(0..spans.len()));
        }
        if !records.is_empty() {
            self.write_records(&records)?;
        }
        self.apply(batch, true)?;
        let written = records.len();
        drop(records);
        pending.clear();
        if let Some(active) = &mut self.active {
            active.end += written;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn raw_db(&self) -> &sled::Db {
        &self.active.as_ref().expect("open").db
    }
}

/// What a new queue holds besides its span records, for [`QueueStore::create_from`]
/// (compaction and the migration from formats 1 and 2). Values are raw: envelopes as stored.
pub(crate) struct Contents {
    pub committed: u64,
    pub cursors: BTreeMap<String, u64>,
    /// Waiting entries: id → stored value.
    pub pending: Vec<(Vec<u8>, sled::IVec)>,
    /// Input checkpoints: name → stored value.
    pub inputs: Vec<(Vec<u8>, sled::IVec)>,
    /// Paired-id records: key → stored value.
    pub paired: Vec<(Vec<u8>, sled::IVec)>,
}

/// Options of the offline copies: no bound, no headroom check, default segments.
fn offline_options() -> StoreOptions {
    StoreOptions {
        max_bytes: u64::MAX,
        overflow: Overflow::Block,
        min_free_bytes: 0,
        segment_bytes: SEGMENT_BYTES,
    }
}

impl Drop for QueueStore {
    fn drop(&mut self) {
        // Acks are not flushed as they happen; a clean close keeps them.
        if let Some(active) = &self.active
            && let Err(err) = active.db.flush()
        {
            warn!(error = %err, "Could not flush the queue at close.");
        }
        self.update_manifest();
    }
}

/// The spans of a data-file record (checked as [`record::parse_record`] checks it).
pub(crate) fn record_spans(
    bytes: &[u8],
    first: u64,
    count: u32,
) -> Result<EncodedSpans, RecordError> {
    let mut starts = Vec::with_capacity(count as usize);
    record::parse_record(bytes, first, count, |_, range| {
        starts.push(range.start - record::SPAN_PREFIX_BYTES - record::SPAN_RECORD_HEADER);
    })?;
    let section = &bytes[record::SPAN_RECORD_HEADER..bytes.len() - 4];
    Ok(EncodedSpans::from_section(section, &starts))
}

/// Every stored value under `prefix` in `db`, keyed without the prefix.
fn raw_prefix(
    db: &sled::Db,
    prefix: u8,
    path: &Path,
) -> Result<Vec<(Vec<u8>, sled::IVec)>, QueueError> {
    db.scan_prefix([prefix])
        .map(|item| {
            item.map(|(key, value)| (key[1..].to_vec(), value))
                .map_err(|source| sled_error(path, source))
        })
        .collect()
}

/// One record of a commit: which spans, and its size in bytes (key + record).
struct Packed {
    spans: Range<usize>,
    bytes: u64,
}

/// Splits a commit's spans into records of about [`RECORD_TARGET_BYTES`].
fn pack(spans: &EncodedSpans) -> Vec<Packed> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    let lens: Vec<usize> = spans.lens().collect();
    for (index, span) in lens.iter().enumerate() {
        let len = span + record::SPAN_PREFIX_BYTES;
        if index > start && size + len > RECORD_TARGET_BYTES {
            out.push(Packed {
                spans: start..index,
                bytes: record::record_bytes(lens[start..index].iter().copied()),
            });
            start = index;
            size = 0;
        }
        size += len;
    }
    if start < lens.len() {
        out.push(Packed {
            spans: start..lens.len(),
            bytes: record::record_bytes(lens[start..].iter().copied()),
        });
    }
    out
}

fn prefixed(prefix: u8, name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1);
    key.push(prefix);
    key.extend_from_slice(name);
    key
}

fn cursor_key(sink: &str) -> Vec<u8> {
    prefixed(record::PREFIX_CURSOR, sink.as_bytes())
}

fn cursor_value(seq: u64) -> Vec<u8> {
    record::encode_envelope(&seq.to_be_bytes())
}

pub(crate) fn decode_u64(value: &[u8]) -> Result<u64, RecordError> {
    let payload = record::decode_envelope(value)?;
    let bytes: [u8; 8] = payload
        .try_into()
        .map_err(|_| RecordError::Malformed("not a u64"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The entries every segment's base starts with.
fn base_entries(
    batch: &mut sled::Batch,
    db_id: &str,
    first: u64,
    committed: u64,
    released: u64,
    segment_size: usize,
) {
    batch.insert(
        record::META_FORMAT,
        record::encode_envelope(&u64::from(FORMAT_VERSION).to_be_bytes()),
    );
    batch.insert(
        record::META_DB_ID,
        record::encode_envelope(db_id.as_bytes()),
    );
    batch.insert(
        record::META_SEGMENT_SIZE,
        record::encode_envelope(&(segment_size as u64).to_be_bytes()),
    );
    batch.insert(record::META_FIRST, cursor_value(first));
    batch.insert(
        record::META_COMMITTED,
        record::encode_envelope(&committed.to_be_bytes()),
    );
    batch.insert(record::META_RELEASED, cursor_value(released));
    batch.insert(record::META_BASE, cursor_value(1));
}

/// Makes the segment directory `path`: its empty data file, its sled database, the
/// directory fsynced (so that both names survive a power loss), then `base` (which must
/// end with the base marker) applied and flushed. The caller fsyncs the queue directory
/// and removes `path` if this fails.
fn create_segment(
    path: &Path,
    segment_size: usize,
    base: sled::Batch,
) -> Result<sled::Db, QueueError> {
    fs::create_dir_all(path).map_err(|source| QueueError::io(path, source))?;
    DataFile::create(path).map_err(|source| QueueError::io(&path.join(DATA_FILE), source))?;
    let db = open_segment(path, segment_size)?;
    sync_dir(path)?;
    db.apply_batch(base)
        .and_then(|()| db.flush().map(drop))
        .map_err(|source| sled_error(path, source))?;
    Ok(db)
}

/// `<queue_dir>/<first, 20 digits>`: names sort in sequence order.
pub(crate) fn segment_path(queue_dir: &Path, first: u64) -> PathBuf {
    queue_dir.join(format!("{first:020}"))
}

/// The first sequences of the segment directories in `queue_dir`, ascending (none when the
/// directory does not exist).
pub(crate) fn list_segments(queue_dir: &Path) -> Result<Vec<u64>, QueueError> {
    let entries = match fs::read_dir(queue_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(QueueError::io(queue_dir, source)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| QueueError::io(queue_dir, source))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() == 20
            && name.bytes().all(|b| b.is_ascii_digit())
            && let Ok(first) = name.parse()
        {
            out.push(first);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| QueueError::io(dir, source))
}

fn sled_error(path: &Path, source: sled::Error) -> QueueError {
    QueueError::Sled {
        path: path.to_owned(),
        cause: source,
    }
}

/// The `db_id` and format a segment's base records.
pub(crate) fn read_identity(db: &sled::Db, path: &Path) -> Result<(String, u64), QueueError> {
    let corrupt = |what: &str, err: RecordError| QueueError::Unreadable {
        path: path.to_owned(),
        detail: format!("its {what} entry failed to decode: {err}"),
    };
    let get = |key: &[u8]| {
        db.get(key)
            .map_err(|source| sled_error(path, source))?
            .ok_or_else(|| QueueError::Unreadable {
                path: path.to_owned(),
                detail: format!("its base has no {}", String::from_utf8_lossy(&key[1..])),
            })
    };
    let id = get(record::META_DB_ID)?;
    let id = record::decode_envelope(&id).map_err(|err| corrupt("db_id", err))?;
    let format = decode_u64(&get(record::META_FORMAT)?).map_err(|err| corrupt("format", err))?;
    Ok((String::from_utf8_lossy(id).into_owned(), format))
}

/// Runs `f`, catching a panic (sled panics on garbage in its files) without the panic
/// hook's message and backtrace on stderr: the operator gets our error naming the path
/// instead. The hook is replaced once by one that stays silent only on a thread inside
/// `quietly` and otherwise calls the previous hook, so that concurrent opens (tests run in
/// parallel) cannot leave a silent hook behind, and other threads' panics are still shown.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was_quiet = QUIET.with(|quiet| quiet.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|quiet| quiet.set(was_quiet));
    result
}

pub(crate) fn unreadable(path: &Path, panic: Box<dyn std::any::Any + Send>) -> QueueError {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "sled panicked".to_owned());
    QueueError::Unreadable {
        path: path.to_owned(),
        detail,
    }
}

/// Opens (or creates) the sled database at `path` (catching its panic on garbage).
pub(crate) fn open_segment(path: &Path, segment_size: usize) -> Result<sled::Db, QueueError> {
    let config = sled::Config::new()
        .path(path)
        .segment_size(segment_size)
        .cache_capacity(CACHE_CAPACITY);
    match quietly(|| config.open()) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(err))) if err.to_string().contains("could not acquire lock") => {
            Err(QueueError::Locked {
                path: path.to_owned(),
                pid: None,
            })
        }
        Ok(Err(source @ (sled::Error::Corruption { .. } | sled::Error::Unsupported(_)))) => {
            Err(QueueError::Unreadable {
                path: path.to_owned(),
                detail: source.to_string(),
            })
        }
        Ok(Err(source)) => Err(sled_error(path, source)),
        Err(panic) => Err(unreadable(path, panic)),
    }
}

fn new_db_id(db_path: &Path) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(now.as_nanos().to_be_bytes());
    hasher.update(std::process::id().to_be_bytes());
    hasher.update(db_path.as_os_str().as_encoded_bytes());
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opens the active segment's data file and cuts off what a commit wrote but never
/// indexed (its batch did not reach the disk). A data file that is missing although the
/// index names records in it is an error; one shorter than the index says is logged, and
/// the records past its end are counted and skipped when read.
fn open_active_data(
    path: &Path,
    loaded: &Loaded,
    manifest_file: &Path,
    db_id: &str,
) -> Result<DataFile, QueueError> {
    let data_path = path.join(DATA_FILE);
    let data = match DataFile::open_rw(path) {
        Ok(data) => data,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && loaded.end == 0 => {
            // Nothing was ever written to it: as good as the empty file it was.
            DataFile::create(path).map_err(|source| QueueError::io(&data_path, source))?
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(QueueError::Missing {
                path: data_path,
                manifest: manifest_file.to_owned(),
                db_id: db_id.to_owned(),
            });
        }
        Err(source) => return Err(QueueError::io(&data_path, source)),
    };
    let len = data
        .len()
        .map_err(|source| QueueError::io(&data_path, source))?;
    if len > loaded.end {
        data.truncate(loaded.end)
            .map_err(|source| QueueError::io(&data_path, source))?;
    } else if len < loaded.end {
        warn!(
            path = %data_path.display(), length = len, indexed = loaded.end,
            "The queue's data file is shorter than its index says; the records past its end are skipped."
        );
    }
    Ok(data)
}

/// Reads the header of every record kept in the active segment: one of a version this
/// build does not know (a newer auditspan wrote it) is an error at open, as it is at read.
fn check_record_versions(data: &DataFile, loaded: &Loaded) -> Result<(), QueueError> {
    for (first, info) in loaded.records.range(loaded.first..) {
        let Ok(header) = data.read(info.offset, record::SPAN_RECORD_HEADER as u32) else {
            continue; // counted when read
        };
        if header[0] != record::SPAN_RECORD_VERSION {
            return Err(QueueError::UnsupportedRecord {
                path: data.path().to_owned(),
                seq: *first,
                version: header[0],
            });
        }
    }
    Ok(())
}

/// Reads the state the store keeps in memory from the active segment (whose directory
/// says it starts at `first`). Unknown value versions are an error; damaged cursors,
/// indexes and `committed` are counted and rebuilt (a sink then starts at the oldest span).
fn load_active(db: &sled::Db, path: &Path, first: u64) -> Result<Loaded, QueueError> {
    let sled_err = |source| sled_error(path, source);
    let mut loaded = Loaded {
        first,
        records: BTreeMap::new(),
        bytes: 0,
        committed: 0,
        released: 0,
        cursors: BTreeMap::new(),
        closed: BTreeMap::new(),
        skipped: BTreeMap::new(),
        corrupt: 0,
        end: 0,
    };
    let get_u64 = |key: &[u8]| -> Result<Option<Result<u64, RecordError>>, QueueError> {
        Ok(db.get(key).map_err(sled_err)?.map(|v| decode_u64(&v)))
    };
    match get_u64(record::META_FIRST)? {
        Some(Ok(stored)) if stored == first => {}
        other => {
            return Err(QueueError::Unreadable {
                path: path.to_owned(),
                detail: format!("its base names first sequence {other:?}, its directory {first}"),
            });
        }
    }
    match get_u64(record::META_RELEASED)? {
        Some(Ok(released)) => loaded.released = released,
        Some(Err(err)) => {
            // Without it, released spans of a segment not yet deleted would be delivered
            // again: duplicates, never loss.
            warn!(path = %path.display(), error = %err, "Queue released sequence failed to decode.");
            loaded.corrupt += 1;
        }
        None => {}
    }
    for item in db.scan_prefix([record::PREFIX_SKIPPED]) {
        let (key, value) = item.map_err(sled_err)?;
        let count = record::decode_envelope(&value)
            .ok()
            .and_then(|p| <[u8; 4]>::try_from(p).ok())
            .map(u32::from_be_bytes);
        match (record::parse_seq_key(&key), count) {
            (Some(first), Some(count)) if first > loaded.released => {
                loaded.skipped.insert(first, count);
            }
            (Some(_), Some(_)) => {}
            _ => loaded.corrupt += 1,
        }
    }
    let keep = |loaded: &mut Loaded, first: u64, info: RecordInfo| {
        loaded.committed = loaded.committed.max(info.last(first));
        if first > loaded.released && !loaded.skipped.contains_key(&first) {
            loaded.bytes += info.bytes();
            loaded.records.insert(first, info);
        }
    };
    for item in db.scan_prefix([record::PREFIX_INDEX]) {
        let (key, value) = item.map_err(sled_err)?;
        let segment = record::parse_seq_key(&key);
        match (segment, record::decode_index(&value)) {
            (Some(segment), Ok((last, entries))) => {
                loaded.closed.insert(segment, last);
                for (first, count, offset, len) in entries.into_iter().filter(|e| e.1 > 0) {
                    keep(&mut loaded, first, RecordInfo { count, offset, len });
                }
            }
            (_, Err(err)) if !err.is_corruption() => {
                return Err(QueueError::Unreadable {
                    path: path.to_owned(),
                    detail: format!("a segment index is of a newer format: {err}"),
                });
            }
            _ => {
                // Its spans cannot be found any more: counted, and they are not delivered.
                warn!(path = %path.display(), "A closed segment's index failed to decode; its spans are skipped.");
                loaded.corrupt += 1;
            }
        }
    }
    for item in db.scan_prefix([record::PREFIX_SPANS]) {
        let (key, value) = item.map_err(sled_err)?;
        let Some((first, count)) = record::parse_span_key(&key) else {
            warn!(path = %path.display(), "Queue holds a span key of the wrong shape; ignoring it.");
            loaded.corrupt += 1;
            continue;
        };
        match record::decode_location(&value) {
            Ok((offset, len)) => {
                loaded.end = loaded.end.max(offset + u64::from(len));
                keep(&mut loaded, first, RecordInfo { count, offset, len });
            }
            Err(RecordError::UnknownVersion(version)) => {
                return Err(QueueError::UnsupportedRecord {
                    path: path.to_owned(),
                    seq: first,
                    version,
                });
            }
            Err(err) => {
                // Without its place the record cannot be read: counted, and its spans are
                // not delivered; the sequence still counts as committed.
                warn!(path = %path.display(), first_sequence = first, error = %err,
                    "Queue record index entry failed to decode; skipping the record.");
                loaded.committed = loaded.committed.max(first + u64::from(count) - 1);
                loaded.corrupt += 1;
            }
        }
    }
    for item in db.scan_prefix([record::PREFIX_CURSOR]) {
        let (key, value) = item.map_err(sled_err)?;
        let name = String::from_utf8_lossy(&key[1..]).into_owned();
        match decode_u64(&value) {
            Ok(cursor) => {
                loaded.committed = loaded.committed.max(cursor);
                loaded.cursors.insert(name, cursor);
            }
            Err(err) => {
                warn!(path = %path.display(), sink = %name, error = %err,
                    "Queue cursor failed to decode; the sink starts at the oldest span.");
                loaded.corrupt += 1;
            }
        }
    }
    match get_u64(record::META_COMMITTED)? {
        Some(Ok(committed)) => loaded.committed = loaded.committed.max(committed),
        Some(Err(err)) => {
            warn!(path = %path.display(), error = %err,
                "Queue committed sequence failed to decode; rebuilt from records and cursors.");
            loaded.corrupt += 1;
        }
        None => {}
    }
    loaded.committed = loaded.committed.max(loaded.released).max(first - 1);
    if !loaded.records.is_empty() || !loaded.closed.is_empty() {
        info!(
            path = %path.display(),
            records = loaded.records.len(),
            closed_segments = loaded.closed.len(),
            "Queue loaded."
        );
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn options() -> StoreOptions {
        StoreOptions {
            max_bytes: 1 << 30,
            overflow: Overflow::DropOldest,
            min_free_bytes: 0,
            segment_bytes: SEGMENT_BYTES,
        }
    }

    /// The newest segment directory of the queue in `dir` (the active one).
    fn active_segment(dir: &Path) -> PathBuf {
        let queue = dir.join("queue");
        let newest = list_segments(&queue).unwrap().pop().unwrap();
        segment_path(&queue, newest)
    }

    fn open(dir: &Path) -> QueueStore {
        QueueStore::open(dir, options()).unwrap()
    }

    fn spans(range: Range<u64>) -> Vec<Vec<u8>> {
        range.map(|n| format!("span {n}").into_bytes()).collect()
    }

    fn commit_spans(store: &mut QueueStore, spans: Vec<Vec<u8>>) -> Committed {
        store
            .commit(&Commit {
                spans: spans.into(),
                ..Commit::default()
            })
            .unwrap()
    }

    fn sinks(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    /// Replaces byte `at` of the record `(first, count)` in the active segment's data file
    /// with `damage(byte)`.
    fn damage_record(store: &QueueStore, first: u64, count: u32, at: u64, damage: fn(u8) -> u8) {
        use std::os::unix::fs::FileExt;
        let location = store
            .raw_db()
            .get(record::span_key(first, count))
            .unwrap()
            .unwrap();
        let (offset, _) = record::decode_location(&location).unwrap();
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(active_segment(&store.data_dir).join(DATA_FILE))
            .unwrap();
        let mut byte = [0];
        file.read_exact_at(&mut byte, offset + at).unwrap();
        file.write_all_at(&[damage(byte[0])], offset + at).unwrap();
    }

    fn seqs(read: &[(u64, Vec<u8>)]) -> Vec<u64> {
        read.iter().map(|(seq, _)| *seq).collect()
    }

    /// Spans come back in order with their sequences, and go once every sink acked them.
    #[test]
    fn commit_read_ack_deletes_what_every_sink_passed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_sinks(&sinks(&["a", "b"])).unwrap();
        assert_eq!(commit_spans(&mut store, spans(1..4)).sequences, 1..4);
        assert_eq!(commit_spans(&mut store, spans(4..6)).sequences, 4..6);
        let read = store.read_after(0, 100).unwrap();
        assert_eq!(read, (1..6).zip(spans(1..6)).collect::<Vec<_>>());
        assert_eq!(seqs(&store.read_after(2, 2).unwrap()), [3, 4]);

        store.ack("a", 5).unwrap();
        assert_eq!(store.stats().spans, 5, "b still holds everything");
        store.ack("b", 3).unwrap();
        let stats = store.stats();
        assert_eq!((stats.spans, stats.records, stats.oldest), (2, 1, Some(4)));
        assert_eq!(
            stats.sinks[1],
            SinkStats {
                name: "b".into(),
                cursor: 3,
                lag: 2
            }
        );
        store.ack("b", 1).unwrap();
        assert_eq!(store.cursor("b"), Some(3), "never backwards");
        store.ack("b", 5).unwrap();
        assert_eq!((store.stats().spans, store.stats().bytes), (0, 0));
        assert!(store.read_after(5, 10).unwrap().is_empty());
        assert!(matches!(
            store.ack("b", 6),
            Err(QueueError::AckBeyondCommitted { .. })
        ));
        assert!(matches!(store.ack("c", 1), Err(QueueError::UnknownSink(_))));
    }

    /// A cursor inside a multi-span record reads from the next span; the record stays until
    /// its last span is passed.
    #[test]
    fn cursor_inside_a_multi_span_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_sinks(&sinks(&["a"])).unwrap();
        commit_spans(&mut store, spans(1..11));
        assert_eq!(store.stats().records, 1);
        store.ack("a", 4).unwrap();
        assert_eq!(store.stats().spans, 10);
        assert_eq!(
            store.read_after(4, 3).unwrap(),
            (5..8).zip(spans(5..8)).collect::<Vec<_>>()
        );
        store.ack("a", 10).unwrap();
        assert_eq!(store.stats().records, 0);
    }

    /// A commit larger than the record target is split into records; an oversized span is
    /// refused before anything is written.
    #[test]
    fn large_commits_split_into_records_and_oversized_spans_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let big: Vec<Vec<u8>> = (0..5u8).map(|n| vec![n; 200 << 10]).collect();
        assert_eq!(commit_spans(&mut store, big.clone()).sequences, 1..6);
        assert_eq!(store.stats().records, 5);
        assert_eq!(
            store.read_after(0, 10).unwrap(),
            (1..6).zip(big).collect::<Vec<_>>()
        );
        let err = store.commit(&Commit {
            spans: vec![vec![0; MAX_SPAN_BYTES + 1]].into(),
            ..Commit::default()
        });
        assert!(matches!(err, Err(QueueError::SpanTooLarge { .. })));
        assert_eq!(store.stats().committed, 5);
    }

    /// A sink added later starts at the oldest span still kept, not at the newest.
    #[test]
    fn added_sink_starts_at_the_oldest_span_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_sinks(&sinks(&["a"])).unwrap();
        commit_spans(&mut store, spans(1..4));
        commit_spans(&mut store, spans(4..7));
        store.ack("a", 5).unwrap();
        store.set_sinks(&sinks(&["a", "b"])).unwrap();
        assert_eq!(store.cursor("b"), Some(3));
        assert_eq!(store.stats().sinks[1].lag, 3);
        store.ack("a", 6).unwrap();
        store.ack("b", 6).unwrap();
        store.set_sinks(&sinks(&["a", "b", "c"])).unwrap();
        assert_eq!(
            store.cursor("c"),
            Some(6),
            "an empty queue starts new sinks at the end"
        );
    }

    /// A sink removed from the config stops holding spans back.
    #[test]
    fn removed_sink_releases_its_spans() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_sinks(&sinks(&["a", "slow"])).unwrap();
        commit_spans(&mut store, spans(1..4));
        store.ack("a", 3).unwrap();
        assert_eq!(store.stats().spans, 3);
        store.set_sinks(&sinks(&["a"])).unwrap();
        assert_eq!(store.stats().spans, 0);
        assert_eq!(store.cursor("slow"), None);
        drop(store);
        assert_eq!(open(dir.path()).cursor("slow"), None);
    }

    /// Drop and reopen: spans, cursors, sequence, waiting entries, checkpoints and
    /// paired-id records survive; answered entries and forgotten records stay removed.
    #[test]
    fn restart_keeps_spans_cursors_pending_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_sinks(&sinks(&["a"])).unwrap();
        store
            .commit(&Commit {
                spans: spans(1..6).into(),
                pending_put: vec![
                    (b"req-1".to_vec(), b"one".to_vec()),
                    (b"req-2".to_vec(), b"two".to_vec()),
                ],
                pending_remove: vec![],
                checkpoints: vec![("file".into(), b"offset 10".to_vec())],
                paired_put: vec![
                    (b"window-1".to_vec(), b"ids of 1".to_vec()),
                    (b"window-2".to_vec(), b"ids of 2".to_vec()),
                ],
                paired_remove: vec![],
            })
            .unwrap();
        store.ack("a", 2).unwrap();
        store
            .commit(&Commit {
                spans: spans(6..8).into(),
                pending_put: vec![(b"req-3".to_vec(), b"three".to_vec())],
                pending_remove: vec![b"req-1".to_vec()],
                checkpoints: vec![("file".into(), b"offset 20".to_vec())],
                paired_put: vec![(b"window-3".to_vec(), b"ids of 3".to_vec())],
                paired_remove: vec![b"window-1".to_vec()],
            })
            .unwrap();
        let before = store.stats();
        drop(store);

        let mut store = open(dir.path());
        assert_eq!(store.stats(), before);
        assert_eq!(store.cursor("a"), Some(2));
        assert_eq!(
            store.read_after(2, 100).unwrap(),
            (3..8).zip(spans(3..8)).collect::<Vec<_>>()
        );
        assert_eq!(
            store.pending().unwrap(),
            [
                (b"req-2".to_vec(), b"two".to_vec()),
                (b"req-3".to_vec(), b"three".to_vec())
            ]
        );
        assert_eq!(
            store.checkpoint("file").unwrap(),
            Some(b"offset 20".to_vec())
        );
        assert_eq!(store.checkpoint("other").unwrap(), None);
        assert_eq!(
            store.paired().unwrap(),
            [
                (b"window-2".to_vec(), b"ids of 2".to_vec()),
                (b"window-3".to_vec(), b"ids of 3".to_vec())
            ]
        );
        assert_eq!(commit_spans(&mut store, spans(8..9)).sequences, 8..9);
        store.ack("a", 8).unwrap();
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            store.stats().committed,
            8,
            "the sequence survives an empty queue"
        );
        assert_eq!(store.stats().spans, 0);
    }

    /// drop_oldest deletes whole oldest records, counts their spans and moves the cursors
    /// of the sinks that had not passed them.
    #[test]
    fn drop_oldest_counts_and_moves_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let record = record::record_bytes([100; 10]);
        let options = StoreOptions {
            max_bytes: 3 * record,
            ..options()
        };
        let mut store = QueueStore::open(dir.path(), options).unwrap();
        store.set_sinks(&sinks(&["fast", "slow"])).unwrap();
        let ten = |n: u8| vec![vec![n; 100]; 10];
        for n in 0..3 {
            assert_eq!(
                store
                    .commit(&Commit {
                        spans: ten(n).into(),
                        ..Commit::default()
                    })
                    .unwrap()
                    .dropped_spans,
                0
            );
        }
        store.ack("fast", 25).unwrap();
        let committed = store
            .commit(&Commit {
                spans: ten(3).into(),
                ..Commit::default()
            })
            .unwrap();
        assert_eq!((committed.dropped_spans, committed.full), (10, false));
        let stats = store.stats();
        assert_eq!(
            (stats.bytes, stats.spans, stats.dropped_spans, stats.oldest),
            (3 * record, 30, 10, Some(11))
        );
        assert_eq!(
            (store.cursor("slow"), store.cursor("fast")),
            (Some(10), Some(25))
        );
        assert_eq!(store.read_after(0, 1).unwrap()[0].0, 11);
        drop(store);
        let store = QueueStore::open(dir.path(), options).unwrap();
        assert_eq!(store.cursor("slow"), Some(10));
    }

    /// block stores the commit that reaches max_bytes and says so; nothing accepted is lost.
    #[test]
    fn block_reports_full_without_losing_accepted_spans() {
        let dir = tempfile::tempdir().unwrap();
        let record = record::record_bytes([100; 10]);
        let options = StoreOptions {
            max_bytes: 2 * record,
            overflow: Overflow::Block,
            ..options()
        };
        let mut store = QueueStore::open(dir.path(), options).unwrap();
        store.set_sinks(&sinks(&["a"])).unwrap();
        let ten = || Commit {
            spans: vec![vec![1; 100]; 10].into(),
            ..Commit::default()
        };
        assert!(!store.commit(&ten()).unwrap().full);
        assert!(store.commit(&ten()).unwrap().full);
        let late = store.commit(&ten()).unwrap();
        assert_eq!(
            (late.sequences, late.full, late.dropped_spans),
            (21..31, true, 0)
        );
        assert_eq!(store.read_after(0, 100).unwrap().len(), 30);
        store.ack("a", 20).unwrap();
        assert!(!store.is_full());
        assert_eq!(store.stats().dropped_spans, 0);
    }

    /// Below the free-space headroom a commit writes nothing and says the disk is full.
    #[test]
    fn disk_headroom_refuses_a_commit_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            min_free_bytes: u64::MAX / 2,
            ..options()
        };
        let mut store = QueueStore::open(dir.path(), options).unwrap();
        let err = store
            .commit(&Commit {
                spans: spans(1..3).into(),
                ..Commit::default()
            })
            .unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert!(err.to_string().contains("full"), "{err}");
        assert_eq!(store.stats().committed, 0);
        store.reopen().unwrap();
        assert_eq!(store.stats().committed, 0);
    }

    /// After a sled error the store refuses work until reopened, then carries on.
    #[test]
    fn failed_store_recovers_by_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        commit_spans(&mut store, spans(1..3));
        store.active = None;
        assert!(matches!(
            store.read_after(0, 1),
            Err(QueueError::Failed { .. })
        ));
        store.reopen().unwrap();
        assert_eq!(store.read_after(0, 10).unwrap().len(), 2);
    }

    /// A span record with an unknown version byte is a clear error, at read and at open.
    #[test]
    fn unknown_record_version_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        commit_spans(&mut store, spans(1..4));
        damage_record(&store, 1, 3, 0, |_| 9);
        let err = store.read_after(0, 10).unwrap_err();
        assert!(
            matches!(
                err,
                QueueError::UnsupportedRecord {
                    seq: 1,
                    version: 9,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("record version 9"), "{err}");
        store.raw_db().flush().unwrap();
        drop(store);
        let err = QueueStore::open(dir.path(), options()).unwrap_err();
        assert!(matches!(err, QueueError::UnsupportedRecord { .. }), "{err}");
    }

    /// A record whose checksum fails is counted, skipped and deleted; never a panic. Damaged
    /// cursors, waiting entries and checkpoints are counted too.
    #[test]
    fn checksum_failure_is_counted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_sinks(&sinks(&["a"])).unwrap();
        for range in [1..4, 4..6, 6..8] {
            commit_spans(&mut store, spans(range));
        }
        damage_record(&store, 4, 2, 7, |byte| byte ^ 0x20);
        let read = store.read_after(0, 100).unwrap();
        assert_eq!(seqs(&read), [1, 2, 3, 6, 7]);
        assert_eq!((store.stats().corrupt_records, store.stats().spans), (1, 5));
        assert_eq!(seqs(&store.read_after(3, 100).unwrap()), [6, 7]);
        assert_eq!(store.stats().corrupt_records, 1, "counted once");

        store
            .raw_db()
            .insert(b"pbad", b"\x01junk".to_vec())
            .unwrap();
        store
            .raw_db()
            .insert(b"ifile", b"\x01junk".to_vec())
            .unwrap();
        store.raw_db().insert(b"ca", b"\x01junk".to_vec()).unwrap();
        assert_eq!(store.pending().unwrap(), []);
        assert_eq!(store.checkpoint("file").unwrap(), None);
        assert_eq!(store.stats().corrupt_records, 3);
        store.raw_db().flush().unwrap();
        drop(store);
        let mut store = open(dir.path());
        assert_eq!(store.stats().corrupt_records, 1, "the damaged cursor");
        store.set_sinks(&sinks(&["a"])).unwrap();
        assert_eq!(
            store.cursor("a"),
            Some(0),
            "restarts at the oldest span kept"
        );
    }

    fn populated(dir: &Path) {
        let mut store = open(dir);
        store.set_sinks(&sinks(&["a"])).unwrap();
        for n in 0..20 {
            commit_spans(&mut store, vec![vec![n; 4000]; 10]);
        }
    }

    fn assert_open_fails(dir: &Path, kind: fn(&QueueError) -> bool) -> QueueError {
        let err = QueueStore::open(dir, options()).unwrap_err();
        assert!(kind(&err), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&dir.join("queue").display().to_string()),
            "{message}"
        );
        assert!(message.contains("move"), "says what to do: {message}");
        err
    }

    /// A zero-length `db` file (which sled opens as empty) is an error, not an empty queue.
    #[test]
    fn zero_length_db_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        let segment = active_segment(dir.path());
        fs::File::create(segment.join("db")).unwrap();
        for snap in fs::read_dir(&segment).unwrap() {
            let path = snap.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
            {
                fs::remove_file(path).unwrap();
            }
        }
        let err = assert_open_fails(dir.path(), QueueError::is_corruption);
        assert!(matches!(err, QueueError::Missing { .. }), "{err}");
    }

    /// A truncated `db` file is an error, not an empty queue.
    #[test]
    fn truncated_db_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        let db = fs::OpenOptions::new()
            .write(true)
            .open(active_segment(dir.path()).join("db"))
            .unwrap();
        // Just past the base: no commit survives the cut.
        db.set_len(500).unwrap();
        let err = assert_open_fails(dir.path(), QueueError::is_corruption);
        assert!(
            matches!(
                err,
                QueueError::Truncated {
                    expected: 200,
                    found: 0,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// Garbage in the `db` file (sled panics) is an error naming the path.
    #[test]
    fn garbage_db_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        let garbage: Vec<u8> = (0..1_000_000u32)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        fs::write(active_segment(dir.path()).join("db"), garbage).unwrap();
        assert_open_fails(dir.path(), QueueError::is_corruption);
    }

    /// What a crash between a commit's data write and its batch leaves (records past the
    /// last indexed one) is cut off at the next open; the next commits write over it and
    /// every span reads back.
    #[test]
    fn data_past_the_last_indexed_record_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_sinks(&sinks(&["a"])).unwrap();
        commit_spans(&mut store, spans(1..4));
        drop(store);
        let data = active_segment(dir.path()).join(DATA_FILE);
        let indexed = fs::metadata(&data).unwrap().len();
        let mut file = fs::OpenOptions::new().append(true).open(&data).unwrap();
        std::io::Write::write_all(&mut file, &[0xab; 5000]).unwrap();
        drop(file);
        let mut store = open(dir.path());
        assert_eq!(fs::metadata(&data).unwrap().len(), indexed);
        assert_eq!(store.stats().corrupt_records, 0);
        commit_spans(&mut store, spans(4..6));
        assert_eq!(
            store.read_after(0, 10).unwrap(),
            (1..6).zip(spans(1..6)).collect::<Vec<_>>()
        );
    }

    /// A data file that records are indexed in, deleted, is an error naming it, not an
    /// empty queue.
    #[test]
    fn missing_data_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        fs::remove_file(active_segment(dir.path()).join(DATA_FILE)).unwrap();
        let err = assert_open_fails(dir.path(), QueueError::is_corruption);
        assert!(matches!(err, QueueError::Missing { .. }), "{err}");
        assert!(err.to_string().contains(DATA_FILE), "{err}");
    }

    /// A deleted database directory with its manifest still there is an error.
    #[test]
    fn deleted_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        fs::remove_dir_all(dir.path().join("queue")).unwrap();
        assert_open_fails(dir.path(), |err| matches!(err, QueueError::Missing { .. }));
    }

    /// A newer format in the manifest is refused.
    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        let manifest = manifest_path(dir.path());
        let text = fs::read_to_string(&manifest).unwrap().replace(
            &format!("format = {FORMAT_VERSION}"),
            &format!("format = {}", FORMAT_VERSION + 1),
        );
        fs::write(&manifest, text).unwrap();
        let err = QueueStore::open(dir.path(), options()).unwrap_err();
        assert!(
            matches!(err, QueueError::UnsupportedFormat { found, .. } if found == FORMAT_VERSION + 1),
            "{err}"
        );
    }

    /// A second open while the first is alive names the holder's pid.
    #[test]
    fn lock_held_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let err = QueueStore::open(dir.path(), options()).unwrap_err();
        assert!(
            matches!(err, QueueError::Locked { pid: Some(pid), .. } if pid == std::process::id()),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("in use by another auditspan (pid"),
            "{err}"
        );
        drop(store);
        open(dir.path());
    }

    /// Compaction copies spans, cursors, waiting entries, checkpoints and the sequence.
    #[test]
    fn compact_copies_everything_into_a_fresh_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.set_sinks(&sinks(&["a"])).unwrap();
        store
            .commit(&Commit {
                spans: spans(1..6).into(),
                pending_put: vec![(b"req".to_vec(), b"entry".to_vec())],
                checkpoints: vec![("file".into(), b"7".to_vec())],
                ..Commit::default()
            })
            .unwrap();
        store.ack("a", 2).unwrap();
        let before = store.stats();
        drop(store);
        let to = dir.path().join("compacted");
        let stats = QueueStore::compact(dir.path(), &to).unwrap();
        assert_eq!(stats.spans, before.spans);
        assert_eq!(
            (stats.committed, stats.bytes, stats.sinks.clone()),
            (before.committed, before.bytes, before.sinks)
        );
        let mut store = open(&to);
        assert_eq!(
            store.read_after(2, 10).unwrap(),
            (3..6).zip(spans(3..6)).collect::<Vec<_>>()
        );
        assert_eq!(
            store.pending().unwrap(),
            [(b"req".to_vec(), b"entry".to_vec())]
        );
        assert_eq!(store.checkpoint("file").unwrap(), Some(b"7".to_vec()));
        drop(store);
        assert!(matches!(
            QueueStore::compact(dir.path(), &to),
            Err(QueueError::DestinationNotEmpty { .. })
        ));
    }

    fn small_segments() -> StoreOptions {
        StoreOptions {
            segment_bytes: 64 << 10,
            ..options()
        }
    }

    fn dir_bytes(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if meta.is_dir() {
                    dir_bytes(&entry.path())
                } else {
                    meta.len()
                }
            })
            .sum()
    }

    /// Commits past `segment_bytes` close the active segment and open the next one; reads
    /// cross segments in order, waiting entries, checkpoints and paired-id records are carried into every new
    /// segment, everything survives a restart, and once every sink passed a closed segment
    /// it is deleted whole, so the files shrink.
    #[test]
    fn segments_rotate_carry_state_and_are_deleted_once_passed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = QueueStore::open(dir.path(), small_segments()).unwrap();
        store.set_sinks(&sinks(&["a", "b"])).unwrap();
        // Large enough that the spans, not the segments' databases, fill the disk: a
        // database sled reopens (the active one, after the restart below) takes a whole
        // sled segment (2 MiB) on disk.
        let span = |n: u64| vec![(n % 251) as u8; 30_000];
        for n in 0..60u64 {
            let commit = Commit {
                spans: (n * 10..n * 10 + 10).map(span).collect::<Vec<_>>().into(),
                pending_put: vec![(format!("req-{n}").into_bytes(), vec![n as u8; 100])],
                pending_remove: if n > 0 && n % 2 == 0 {
                    vec![format!("req-{}", n - 1).into_bytes()]
                } else {
                    vec![]
                },
                checkpoints: vec![("file".into(), n.to_be_bytes().to_vec())],
                paired_put: vec![(n.to_be_bytes().to_vec(), vec![n as u8; 16])],
                paired_remove: if n >= 10 {
                    vec![(n - 10).to_be_bytes().to_vec()]
                } else {
                    vec![]
                },
            };
            store.commit(&commit).unwrap();
        }
        let segments = store.stats().segments;
        assert!(segments >= 8, "{segments} segments");
        let all: Vec<(u64, Vec<u8>)> = (1..=600).map(|seq| (seq, span(seq - 1))).collect();
        assert_eq!(store.read_after(0, 1000).unwrap(), all);
        assert_eq!(store.read_after(95, 7).unwrap(), all[95..102].to_vec());
        store.ack("a", 600).unwrap();
        store.ack("b", 250).unwrap();
        let before = store.stats();
        let disk_before = dir_bytes(&dir.path().join("queue"));
        drop(store);

        let mut store = QueueStore::open(dir.path(), small_segments()).unwrap();
        assert_eq!(store.stats(), before);
        assert_eq!(store.read_after(250, 1000).unwrap(), all[250..].to_vec());
        let waiting: Vec<Vec<u8>> = store
            .pending()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let expected: Vec<Vec<u8>> = [1, 3, 5]
            .iter()
            .chain(&[59])
            .map(|n| format!("req-{n}").into_bytes())
            .collect();
        assert!(
            waiting.contains(&expected[3]) && !waiting.contains(&expected[0]),
            "{waiting:?}"
        );
        assert_eq!(
            waiting.len(),
            31,
            "every odd request is answered by the next commit"
        );
        assert_eq!(
            store.checkpoint("file").unwrap(),
            Some(59u64.to_be_bytes().to_vec())
        );
        assert_eq!(
            store.paired().unwrap(),
            (50..60u64)
                .map(|n| (n.to_be_bytes().to_vec(), vec![n as u8; 16]))
                .collect::<Vec<_>>(),
            "the last 10 paired-id records, carried through every segment"
        );

        store.ack("b", 600).unwrap();
        let stats = store.stats();
        assert_eq!((stats.spans, stats.bytes, stats.segments), (0, 0, 1));
        let disk_after = dir_bytes(&dir.path().join("queue"));
        assert!(
            disk_after * 4 < disk_before,
            "the passed segments are gone: {disk_before} → {disk_after} bytes"
        );
        drop(store);
        let mut store = QueueStore::open(dir.path(), small_segments()).unwrap();
        assert_eq!(store.stats().committed, 600);
        assert!(store.read_after(600, 10).unwrap().is_empty());
        assert_eq!(
            commit_spans(&mut store, spans(601..603)).sequences,
            601..603
        );
    }

    /// drop_oldest across segments: the dropped spans never come back after a restart,
    /// and segments holding only dropped spans are deleted.
    #[test]
    fn drop_oldest_across_segments_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_bytes: 200 << 10,
            ..small_segments()
        };
        let mut store = QueueStore::open(dir.path(), options).unwrap();
        store.set_sinks(&sinks(&["a"])).unwrap();
        for n in 0..50u8 {
            store
                .commit(&Commit {
                    spans: vec![vec![n; 3000]; 10].into(),
                    ..Commit::default()
                })
                .unwrap();
        }
        let before = store.stats();
        assert!(
            before.bytes <= 200 << 10 && before.segments <= 6,
            "{before:?}"
        );
        let oldest = before.oldest.unwrap();
        assert_eq!(store.cursor("a"), Some(oldest - 1));
        drop(store);
        let mut store = QueueStore::open(dir.path(), options).unwrap();
        let after = store.stats();
        assert_eq!(
            (after.spans, after.bytes, after.oldest, after.committed),
            (before.spans, before.bytes, before.oldest, before.committed)
        );
        assert_eq!(store.read_after(0, 1).unwrap()[0].0, oldest);
    }

    /// A segment whose creation a crash interrupted (no base) is removed at the next open,
    /// and the one before it stays the active segment; one that the manifest says held
    /// committed spans is an error instead.
    #[test]
    fn interrupted_rotation_is_recovered_and_lost_segments_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = QueueStore::open(dir.path(), small_segments()).unwrap();
        store.set_sinks(&sinks(&["a"])).unwrap();
        for n in 0..5u8 {
            commit_spans(&mut store, vec![vec![n; 3000]; 10]);
        }
        let before = store.stats();
        drop(store);
        // What a crash between creating the next segment and flushing its base leaves.
        let next = segment_path(&dir.path().join("queue"), before.committed + 1);
        {
            let db = open_segment(&next, SEGMENT_SIZE).unwrap();
            db.insert(record::META_FORMAT, cursor_value(2)).unwrap();
            db.flush().unwrap();
        }
        let mut store = QueueStore::open(dir.path(), small_segments()).unwrap();
        assert!(!next.exists(), "the incomplete segment is removed");
        assert_eq!(store.stats(), before);
        assert_eq!(store.read_after(0, 100).unwrap().len(), 50);
        drop(store);

        // A closed segment still holding undelivered spans, deleted by hand.
        let queue = dir.path().join("queue");
        let oldest = list_segments(&queue).unwrap()[0];
        fs::remove_dir_all(segment_path(&queue, oldest)).unwrap();
        let err = QueueStore::open(dir.path(), small_segments()).unwrap_err();
        assert!(matches!(err, QueueError::Missing { .. }), "{err}");
        assert!(err.is_corruption());
    }
}
