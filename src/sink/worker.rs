//! [`SinkWorker`]: drives one sink from its cursor in the queue (DESIGN "Sink batches").
//!
//! The worker reads a batch after its cursor, hands it to its [`Sink`], retries only the
//! spans that failed, with exponential backoff and jitter (`backon`) capped by
//! `max_retry_delay`, for as long as it takes, and acknowledges the batch to the queue only
//! when every span of it was delivered. Meanwhile the correlator keeps committing newer
//! spans to disk, so an outage costs disk space, not spans. With nothing to read, the
//! worker waits for the queue's committed sequence to move.
//!
//! Each worker runs on its own arbiter (thread): a sink that blocks (stdout into a full
//! pipe) stops only itself.

use std::{
    borrow::Cow,
    time::{Duration, Instant},
};

use actix::prelude::*;
use backon::{BackoffBuilder, ExponentialBuilder};
use metrics::{Counter, Histogram};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::Sink;
use crate::{
    codec::decode_span,
    queue::actor::{Ack, Cursor, Read, SpanQueue},
    span::Span,
    telemetry::metrics as m,
};

/// How long to wait before reading again after the queue itself failed.
const QUEUE_RETRY: Duration = Duration::from_secs(1);

/// Why an export attempt failed: the `reason` label of `sink_failed_exports_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The backend answered that it cannot take the spans now (e.g. 503, 429).
    Retryable,
    /// No answer in time.
    Timeout,
    /// The backend could not be reached (or a local write failed).
    Connect,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Retryable => "retryable",
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
        }
    }
}

/// The result of one export attempt that did not deliver everything.
#[derive(Debug)]
pub struct ExportFailure {
    pub reason: FailureReason,
    pub message: String,
    /// Indices (into the attempted slice) of the spans to send again; every other span
    /// was delivered.
    pub failed: Vec<usize>,
    /// The backend's own wish (`Retry-After`, `RetryInfo`), honoured when longer than the
    /// backoff's delay.
    pub retry_after: Option<Duration>,
}

/// Drives one sink.
pub struct SinkWorker<S: Sink> {
    sink: S,
    name: String,
    batch_size: usize,
    backoff: ExponentialBuilder,
    queue: Addr<SpanQueue>,
    committed: watch::Receiver<u64>,
    exported: Counter,
    retries: Counter,
    export_duration: Histogram,
}

impl<S: Sink> SinkWorker<S> {
    pub fn new(
        sink: S,
        batch_size: usize,
        max_retry_delay: Duration,
        queue: Addr<SpanQueue>,
        committed: watch::Receiver<u64>,
    ) -> Self {
        let name = sink.name().to_owned();
        SinkWorker {
            backoff: ExponentialBuilder::default()
                .with_jitter()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(max_retry_delay)
                .without_max_times(),
            exported: m::sink_exported(&name),
            retries: m::sink_retries(&name),
            export_duration: m::sink_export_duration(&name),
            sink,
            name,
            batch_size,
            queue,
            committed,
        }
    }

    /// Runs until the queue actor stops. Spawn it on the sink's own arbiter.
    pub async fn run(mut self) {
        let Ok(mut cursor) = self.queue.send(Cursor(self.name.clone())).await else {
            return;
        };
        info!(sink = %self.name, cursor, "Sink started.");
        loop {
            let batch = match self
                .queue
                .send(Read {
                    after: cursor,
                    max: self.batch_size,
                })
                .await
            {
                Ok(Ok(batch)) => batch,
                Ok(Err(err)) => {
                    warn!(sink = %self.name, error = %err, "Reading the queue failed; retrying.");
                    tokio::time::sleep(QUEUE_RETRY).await;
                    continue;
                }
                Err(_) => return,
            };
            let Some(&(last, _)) = batch.last() else {
                // Nothing after the cursor: wait for the next commit.
                if *self.committed.borrow_and_update() > cursor {
                    continue;
                }
                if self.committed.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let spans = self.decode(batch);
            self.deliver(&spans).await;
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
                    tokio::time::sleep(QUEUE_RETRY).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Spans that fail to decode were counted by the queue's checksums already when the
    /// bytes were damaged; a span that passes the checksum but not the decoder is a bug or a
    /// format change, so it is logged and skipped rather than blocking the sink forever.
    fn decode(&self, batch: Vec<(u64, Vec<u8>)>) -> Vec<Span> {
        batch
            .into_iter()
            .filter_map(|(seq, bytes)| match decode_span(&bytes) {
                Ok(span) => Some(span),
                Err(err) => {
                    error!(sink = %self.name, seq, error = %err, "Skipping a span that does not decode.");
                    None
                }
            })
            .collect()
    }

    /// Delivers every span of `spans`, retrying what failed for as long as it takes.
    async fn deliver(&mut self, spans: &[Span]) {
        let mut current: Cow<'_, [Span]> = Cow::Borrowed(spans);
        let mut delays = self.backoff.build();
        while !current.is_empty() {
            let started = Instant::now();
            let result = self.sink.export(&current).await;
            self.export_duration.record(started.elapsed());
            let failure = match result {
                Ok(()) => {
                    self.exported.increment(current.len() as u64);
                    return;
                }
                Err(failure) => failure,
            };
            let delivered = current.len().saturating_sub(failure.failed.len());
            self.exported.increment(delivered as u64);
            m::sink_failed(&self.name, failure.reason.as_str()).increment(1);
            if failure.failed.len() < current.len() {
                current = Cow::Owned(
                    failure
                        .failed
                        .iter()
                        .filter_map(|&i| current.get(i).cloned())
                        .collect(),
                );
            }
            let delay = delays
                .next()
                .unwrap_or(Duration::from_secs(1))
                .max(failure.retry_after.unwrap_or_default());
            warn!(
                sink = %self.name,
                reason = failure.reason.as_str(),
                error = %failure.message,
                spans = current.len(),
                retry_in = ?delay,
                "Export failed; retrying."
            );
            tokio::time::sleep(delay).await;
            self.retries.increment(1);
        }
    }
}
