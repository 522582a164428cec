//! # The durable span queue.
//!
//! [`QueueStore`] is the one place auditspan keeps state between runs: the spans not yet
//! delivered to every sink, one cursor per sink, the correlator's waiting entries and the
//! ids it paired recently (to recognise repeats across a restart), and the file inputs'
//! checkpoints. It sits on sled 0.34.7 and plain append-only files behind this API;
//! nothing else in the crate touches either. It is synchronous and single-writer: one
//! actor owns it on its own thread. Spans are opaque byte strings here (one encoded span
//! each, ≤ [`MAX_SPAN_BYTES`]); encoding them is [`crate::codec`]'s business.
//!
//! ## Why segments, and why data files
//! sled 0.34 keeps every page it wrote in memory until the page is read back or deleted
//! (its LRU evicts only once one of its 256 shards has collected 64 accesses, which a
//! queue's few large records never do), so one database grew by about 1 MiB of RSS per MB
//! queued. Closing a database frees it. So the queue is a row of *segments* in
//! `<data_dir>/queue/`, each named by the first sequence it may hold: the newest, the
//! **active** segment, takes every write; once [`StoreOptions::segment_bytes`]
//! (`queue.segment_bytes`, 8 MiB) of span records went into it, the next commit first
//! closes it and opens the next one. A closed segment that every sink has passed is
//! deleted whole, which gives its disk space back.
//!
//! A segment is a sled database (its state: the span records' index, cursors, waiting
//! entries, checkpoints) and a **data file** (`spans`, [`datafile`]) that holds its span
//! records (format 3). sled rewrites a leaf, values included, every time it consolidates
//! it (every 10 changes) or splits it (past 16 entries), and a short-lived segment never
//! lets its cleaner reuse that space: with the records as sled values (format 2) every
//! span byte was written two to three times and the files took 2.2–2.7 × the queued bytes;
//! values past sled's blob cutoff go to `blobs/` files that are rewritten the same way and
//! never fsynced (measured in `docs/benchmarks.md`). In the data file each byte is written
//! once (1.01–1.05 × on disk) and read back with one `pread`, so a sink behind the active
//! segment reads a closed segment's records without opening its database, and sled holds
//! only small values in memory, whatever the backlog; `max_bytes` bounds the disk only.
//!
//! ## Design constraints
//! - **Durable before offered.** [`QueueStore::commit`] first appends the window's span
//!   records to the active segment's data file and waits for them (`fdatasync`); then it
//!   writes everything else — the records' index entries, the waiting entries still open,
//!   the removals of those answered, the input checkpoints, the records of ids paired (and
//!   the removals of those forgotten), the committed sequence — as
//!   ONE atomic sled batch into the active segment and flushes it (fsync) before it
//!   returns; only then may the spans be offered to sinks. A crash loses nothing a commit
//!   returned `Ok` for, and never leaves half a window: a batch on disk names only records
//!   that were on disk before it (so a waiting entry is never removed while the span it
//!   made is lost), and records past the last indexed one are cut off at the next open.
//!   Everything that is not a span lives in the active segment's database only, so no
//!   window ever spans two databases.
//! - **Carried forward at rotation.** A new segment's data file is created empty and its
//!   directory fsynced; then its database's first batch, its *base*, holds everything the
//!   queue knows besides spans: format, `db_id`, its first sequence, the committed
//!   sequence, the released watermark, every cursor, every waiting entry, paired-id
//!   record and input checkpoint (copied from the old active segment), the record index of every closed
//!   segment still holding kept spans (where each record is in its data file), the skipped
//!   records, and last the `base` marker — one atomic batch, flushed, and the queue
//!   directory fsynced, before the old segment is dropped. Closed segments are never
//!   written again.
//! - **Recovery is exact.** At open the newest segment with a `base` is the active one and
//!   its database is the whole state: a newer segment without `base` was being created
//!   when the process stopped and holds nothing but part of a base (spans are written only
//!   after the base is flushed), so it is removed — but only when an older segment exists
//!   and the manifest never recorded a sequence that segment would hold; otherwise it is an
//!   error. The old active segment had everything up to its last flush (each commit
//!   flushes), so the state is the one of the last commit, with cursors at worst as of the
//!   last flush (at least once); its data file is cut back to the end of the last record
//!   its index names. A crash after the base flush finds the new segment complete. Every
//!   closed segment the index names and that holds kept spans must be there with its data
//!   file, else the open fails ([`QueueError::Missing`]).
//! - **Deleted only when passed by every sink**, or dropped by `drop_oldest` (counted).
//!   A sink's cursor is the last sequence it acknowledged; a record (a run of spans) is
//!   released when every cursor is at or past its last span, and the *released watermark*
//!   (meta `released`) moves past it in the same batch as the ack; records are always
//!   released oldest first, so the watermark says exactly which are gone. A closed segment
//!   whose last sequence is at or below the watermark is deleted whole, after a flush made
//!   the watermark durable. A cursor not in [`QueueStore::set_sinks`] is deleted, so a
//!   sink removed from the config stops holding spans back; a new sink starts at the oldest
//!   span kept. With no sinks nothing is released.
//! - **At least once.** Acks are written but not flushed (the next commit's flush, a
//!   deletion's flush, or sled's own 500 ms flusher, makes them durable): a crash can only
//!   move a cursor back.
//! - **Corruption is counted, never a panic.** Every sled value carries a version byte and
//!   a CRC32, and so does every span record, which also names its first sequence and span
//!   count. A span record that fails its checksum, is not where its index says, or whose
//!   data file cannot be read is counted (`queue_corrupt_records_total`), logged and
//!   skipped, and remembered as skipped in the active segment (`x` keys), since closed
//!   segments are not written; a damaged cursor makes its sink start at the oldest span; a
//!   value or record with an unknown version byte is a clear error
//!   ([`QueueError::UnsupportedRecord`]), at read and, for the active segment, at open.
//! - **Never silently empty.** `<data_dir>/queue.manifest` (see [`manifest`]) is written
//!   when the queue is created and records its random `db_id`, also stored in every
//!   segment's base, plus (updated at most once a second, after a flush) a committed
//!   sequence the queue is known to have reached. A queue directory with no segment, an
//!   active segment sled opens as empty (zero-length or deleted `db` file) or without its
//!   base, one with an older committed sequence (a truncated `db` file, which sled opens
//!   silently with what precedes the cut), a missing data file that records are indexed
//!   in, a missing closed segment, or one with another id is an error naming the path and
//!   what to do; sled's panic on garbage is caught and becomes [`QueueError::Unreadable`].
//!   A truncation that only loses the last second is not detected.
//! - **Formats.** This build writes and reads format 3. A manifest (or a lone `queue/db`
//!   file, or a segment base) of format 1 — one sled database, before segments — or 2 —
//!   segments holding their span records as sled values — is refused with
//!   [`QueueError::NeedsMigration`], never opened as empty; `auditspan queue migrate`
//!   ([`offline::migrate`], [`migrate`]) converts either offline, copying every kept span
//!   byte for byte with its sequence, and every cursor, waiting entry and checkpoint. A
//!   newer format is refused.
//! - **One owner.** `<data_dir>/queue.lock` is `flock`ed for the store's lifetime and holds
//!   the owner's pid: a second daemon, `auditspan queue stats` while the daemon runs, or a
//!   second open in the same process gets [`QueueError::Locked`] naming that pid.
//! - **Bounded.** `max_bytes` bounds the kept span records' bytes (index key + record,
//!   running total [`Stats::bytes`], rebuilt at open from the active segment's index and
//!   the closed segments' indexes; waiting entries, cursors and checkpoints are not
//!   counted: the correlator bounds them). `drop_oldest` releases whole oldest records in
//!   the same batch as the commit that needs the room (the watermark moves) and moves
//!   cursors past them, counts the spans (`queue_dropped_spans_total`) and logs at most
//!   every 10 s. `block` never refuses what was already read: the commit that reaches
//!   `max_bytes` is stored and returns [`Committed::full`]; the caller stops reading its
//!   inputs until [`QueueStore::is_full`] is false again, so the overshoot is at most one
//!   window.
//! - **Disk headroom.** Before writing, a commit checks (`statvfs`) that the filesystem
//!   keeps [`StoreOptions::min_free_bytes`] (64 MiB) free; otherwise it returns
//!   [`QueueError::DiskFull`] having written nothing, and the caller keeps the window, marks
//!   itself not ready and retries; acks still fit in the headroom. If sled itself or the
//!   data file hits ENOSPC (or any I/O error) the store drops its handles and every call
//!   returns [`QueueError::Failed`] until [`QueueStore::reopen`], which reloads everything
//!   from disk; a rotation that fails removes the half-made segment and keeps the old
//!   active one; [`QueueError::is_disk_full`] classifies both.
//!
//! ## Layout (format 3)
//! ```text
//! <data_dir>/queue.manifest               format = 3, db_id, segment_size, committed
//! <data_dir>/queue.lock
//! <data_dir>/queue/<first seq, 20 digits>/  one segment:
//!     spans                               its span records, appended (data file)
//!     db, conf, snap.*, blobs/            its sled database, segment_size = 2 MiB
//!                                         (SEGMENT_SIZE)
//!
//! key (in a segment's database)         value (every value: envelope(payload))
//! s <u64 BE first seq> <u32 BE count>   u64 BE offset · u32 BE length of    this segment's
//!                                       the record in `spans`               records
//! c <sink name>                         u64 BE last acknowledged sequence  active only
//! p <id>                                opaque waiting correlator entry    active only
//! i <input name>                        opaque checkpoint bytes            active only
//! g <u64 BE first seq of a closed seg>  u64 BE its last seq · n × (u64 BE  active only
//!                                       first · u32 BE count · u64 BE
//!                                       offset · u32 BE length)
//! x <u64 BE first seq>                  u32 BE count: a skipped record     active only
//! m format | m db_id | m segment_size   u64 BE 3 | 32 hex digits | u64 BE bytes
//! m first                               u64 BE first sequence of this segment
//! m committed | m released              u64 BE last committed | last released sequence
//! m base                                u64 BE 1, written last in the base
//!
//! envelope:     u8 version (=1) · payload · u32 BE CRC32(version · payload)
//! span record:  u8 version (=2) · u64 BE first seq · u32 BE count
//!               · count × ( u32 BE length · span bytes ) · u32 BE CRC32(all before)
//! ```
//! "Active only": written to the active segment and carried into the next one's base; a
//! closed segment still holds the copies of its time, which are never read.
//! Sequences start at 1 and are per span; a record holds consecutive spans, so a cursor
//! may point inside a record (reads start mid-record; the record is released only when
//! every cursor passed its last span). A commit packs its spans into records of about
//! [`RECORD_TARGET_BYTES`] (256 KiB), so that a sink reading from inside a record reads
//! little it does not need. sled's databases now hold small values only; one it reopens
//! (the active segment after a restart) takes a whole sled segment (2 MiB) on disk, since
//! sled fills the tail of the segment it recovered.
//!
//! ## Measured (release build, 2 cores, `cargo bench --bench e2e`; `docs/benchmarks.md`)
//! Peak RSS with 200,000 spans (556 MB) queued by a stdout outage: 95–110 MiB. Files: 1.01–
//! 1.05 × the queued bytes while they wait (format 2: 2.2–2.4 ×), and back to about one
//! segment once drained.
//!
//! ## Compaction
//! Whole segments are deleted as sinks pass them, so the files shrink by themselves.
//! [`QueueStore::compact`] (offline, `auditspan queue compact`, [`offline`]) still copies
//! what is kept into fresh segments, which gives back the space of released records in
//! segments that also hold kept ones; it is rarely worth it.

