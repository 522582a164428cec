//! The correlator actor: pairs each request with its response ([`pairing`]) and commits
//! what it made to the durable queue in group-commit windows (DESIGN "Queue").
//!
//! Every `queue.flush_interval` (or sooner, once [`WINDOW_SPANS`] spans are ready, or as
//! soon as an [`Ingest`] waits for its commit receipt) it sends the queue ONE [`CommitWindow`]: the spans completed in the window, the waiting entries
//! that arrived in it and are still waiting, and the removals of persisted entries answered
//! or expired since. Only one commit is in flight; the next window gathers while it runs.
//!
//! The correlator alone knows the binary form of its waiting entries: it encodes them into
//! commits and decodes the ones an earlier run stored ([`Correlator::restore`]). It also
//! commits, with the spans they made, the ids each window paired (one record per window,
//! keyed by the wall-clock time `pair_timeout` later, removed once that has passed), and
//! puts them back at start ([`Correlator::restore_paired`]): a repeat of an event whose
//! first copy came before a restart is a duplicate, and the records on disk never hold
//! more than one `pair_timeout` of pairs.
//!
//! Invariants:
//! - Spans reach the queue in the order they were made, and a span reaches a sink only
//!   after the queue flushed it.
//! - A request whose response has not come is on disk after the first commit that follows
//!   its arrival, so a restart loses it only within one window (DESIGN invariant 3).
//! - Back-pressure: while a commit is running and [`WINDOW_SPANS`] more spans are ready,
//!   the correlator answers a listener's batch only once that commit is done; under
//!   `overflow = "block"` only once the queue takes spans again. Listeners keep one batch
//!   in flight, so they then stop reading, which in turn slows Vault.
//! - A commit that fails (full disk, sled error) is kept and retried with the next window;
//!   past [`MAX_HELD_SPANS`] held spans the oldest are dropped and counted in
//!   `queue_dropped_spans_total`, so memory stays bounded while the disk is full.

pub mod clock;
pub mod pairing;

use std::{collections::VecDeque, sync::Arc, time::Duration, time::Instant};

use actix::prelude::*;
use metrics::{Counter, Gauge, Histogram};
use tokio::sync::{Semaphore, oneshot, watch};
use tracing::{error, info, warn};

pub use pairing::{Feed, IdKey, InputId, Now, Pairing, Settings, Source, Step, StreamId};

use crate::{
    codec,
    config::Config,
    event::AuditEvent,
    queue::{
        Commit, PairedRecord, PendingEntry,
        actor::{CommitWindow, QueueState, SpanQueue, WindowCommitted},
    },
    span::{Outcome, Span},
    telemetry::{metrics as m, vault::VaultRequests},
};

/// Spans that make a window commit before its interval is over.
pub const WINDOW_SPANS: usize = 2048;

/// Spans kept in memory while the queue cannot write, at most.
pub const MAX_HELD_SPANS: usize = 200_000;

/// A stored window's span buffer is kept for the next window up to this size.
const MAX_SPARE_BYTES: usize = 8 << 20;

/// Events from one input, in the order they were read.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ingest {
    pub source: Source,
    pub events: Vec<AuditEvent>,
    /// When the input read the bytes these events came from.
    pub read_at: Instant,
    /// Stored in the same atomic commit as every span and waiting entry these events (and
    /// all earlier ones) made, under this key: a file input's position after the bytes
    /// they came from, so that a restart resumes exactly there. A later checkpoint of the
    /// same key replaces an earlier one.
    pub checkpoint: Option<(String, Vec<u8>)>,
    /// Answered once what these events made is durable (the commit holding it was
    /// flushed), or with the reason it could not be written: the http input acknowledges
    /// a request only then.
    pub committed: Option<oneshot::Sender<Result<(), CommitFailed>>>,
}

