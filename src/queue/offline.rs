//! The offline queue commands, `auditspan queue stats`, `compact` and `migrate`: they open
//! the queue while the daemon is stopped (the queue lock says whether it is) and never
//! change which spans it holds.
//!
//! - **stats** opens the store and reads its in-memory snapshot; it does not call
//!   [`QueueStore::set_sinks`] (that would delete the cursors of sinks missing from the
//!   config), so nothing but sled's own recovery and a manifest catching up is written.
//! - **compact** copies the queue with [`QueueStore::compact`] into
//!   `<data_dir>/queue.compacting/`, checks the copy, then swaps it in while holding the
//!   queue lock, in an order where a crash at any step leaves a queue that either opens
//!   complete or fails to open with a clear error (never silently empty):
//!   1. `queue.manifest` is copied into `<data_dir>/queue.precompact/` (for rolling back);
//!   2. `queue/` is renamed to `queue.precompact/queue` (a crash here: the manifest names a
//!      missing database, so the daemon refuses to start);
//!   3. `queue.compacting/queue` is renamed to `queue/` (a crash here: the database and the
//!      manifest have different ids, so the daemon refuses to start);
//!   4. `queue.compacting/queue.manifest` replaces `queue.manifest` (atomic rename);
//!   5. `queue.precompact/` and `queue.compacting/` are removed.
//!
//!   Both directories live inside the data directory, so every rename stays on one
//!   filesystem even when the data directory is a mount point.
//!
//!   Since format 2 a segment that every sink has passed is deleted whole while the daemon
//!   runs, so the files shrink by themselves; compaction only gives back the space of
//!   released spans in the segments still holding kept ones (at most one segment's worth
//!   per sink position) and is rarely worth running.
//! - **migrate** converts a queue of format 1 (one sled database, before the segmented
//!   queue) or 2 (segments holding their spans as sled values) into format 3, which the
//!   daemon refuses to start without: it reads the old queue ([`super::migrate`]), writes
//!   every kept span (byte for byte, same sequences), cursor, waiting entry and checkpoint
//!   into a new queue in `<data_dir>/queue.migrating/`, checks the copy against the
//!   original, and swaps it in exactly as compact does, with `<data_dir>/queue.premigrate/`
//!   holding the old queue until the new one is in place. A queue already of format 3 is
//!   left alone.

use std::{
    fmt,
    fs::{self, File},
    io::Read,
    path::{Path, PathBuf},
};

use super::{
    FORMAT_VERSION, QueueError, QueueStore, Stats, StoreOptions,
    manifest::{DirLock, Manifest, lock_path, manifest_path},
    migrate::LegacyQueue,
};

/// Where `compact` builds the new queue, inside the data directory.
pub const COMPACTING_DIR: &str = "queue.compacting";
/// Where `compact` moves the old queue until the new one is in place.
pub const PRECOMPACT_DIR: &str = "queue.precompact";
/// Where `migrate` builds the new queue, inside the data directory.
pub const MIGRATING_DIR: &str = "queue.migrating";
/// Where `migrate` moves the old queue until the new one is in place.
pub const PREMIGRATE_DIR: &str = "queue.premigrate";