pub mod actor;
pub mod datafile;
pub mod manifest;
pub mod migrate;
pub mod offline;
pub mod record;
mod spans;
mod store;

use std::path::{Path, PathBuf};

pub use datafile::DATA_FILE;
pub use spans::{EncodedSpans, ReadSpans};
pub use store::{
    Commit, Committed, DEFAULT_MIN_FREE_BYTES, MAX_SPAN_BYTES, PairedRecord, PendingEntry,
    QueueStore, RECORD_TARGET_BYTES, SEGMENT_BYTES, SinkStats, Stats, StoreOptions,
};

/// Queue format version written to the manifest and to every segment's base; a newer one
/// is refused, formats 1 (one database) and 2 (segments holding their spans as sled values)
/// are migrated offline (`auditspan queue migrate`).
pub const FORMAT_VERSION: u32 = 3;
/// sled `segment_size` for new databases (existing ones keep the manifest's value).
/// Measured with the whole daemon when the databases held the spans (format 2, 200,000
/// pairs, one connection): 2 MiB gave ~135k events/s and 170 MiB peak RSS where 8 MiB gave
/// ~85k and 260–350 MiB (sled allocates and zeroes a buffer per segment). Values above a
/// quarter of it (512 KiB) go to sled's `blobs/` files, which sled never fsyncs: the
/// databases' values (index entries, waiting entries, checkpoints) stay far below that.
pub const SEGMENT_SIZE: usize = 2 << 20;

