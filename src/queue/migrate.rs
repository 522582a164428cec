//! Reading a queue of an older format, for `auditspan queue migrate`
//! ([`super::offline::migrate`]):
//!
//! - **Format 1** (auditspan before the segmented queue) is ONE sled database in
//!   `<data_dir>/queue/` holding everything under the one-byte key prefixes of
//!   [`super::record`] (`s` span records, `c` cursors, `p` waiting entries, `i` input
//!   checkpoints, `m` meta), with the sled `segment_size` its manifest records. Records
//!   released by every sink were deleted from it, so every `s` key is a kept record.
//! - **Format 2** (segments whose span records were sled values) is a row of segment
//!   databases in `<data_dir>/queue/<first seq>/`; the newest one with a base (`m base`)
//!   holds the state (cursors, waiting entries, checkpoints, `m released`, skipped records
//!   under `x`, and under `g` the index of each closed segment: its records' first
//!   sequence and count); kept records are those above `released` and not skipped, each
//!   an `s` value in the segment whose first sequence is the greatest at or below it.
//!
//! Both store each span record as a sled value ([`super::record::decode_spans`]); the
//! migration writes the same spans, byte for byte and with the same sequences, into data
//! file records. Waiting entries, checkpoints and cursors are copied as stored. A record
//! whose checksum fails is left out and counted (a read would have skipped it too).

use std::{
    cell::Cell,
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    rc::Rc,
};

use tracing::warn;

use super::{
    EncodedSpans, QueueError,
    record::{self, RecordError},
    store::{Contents, decode_u64, list_segments, open_segment, segment_path},
};

/// A queue of format 1 or 2, open (the caller holds the queue lock).
pub struct LegacyQueue {
    format: u32,
    /// Format 1: the database. Format 2: the active (newest with a base) segment's.
    db: sled::Db,
    path: PathBuf,
    queue_dir: PathBuf,
    segment_size: usize,
    /// Format 2: closed segments (first sequence → last) and the kept records of each
    /// closed segment (first → count).
    closed: BTreeMap<u64, u64>,
    closed_records: Vec<(u64, u32)>,
    released: u64,
    skipped: BTreeSet<u64>,
    /// Records left out because they fail to decode, and their spans.
    damaged: Rc<Cell<(u64, u64)>>,
}

/// What a legacy queue holds, summed up (to check the copy against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySummary {
    pub spans: u64,
    pub records: u64,
    pub committed: u64,
    pub cursors: BTreeMap<String, u64>,
    pub waiting: usize,
}

impl LegacyQueue {
    /// Opens the queue in `data_dir` as `format` (1 or 2) with the manifest's sled segment
    /// size.
    pub fn open(
        data_dir: &Path,
        format: u32,
        segment_size: usize,
    ) -> Result<LegacyQueue, QueueError> {
        let queue_dir = data_dir.join("queue");
        let (db, path) = if format == 1 {
            if !queue_dir.join("db").is_file() {
                return Err(QueueError::Unreadable {
                    path: queue_dir,
                    detail: "no format 1 database (`db` file) in it".to_owned(),
                });
            }
            (open_segment(&queue_dir, segment_size)?, queue_dir.clone())
        } else {
            // Format 2: the newest segment with a base holds the state.
            let mut segments = list_segments(&queue_dir)?;
            loop {
                let Some(first) = segments.pop() else {
                    return Err(QueueError::Unreadable {
                        path: queue_dir,
                        detail: "no format 2 segment with a base in it".to_owned(),
                    });
                };
                let path = segment_path(&queue_dir, first);
                let db = open_segment(&path, segment_size)?;
                let base = db
                    .get(record::META_BASE)
                    .map_err(|source| sled_err(&path, source))?;
                if base.is_some() {
                    break (db, path);
                }
            }
        };
        let mut queue = LegacyQueue {
            format,
            db,
            path,
            queue_dir,
            segment_size,
            closed: BTreeMap::new(),
            closed_records: Vec::new(),
            released: 0,
            skipped: BTreeSet::new(),
            damaged: Rc::default(),
        };
        if format == 1 {
            return Ok(queue);
        }
        if let Some(value) = queue.get(record::META_RELEASED)? {
            queue.released = decode_u64(&value).unwrap_or(0);
        }
        for item in queue.db.scan_prefix([record::PREFIX_SKIPPED]) {
            let (key, _) = item.map_err(|source| queue.sled_err(source))?;
            if let Some(first) = record::parse_seq_key(&key) {
                queue.skipped.insert(first);
            }
        }
        let mut closed_records = Vec::new();
        for item in queue.db.scan_prefix([record::PREFIX_INDEX]) {
            let (key, value) = item.map_err(|source| queue.sled_err(source))?;
            let (Some(segment), Ok((last, entries))) = (
                record::parse_seq_key(&key),
                record::decode_format_2_index(&value),
            ) else {
                warn!(path = %queue.path.display(), "A format 2 segment index does not decode; its spans are not migrated.");
                continue;
            };
            queue.closed.insert(segment, last);
            closed_records.extend(
                entries
                    .into_iter()
                    .filter(|(first, count)| *count > 0 && queue.kept(*first)),
            );
        }
        closed_records.sort_unstable();
        queue.closed_records = closed_records;
        Ok(queue)
    }

    fn sled_err(&self, source: sled::Error) -> QueueError {
        sled_err(&self.path, source)
    }

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, QueueError> {
        self.db.get(key).map_err(|source| self.sled_err(source))
    }

    /// Format 2: whether the record starting at `first` is still in the queue.
    fn kept(&self, first: u64) -> bool {
        first > self.released && !self.skipped.contains(&first)
    }