/// Why an offline queue command failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The data directory holds no queue (neither `queue/` nor `queue.manifest`).
    #[error(
        "there is no queue in {0} (no queue directory, no queue.manifest); check --data-dir \
         or data_dir in the config"
    )]
    NoQueue(PathBuf),
    /// The daemon (or another command) holds the queue lock.
    #[error(
        "the queue {path} is in use by a running auditspan{}; {hint}",
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    InUse {
        path: PathBuf,
        pid: Option<u32>,
        hint: &'static str,
    },
    /// A directory an interrupted compaction or migration left behind.
    #[error(
        "{0} exists, left by an interrupted `auditspan queue compact` or `migrate`: if {1} \
         opens (try `auditspan queue stats`), remove it; otherwise its `queue` directory and \
         `queue.manifest` are the queue to put back"
    )]
    Leftover(PathBuf, PathBuf),
    /// Another process opened the queue while it was being copied.
    #[error(
        "another process (pid {0}) opened the queue while it was being compacted; nothing \
         was swapped: stop it and run `auditspan queue compact` again"
    )]
    Changed(String),
    /// The copy does not hold what the original did.
    #[error("the compacted copy differs from the queue ({0}); nothing was swapped")]
    CopyDiffers(String),
    #[error(transparent)]
    Queue(QueueError),
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl OfflineError {
    fn queue(err: QueueError, hint: &'static str) -> OfflineError {
        match err {
            QueueError::Locked { path, pid } => OfflineError::InUse { path, pid, hint },
            err => OfflineError::Queue(err),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OfflineError + '_ {
    move |source| OfflineError::Io {
        path: path.to_owned(),
        cause: source,
    }
}

const STATS_HINT: &str =
    "stop it, or read its /metrics (auditspan_queue_*, auditspan_sink_lag_spans)";
const COMPACT_HINT: &str = "stop it first: compaction works only while the daemon is stopped";
const MIGRATE_HINT: &str = "stop it first: migration works only while the daemon is stopped";

/// What `auditspan queue stats` prints.
#[derive(Debug, Clone)]
pub struct StatsReport {
    /// `<data_dir>/queue`.
    pub path: PathBuf,
    pub stats: Stats,
    /// Requests stored while waiting for their response.
    pub waiting: usize,
    /// Bytes of every file under `<data_dir>/queue` (every segment, the active one included).
    pub disk_bytes: u64,
    /// The sinks of the config (a cursor of another name is deleted at the next start).
    pub configured_sinks: Vec<String>,
}

impl fmt::Display for StatsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(f, "queue      {}", self.path.display())?;
        writeln!(f, "spans      {} in {} records", s.spans, s.records)?;
        writeln!(f, "bytes      {} (max_bytes {})", s.bytes, s.max_bytes)?;
        writeln!(f, "disk       {} bytes", self.disk_bytes)?;
        writeln!(f, "segments   {}", s.segments)?;
        writeln!(f, "committed  {}", s.committed)?;
        match s.oldest {
            Some(oldest) => writeln!(f, "oldest     {oldest}")?,
            None => writeln!(f, "oldest     - (empty)")?,
        }
        writeln!(f, "waiting    {}", self.waiting)?;
        if s.corrupt_records > 0 {
            writeln!(f, "corrupt    {} (counted at open)", s.corrupt_records)?;
        }
        for sink in &s.sinks {
            let note = if self.configured_sinks.contains(&sink.name) {
                ""
            } else {
                "  (not in the config: deleted at the next start)"
            };
            writeln!(
                f,
                "sink       {}  cursor {}  lag {}{note}",
                sink.name, sink.cursor, sink.lag
            )?;
        }
        for name in &self.configured_sinks {
            if !s.sinks.iter().any(|sink| sink.name == *name) {
                writeln!(
                    f,
                    "sink       {name}  no cursor yet (starts at the oldest span)"
                )?;
            }
        }
        Ok(())
    }
}

/// What `auditspan queue compact` did.
#[derive(Debug, Clone)]
pub struct CompactReport {
    pub path: PathBuf,
    pub disk_before: u64,
    pub disk_after: u64,
    pub stats: Stats,
}

impl fmt::Display for CompactReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "queue      {}", self.path.display())?;
        writeln!(f, "before     {} bytes", self.disk_before)?;
        writeln!(f, "after      {} bytes", self.disk_after)?;
        writeln!(
            f,
            "kept       {} spans, committed {}, {} cursors",
            self.stats.spans,
            self.stats.committed,
            self.stats.sinks.len()
        )
    }
}

/// Fails unless `data_dir` holds a queue, so that an offline command never creates one.
fn require_queue(data_dir: &Path) -> Result<(), OfflineError> {
    if data_dir.join("queue").exists() || manifest_path(data_dir).exists() {
        Ok(())
    } else {
        Err(OfflineError::NoQueue(data_dir.to_owned()))
    }
}