impl Ingest {
    /// Events to pair, with neither a checkpoint nor a commit receipt.
    pub fn events(source: Source, events: Vec<AuditEvent>, read_at: Instant) -> Ingest {
        Ingest {
            source,
            events,
            read_at,
            checkpoint: None,
            committed: None,
        }
    }
}

/// Why the commit holding an [`Ingest`] failed (its spans are kept and retried with the
/// next window, but the sender of the events was not told they are durable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the queue could not commit: {0}")]
pub struct CommitFailed(pub String);

/// A stream (connection, file) ended; a replayed stream's event clock is dropped once its
/// entries are gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StreamClosed(pub StreamId);

/// Expire everything still waiting, commit, and answer once the queue has it all (end of
/// `import`).
#[derive(Message)]
#[rtype(result = "Counts")]
pub struct Finish;

/// Commit every span and every waiting entry, and answer once the queue has them
/// (shutdown).
#[derive(Message)]
#[rtype(result = "Counts")]
pub struct Drain;

impl Settings {
    /// The pairing settings from `[correlate]` and `[parse]`.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            pair_timeout: config.correlate.pair_timeout,
            join_traceparent: config.correlate.join_traceparent,
            max_attributes: config.parse.max_attributes,
            max_span_bytes: config.parse.max_span_bytes,
        }
    }
}

/// Spans made, by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpanCounts {
    pub paired: u64,
    pub response_missing: u64,
    pub request_missing: u64,
}

impl SpanCounts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Paired => self.paired += 1,
            Outcome::ResponseMissing => self.response_missing += 1,
            Outcome::RequestMissing => self.request_missing += 1,
        }
    }

    /// The count of `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Paired => self.paired,
            Outcome::ResponseMissing => self.response_missing,
            Outcome::RequestMissing => self.request_missing,
        }
    }

    pub fn total(&self) -> u64 {
        self.paired + self.response_missing + self.request_missing
    }
}

/// What the correlator did since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub spans: SpanCounts,
    pub duplicates: u64,
    /// Entries waiting for their partner (on disk after a [`Drain`]).
    pub pending: u64,
    /// Spans held in memory because the queue could not take them (lost at exit).
    pub held: u64,
}

/// The correlator actor.
pub struct Correlator {
    pairing: Pairing,
    queue: Addr<SpanQueue>,
    /// The queue's published state: whether it takes commits again (`overflow = "block"`).
    queue_state: watch::Receiver<QueueState>,
    /// Input names, by [`InputId`], stored with waiting entries.
    inputs: Vec<String>,
    flush_interval: Duration,
    /// Spans of the current window.
    outbox: Vec<Span>,
    /// Input checkpoints of the current window (the latest per key).
    checkpoints: Vec<(String, Vec<u8>)>,
    /// `correlate.pair_timeout`, in nanoseconds: how long paired ids are remembered.
    pair_timeout_nanos: i64,
    /// Paired-id records on disk (or in the commit on its way), oldest first: the time to
    /// forget them and their key.
    paired_records: VecDeque<(i64, Vec<u8>)>,
    /// The number of the last paired-id record (unique with its time in the key).
    paired_window: u64,
    /// Who waits for the current window to be durable ([`Ingest::committed`]).
    receipts: Vec<oneshot::Sender<Result<(), CommitFailed>>>,
    /// A commit the queue refused, retried (with newer windows appended) at the next one.
    held: Option<Commit>,
    /// The last stored window's buffers, emptied, for the next window.
    spare: Option<Commit>,
    /// One permit: held by the commit in flight.
    committing: Arc<Semaphore>,
    /// `overflow = "block"` and the queue said it is full.
    blocked: bool,
    /// Read time and event count of every batch taken since the last commit started.
    window_reads: Vec<(Instant, u64)>,
    commit_latency: Histogram,
    counts: Counts,
    duplicates: Vec<Counter>,
    /// Indexed like [`Outcome::ALL`].
    spans_created: [Counter; 3],
    truncated_attributes: Counter,
    truncated_span_bytes: Counter,
    dropped: Counter,
    pending_gauge: Gauge,
    /// Vault's request metrics, when metrics are recorded.
    vault: Option<VaultRequests>,
}

