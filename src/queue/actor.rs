//! [`SpanQueue`]: the actor that owns the [`QueueStore`], alone on its own thread because
//! every sled call blocks.
//!
//! The correlator sends one [`CommitWindow`] per commit window; sink workers [`Read`] after
//! their cursor and [`Ack`] what their backend took. Wherever they change, the queue
//! publishes its [`QueueState`] on a `watch` channel: idle sink workers wait there for the
//! next commit, a correlator blocked by `overflow = "block"` for room, and shutdown and
//! `import` for every sink to have everything. The actor records the queue gauges and
//! counters where the values change.
//!
//! After a failed commit (a full disk, or any sled I/O error, after which sled stays
//! failed) the next [`CommitWindow`] first reopens the database; until one succeeds the
//! queue reports `auditspan_queue_disk_full` = 1 (or the error) and the correlator keeps
//! its window and retries.

use std::time::{Duration, Instant};

use actix::prelude::*;
use metrics::{Counter, Gauge};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{Commit, Committed, PairedRecord, PendingEntry, QueueError, QueueStore, ReadSpans};
use crate::telemetry::metrics as m;

/// Commit one window (see [`QueueStore::commit`]).
#[derive(Message)]
#[rtype(result = "Result<WindowCommitted, CommitRefused>")]
pub struct CommitWindow(pub Commit);

/// A stored window: what the store did, and the window's buffers, emptied, for the next
/// one (a window of spans is a few MiB that the correlator would otherwise allocate, and
/// the kernel zero, afresh every few milliseconds).
#[derive(Debug)]
pub struct WindowCommitted {
    pub committed: Committed,
    pub spare: Commit,
}

/// A refused commit, handed back so that the caller can keep it and retry.
#[derive(Debug)]
pub struct CommitRefused {
    pub error: QueueError,
    pub commit: Commit,
}

/// How often a failed queue tries to reopen its database.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// Up to `max` spans after sequence `after`, in order, stopping once they hold
/// `max_bytes` (at least one span), read into `into`'s buffers (a reader hands back a
/// batch it is done with; `ReadSpans::default()` otherwise).
#[derive(Message)]
#[rtype(result = "Result<ReadSpans, QueueError>")]
pub struct Read {
    pub after: u64,
    pub max: usize,
    pub max_bytes: usize,
    pub into: ReadSpans,
}

/// `sink` has every span up to `seq`.
#[derive(Message)]
#[rtype(result = "Result<(), QueueError>")]
pub struct Ack {
    pub sink: String,
    pub seq: u64,
}

/// The sink's cursor (0 when it has acknowledged nothing).
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Cursor(pub String);

/// What the correlator stored in earlier runs: its waiting entries and the ids it paired
/// recently.
#[derive(Message)]
#[rtype(result = "Result<Stored, QueueError>")]
pub struct LoadPending;

/// The answer to [`LoadPending`].
#[derive(Debug, Default)]
pub struct Stored {
    pub pending: Vec<PendingEntry>,
    pub paired: Vec<PairedRecord>,
}

/// What the queue publishes wherever it changes: the one channel through which the rest
/// of the pipeline (sink workers, the correlator, shutdown, `/readyz`) learns its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// The last sequence committed.
    pub committed: u64,
    /// The lowest cursor of the configured sinks: every span up to it is delivered
    /// everywhere (`committed` when there are no sinks).
    pub delivered: u64,
    /// Bytes of span records in the queue (`auditspan_queue_bytes`).
    pub bytes: u64,
    /// Commits fail for want of disk space (`auditspan_queue_disk_full`).
    pub disk_full: bool,
    /// Commits fail (a full disk or a sled error); the queue reopens the database.
    pub failed: bool,
    /// Whether the queue takes commits: not while they fail, and under
    /// `overflow = "block"` not while the queue is full.
    pub accepting: bool,
}

pub struct SpanQueue {
    store: QueueStore,
    state: watch::Sender<QueueState>,
    /// Since when the queue fails to write, and whether for a full disk; it reopens the
    /// database before a commit, at most every [`REOPEN_INTERVAL`].
    failed: Option<(Instant, bool)>,
    gauges: Gauges,
    dropped: Counter,
    corrupt: Counter,
    /// `Stats` counters already added to the Prometheus counters.
    reported_dropped: u64,
    reported_corrupt: u64,
}

struct Gauges {
    spans: Gauge,
    bytes: Gauge,
    committed: Gauge,
    disk_full: Gauge,
    lag: Vec<(String, Gauge)>,
}