/// `auditspan queue stats`: opens the queue in `data_dir` and reports it.
pub fn stats(
    data_dir: &Path,
    options: StoreOptions,
    configured_sinks: &[String],
) -> Result<StatsReport, OfflineError> {
    require_queue(data_dir)?;
    let store =
        QueueStore::open(data_dir, options).map_err(|e| OfflineError::queue(e, STATS_HINT))?;
    let waiting = store.pending().map_err(OfflineError::Queue)?.len();
    let path = store.path().to_owned();
    let stats = store.stats();
    drop(store);
    Ok(StatsReport {
        disk_bytes: dir_bytes(&path)?,
        path,
        stats,
        waiting,
        configured_sinks: configured_sinks.to_vec(),
    })
}

/// `auditspan queue compact`: rewrites the queue in `data_dir` into fresh files and swaps
/// them in (procedure in the module doc).
pub fn compact(data_dir: &Path, options: StoreOptions) -> Result<CompactReport, OfflineError> {
    require_queue(data_dir)?;
    let compacting = data_dir.join(COMPACTING_DIR);
    let precompact = data_dir.join(PRECOMPACT_DIR);
    for dir in [&precompact, &compacting] {
        if dir.exists() {
            return Err(OfflineError::Leftover(dir.clone(), data_dir.join("queue")));
        }
    }
    let before = {
        let store = QueueStore::open(data_dir, options)
            .map_err(|e| OfflineError::queue(e, COMPACT_HINT))?;
        store.stats()
    };
    let queue = data_dir.join("queue");
    let disk_before = dir_bytes(&queue)?;
    let copied = match QueueStore::compact(data_dir, &compacting) {
        Ok(stats) => stats,
        Err(err) => {
            fs::remove_dir_all(&compacting).ok();
            return Err(OfflineError::queue(err, COMPACT_HINT));
        }
    };
    let result = swap_in(data_dir, &before, &copied, COMPACTING_DIR, PRECOMPACT_DIR);
    fs::remove_dir_all(&compacting).ok();
    result?;
    fs::remove_dir_all(&precompact).map_err(io(&precompact))?;
    Ok(CompactReport {
        disk_after: dir_bytes(&queue)?,
        path: queue,
        disk_before,
        stats: copied,
    })
}

/// Steps 1–4 of the module doc, under the queue lock; rolls back on failure.
fn swap_in(
    data_dir: &Path,
    before: &Stats,
    copied: &Stats,
    staging: &str,
    backup: &str,
) -> Result<(), OfflineError> {
    // The last opener wrote its pid into the lock file: `compact` opened the source as this
    // process, so any other pid there means someone opened the queue after it.
    let lock_file = lock_path(data_dir);
    let mut holder = String::new();
    File::open(&lock_file)
        .and_then(|mut f| f.read_to_string(&mut holder))
        .map_err(io(&lock_file))?;
    let _lock = DirLock::acquire(&lock_file, &data_dir.join("queue"))
        .map_err(|e| OfflineError::queue(e, COMPACT_HINT))?;
    if holder.trim() != std::process::id().to_string() {
        return Err(OfflineError::Changed(holder.trim().to_owned()));
    }
    check_copy(before, copied)?;
    swap_dirs(data_dir, staging, backup)
}

/// The copy holds the same spans, sequence and cursors as the original.
fn check_copy(before: &Stats, copied: &Stats) -> Result<(), OfflineError> {
    let same = (before.spans, before.committed, &before.sinks)
        == (copied.spans, copied.committed, &copied.sinks);
    if !same {
        return Err(OfflineError::CopyDiffers(format!(
            "{} spans up to {} before, {} spans up to {} in the copy",
            before.spans, before.committed, copied.spans, copied.committed
        )));
    }
    Ok(())
}