impl Correlator {
    /// `inputs` are the input names, indexed by [`InputId`]; `queue_state` is what `queue`
    /// publishes.
    pub fn new(
        settings: Settings,
        inputs: &[String],
        queue: Addr<SpanQueue>,
        queue_state: watch::Receiver<QueueState>,
        flush_interval: Duration,
        feed: Feed,
    ) -> Self {
        let pair_timeout_nanos =
            i64::try_from(settings.pair_timeout.as_nanos()).unwrap_or(i64::MAX);
        Correlator {
            pairing: Pairing::new(settings, feed),
            pair_timeout_nanos,
            paired_records: VecDeque::new(),
            paired_window: 0,
            queue,
            queue_state,
            inputs: inputs.to_vec(),
            flush_interval,
            outbox: Vec::new(),
            checkpoints: Vec::new(),
            receipts: Vec::new(),
            held: None,
            spare: None,
            committing: Arc::new(Semaphore::new(1)),
            blocked: false,
            window_reads: Vec::new(),
            commit_latency: m::commit_latency(),
            counts: Counts::default(),
            duplicates: inputs
                .iter()
                .map(|i| m::events_ignored(i, "duplicate"))
                .collect(),
            spans_created: Outcome::ALL.map(m::spans_created),
            truncated_attributes: m::attributes_truncated("attributes"),
            truncated_span_bytes: m::attributes_truncated("span_bytes"),
            dropped: m::queue_dropped_spans(),
            pending_gauge: m::correlator_pending(),
            vault: None,
        }
    }

    /// Records Vault's request metrics from every span made from now on, with at most
    /// `max_label_values` distinct mount points and namespaces each.
    pub fn record_vault_requests(&mut self, max_label_values: usize) {
        self.vault = Some(VaultRequests::new(max_label_values));
    }

    /// Puts back the waiting entries an earlier run committed (as the queue stored them).
    /// Entries of an input no longer configured join the first input; an entry that does
    /// not decode is logged and skipped.
    pub fn restore(&mut self, stored: Vec<PendingEntry>) {
        let mut entries = Vec::with_capacity(stored.len());
        for (key, bytes) in stored {
            match codec::decode_waiting(&bytes) {
                Ok(entry) => entries.push(entry),
                Err(err) => {
                    warn!(key = ?key, error = %err, "Skipping a stored waiting entry that does not decode.")
                }
            }
        }
        let count = entries.len();
        entries.sort_by_key(|e| e.arrived_unix_nano);
        let now = Now::read();
        for entry in entries {
            let input = self
                .inputs
                .iter()
                .position(|i| *i == entry.input)
                .unwrap_or(0);
            self.pairing
                .restore(input, entry.event, entry.arrived_unix_nano, now);
        }
        if count > 0 {
            info!(
                entries = count,
                "Restored the requests that were waiting for their response."
            );
        }
        // They are on disk already; what persist() reports now is only their removals.
        self.pending_gauge.set(self.pairing.pending() as f64);
    }

