//! [`SinkWorker`]: drives one sink from its cursor in the queue (DESIGN "Sink batches").
//!
//! The worker reads a batch after its cursor and hands it to its [`Sink`]. From the answer:
//! - spans to retry are sent again, alone, with exponential backoff and jitter (`backon`)
//!   capped by `max_retry_delay`, honouring the backend's `Retry-After`, for as long as it
//!   takes;
//! - spans rejected one by one (Honeycomb per-event statuses) are dead-lettered;
//! - a request refused as a whole as invalid (HTTP 400, gRPC INVALID_ARGUMENT) is split in
//!   halves until the span at fault is alone, and that span is dead-lettered; the others
//!   are delivered.
//!
//! The batch is acknowledged to the queue only when every span of it was delivered or
//! written to the dead-letter file (fsynced; a failed write is retried with backoff), so
//! duplicates happen only across a crash. Meanwhile the correlator keeps
//! committing newer spans to disk, so an outage costs disk space, not spans. With nothing
//! to read, the worker waits for the queue's published committed sequence to move.
//!
//! The next batch is read while the current one is exported: the queue reads and checks
//! it on its own thread meanwhile. A sink that writes the stored bytes itself
//! ([`Sink::export_stored`], stdout) gets the batch as read; the others get it decoded.
//!
//! Each worker runs on its own arbiter (thread): a sink that blocks (stdout into a full
//! pipe, a slow backend) stops only itself.

use std::{
    borrow::Cow,
    collections::VecDeque,
    time::{Duration, Instant},
};

use actix::prelude::*;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use metrics::{Counter, Histogram};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{ExportFailure, Exported, FailedSpans, FailureReason, Resource, Sink};
use crate::{
    codec::decode_span,
    deadletter::{DeadLetter, RejectedSpan, WriteSpans},
    queue::{
        ReadSpans,
        actor::{Ack, Cursor, QueueState, Read, SpanQueue},
    },
    span::Span,
    telemetry::metrics as m,
};

/// How long to wait before reading again after the queue itself failed.
const QUEUE_RETRY: Duration = Duration::from_secs(1);

/// Encoded bytes a batch holds at most (besides `batch_size` spans): a batch is in memory
/// several times over (stored, decoded, encoded for the backend, and the next one read
/// meanwhile), so 512 spans of 190 KB would cost hundreds of MiB; 8 MiB keeps a batch of
/// typical 3 KB spans whole.
const BATCH_BYTES: usize = 8 << 20;

/// An exported batch's buffer is handed back to the queue for a later read up to this
/// size.
const SPARE_BYTES: usize = 16 << 20;

/// What every worker needs besides its sink.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub batch_size: usize,
    pub max_retry_delay: Duration,
    pub resource: Resource,
}

/// Drives one sink.
pub struct SinkWorker<S: Sink> {
    sink: S,
    name: String,
    batch_size: usize,
    backoff: ExponentialBuilder,
    queue: Addr<SpanQueue>,
    queue_state: watch::Receiver<QueueState>,
    deadletter: Addr<DeadLetter>,
    /// Encodes dead-lettered spans as the stdout sink writes them.
    resource: Resource,
    exported: Counter,
    retries: Counter,
    rejected: Counter,
    duration: Histogram,
}

impl<S: Sink> SinkWorker<S> {
    pub fn new(
        sink: S,
        settings: &WorkerSettings,
        queue: Addr<SpanQueue>,
        queue_state: watch::Receiver<QueueState>,
        deadletter: Addr<DeadLetter>,
    ) -> Self {
        let name = sink.name().to_owned();
        SinkWorker {
            backoff: ExponentialBuilder::default()
                .with_jitter()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(settings.max_retry_delay)
                .without_max_times(),
            exported: m::sink_exported(&name),
            retries: m::sink_retries(&name),
            rejected: m::sink_failed(&name, FailureReason::Rejected.as_str()),
            duration: m::sink_export_duration(&name),
            sink,
            name,
            batch_size: settings.batch_size,
            queue,
            queue_state,
            deadletter,
            resource: settings.resource.clone(),
        }
    }

    /// A read of the batch after `after`, into `into`'s buffers.
    fn read_after(&self, after: u64, into: ReadSpans) -> Read {
        Read {
            after,
            max: self.batch_size,
            max_bytes: BATCH_BYTES,
            into,
        }
    }