const MOVE_ASIDE: &str = "to start with an empty queue, stop auditspan and move the queue \
    directory and queue.manifest aside (the spans in them are then not delivered)";

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// At open: another process (or another `QueueStore` in this process) holds the lock.
    #[error(
        "the queue {path} is in use by another auditspan{}; stop it first (`auditspan queue` \
         commands work only while the daemon is stopped)",
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked { path: PathBuf, pid: Option<u32> },
    /// At open: sled panicked or reported corruption (garbage in the files), or the meta
    /// entries are damaged.
    #[error(
        "the queue database {path} cannot be read ({detail}); restore it from a backup, or {MOVE_ASIDE}"
    )]
    Unreadable { path: PathBuf, detail: String },
    /// At open: the manifest records a queue, but the database is missing or sled opened it
    /// as empty (a truncated, zero-length or deleted `db` file).
    #[error(
        "the queue database {path} is missing or empty, but {manifest} records queue {db_id}: \
         it was truncated, deleted or replaced; restore it from a backup, or {MOVE_ASIDE}"
    )]
    Missing {
        path: PathBuf,
        manifest: PathBuf,
        db_id: String,
    },
    /// At open: the database's committed sequence is below the one the manifest recorded
    /// (sled opens a cut `db` file with what precedes the cut).
    #[error(
        "the queue database {path} ends at sequence {found}, but {manifest} records that \
         {expected} were committed: the database was truncated or replaced by an older copy; \
         restore it from a backup, or {MOVE_ASIDE}"
    )]
    Truncated {
        path: PathBuf,
        manifest: PathBuf,
        expected: u64,
        found: u64,
    },
    /// At open: the database's id differs from the manifest's (files from two queues).
    #[error(
        "the queue database {path} is queue {found}, but {manifest} records queue {expected}: \
         the files belong to different queues; put the right ones together, or {MOVE_ASIDE}"
    )]
    Mismatch {
        path: PathBuf,
        manifest: PathBuf,
        expected: String,
        found: String,
    },
    /// At open: the manifest or database has a newer queue format than this build reads.
    #[error(
        "{path} has queue format {found} but this auditspan reads format {supported}: run the \
         auditspan version that wrote it"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// At open: the queue is of an older format (1: one sled database in `queue/`) that
    /// this build converts only offline, with `auditspan queue migrate`.
    #[error(
        "the queue {path} has queue format {found}, this auditspan reads format {}: stop \
         auditspan and run `auditspan queue migrate` (with the same --config or --data-dir), \
         which converts it keeping every span, cursor and waiting request; or run the \
         auditspan version that wrote it",
        FORMAT_VERSION
    )]
    NeedsMigration { path: PathBuf, found: u32 },
    /// At open or read: a span record has a version byte this build does not know.
    #[error(
        "the span record at sequence {seq} in {path} has record version {version}, this \
         auditspan reads version {}: run the auditspan version that wrote it",
        record::RECORD_VERSION
    )]
    UnsupportedRecord {
        path: PathBuf,
        seq: u64,
        version: u8,
    },
    /// At open: `queue.manifest` cannot be parsed.
    #[error("the queue manifest {path} is damaged ({detail}); restore it, or {MOVE_ASIDE}")]
    Manifest { path: PathBuf, detail: String },
    /// At commit: a span is larger than [`MAX_SPAN_BYTES`]; nothing was written.
    #[error("a span of {len} bytes exceeds the queue's limit of {max} bytes")]
    SpanTooLarge { len: usize, max: usize },
    /// At ack: no cursor of that name (not in the last [`QueueStore::set_sinks`]).
    #[error("no queue cursor for sink {0:?}")]
    UnknownSink(String),
    /// At ack: a sequence that was never committed.
    #[error("sink {sink:?} acknowledged sequence {seq}, but only {committed} were committed")]
    AckBeyondCommitted {
        sink: String,
        seq: u64,
        committed: u64,
    },
    /// At commit: the filesystem would keep less than `min_free_bytes`; nothing was written.
    #[error(
        "the disk holding {path} is full: {available} bytes free, {required} needed \
         (including headroom); free space, or lower queue.max_bytes"
    )]
    DiskFull {
        path: PathBuf,
        available: u64,
        required: u64,
    },
    /// Any call after a sled error, until [`QueueStore::reopen`] succeeds.
    #[error("the queue {path} failed earlier and must be reopened")]
    Failed { path: PathBuf },
    /// At compact: the destination already holds a queue.
    #[error("{path} already exists; compact into an empty data directory")]
    DestinationNotEmpty { path: PathBuf },
    /// I/O on the lock or manifest file.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// An error sled returned (I/O, including ENOSPC, or corruption it detected).
    #[error("the queue database {path}: {cause}")]
    Sled { path: PathBuf, cause: sled::Error },
}

impl QueueError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> QueueError {
        QueueError::Io {
            path: path.to_owned(),
            cause: source,
        }
    }

    /// The data on disk is damaged or inconsistent (restore or move aside; not retryable).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            QueueError::Unreadable { .. }
                | QueueError::Missing { .. }
                | QueueError::Truncated { .. }
                | QueueError::Mismatch { .. }
                | QueueError::Manifest { .. }
                | QueueError::Sled {
                    cause: sled::Error::Corruption { .. },
                    ..
                }
        )
    }

    /// The disk is full (our headroom check or ENOSPC from sled or the OS): report it
    /// (`/readyz` 503), keep the window, [`QueueStore::reopen`] and retry when space returns.
    pub fn is_disk_full(&self) -> bool {
        let enospc = |err: &std::io::Error| {
            err.kind() == std::io::ErrorKind::StorageFull
                || err.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32)
        };
        match self {
            QueueError::DiskFull { .. } => true,
            QueueError::Io { cause, .. } => enospc(cause),
            QueueError::Sled {
                cause: sled::Error::Io(err),
                ..
            } => enospc(err),
            _ => false,
        }
    }
}