    /// Puts back the paired-id records an earlier run committed (as the queue stored them);
    /// those whose time has passed are removed with the next commit. A record that does
    /// not decode is logged and removed too.
    pub fn restore_paired(&mut self, mut stored: Vec<PairedRecord>) {
        stored.sort();
        let now = Now::read();
        let mut restored = 0;
        for (key, ids) in stored {
            let parsed = key
                .get(..8)
                .zip(key.get(8..16))
                .filter(|_| key.len() == 16 && ids.len() % 16 == 0)
                .and_then(|(forget, window)| {
                    Some((
                        i64::from_be_bytes(forget.try_into().ok()?),
                        u64::from_be_bytes(window.try_into().ok()?),
                    ))
                });
            let Some((forget, window)) = parsed else {
                warn!(key = ?key, "Removing a stored paired-id record that does not decode.");
                self.paired_records.push_front((i64::MIN, key));
                continue;
            };
            let keys: Vec<IdKey> = ids
                .chunks_exact(16)
                .filter_map(|c| c.try_into().ok())
                .collect();
            if forget > now.unix_nano {
                self.pairing.restore_paired(&keys, forget, now);
                restored += keys.len();
            }
            self.paired_window = self.paired_window.max(window);
            self.paired_records.push_back((forget, key));
        }
        if restored > 0 {
            info!(
                ids = restored,
                "Restored the ids paired recently: repeats of them are duplicates."
            );
        }
    }

    fn record(&mut self, span: Span) {
        let i = Outcome::ALL
            .iter()
            .position(|o| *o == span.outcome)
            .unwrap_or(0);
        self.counts.spans.add(span.outcome);
        self.spans_created[i].increment(1);
        if let Some(vault) = &mut self.vault {
            vault.record(&span);
        }
        self.outbox.push(span);
    }

    fn expire(&mut self, all: bool) {
        let mut expired = Vec::new();
        if all {
            self.pairing.expire_all(&mut expired);
        } else {
            self.pairing.expire(Now::read(), &mut expired);
        }
        for span in expired {
            self.record(span);
        }
    }

    fn account(&mut self) {
        let t = self.pairing.take_truncations();
        if t.attributes > 0 {
            self.truncated_attributes.increment(t.attributes);
        }
        if t.span_bytes > 0 {
            self.truncated_span_bytes.increment(t.span_bytes);
        }
        self.pending_gauge.set(self.pairing.pending() as f64);
    }

    /// Builds the window's commit: held spans first, then this window's, then the waiting
    /// entries' changes.
    fn take_window(&mut self) -> Commit {
        let mut commit = self
            .held
            .take()
            .or_else(|| self.spare.take())
            .unwrap_or_default();
        // Encoded straight into the commit's one buffer: no allocation per span.
        for span in self.outbox.drain(..) {
            commit.spans.push_with(|out| codec::encode_span(&span, out));
        }
        let inputs = &self.inputs;
        let mut puts = Vec::new();
        let removed = self.pairing.persist(|key, input, arrived, event| {
            let mut bytes = Vec::with_capacity(1024);
            let name = inputs.get(input).map_or("", String::as_str);
            codec::encode_waiting(name, arrived, event, &mut bytes);
            puts.push((key.to_vec(), bytes));
        });
        commit.pending_put.extend(puts);
        commit
            .pending_remove
            .extend(removed.iter().map(|k| k.to_vec()));
        for (key, position) in self.checkpoints.drain(..) {
            commit.checkpoints.retain(|(k, _)| *k != key);
            commit.checkpoints.push((key, position));
        }
        self.take_paired(&mut commit);
        commit
    }

    /// Adds to `commit` the record of the ids paired since the last window, and the
    /// removals of the records whose time to forget has passed.
    fn take_paired(&mut self, commit: &mut Commit) {
        let now = Now::read().unix_nano;
        let ids = self.pairing.take_paired();
        if !ids.is_empty() {
            let forget = now.saturating_add(self.pair_timeout_nanos);
            self.paired_window += 1;
            let mut key = forget.to_be_bytes().to_vec();
            key.extend_from_slice(&self.paired_window.to_be_bytes());
            commit.paired_put.push((key.clone(), ids.concat()));
            self.paired_records.push_back((forget, key));
        }
        while let Some((forget, _)) = self.paired_records.front()
            && *forget <= now
        {
            if let Some((_, key)) = self.paired_records.pop_front() {
                commit.paired_remove.push(key);
            }
        }
    }

