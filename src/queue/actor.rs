//! [`SpanQueue`]: the actor that owns the [`QueueStore`], alone on its own thread because
//! every sled call blocks.
//!
//! The correlator sends one [`Append`] per commit window; sink workers [`Read`] after their
//! cursor and [`Ack`] what their backend took. After every commit the queue publishes the
//! committed sequence on a `watch` channel, which idle sink workers wait on. The actor
//! records the queue gauges and counters where the values change.
//!
//! After a failed commit (a full disk, or any sled I/O error, after which sled stays
//! failed) the next [`Append`] first reopens the database; until one succeeds the queue
//! reports `auditspan_queue_disk_full` = 1 (or the error) and the correlator keeps its
//! window and retries.

use std::time::{Duration, Instant};

use actix::prelude::*;
use metrics::{Counter, Gauge};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{Commit, Committed, PendingEntry, QueueError, QueueStore, Stats};
use crate::telemetry::{
    metrics as m,
    ready::{QueueHealth, QueueReporter},
};

/// Commit one window (see [`QueueStore::commit`]).
#[derive(Message)]
#[rtype(result = "Result<Committed, AppendError>")]
pub struct Append(pub Commit);

/// A refused commit, handed back so that the caller can keep it and retry.
#[derive(Debug)]
pub struct AppendError {
    pub error: QueueError,
    pub commit: Commit,
}

/// How often a failed queue tries to reopen its database.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// Up to `max` spans after sequence `after`, in order.
#[derive(Message)]
#[rtype(result = "Result<Vec<(u64, Vec<u8>)>, QueueError>")]
pub struct Read {
    pub after: u64,
    pub max: usize,
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

/// A snapshot of the queue.
#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

/// The correlator's waiting entries stored by earlier runs.
#[derive(Message)]
#[rtype(result = "Result<Vec<PendingEntry>, QueueError>")]
pub struct LoadPending;

/// Whether the queue takes commits: false while the disk is full or the database failed,
/// and under `overflow = "block"` while it is full.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Accepting;

pub struct SpanQueue {
    store: QueueStore,
    committed: watch::Sender<u64>,
    /// Since when the queue fails to write (a full disk, a sled error); it reopens the
    /// database before a commit, at most every [`REOPEN_INTERVAL`].
    failed: Option<Instant>,
    gauges: Gauges,
    dropped: Counter,
    corrupt: Counter,
    /// `Stats` counters already added to the Prometheus counters.
    reported_dropped: u64,
    reported_corrupt: u64,
    /// Readiness for `/readyz`: bytes and failure, published where they change.
    health: Option<QueueReporter>,
    last_health: QueueHealth,
}

struct Gauges {
    spans: Gauge,
    bytes: Gauge,
    committed: Gauge,
    disk_full: Gauge,
    lag: Vec<(String, Gauge)>,
}

impl SpanQueue {
    /// `committed` is set to the last committed sequence after every commit.
    pub fn new(store: QueueStore, committed: watch::Sender<u64>) -> Self {
        let lag = store
            .stats()
            .sinks
            .iter()
            .map(|s| (s.name.clone(), m::sink_lag(&s.name)))
            .collect();
        let mut queue = SpanQueue {
            store,
            committed,
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
            health: None,
            last_health: QueueHealth::default(),
        };
        queue.record();
        queue
    }

    /// Publishes the queue's readiness state (see `telemetry::ready`) from now on.
    pub fn with_health(mut self, reporter: QueueReporter) -> Self {
        reporter.report(self.last_health);
        self.health = Some(reporter);
        self
    }

    fn report_health(&mut self, health: QueueHealth) {
        self.last_health = health;
        if let Some(reporter) = &self.health {
            reporter.report(health);
        }
    }

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
        self.committed.send_replace(stats.committed);
        self.report_health(QueueHealth {
            bytes: stats.bytes,
            ..self.last_health
        });
    }

    fn note_failure(&mut self, err: &QueueError) {
        if self.failed.is_none() {
            error!(error = %err, "The queue cannot write; holding spans in memory and retrying.");
        }
        self.failed = Some(Instant::now());
        self.gauges
            .disk_full
            .set(if err.is_disk_full() { 1.0 } else { 0.0 });
        self.report_health(QueueHealth {
            disk_full: err.is_disk_full(),
            failed: true,
            ..self.last_health
        });
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

impl Handler<Append> for SpanQueue {
    type Result = Result<Committed, AppendError>;

    fn handle(&mut self, msg: Append, _: &mut Self::Context) -> Self::Result {
        let commit = msg.0;
        if let Some(since) = self.failed {
            if since.elapsed() < REOPEN_INTERVAL {
                let error = QueueError::Failed {
                    path: self.store.path().to_owned(),
                };
                return Err(AppendError { error, commit });
            }
            if let Err(error) = self.store.reopen() {
                self.note_failure(&error);
                return Err(AppendError { error, commit });
            }
        }
        match self.store.commit(&commit) {
            Ok(committed) => {
                if self.failed.take().is_some() {
                    self.gauges.disk_full.set(0.0);
                    self.last_health.disk_full = false;
                    self.last_health.failed = false;
                    info!("The queue writes again.");
                }
                self.record();
                Ok(committed)
            }
            Err(error) => {
                self.note_failure(&error);
                Err(AppendError { error, commit })
            }
        }
    }
}

impl Handler<Read> for SpanQueue {
    type Result = Result<Vec<(u64, Vec<u8>)>, QueueError>;

    fn handle(&mut self, msg: Read, _: &mut Self::Context) -> Self::Result {
        let spans = self.store.read_after(msg.after, msg.max);
        if let Err(err) = &spans {
            warn!(error = %err, "Reading the queue failed.");
        }
        spans
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

impl Handler<GetStats> for SpanQueue {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.store.stats())
    }
}

impl Handler<LoadPending> for SpanQueue {
    type Result = Result<Vec<PendingEntry>, QueueError>;

    fn handle(&mut self, _: LoadPending, _: &mut Self::Context) -> Self::Result {
        self.store.pending()
    }
}

impl Handler<Accepting> for SpanQueue {
    type Result = bool;

    fn handle(&mut self, _: Accepting, _: &mut Self::Context) -> bool {
        self.failed.is_none() && !self.store.is_full()
    }
}