impl SpanQueue {
    /// The actor, and the receiving end of its [`QueueState`].
    pub fn new(store: QueueStore) -> (Self, watch::Receiver<QueueState>) {
        let (state, state_rx) = watch::channel(QueueState {
            committed: 0,
            delivered: 0,
            bytes: 0,
            disk_full: false,
            failed: false,
            accepting: true,
        });
        let lag = store
            .stats()
            .sinks
            .iter()
            .map(|s| (s.name.clone(), m::sink_lag(&s.name)))
            .collect();
        let mut queue = SpanQueue {
            store,
            state,
            failed: None,
            gauges: Gauges {
                spans: m::queue_spans(),
                bytes: m::queue_bytes(),
                committed: m::queue_committed_sequence(),
                disk_full: m::queue_disk_full(),
                lag,
            },
            dropped: m::queue_dropped_spans(),
            corrupt: m::queue_corrupt_records(),
            reported_dropped: 0,
            reported_corrupt: 0,
        };
        queue.record();
        (queue, state_rx)
    }

    /// Records the gauges and counters and publishes the state, after any change.
    fn record(&mut self) {
        let stats = self.store.stats();
        self.gauges.spans.set(stats.spans as f64);
        self.gauges.bytes.set(stats.bytes as f64);
        self.gauges.committed.set(stats.committed as f64);
        for sink in &stats.sinks {
            if let Some((_, gauge)) = self.gauges.lag.iter().find(|(n, _)| *n == sink.name) {
                gauge.set(sink.lag as f64);
            }
        }
        // The store's counters start at zero on every open (reopen included).
        if stats.dropped_spans < self.reported_dropped {
            self.reported_dropped = 0;
        }
        if stats.corrupt_records < self.reported_corrupt {
            self.reported_corrupt = 0;
        }
        self.dropped
            .increment(stats.dropped_spans - self.reported_dropped);
        self.corrupt
            .increment(stats.corrupt_records - self.reported_corrupt);
        self.reported_dropped = stats.dropped_spans;
        self.reported_corrupt = stats.corrupt_records;
        let disk_full = self.failed.is_some_and(|(_, disk_full)| disk_full);
        self.gauges.disk_full.set(if disk_full { 1.0 } else { 0.0 });
        let state = QueueState {
            committed: stats.committed,
            delivered: stats
                .sinks
                .iter()
                .map(|s| s.cursor)
                .min()
                .unwrap_or(stats.committed),
            bytes: stats.bytes,
            disk_full,
            failed: self.failed.is_some(),
            accepting: self.failed.is_none() && !self.store.is_full(),
        };
        self.state
            .send_if_modified(|old| std::mem::replace(old, state) != state);
    }

    fn note_failure(&mut self, err: &QueueError) {
        if self.failed.is_none() {
            error!(error = %err, "The queue cannot write; holding spans in memory and retrying.");
        }
        self.failed = Some((Instant::now(), err.is_disk_full()));
        self.record();
    }
}

impl Actor for SpanQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Room for every sink worker's request plus the correlator's window.
        ctx.set_mailbox_capacity(64);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        info!(committed = self.store.stats().committed, "Queue closed.");
    }
}

impl Handler<CommitWindow> for SpanQueue {
    type Result = Result<WindowCommitted, CommitRefused>;

    fn handle(&mut self, msg: CommitWindow, _: &mut Self::Context) -> Self::Result {
        let commit = msg.0;
        if let Some((since, _)) = self.failed {
            if since.elapsed() < REOPEN_INTERVAL {
                let error = QueueError::Failed {
                    path: self.store.path().to_owned(),
                };
                return Err(CommitRefused { error, commit });
            }
            if let Err(error) = self.store.reopen() {
                self.note_failure(&error);
                return Err(CommitRefused { error, commit });
            }
        }
        match self.store.commit(&commit) {
            Ok(committed) => {
                if self.failed.take().is_some() {
                    info!("The queue writes again.");
                }
                self.record();
                let mut spare = commit;
                spare.clear();
                Ok(WindowCommitted { committed, spare })
            }
            Err(error) => {
                self.note_failure(&error);
                Err(CommitRefused { error, commit })
            }
        }
    }
}

impl Handler<Read> for SpanQueue {
    type Result = Result<ReadSpans, QueueError>;

    fn handle(&mut self, msg: Read, _: &mut Self::Context) -> Self::Result {
        let mut spans = msg.into;
        let read = self
            .store
            .read_into(msg.after, msg.max, msg.max_bytes, &mut spans);
        if let Err(err) = &read {
            warn!(error = %err, "Reading the queue failed.");
        }
        read.map(|()| spans)
    }
}

impl Handler<Ack> for SpanQueue {
    type Result = Result<(), QueueError>;

    fn handle(&mut self, msg: Ack, _: &mut Self::Context) -> Self::Result {
        let result = self.store.ack(&msg.sink, msg.seq);
        self.record();
        result
    }
}

impl Handler<Cursor> for SpanQueue {
    type Result = u64;

    fn handle(&mut self, msg: Cursor, _: &mut Self::Context) -> u64 {
        self.store.cursor(&msg.0).unwrap_or(0)
    }
}

impl Handler<LoadPending> for SpanQueue {
    type Result = Result<Stored, QueueError>;

    fn handle(&mut self, _: LoadPending, _: &mut Self::Context) -> Self::Result {
        Ok(Stored {
            pending: self.store.pending()?,
            paired: self.store.paired()?,
        })
    }
}