    /// Starts a commit of the current window unless one is running.
    fn commit(&mut self, ctx: &mut Context<Self>) {
        self.account();
        let Ok(permit) = Arc::clone(&self.committing).try_acquire_owned() else {
            return;
        };
        let commit = self.take_window();
        let receipts = std::mem::take(&mut self.receipts);
        if commit.is_empty() {
            // Nothing these events made needs the disk (duplicates, test messages).
            answer(receipts, &Ok(()));
            return;
        }
        let reads = std::mem::take(&mut self.window_reads);
        let send = self.queue.send(CommitWindow(commit));
        ctx.spawn(send.into_actor(self).map(move |result, act, ctx| {
            drop(permit);
            let answered = match &result {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(refused)) => Err(CommitFailed(refused.error.to_string())),
                Err(_) => Err(CommitFailed("the queue is gone".to_owned())),
            };
            answer(receipts, &answered);
            match result {
                Ok(Ok(WindowCommitted { committed, spare })) => {
                    // A window of large spans is not worth keeping in memory meanwhile.
                    if spare.spans.capacity() <= MAX_SPARE_BYTES {
                        act.spare = Some(spare);
                    }
                    for (read_at, events) in reads {
                        act.commit_latency
                            .record_many(read_at.elapsed().as_secs_f64(), events as usize);
                    }
                    act.blocked = committed.full;
                    // A full window, or senders waiting for a receipt (the http input),
                    // commit at once rather than at the next tick.
                    if act.outbox.len() >= WINDOW_SPANS || !act.receipts.is_empty() {
                        act.commit(ctx);
                    }
                }
                Ok(Err(failed)) => {
                    act.window_reads.splice(0..0, reads);
                    act.hold(failed.commit);
                }
                Err(_) => error!("The queue is gone; spans are lost."),
            }
        }));
    }

    /// Keeps a refused commit for the next window, dropping the oldest spans beyond
    /// [`MAX_HELD_SPANS`].
    fn hold(&mut self, mut commit: Commit) {
        if commit.spans.len() > MAX_HELD_SPANS {
            let excess = commit.spans.len() - MAX_HELD_SPANS;
            commit.spans.drop_front(excess);
            self.dropped.increment(excess as u64);
            warn!(
                dropped = excess,
                "The queue cannot write; dropped the oldest spans held in memory."
            );
        }
        self.held = Some(commit);
    }

    /// Waits until the commit in flight is done.
    fn settle(&self) -> impl ActorFuture<Self, Output = ()> + use<> {
        let committing = Arc::clone(&self.committing);
        async move {
            drop(committing.acquire().await);
        }
        .into_actor(self)
    }

    /// Waits until the queue takes spans again (`overflow = "block"`), or is gone.
    fn wait_unblocked(&self) -> impl ActorFuture<Self, Output = ()> + use<> {
        let mut state = self.queue_state.clone();
        async move {
            drop(state.wait_for(|s| s.accepting).await);
        }
        .into_actor(self)
        .map(|(), act: &mut Self, _| act.blocked = false)
    }

    /// Commits everything (the held commit, the window, every waiting entry) and answers
    /// with the counts once the queue has it, retrying while the queue refuses.
    fn flush_all(&mut self, ctx: &mut Context<Self>) -> ResponseActFuture<Self, Counts> {
        self.commit(ctx);
        Box::pin(self.settle().then(|(), act, ctx| {
            // What gathered while the last window committed, and anything held.
            act.commit(ctx);
            act.settle().map(|(), act, _| Counts {
                pending: act.pairing.pending() as u64,
                held: act.held.as_ref().map_or(0, |c| c.spans.len() as u64),
                ..act.counts
            })
        }))
    }
}

/// Tells every waiting sender how the commit of its events went.
fn answer(
    receipts: Vec<oneshot::Sender<Result<(), CommitFailed>>>,
    result: &Result<(), CommitFailed>,
) {
    for receipt in receipts {
        // A sender that stopped waiting (its client went away) needs no answer.
        receipt.send(result.clone()).ok();
    }
}