/// Steps 1–4 of the module doc (the caller holds the queue lock): the queue and manifest
/// in `<data_dir>/<staging>` replace the data directory's, the old ones wait in
/// `<data_dir>/<backup>`; rolls back on failure.
fn swap_dirs(data_dir: &Path, staging: &str, backup: &str) -> Result<(), OfflineError> {
    let queue = data_dir.join("queue");
    let manifest = manifest_path(data_dir);
    let compacting = data_dir.join(staging);
    let precompact = data_dir.join(backup);
    fs::create_dir(&precompact).map_err(io(&precompact))?;
    let old_manifest = precompact.join("queue.manifest");
    if manifest.exists() {
        fs::copy(&manifest, &old_manifest).map_err(io(&manifest))?;
    }
    sync_dir(&precompact)?;
    let old_queue = precompact.join("queue");
    fs::rename(&queue, &old_queue).map_err(io(&queue))?;
    if let Err(source) = fs::rename(compacting.join("queue"), &queue) {
        fs::rename(&old_queue, &queue).ok();
        return Err(OfflineError::Io {
            path: queue,
            cause: source,
        });
    }
    if let Err(source) = fs::rename(manifest_path(&compacting), &manifest) {
        // Put the old queue back, so that manifest and database match again.
        fs::rename(&queue, compacting.join("queue")).ok();
        fs::rename(&old_queue, &queue).ok();
        return Err(OfflineError::Io {
            path: manifest,
            cause: source,
        });
    }
    sync_dir(data_dir)
}

/// What `auditspan queue migrate` did.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    pub path: PathBuf,
    /// The format found (the queue is of [`FORMAT_VERSION`] afterwards).
    pub from_format: u32,
    /// `None` when there was nothing to migrate.
    pub stats: Option<Stats>,
    /// Records (and their spans) of the old queue left out because they failed to decode
    /// or were missing (a read would have skipped them too).
    pub skipped: (u64, u64),
}