    /// `(first, count)` of the kept `s` records of the state database, ascending.
    fn own_records(&self) -> Result<Vec<(u64, u32)>, QueueError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([record::PREFIX_SPANS]) {
            let (key, _) = item.map_err(|source| self.sled_err(source))?;
            if let Some((first, count)) = record::parse_span_key(&key)
                && (self.format == 1 || self.kept(first))
            {
                out.push((first, count));
            }
        }
        Ok(out)
    }

    /// Everything but the span records, and the summary to check the copy against.
    pub(crate) fn contents(&self) -> Result<(Contents, LegacySummary), QueueError> {
        let raw = |prefix: u8| -> Result<Vec<(Vec<u8>, sled::IVec)>, QueueError> {
            self.db
                .scan_prefix([prefix])
                .map(|item| {
                    item.map(|(key, value)| (key[1..].to_vec(), value))
                        .map_err(|source| self.sled_err(source))
                })
                .collect()
        };
        let mut summary = LegacySummary {
            spans: 0,
            records: 0,
            committed: self.released,
            cursors: BTreeMap::new(),
            waiting: 0,
        };
        for (first, count) in self
            .closed_records
            .iter()
            .copied()
            .chain(self.own_records()?)
        {
            summary.spans += u64::from(count);
            summary.records += 1;
            summary.committed = summary.committed.max(first + u64::from(count) - 1);
        }
        for (name, value) in raw(record::PREFIX_CURSOR)? {
            let name = String::from_utf8_lossy(&name).into_owned();
            match decode_u64(&value) {
                Ok(cursor) => {
                    summary.committed = summary.committed.max(cursor);
                    summary.cursors.insert(name, cursor);
                }
                // As the old format itself did: the sink starts again at the oldest span.
                Err(err) => {
                    warn!(sink = %name, error = %err, "A cursor of the old queue does not decode; the sink will start at the oldest span.")
                }
            }
        }
        if let Some(value) = self.get(record::META_COMMITTED)?
            && let Ok(committed) = decode_u64(&value)
        {
            summary.committed = summary.committed.max(committed);
        }
        if let Some(&last) = self.closed.values().max() {
            summary.committed = summary.committed.max(last);
        }
        let pending = raw(record::PREFIX_PENDING)?;
        summary.waiting = pending.len();
        let contents = Contents {
            committed: summary.committed,
            cursors: summary.cursors.clone(),
            pending,
            inputs: raw(record::PREFIX_INPUT)?,
            // Format 1 kept paired ids in memory only.
            paired: Vec::new(),
        };
        Ok((contents, summary))
    }

    /// The kept span records, ascending: first sequence and spans. A record of an unknown
    /// version is an error (a newer auditspan wrote it); a key of the wrong shape, and a
    /// record that fails its checksum or is missing, are left out ([`LegacyQueue::damaged`]
    /// counts the latter).
    pub fn records(
        &self,
    ) -> Result<impl Iterator<Item = Result<(u64, EncodedSpans), QueueError>> + '_, QueueError>
    {
        // Format 2: each record of a closed segment is in the segment whose first sequence
        // is the greatest at or below it; the others are in the state database.
        let mut plan: Vec<(u64, u32, Option<u64>)> = self
            .closed_records
            .iter()
            .filter_map(|&(first, count)| {
                let segment = *self.closed.range(..=first).next_back()?.0;
                Some((first, count, Some(segment)))
            })
            .collect();
        plan.extend(
            self.own_records()?
                .into_iter()
                .map(|(first, count)| (first, count, None)),
        );
        let mut reader: Option<(u64, sled::Db)> = None;
        Ok(plan.into_iter().filter_map(move |(first, count, segment)| {
            let key = record::span_key(first, count);
            let value = match segment {
                None => self.get(&key),
                Some(segment) => {
                    if reader.as_ref().is_none_or(|(open, _)| *open != segment) {
                        reader = None;
                        let path = segment_path(&self.queue_dir, segment);
                        match open_segment(&path, self.segment_size) {
                            Ok(db) => reader = Some((segment, db)),
                            Err(err) => {
                                warn!(path = %path.display(), error = %err, "A closed segment of the old queue cannot be opened; its spans are not migrated.");
                                self.count_damaged(count);
                                return None;
                            }
                        }
                    }
                    let (_, db) = reader.as_ref()?;
                    db.get(key).map_err(|source| self.sled_err(source))
                }
            };
            let value = match value {
                Ok(Some(value)) => value,
                Ok(None) => {
                    self.count_damaged(count);
                    return None;
                }
                Err(err) => return Some(Err(err)),
            };
            match record::decode_spans(&value, count, 0..count as usize) {
                Ok(spans) => Some(Ok((first, spans.into()))),
                Err(RecordError::UnknownVersion(version)) => {
                    Some(Err(QueueError::UnsupportedRecord {
                        path: self.path.clone(),
                        seq: first,
                        version,
                    }))
                }
                Err(err) => {
                    warn!(path = %self.path.display(), first_sequence = first, error = %err,
                        "A record of the old queue fails to decode; it is not migrated.");
                    self.count_damaged(count);
                    None
                }
            }
        }))
    }

    fn count_damaged(&self, spans: u32) {
        let (records, total) = self.damaged.get();
        self.damaged.set((records + 1, total + u64::from(spans)));
    }

    /// Records (and their spans) left out by [`LegacyQueue::records`] so far because they
    /// were missing or failed to decode.
    pub fn damaged(&self) -> (u64, u64) {
        self.damaged.get()
    }
}

fn sled_err(path: &Path, source: sled::Error) -> QueueError {
    QueueError::Sled {
        path: path.to_owned(),
        cause: source,
    }
}