impl Actor for Correlator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        ctx.run_interval(self.flush_interval, |act, ctx| {
            act.expire(false);
            act.commit(ctx);
        });
    }
}

impl Handler<Ingest> for Correlator {
    type Result = ResponseActFuture<Self, ()>;

    /// Answers once the events are taken, or, when a whole window waits behind a running
    /// commit (or the queue blocks), only once that is over: the listener holds its next
    /// batch until then. (Not `ctx.wait`: that would also stop the commit's own answer.)
    fn handle(&mut self, msg: Ingest, ctx: &mut Self::Context) -> Self::Result {
        let now = Now::read();
        if let Some((key, position)) = msg.checkpoint {
            self.checkpoints.retain(|(k, _)| *k != key);
            self.checkpoints.push((key, position));
        }
        if let Some(receipt) = msg.committed {
            self.receipts.push(receipt);
        }
        self.window_reads
            .push((msg.read_at, msg.events.len() as u64));
        for event in msg.events {
            match self.pairing.ingest(msg.source, event, now) {
                Step::Waiting => {}
                Step::Span(span) => self.record(*span),
                Step::Duplicate => {
                    self.counts.duplicates += 1;
                    if let Some(c) = self.duplicates.get(msg.source.input) {
                        c.increment(1);
                    }
                }
            }
        }
        self.expire(false);
        // A sender waiting for its receipt (the http input) should not also wait for the
        // next tick: commit now unless a commit is running, whose end starts the next.
        if self.outbox.len() >= WINDOW_SPANS || !self.receipts.is_empty() {
            self.commit(ctx);
        }
        if self.blocked {
            return Box::pin(self.wait_unblocked());
        }
        if self.outbox.len() >= WINDOW_SPANS {
            return Box::pin(self.settle().map(|(), act, ctx| act.commit(ctx)));
        }
        Box::pin(actix::fut::ready(()))
    }
}

impl Handler<StreamClosed> for Correlator {
    type Result = ();

    fn handle(&mut self, msg: StreamClosed, _: &mut Self::Context) {
        self.pairing.close_stream(msg.0);
    }
}

impl Handler<Finish> for Correlator {
    type Result = ResponseActFuture<Self, Counts>;

    fn handle(&mut self, _: Finish, ctx: &mut Self::Context) -> Self::Result {
        self.expire(true);
        self.flush_all(ctx)
    }
}