impl fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "queue      {}", self.path.display())?;
        match &self.stats {
            None => writeln!(
                f,
                "format     {} (current; nothing to migrate)",
                self.from_format
            ),
            Some(stats) => {
                writeln!(f, "format     {} -> {FORMAT_VERSION}", self.from_format)?;
                writeln!(
                    f,
                    "kept       {} spans, committed {}, {} cursors, {} segments",
                    stats.spans,
                    stats.committed,
                    stats.sinks.len(),
                    stats.segments
                )?;
                if self.skipped.0 > 0 {
                    writeln!(
                        f,
                        "skipped    {} damaged records ({} spans)",
                        self.skipped.0, self.skipped.1
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// `auditspan queue migrate`: converts a queue of format 1 or 2 in `data_dir` into the
/// current format (procedure in the module doc); a current queue is left as it is.
pub fn migrate(data_dir: &Path) -> Result<MigrateReport, OfflineError> {
    require_queue(data_dir)?;
    let queue = data_dir.join("queue");
    let manifest_file = manifest_path(data_dir);
    let manifest = Manifest::read(&manifest_file).map_err(OfflineError::Queue)?;
    let format = match &manifest {
        Some(manifest) => manifest.format,
        None if queue.join("db").is_file() => 1,
        None => FORMAT_VERSION,
    };
    if format >= FORMAT_VERSION {
        if format > FORMAT_VERSION {
            return Err(OfflineError::Queue(QueueError::UnsupportedFormat {
                path: manifest_file,
                found: format,
                supported: FORMAT_VERSION,
            }));
        }
        return Ok(MigrateReport {
            path: queue,
            from_format: format,
            stats: None,
            skipped: (0, 0),
        });
    }
    let migrating = data_dir.join(MIGRATING_DIR);
    let premigrate = data_dir.join(PREMIGRATE_DIR);
    for dir in [&premigrate, &migrating, &data_dir.join(COMPACTING_DIR)] {
        if dir.exists() {
            return Err(OfflineError::Leftover(dir.clone(), queue.clone()));
        }
    }
    // Held throughout: the old queue is read and swapped out under it.
    let _lock = DirLock::acquire(&lock_path(data_dir), &queue)
        .map_err(|e| OfflineError::queue(e, MIGRATE_HINT))?;
    let segment_size = manifest.map_or(super::SEGMENT_SIZE, |m| m.segment_size);
    let (copied, skipped) = {
        let legacy =
            LegacyQueue::open(data_dir, format, segment_size).map_err(OfflineError::Queue)?;
        let (contents, summary) = legacy.contents().map_err(OfflineError::Queue)?;
        let copied = legacy
            .records()
            .and_then(|records| QueueStore::create_from(&migrating, contents, records));
        let copied = match copied {
            Ok(stats) => stats,
            Err(err) => {
                fs::remove_dir_all(&migrating).ok();
                return Err(OfflineError::Queue(err));
            }
        };
        // What was left out as damaged is not in the copy, as a read would have skipped it.
        let skipped = legacy.damaged();
        let cursors: std::collections::BTreeMap<String, u64> = copied
            .sinks
            .iter()
            .map(|s| (s.name.clone(), s.cursor))
            .collect();
        if (copied.spans, copied.records, copied.committed, &cursors)
            != (
                summary.spans - skipped.1,
                summary.records - skipped.0,
                summary.committed,
                &summary.cursors,
            )
        {
            fs::remove_dir_all(&migrating).ok();
            return Err(OfflineError::CopyDiffers(format!(
                "{} spans in {} records up to {} in format {format} ({} records left out as \
                 damaged), {} in {} up to {} in the copy",
                summary.spans,
                summary.records,
                summary.committed,
                skipped.0,
                copied.spans,
                copied.records,
                copied.committed
            )));
        }
        (copied, skipped)
    };
    // The copy's own lock file goes with its staging directory.
    let result = swap_dirs(data_dir, MIGRATING_DIR, PREMIGRATE_DIR);
    fs::remove_dir_all(&migrating).ok();
    result?;
    fs::remove_dir_all(&premigrate).map_err(io(&premigrate))?;
    Ok(MigrateReport {
        path: queue,
        from_format: format,
        stats: Some(copied),
        skipped,
    })
}

fn sync_dir(dir: &Path) -> Result<(), OfflineError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Total size of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> Result<u64, OfflineError> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let meta = entry.metadata().map_err(io(&entry.path()))?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Overflow, queue::Commit};

    fn options() -> StoreOptions {
        StoreOptions {
            max_bytes: u64::MAX,
            overflow: Overflow::DropOldest,
            min_free_bytes: 0,
            segment_bytes: crate::queue::SEGMENT_BYTES,
        }
    }

    /// Stats and compact refuse a directory without a queue, and create nothing there.
    #[test]
    fn no_queue_is_an_error_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert!(matches!(
            stats(&data, options(), &[]),
            Err(OfflineError::NoQueue(_))
        ));
        assert!(matches!(
            compact(&data, options()),
            Err(OfflineError::NoQueue(_))
        ));
        assert!(!data.exists());
    }

    /// Compaction keeps spans, cursors and waiting entries and leaves no staging directory.
    #[test]
    fn compact_swaps_in_a_complete_copy() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = QueueStore::open(dir.path(), options()).unwrap();
        store.set_sinks(&["a".to_owned()]).unwrap();
        for n in 0..20u8 {
            store
                .commit(&Commit {
                    spans: vec![vec![n; 5000]; 20].into(),
                    pending_put: vec![(vec![n], b"entry".to_vec())],
                    ..Commit::default()
                })
                .unwrap();
        }
        store.ack("a", 390).unwrap();
        drop(store);
        let report = compact(dir.path(), options()).unwrap();
        assert_eq!(
            (report.stats.spans, report.stats.committed),
            (20, 400),
            "the last record"
        );
        assert!(report.disk_after <= report.disk_before, "{report}");
        assert!(!dir.path().join(COMPACTING_DIR).exists());
        assert!(!dir.path().join(PRECOMPACT_DIR).exists());
        let report = stats(dir.path(), options(), &["a".to_owned()]).unwrap();
        assert_eq!(report.waiting, 20);
        assert_eq!(report.stats.sinks[0].cursor, 390);
        assert!(
            report
                .to_string()
                .contains("sink       a  cursor 390  lag 10")
        );
    }

    /// While the queue is open elsewhere, both commands name the holder and what to do.
    #[test]
    fn a_held_lock_is_reported_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _store = QueueStore::open(dir.path(), options()).unwrap();
        let err = stats(dir.path(), options(), &[]).unwrap_err().to_string();
        assert!(err.contains("in use by a running auditspan (pid"), "{err}");
        assert!(err.contains("/metrics"), "{err}");
        let err = compact(dir.path(), options()).unwrap_err().to_string();
        assert!(err.contains("stop it first"), "{err}");
    }

    /// The state an old-format queue keeps beside its spans, as both old formats lay it
    /// out: the cursors of sinks `fast` (at `fast`) and `slow` (at 10), one waiting entry
    /// and one file checkpoint. Flushes `db`.
    fn insert_old_state(db: &sled::Db, fast: u64) {
        let u64_value = |n: u64| crate::queue::record::encode_envelope(&n.to_be_bytes());
        let envelope = crate::queue::record::encode_envelope;
        db.insert(b"cfast", u64_value(fast)).unwrap();
        db.insert(b"cslow", u64_value(10)).unwrap();
        db.insert(b"preq-1", envelope(b"waiting")).unwrap();
        db.insert(b"ifile", envelope(b"offset 9")).unwrap();
        db.flush().unwrap();
    }

    /// Writes the manifest of a queue of `format` (40 spans committed) and checks that
    /// opening it is refused with the migration hint.
    fn refused_as_format(dir: &Path, format: u32) {
        Manifest {
            format,
            db_id: "0123".into(),
            segment_size: crate::queue::SEGMENT_SIZE,
            committed: 40,
        }
        .write(&manifest_path(dir))
        .unwrap();
        let err = QueueStore::open(dir, options()).unwrap_err();
        assert!(
            matches!(err, QueueError::NeedsMigration { found, .. } if found == format),
            "{err}"
        );
        assert!(
            err.to_string().contains("run `auditspan queue migrate`"),
            "{err}"
        );
    }

    /// What [`insert_old_state`] wrote, after the migration.
    fn old_state_kept(store: &QueueStore, fast: u64) {
        assert_eq!(
            (store.cursor("fast"), store.cursor("slow")),
            (Some(fast), Some(10))
        );
        assert_eq!(
            store.pending().unwrap(),
            [(b"req-1".to_vec(), b"waiting".to_vec())]
        );
        assert_eq!(
            store.checkpoint("file").unwrap(),
            Some(b"offset 9".to_vec())
        );
    }

    /// A format 1 queue (one sled database, written here from its documented layout) is
    /// refused at open with the migration hint, and `migrate` converts it keeping every
    /// span with its sequence, the cursors, the waiting entries and the checkpoints;
    /// migrating again changes nothing.
    #[test]
    fn format_1_queue_is_refused_then_migrated_whole() {
        use crate::queue::{SEGMENT_SIZE, record};
        let dir = tempfile::tempdir().unwrap();
        let spans: Vec<Vec<u8>> = (0..30u8).map(|n| vec![n; 1000 + usize::from(n)]).collect();
        {
            let db = sled::Config::new()
                .path(dir.path().join("queue"))
                .segment_size(SEGMENT_SIZE)
                .open()
                .unwrap();
            let u64_value = |n: u64| record::encode_envelope(&n.to_be_bytes());
            db.insert(record::META_FORMAT, u64_value(1)).unwrap();
            db.insert(record::META_DB_ID, record::encode_envelope(b"0123"))
                .unwrap();
            // Spans 1..=10 were delivered and deleted; 11..=40 are kept in three records.
            for (i, chunk) in spans.chunks(10).enumerate() {
                let first = 11 + 10 * i as u64;
                db.insert(record::span_key(first, 10), record::encode_spans(chunk))
                    .unwrap();
            }
            db.insert(record::META_COMMITTED, u64_value(40)).unwrap();
            insert_old_state(&db, 35);
        }
        refused_as_format(dir.path(), 1);
        let err = stats(dir.path(), options(), &[]).unwrap_err();
        assert!(err.to_string().contains("queue format 1"), "{err}");

        let report = migrate(dir.path()).unwrap();
        let migrated = report.stats.clone().unwrap();
        assert_eq!((migrated.spans, migrated.committed), (30, 40), "{report}");
        assert!(!dir.path().join(MIGRATING_DIR).exists());
        assert!(!dir.path().join(PREMIGRATE_DIR).exists());
        let mut store = QueueStore::open(dir.path(), options()).unwrap();
        let read = store.read_after(10, 100).unwrap();
        assert_eq!(read, (11..41).zip(spans).collect::<Vec<_>>());
        old_state_kept(&store, 35);
        drop(store);
        let again = migrate(dir.path()).unwrap();
        assert!(again.stats.is_none(), "{again}");
    }

    /// A format 2 queue (segments holding their span records as sled values, written here
    /// from its documented layout: a closed segment, and the active one with the state,
    /// the closed segment's index, a released watermark and a skipped record) is refused
    /// at open with the migration hint, and `migrate` converts it keeping exactly the kept
    /// spans with their sequences, the cursors, the waiting entries and the checkpoints.
    #[test]
    fn format_2_queue_is_refused_then_migrated_whole() {
        use crate::queue::{SEGMENT_SIZE, record};
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("queue");
        let span = |seq: u64| vec![seq as u8; 500 + seq as usize];
        let spans = |range: std::ops::Range<u64>| range.map(span).collect::<Vec<_>>();
        let u64_value = |n: u64| record::encode_envelope(&n.to_be_bytes());
        let open = |first: u64| {
            sled::Config::new()
                .path(queue.join(format!("{first:020}")))
                .segment_size(SEGMENT_SIZE)
                .open()
                .unwrap()
        };
        // The closed segment 1..=30: records 1..=10 (released), 11..=20 (skipped as
        // damaged), 21..=30 (kept).
        let closed = open(1);
        for first in [1u64, 11, 21] {
            closed
                .insert(
                    record::span_key(first, 10),
                    record::encode_spans(&spans(first..first + 10)),
                )
                .unwrap();
        }
        closed.flush().unwrap();
        drop(closed);
        // The active segment 31.., with the state and records 31..=35 and 36..=40.
        let active = open(31);
        for (key, value) in [
            (record::META_FORMAT, u64_value(2)),
            (record::META_DB_ID, record::encode_envelope(b"0123")),
            (record::META_SEGMENT_SIZE, u64_value(SEGMENT_SIZE as u64)),
            (record::META_FIRST, u64_value(31)),
            (record::META_COMMITTED, u64_value(40)),
            (record::META_RELEASED, u64_value(10)),
            (record::META_BASE, u64_value(1)),
        ] {
            active.insert(key, value).unwrap();
        }
        let mut index = 30u64.to_be_bytes().to_vec();
        for first in [1u64, 11, 21] {
            index.extend_from_slice(&first.to_be_bytes());
            index.extend_from_slice(&10u32.to_be_bytes());
            index.extend_from_slice(&6000u64.to_be_bytes());
        }
        active
            .insert(
                record::seq_key(record::PREFIX_INDEX, 1),
                record::encode_envelope(&index),
            )
            .unwrap();
        active
            .insert(
                record::seq_key(record::PREFIX_SKIPPED, 11),
                record::encode_envelope(&10u32.to_be_bytes()),
            )
            .unwrap();
        for (first, count) in [(31u64, 5u32), (36, 5)] {
            active
                .insert(
                    record::span_key(first, count),
                    record::encode_spans(&spans(first..first + u64::from(count))),
                )
                .unwrap();
        }
        insert_old_state(&active, 33);
        drop(active);
        refused_as_format(dir.path(), 2);

        let report = migrate(dir.path()).unwrap();
        let migrated = report.stats.clone().unwrap();
        assert_eq!((migrated.spans, migrated.committed), (20, 40), "{report}");
        assert!(report.to_string().contains("format     2 -> 3"), "{report}");
        let mut store = QueueStore::open(dir.path(), options()).unwrap();
        let kept: Vec<(u64, Vec<u8>)> = (21..41).map(|seq| (seq, span(seq))).collect();
        assert_eq!(store.read_after(10, 100).unwrap(), kept);
        old_state_kept(&store, 33);
        drop(store);
        assert!(migrate(dir.path()).unwrap().stats.is_none());
    }
}