    /// Runs until the queue actor stops. Spawn it on the sink's own arbiter.
    pub async fn run(mut self) {
        let Ok(mut cursor) = self.queue.send(Cursor(self.name.clone())).await else {
            return;
        };
        info!(sink = %self.name, cursor, "Sink started.");
        // The read of the batch after the one being exported, already on its way.
        let mut next = None;
        // The last batch exported, whose buffers the next read reuses.
        let mut spare = ReadSpans::default();
        loop {
            let read = match next.take() {
                Some(read) => read,
                None => self
                    .queue
                    .send(self.read_after(cursor, std::mem::take(&mut spare))),
            };
            let batch = match read.await {
                Ok(Ok(batch)) => batch,
                Ok(Err(err)) => {
                    warn!(sink = %self.name, error = %err, "Reading the queue failed; retrying.");
                    tokio::time::sleep(QUEUE_RETRY).await;
                    continue;
                }
                Err(_) => return,
            };
            let Some(last) = batch.last_seq() else {
                // Nothing after the cursor: wait for the next commit.
                if self
                    .queue_state
                    .wait_for(|s| s.committed > cursor)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            };
            // Sent now, so that the queue's thread reads the next batch while this one is
            // exported (the actor queues the message at once; the answer waits here).
            next = Some(
                self.queue
                    .send(self.read_after(last, std::mem::take(&mut spare))),
            );
            self.deliver_batch(&batch).await;
            // A batch of large spans is not worth keeping in memory meanwhile.
            if batch.capacity() <= SPARE_BYTES {
                spare = batch;
            }
            match self
                .queue
                .send(Ack {
                    sink: self.name.clone(),
                    seq: last,
                })
                .await
            {
                Ok(Ok(())) => cursor = last,
                Ok(Err(err)) => {
                    error!(sink = %self.name, error = %err, "Acknowledging to the queue failed; the batch will be sent again.");
                    next = None;
                    tokio::time::sleep(QUEUE_RETRY).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Delivers (or dead-letters) every span of the batch read from the queue. A sink that
    /// writes stored spans itself gets them as read, and the whole batch again after a
    /// backoff when it fails (it fails only as a whole); any other sink, or an answer that
    /// names spans, goes through decoding and [`SinkWorker::deliver`].
    async fn deliver_batch(&mut self, batch: &ReadSpans) {
        let mut delays = self.backoff.build();
        loop {
            let started = Instant::now();
            let Some(result) = self.sink.export_stored(batch) else {
                break;
            };
            self.duration.record(started.elapsed());
            let failure = match result {
                Ok(stored) => {
                    let delivered = (batch.len() as u64).saturating_sub(stored.undecodable);
                    self.acknowledged(delivered, &stored.exported);
                    return;
                }
                Err(failure) => failure,
            };
            let whole = failure.retry().len() >= batch.len()
                && matches!(&failure.failed, FailedSpans::Named { rejected, .. } if rejected.is_empty());
            if !whole {
                break;
            }
            self.wait_to_retry(&failure, &mut delays, batch.len()).await;
        }
        let spans = self.decode(batch);
        self.deliver(&spans).await;
    }

    /// Spans that fail to decode were counted by the queue's checksums already when the
    /// bytes were damaged; a span that passes the checksum but not the decoder is a bug or a
    /// format change, so it is logged and skipped rather than blocking the sink forever.
    fn decode(&self, batch: &ReadSpans) -> Vec<Span> {
        batch
            .iter()
            .filter_map(|(seq, bytes)| match decode_span(bytes) {
                Ok(span) => Some(span),
                Err(err) => {
                    error!(sink = %self.name, seq, error = %err, "Skipping a span that does not decode.");
                    None
                }
            })
            .collect()
    }

    /// Delivers or dead-letters every span of `spans`, retrying what failed for as long as
    /// it takes. Parts are attempted in order, so the backend sees the batch's order except
    /// where a retry puts a span after later ones.
    async fn deliver(&mut self, spans: &[Span]) {
        let mut todo: VecDeque<Cow<'_, [Span]>> = VecDeque::from([Cow::Borrowed(spans)]);
        let mut delays = self.backoff.build();
        while let Some(current) = todo.pop_front() {
            let started = Instant::now();
            let result = self.sink.export(&current).await;
            self.duration.record(started.elapsed());
            let failure = match result {
                Ok(exported) => {
                    self.acknowledged(current.len() as u64, &exported);
                    delays = self.backoff.build();
                    continue;
                }
                Err(failure) => failure,
            };
            let (retry, rejected) = match &failure.failed {
                FailedSpans::WholeBatchInvalid => {
                    self.split_rejected(current, failure.message, &mut todo)
                        .await;
                    continue;
                }
                FailedSpans::Named { retry, rejected } => (retry, rejected),
            };
            let retry: Vec<Span> = retry
                .iter()
                .filter_map(|&i| current.get(i).cloned())
                .collect();
            let rejected: Vec<(&Span, String)> = rejected
                .iter()
                .filter_map(|(i, why)| current.get(*i).map(|span| (span, why.clone())))
                .collect();
            let delivered = current.len().saturating_sub(retry.len() + rejected.len());
            self.exported.increment(delivered as u64);
            if !rejected.is_empty() {
                self.dead_letter(&rejected).await;
            }
            if retry.is_empty() {
                continue;
            }
            self.wait_to_retry(&failure, &mut delays, retry.len()).await;
            todo.push_front(Cow::Owned(retry));
        }
    }

    /// Counts and logs a failed export of `spans` spans, then waits the backoff's next
    /// delay, or the backend's `retry_after` when that is longer.
    async fn wait_to_retry(
        &mut self,
        failure: &ExportFailure,
        delays: &mut ExponentialBackoff,
        spans: usize,
    ) {
        m::sink_failed(&self.name, failure.reason.as_str()).increment(1);
        let delay = delays
            .next()
            .unwrap_or(Duration::from_secs(1))
            .max(failure.retry_after.unwrap_or_default());
        warn!(
            sink = %self.name,
            reason = failure.reason.as_str(),
            error = %failure.message,
            spans,
            retry_in = ?delay,
            "Export failed; retrying."
        );
        tokio::time::sleep(delay).await;
        self.retries.increment(1);
    }

    fn acknowledged(&mut self, spans: u64, exported: &Exported) {
        let rejected = exported.rejected.min(spans);
        self.exported.increment(spans - rejected);
        if rejected > 0 {
            self.rejected.increment(rejected);
            warn!(
                sink = %self.name,
                spans = rejected,
                message = exported.message.as_deref().unwrap_or(""),
                "The backend accepted the request but dropped some spans; they are not retried."
            );
        }
    }

    /// A request refused as a whole: its halves go first in the queue of parts to try;
    /// a single span is the one at fault and is dead-lettered.
    async fn split_rejected<'a>(
        &mut self,
        current: Cow<'a, [Span]>,
        message: String,
        todo: &mut VecDeque<Cow<'a, [Span]>>,
    ) {
        if current.len() <= 1 {
            let rejected: Vec<(&Span, String)> =
                current.iter().map(|span| (span, message.clone())).collect();
            self.dead_letter(&rejected).await;
            return;
        }
        warn!(
            sink = %self.name,
            error = %message,
            spans = current.len(),
            "The batch was refused as a whole (by the backend, or as over the sink's request size limit); splitting it."
        );
        let mid = current.len() / 2;
        let (first, second) = match current {
            Cow::Borrowed(all) => (Cow::Borrowed(&all[..mid]), Cow::Borrowed(&all[mid..])),
            Cow::Owned(mut all) => {
                let second = all.split_off(mid);
                (Cow::Owned(all), Cow::Owned(second))
            }
        };
        todo.push_front(second);
        todo.push_front(first);
    }

    // `&mut self` everywhere: a future holding `&self` would need the sink to be `Sync`.

    /// Writes rejected spans to the dead-letter file, and counts them as rejected once it
    /// has them. Until then they stay in the queue (the batch is not acknowledged): a write
    /// that fails (full disk) is retried with backoff for as long as it takes, and `/readyz`
    /// says so (see `deadletter.rs`).
    async fn dead_letter(&mut self, rejected: &[(&Span, String)]) {
        error!(
            sink = %self.name,
            spans = rejected.len(),
            error = %rejected.first().map(|(_, why)| why.as_str()).unwrap_or(""),
            "The backend rejected spans for good; they go to the dead-letter file."
        );
        let received = jiff::Timestamp::now();
        let records: Vec<RejectedSpan> = rejected
            .iter()
            .map(|(span, why)| {
                let mut json = Vec::new();
                super::stdout::encode(span, &self.resource, &mut json);
                if json.last() == Some(&b'\n') {
                    json.pop();
                }
                RejectedSpan {
                    received,
                    sink: self.name.clone(),
                    message: why.clone(),
                    span: json,
                }
            })
            .collect();
        let mut delays = self.backoff.build();
        loop {
            let why = match self.deadletter.send(WriteSpans(records.clone())).await {
                Ok(Ok(())) => break,
                Ok(Err(err)) => err.to_string(),
                // Only at shutdown, which stops this worker too.
                Err(_) => "the dead-letter writer has stopped".to_owned(),
            };
            let delay = delays.next().unwrap_or(Duration::from_secs(1));
            warn!(
                sink = %self.name,
                spans = records.len(),
                error = %why,
                retry_in = ?delay,
                "Rejected spans could not be dead-lettered; they stay in the queue and the write is retried."
            );
            tokio::time::sleep(delay).await;
        }
        self.rejected.increment(rejected.len() as u64);
    }
}