impl Handler<Drain> for Correlator {
    type Result = ResponseActFuture<Self, Counts>;

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) -> Self::Result {
        self.flush_all(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Overflow,
        event::{ParseLimits, Parsed, parse_line},
        queue::{QueueStore, StoreOptions},
    };

    fn event(kind: &str, id: &str, second: u32) -> AuditEvent {
        let line = format!(
            r#"{{"type":"{kind}","time":"2025-03-11T14:00:{second:02}Z","request":{{"id":"{id}","operation":"read","path":"kv/x"}}}}"#
        );
        match parse_line(line.as_bytes(), "", &ParseLimits::default()) {
            Ok(Parsed::Event(event)) => *event,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn settings() -> Settings {
        Settings {
            pair_timeout: Duration::from_secs(10),
            join_traceparent: true,
            max_attributes: 256,
            max_span_bytes: 256 << 10,
        }
    }

    /// A commit receipt is answered only once the window holding the batch's span, waiting
    /// entry and checkpoint is on disk, and all three are in that one commit.
    #[actix::test]
    async fn receipts_and_checkpoints_ride_with_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            QueueStore::open(dir.path(), StoreOptions::new(1 << 30, Overflow::DropOldest)).unwrap();
        store.set_sinks(&["s".to_owned()]).unwrap();
        let (queue, state) = SpanQueue::new(store);
        let queue_thread = Arbiter::new();
        let queue = SpanQueue::start_in_arbiter(&queue_thread.handle(), move |_| queue);
        let correlator = Correlator::new(
            settings(),
            &["file".to_owned()],
            queue.clone(),
            state.clone(),
            Duration::from_millis(5),
            Feed::Live,
        )
        .start();

        let (tx, rx) = oneshot::channel();
        correlator
            .send(Ingest {
                source: Source::from(0),
                events: vec![
                    event("request", "a", 1),
                    event("response", "a", 2),
                    event("request", "b", 3),
                ],
                read_at: Instant::now(),
                checkpoint: Some(("file".to_owned(), b"offset 42".to_vec())),
                committed: Some(tx),
            })
            .await
            .unwrap();
        assert_eq!(rx.await.unwrap(), Ok(()));
        assert_eq!(state.borrow().committed, 1, "the paired span is committed");

        // A batch that makes nothing to store is answered at the next window too.
        let (tx, rx) = oneshot::channel();
        let mut duplicate = Ingest::events(
            Source::from(0),
            vec![event("request", "a", 1)],
            Instant::now(),
        );
        duplicate.committed = Some(tx);
        correlator.send(duplicate).await.unwrap();
        assert_eq!(rx.await.unwrap(), Ok(()));

        // Stopping its thread drops the store, which closes the database.
        queue_thread.stop();
        queue_thread.join().unwrap();
        let options = StoreOptions::new(1 << 30, Overflow::DropOldest);
        let store = QueueStore::open(dir.path(), options).unwrap();
        assert_eq!(
            store.checkpoint("file").unwrap(),
            Some(b"offset 42".to_vec())
        );
        assert_eq!(store.pending().unwrap().len(), 1, "request b waits on disk");
        let paired = store.paired().unwrap();
        assert_eq!(paired.len(), 1, "{paired:?}");
        assert_eq!(paired[0].1, crate::span::trace_id_for("a"));
    }

    /// Each window's paired ids are one record on disk, removed by the first commit after
    /// `pair_timeout` has passed, so the disk holds one `pair_timeout` of them.
    #[actix::test]
    async fn paired_id_records_are_removed_once_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let options = || StoreOptions::new(1 << 30, Overflow::DropOldest);
        let store = QueueStore::open(dir.path(), options()).unwrap();
        let (queue, state) = SpanQueue::new(store);
        let queue_thread = Arbiter::new();
        let queue = SpanQueue::start_in_arbiter(&queue_thread.handle(), move |_| queue);
        let timeout = Duration::from_millis(300);
        let correlator = Correlator::new(
            Settings {
                pair_timeout: timeout,
                ..settings()
            },
            &["unix".to_owned()],
            queue.clone(),
            state.clone(),
            Duration::from_millis(5),
            Feed::Live,
        )
        .start();
        let pair = |id: &str| {
            let (tx, rx) = oneshot::channel();
            let mut ingest = Ingest::events(
                Source::from(0),
                vec![event("request", id, 1), event("response", id, 2)],
                Instant::now(),
            );
            ingest.committed = Some(tx);
            (ingest, rx)
        };
        let (ingest, rx) = pair("a");
        correlator.send(ingest).await.unwrap();
        assert_eq!(rx.await.unwrap(), Ok(()));
        // a's record was made before its receipt: forgotten at most pair_timeout from here.
        // The passing of pair_timeout is what is under test.
        let committed = Instant::now();
        while committed.elapsed() <= timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (ingest, rx) = pair("b");
        correlator.send(ingest).await.unwrap();
        assert_eq!(rx.await.unwrap(), Ok(()));

        queue_thread.stop();
        queue_thread.join().unwrap();
        let store = QueueStore::open(dir.path(), options()).unwrap();
        let paired = store.paired().unwrap();
        assert_eq!(paired.len(), 1, "only b's record is left: {paired:?}");
        assert_eq!(paired[0].1, crate::span::trace_id_for("b"));
    }
}
