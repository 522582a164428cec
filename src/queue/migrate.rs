//! Reading a queue of format 1 (auditspan before the segmented queue), for
//! `auditspan queue migrate` ([`super::offline::migrate`]).
//!
//! Format 1 is ONE sled database in `<data_dir>/queue/` holding everything under the
//! one-byte key prefixes of [`super::record`] (`s` span records, `c` cursors, `p` waiting
//! entries, `i` input checkpoints, `m` meta), with the sled `segment_size` its manifest
//! records. Records released by every sink were deleted from it, so every `s` key is a
//! kept record. Its values are the same envelopes format 2 stores, so they are copied byte
//! for byte: the migration changes where the bytes are, never what they say.

use std::{collections::BTreeMap, path::Path};

use tracing::warn;

use super::{
    QueueError, record,
    store::{Contents, decode_u64, open_segment},
};

/// A format 1 database, open.
pub struct LegacyQueue {
    db: sled::Db,
    path: std::path::PathBuf,
}

/// What a format 1 queue holds, summed up (to check the copy against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySummary {
    pub spans: u64,
    pub records: u64,
    pub committed: u64,
    pub cursors: BTreeMap<String, u64>,
    pub waiting: usize,
}

impl LegacyQueue {
    /// Opens `<data_dir>/queue` as a format 1 database with the manifest's sled segment
    /// size (the caller holds the queue lock).
    pub fn open(data_dir: &Path, segment_size: usize) -> Result<LegacyQueue, QueueError> {
        let path = data_dir.join("queue");
        if !path.join("db").is_file() {
            return Err(QueueError::Unreadable {
                path,
                detail: "no format 1 database (`db` file) in it".to_owned(),
            });
        }
        let db = open_segment(&path, segment_size)?;
        Ok(LegacyQueue { db, path })
    }

    fn sled_err(&self, source: sled::Error) -> QueueError {
        QueueError::Sled {
            path: self.path.clone(),
            cause: source,
        }
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
            committed: 0,
            cursors: BTreeMap::new(),
            waiting: 0,
        };
        for item in self.db.scan_prefix([record::PREFIX_SPANS]) {
            let (key, _) = item.map_err(|source| self.sled_err(source))?;
            if let Some((first, count)) = record::parse_span_key(&key) {
                summary.spans += u64::from(count);
                summary.records += 1;
                summary.committed = summary.committed.max(first + u64::from(count) - 1);
            }
        }
        for (name, value) in raw(record::PREFIX_CURSOR)? {
            let name = String::from_utf8_lossy(&name).into_owned();
            match decode_u64(&value) {
                Ok(cursor) => {
                    summary.committed = summary.committed.max(cursor);
                    summary.cursors.insert(name, cursor);
                }
                // As format 1 itself did: the sink starts again at the oldest span.
                Err(err) => {
                    warn!(sink = %name, error = %err, "A format 1 cursor does not decode; the sink will start at the oldest span.")
                }
            }
        }
        if let Some(value) = self
            .db
            .get(record::META_COMMITTED)
            .map_err(|source| self.sled_err(source))?
            && let Ok(committed) = decode_u64(&value)
        {
            summary.committed = summary.committed.max(committed);
        }
        let pending = raw(record::PREFIX_PENDING)?;
        summary.waiting = pending.len();
        let contents = Contents {
            committed: summary.committed,
            cursors: summary.cursors.clone(),
            pending,
            inputs: raw(record::PREFIX_INPUT)?,
        };
        Ok((contents, summary))
    }

    /// The span records, ascending: first sequence, count, stored value. A record of an
    /// unknown version is an error (a newer auditspan wrote it); a key of the wrong shape
    /// is skipped, as format 1 skipped it.
    pub fn records(&self) -> impl Iterator<Item = Result<(u64, u32, Vec<u8>), QueueError>> + '_ {
        self.db
            .scan_prefix([record::PREFIX_SPANS])
            .filter_map(move |item| {
                let (key, value) = match item {
                    Ok(entry) => entry,
                    Err(source) => return Some(Err(self.sled_err(source))),
                };
                let (first, count) = record::parse_span_key(&key)?;
                if let Some(&version) = value.first().filter(|v| **v != record::RECORD_VERSION) {
                    return Some(Err(QueueError::UnsupportedRecord {
                        path: self.path.clone(),
                        seq: first,
                        version,
                    }));
                }
                Some(Ok((first, count, value.to_vec())))
            })
    }
}
